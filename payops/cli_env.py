"""Misspelled `PAYOPS_*` environment names: warned once per command with the closest known name.

pydantic-settings ignores names it does not know (extra="ignore"), so `PAYOPS_WEBHOK_URL` would be
dropped silently and the agent would run without its webhook. The known names come from the settings
classes themselves, so a field added there is known here without a list to keep in step.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable, Mapping

PREFIX = "PAYOPS_"
# Read outside the settings classes: by the test suite (a PostgreSQL to test against, re-recording cassettes).
OTHER_NAMES = ("PAYOPS_PG_BINDIR", "PAYOPS_RECORD_CASSETTES")
# difflib's ratio above which a name is offered as "did you mean": 0.75 catches one or two letters
# wrong, missing or swapped in these 15-40 character names without suggesting an unrelated setting.
CLOSE_MATCH_CUTOFF = 0.75


def known_names() -> set[str]:
    from payops.settings import Settings

    names = {PREFIX + f.upper() for f in Settings.model_fields}
    names |= {PREFIX + "API_" + f.upper() for f in _api_settings().model_fields}
    return names | set(OTHER_NAMES)


def _api_settings() -> type:
    """ApiSettings from api/settings.py alone: importing it through the payops.api package would load
    FastAPI and the whole HTTP app (1.4 s here) before every command that has a PAYOPS_ variable set."""
    import importlib.util
    import sys

    if "payops.api.settings" in sys.modules:
        return sys.modules["payops.api.settings"].ApiSettings
    package = importlib.util.find_spec("payops.api")
    assert package is not None and package.submodule_search_locations
    location = Path(next(iter(package.submodule_search_locations))) / "settings.py"
    spec = importlib.util.spec_from_file_location("payops_api_settings_names", location)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ApiSettings


def unknown_name_warnings(environ: Mapping[str, str], known: Iterable[str] | None = None) -> list[str]:
    """One line per PAYOPS_ name that no setting reads (pure: the caller prints)."""
    ours = sorted(k for k in environ if k.upper().startswith(PREFIX))
    if not ours:  # the usual case costs no import of pydantic-settings
        return []
    known_set = set(known) if known is not None else known_names()
    lines = []
    for name in ours:
        if name.upper() in known_set:  # pydantic-settings matches names case-insensitively
            continue
        close = difflib.get_close_matches(name.upper(), sorted(known_set), n=1, cutoff=CLOSE_MATCH_CUTOFF)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"payops: warning: unknown environment variable {name} is ignored{hint}")
    return lines
