"""The one exception tree (payops/errors.py): every error payops raises on purpose is a PayopsError, and
each branch has one exit status (payops/cli_errors.py) and one HTTP status (api/errors.py)."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from payops.api.errors import HTTP_STATUSES, exception_handlers
from payops.cli_errors import exit_code, one_line
from payops.errors import BadInput, Conflict, NotFound, PayopsError, Unavailable
from payops.settings import StateDirError

ROOT = Path(__file__).resolve().parents[2]


_ERROR_NAMES = ("Error", "Exception", "Refused", "Locked", "Held", "Problem", "Failed", "Pending", "Exhausted",
                "Expired", "Input", "NotFound", "Conflict", "Unavailable")


def _base_name(base: ast.expr) -> str:
    return base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""


def _exception_classes() -> list[tuple[str, str]]:
    """(module, class) for every public class of the package with an exception-like base (read, not imported)."""
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    found = []
    for package, folder in folders.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            module = package if path.stem == "__init__" else f"{package}.{path.stem}"
            for node in ast.parse(path.read_text()).body:
                if (isinstance(node, ast.ClassDef) and not node.name.startswith("_")
                        and any(_base_name(base).endswith(_ERROR_NAMES) for base in node.bases)):
                    found.append((module, node.name))
    return found


def test_the_tree_finds_the_known_errors() -> None:
    names = {name for _, name in _exception_classes()}
    assert {"EventError", "PalmPayError", "ApprovalNotPending", "ProposalError", "KeyProblem"} <= names


@pytest.mark.parametrize(("module", "name"), _exception_classes())
def test_every_error_payops_defines_is_a_payops_error(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, BaseException)
    assert issubclass(cls, PayopsError), f"{module}.{name}"


def test_errors_keep_the_builtin_base_callers_catch() -> None:
    from payops.signals.events import EventError
    from payops.tools.actions import ProposalError

    assert issubclass(EventError, ValueError) and issubclass(EventError, BadInput)
    assert issubclass(ProposalError, ValueError)


@pytest.mark.parametrize(("error", "status"), [
    (BadInput("x"), 2), (NotFound("x"), 2), (Conflict("x"), 1), (Unavailable("x"), 75), (PayopsError("x"), 1),
])
def test_each_branch_has_one_exit_status(error: PayopsError, status: int) -> None:
    assert exit_code(error) == status
    assert one_line(error) == ("x", status)


def test_an_error_that_knows_its_exit_status_keeps_it() -> None:
    assert exit_code(StateDirError("the state folder is a file", 2)) == 2
    assert exit_code(StateDirError("read-only")) == 1


def _app() -> TestClient:
    app = FastAPI(exception_handlers=exception_handlers())

    @app.get("/raise/{branch}")
    def _raise(branch: str) -> None:
        raise {"bad": BadInput, "missing": NotFound, "conflict": Conflict, "down": Unavailable}[branch]("secret 4111")

    @app.get("/v1/palm/raise")
    def _raise_palm() -> None:
        raise BadInput("secret 4111")

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(("branch", "status"), [("bad", 422), ("missing", 404), ("conflict", 409), ("down", 503)])
def test_each_branch_has_one_http_status_and_its_message_never_leaves(branch: str, status: int) -> None:
    response = _app().get(f"/raise/{branch}")
    assert response.status_code == status
    assert "secret" not in response.text
    assert response.json()["code"] == HTTP_STATUSES[type(_branch(branch))][1]


def _branch(name: str) -> PayopsError:
    return {"bad": BadInput, "missing": NotFound, "conflict": Conflict, "down": Unavailable}[name]("x")


def test_bad_input_on_a_palm_pay_path_is_the_spec_s_invalid_input_with_the_card_fallback() -> None:
    body = _app().get("/v1/palm/raise").json()
    assert body["code"] == "PALM_PAY_INVALID_INPUT" and body["fallback"] == "card"
