"""Issue 12: the recursion limit, buses bound with ``with_config``, live objects that
refuse to be copied or pickled, and ``GatedSource``'s cancellation count."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import anyio
import pytest

from engine import (
    ConfigError,
    EventBus,
    RecursionLimitError,
    Runnable,
    RunnableLambda,
    RunnablePassthrough,
    chain,
)
from engine.testing import GatedSource, check_event_order

# -- recursion limit (defect 8) ------------------------------------------------------------

#: Self-calling steps below stop by themselves this deep, so that without a limit the
#: test fails quickly instead of nesting until memory runs out.
_SAFETY_STOP = 200


async def test_a_lambda_returning_itself_stops_at_the_recursion_limit() -> None:
    """A function step that returns its own runnable fails after 26 runs, naming itself and the limit 25."""
    calls = 0

    def again(value: int) -> Any:
        nonlocal calls
        calls += 1
        # Without a limit this would nest until memory runs out: stop far past 25 instead.
        return value if calls > _SAFETY_STOP else selfish

    selfish: Runnable[int, Any] = RunnableLambda(again, func_name="selfish")
    with anyio.fail_after(10), pytest.raises(RecursionLimitError) as info:
        await selfish.ainvoke(1)
    assert (info.value.name, info.value.depth, info.value.limit) == ("selfish", 26, 25)
    assert "selfish" in str(info.value) and "recursion limit of 25" in str(info.value)
    assert calls == 26  # runs at depths 0..25, then the 27th is refused before it starts
    assert isinstance(info.value, RecursionError)


async def test_a_chain_calling_itself_stops_at_the_recursion_limit() -> None:
    """A ``@chain`` that awaits its own ``ainvoke`` fails fast with the limit's error naming it."""
    calls = 0

    @chain
    async def recurse(value: int) -> int:
        nonlocal calls
        calls += 1
        if calls > _SAFETY_STOP:
            return value
        result: int = await recurse.ainvoke(value + 1)
        return result

    with anyio.fail_after(10), pytest.raises(RecursionLimitError, match=r"recurse .*limit of 25") as info:
        await recurse.ainvoke(0)
    assert info.value.name == "recurse" and info.value.limit == 25
    assert calls == 26


@pytest.mark.parametrize("how", ["config", "with_config"])
async def test_recursion_limit_is_set_through_config_and_with_config(how: str) -> None:
    """``recursion_limit=3`` given either way stops a self-calling chain after 4 runs."""
    calls = 0

    @chain
    async def recurse(value: int) -> int:
        nonlocal calls
        calls += 1
        if calls > _SAFETY_STOP:
            return value
        result: int = await recurse.ainvoke(value + 1)
        return result

    with anyio.fail_after(10), pytest.raises(RecursionLimitError) as info:
        if how == "config":
            await recurse.ainvoke(0, {"recursion_limit": 3})
        else:
            await recurse.with_config(recursion_limit=3).ainvoke(0)
    assert (info.value.depth, info.value.limit) == (4, 3)
    assert calls == 4


async def test_nesting_up_to_the_limit_runs() -> None:
    """Runs nested exactly ``limit`` deep succeed; one deeper fails; a raised limit allows more."""

    @chain
    async def countdown(depth: int) -> int:
        if depth == 0:
            return 0
        result: int = await countdown.ainvoke(depth - 1)
        return result + 1

    with anyio.fail_after(10):
        assert await countdown.ainvoke(25) == 25
        with pytest.raises(RecursionLimitError):
            await countdown.ainvoke(26)
        assert await countdown.ainvoke(40, {"recursion_limit": 40}) == 40


async def test_runs_started_one_after_another_do_not_add_up() -> None:
    """Depth counts nesting, not how many runs a step starts: 60 calls from one step pass."""
    child = RunnableLambda(lambda x: x + 1)

    @chain
    async def many(value: int) -> int:
        for _ in range(60):
            value = await child.ainvoke(value)
        results = await child.abatch(list(range(30)))
        return value + len(results)

    with anyio.fail_after(10):
        assert await many.ainvoke(0, {"recursion_limit": 1}) == 90


async def test_a_limit_bound_on_an_inner_step_applies_to_runs_started_under_it() -> None:
    """A limit bound on an inner step of a sequence bounds the runs nested under that step only."""
    leaf = RunnableLambda(lambda x: x + 1, func_name="leaf")

    @chain
    async def twice(value: int) -> int:
        # Runs nested two levels deep: twice -> once -> leaf.
        result: int = await once.ainvoke(value)
        return result

    @chain
    async def once(value: int) -> int:
        result: int = await leaf.ainvoke(value)
        return result

    assert await (RunnablePassthrough() | twice).ainvoke(1) == 2
    limited = RunnablePassthrough() | twice.with_config(recursion_limit=1)
    with anyio.fail_after(10), pytest.raises(RecursionLimitError) as info:
        await limited.ainvoke(1)
    assert (info.value.name, info.value.depth, info.value.limit) == ("leaf", 2, 1)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "25", True])
def test_a_bad_recursion_limit_is_a_config_error(bad: object) -> None:
    """``recursion_limit`` must be an int >= 1, in a config dict and in ``with_config``."""
    runnable = RunnablePassthrough()
    with pytest.raises(ConfigError, match=r"\['recursion_limit'\] must be an int >= 1"):
        runnable.astream(1, {"recursion_limit": bad})
    with pytest.raises(ConfigError, match=r"\['recursion_limit'\] must be an int >= 1"):
        runnable.with_config(recursion_limit=bad)


