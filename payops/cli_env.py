"""Misspelled `PAYOPS_*` environment names: warned once per command with the closest known name.

pydantic-settings ignores names it does not know (extra="ignore"), so `PAYOPS_WEBHOK_URL` would be
dropped silently and the agent would run without its webhook. The known names are read from the settings
classes' source, so a field added to one is known here at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path

PREFIX = "PAYOPS_"
# Read outside the settings classes: by the test suite (a PostgreSQL to test against, re-recording cassettes).
OTHER_NAMES = ("PAYOPS_PG_BINDIR", "PAYOPS_RECORD_CASSETTES", "PAYOPS_API_KEY")  # the last: the CLI's operator key
# Read by the key provider (storage/keys.py): PAYOPS_KEY_<NAME> for any key name, a terminal's included.
OTHER_PREFIXES = ("PAYOPS_KEY_",)
# difflib's ratio above which a name is offered as "did you mean": 0.75 catches one or two letters
# wrong, missing or swapped in these 15-40 character names without suggesting an unrelated setting.
CLOSE_MATCH_CUTOFF = 0.75


# Every settings class that reads PAYOPS_* names: (package, file in it, class). A test checks that
# each `env_prefix="PAYOPS_..."` in the code base is listed here.
SETTINGS_CLASSES = (
    ("payops", "settings.py", "Settings"),
    ("payops.api", "settings.py", "ApiSettings"),
    ("payops.palmpay", "otp_delivery.py", "OtpDeliverySettings"),
)


def known_names() -> set[str]:
    """PAYOPS_ names the settings classes read, from their source (no import: loading the API package
    would pull in FastAPI, 1.4 s here, before every command that has a PAYOPS_ variable set)."""
    names = set(OTHER_NAMES)
    for package, file_name, class_name in SETTINGS_CLASSES:
        prefix, fields = settings_fields(_source_of(package, file_name), class_name)
        names |= {prefix + f.upper() for f in fields}
    return names


def _source_of(package: str, file_name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)  # imports the parents of `package`, not `package` itself
    assert spec is not None and spec.submodule_search_locations, package
    return Path(next(iter(spec.submodule_search_locations))) / file_name


def settings_fields(path: Path, class_name: str) -> tuple[str, list[str]]:
    """A pydantic-settings class's env_prefix and field names, read from its source."""
    import ast

    tree = ast.parse(path.read_text())
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name)
    prefix = ""
    fields: list[str] = []
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id == "model_config":
                for kw in getattr(node.value, "keywords", []):
                    if kw.arg == "env_prefix" and isinstance(kw.value, ast.Constant):
                        prefix = str(kw.value.value)
            elif not node.target.id.startswith("_"):
                fields.append(node.target.id)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "model_config"
                                                  for t in node.targets):
            for kw in getattr(node.value, "keywords", []):
                if kw.arg == "env_prefix" and isinstance(kw.value, ast.Constant):
                    prefix = str(kw.value.value)
    return prefix, fields


def unknown_name_warnings(environ: Mapping[str, str], known: Iterable[str] | None = None) -> list[str]:
    """One line per PAYOPS_ name that no setting reads (pure: the caller prints)."""
    ours = sorted(k for k in environ if k.upper().startswith(PREFIX))
    if not ours:  # the usual case costs no import of pydantic-settings
        return []
    known_set = set(known) if known is not None else known_names()
    lines = []
    for name in ours:
        if name.upper() in known_set or name.upper().startswith(OTHER_PREFIXES):  # case-insensitive, as pydantic's
            continue
        close = difflib.get_close_matches(name.upper(), sorted(known_set), n=1, cutoff=CLOSE_MATCH_CUTOFF)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"payops: warning: unknown environment variable {name} is ignored{hint}")
    return lines
