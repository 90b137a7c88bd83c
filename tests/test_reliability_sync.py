"""The synchronous side (issue 12): an interrupted ``invoke``/``batch``/``stream`` stops
its run, and synchronous step code run in worker threads is closed and fails cleanly.

The interrupt tests are plain synchronous tests: they run in the main thread, which is
where Ctrl-C lands, and deliver a real SIGINT to it (``signal.pthread_kill``) from a
helper thread once the run's step is known to be waiting, so the interrupt always finds
the caller blocked in its wait for the background loop. A step that is not stopped by
the interrupt would wait forever; every wait in the tests is bounded by a hang guard.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest

import engine._portal
from engine import Runnable, RunnableGenerator, RunnableLambda
from nodes import BaseRetriever, Document, tool

HANG_GUARD = 10.0  # seconds; only bounds a regression (a run that never stops)


@pytest.fixture
def sigint_raises_keyboard_interrupt() -> Iterator[None]:
    """Python's own SIGINT handler for the test, which must run in the main thread."""
    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def ctrl_c_when(ready: threading.Event) -> Iterator[None]:
    """Press Ctrl-C (a real SIGINT to the main thread) in the block once ``ready`` is set.

    If ``ready`` is never set, it presses after the hang guard anyway, so that a run that
    never gets there fails its test instead of hanging it.
    """
    main = threading.main_thread().ident
    assert main is not None
    left = threading.Event()

    def press() -> None:
        ready.wait(HANG_GUARD)
        if not left.is_set():
            signal.pthread_kill(main, signal.SIGINT)

    thread = threading.Thread(target=press, name="ctrl-c", daemon=True)
    thread.start()
    try:
        yield
    finally:
        left.set()
        thread.join()


class BlockedSteps:
    """An async step that waits until cancelled, recording that it saw the cancellation
    and that its ``finally`` ran. ``all_waiting`` is set once ``expected`` calls wait."""

    def __init__(self, expected: int = 1) -> None:
        self.expected = expected
        self.all_waiting = threading.Event()
        self.cancelled = 0
        self.finished = 0
        self._lock = threading.Lock()
        self._waiting = 0

    async def wait_forever(self, value: Any) -> Any:
        with self._lock:
            self._waiting += 1
            if self._waiting == self.expected:
                self.all_waiting.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.finished += 1
        return value  # pragma: no cover - never reached


def test_interrupted_invoke_stops_its_run_before_reraising(sigint_raises_keyboard_interrupt: None) -> None:
    """Ctrl-C during ``invoke`` cancels its run and re-raises once the run's step ended."""
    steps = BlockedSteps()
    with pytest.raises(KeyboardInterrupt), ctrl_c_when(steps.all_waiting):
        (RunnableLambda(lambda x: x) | RunnableLambda(steps.wait_forever)).invoke(1)
    assert (steps.cancelled, steps.finished) == (1, 1)


def test_interrupted_batch_stops_every_run_before_reraising(sigint_raises_keyboard_interrupt: None) -> None:
    """Ctrl-C during ``batch`` cancels every item's run and re-raises once all ended."""
    steps = BlockedSteps(expected=3)
    with pytest.raises(KeyboardInterrupt), ctrl_c_when(steps.all_waiting):
        RunnableLambda(steps.wait_forever).batch([1, 2, 3])
    assert (steps.cancelled, steps.finished) == (3, 3)


def test_interrupted_stream_before_its_first_chunk_stops_its_run(
    sigint_raises_keyboard_interrupt: None,
) -> None:
    """Ctrl-C while ``stream`` waits for its first chunk cancels the run before re-raising."""
    steps = BlockedSteps()
    received: list[Any] = []
    with pytest.raises(KeyboardInterrupt), ctrl_c_when(steps.all_waiting):
        received.extend(RunnableLambda(steps.wait_forever).stream(1))
    assert received == []
    assert (steps.cancelled, steps.finished) == (1, 1)


def test_interrupted_stream_between_chunks_stops_its_run(sigint_raises_keyboard_interrupt: None) -> None:
    """Ctrl-C while ``stream`` waits for its next chunk cancels the run before re-raising."""
    steps = BlockedSteps()
    first_received = threading.Event()
    ready = threading.Event()

    async def first_then_wait(chunks: AsyncIterator[Any]) -> AsyncIterator[str]:
        async for _ in chunks:
            yield "first"
            await steps.wait_forever(None)

    def both() -> None:
        if steps.all_waiting.wait(HANG_GUARD) and first_received.wait(HANG_GUARD):
            ready.set()

    threading.Thread(target=both, daemon=True).start()
    received: list[str] = []
    with pytest.raises(KeyboardInterrupt), ctrl_c_when(ready):
        for chunk in RunnableGenerator(first_then_wait).stream(1):
            received.append(chunk)
            first_received.set()
    assert received == ["first"]
    assert (steps.cancelled, steps.finished) == (1, 1)


