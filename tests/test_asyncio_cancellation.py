"""Issue 12, defects 3 and 4: on asyncio, an outside cancellation is never swallowed and a
cancellation nobody asked for is an error (asyncio-specific by nature: trio has neither
``task.cancel()`` nor stray ``CancelledError``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from engine import RunnableLambda, UnexpectedCancellation
from engine.testing import CountingSource, assert_run_cleaned_up


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _slow(value: Any) -> Any:
    await anyio.sleep(3600)
    return value


SLOW = RunnableLambda(_slow) | (lambda x: x)


async def _consume_structured() -> None:
    async with SLOW.astream(1) as chunks:
        async for _ in chunks:
            pass


async def _consume_bare() -> None:
    async for _ in SLOW.astream(1):
        pass


CALLS: dict[str, Callable[[], Awaitable[Any]]] = {
    "ainvoke": lambda: SLOW.ainvoke(1),
    "abatch": lambda: SLOW.abatch([1, 2, 3]),
    "abatch-capped": lambda: SLOW.abatch([1, 2, 3], max_concurrency=1),
    "async-with-astream": _consume_structured,
    "bare-astream": _consume_bare,
    "astream_events": lambda: _drain(SLOW.astream_events(1)),
}


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


@pytest.mark.parametrize("call", list(CALLS))
async def test_task_cancel_inside_a_run_stays_a_pending_cancellation(call: str) -> None:
    """After task.cancel() lands inside a run, the caller's task.cancelling() is 1, so a
    "stop my helpers in finally" pattern still sees the cancel."""
    seen: list[int] = []

    async def caller() -> None:
        try:
            await CALLS[call]()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            seen.append(task.cancelling())
            raise

    task = asyncio.get_running_loop().create_task(caller())
    await anyio.wait_all_tasks_blocked()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [1]
    await assert_run_cleaned_up()


async def test_a_cancelled_caller_keeps_its_cancellation_through_cleanup_awaits() -> None:
    """A caller that awaits in its cleanup after a cancelled ainvoke is cancelled again by
    asyncio.timeout-style logic only once: the cancellation is not swallowed."""

    async def caller() -> str:
        try:
            await SLOW.ainvoke(1)
        finally:
            await asyncio.sleep(0)
        return "finished"  # pragma: no cover - must not be reached

    task = asyncio.get_running_loop().create_task(caller())
    await anyio.wait_all_tasks_blocked()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- defect 4 ----------------------------------------------------------------------------


async def _awaits_a_cancelled_future(value: Any) -> Any:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.cancel()
    return await future


async def _generator_awaiting_a_cancelled_future(chunks: AsyncIterator[int]) -> AsyncIterator[int]:
    async for chunk in chunks:
        if chunk == 3:
            await _awaits_a_cancelled_future(chunk)
        yield chunk


async def test_a_step_that_awaits_a_future_someone_else_cancelled_fails() -> None:
    """A CancelledError that nothing asked for fails the run with UnexpectedCancellation naming the step."""
    chain = RunnableLambda(lambda x: x) | RunnableLambda(_awaits_a_cancelled_future)
    with pytest.raises(UnexpectedCancellation, match="_awaits_a_cancelled_future") as info:
        await chain.ainvoke(1)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    with pytest.raises(UnexpectedCancellation):
        [c async for c in (CountingSource(10) | _generator_awaiting_a_cancelled_future).astream(None)]
    with pytest.raises(UnexpectedCancellation):
        [e async for e in chain.astream_events(1)]
    await assert_run_cleaned_up()


async def test_a_real_cancellation_is_still_a_cancellation() -> None:
    """A run cancelled by its caller's scope is not mistaken for a stray cancellation."""
    with anyio.move_on_after(0.01) as scope:
        await SLOW.ainvoke(1)
    assert scope.cancelled_caught
