"""Where a broad finding's codes come from (issue 14, session 6): `tiebreaks.bank_holding_the_codes`.

Met on a validation seed of the independent generator and rebuilt as crafted windows (reasoning_helpers):
a bank goes down 30 s before the window ends; its 7 ISSUER_DOWN / BANK_TIMEOUT failures are short of
the minimum excess on their own, and a few more declines than usual elsewhere lift all traffic over
the bar. "System-wide failure" was the reading; every bank-side code came from one bank.
"""

from __future__ import annotations

from reasoning_helpers import base_cells, context, fail, healthy_history, window

from payops.graph.reasoners.rules import RuleReasoner
from payops.models import Category

RULES = RuleReasoner()
BANK_SIDE = {"ISSUER_DOWN": 0.6, "BANK_TIMEOUT": 0.4}


def test_a_broad_rise_whose_bank_side_codes_all_come_from_one_bank_is_that_bank() -> None:
    cells = base_cells(120)
    now = fail(fail(cells, {"bank": "CAPITEC"}, 0.4, BANK_SIDE), {}, 0.04, {"INSUFFICIENT_FUNDS": 1.0})
    snap = window(now)
    bank = snap.segment(bank="CAPITEC")
    assert bank is not None and bank.excess_failures < 8 <= snap.total.excess_failures  # the shape, as met
    d = RULES.decide(snap, context(healthy_history(cells, 8)))
    assert d.diagnosis.category is Category.ISSUER and d.diagnosis.target == {"bank": "CAPITEC"}, d.diagnosis.summary
    assert d.proposal.target == {"bank": "CAPITEC"}


def test_bank_side_codes_spread_over_every_bank_stay_where_they_concentrate() -> None:
    # A route whose banks all time out: no bank holds most of the codes, so no bank is named.
    cells = base_cells(1200)
    now = fail(cells, {"route": "psp_a"}, 0.5, BANK_SIDE)
    d = RULES.decide(window(now), context(healthy_history(cells, 8)))
    assert "bank" not in d.diagnosis.target and d.diagnosis.target.get("route") == "psp_a", d.diagnosis.summary
