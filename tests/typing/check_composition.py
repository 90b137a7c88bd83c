"""Static checks of the typed composition API (run by mypy in CI, never executed)."""

from __future__ import annotations

from typing import Any, assert_type

from engine import (
    EventBus,
    EventPhase,
    Runnable,
    RunnableLambda,
    RunnableParallel,
    RunnableSequence,
    RunStream,
    StreamEvent,
    kind_of,
    phase_of,
)


def int_to_str(value: int) -> str:
    return str(value)


def str_to_len(value: str) -> int:
    return len(value)


def check(first: Runnable[int, str], second: Runnable[str, int]) -> None:
    chained = first | second
    assert_type(chained, RunnableSequence[int, int])
    assert_type(RunnableLambda(int_to_str), RunnableLambda[int, str])
    lambdas = RunnableLambda(int_to_str) | RunnableLambda(str_to_len)
    assert_type(lambdas, RunnableSequence[int, int])
    parallel = first | RunnableParallel(a=second)
    assert_type(parallel, RunnableSequence[int, dict[str, Any]])


async def check_events(first: Runnable[int, str], bus: EventBus) -> None:
    events = first.astream_events(1)
    assert_type(events, RunStream[StreamEvent])
    async for event in events:
        assert_type(event, StreamEvent)
        assert_type(event["run_id"], str)
        assert_type(event["parent_ids"], list[str])
        assert_type(phase_of(event), EventPhase)
        assert_type(kind_of(event), str | None)
    async with bus.subscribe() as subscription:
        async for seen in subscription:
            assert_type(seen, StreamEvent)
