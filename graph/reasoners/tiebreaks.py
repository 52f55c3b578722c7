"""Which of two nearly equal explanations an operator acts on, read from the failure codes.

Attribution (rules.py) ranks segments by how well they concentrate the excess failures. Some
pairs of names cover nearly the same failing traffic and fit about as well: the codes then tell
which one failed. A spoofed palm or a misread is the device's, not the bank x route its customers
happened to use; a bank that does not answer (BANK_TIMEOUT, ISSUER_DOWN) is the bank, not the card
scheme most of its cards carry. And when the codes that make up a broad finding's excess all come
from one bank or terminal, that is where the fault is, though the broad finding's other failures (a few
declines more than usual) hide it from the usual "the rest is clean" test (`holder_of_the_codes`).
The other way round, a till's time-outs are its acquirer's when the acquirer times out for other customers
too (`route_behind_the_device`).
"""

from __future__ import annotations

from payops.signals.baseline import binomial_tail_z, binomial_z
from payops.signals.window import SegmentStats, WindowSnapshot

from .base import ReasoningContext
from .evidence import (
    FAMILIES,
    NETWORK_CODES,
    PAIRED_DIMENSIONS,
    UNKNOWN,
    background_mix,
    code_burst_zs,
    code_count,
    device_burst_codes,
    device_fault_codes,
    excess_by_family,
    family_of,
    fault_kinds,
    llr,
    nested,
    peer_rate,
    shares,
)
from .findings import REST_CLEAN_Z, Scored
from .reference import own_code_rate

# Fits within this share of each other are a tie the codes may break (as rules.NEAR_TIE).
CODE_TIE = 0.15
# Share of the excess failures of a place's kinds (customers' declines say nothing of which place) that must
# be bank-side codes (evidence.ISSUER_CODES) to name the bank, or time-outs and network errors to name a link.
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


def routes_behind(seg: SegmentStats, codes: frozenset[str], snapshot: WindowSnapshot, context: ReasoningContext,
                  z_bar: float = REST_CLEAN_Z) -> list[SegmentStats]:
    """Routes that plausibly carry the device (`nested`) and show its `codes` beyond it too: more than the
    route's own normal minutes and the other routes show them (z_bar on the exact tail; by default "not
    plainly normal"). Time-outs at a kiosk whose acquirer times out for others too come from behind it."""
    behind = []
    total = code_count(snapshot.total, codes), snapshot.total.attempts
    for route in snapshot.by_dimension("route"):
        if not nested(seg, route) or route.attempts <= seg.attempts:
            continue
        others = total[0] - code_count(route, codes), total[1] - route.attempts
        usual = max(own_code_rate(route, codes, snapshot, context) or 0.0, peer_rate(*others))
        if binomial_tail_z(code_count(route, codes) - code_count(seg, codes), route.attempts - seg.attempts,
                           usual) >= z_bar:
            behind.append(route)
    return behind


def route_behind_the_device(chosen: Scored, snapshot: WindowSnapshot, context: ReasoningContext) -> Scored:
    """A terminal failing in time-outs (`device_fault_codes`) while the route carrying it significantly times out
    for others too: the route is the explanation (a ramp's first minute shows at its busiest till first). Two
    stray time-outs among a palm rail's other scanners are not that."""
    seg = chosen.seg
    if set(seg.target) != {"terminal_id"} or device_fault_codes(seg) is None:
        return chosen
    routes = routes_behind(seg, NETWORK_CODES, snapshot, context, context.thresholds.significance_z)
    return max((Scored(r, llr(r)) for r in routes), key=lambda c: (c.fit, c.seg.key)) if routes else chosen


def _place_share(seg: SegmentStats, snapshot: WindowSnapshot, family: str) -> float:
    """The family's share of the segment's excess failures of a place's kinds (all but customers' declines): a
    bank failing on one acquirer with 10 bank-side codes and 3 system errors, beside a few declines more than
    usual, answers for itself whatever the declines make of the plain share."""
    excess = excess_by_family(seg, background_mix(snapshot, seg))
    place = sum(v for k, v in excess.items() if k != "user")
    return excess.get(family, 0.0) / place if place > 0 else 0.0


