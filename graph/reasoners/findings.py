"""What a reasoner stage concludes before an action is chosen: the finding, and which name to act on."""

from __future__ import annotations

from dataclasses import dataclass

from payops.models import Category
from payops.signals.window import SegmentStats

# When two segments carry the same traffic, blame the one an operator can act on.
DIMENSION_PREFERENCE = ("terminal_id", "route", "bank", "method", "issuer", "merchant_id", "region")


@dataclass(frozen=True)
class Finding:
    category: Category
    segment: SegmentStats | None
    confidence: float
    summary: str
    evidence: tuple[str, ...]
    alternatives: tuple[str, ...]
    # route, issuer, issuer_route, scheme, scheme_route, system, terminal, latency, retry, routing, user, security, method, segment, healthy,
    # and from patterns.py: card_testing, volume, no_data, anomaly
    kind: str
    pooled_windows: int = 1

    @property
    def target(self) -> dict[str, str]:
        return self.segment.target if self.segment is not None and self.category is not Category.HEALTHY else {}
