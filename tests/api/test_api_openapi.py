"""The OpenAPI schema: committed, reproducible byte for byte, complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from api_helpers import Api
from typer.testing import CliRunner

from payops.api import openapi_schema, schema_json
from payops.cli import _register_subcommands
from payops.cli import app as cli_app

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "openapi.json"


def test_committed_schema_is_the_apps() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == schema_json(openapi_schema()), \
        "openapi.json is out of date: run `payops openapi > openapi.json`"


def test_cli_prints_it_byte_for_byte_without_touching_state(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAYOPS_STATE_DIR", str(tmp_path / "never"))
    _register_subcommands()
    result = CliRunner().invoke(cli_app, ["openapi"])
    assert result.exit_code == 0
    assert result.stdout == COMMITTED.read_text(encoding="utf-8")
    assert list(tmp_path.iterdir()) == []


def test_stable_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    code = ("import sys; from payops.api import openapi_schema, schema_json; "
            "sys.stdout.write(schema_json(openapi_schema()))")
    outputs = set()
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
    assert outputs == {COMMITTED.read_text(encoding="utf-8")}


def test_schema_is_complete() -> None:
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "payops_<key id>_<secret>",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"]}
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary") and op.get("operationId"), where
            ok = [s for s in op["responses"] if s.startswith("2")]
            assert len(ok) == 1, where
            assert op["responses"][ok[0]]["content"], where
            if path != "/healthz":
                assert {"401", "403"} <= set(op["responses"]), where
            for status, response in op["responses"].items():
                if not status.startswith("2"):
                    error_body = {"$ref": "#/components/schemas/ErrorBody"}
                    assert response["content"]["application/json"]["schema"] == error_body, where
            body = op.get("requestBody")
            if body:
                assert "413" in op["responses"] and "422" in op["responses"], where
                ref = body["content"]["application/json"]["schema"]
                ref = ref.get("$ref") or next(s["$ref"] for s in ref.get("anyOf", []) if "$ref" in s)
                model = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
                assert model["additionalProperties"] is False, where
    for model, field in (("CreateLinkRequest", "palm_template_ref"), ("CreateLinkRequest", "payshap_proxy"),
                         ("PaymentRequest", "palm_template_ref"), ("VerifyRequest", "otp")):
        assert schema["components"]["schemas"][model]["properties"][field]["writeOnly"] is True


def test_served_schema_needs_a_key(api: Api) -> None:
    assert api.client.get("/openapi.json").status_code == 401
    served = api.client.get("/openapi.json", headers=api.as_("terminal"))
    assert served.status_code == 200 and served.json() == json.loads(COMMITTED.read_text(encoding="utf-8"))
    for hidden in ("/docs", "/redoc"):
        assert api.client.get(hidden).status_code == 404
