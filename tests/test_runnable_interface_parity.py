"""The Runnable interface of issue 17 side by side with langchain-core: same inputs, same results.

langchain-core runs here as the reference (on asyncio, which it needs); rillet runs the
same code on trio and asyncio. Only behaviour is compared.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest

import engine

lc_runnables = pytest.importorskip("langchain_core.runnables")
lc_tools = pytest.importorskip("langchain_core.tools")

BACKENDS = ["asyncio", "trio"]


def on_rillet(backend: str, work: Callable[[], Any]) -> Any:
    async def run() -> Any:
        with anyio.fail_after(10):
            return await work()

    return anyio.run(run, backend=backend)


def on_langchain(work: Callable[[], Any]) -> Any:
    async def run() -> Any:
        return await asyncio.wait_for(work(), 10)

    return asyncio.run(run())


async def lc_events(runnable: Any, value: Any, config: Any = None) -> list[dict[str, Any]]:
    return [e async for e in runnable.astream_events(value, config, version="v2")]


async def rl_events(runnable: Any, value: Any, config: Any = None) -> list[Any]:
    return [e async for e in runnable.astream_events(value, config, version="v2")]


def comparable(events: list[Any]) -> list[tuple[str, str, Any]]:
    """Each event's name, step and chunk, and its output at the end (which keys an end
    event carries besides is another part of issue 17, compared where it is built)."""
    shown = []
    for event in events:
        data = event["data"]
        if event["event"].endswith("_end"):
            data = data.get("output")
        elif event["event"].endswith("_start"):
            data = None
        shown.append((event["event"], event["name"], data))
    return shown


def plus_one(x: int) -> int:
    return x + 1


async def plus_two(x: int) -> int:
    return x + 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_lambda_with_both_variants_matches(backend: str) -> None:
    """``RunnableLambda(f, af)``: same name; the async call gives the same result."""
    ours = engine.RunnableLambda(plus_one, plus_two)
    theirs = lc_runnables.RunnableLambda(plus_one, plus_two)
    assert ours.get_name() == theirs.get_name() == "plus_one"
    assert on_rillet(backend, lambda: ours.ainvoke(1)) == on_langchain(lambda: theirs.ainvoke(1)) == 3


async def shout(text: str) -> AsyncIterator[str]:
    for letter in text:
        yield letter.upper()


@pytest.mark.parametrize("backend", BACKENDS)
def test_chain_on_async_generator_matches(backend: str) -> None:
    """``@chain`` on an async generator: same output, chunks and v2 events (kind, name, data)."""
    ours = engine.chain(shout)
    theirs = lc_runnables.chain(shout)
    assert (
        on_rillet(backend, lambda: ours.ainvoke("ab")) == on_langchain(lambda: theirs.ainvoke("ab")) == "AB"
    )

    async def rl_chunks() -> list[str]:
        return [c async for c in ours.astream("ab")]

    async def lc_chunks() -> list[str]:
        return [c async for c in theirs.astream("ab")]

    assert on_rillet(backend, rl_chunks) == on_langchain(lc_chunks)
    mine = on_rillet(backend, lambda: rl_events(ours, "ab"))
    reference = on_langchain(lambda: lc_events(theirs, "ab"))
    assert comparable(mine) == comparable(reference)


@pytest.mark.parametrize("backend", BACKENDS)
def test_function_config_matches(backend: str) -> None:
    """The config a function gets has the same tags, metadata and configurable values."""

    def look(x: int, config: Any) -> Any:
        return (config["tags"], config["metadata"], config["configurable"])

    config = {"tags": ["t"], "metadata": {"m": 1}, "configurable": {"k": "v"}}
    mine = on_rillet(backend, lambda: engine.RunnableLambda(look).ainvoke(1, config))
    reference = lc_runnables.RunnableLambda(look).invoke(1, config)
    assert mine == reference


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_id_matches(backend: str) -> None:
    """The root's events carry the config's ``run_id`` in both."""
    run_id = uuid.uuid4()

    def root_ids(events: list[Any]) -> set[str]:
        return {e["run_id"] for e in events if e["name"] == "plus_one"}

    mine = on_rillet(backend, lambda: rl_events(engine.RunnableLambda(plus_one), 1, {"run_id": run_id}))
    reference = on_langchain(lambda: lc_events(lc_runnables.RunnableLambda(plus_one), 1, {"run_id": run_id}))
    assert root_ids(mine) == root_ids(reference) == {str(run_id)}


def letters(_: Any) -> Iterator[str]:
    yield from "abc"


def test_passthrough_function_matches() -> None:
    """``RunnablePassthrough(func)``: same chunks through, the function gets the same whole input."""
    mine: list[Any] = []
    reference: list[Any] = []
    ours = engine.RunnableGenerator(letters) | engine.RunnablePassthrough(mine.append)
    theirs = lc_runnables.RunnableGenerator(letters) | lc_runnables.RunnablePassthrough(reference.append)
    assert list(ours.stream(None)) == list(theirs.stream(None))
    assert mine == reference == ["abc"]


def test_pick_assign_map_match() -> None:
    """``pick``, ``assign`` and ``map`` give the same outputs."""

    def branches(module: Any) -> Any:
        return module.RunnableParallel(a=plus_one, b=lambda x: x * 2, c=lambda x: 0)

    for keys in ("a", ["a", "b"], "zz", ["zz"]):
        assert branches(engine).pick(keys).invoke(1) == branches(lc_runnables).pick(keys).invoke(1)
    ours = engine.RunnableLambda(lambda x: {"a": x}).assign(b=lambda d: d["a"] + 1)
    theirs = lc_runnables.RunnableLambda(lambda x: {"a": x}).assign(b=lambda d: d["a"] + 1)
    assert ours.invoke(1) == theirs.invoke(1)
    assert sorted(map(dict, ours.stream(1)), key=str) == sorted(map(dict, theirs.stream(1)), key=str)
    assert engine.RunnableLambda(plus_one).map().invoke([1, 2]) == (
        lc_runnables.RunnableLambda(plus_one).map().invoke([1, 2])
    )
    assert (
        engine.RunnableLambda(plus_one).map().get_name()
        == lc_runnables.RunnableLambda(plus_one).map().get_name()
    )


def fails_on_two(x: int) -> int:
    if x == 2:
        raise ValueError("two")
    return x * 10


def test_batch_as_completed_matches() -> None:
    """``batch_as_completed`` gives the same pairs (in some order), failures included."""

    def pairs(module: Any) -> list[tuple[int, Any]]:
        found = module.RunnableLambda(fails_on_two).batch_as_completed([1, 2, 3], return_exceptions=True)
        return sorted(((i, repr(out)) for i, out in found), key=lambda p: p[0])

    assert pairs(engine) == pairs(lc_runnables)


@pytest.mark.parametrize("backend", BACKENDS)
def test_chosen_alternative_has_the_same_events(backend: str) -> None:
    """An alternative chosen per call publishes the events of the alternative alone, in both."""
    import nodes

    lc_prompts = pytest.importorskip("langchain_core.prompts")

    def build(prompts: Any, module: Any) -> Any:
        joke = prompts.PromptTemplate.from_template("a joke about {topic}")
        poem = prompts.PromptTemplate.from_template("a poem about {topic}")
        return joke.configurable_alternatives(
            module.ConfigurableField(id="which"), default_key="joke", poem=poem
        )

    def seen(events: list[Any]) -> list[tuple[str, str]]:
        # (Whether a prompt publishes a stream event is compared where events are built.)
        return [(e["event"], e["name"]) for e in events if not e["event"].endswith("_stream")]

    config = {"configurable": {"which": "poem"}}
    mine = on_rillet(backend, lambda: rl_events(build(nodes, engine), {"topic": "x"}, config))
    reference = on_langchain(lambda: lc_events(build(lc_prompts, lc_runnables), {"topic": "x"}, config))
    assert (
        seen(mine)
        == seen(reference)
        == [("on_prompt_start", "PromptTemplate"), ("on_prompt_end", "PromptTemplate")]
    )
    assert (
        mine[-1]["data"]["output"].to_string()
        == reference[-1]["data"]["output"].to_string()
        == "a poem about x"
    )


def test_bound_configurable_values_are_defaults() -> None:
    """A call's configurable value wins over a ``with_config`` one, in both."""

    def look(x: int, config: Any) -> Any:
        return config["configurable"]

    bound_config = {"configurable": {"z": 1, "y": 1}}
    call = {"configurable": {"z": 2}}
    mine = engine.RunnableLambda(look).with_config(bound_config).invoke(1, call)
    reference = lc_runnables.RunnableLambda(look).with_config(bound_config).invoke(1, call)
    assert mine == reference == {"z": 2, "y": 1}


