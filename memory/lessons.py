"""Long-term memory: outcomes as JSON lessons in a LangGraph BaseStore, no vectors.

Namespace ("lessons", <category>), key = decision id. Every field a filter uses
is a top-level string (STACK-NOTES: nested keys and numeric $gt behave
differently per backend), so retrieval is the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from langgraph.store.base import BaseStore
from pydantic import BaseModel, ConfigDict, Field

NAMESPACE = "lessons"


def magnitude_bucket(failure_rate: float) -> str:
    """Coarse size of an incident, as a string so stores compare it with $eq."""
    for limit, name in ((0.1, "minor"), (0.3, "moderate"), (0.6, "major")):
        if failure_rate < limit:
            return name
    return "severe"


class Lesson(BaseModel):
    model_config = ConfigDict(extra="ignore")

    decision_id: str
    category: str
    target_key: str  # "bank=FNB,route=psp_a"
    target_dims: str  # "bank,route": the shape of the target, for similarity across names
    dominant_error: str
    magnitude: str
    method_mix: str = ""  # e.g. "card" or "card,payshap"
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    status: str  # executed | escalated | approved | rejected
    verdict: str = "pending"  # pending | helped | no_effect | harmed | inconclusive
    before: dict[str, float] = Field(default_factory=dict)
    after: dict[str, float] = Field(default_factory=dict)
    created_at: float
    concluded_at: float | None = None


@dataclass(frozen=True)
class Signature:
    category: str
    target_key: str
    target_dims: str
    dominant_error: str
    magnitude: str


# Similarity weights: the same category is required; the rest adds up to 1.
SIMILARITY_WEIGHTS = {"target_key": 0.35, "target_dims": 0.25, "dominant_error": 0.25, "magnitude": 0.15}
RECENCY_HALF_LIFE_SECONDS = 7 * 24 * 3600.0


def similarity(lesson: Lesson, sig: Signature, now: float) -> float:
    """Weighted agreement on signature fields, times a recency decay (half-life one week)."""
    score = sum(w for f, w in SIMILARITY_WEIGHTS.items() if getattr(lesson, f) == getattr(sig, f))
    age = max(0.0, now - lesson.created_at)
    return score * 0.5 ** (age / RECENCY_HALF_LIFE_SECONDS)


class LessonStore:
    def __init__(self, store: BaseStore) -> None:
        self.store = store

    def put(self, lesson: Lesson) -> None:
        self.store.put((NAMESPACE, lesson.category), lesson.decision_id, lesson.model_dump(mode="json"), index=False)

    def get(self, category: str, decision_id: str) -> Lesson | None:
        item = self.store.get((NAMESPACE, category), decision_id)
        return Lesson.model_validate(item.value) if item else None

    def find(self, decision_id: str) -> Lesson | None:
        for item in self._all():
            if item.key == decision_id:
                return Lesson.model_validate(item.value)
        return None

    def _all(self, category: str | None = None, filter: dict[str, Any] | None = None) -> Iterable[Any]:
        prefix = (NAMESPACE, category) if category else (NAMESPACE,)
        offset = 0
        while True:
            batch = self.store.search(prefix, filter=filter, limit=200, offset=offset)
            yield from batch
            if len(batch) < 200:
                return
            offset += 200

    def list(self, category: str | None = None, verdict: str | None = None) -> list[Lesson]:
        lessons = [Lesson.model_validate(i.value) for i in self._all(category, {"verdict": verdict} if verdict else None)]
        return sorted(lessons, key=lambda l: (l.created_at, l.decision_id))

    def similar(self, sig: Signature, now: float, limit: int = 5) -> list[tuple[Lesson, float]]:
        """Lessons of the same category ranked by similarity; structured filters, no embeddings."""
        found = [Lesson.model_validate(i.value) for i in self._all(sig.category)]
        scored = [(lesson, similarity(lesson, sig, now)) for lesson in found]
        scored = [(l, s) for l, s in scored if s > 0]
        return sorted(scored, key=lambda x: (-x[1], -x[0].created_at))[:limit]

    def export(self) -> list[dict[str, Any]]:
        return [l.model_dump(mode="json") for l in self.list()]

    def import_(self, records: Iterable[dict[str, Any]]) -> int:
        """All or nothing: every record is validated before the first is stored."""
        lessons = [Lesson.model_validate(raw) for raw in records]
        for lesson in lessons:
            self.put(lesson)
        return len(lessons)
