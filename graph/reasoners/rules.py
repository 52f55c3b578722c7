"""The deterministic, embedded reasoner: explaining-away attribution, then named rules.

1. Retry storm first (retry.py): retries beyond what retryable failures explain, payments
   running out of attempts. It multiplies every other symptom, so it is checked before them.
2. Attribution: of the segments whose failures are significantly above their
   reference, blame the one with the highest scan statistic (see evidence.py). When
   two names cover the same traffic (a route that carries one method), blame the one
   an operator can act on. When nothing clears the bar in this window, the same test
   runs on evidence pooled over recent windows (small segments, low volume).
3. Classification (classification.py): the code families of the *excess* failures, read in the light of
   where they concentrate: declines at one terminal are a device, timeouts across
   every bank on one route are the route, the same timeouts at one bank are the bank.
4. Latency (latency.py): a route whose p95 is far above its reference, with nothing failing.

References (reference.py) are settled before any of it; card testing, volume, "no data" and the
unexplained anomaly are patterns.py's; the action is selection.py's. This module is the
attribution and the order the stages run in.

Nothing here knows a bank, route or terminal name: names are data.
"""

from __future__ import annotations

from dataclasses import replace

from payops.models import Category, Diagnosis
from payops.signals.baseline import binomial_z
from payops.signals.window import SegmentStats, WindowSnapshot

from .base import Decision, ReasoningContext
from .classification import classify
from .evidence import (
    CONFIG_CODES,
    FAMILIES,
    ISSUER_CODES,
    NETWORK_CODES,
    PAIRED_DIMENSIONS,
    SECURITY_CODES,
    USER_CODES,
    background_mix,
    code_burst_z,
    contains,
    device_burst_codes,
    device_fault_codes,
    error_mix,
    excess_by_family,
    fault_kinds,
    first_attempts,
    llr,
    nested,
    pct,
    rest_of,
    shares,
    within,
)
from .feed import near_silent, no_data
from .findings import (
    REST_CLEAN_Z,
    TIE_TOLERANCE,
    USER_SURGE_PURITY,
    Finding,
    Scored,
    rest_clean,
    rest_fails,
    rises_less,
    same_traffic,
)
from .findings import cold as _cold
from .findings import dimension_rank as _dimension_rank
from .latency import latency_candidates, latency_finding, slow_not_failing
from .patterns import card_testing, unexplained, volume_drop
from .pooling import pooled_candidates, pooled_view
from .reference import prepared
from .rests import (
    EARLY_EXCESS_FACTOR,
    carries_the_kind,
    early_parents,
    explains_over_the_run,
    parent_explains,
    rest_declines_only,
    rest_fails_in_kind,
    rest_same_kind,
    rises_less_in_kind,
    sibling_shares_fault,
)
from .retry import retry_storm
from .selection import HOLD_NOTE, alternative_routes, choose_action, route_health, segment_methods
from .surges import customers_surge, explains_the_rise
from .tiebreaks import (
    bank_for_bank_codes,
    device_first,
    holder_of_the_codes,
    link_for_link_codes,
    route_behind_the_device,
    routes_behind,
)

__all__ = [
    "RuleReasoner", "Finding", "prepared", "route_health", "segment_methods", "alternative_routes", "choose_action",
    "USER_CODES", "ISSUER_CODES", "NETWORK_CODES", "CONFIG_CODES", "SECURITY_CODES", "FAMILIES",
]

