"""LangGraph Studio / Server read the graph's schemas: they must render on Python 3.11 (the README's minimum)."""

from __future__ import annotations

import json

from payops.graph.builder import graph


def test_the_input_schema_is_the_tick_input() -> None:
    schema = graph.get_input_jsonschema()
    assert schema["properties"]["window_end"]["type"] == "number"


def test_the_output_schema_names_the_decision_fields() -> None:
    schema = graph.get_output_jsonschema()
    assert {"tick", "window_end", "decision_id", "diagnosis", "proposal", "verdict"} <= set(schema["properties"])
    json.dumps(schema)  # serialisable, as the Server's /assistants/{id}/schemas returns it


def test_the_context_schema_serialises_without_the_live_services() -> None:
    schema = graph.get_context_jsonschema()
    text = json.dumps(schema)
    assert "services" in schema["properties"]
    assert "EventWindow" not in text
