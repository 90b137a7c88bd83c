"""Issue 12: a stop travels upstream, a closed stream says so, a cancel from another
thread reaches the run's loop, and observing a run never changes its result."""

from __future__ import annotations

import gc
import pickle
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from engine import EventBus, RunnableLambda, RunnableParallel
from engine.testing import CountingSource, assert_run_cleaned_up, check_event_order

# -- defect 1: a step that stops reading its input -----------------------------------


async def _first_only(chunks: AsyncIterator[int]) -> AsyncIterator[int]:
    async for chunk in chunks:
        yield chunk
        return


async def _never_reads(chunks: AsyncIterator[int]) -> AsyncIterator[str]:
    yield "done"


async def _reads_until_deadline(chunks: AsyncIterator[int]) -> AsyncIterator[int]:
    # As with move_on_after around the loop: the scope ends the reading, never a yield.
    seen: list[int] = []
    with anyio.CancelScope() as scope:
        async for chunk in chunks:
            seen.append(chunk)
            if len(seen) == 3:
                scope.cancel()
    for chunk in seen:
        yield chunk
    yield -len(seen)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(_first_only, [0]), (_never_reads, ["done"]), (_reads_until_deadline, [0, 1, 2, -3])],
)
async def test_a_step_that_stops_reading_ends_the_run_with_its_output(step: Any, expected: list[Any]) -> None:
    """A step that returns early, never reads, or leaves its loop by a scope stops its
    upstream quietly; the run succeeds with the output the step made."""
    source = CountingSource(1_000)
    chain = source | step
    with anyio.fail_after(10):
        assert [c async for c in chain.astream(None, {"capacity": 2})] == expected
        assert await chain.ainvoke(None, {"capacity": 2}) == _total(expected)
    assert source.produced < 1_000
    await assert_run_cleaned_up()


def _total(chunks: list[Any]) -> Any:
    if all(isinstance(c, str) for c in chunks):
        return "".join(chunks)
    return sum(chunks)


async def test_a_parallel_branch_that_stops_reading_leaves_the_others_going() -> None:
    """One branch stops after its first chunk; the other still sees every chunk."""

    async def count(chunks: AsyncIterator[int]) -> AsyncIterator[int]:
        n = 0
        async for _ in chunks:
            n += 1
        yield n

    chain = CountingSource(100) | RunnableParallel(first=_first_only, count=count)
    with anyio.fail_after(10):
        result = await chain.ainvoke(None, {"capacity": 2})
    assert result == {"first": 0, "count": 100}


async def test_events_agree_with_the_result_when_a_step_stops_reading() -> None:
    """Upstream steps stopped by a step that returned early end with end events, as does the root."""
    chain = CountingSource(1_000) | _first_only
    with anyio.fail_after(10):
        events = [e async for e in chain.astream_events(None, {"capacity": 2})]
    check_event_order(events)
    errors = [e["event"] for e in events if e["event"].endswith("_error")]
    assert errors == []
    assert events[-1]["event"] == "on_chain_end"
    assert events[-1]["data"]["output"] == 0


async def test_fused_stages_stopped_from_downstream_end_quietly() -> None:
    """In an observed (fused) run, a stage left unfinished by a later stage that returned ends with an end event."""

    async def double(chunks: AsyncIterator[int]) -> AsyncIterator[int]:
        async for chunk in chunks:
            yield chunk * 2

    chain = CountingSource(1_000) | double | _first_only
    with anyio.fail_after(10):
        events = [e async for e in chain.astream_events(None, {"capacity": 2})]
    check_event_order(events)
    assert [e["event"] for e in events if e["event"].endswith("_error")] == []
    assert events[-1]["data"]["output"] == 0


# -- defect 10: a stream closed under its consumer -------------------------------------


async def test_aclose_from_another_task_raises_closed_resource_error_in_the_consumer() -> None:
    """A consumer whose stream is closed by another task gets ClosedResourceError, not a quiet end."""
    stream = CountingSource(10_000).astream(None, {"capacity": 2})
    received = 0

    async def consume() -> None:
        nonlocal received
        with pytest.raises(anyio.ClosedResourceError):
            async for _ in stream:
                received += 1
                if received == 5:
                    await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        while received < 5:
            await anyio.lowlevel.checkpoint()
        await stream.aclose()
    assert received == 5


async def test_iterating_a_stream_closed_before_it_started_raises() -> None:
    """A stream closed before it started raises ClosedResourceError when iterated, instead of hanging."""
    stream = CountingSource(10).astream(None)
    await stream.aclose()
    with anyio.fail_after(5), pytest.raises(anyio.ClosedResourceError):
        await stream.__anext__()
    with anyio.fail_after(5), pytest.raises(anyio.ClosedResourceError):
        async with stream:
            pass


