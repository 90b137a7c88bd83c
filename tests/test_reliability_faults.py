"""Faults inside a run, on trio and asyncio: a step raising at its first, a middle and its
last chunk; cleanup that raises; two failures at once; subscribers that fail, never read,
or read nothing at all; and what each does to the caller, the events and the cleanup.

What rillet does with a secondary error (documented in tests/RELIABILITY.md):

* a generator whose ``finally`` raises after its body raised: Python makes the cleanup
  error the one that propagates, with the body's error as its ``__context__``; rillet
  hands the caller that exception with its ``__context__`` intact;
* a step's cleanup raising while the run unwinds from another step's error: the caller
  gets one flat ``ExceptionGroup`` with the original error first and the cleanup error
  (whose ``__context__`` is the cancellation) after it;
* a cleanup raising after the consumer left an ``async with astream`` block early: the
  error is raised as the block exits;
* the same after a bare ``async for`` was broken off (nobody is left to raise it to): it
  is logged at ERROR on the ``rillet`` logger.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from _reliability_harness import (
    Lifecycle,
    LifecycleModel,
    Monitor,
    StepFault,
    assert_edges_settled,
    lifecycle_generator,
    settle,
    tally,
)

from engine import (
    EventBus,
    RunCancelled,
    RunnableGenerator,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
)
from engine.testing import GatedSource, Probe, check_event_order
from nodes import StrOutputParser

TOKENS = ["t1", " t2", " t3", " t4", " t5"]
POSITIONS = {"first": 0, "middle": 2, "last": 4}


@pytest.fixture(autouse=True)
def _count_the_fault() -> Iterator[None]:
    yield
    tally("faults injected")


def failing_source(items: list[str], fail_at: int | None) -> tuple[RunnableGenerator[Any, str], Lifecycle]:
    """A source that ignores its input and yields ``items``, raising at index ``fail_at``."""
    life = Lifecycle("source")

    async def source(chunks: AsyncIterator[Any]) -> AsyncIterator[str]:
        with life.running():
            async for _ in chunks:
                pass
            for index, item in enumerate(items):
                if index == fail_at:
                    raise StepFault(f"source failed at item {index}")
                await anyio.lowlevel.checkpoint()
                yield item

    return RunnableGenerator(source), life


class FaultyPipeline:
    """``{"a": source, "b": passthrough} | prompt | model | parser | shout | probe`` with one
    step (``source``, ``model`` or ``shout``) failing at chunk ``fail_at``."""

    def __init__(self, failing: str, fail_at: int) -> None:
        self.source, self.source_life = failing_source(list(TOKENS), fail_at if failing == "source" else None)
        self.model = LifecycleModel(TOKENS, fail_at=fail_at if failing == "model" else None)
        self.shout, self.shout_life = lifecycle_generator(
            "shout", str.upper, fail_at=fail_at if failing == "shout" else None
        )
        self.probe: Probe[str] = Probe("last")

        async def prompt(values: dict[str, str]) -> str:
            return f"{values['a']}/{values['b']}"

        self.chain = (
            {"a": self.source, "b": RunnablePassthrough()}
            | RunnableLambda(prompt)
            | self.model
            | StrOutputParser()
            | self.shout
            | self.probe
        )

    def assert_cleaned_up(self) -> None:
        for life in (self.source_life, self.model.life, self.shout_life):
            life.assert_cleaned_up_in_run()
        assert self.probe.running == 0


def _no_warnings_logged(caplog: pytest.LogCaptureFixture) -> None:
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not logged, f"the runs logged: {[r.getMessage() for r in logged]}"


@pytest.mark.parametrize("position", list(POSITIONS))
@pytest.mark.parametrize("failing", ["source", "model", "shout"])
@pytest.mark.parametrize("style", ["with", "events", "invoke"])
async def test_a_step_failing_at_its_first_middle_or_last_chunk(
    style: str, failing: str, position: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller gets the step's exception itself after every chunk made before it; every step ends."""
    fail_at = POSITIONS[position]
    pipe = FaultyPipeline(failing, fail_at)
    bus = EventBus()
    got: list[Any] = []
    statistics: list[Any] = []
    async with Monitor(bus, capacity=8) as monitor:
        with pytest.raises(StepFault) as info:
            if style == "with":
                stream = pipe.chain.astream("q", {"bus": bus, "capacity": 1})
                try:
                    async with stream as chunks:
                        async for chunk in chunks:
                            got.append(chunk)
                finally:
                    statistics = stream.statistics()
            elif style == "events":
                async with pipe.chain.astream_events("q", {"bus": bus, "capacity": 1}) as events:
                    async for event in events:
                        got.append(event)
            else:
                await pipe.chain.ainvoke("q", {"bus": bus, "capacity": 1})
        await settle()
        pipe.assert_cleaned_up()
        assert_edges_settled(statistics)
    error = info.value
    assert isinstance(error, StepFault) and not isinstance(error, BaseExceptionGroup)
    # Chunks made before the failure all reached the consumer, in order.
    made_before = 0 if failing == "source" else fail_at
    if style == "with":
        assert got == [t.upper() for t in TOKENS[:made_before]]
    if style == "events":
        check_event_order(got, complete=True)
        assert got[-1]["event"] == "on_chain_error" and got[-1]["data"]["error"] is error
        root_chunks = [
            e["data"]["chunk"] for e in got if e["event"] == "on_chain_stream" and not e["parent_ids"]
        ]
        assert root_chunks == [t.upper() for t in TOKENS[:made_before]]
    # The monitor saw the failing step end with the error itself, and its ancestors too.
    errors = {e["name"]: e["data"]["error"] for e in monitor.events if e["event"].endswith("_error")}
    failing_name = {"source": "source", "model": "LifecycleModel", "shout": "shout"}[failing]
    assert errors[failing_name] is error
    assert errors["RunnableSequence"] is error
    for name, other in errors.items():
        assert other is error or isinstance(other, RunCancelled), f"{name} ended with {other!r}"
    assert monitor.started_steps() == monitor.ended_steps()
    _no_warnings_logged(caplog)