def bank_for_bank_codes(chosen: Scored, ranked: list[Scored], snapshot: WindowSnapshot) -> Scored:
    """A card scheme named (alone or on a route) while a bank, on the same route if any, fits nearly as
    well and the excess is bank-side codes: the bank did not answer, whatever scheme its cards carry."""
    seg = chosen.seg
    if "issuer" not in seg.target or "bank" in seg.target:
        return chosen
    if _place_share(seg, snapshot, "issuer") < BANK_CODES_PURITY:
        return chosen
    others = {k: v for k, v in seg.target.items() if k != "issuer"}
    banks = [c for c in ranked if "bank" in c.seg.target and {k: v for k, v in c.seg.target.items() if k != "bank"}
             == others and c.fit >= (1.0 - CODE_TIE) * chosen.fit]
    return max(banks, key=lambda c: (c.fit, c.seg.key)) if banks else chosen


def link_for_link_codes(chosen: Scored, snapshot: WindowSnapshot) -> Scored:
    """The mirror of `bank_for_bank_codes`: a bank named on a route while its excess is time-outs and network
    errors, and a card scheme on that route holds every one of them in no more payments. A bank answers for
    itself with bank-side codes; time-outs between an acquirer and a scheme are that link's, and the bank's
    name only says whose cards happened to cross it (a bank issuing one scheme, 7 of 9 beside 6 of 8)."""
    seg = chosen.seg
    if "bank" not in seg.target or "route" not in seg.target or "issuer" in seg.target:
        return chosen
    if _place_share(seg, snapshot, "network") < BANK_CODES_PURITY:
        return chosen
    held = code_count(seg, NETWORK_CODES)
    links = [s for s in snapshot.by_dimension("issuer", "route") if s.target["route"] == seg.target["route"]
             and code_count(s, NETWORK_CODES) >= held and s.attempts <= seg.attempts]
    return max((Scored(s, llr(s)) for s in links), key=lambda c: (c.fit, c.seg.key)) if links else chosen


# Share of the blamed segment's failures with the codes of its excess that one place must carry.
HOLDER_SHARE = 0.7  # as rules.DESCEND_SHARE
HOLDER_STRAYS = 2  # codes a holder may show outside the finding (a stray failure or two)
# Where each family of codes points when nearly all of it comes from one place. A bank's own codes
# (ISSUER_DOWN, BANK_TIMEOUT...) point at a bank; time-outs and system errors that all come from one
# terminal are that device or its link (a palm scanner failing); codes outside the vocabulary carry no
# meaning of their own and point wherever they concentrate (CONTRACT.md §1: "the same code means
# different things depending on where it concentrates"). Customers' declines single out nothing.
POINTS_AT: dict[str, tuple[str, ...]] = {"issuer": ("bank",), "network": ("terminal_id", "route"),
                                         UNKNOWN: ("bank", "terminal_id")}
# Time-outs and system errors nearly all at one acquirer are that acquirer, as at one terminal that device:
# a region's or a method's rise whose network codes all come from one route (its other failures a few
# more declines than usual). A terminal that holds them is named before its route (the narrower place).


