"""The installed surface: every package is listed in pyproject.toml, and the public API is exported."""

from __future__ import annotations

import importlib
import tomllib
import types
from pathlib import Path

import pytest

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


SUBPACKAGES = sorted(
    "claude_pool." + p.parent.name
    for p in (ROOT / "lib" / "claude_pool").glob("*/__init__.py")
    if p.parent.name not in {"lua", "migrations"}
)


def _defined_in_the_project(value: object) -> bool:
    if isinstance(value, type | types.FunctionType | types.BuiltinFunctionType):
        return value.__module__.startswith("claude_pool")
    return True  # a constant: it belongs to whoever names it


def _public_names(module: types.ModuleType) -> set[str]:
    """The package's own public names: not private, not a submodule, not imported from a dependency."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and name != "annotations"
        and not isinstance(value, types.ModuleType)
        and _defined_in_the_project(value)
    }


@pytest.mark.parametrize("name", ["claude_pool", *SUBPACKAGES])
def test_all_is_exactly_what_the_package_exports(name: str) -> None:
    """``__all__`` names every public name of the package and only those: a newcomer reads the
    surface in one place, and a name dropped or added by mistake fails here."""
    package = importlib.import_module(name)
    exported = set(getattr(package, "__all__", ()))
    public = _public_names(package)
    if not exported and not public:
        return  # a package that only documents its modules (core, cli)
    assert exported == public - {"__version__"}, f"{name}: __all__ and the public names differ"


def test_the_library_top_level_holds_few_modules() -> None:
    """The house is read by its subpackages: at most eight modules at the top level."""
    top = [p.name for p in (ROOT / "lib" / "claude_pool").glob("*.py")]
    assert len(top) <= 8, top