async def test_cancel_stops_the_run_without_waiting() -> None:
    """RunStream.cancel() asks the run to stop and returns at once; the consumer then sees the end of a cancelled run."""
    stream = CountingSource(10_000).astream(None, {"capacity": 2})
    async with stream:
        assert await stream.__anext__() == 0
        stream.cancel()
        rest = [c async for c in stream]
    assert len(rest) < 10_000
    await assert_run_cleaned_up()


# -- defect 2: a cancel from another thread --------------------------------------------


async def test_a_stream_collected_in_another_thread_still_stops_its_run() -> None:
    """A broken-off bare stream whose last reference dies in a worker thread still has its run cancelled (on the run's loop)."""
    source = CountingSource(1_000_000)
    holder: list[Any] = [source.astream(None, {"capacity": 2})]
    async for _ in holder[0]:
        break
    # A reference cycle keeps the stream alive until the cyclic collector runs.
    cycle: list[Any] = [holder.pop()]
    cycle.append(cycle)
    del cycle
    gc.disable()
    try:
        await anyio.to_thread.run_sync(gc.collect)
    finally:
        gc.enable()
    with anyio.fail_after(10):
        while source.running:
            await anyio.sleep(0.001)
    await assert_run_cleaned_up()


# -- defect 9: subscribe when the run starts -------------------------------------------


async def test_event_streams_that_never_ran_hold_no_subscriber() -> None:
    """Creating and closing astream_events streams without iterating leaves no subscriber on a shared bus."""
    bus = EventBus()
    chain = RunnableLambda(lambda x: x)
    for _ in range(50):
        stream = chain.astream_events(1, {"bus": bus})
        await stream.aclose()
    for _ in range(50):
        chain.astream_events(1, {"bus": bus})
    gc.collect()
    assert bus.subscriber_count == 0
    events = [e async for e in chain.astream_events(1, {"bus": bus})]
    assert events[0]["event"] == "on_chain_start"
    assert bus.subscriber_count == 0


# -- defect 7: a chunk type whose + raises ---------------------------------------------


class _Touchy:
    def __init__(self, n: int) -> None:
        self.n = n

    def __add__(self, other: object) -> _Touchy:
        raise ValueError("touchy chunks do not add")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Touchy) and other.n == self.n

    def __hash__(self) -> int:
        return self.n


async def _touchy(chunks: AsyncIterator[Any]) -> AsyncIterator[_Touchy]:
    for n in range(600):
        yield _Touchy(n)


async def test_a_subscriber_does_not_change_the_outcome_when_chunks_do_not_add() -> None:
    """Chunks whose + raises stream the same with and without a subscriber, and every step ends."""
    chain = RunnableLambda(lambda x: x) | _touchy
    plain = [c async for c in chain.astream(None)]
    bus = EventBus()
    async with bus.subscribe(overflow="drop", capacity=10_000) as events:
        observed = [c async for c in chain.astream(None, {"bus": bus})]
        await bus.aclose()
        seen = [e async for e in events]
    assert observed == plain and len(plain) == 600
    check_event_order(seen)
    assert not [e for e in seen if e["event"].endswith("_error")]
    from_events = [e async for e in chain.astream_events(None)]
    check_event_order(from_events)
    assert from_events[-1]["event"] == "on_chain_end"


# -- smaller: a stream does not pickle ---------------------------------------------------


async def test_a_run_stream_refuses_to_pickle() -> None:
    """Pickling a RunStream raises a TypeError that says why, instead of making a disconnected copy."""
    stream = CountingSource(3).astream(None)
    with pytest.raises(TypeError, match="RunStream"):
        pickle.dumps(stream)
    await stream.aclose()


def test_threads_are_not_left_behind() -> None:
    """(Guard) no rillet thread other than the sync loop is left running by these tests."""
    names = [
        t.name for t in threading.enumerate() if t.name.startswith("rillet") and t.name != "rillet-sync-loop"
    ]
    assert names == []


# -- smaller: a KeyboardInterrupt raised by a step -------------------------------------


async def _interrupting(value: Any) -> Any:
    raise KeyboardInterrupt


async def _bare(chain: Any) -> None:
    async for _ in chain.astream(1):
        pass


async def _structured(chain: Any) -> None:
    async with chain.astream(1) as chunks:
        async for _ in chunks:
            pass


async def _ainvoke(chain: Any) -> None:
    await chain.ainvoke(1)


async def _abatch(chain: Any) -> None:
    await chain.abatch([1])


@pytest.mark.parametrize("form", [_bare, _structured, _ainvoke, _abatch], ids=lambda f: f.__name__)
async def test_a_keyboard_interrupt_from_a_step_reaches_the_consumer_as_itself(
    form: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A step's KeyboardInterrupt ends the run in order and is raised in the consumer's task, not logged as lost."""
    chain = RunnableLambda(lambda x: x) | RunnableLambda(_interrupting)
    with pytest.raises(KeyboardInterrupt):
        await form(chain)
    gc.collect()
    assert [r for r in caplog.records if r.name == "rillet"] == []
    await assert_run_cleaned_up()
