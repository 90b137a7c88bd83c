"""Routing: ``RunnableBranch`` and functions that return a runnable (both backends).

A branch evaluates its conditions on the whole input, then launches the chosen runnable
under its own step; the chosen branch streams chunk by chunk and its events nest under
the branch. A function step that returns a runnable runs it as a nested run whose
chunks stream through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import trio

from engine import (
    CompositionError,
    EventBus,
    Runnable,
    RunnableBranch,
    RunnableGenerator,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
)
from engine.testing import GatedSource, Probe, check_event_order, cleanup_guard
from nodes import AIMessageChunk, JsonOutputParser, ScriptedChatModel, StrOutputParser

HANG_GUARD = 5.0  # seconds: bounds a wait that should end at once, never paces a test


async def collect_events(
    runnable: Runnable[Any, Any], value: Any
) -> tuple[list[dict[str, Any]], BaseException | None]:
    """Every event of a run, and the error it raised (if any)."""
    events: list[dict[str, Any]] = []
    error: BaseException | None = None
    with anyio.fail_after(HANG_GUARD):
        try:
            async with runnable.astream_events(value) as stream:
                async for event in stream:
                    events.append(dict(event))
        except Exception as exc:
            error = exc
    return events, error


def named(events: list[dict[str, Any]], name: str, phase: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["name"] == name and (phase is None or e["event"].endswith(f"_{phase}"))]


# -- routing ---------------------------------------------------------------------------


async def test_sync_async_and_runnable_conditions_pick_the_first_that_holds() -> None:
    """Each kind of condition routes to its branch; the first that holds wins; else the default."""

    async def is_big(value: int) -> bool:
        return value > 100

    branch: RunnableBranch[int, str] = RunnableBranch(
        (lambda value: value < 0, lambda value: "negative"),
        (is_big, RunnableLambda(lambda value: "big")),
        (RunnableLambda(lambda value: value % 2 == 0), lambda value: "even"),
        (lambda value: value > 100, lambda value: "never: is_big came first"),
        lambda value: "odd",
    )
    with anyio.fail_after(HANG_GUARD):
        assert [await branch.ainvoke(v) for v in (-5, 500, 4, 7)] == ["negative", "big", "even", "odd"]
        assert await branch.abatch([-1, 101, 2, 3]) == ["negative", "big", "even", "odd"]


def test_the_sync_api_routes_too() -> None:
    """``invoke`` and ``batch`` route as ``ainvoke`` does."""
    branch = RunnableBranch((lambda v: v == "a", lambda v: "A"), lambda v: "other")
    assert branch.invoke("a") == "A"
    assert branch.batch(["a", "b"]) == ["A", "other"]


async def test_conditions_after_the_one_that_holds_are_not_evaluated() -> None:
    """Evaluation stops at the first condition that holds; later ones never run."""
    evaluated: list[str] = []

    def condition(name: str, answer: bool) -> Any:
        def check(value: Any) -> bool:
            evaluated.append(name)
            return answer

        return check

    branch = RunnableBranch(
        (condition("first", False), lambda v: 1),
        (condition("second", True), lambda v: 2),
        (condition("third", True), lambda v: 3),
        lambda v: 0,
    )
    with anyio.fail_after(HANG_GUARD):
        assert await branch.ainvoke(None) == 2
    assert evaluated == ["first", "second"]


async def test_targets_are_coerced_as_pipe_does_and_see_the_whole_input() -> None:
    """Dict targets are parallel steps, functions are lambdas; conditions and targets get
    the upstream stream added up (one input, not chunk by chunk)."""

    async def letters(chunks: AsyncIterator[Any]) -> AsyncIterator[str]:
        async for _ in chunks:
            for letter in "abc":
                yield letter

    seen: list[Any] = []

    def record(value: str) -> bool:
        seen.append(value)
        return value == "abc"

    branch = RunnableBranch((record, {"upper": str.upper, "same": RunnablePassthrough()}), lambda v: "no")
    with anyio.fail_after(HANG_GUARD):
        assert await (RunnableGenerator(letters) | branch).ainvoke(None) == {"upper": "ABC", "same": "abc"}
    assert seen == ["abc"]


async def test_a_condition_returning_an_awaitable_is_awaited() -> None:
    """A plain function that returns a coroutine (a lambda around an async check) is awaited,
    not taken as a true value."""

    async def never(value: Any) -> bool:
        return False

    branch = RunnableBranch((lambda v: never(v), lambda v: "wrongly true"), lambda v: "default")
    with anyio.fail_after(HANG_GUARD):
        assert await branch.ainvoke(1) == "default"


async def test_a_branch_nests_in_branches_and_parallel_steps() -> None:
    """A branch may be a branch's target or a parallel step's value."""
    inner = RunnableBranch((lambda v: v > 10, lambda v: "huge"), lambda v: "big")
    outer = RunnableBranch((lambda v: v > 0, inner), lambda v: "small")
    both = RunnableParallel(route=outer, double=lambda v: v * 2)
    with anyio.fail_after(HANG_GUARD):
        assert [await outer.ainvoke(v) for v in (50, 5, -5)] == ["huge", "big", "small"]
        assert await both.ainvoke(50) == {"route": "huge", "double": 100}


# -- streaming -------------------------------------------------------------------------


async def test_the_chosen_branch_streams_each_chunk_before_it_makes_the_next() -> None:
    """Each chunk of the chosen branch reaches the consumer while the branch is still running."""
    source: GatedSource[str] = GatedSource(["a", "b", "c"])
    probe: Probe[str] = Probe()
    chain = RunnableBranch((lambda v: v == "go", source), lambda v: "no") | probe
    with anyio.fail_after(HANG_GUARD):
        async with chain.astream("go") as chunks:
            for expected in ("a", "b"):
                source.release(1)
                assert await chunks.__anext__() == expected
                assert source.running == 1 and source.produced == probe.seen.index(expected) + 1
            source.release_all()
            assert [chunk async for chunk in chunks] == ["c"]
    assert source.finished == 1 and source.cancelled == 0
    assert probe.seen == ["a", "b", "c"]


@pytest.mark.trio
async def test_a_routed_model_streams_its_tokens_as_they_come(autojump_clock: trio.testing.MockClock) -> None:
    """Under the mock clock, a model chosen by a branch delivers token k at time k (one per second)."""
    model = ScriptedChatModel(["one two three"], delay=1.0)
    chain = RunnableBranch((lambda v: "x" in v, model), ScriptedChatModel(["no"])) | StrOutputParser()
    start = trio.current_time()
    arrivals: list[tuple[str, float]] = []
    async with chain.astream("x") as chunks:
        async for chunk in chunks:
            arrivals.append((chunk, trio.current_time() - start))
    assert arrivals == [("one", 1.0), (" two", 2.0), (" three", 3.0)]


async def test_leaving_early_stops_the_chosen_branch_and_leaves_nothing_behind() -> None:
    """A consumer that leaves after one chunk stops the chosen branch; no task is left running."""
    source: GatedSource[int] = GatedSource(range(100))
    branch = RunnableBranch((lambda v: True, source), lambda v: -1)
    async with cleanup_guard():
        with anyio.fail_after(HANG_GUARD):
            source.release(3)
            async with branch.astream(0) as chunks:
                async for chunk in chunks:
                    assert chunk == 0
                    break
    assert source.finished == 1 and source.cancelled == 1 and source.produced < 100


async def test_leaving_while_a_condition_runs_cancels_it_and_every_step_ends() -> None:
    """A run stopped while a condition is still deciding cancels it; every started step ends."""
    deciding = anyio.Event()

    async def slow(value: Any) -> bool:
        deciding.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    target: GatedSource[int] = GatedSource([1])
    branch = RunnableBranch((RunnableLambda(slow), target), lambda v: -1)
    bus = EventBus()
    async with cleanup_guard(), bus.subscribe(capacity=100) as monitor:
        with anyio.fail_after(HANG_GUARD):
            async with branch.astream(0, {"bus": bus}) as chunks:
                await deciding.wait()
                chunks.cancel()
                assert [chunk async for chunk in chunks] == []
        events = monitor.receive_available(100)
    check_event_order(events)
    assert target.started == 0
    assert [e["event"] for e in named(events, "slow")] == ["on_chain_start", "on_chain_error"]
    assert named(events, "RunnableBranch", "error")


# -- events ----------------------------------------------------------------------------


async def test_conditions_and_the_chosen_branch_nest_under_the_branch_step() -> None:
    """A runnable condition is a nested run tagged condition:N, the chosen branch's steps are
    children tagged branch:N, the other branches make no events, and the branch step
    streams the chosen branch's chunks; the order rules hold."""
    is_joke = RunnableLambda(lambda text: "joke" in text, func_name="is_joke")
    joker = ScriptedChatModel(["ha ha"], name="joker")
    teacher = ScriptedChatModel(["facts"], name="teacher")
    router = RunnableBranch((is_joke, joker), teacher).with_config(run_name="router")
    chain = RunnableLambda(lambda text: text, func_name="prep") | router | StrOutputParser()

    events, error = await collect_events(chain, "a joke please")
    assert error is None
    check_event_order(events)
    (router_start,) = named(events, "router", "start")
    router_id = router_start["run_id"]
    (condition_start,) = named(events, "is_joke", "start")
    (model_start,) = named(events, "joker", "start")
    assert condition_start["parent_ids"][-1] == router_id and "condition:1" in condition_start["tags"]
    assert model_start["parent_ids"][-1] == router_id and "branch:1" in model_start["tags"]
    assert named(events, "teacher") == []
    # The route is decided before the chosen branch starts.
    assert events.index(named(events, "is_joke", "end")[0]) < events.index(model_start)
    model_chunks = [e["data"]["chunk"] for e in named(events, "joker", "stream")]
    assert [e["data"]["chunk"] for e in named(events, "router", "stream")] == model_chunks
    assert [c.content for c in model_chunks] == ["ha", " ha"]
    (router_end,) = named(events, "router", "end")
    assert router_end["data"]["input"] == "a joke please"
    assert router_end["data"]["output"].content == "ha ha"


