"""The top-level folders are the package's subpackages twice over: by pyproject.toml's package-dir (what an
install builds) and by a link in payops/ (what tools that walk the package on disk, mypy and import-linter,
see). They must name the same folders, or one view of the package silently lacks a part."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _mapped_top_level_folders() -> dict[str, str]:
    """payops.<name> -> its folder, for the subpackages mapped outside payops/ (nested ones live inside)."""
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {name.removeprefix("payops."): folder for name, folder in dirs.items()
            if name.count(".") == 1 and "/" not in folder}


def test_every_mapped_top_level_folder_has_its_link_in_payops() -> None:
    mapped = _mapped_top_level_folders()
    assert {"graph", "signals", "palmpay", "chat"} <= set(mapped)  # the mapping was read, not an empty dict
    for name, folder in mapped.items():
        link = ROOT / "payops" / name
        assert link.is_symlink(), f"payops/{name} should link to ../{folder}"
        assert link.resolve() == (ROOT / folder).resolve(), f"payops/{name} points elsewhere"


def test_every_link_in_payops_is_a_mapped_subpackage() -> None:
    links = {p.name for p in (ROOT / "payops").iterdir() if p.is_symlink()}
    assert links == set(_mapped_top_level_folders())
