"""Case files, recording and the shipped corpus."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from payops.evals.cases import DEFAULT_CORPUS, ActionSpec, Case, CaseError, Expected, discover, dump_case, load_case
from payops.evals.corpus import full_plan
from payops.evals.record import parse_action, record_from_events
from payops.evals.scenarios import SCENARIO_NAMES
from payops.models import Category
from payops.signals.simulator import SCENARIOS, default_network

MAX_CORPUS_BYTES = 6 * 1024 * 1024  # "a few MB at most"


def test_case_yaml_round_trips(tiny_corpus: Path) -> None:
    case = load_case(tiny_corpus / "route-known")
    again = Case.model_validate(__import__("yaml").safe_load(dump_case(case)))
    assert again == case.model_copy(update={"path": None})
    assert case.generator is not None and case.generator.scenario == "route_outage"
    assert case.expected.acceptable("reroute_traffic", {"route": "psp_a"})
    assert not case.expected.acceptable("reroute_traffic", {"route": "psp_b"})


def test_tag_filters_are_and_across_tags_and_or_within_one(tiny_corpus: Path) -> None:
    assert [c.id for c in discover(tiny_corpus, ["control"])] == ["quiet-control"]
    assert [c.id for c in discover(tiny_corpus, ["network", "simulator"])] == ["route-known"]
    assert len(discover(tiny_corpus, ["network|control"])) == 2
    assert discover(tiny_corpus, ["network", "control"]) == []


@pytest.mark.parametrize("breakage, message", [
    (lambda d: (d / "case.yaml").write_text("id: [unclosed"), "not valid YAML"),
    (lambda d: (d / "case.yaml").write_text((d / "case.yaml").read_text().replace("id: route-known", "id: other")),
     "differs from its folder"),
    (lambda d: (d / "events.jsonl.gz").unlink(), "no events.jsonl.gz"),
    (lambda d: (d / "case.yaml").write_text(
        (d / "case.yaml").read_text().replace("category: network", "category: weather", 1)), "category"),
])
def test_a_broken_case_gets_a_clear_error(tiny_corpus: Path, tmp_path: Path, breakage, message: str) -> None:
    import shutil

    folder = tmp_path / "route-known"
    shutil.copytree(tiny_corpus / "route-known", folder)
    breakage(folder)
    with pytest.raises(CaseError, match=message):
        load_case(folder)


def test_labels_must_be_consistent() -> None:
    with pytest.raises(ValueError, match="acceptable action"):
        Expected(category=Category.ISSUER)
    with pytest.raises(ValueError, match="onset"):
        Case(id="x", description="x",
             expected=Expected(category=Category.ISSUER, acceptable_actions=(ActionSpec(tool="alert_ops", target={}),)))
    with pytest.raises(ValueError, match="healthy"):
        Case(id="x", description="x", control=True,
             expected=Expected(category=Category.USER, acceptable_actions=(ActionSpec(tool="no_action", target={}),)))


def test_parse_action_reads_targets_and_any_target() -> None:
    assert parse_action("suppress_path:bank=FNB,route=psp_a") == ActionSpec(tool="suppress_path",
                                                                            target={"bank": "FNB", "route": "psp_a"})
    assert parse_action("alert_ops:*") == ActionSpec(tool="alert_ops", target={})
    assert parse_action("reroute_traffic") == ActionSpec(tool="reroute_traffic", target=None)
    with pytest.raises(CaseError, match="dim=value"):
        parse_action("suppress_path:bank")


def test_record_from_any_event_file_keeps_bad_lines_and_places_the_onset(tmp_path: Path) -> None:
    src = tmp_path / "feed.jsonl"
    good = {"ts": 1000.5, "payment_id": "p1", "method": "card", "route": "r", "bank": "b", "issuer": "VISA",
            "status": "success", "latency_ms": 10}
    src.write_bytes(orjson.dumps(good) + b"\n{not json\n" + orjson.dumps({**good,
                                                                          "ts": 1001.0, "payment_id": "p2"}) + b"\n")
    case, report = record_from_events("fed", src, tmp_path / "corpus", category="issuer", onset=None, onset_offset=30.0,
                                      target={"bank": "b"}, actions=[parse_action("alert_ops:bank=b")])
    assert report.bad_count == 1 and report.bad[0].line_no == 2
    assert case.onset == 1030.5 and case.origin == "recorded"
    with gzip.open(case.events_path, "rb") as fh:
        assert fh.read().count(b"\n") == 3  # nothing lost: the agent must skip the bad line itself
    with pytest.raises(CaseError, match="already exists"):
        record_from_events("fed", src, tmp_path / "corpus", category="healthy", onset=None)
    with pytest.raises(CaseError, match="acceptable action"):
        record_from_events("fed2", src, tmp_path / "corpus", category="network", onset=1000.0)


# -- the shipped corpus ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus() -> list[Case]:
    return discover(DEFAULT_CORPUS)


def test_corpus_is_big_enough_and_covers_every_category_and_scenario(corpus: list[Case]) -> None:
    assert len(corpus) >= 40
    assert sum(c.control for c in corpus) >= 8
    assert {c.expected.category for c in corpus} == set(Category)
    generated = {c.generator.scenario for c in corpus if c.generator} | {t for c in corpus for t in c.tags}
    assert set(SCENARIOS) - {"demo"} <= generated
    assert {"easy", "medium", "hard"} <= {c.difficulty for c in corpus}
    assert any(c.palm for c in corpus)
    hand = [c for c in corpus if c.origin == "hand-edited"]
    assert len(hand) >= 3 and all(c.edits and c.generator is None for c in hand)


def test_corpus_matches_its_plan_and_uses_no_default_names(corpus: list[Case]) -> None:
    assert sorted(c.id for c in corpus) == sorted(s.case_id for s in full_plan())
    default = default_network()
    default_names = set(default.banks) | set(default.routes) | set(default.terminals)
    for c in corpus:
        if c.generator is None:
            continue
        net = c.generator.network
        used = set(net["banks"]) | set(net["routes"]) | set(net["terminals"])
        assert not used & default_names, (c.id, used & default_names)
        assert 50 <= net["payments_per_minute"] <= 2000
        assert c.generator.scenario in SCENARIO_NAMES


def test_corpus_stays_small(corpus: list[Case]) -> None:
    assert sum(c.events_path.stat().st_size for c in corpus) < MAX_CORPUS_BYTES