def test_listener_runs_match() -> None:
    """Listeners get the same inputs and outputs (root, and a step inside a streamed chain)."""

    def record(into: list[Any], phase: str) -> Callable[[Any], None]:
        # langchain-core updates one Run object in place: copy what each call shows.
        if phase == "start":
            return lambda run: into.append((phase, run.name, dict(run.inputs)))
        return lambda run: into.append((phase, run.name, dict(run.inputs), dict(run.outputs)))

    root = lambda m, listen: m.RunnableLambda(plus_one, name="p").with_listeners(**listen)  # noqa: E731
    inner = lambda m, listen: m.RunnableLambda(lambda x: x * 10, name="q") | root(m, listen)  # noqa: E731
    # Invoked at the root, the input is known at start in both; streamed into a step
    # after another, it is not yet (langchain-core shows {"input": ""} then, as rillet).
    for build, call in ((root, lambda r: r.invoke(1)), (inner, lambda r: list(r.stream(1)))):
        mine: list[Any] = []
        reference: list[Any] = []
        call(build(engine, {"on_start": record(mine, "start"), "on_end": record(mine, "end")}))
        call(
            build(lc_runnables, {"on_start": record(reference, "start"), "on_end": record(reference, "end")})
        )
        assert mine == reference


def test_tool_injected_parameters_match() -> None:
    """A tool's ``callbacks`` and ``config`` parameters are not among its arguments, in both."""

    def correct_tool(word: str, callbacks: Any) -> str:
        """A tool that correctly propagates callbacks."""
        return word

    def with_config(word: str, config: lc_runnables.RunnableConfig) -> str:
        """Reads its config."""
        return word

    for function in (correct_tool, with_config):
        ours = engine_tool(function)
        theirs = lc_tools.tool(function)
        assert list(ours.args) == list(theirs.args) == ["word"]
        assert ours.invoke("hi") == theirs.invoke("hi") == "hi"


def engine_tool(function: Callable[..., Any]) -> Any:
    from nodes import tool

    return tool(function)