def holder_of_the_codes(chosen: Scored, ranked: list[Scored], snapshot: WindowSnapshot,
                        significance_z: float) -> Scored:
    """A finding broader than a bank or a terminal (all traffic, a method, a route, a merchant) whose excess
    is mostly codes of one family, nearly all of them at one bank or terminal, which shows them far more
    than its peers do and far beyond its share of the finding's traffic: that bank or terminal. 7 of 7
    ISSUER_DOWN at one bank in an outage's first 30 s, beside a few declines more than usual elsewhere, is
    that bank failing, not a "system-wide failure"; an ACS outage's unknown code on one bank's cards is that
    bank, not "every route carrying card"; a merchant's 6 system errors all at its palm terminal are the
    terminal, not the merchant."""
    seg = chosen.seg
    if "bank" in seg.target or "terminal_id" in seg.target:
        return chosen
    fam = shares(excess_by_family(seg, background_mix(snapshot, seg)))
    family = max(fam, key=lambda k: (fam[k], k))
    if family not in POINTS_AT or fam[family] < 0.5:
        return chosen
    codes = FAMILIES[family] if family != UNKNOWN else frozenset(c for c in seg.errors if family_of(c) == UNKNOWN)
    held = code_count(seg, codes)
    if held == 0:
        return chosen
    by_dimension: list[list[SegmentStats]] = []
    for dimension in POINTS_AT[family]:
        places: list[SegmentStats] = []
        if dimension == "bank" and "merchant_id" not in seg.target:
            # Banks are paired with routes only (signals/window.SEGMENT_PAIRS): on a route, that bank on it.
            on = {"route": seg.target["route"]} if "route" in seg.target else {}
            places += [b for b in snapshot.by_dimension("bank", *on)
                       if all(b.target.get(k) == v for k, v in on.items())]
        elif dimension == "terminal_id":
            # A terminal is inside a route or a merchant only plausibly (no pair segment says so).
            places += [d for d in snapshot.by_dimension("terminal_id") if not seg.dims or nested(d, seg)]
        elif (dimension == "route" and not {"route", "merchant_id"} & set(seg.target)
              and fault_kinds(seg, snapshot) == {family}):
            # ...only when time-outs are the finding's one kind of fault (a second acquirer answering
            # ISSUER_DOWN for the same cards is the same outage reported otherwise, the broader name's), and
            # for a finding broader than a route: a merchant sits behind its acquirer, and its own failures
            # are all on the route that carries it.
            # A method's or a scheme's part on a route is their pair; a region or a merchant has no pair with
            # routes: the route itself, whose codes must then lie within the finding's (the strays test below).
            paired = len(seg.dims) == 1 and seg.dims[0][0] in PAIRED_DIMENSIONS
            for r in snapshot.by_dimension("route"):
                part = snapshot.segment(**seg.target, route=r.target["route"]) if paired else r
                places += [part] if part is not None else []
        by_dimension.append(places)
    # Nearly all of the finding's codes, and hardly any beyond them: a bank whose codes mostly fail on
    # another method is not where this method's codes come from. An issuer's finding (a card scheme, a rail)
    # is the exception: a bank's codes beyond it are on its other issuers' traffic, and failing across
    # issuers is what makes the bank, not the issuer, the cause (an ACS outage fails the bank's VISA and
    # Mastercard alike; most VISA cards being that bank's made VISA the better fit).
    across_issuers = "issuer" in seg.target
    for places in by_dimension:  # the narrower kind of place first
        places = [p for p in places if HOLDER_SHARE * held <= code_count(p, codes)
                  and (across_issuers or code_count(p, codes) <= held + HOLDER_STRAYS)]
        bursts = code_burst_zs(places, codes, snapshot)
        places = [p for p in places if bursts[p.key] >= significance_z]
        if places:
            break
    if not places:
        return chosen
    best = max(places, key=lambda b: (code_count(b, codes), b.key))
    # ...and far beyond its share of the traffic: the finding's other attempts show the codes plainly
    # less often than the holder does. A bank that carries nearly all of a scheme's cards in a thin window
    # holds nearly all of its codes by its size alone; the scheme is then as good a name, and it stays.
    rest_attempts = max(0, seg.attempts - best.attempts)
    rest_codes = max(0, held - code_count(best, codes))
    beyond = across_issuers and code_count(best, codes) > held + HOLDER_STRAYS  # on its other issuers' traffic
    if not beyond and binomial_z(rest_codes, rest_attempts, code_count(best, codes) / best.attempts) > -REST_CLEAN_Z:
        return chosen
    known = {c.seg.key: c for c in ranked}
    return known.get(best.key) or Scored(best, chosen.fit)
