"""The synchronous API: running a run from code that is not async.

Where a synchronous call comes from decides where its run goes:

* from a worker thread that a run started (a synchronous lambda, tool or generator):
  the run goes back to that run's own event loop (``anyio.from_thread``), so it is
  nested under the calling step and publishes to the same bus;
* from anywhere else (plain scripts, other threads, an event loop's own thread as in a
  notebook cell): the run goes to one long-lived background event loop that rillet
  starts once per process, and the caller blocks until it is done. No event loop is
  started per call, and a loop that calls in just waits, without deadlock, since its
  run does not need it.

Async code inside a running step must not call the synchronous API: that would stall
its own loop, so it is refused with a message that says to ``await`` instead.

An interrupted call stops its run. When the caller's wait for the background loop is
interrupted (Ctrl-C raises ``KeyboardInterrupt`` in the main thread while it waits, or
any other exception is raised there), the call cancels its task on the loop, waits up
to :data:`INTERRUPT_GRACE` seconds for it (and so for its run, whose tools and model
calls are cancelled) to end, then re-raises the interrupt. A run that does not stop in
time (a synchronous step stuck in a worker thread cannot be cancelled) is left to end
on its own, with a warning on the ``rillet`` logger; a second Ctrl-C ends the wait at
once. A nested call (in a run's worker thread) needs none of this: that thread gets no
signals, an exception sent to it by ``PyThreadState_SetAsyncExc`` is raised only once
its wait has returned, and its nested run is a child of the calling step, so it is
cancelled whenever the calling run is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

import anyio
import anyio.from_thread
import sniffio

from ._run import RunStream
from ._step import Step, current_step, set_current_step

T = TypeVar("T")

__all__ = ("INTERRUPT_GRACE", "call_blocking", "iterate_blocking")

#: Seconds an interrupted synchronous call waits for its run to stop before re-raising.
INTERRUPT_GRACE = 5.0

_LOG = logging.getLogger("rillet")


class _BackgroundLoop:
    """One asyncio event loop in a daemon thread, for synchronous callers."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="rillet-sync-loop", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._ready.set()
        loop.run_forever()

    @property
    def thread_id(self) -> int | None:
        return self._thread.ident

    def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``func(*args)`` on this loop and wait for its result.

        If the wait is interrupted, the call is cancelled and waited for (at most
        :data:`INTERRUPT_GRACE` seconds) before the interrupt goes on.
        """
        loop = self._loop
        assert loop is not None
        job: _Job[T] = _Job(loop)
        try:
            job.start(func, *args)
            return job.future.result()
        except BaseException:
            if not job.future.done():  # interrupted while waiting, not the call's own error
                job.stop(INTERRUPT_GRACE)
            raise


class _Job(Generic[T]):
    """One call on the background loop, as the calling thread sees it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._task: asyncio.Task[T] | None = None  # touched on the loop's thread only

    def start(self, func: Callable[..., Awaitable[T]], *args: Any) -> None:
        def start() -> None:
            task = self._loop.create_task(_as_coroutine(func, *args))
            self._task = task
            task.add_done_callback(lambda done: _settle(done, self.future))

        # A fresh context: the caller's (say, a trio thread's) must not leak into this
        # loop, where it would make sniffio report the caller's library.
        self._loop.call_soon_threadsafe(start, context=contextvars.Context())

    def stop(self, grace: float) -> None:
        """Cancel the call and wait up to ``grace`` seconds for it to end."""
        self._loop.call_soon_threadsafe(self._cancel)
        try:
            # (Not concurrent.futures.wait: it is not woken by a cancelled future.)
            error = self.future.exception(timeout=grace)
        except concurrent.futures.CancelledError:
            return  # the usual end: the cancellation went all the way through
        except TimeoutError:
            _LOG.warning(
                "an interrupted synchronous rillet call did not stop within %s s; "
                "its run goes on in the background until it ends",
                grace,
            )
            return
        if error is not None:
            # Its run failed while stopping: nobody else will hear of it.
            _LOG.error(
                "an interrupted synchronous rillet call failed while it stopped: %r",
                error,
                exc_info=(type(error), error, error.__traceback__),
            )

    def _cancel(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
        else:
            # Callbacks run in the order they were scheduled: no task yet means the
            # interrupt came before ``start`` was scheduled, so it never will be.
            self.future.cancel()


def _settle(task: asyncio.Task[T], result: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        result.cancel()
    elif (error := task.exception()) is not None:
        result.set_exception(error)
    else:
        value: T = task.result()
        result.set_result(value)


async def _as_coroutine(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await func(*args)


_background: _BackgroundLoop | None = None
_background_lock = threading.Lock()


def _background_loop() -> _BackgroundLoop:
    global _background
    with _background_lock:
        if _background is None:
            _background = _BackgroundLoop()
        return _background


async def _as_child_of(parent: Step | None, func: Callable[..., Awaitable[T]], *args: Any) -> T:
    set_current_step(parent)
    return await func(*args)


def _in_async_context() -> bool:
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return True


def call_blocking(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``func(*args)`` to completion on the right loop and return its result."""
    parent = current_step()
    try:
        nested: T = anyio.from_thread.run(_as_child_of, parent, func, *args)
        return nested
    except anyio.NoEventLoopError:
        pass
    if parent is not None and _in_async_context():
        raise RuntimeError(
            f"a synchronous call (invoke/stream/batch) was made from async code running in "
            f"step {parent.name!r}: it would block that step's own event loop; "
            "use 'await ainvoke(...)', 'astream' or 'abatch' there instead"
        )
    background = _background_loop()
    if threading.get_ident() == background.thread_id:
        raise RuntimeError("a synchronous rillet call was made from rillet's own background loop")
    result: T = background.call(_as_child_of, None, func, *args)
    return result


def iterate_blocking(open_stream: Callable[[], RunStream[T]], batch: int = 256) -> Iterator[T]:
    """A synchronous generator over a run's stream, fetching ready chunks in batches.

    Whatever ends it early stops the run: the consumer stopping (``close()``, or
    dropping it after a ``break``) stops it and waits for it to end; an interrupted
    fetch stops it and waits no longer than any interrupted call.
    """
    fetch = _Fetch(open_stream, batch)
    try:
        while items := call_blocking(fetch.next):
            yield from items
    finally:
        if fetch.stream is not None and not fetch.stopping:
            call_blocking(fetch.stream.aclose)


class _Fetch(Generic[T]):
    """The fetches of one synchronous stream, which know whether one stopped its run."""

    def __init__(self, open_stream: Callable[[], RunStream[T]], batch: int) -> None:
        self._open_stream = open_stream
        self._batch = batch
        self.stream: RunStream[T] | None = None
        # Set on the loop once a fetch has begun stopping the run, so the generator does
        # not stop it again (and wait for it without a bound) after an interrupt.
        self.stopping = False

    async def next(self) -> list[T]:
        """The next ready chunks (``[]`` at the end); if this fails or is cancelled (its
        caller was interrupted), the run is stopped and waited for first."""
        stream = self.stream
        if stream is None:
            stream = self.stream = self._open_stream()
        try:
            return await stream.next_batch(self._batch)
        except BaseException:
            self.stopping = True
            await stream.aclose()  # waits for the run (shielded); at once if it has ended
            raise
