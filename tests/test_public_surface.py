"""The public surface: every public module's ``__all__`` is a tuple naming what it exports."""

from __future__ import annotations

import importlib
import inspect
import types

import pytest

MODULES = [
    "engine",
    "nodes",
    "engine.testing",
    "engine.view",
    "engine.trace",
    "engine.sse",
    "engine.otel",
    "engine.ray",
]


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


def test_nodes_use_only_the_engines_public_names() -> None:
    """The nodes package imports the engine through its public modules only."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent / "nodes"
    private = re.compile(r"(from|import)\s+engine\._")
    offenders = [str(path) for path in root.rglob("*.py") if private.search(path.read_text())]
    assert offenders == []


# The hooks a user's subclass overrides (ARCHITECTURE.md, "Extension points"): each public,
# documented where it is defined, and reachable from a class the package exports.
HOOKS = [
    ("engine", "Runnable", "output_accumulation"),
    ("engine", "Runnable", "start_event_input"),
    ("engine", "TransformNode", "transform_stream"),
    ("engine", "TransformNode", "reads_current_step"),
    ("engine", "AggregateNode", "compute"),
    ("engine", "AggregateNode", "reads_current_step"),
    ("engine", "HostingNode", "host"),
    ("nodes", "BaseChatModel", "stream_chunks"),
    ("nodes", "BaseLLM", "stream_text"),
    ("nodes", "BaseRetriever", "get_relevant_documents"),
]

# What the hooks were called before they were public: nothing answers to them now, so no hook
# is spelled two ways (a subclass overriding an old name overrides nothing the engine calls).
RETIRED = [
    "_accumulation",
    "_compute",
    "_transform",
    "_stream",
    "_reads_current_step",
    "_start_input",
    "_retrieve",
]


@pytest.mark.parametrize(("module_name", "class_name", "hook"), HOOKS)
def test_each_hook_is_public_and_documented_on_an_exported_class(
    module_name: str, class_name: str, hook: str
) -> None:
    """Each extension point is an attribute of an exported class, with a docstring or a ``#:`` doc."""
    module = importlib.import_module(module_name)
    assert class_name in module.__all__
    cls = getattr(module, class_name)
    assert hasattr(cls, hook)
    owner = next(klass for klass in cls.__mro__ if hook in vars(klass))
    value = vars(owner)[hook]
    if callable(value) or isinstance(value, property):
        assert inspect.getdoc(value), f"{owner.__name__}.{hook} has no docstring"
    else:
        # A class attribute is documented by the ``#:`` comment lines right above it.
        lines = inspect.getsource(owner).splitlines()
        at = next(n for n, line in enumerate(lines) if line.strip().startswith(f"{hook}:"))
        assert lines[at - 1].strip().startswith("#:"), f"{owner.__name__}.{hook} is undocumented"


@pytest.mark.parametrize(
    "class_name", ["Runnable", "TransformNode", "AggregateNode", "BaseChatModel", "BaseLLM", "BaseRetriever"]
)
def test_no_hook_answers_to_its_old_private_name(class_name: str) -> None:
    """The private names the hooks had before are gone from every hook class."""
    import engine
    import nodes

    cls = getattr(engine, class_name, None) or getattr(nodes, class_name)
    assert [name for name in RETIRED if hasattr(cls, name)] == []


def test_event_api_is_exported() -> None:
    """The event shape and its name functions are public from ``engine``, ``Event`` being ``StreamEvent``."""
    import engine

    for name in ("StreamEvent", "Event", "EventPhase", "event_name", "phase_of", "kind_of"):
        assert name in engine.__all__
    assert engine.Event is engine.StreamEvent
    assert engine.phase_of(engine.event_name("chain", engine.EventPhase.END)) is engine.EventPhase.END