# A segment of an unpaired dimension (merchant, region, terminal) cannot be explained away
# against routes and banks, so it must fit this many times better than the best one that can.
UNPAIRED_MARGIN = 1.5
# Share of a segment's failures that are ROUTE_NOT_SUPPORTED for it to be a misroute (named method x route).
MISROUTE_SHARE = 0.5
# A part of the blamed segment whose fit is within this share of the whole's takes the blame
# when the rest of the whole fails at well under the part's rate.
NEAR_TIE = 0.15
# A part of the blamed segment that is not a candidate itself (too few attempts) takes the
# blame when it carries at least this share of the excess and the rest is plainly normal.
DESCEND_SHARE = 0.7
# Declines move with customer behaviour (paydays, month-end) and call for no action, so a
# user-type surge is only named when it clears the bar by this factor.
USER_SURGE_Z_FACTOR = 1.0
USER_SPREAD_Z = 1.0  # a decline surge spreads to a broader segment whose rest rises by this much
# Security codes (spoofed palms, fraud flags) are attacks, not noise: a few at one device
# are material. Acting costs little (the device's palm path pauses, card stays), a miss
# lets an attacker keep trying. The same holds for a device failing every customer with
# read errors. Applies when DEVICE_BURST_SHARE of the failures are such codes (evidence.py).
SECURITY_MIN_ATTEMPTS = 4
SECURITY_MIN_EXCESS = 3
# With no trusted history the reference is the rest of traffic, which differs by nature
# (another bank, another method): such a segment must clear the bar by this factor.
COLD_START_Z_FACTOR = 2.0
# A proposal the selection holds for a human (marginal evidence in one window, a mitigation
# after an alert): confidence just under the default autonomy threshold (0.8), above the
# watch floor (0.6), so it is put to someone rather than run or swallowed.
HOLD_CONFIDENCE = 0.75