async def test_the_default_branch_is_tagged_branch_default() -> None:
    """When no condition holds, the default runs under the branch, tagged branch:default."""
    default = RunnableLambda(lambda v: "fallback", func_name="default_step")
    events, error = await collect_events(RunnableBranch((lambda v: False, lambda v: "x"), default), 1)
    assert error is None
    check_event_order(events)
    (start,) = named(events, "default_step", "start")
    assert "branch:default" in start["tags"]
    assert named(events, "RunnableBranch", "end")[0]["data"]["output"] == "fallback"


# -- errors ----------------------------------------------------------------------------


async def test_an_error_in_a_function_condition_is_the_branch_steps_error() -> None:
    """A condition function that raises fails the branch step with that error; no branch starts."""

    def broken(value: Any) -> bool:
        raise ValueError("cannot decide")

    target = RunnableLambda(lambda v: "never", func_name="target")
    branch = RunnableBranch((broken, target), lambda v: "default")
    with anyio.fail_after(HANG_GUARD), pytest.raises(ValueError, match="cannot decide"):
        await branch.ainvoke(1)
    events, error = await collect_events(branch, 1)
    assert isinstance(error, ValueError)
    check_event_order(events)
    assert [e["event"] for e in events] == ["on_chain_start", "on_chain_error"]
    assert events[-1]["data"]["error"] is error


