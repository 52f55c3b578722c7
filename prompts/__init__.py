"""Prompt templates: versioned text files, not code.

A template is `<name>.<version>.md` in this folder, with `$placeholders`
(string.Template). Values are substituted once and never re-read as template
text, so data carrying `$` or braces stays data. A new wording is a new file
(v2 next to v1); the version travels with every LLM call record, so a decision
can always be traced to the exact words the model saw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Template

from payops.errors import NotFound

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION = re.compile(r"^v[0-9]+$")


class PromptError(NotFound, LookupError):
    """No such template, or a value missing for one of its placeholders."""


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    text: str

    @property
    def ref(self) -> str:
        return f"{self.name}.{self.version}"

    @property
    def placeholders(self) -> frozenset[str]:
        found = set()
        for match in Template.pattern.finditer(self.text):
            named = match.group("named") or match.group("braced")
            if named:
                found.add(named)
        return frozenset(found)

    def render(self, **values: str) -> str:
        missing = self.placeholders - set(values)
        if missing:
            raise PromptError(f"prompt {self.ref} needs {', '.join(sorted(missing))}")
        return Template(self.text).substitute(values)


def available(name: str) -> list[str]:
    """Versions of a template, oldest first."""
    files = (f.name for f in resources.files(__package__).iterdir())
    versions = [f[len(name) + 1 : -3] for f in files if f.startswith(name + ".") and f.endswith(".md")]
    return sorted((v for v in versions if _VERSION.match(v)), key=lambda v: int(v[1:]))


@lru_cache(maxsize=64)
def load(name: str, version: str | None = None) -> Prompt:
    """The template `name` at `version` (the newest when None)."""
    if not _NAME.match(name) or (version is not None and not _VERSION.match(version)):
        raise PromptError(f"bad prompt reference {name!r} {version!r}")
    versions = available(name)
    if not versions:
        raise PromptError(f"no prompt named {name!r}")
    chosen = version or versions[-1]
    if chosen not in versions:
        raise PromptError(f"prompt {name!r} has no version {chosen} (have {', '.join(versions)})")
    text = resources.files(__package__).joinpath(f"{name}.{chosen}.md").read_text(encoding="utf-8")
    return Prompt(name, chosen, text)
