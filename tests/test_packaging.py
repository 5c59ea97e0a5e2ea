"""The installed surface: every package is listed in pyproject.toml, and the public API is exported."""

from __future__ import annotations

import tomllib
from pathlib import Path

import claude_pool

ROOT = Path(__file__).resolve().parents[1]


def _packages_on_disk() -> set[str]:
    found = set()
    for base, name in ((ROOT / "lib", None), (ROOT / "flows", "claude_pool_flows"), (ROOT / "tasks", "claude_pool_tasks")):
        for init in base.rglob("__init__.py"):
            parts = init.parent.relative_to(base).parts
            found.add(".".join(((name,) if name else ()) + parts))
    return found


def test_every_package_folder_is_installed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert _packages_on_disk() <= listed


def test_all_names_what_the_package_exports() -> None:
    exported = set(claude_pool.__all__)
    assert exported, "claude_pool.__all__ is empty"
    for name in exported:
        assert hasattr(claude_pool, name), name
