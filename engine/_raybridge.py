"""Awaiting Ray from a driver on trio or asyncio, without a thread per call.

Ray's own awaitables (``await ref``, ``async for`` over an ``ObjectRefGenerator``) work
on asyncio only. Here an object ref is awaited through its ``concurrent.futures.Future``
(``ref.future()``): Ray's I/O thread completes the future, and its done-callback wakes
the waiting task on the driver's loop (``TrioToken.run_sync_soon`` on trio,
``loop.call_soon_threadsafe`` on asyncio). No thread is parked per outstanding call.

A streaming generator's next ref is found as Ray's own ``_next_async`` finds it (peek at
the position the stream will fill next, wait for it, then read it): the peeking is
Ray's core-worker API, private, so it is looked up once and refused with a clear error
on a Ray without it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import Any

import anyio
import sniffio

__all__ = ("await_ref", "next_ref", "wait_ready")


def _waker(event: anyio.Event) -> Callable[[], None]:
    """A thread-safe callable that sets ``event`` on the current loop."""
    if sniffio.current_async_library() == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()

        def wake_trio() -> None:
            # (RunFinishedError: the driver's loop is gone, nobody waits any more.)
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(event.set)

        return wake_trio
    loop = asyncio.get_running_loop()

    def wake_asyncio() -> None:
        # (RuntimeError: the loop was closed, nobody waits any more.)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(event.set)

    return wake_asyncio


async def _wait_future(future: concurrent.futures.Future[Any]) -> None:
    if future.done():
        await anyio.lowlevel.checkpoint()
        return
    event = anyio.Event()
    wake = _waker(event)
    future.add_done_callback(lambda _: wake())
    await event.wait()


async def wait_ready(ref: Any) -> concurrent.futures.Future[Any]:
    """Wait until the object behind ``ref`` is ready; return its (done) future.

    A cancel point: cancelling the wait leaves the object alone (the caller cancels
    the remote work with ``ray.cancel`` if it must stop).
    """
    future: concurrent.futures.Future[Any] = ref.future()
    await _wait_future(future)
    return future


async def await_ref(ref: Any) -> Any:
    """The value behind ``ref``, awaited without blocking the loop.

    Raises:
        Exception: What Ray raises for the object (``RayTaskError``, ``RayActorError``...).
    """
    future = await wait_ready(ref)
    return future.result()


def _core_worker(generator: Any) -> Any:
    core_worker = generator.worker.core_worker
    for name in ("peek_object_ref_stream", "try_read_next_object_ref_stream"):
        if not hasattr(core_worker, name):
            raise RuntimeError(
                f"this Ray ({_ray_version()}) has no core_worker.{name}, which engine.ray uses "
                "to await a streaming generator from trio; install a Ray the 'ray' extra allows"
            )
    return core_worker


def _ray_version() -> str:
    import ray

    return str(ray.__version__)


async def next_ref(generator: Any) -> Any:
    """The next ref of a Ray ``ObjectRefGenerator``, awaited without blocking the loop.

    Returns the ref of the next object (ready: its value is local or at hand), or the
    generator task's own ref when the task failed (reading it raises the failure).

    Raises:
        StopAsyncIteration: The generator finished cleanly and every object was read.
    """
    import ray
    from ray.exceptions import ObjectRefStreamEndOfStreamError

    core_worker = _core_worker(generator)
    task_ref = generator._generator_ref
    expected, ready = core_worker.peek_object_ref_stream(task_ref)
    if not ready:
        # Ready once the worker yielded it, or the stream ended (it then holds the
        # end-of-stream marker or the task's failure): either way, read on below.
        await wait_ready(expected)
    else:
        await anyio.lowlevel.checkpoint()
    try:
        ref = core_worker.try_read_next_object_ref_stream(task_ref)
    except ObjectRefStreamEndOfStreamError:
        if generator._generator_task_raised:
            raise StopAsyncIteration from None
        # The task's own ref holds its failure if it failed, nothing if it finished.
        completed = await wait_ready(task_ref)
        if completed.exception() is not None:
            generator._generator_task_raised = True
            return task_ref
        raise StopAsyncIteration from None
    assert isinstance(ref, ray.ObjectRef) and not ref.is_nil()
    return ref
