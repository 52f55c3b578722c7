"""Which of two nearly equal explanations an operator acts on, read from the failure codes.

Attribution (rules.py) ranks segments by how well they concentrate the excess failures. Some
pairs of names cover nearly the same failing traffic and fit about as well: the codes then tell
which one failed. A spoofed palm or a misread is the device's, not the bank x route its customers
happened to use; a bank that does not answer (BANK_TIMEOUT, ISSUER_DOWN) is the bank, not the card
scheme most of its cards carry.
"""

from __future__ import annotations

from payops.signals.window import WindowSnapshot

from .evidence import background_mix, code_count, device_burst_codes, excess_by_family, shares
from .findings import Scored

# Fits within this share of each other are a tie the codes may break (as rules.NEAR_TIE).
CODE_TIE = 0.15
# Share of the excess failures that must be bank-side codes (evidence.ISSUER_CODES) to name the bank.
BANK_CODES_PURITY = 0.75


def device_first(chosen: Scored, ranked: list[Scored]) -> Scored:
    """Spoofed palms and misreads happen at a device. When the blamed segment's failures are such
    codes and a terminal shows at least as many of them, the terminal is the explanation: a bank x
    route that fits better only holds the customers who happened to use that device."""
    seg = chosen.seg
    codes = device_burst_codes(seg)
    if codes is None or "terminal_id" in seg.target:
        return chosen
    devices = [c for c in ranked if "terminal_id" in c.seg.target and len(c.seg.dims) == 1
               and device_burst_codes(c.seg) == codes and code_count(c.seg, codes) >= code_count(seg, codes)]
    return max(devices, key=lambda c: (code_count(c.seg, codes), c.fit)) if devices else chosen


def bank_for_bank_codes(chosen: Scored, ranked: list[Scored], snapshot: WindowSnapshot) -> Scored:
    """A card scheme named (alone or on a route) while a bank, on the same route if any, fits nearly as
    well and the excess is bank-side codes: the bank did not answer, whatever scheme its cards carry."""
    seg = chosen.seg
    if "issuer" not in seg.target or "bank" in seg.target:
        return chosen
    fam = shares(excess_by_family(seg, background_mix(snapshot, seg)))
    if fam.get("issuer", 0.0) < BANK_CODES_PURITY:
        return chosen
    others = {k: v for k, v in seg.target.items() if k != "issuer"}
    banks = [c for c in ranked if "bank" in c.seg.target and {k: v for k, v in c.seg.target.items() if k != "bank"}
             == others and c.fit >= (1.0 - CODE_TIE) * chosen.fit]
    return max(banks, key=lambda c: (c.fit, c.seg.key)) if banks else chosen