def test_interrupted_invoke_stops_the_run_of_a_nested_sync_call(
    sigint_raises_keyboard_interrupt: None,
) -> None:
    """Ctrl-C during ``invoke`` also stops the run its sync step started with ``invoke``."""
    # The nested call runs back on the outer run's loop from the step's worker thread
    # (which Ctrl-C never reaches): it ends because it is cancelled with the outer run.
    steps = BlockedSteps()
    inner = RunnableLambda(steps.wait_forever)
    outer = RunnableLambda(lambda value: inner.invoke(value))
    with pytest.raises(KeyboardInterrupt), ctrl_c_when(steps.all_waiting):
        outer.invoke(1)
    assert (steps.cancelled, steps.finished) == (1, 1)


def test_an_interrupted_call_waits_a_bounded_time_for_a_run_that_cannot_stop(
    sigint_raises_keyboard_interrupt: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A run that cannot stop is waited for only ``INTERRUPT_GRACE`` s, then a warning is logged."""
    # A sync step stuck in its worker thread cannot be cancelled. The grace is made short
    # here; engine._portal is private, but the constant is documented as the bound.
    monkeypatch.setattr(engine._portal, "INTERRUPT_GRACE", 0.05)
    waiting = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def stuck(value: Any) -> Any:
        waiting.set()
        try:
            release.wait(HANG_GUARD)
            return value
        finally:
            finished.set()

    try:
        with (
            caplog.at_level(logging.WARNING, logger="rillet"),
            pytest.raises(KeyboardInterrupt),
            ctrl_c_when(waiting),
        ):
            RunnableLambda(stuck).invoke(1)
        assert not finished.is_set()
        assert any("did not stop within" in record.getMessage() for record in caplog.records)
    finally:
        release.set()
        assert finished.wait(HANG_GUARD)


async def test_cancelling_a_run_stops_the_run_of_a_nested_sync_call() -> None:
    """A sync step's nested ``invoke`` (on the run's own loop) is cancelled with its run."""
    steps = BlockedSteps()
    inner = RunnableLambda(steps.wait_forever)
    outer = RunnableLambda(lambda value: inner.invoke(value))
    with anyio.fail_after(HANG_GUARD), anyio.CancelScope() as scope:
        async with outer.astream(1):
            assert await anyio.to_thread.run_sync(steps.all_waiting.wait, HANG_GUARD)
            scope.cancel()
    assert scope.cancelled_caught
    assert (steps.cancelled, steps.finished) == (1, 1)


async def test_a_sync_generator_tool_stopped_early_is_closed_in_a_worker_thread() -> None:
    """A sync generator tool stopped early runs its ``finally`` in a worker thread, in the run."""
    # Before the fix the generator was left to be finalised when its last reference went:
    # on the loop's thread (blocking it), or by the garbage collector, which is off here.
    closed_in: list[threading.Thread] = []

    @tool
    def count(start: int) -> Iterator[int]:
        """Count up from start, forever."""
        try:
            number = start
            while True:
                yield number
                number += 1
        finally:
            closed_in.append(threading.current_thread())

    gc.disable()
    try:
        with anyio.fail_after(HANG_GUARD):
            async with count.astream(0, {"capacity": 1}) as chunks:
                async for chunk in chunks:
                    assert chunk == 0
                    break
        assert len(closed_in) == 1
        assert closed_in[0] is not threading.current_thread()
    finally:
        gc.enable()


class _ExitingRetriever(BaseRetriever):
    def get_relevant_documents(self, query: str) -> list[Document]:
        raise GeneratorExit("leaving")


def _lambda_raising(value: Any) -> Any:
    raise GeneratorExit("leaving")


def _generator_raising(chunks: Iterator[Any]) -> Iterator[Any]:
    for chunk in chunks:
        yield chunk
        raise GeneratorExit("leaving")


@tool
def _tool_raising(value: int) -> int:
    """Raises GeneratorExit."""
    raise GeneratorExit("leaving")


@tool
def _generator_tool_raising(value: int) -> Iterator[int]:
    """Yields once, then raises GeneratorExit."""
    yield value
    raise GeneratorExit("leaving")


GENERATOR_EXIT_STEPS: dict[str, tuple[Callable[[], Runnable[Any, Any]], str]] = {
    "lambda": (lambda: RunnableLambda(lambda x: x) | RunnableLambda(_lambda_raising), "_lambda_raising"),
    "generator": (lambda: RunnableGenerator(_generator_raising), "_generator_raising"),
    "tool": (lambda: _tool_raising, "_tool_raising"),
    "generator-tool": (lambda: _generator_tool_raising, "_generator_tool_raising"),
    "retriever": (lambda: _ExitingRetriever(), "_ExitingRetriever"),
}


@pytest.mark.parametrize("kind", list(GENERATOR_EXIT_STEPS))
async def test_a_sync_step_raising_generator_exit_fails_with_an_error_naming_it(kind: str) -> None:
    """A sync step's ``GeneratorExit`` arrives as a RuntimeError naming the step, caused by it."""
    make, name = GENERATOR_EXIT_STEPS[kind]
    with (
        anyio.fail_after(HANG_GUARD),
        pytest.raises(RuntimeError, match=f"step '{name}' raised GeneratorExit") as info,
    ):
        await make().ainvoke("query" if kind == "retriever" else 1)
    assert isinstance(info.value.__cause__, GeneratorExit)
    assert str(info.value.__cause__) == "leaving"
