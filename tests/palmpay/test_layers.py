"""Palm-pay is a backend of its own: it imports none of the agent's packages, and its modules keep one job each."""

from __future__ import annotations

import ast
from pathlib import Path

PALMPAY = Path(__file__).resolve().parents[2] / "palmpay"
# The shared kernel every layer may use (issue 19): the storage kernel, settings, models, errors, files.
ALLOWED = ("payops.palmpay", "payops.storage", "payops.settings", "payops.models", "payops.errors", "payops.files")
MAX_LINES = 500


def _payops_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n == "payops" or n.startswith("payops.")}


def test_palmpay_imports_none_of_the_agents_packages():
    offending = {
        f"{path.name}: {name}"
        for path in PALMPAY.glob("*.py")
        for name in _payops_imports(path)
        if not name.startswith(ALLOWED)
    }
    assert not offending


def test_palmpay_modules_stay_under_500_lines():
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in PALMPAY.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
