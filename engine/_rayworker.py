"""The Ray actor behind ``engine.ray.RayRunnable``: runs the wrapped runnable on asyncio.

An actor holds its own copy of the runnable (shipped once, when the actor is made) and
runs it with rillet's own API on the actor's asyncio loop (an async actor: Ray can
cancel its calls). One call of :meth:`RayWorker.stream` is one run: a streaming
generator whose every object is a *batch* of what the run made since the last object
(output chunks, and events when the driver listens), so a fast stream costs one Ray
object per batch, not per chunk.

The run is nested under a stand-in of the driver's step (:func:`stand_in`), so its
events carry the driver's run ids, tags and metadata as if it had run there. The run
itself is a background task writing to a bounded channel that the generator reads:
nothing yields from inside a task group, and a slow driver (the generator's backpressure)
slows the run through that channel.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any, Final, cast

import anyio
from anyio.abc import ObjectSendStream

from ._bus import EventBus, EventFilter, Subscription
from ._config import DEFAULT_CAPACITY
from ._forward import StepContext
from ._runnable import Runnable
from ._step import RunScope, Step, set_current_step

__all__ = ("CHUNKS", "EVENT", "RayWorker", "on_worker", "stand_in")

#: The tags of what a batch holds: a list of output chunks, or one event.
CHUNKS: Final = 0
EVENT: Final = 1

# Items (chunk lists or events) made but not yet handed to Ray: with Ray's own bound on
# unread objects, this bounds what a slow driver lets pile up on the worker.
_PENDING_ITEMS: Final = 16
_ALL: Final = 1 << 30


def stand_in(context: StepContext, bus: EventBus | None) -> Step:
    """A step with the driver's step identity, for a run on this worker to nest under.

    It never runs or publishes: runs started under it take its run id as their parent,
    its inheritable tags, metadata, ``configurable`` values, recursion depth and event
    version, and publish to ``bus``.
    """
    scope = RunScope(
        root_run_id=context.root_run_id, bus=bus, capacity=DEFAULT_CAPACITY, version=context.version
    )
    return Step(
        run_id=context.run_id,
        name=context.name,
        kind=context.kind,
        tags=context.tags,
        inheritable_tags=context.inheritable_tags,
        metadata=context.metadata,
        parent=None,
        scope=scope,
        parent_ids=context.parent_ids,
        depth=context.depth,
        recursion_limit=context.recursion_limit,
        configurable=context.configurable,
    )


#: True in the runs a RayRunnable's actor makes, and the tasks they start. A context
#: variable, not a process flag: a RayWorker made in the driver's own process (Ray's
#: local mode, a test) must not make every later RayRunnable there refuse to run.
_IN_WORKER_RUN: ContextVar[bool] = ContextVar("rillet_in_ray_worker_run", default=False)


def on_worker() -> bool:
    """Whether this code runs inside a run of a ``RayRunnable``'s actor (runs do not nest on Ray)."""
    return _IN_WORKER_RUN.get()


class RayWorker:
    """The body of each actor of a ``RayRunnable``'s pool (made a Ray actor there)."""

    def __init__(self, runnable: Runnable[Any, Any]) -> None:
        self._runnable = runnable

    async def ping(self) -> int:
        """The worker's process id (the actor is up once this answers)."""
        return os.getpid()

    async def node(self) -> str:
        """The id of the Ray node this actor runs on."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    async def stream(self, value: Any, context: StepContext, batch_limit: int) -> AsyncIterator[list[Any]]:
        """Run the runnable on ``value``; yield batches of ``(CHUNKS, [chunk, ...])`` and
        ``(EVENT, event)`` items as the run makes them, at most ``batch_limit`` items each.

        Raises:
            Exception: The run's own error, after everything it made before it.
        """
        send, receive = anyio.create_memory_object_stream[tuple[int, Any]](_PENDING_ITEMS)
        # Stopped through an anyio scope, not task.cancel(): a native cancellation of a
        # task inside anyio's scopes can be taken for one of their own and absorbed.
        stop = anyio.CancelScope()
        _IN_WORKER_RUN.set(True)  # (this call's own context, copied into the run's task)
        task = asyncio.ensure_future(self._produce(value, context, batch_limit, send, stop))
        try:
            async with receive:
                while True:
                    try:
                        batch = [await receive.receive()]
                    except anyio.EndOfStream:
                        break
                    while len(batch) < batch_limit:
                        try:
                            batch.append(receive.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    yield batch
            await task  # the run's error, if it failed
        finally:
            if not task.done():
                # Cancelled (ray.cancel) or closed early: stop the run and wait for its cleanup.
                stop.cancel()
                await asyncio.wait([task])

    async def invoke(self, value: Any, context: StepContext) -> list[Any]:
        """Run the runnable on ``value``; return, in one reply, every item :meth:`stream`
        would have yielded (for a run whose caller wants only the whole output).

        Raises:
            Exception: The run's own error.
        """
        _IN_WORKER_RUN.set(True)  # (this call's own context: its run and tasks see it)
        if context.filters:
            items: list[Any] = []
            async for batch in self.stream(value, context, _ALL):
                items.extend(batch)
            return items
        # Nobody listens: no events to interleave, so the run is read here directly,
        # without stream()'s channel and background task (a third of a zero-work item's
        # cost on the worker). ray.cancel cancels this call's task; the run's stream
        # (whose own task group is entered by ``async with``) ends the run and lets the
        # cancellation through, as it does for any consumer that is cancelled.
        set_current_step(stand_in(context, None))
        chunks: list[Any] = []
        async with self._runnable.astream(value) as stream:
            while batch := await stream.next_batch(_ALL):
                chunks.extend(batch)
        return [(CHUNKS, chunks)] if chunks else []

    async def _produce(
        self,
        value: Any,
        context: StepContext,
        limit: int,
        send: ObjectSendStream[tuple[int, Any]],
        stop: anyio.CancelScope,
    ) -> None:
        with stop:
            await self._run(value, context, limit, send)

    async def _run(
        self, value: Any, context: StepContext, limit: int, send: ObjectSendStream[tuple[int, Any]]
    ) -> None:
        async with send:
            if not context.filters:
                set_current_step(stand_in(context, None))
                await self._pump(value, limit, send)
                return
            bus = EventBus()
            # The stand-in's context matches what any driver subscriber would see
            # (StepContext.matches has EventFilter.matches' signature).
            subscription = Subscription(
                bus, cast(EventFilter, context), _PENDING_ITEMS, "block", native=False
            )
            bus._attach(subscription)
            set_current_step(stand_in(context, bus))
            failure: Exception | None = None

            async def pump() -> None:
                nonlocal failure
                try:
                    await self._pump(value, limit, send)
                except Exception as exc:
                    failure = exc  # raised as itself below, not inside a task group's group
                finally:
                    subscription.end()  # the run is over: forward what it published, then stop

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(pump)
                async for event in subscription:
                    await send.send((EVENT, event))
            if failure is not None:
                raise failure

    async def _pump(self, value: Any, limit: int, send: ObjectSendStream[tuple[int, Any]]) -> None:
        async with self._runnable.astream(value) as chunks:
            while batch := await chunks.next_batch(limit):
                await send.send((CHUNKS, batch))