def test_the_recursion_error_survives_pickling() -> None:
    """A ``RecursionLimitError`` pickles with its fields (it may cross a process boundary)."""
    error = RecursionLimitError("loop", 26, 25, "outer")
    copied = pickle.loads(pickle.dumps(error))
    assert (copied.name, copied.depth, copied.limit, copied.parent) == ("loop", 26, 25, "outer")
    assert str(copied) == str(error)


# -- a bus bound with with_config (issue 12, smaller items) ----------------------------------


def _pipeline() -> Runnable[int, int]:
    return RunnableLambda(lambda x: x + 1, func_name="add") | RunnableLambda(
        lambda x: x * 2, func_name="double"
    )


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(event["event"], event["name"]) for event in events]


async def test_a_bus_bound_with_with_config_receives_the_run_events() -> None:
    """``with_config(bus=bus)`` delivers the same events as ``config={"bus": bus}`` (and both, once)."""
    bus = EventBus()
    async with bus.subscribe(capacity=100) as events:
        assert await _pipeline().ainvoke(1, {"bus": bus}) == 4
        expected = events.receive_available(100)
        assert await _pipeline().with_config(bus=bus).ainvoke(1) == 4
        bound = events.receive_available(100)
        # Bound and given in the config: still one copy of each event.
        assert await _pipeline().with_config(bus=bus).ainvoke(1, {"bus": bus}) == 4
        both = events.receive_available(100)
    check_event_order(bound)
    assert expected and _summary(bound) == _summary(expected) == _summary(both)


async def test_a_bus_bound_on_an_inner_step_sees_that_step_and_below() -> None:
    """A bus bound on an inner step gets its events and those of runs nested under it; the run's
    own bus and ``astream_events`` still get every event, once."""
    inner_bus, run_bus = EventBus(), EventBus()
    nested = RunnableLambda(lambda x: x - 1, func_name="nested")

    @chain
    async def calls_nested(value: int) -> int:
        result: int = await nested.ainvoke(value)
        return result

    inner = (RunnableLambda(lambda x: x * 10, func_name="times_ten") | calls_nested).with_config(
        bus=inner_bus, run_name="inner"
    )
    pipeline = (
        RunnableLambda(lambda x: x + 1, func_name="first") | inner | RunnableLambda(str, func_name="last")
    )
    async with (
        inner_bus.subscribe(capacity=100) as inner_events,
        run_bus.subscribe(capacity=100) as run_events,
    ):
        assert await pipeline.ainvoke(1, {"bus": run_bus}) == "19"
        seen_inside = inner_events.receive_available(100)
        seen_by_run = run_events.receive_available(100)
        streamed = [event async for event in pipeline.astream_events(1)]
    starts = [name for kind, name in _summary(seen_inside) if kind.endswith("_start")]
    assert starts == ["inner", "times_ten", "calls_nested", "nested"]
    all_starts = ["RunnableSequence", "first", "inner", "times_ten", "calls_nested", "nested", "last"]
    assert sorted(n for k, n in _summary(seen_by_run) if k.endswith("_start")) == sorted(all_starts)
    # astream_events leaves out an invoked run's chunks (langchain-core's shape); the
    # bus of a plain run sees them.
    assert ("on_chain_stream", "nested") in _summary(seen_by_run)
    assert _summary(streamed) == [s for s in _summary(seen_by_run) if s != ("on_chain_stream", "nested")]
    check_event_order(seen_by_run)


async def test_a_deep_copied_chain_shares_its_bound_bus() -> None:
    """Copying a chain bound to a bus (or the bus) shares the bus: the copy's events reach it."""
    bus = EventBus()
    assert copy.copy(bus) is bus and copy.deepcopy(bus) is bus
    copied = copy.deepcopy(_pipeline().with_config(bus=bus))
    async with bus.subscribe(capacity=100) as events:
        assert await copied.ainvoke(1) == 4
        assert events.statistics().delivered > 0


# -- live objects refuse to be pickled -------------------------------------------------------


async def test_a_bus_and_a_subscription_refuse_to_be_pickled() -> None:
    """Pickling a bus, a chain bound to one, or a subscription raises TypeError naming it."""
    bus = EventBus()
    assert pickle.loads(pickle.dumps(RunnablePassthrough().with_config(run_name="plain")))
    with pytest.raises(TypeError, match="cannot pickle <EventBus"):
        pickle.dumps(bus)
    with pytest.raises(TypeError, match="cannot pickle <EventBus"):
        pickle.dumps(RunnablePassthrough().with_config(bus=bus))
    async with bus.subscribe() as subscription:
        with pytest.raises(TypeError, match="cannot pickle <Subscription"):
            pickle.dumps(subscription)
        with pytest.raises(TypeError, match="cannot copy <Subscription"):
            copy.copy(subscription)
        with pytest.raises(TypeError, match="cannot copy <Subscription"):
            copy.deepcopy(subscription)


# -- GatedSource.cancelled (engine.testing) --------------------------------------------------


async def test_gated_source_counts_a_stop_while_blocked_on_a_full_outbox() -> None:
    """A source stopped while its send waits on a full channel counts as cancelled."""
    source: GatedSource[int] = GatedSource(range(10))
    source.release_all()
    with anyio.fail_after(10):
        async with source.astream(None, {"capacity": 1}) as chunks:
            assert await chunks.__anext__() == 0
            await anyio.wait_all_tasks_blocked()
            assert chunks.statistics()[0].waiting_senders == 1
    assert source.produced < 10
    assert (source.finished, source.cancelled) == (1, 1)
