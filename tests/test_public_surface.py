"""The public surface: every public module's ``__all__`` is a tuple naming what it exports."""

from __future__ import annotations

import importlib
import types

import pytest

MODULES = ["engine", "nodes", "engine.testing"]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_a_tuple_of_exactly_the_public_names(name: str) -> None:
    """``__all__`` is a tuple, lists only defined names, and misses no public name."""
    module = importlib.import_module(name)
    exported = module.__all__
    assert isinstance(exported, tuple)
    assert len(set(exported)) == len(exported)
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names {item!r}, which is not defined"
    public = {
        key
        for key, value in vars(module).items()
        if not key.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(exported), f"public but not exported: {public - set(exported)}"


def test_engine_does_not_import_nodes() -> None:
    """The engine package never imports the nodes package."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "engine"
    offenders = [
        str(path)
        for path in root.rglob("*.py")
        if "import nodes" in path.read_text() or "from nodes" in path.read_text()
    ]
    assert offenders == []