class RuleReasoner:
    name = "rules"

    def decide(self, snapshot: WindowSnapshot, context: ReasoningContext) -> Decision:
        snapshot = prepared(snapshot, context)
        finding = self._diagnose(snapshot, context)
        diagnosis = Diagnosis(
            category=finding.category,
            target=finding.target,
            summary=finding.summary,
            evidence=finding.evidence,
            alternatives=finding.alternatives,
            confidence=finding.confidence,
            reasoner=self.name,
        )
        proposal, notes = choose_action(finding, snapshot, context)
        holds = [n.split(":", 1)[1] for n in notes if n.startswith(HOLD_NOTE + ":")]
        if holds and diagnosis.confidence > HOLD_CONFIDENCE:
            # Below the autonomy threshold: the guardrails put the proposal to a human.
            diagnosis = diagnosis.model_copy(update={"confidence": HOLD_CONFIDENCE,
                                                     "evidence": (*diagnosis.evidence, *holds)})
        return Decision(diagnosis, proposal, notes=notes)

    # -- candidates ---------------------------------------------------------------
    def candidates(self, snapshot: WindowSnapshot, context: ReasoningContext) -> list[SegmentStats]:
        return [s for s in (snapshot.total, *snapshot.segments) if self._clears_bar(s, context, snapshot)]

    @staticmethod
    def _clears_bar(s: SegmentStats, context: ReasoningContext, snapshot: WindowSnapshot | None = None) -> bool:
        t = context.thresholds
        codes = device_burst_codes(s) or device_fault_codes(s)
        # A device is judged by its peers (the exact tail of its codes beside theirs), not by the doubled bar
        # of a cold reference: a palm scanner seen once a minute never earns a history of its own. Its
        # time-outs are its own only if no route carrying it shows them beyond it (those come from behind).
        if s.z < t.significance_z or (s.z < COLD_START_Z_FACTOR * t.significance_z and _cold(s, context) and (
                codes is None or snapshot is None
                or codes is NETWORK_CODES and bool(routes_behind(s, codes, snapshot, context)))):
            return False
        if codes is not None:  # a handful is material only if peers rarely see them ("not registered" happens)
            return (s.attempts >= SECURITY_MIN_ATTEMPTS and s.excess_failures >= SECURITY_MIN_EXCESS
                    and (snapshot is None or code_burst_z(s, codes, snapshot) >= t.significance_z))
        return s.attempts >= t.min_segment_attempts and s.excess_failures >= t.min_excess_failures

    def ranked(self, snapshot: WindowSnapshot, context: ReasoningContext) -> list[Scored]:
        scored = [Scored(s, llr(s)) for s in self.candidates(snapshot, context)]
        return sorted(scored, key=lambda c: (-c.fit, len(c.seg.dims), _dimension_rank(c.seg), c.seg.key))

    def pooled_ranked(self, snapshot: WindowSnapshot, context: ReasoningContext) -> tuple[list[Scored], int]:
        """Candidates over the current window plus recent ones, for segments still failing now (pooling.py)."""
        pooled, depth = pooled_candidates(snapshot, context, lambda s, at: self._clears_bar(s, context, at))
        scored = sorted((Scored(s, llr(s)) for s in pooled),
                        key=lambda c: (-c.fit, len(c.seg.dims), _dimension_rank(c.seg), c.seg.key))
        return scored, depth

    @staticmethod
    def _alias(ranked: list[Scored], chosen: Scored, snapshot: WindowSnapshot | None = None,
               min_attempts: int = 0) -> Scored:
        """Among segments that are the same traffic as `chosen` (`_same_traffic`), the one to act on."""
        ties = [chosen] + [c for c in ranked if c.fit >= (1.0 - TIE_TOLERANCE) * chosen.fit
                           and c.seg.attempts == chosen.seg.attempts]
        if snapshot is not None:
            seg = chosen.seg
            same = [s for s in snapshot.segments
                    if (contains(s, seg) or contains(seg, s)) and same_traffic(s, seg, min_attempts)]
            # ...and siblings through a pair that is the same traffic as both (a method all of which one
            # route carries, with nothing else on it): method=X and route=Y name one traffic.
            same += [s for s in snapshot.segments if len(s.dims) == len(seg.dims) and s.key != seg.key
                     and any(contains(seg, p) and contains(s, p) and same_traffic(s, p, min_attempts) for p in same)]
            ties += [Scored(s, chosen.fit) for s in same]
        # A method rejected by the route it was sent to is acted on as that pair (the misroute to undo),
        # even when all of the method went there and method=X alone names the same traffic.
        misrouted = chosen.seg.error_share("ROUTE_NOT_SUPPORTED") >= MISROUTE_SHARE
        return min(ties,
                   key=lambda c: (not (misrouted and "route" in c.seg.target), len(c.seg.dims), _dimension_rank(c.seg),
                                        c.seg.attempts, c.seg.key))

    @staticmethod
    def _verifiable_first(ranked: list[Scored], snapshot: WindowSnapshot | None = None,
                          min_excess: float = 0.0, significance_z: float | None = None) -> Scored:
        """The best fit, unless it is a dimension no pair segment lets us explain away (a merchant,
        a region, a terminal) and a segment that can be checked fits nearly as well. The unpaired one
        stays when nothing outside it fails significantly and it holds clearly more excess failures than
        the checkable one: those failed outside the checkable one (a merchant failing on every route it
        uses, not the route carrying most of it). "Significantly", not "plainly": 15 of 114 failing
        outside a broken merchant (z 2.2) beside 27 of 119 outside the route does not make the route
        the better name."""
        top = max(ranked, key=lambda c: c.fit)
        if all(k in PAIRED_DIMENSIONS for k, _ in top.seg.dims):
            return top
        if "terminal_id" in top.seg.target and device_burst_codes(top.seg) is not None:
            return top  # spoofed palms and misreads happen at a device: the device is the explanation
        checkable = [c for c in ranked if all(k in PAIRED_DIMENSIONS for k, _ in c.seg.dims)]
        best = max(checkable, key=lambda c: c.fit) if checkable else None
        if best is not None and best.fit * UNPAIRED_MARGIN >= top.fit:
            rest = rest_of(snapshot.total, top.seg) if snapshot is not None else None
            if (rest is not None and best.seg.dims
                    and (rest_clean(rest, min_excess) or significance_z is not None and rest.z < significance_z)
                    and top.seg.excess_failures - best.seg.excess_failures >= min_excess / 2.0):
                return top  # more excess than the checkable name holds: some of it fails elsewhere
            return best
        return top

    def pick(self, ranked: list[Scored], context: ReasoningContext, snapshot: WindowSnapshot | None = None,
             pooled: int = 1) -> Scored:
        """Best fit, then explaining away in both directions until nothing moves.

        Down: a narrower candidate whose complement inside the chosen one is clean
        carries the whole excess (the route only fails for one bank). Up: a broader
        candidate whose complement fails at a comparable rate shows the fault is wider
        (every bank fails on the route, not just the one with the lowest baseline).
        The two conditions exclude each other (REST_CLEAN_Z < significance), so the walk
        cannot cycle.
        """
        t = context.thresholds
        chosen = self._alias(ranked, self._verifiable_first(ranked, snapshot, t.min_excess_failures, t.significance_z),
                             snapshot, t.min_segment_attempts)
        for _ in range(6):  # at most the depth of the segment lattice, twice
            moved = (self._descend(chosen, ranked, context, snapshot, pooled)
                     or self._climb(chosen, ranked, context, snapshot, pooled))
            if moved is None:
                break
            chosen = self._alias(ranked, moved, snapshot, t.min_segment_attempts)
        return chosen

    def _descend(self, chosen: Scored, ranked: list[Scored], context: ReasoningContext,
                 snapshot: WindowSnapshot | None, pooled: int = 1) -> Scored | None:
        t = context.thresholds
        inside = [c for c in ranked if within(chosen.seg, c.seg, snapshot)]
        if snapshot is not None:
            # A part too small to be a candidate on its own may still carry all of the excess
            # (a method pushed onto a route that rejects it: a handful of attempts, all failing), or all of
            # its place's kind of failure when the part lies inside for certain (a scheme on the route).
            known = {c.seg.key for c in inside}
            inside += [Scored(s, llr(s)) for s in snapshot.segments
                       if s.key not in known and ((sure := within(chosen.seg, s, snapshot)) or nested(s, chosen.seg))
                       and s.attempts >= SECURITY_MIN_ATTEMPTS
                       and (s.excess_failures >= DESCEND_SHARE * chosen.seg.excess_failures
                            or sure and carries_the_kind(chosen.seg, s, snapshot, DESCEND_SHARE, t))]
        # The same traffic under a longer name is not a part of it.
        inside = [c for c in inside if (c.seg.attempts, c.seg.failures) != (chosen.seg.attempts, chosen.seg.failures)]
        clean = [c for c in inside
                 if rest_clean(rest_of(chosen.seg, c.seg), t.min_excess_failures)]
        # The rest rises in customers' declines only (a few more than usual beside one route's time-outs), or
        # not at all, and shows plainly fewer of the part's kind of failure: the part's fault is the part's
        # (a scheme's 66 payments on its other route, 6 declines and no time-out, beside its 176 on the
        # ramping route with 16 time-outs, too close in all failures to tell apart).
        declines_only = [c for c in inside if snapshot is not None
                         and rest_declines_only(chosen.seg, c.seg, snapshot, t)]
        # Nearly as good a fit, and the rest is not the same fault spreading (it fails at well under
        # the part's rate): the part concentrates the trouble and is the one to act on.
        concentrated = [c for c in inside if c.fit >= (1.0 - NEAR_TIE) * chosen.fit
                        and rises_less(r := rest_of(chosen.seg, c.seg), c.seg)
                        and r.z < t.significance_z
                        and (snapshot is None or rises_less_in_kind(chosen.seg, c.seg, snapshot))]
        # Either way a rest with traffic enough to judge must plainly fail less than the part (REST_CLEAN_Z
        # below the part's rate): one too close to tell apart says nothing against the broader name, the
        # common cause an operator acts on (a route whose second scheme is thin). A rest of a handful of
        # attempts is the part's own traffic under the broader name: the part is named.
        # That handful must not fail above its own reference, and the part must be inside for certain (a
        # pair segment): a merchant is only plausibly inside a route (`nested`). 4 of a route's 4 other
        # attempts failing too say the route, not the merchant carrying the other 11; 2 of its 4 wallet
        # payments failing beside its cards, the route, not its cards.
        found = [c for c in declines_only + clean + concentrated
                 if (c in declines_only
                     or (r := rest_of(chosen.seg, c.seg)).attempts < t.min_segment_attempts
                     and r.z < REST_CLEAN_Z
                     and within(chosen.seg, c.seg, snapshot)
                     or binomial_z(r.failures, r.attempts, c.seg.failure_rate) <= -REST_CLEAN_Z)
                 # early attribution keeps the parent, and so does a sibling failing the same way, and a rest
                 # failing in the part's kind (the climb's test: the walk must not go back and forth)
                 and not parent_explains(chosen.seg, c, t.min_excess_failures, snapshot)
                 and not (snapshot is not None and rest_fails_in_kind(chosen.seg, c.seg, snapshot, t, REST_CLEAN_Z))
                 and not (snapshot is not None
                          and (explains_over_the_run(chosen.seg, c, snapshot, context, pooled)
                               or sibling_shares_fault(chosen.seg, c.seg, ranked, snapshot)))]
        return self._verifiable_first(found) if found else None

    def _climb(self, chosen: Scored, ranked: list[Scored], context: ReasoningContext,
               snapshot: WindowSnapshot | None = None, pooled: int = 1) -> Scored | None:
        pool_ = list(ranked)
        # The rest only has to be plainly elevated (not significant on its own) at a rate like the
        # blamed segment's: at low volume a route's other banks fail 6 of 17, which is the route.
        z_bar = REST_CLEAN_Z
        seg = chosen.seg
        if snapshot is not None and seg.failures and seg.error_share(*USER_CODES) >= USER_SURGE_PURITY:
            # Declines follow customers, not one pair of dimensions: a decline surge is read as broad
            # as the evidence allows, up to parents that are not candidates themselves, as soon as
            # the rest shows the same rise at all.
            z_bar = USER_SPREAD_Z
            known = {c.seg.key for c in pool_}
            pool_ += [Scored(p, llr(p)) for p in (snapshot.total, *snapshot.segments)
                      if p.key not in known and (contains(p, seg) or nested(seg, p))]
        kinds = fault_kinds(seg, snapshot) if snapshot is not None else None  # the part's, read once for its parents
        wider = [c for c in pool_ if (within(c.seg, seg, snapshot) or nested(seg, c.seg))
                 and (rest_fails(rest_of(c.seg, seg), seg, context, z_bar,
                                 snapshot is None or rises_less_in_kind(c.seg, seg, snapshot, kinds))
                      or snapshot is not None and rest_fails_in_kind(c.seg, seg, snapshot, context.thresholds, z_bar,
                                                                     kinds))
                 and rest_same_kind(c.seg, seg, snapshot, kinds)]
        if not wider:
            # The parent fits about as well and the rest of it cannot be told apart from the part (it rises
            # too, and does not plainly fail less): nothing supports the narrower name over the common cause.
            wider = [c for c in pool_ if contains(c.seg, seg) and len(c.seg.dims) == len(seg.dims) - 1 and c.seg.dims
                     and c.fit >= (1.0 - NEAR_TIE) * chosen.fit and (r := rest_of(c.seg, seg)).excess > 0
                     and r.attempts >= context.thresholds.min_segment_attempts
                     and binomial_z(r.failures, r.attempts, seg.failure_rate) > -REST_CLEAN_Z
                     and rest_same_kind(c.seg, seg, snapshot, kinds)]
        if not wider and snapshot is not None and len(seg.dims) == 2:
            # Two pairs under one parent failing the same way are the parent's fault, though the parent's
            # other traffic (another method) keeps its rest's rate below the part's.
            wider = [c for c in pool_ if sibling_shares_fault(c.seg, seg, ranked, snapshot, kinds)]
        if (not wider and snapshot is not None and len(seg.dims) == 2
                and seg.excess_failures < EARLY_EXCESS_FACTOR * context.thresholds.min_excess_failures):
            wider = early_parents(chosen, snapshot) or [
                Scored(p, llr(p)) for p in snapshot.segments
                if explains_over_the_run(p, chosen, snapshot, context, pooled)]
        return self._verifiable_first(wider) if wider else None

    @staticmethod
    def _under_mitigation(chosen: Scored, snapshot: WindowSnapshot, context: ReasoningContext) -> Scored:
        """Failures inside a segment already rerouted or suppressed belong to that incident.

        A reroute leaves a probe on the old path; its failures, split by bank, would
        otherwise read as a new issuer incident on one route.
        """
        for a in context.in_force:
            if a.tool not in ("reroute_traffic", "suppress_path") or not a.target:
                continue
            seg = snapshot.segment(**a.target)
            if seg is None or seg.excess_failures <= 0:
                continue
            inside = set(a.target.items()) < set(chosen.seg.target.items())
            # A broader finding that is only the mitigated segment's leftovers (the probe, the
            # tail of timeouts under way when the action started): the rest of it is normal.
            around = contains(chosen.seg, seg) and rest_clean(rest_of(chosen.seg, seg),
                                                              context.thresholds.min_excess_failures)
            if inside or around:
                return Scored(seg, llr(seg))
        return chosen

    # -- diagnosis --------------------------------------------------------------------
    def diagnose(self, snapshot: WindowSnapshot, context: ReasoningContext) -> Finding:
        return self._diagnose(prepared(snapshot, context), context)

    def _diagnose(self, snapshot: WindowSnapshot, context: ReasoningContext) -> Finding:
        if near_silent(snapshot.total):
            return no_data(snapshot, context)  # a silent feed is never "healthy"
        storm = retry_storm(snapshot, context)
        if storm is not None:
            return storm
        # Before declines are read as customers': a burst of small charges over many cards.
        testing = card_testing(snapshot, context, lambda s: self._clears_bar(s, context, snapshot))
        if testing is not None:
            return testing
        finding = self._attribute(snapshot, context)
        if finding.category is Category.USER:
            # Customers' declines call for no action; a route whose traffic vanished beside them does.
            return volume_drop(snapshot, context) or finding
        if finding.category is not Category.HEALTHY:
            return finding
        # Nothing fails beyond its reference: traffic that vanished, then a rise no rule explains, then a shop's
        # billing run (customers' declines on added traffic, below the bar) — before the rise when it holds most
        # of it: then the rise is explained.
        surge = customers_surge(snapshot, context)
        if explains_the_rise(surge, snapshot.total):
            return volume_drop(snapshot, context) or surge or finding
        return volume_drop(snapshot, context) or unexplained(snapshot, context) or surge or finding

    def _attribute(self, snapshot: WindowSnapshot, context: ReasoningContext) -> Finding:
        """Failures above their reference, attributed to one segment and classified (or healthy)."""
        ranked, pooled = self.ranked(snapshot, context), 1
        latency = latency_candidates(snapshot, context)
        own = slow_not_failing(latency)
        slow = latency_finding(own, snapshot, context, latency) if own else None
        if not ranked and slow is None:
            ranked, pooled = self.pooled_ranked(snapshot, context)
            if ranked:
                # Every later reading (parts and wholes, code holders, fault kinds) compares the same windows.
                snapshot = pooled_view(snapshot, context, pooled)
        if not ranked:
            return slow or self._healthy(snapshot, context)
        named = link_for_link_codes(bank_for_bank_codes(self.pick(ranked, context, snapshot, pooled), ranked, snapshot),
                                    snapshot)
        picked = holder_of_the_codes(named, ranked, snapshot, context.thresholds.significance_z)
        chosen = route_behind_the_device(device_first(self._under_mitigation(picked, snapshot, context), ranked),
                                         snapshot, context)
        finding = classify(chosen, ranked, snapshot, context, pooled, latency)
        if finding.category is Category.USER and not self._material_user_surge(finding.segment, context,
                                                                               pooled, snapshot):
            return slow or self._healthy(snapshot, context,
                                         note="minor decline fluctuation on "
                                              f"{finding.segment.key if finding.segment else '*'} "
                                                                  "(user-type codes; not material)")
        if slow is not None and slow.confidence > finding.confidence:
            # A route plainly slower than ever outweighs a weak failure reading elsewhere.
            return replace(slow,
                           alternatives=(*slow.alternatives,
                                         f"{finding.summary} (confidence {finding.confidence:.2f})"))
        return finding

    def _healthy(self, snapshot: WindowSnapshot, context: ReasoningContext, note: str | None = None) -> Finding:
        total = snapshot.total
        conf = 0.9 if total.attempts >= context.thresholds.min_segment_attempts else 0.6
        evidence = [f"all traffic: {total.failures}/{total.attempts} failed ({pct(total.failure_rate)}) vs expected "
                    f"{pct(total.expected_failure_rate)}, p95 latency {total.latency_p95_ms:.0f} ms; no segment "
                    "significantly above its reference"]
        if note:
            evidence.append(note)
        return Finding(Category.HEALTHY, None, conf, "Traffic within normal bounds.", tuple(evidence), (), "healthy")

    @staticmethod
    def _material_user_surge(seg: SegmentStats | None, context: ReasoningContext, pooled: int,
                             snapshot: WindowSnapshot | None = None) -> bool:
        if seg is None:
            return False
        t = context.thresholds
        if (snapshot is not None
                and shares(excess_by_family(seg, background_mix(snapshot, seg)))["user"] < USER_SURGE_PURITY):
            return False  # a surge of declines is declines; a mixed bag of codes at one segment is noise
        if _cold(seg, context):
            # Declines differ between segments by nature: peers are no reference for them. All traffic,
            # judged on its own history, is: a decline surge that lifts the platform is material, and
            # this segment (picked as where it concentrates) is its place (a merchant's subscription run,
            # new to the agent).
            return (snapshot is not None and bool(seg.dims) and pooled == 1
                    and RuleReasoner._material_user_surge(snapshot.total, context, pooled, snapshot))
        # Counted in payments, not attempts: a declined card retried five times is one customer.
        # Every retry follows a failure, so failed payments ~= failures - retries.
        payments = first_attempts(seg)
        failed_payments = max(0.0, seg.failures - (seg.attempts - payments))
        z_payments = binomial_z(failed_payments, payments, seg.expected_failure_rate)
        return min(seg.z, z_payments) >= USER_SURGE_Z_FACTOR * t.significance_z

    # -- for the LLM --------------------------------------------------------------------
    def hypotheses(self, snapshot: WindowSnapshot,
                   context: ReasoningContext, limit: int = 5) -> list[dict[str, object]]:
        """Candidate explanations for an LLM to weigh: segments with figures, never raw events. `snapshot`
        is `prepared` already: preparing it twice ranked hypotheses on references the rules never used."""
        ranked = self.ranked(snapshot, context)
        pooled = 1
        if not ranked:
            ranked, pooled = self.pooled_ranked(snapshot, context)
        out: list[dict[str, object]] = []
        listed: list[SegmentStats] = []
        for c in ranked:
            seg = c.seg
            if len(listed) >= limit:
                break
            if any(s.attempts == seg.attempts and s.failures == seg.failures and (contains(s, seg) or contains(seg, s))
                   for s in listed):
                continue  # the same traffic under another name: one entry is enough
            listed.append(seg)
            fam = shares(excess_by_family(seg, background_mix(snapshot, seg)))
            out.append({
                "target": seg.target,
                "fit": round(c.fit, 1),
                "attempts": seg.attempts,
                "failures": seg.failures,
                "failure_rate": round(seg.failure_rate, 4),
                "expected_failure_rate": round(seg.expected_failure_rate, 4),
                "z": round(seg.z, 1),
                "excess_failures": round(seg.excess_failures, 1),
                "errors": error_mix(seg, top=4),
                "excess_by_code_family": {k: round(v, 2) for k, v in fam.items() if v >= 0.01},
                "latency_p95_ms": round(seg.latency_p95_ms),
                "baseline_latency_p95_ms": round(seg.baseline_latency_p95_ms or 0),
                "pooled_windows": pooled,
            })
        return out