async def test_an_error_in_a_runnable_condition_ends_its_run_then_the_branch() -> None:
    """A runnable condition that raises ends with its own error event, then the branch step's,
    with the same exception."""

    def broken(value: Any) -> bool:
        raise KeyError("missing")

    branch = RunnableBranch((RunnableLambda(broken), lambda v: "never"), lambda v: "default")
    events, error = await collect_events(branch, 1)
    assert isinstance(error, KeyError)
    check_event_order(events)
    assert [(e["event"], e["name"]) for e in events] == [
        ("on_chain_start", "RunnableBranch"),
        ("on_chain_start", "broken"),
        ("on_chain_error", "broken"),
        ("on_chain_error", "RunnableBranch"),
    ]
    assert events[2]["data"]["error"] is error and events[3]["data"]["error"] is error


async def test_an_error_in_the_chosen_branch_fails_the_run_after_its_chunks() -> None:
    """The chosen branch's error reaches the consumer after the chunks it made, as itself."""

    async def two_then_fail(chunks: AsyncIterator[Any]) -> AsyncIterator[str]:
        async for _ in chunks:
            pass
        yield "a"
        yield "b"
        raise RuntimeError("branch broke")

    branch = RunnableBranch((lambda v: True, RunnableGenerator(two_then_fail)), lambda v: "no")
    received: list[str] = []
    with anyio.fail_after(HANG_GUARD), pytest.raises(RuntimeError, match="branch broke"):
        async with branch.astream(0) as chunks:
            async for chunk in chunks:
                received.append(chunk)
    assert received == ["a", "b"]
    events, error = await collect_events(branch, 0)
    assert isinstance(error, RuntimeError)
    check_event_order(events)
    assert named(events, "RunnableBranch", "error")[0]["data"]["error"] is error