class BodyError(Exception):
    """What a generator's body raises."""


class CleanupError(Exception):
    """What the same generator's ``finally`` raises afterwards."""


# Found by this suite: ainvoke/abatch re-raised a step's error inside an ``except
# EndOfStream`` block, replacing its __context__ with EndOfStream (fixed in f2b0154).
CALLS = [
    "astream",
    "bare",
    "events",
    "ainvoke",
    "abatch",
]


async def _call(chain: Any, call: str, value: Any) -> None:
    """Run ``chain`` on ``value`` in the ``call`` form, reading everything."""
    if call == "astream":
        async with chain.astream(value) as chunks:
            async for _ in chunks:
                pass
    elif call == "bare":
        async for _ in chain.astream(value):
            pass
    elif call == "events":
        async with chain.astream_events(value) as events:
            async for _ in events:
                pass
    elif call == "ainvoke":
        await chain.ainvoke(value)
    else:
        await chain.abatch([value])


async def _source(chunks: AsyncIterator[Any]) -> AsyncIterator[str]:
    async for _ in chunks:
        pass
    for token in TOKENS:
        yield token


_source.__name__ = "source"


@pytest.mark.parametrize("call", CALLS)
async def test_cleanup_error_after_a_body_error_keeps_the_body_error_as_its_context(call: str) -> None:
    """A generator's finally raising after its body raised reaches the caller with the body error as __context__."""
    body = BodyError("the body failed")
    cleanup = CleanupError("and then its cleanup failed")

    async def step(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield chunk.upper()
                raise body
        finally:
            raise cleanup

    with pytest.raises(CleanupError) as info:
        await _call(RunnableGenerator(_source) | RunnableGenerator(step), call, "q")
    await settle()
    assert info.value is cleanup
    assert info.value.__context__ is body, f"__context__ is {info.value.__context__!r}"


@pytest.mark.parametrize("call", CALLS)
async def test_an_error_raised_while_handling_another_keeps_its_context(call: str) -> None:
    """Minimal: a step error's implicit __context__ (``raise`` inside ``except``) reaches the caller intact."""

    def lookup(values: dict[str, str]) -> str:
        try:
            return values["missing"]
        except KeyError:
            raise ValueError("no 'missing' key")  # noqa: B904 - the implicit chain is the point

    with pytest.raises(ValueError, match="no 'missing' key") as info:
        await _call(RunnableLambda(lookup), call, {})
    assert isinstance(info.value.__context__, KeyError), f"__context__ is {info.value.__context__!r}"


async def test_cleanup_error_while_the_run_unwinds_from_another_error_arrives_in_a_group() -> None:
    """A cleanup raising while the run is cancelled by another step's error: one group, the original first."""
    original = StepFault("branch a failed")
    cleanup = CleanupError("branch b's cleanup failed")
    b_started = anyio.Event()

    async def fail(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for _ in chunks:
            await b_started.wait()
            raise original
        yield "never"

    async def stuck(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                b_started.set()
                await anyio.sleep_forever()
                yield chunk
        finally:
            raise cleanup

    bus = EventBus()
    async with Monitor(bus, capacity=64) as monitor:
        with pytest.raises(ExceptionGroup) as info:
            await RunnableParallel(a=fail, b=stuck).ainvoke("q", {"bus": bus})
        await settle()
    group = info.value
    assert list(group.exceptions) == [original, cleanup]
    assert isinstance(cleanup.__context__, anyio.get_cancelled_exc_class())
    errors = {e["name"]: e["data"]["error"] for e in monitor.events if e["event"].endswith("_error")}
    assert errors["fail"] is original
    assert errors["stuck"] is cleanup
    assert errors["RunnableParallel<a,b>"] is original


async def test_cleanup_error_after_leaving_a_block_early_is_raised_at_the_block_exit() -> None:
    """A step whose cleanup raises when the consumer leaves early makes the block exit raise it."""
    cleanup = CleanupError("cleanup failed on the way out")
    shout, life = lifecycle_generator("shout", str.upper, cleanup_error=cleanup)
    chain = RunnableGenerator(_source) | shout
    with pytest.raises(CleanupError) as info:
        async with chain.astream("q", {"capacity": 1}) as chunks:
            async for _ in chunks:
                break
    assert info.value is cleanup
    await settle()
    assert life.open == 0


# Found by this suite: the detached host discarded such an error silently (fixed in
# f2b0154: it is logged).
async def test_cleanup_error_after_a_bare_loop_is_broken_off_is_not_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cleanup error after a bare loop's break is at least logged (nothing is dropped silently)."""
    cleanup = CleanupError("cleanup failed after the break")
    shout, life = lifecycle_generator("shout", str.upper, cleanup_error=cleanup)
    async for _ in (RunnableGenerator(_source) | shout).astream("q", {"capacity": 1}):
        break
    await settle()
    assert life.open == 0
    reported = [
        r
        for r in caplog.records
        if (r.exc_info and r.exc_info[1] is cleanup) or "cleanup failed" in r.getMessage()
    ]
    assert reported, "the cleanup error vanished"
    assert all(r.levelno >= logging.ERROR for r in reported)


async def test_two_branches_failing_at_once_give_one_group_with_both() -> None:
    """Two branches raising together reach the caller as one flat ExceptionGroup holding both."""
    arrived = 0
    gate = anyio.Event()
    errors = [StepFault("a"), StepFault("b")]

    def branch(index: int) -> Any:
        async def fail(value: str) -> str:
            # The first waits for the second; the second opens the gate and raises at once,
            # so neither passes a checkpoint between the gate and its raise.
            nonlocal arrived
            arrived += 1
            if arrived == 1:
                await gate.wait()
            else:
                gate.set()
            raise errors[index]

        fail.__name__ = f"fail_{'ab'[index]}"
        return fail

    bus = EventBus()
    async with Monitor(bus, capacity=64) as monitor:
        with pytest.raises(ExceptionGroup) as info:
            async with (RunnablePassthrough() | {"a": branch(0), "b": branch(1)}).astream(
                "q", {"bus": bus}
            ) as chunks:
                async for _ in chunks:
                    pass
        await settle()
    group = info.value
    assert type(group) is ExceptionGroup
    assert sorted(group.exceptions, key=str) == errors
    assert all(not isinstance(e, BaseExceptionGroup) for e in group.exceptions)
    ended = {e["name"]: e["data"].get("error") for e in monitor.events if e["event"].endswith("_error")}
    assert ended["fail_a"] is errors[0] and ended["fail_b"] is errors[1]
    # The composites end with the first error they saw (one of the two).
    assert ended["RunnableSequence"] in errors


# -- subscribers that fail, or never read ------------------------------------------------------


class SubscriberBroke(Exception):
    """A subscriber's own code failed."""


async def test_a_subscriber_that_raises_while_consuming_does_not_affect_the_run() -> None:
    """A "block" subscriber whose reader raises mid-run is dropped; the run and other subscribers go on."""
    pipe = FaultyPipeline("none", -1)
    bus = EventBus()
    read = 0
    failures: list[BaseException] = []

    async def failing_reader() -> None:
        # A service's monitor task: its supervisor records the failure.
        nonlocal read
        try:
            async with bus.subscribe(capacity=1) as events:
                async for _ in events:
                    read += 1
                    if read == 5:
                        raise SubscriberBroke("the subscriber's own code failed")
        except SubscriberBroke as exc:
            failures.append(exc)

    async with Monitor(bus, capacity=2) as monitor:
        async with anyio.create_task_group() as subscriber_group:
            subscriber_group.start_soon(failing_reader)
            await anyio.wait_all_tasks_blocked()
            result = await pipe.chain.ainvoke("q", {"bus": bus, "capacity": 1})
        await settle()
        pipe.assert_cleaned_up()
    assert read == 5 and len(failures) == 1
    assert bus.subscriber_count == 0
    assert result == "".join(TOKENS).upper()
    assert monitor.events[-1]["event"] == "on_chain_end"
    assert monitor.started_steps() == monitor.ended_steps()


async def test_a_drop_subscriber_that_never_reads_loses_events_but_not_the_run() -> None:
    """A never-read "drop" subscriber counts its drops and reports them in-band; the run finishes."""
    pipe = FaultyPipeline("none", -1)
    bus = EventBus()
    async with Monitor(bus, capacity=4) as monitor, bus.subscribe(capacity=3, overflow="drop") as stuck:
        result = await pipe.chain.ainvoke("q", {"bus": bus})
        await settle()
        pipe.assert_cleaned_up()
        statistics = stuck.statistics()
        kept = stuck.receive_available(1000)
    assert result == "".join(TOKENS).upper()
    total = len(monitor.events)
    assert statistics.dropped > 0
    markers = [e for e in kept if e["event"] == "on_events_dropped"]
    assert markers, "the drops were not reported in-band"
    assert sum(m["data"]["dropped"] for m in markers) == statistics.dropped
    real = [e for e in kept if e["event"] != "on_events_dropped"]
    # Each event was either kept or counted as dropped, never both, never neither.
    assert len(real) + statistics.dropped == total
    check_event_order(real, complete=False)
    # What was kept is a subsequence of the lossless monitor's stream.
    positions = [next(i for i, e in enumerate(monitor.events) if e is kept_event) for kept_event in real]
    assert positions == sorted(positions)


async def test_a_block_subscriber_that_never_reads_holds_the_run_and_cancelling_cleans_up() -> None:
    """A never-read "block" subscriber stalls the run; cancelling it still ends every step and task."""
    pipe = FaultyPipeline("none", -1)
    bus = EventBus()
    async with bus.subscribe(capacity=16) as stuck:
        with anyio.CancelScope() as scope:
            async with pipe.chain.astream("q", {"bus": bus}) as chunks:
                await anyio.wait_all_tasks_blocked()
                assert stuck.statistics().waiting_publishers >= 1
                assert chunks.statistics()[0].sent < len(TOKENS)  # the run is held
                scope.cancel()
        assert scope.cancelled_caught
        await settle()
        pipe.assert_cleaned_up()
        events = stuck.receive_available(1000)
        assert stuck.statistics().waiting_publishers == 0
    check_event_order(events, complete=True)
    starts = [e for e in events if e["event"].endswith("_start")]
    assert len(starts) == 9
    assert all(isinstance(e["data"]["error"], RunCancelled) for e in events if e["event"].endswith("_error"))


# -- a synchronous generator step ----------------------------------------------------------------

# Found by this suite: on asyncio the worker thread of a sync generator blocked in
# anyio.from_thread.run(send) on a full edge nobody read any more; that coroutine was not
# cancelled with the run, so the thread, the actor and the host (and an ``async with``
# block's exit) waited forever (fixed in f2b0154).


def _numbers(chunks: Any) -> Any:
    for _ in chunks:
        yield from (f" n{i}" for i in range(50))


def _upper(chunks: Any) -> Any:
    for chunk in chunks:
        yield str(chunk).upper()


SYNC_SHAPES = {
    "sync-source": lambda: RunnableGenerator(_numbers) | Probe(),
    "two-sync": lambda: RunnableGenerator(_numbers) | RunnableGenerator(_upper) | Probe(),
    "sync-after-async": lambda: RunnableGenerator(_source) | RunnableGenerator(_upper) | Probe(),
}


HANG_GUARD = 10.0  # seconds; only bounds a regression (a run that never finishes)


@pytest.mark.parametrize("shape", list(SYNC_SHAPES))
async def test_breaking_off_a_sync_generator_step_finishes_the_run(shape: str) -> None:
    """A run whose sync generators wait on full edges finishes once the consumer breaks off."""
    stream = SYNC_SHAPES[shape]().astream(None, {"capacity": 1})
    async for _ in stream:
        await anyio.wait_all_tasks_blocked()  # every edge full, the worker threads waiting
        break
    # The stream stays referenced, so stop it the way dropping the last reference does,
    # then wait for its host to finish (worker threads are invisible to
    # wait_all_tasks_blocked, so the run's own end is the synchronization).
    stream.cancel()
    with anyio.move_on_after(HANG_GUARD):
        await stream.wait_finished()
    if not stream.finished:
        # A regression leaves worker threads blocked on the loop: free them so the session
        # goes on (closing the stream closes its output), then fail.
        await stream.aclose()
        pytest.fail("the run did not finish after the consumer broke off")
    await settle()


async def test_cancelling_while_a_sync_generator_waits_for_input_finishes_the_run() -> None:
    """A sync generator whose thread waits for input from a stuck source is cancelled cleanly."""
    source: GatedSource[str] = GatedSource(["never"])
    with anyio.CancelScope() as scope:
        async with (source | RunnableGenerator(_upper) | Probe()).astream(None, {"capacity": 1}):
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    await settle()
    assert source.cancelled == 1
