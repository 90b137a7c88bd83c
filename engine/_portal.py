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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import sniffio

from ._run import RunStream
from ._step import Step, current_step, set_current_step

T = TypeVar("T")

__all__ = ("call_blocking", "iterate_blocking")


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
        loop = self._loop
        assert loop is not None
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            task = loop.create_task(_as_coroutine(func, *args))
            task.add_done_callback(lambda done: _settle(done, result))

        # A fresh context: the caller's (say, a trio thread's) must not leak into this
        # loop, where it would make sniffio report the caller's library.
        loop.call_soon_threadsafe(start, context=contextvars.Context())
        return result.result()


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
    """A synchronous generator over a run's stream, fetching ready chunks in batches."""
    stream: RunStream[T] | None = None

    async def open_and_first() -> list[T]:
        nonlocal stream
        stream = open_stream()
        return await stream.next_batch(batch)

    items = call_blocking(open_and_first)
    assert stream is not None
    try:
        while items:
            yield from items
            items = call_blocking(stream.next_batch, batch)
    finally:
        call_blocking(stream.aclose)