# -- construction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((), r"at least one \(condition, runnable\) pair and then a default, got 0"),
        ((lambda v: v,), r"at least one \(condition, runnable\) pair and then a default, got 1"),
        (((lambda v: True, lambda v: 1),), r"got 1 argument"),
        (((lambda v: True, lambda v: 1), (lambda v: False, lambda v: 2)), r"default .* got a tuple"),
        (
            ((3, lambda v: 1), lambda v: 0),
            r"condition of RunnableBranch pair 1 must be a function or a runnable, got int 3",
        ),
        (
            ((lambda v: True,), lambda v: 0),
            r"argument 1 must be a \(condition, runnable\) pair, got tuple of length 1",
        ),
        (((lambda v: True, lambda v: 1, 2), lambda v: 0), r"pair, got tuple of length 3"),
        (("not a pair", lambda v: 0), r"argument 1 must be a \(condition, runnable\) pair, got 'not a pair'"),
        (((lambda v: True, 42), lambda v: 0), r"cannot compose int 42 \(RunnableBranch pair 1\)"),
        (((lambda v: True, lambda v: 1), 42), r"cannot compose int 42 \(the default of RunnableBranch\)"),
    ],
)
def test_bad_construction_is_a_composition_error_naming_the_problem(
    arguments: tuple[Any, ...], message: str
) -> None:
    """Too few arguments, a missing default, a bad pair, condition or target: CompositionError."""
    with pytest.raises(CompositionError, match=message):
        RunnableBranch(*arguments)


def test_a_generator_condition_is_refused() -> None:
    """A generator function cannot be a condition (its generator is always true)."""

    def gen(value: Any) -> Any:
        yield True

    with pytest.raises(CompositionError, match="pair 1 is a generator function"):
        RunnableBranch((gen, lambda v: 1), lambda v: 0)


def test_branches_that_add_up_differently_are_refused_with_a_fix() -> None:
    """A snapshot branch (JSON parser) next to an adding branch is refused, naming both and the fix."""
    model = ScriptedChatModel(['{"a": 1}'])
    with pytest.raises(CompositionError, match=r"branch 1 .*'last'.* default .*'add'.*lambda value: value"):
        RunnableBranch((lambda v: True, model | JsonOutputParser()), model)
    # Made to agree, it is accepted.
    RunnableBranch((lambda v: True, model | JsonOutputParser() | (lambda value: value)), model)


def test_content_is_what_every_branch_calls_content() -> None:
    """Before the commit point a branch holds a chunk that any branch would hold (a model's empty chunk)."""
    branch = RunnableBranch((lambda v: True, ScriptedChatModel(["x"])), lambda v: "text")
    assert branch.carries_content(AIMessageChunk(content="hi"))
    assert not branch.carries_content(AIMessageChunk(content="", id="msg_1"))
    assert branch.carries_content("plain text")


# -- a function that returns a runnable ------------------------------------------------


async def test_a_function_returning_a_runnable_streams_it_through() -> None:
    """The returned runnable's chunks leave the function's step one by one, as they are made."""
    source: GatedSource[str] = GatedSource(["a", "b", "c"])
    route = RunnableLambda(lambda value: source, func_name="route")
    with anyio.fail_after(HANG_GUARD):
        async with (route | Probe()).astream("go") as chunks:
            source.release(1)
            assert await chunks.__anext__() == "a"
            assert source.running == 1 and source.produced == 1
            source.release_all()
            assert [chunk async for chunk in chunks] == ["b", "c"]
    assert source.finished == 1


async def test_a_function_returning_a_runnable_nests_its_events() -> None:
    """The returned runnable runs nested under the function's step; the order rules hold."""
    model = ScriptedChatModel(["hi there"], name="picked")
    chain = RunnableLambda(lambda value: model, func_name="route") | StrOutputParser()
    events, error = await collect_events(chain, "q")
    assert error is None
    check_event_order(events)
    (route_start,) = named(events, "route", "start")
    (model_start,) = named(events, "picked", "start")
    assert model_start["parent_ids"][-1] == route_start["run_id"]
    assert [e["data"]["chunk"] for e in named(events, "StrOutputParser", "stream")] == ["hi", " there"]
    with anyio.fail_after(HANG_GUARD):
        assert await chain.ainvoke("q") == "hi there"


async def test_a_function_returning_a_snapshot_runnable_yields_its_whole_output() -> None:
    """A returned runnable whose chunks are snapshots (a JSON parser's) gives one chunk: its final value."""
    model = ScriptedChatModel([["{", '"a": ', "1, ", '"b": 2', "}"]])
    route = RunnableLambda(lambda value: model | JsonOutputParser(), func_name="route")
    with anyio.fail_after(HANG_GUARD):
        async with route.astream("q") as chunks:
            assert [chunk async for chunk in chunks] == [{"a": 1, "b": 2}]
        assert await (route | (lambda value: value["b"])).ainvoke("q") == 2


async def test_leaving_a_function_returned_runnable_early_stops_it() -> None:
    """A consumer that leaves while the returned runnable streams stops it; nothing is left running."""
    source: GatedSource[int] = GatedSource(range(100))
    route = RunnableLambda(lambda value: source, func_name="route")
    async with cleanup_guard():
        with anyio.fail_after(HANG_GUARD):
            source.release(2)
            async with route.astream(0) as chunks:
                async for _ in chunks:
                    break
    assert source.finished == 1 and source.cancelled == 1
