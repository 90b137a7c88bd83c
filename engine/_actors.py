"""The two leaf node kinds of the design card, and the actor loop each one runs.

* A :class:`TransformNode` consumes its inbox and emits chunks as it goes
  (``_transform`` is an async generator over the input chunks).
* An :class:`AggregateNode` adds its input chunks together until upstream closes, then
  computes on the finalized value (``_compute`` is an async generator too, so an
  aggregate may stream its result, as a chat model does).

These loops are the only places a leaf publishes its stream events: once per chunk,
before the chunk is sent downstream (so anything the chunk causes is published later),
and only when the step has subscribers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

import anyio

from ._chunks import concat_chunks
from ._edge import ConstantInbox
from ._launch import Inbox, Launch, Outbox, RecordingInbox, Site
from ._runnable import Runnable
from ._step import _CURRENT_STEP, RunCancelled, Step

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("AggregateNode", "LeafNode", "TransformNode", "launch_fused", "pump")


async def pump(source: AsyncIterator[Any], outbox: Outbox[Any], step: Step) -> None:
    """Send everything ``source`` yields to ``outbox``, publishing stream events first."""
    try:
        if step.subscribers:
            async for chunk in source:
                await step.emit_stream(chunk)
                await outbox.send(chunk)
        else:
            send = outbox.send
            async for chunk in source:
                await send(chunk)
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


class LeafNode(Runnable[In, Out]):
    """A step that is one actor: it reads an inbox and writes chunks to an outbox."""

    def _can_fuse(self) -> bool:
        """Whether this leaf can share a task with its neighbours in an observed sequence."""
        return True

    def _chunks(self, inbox: Inbox[In], step: Step) -> AsyncIterator[Out]:
        """The step's output chunks, reading ``inbox`` (an async generator)."""
        raise NotImplementedError

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        step = launch.new_step(self, site, inbox)

        async def actor() -> None:
            try:
                await pump(self._chunks(inbox, step), outbox, step)
            finally:
                outbox.close()

        launch.spawn(step, actor)


class TransformNode(LeafNode[In, Out]):
    """A leaf that works on the input stream: each input chunk may yield output at once."""

    def _transform(self, chunks: AsyncIterator[In], step: Step) -> AsyncIterator[Out]:
        """Yield output chunks while consuming ``chunks`` (override in subclasses)."""
        raise NotImplementedError

    def _chunks(self, inbox: Inbox[In], step: Step) -> AsyncIterator[Out]:
        source: Inbox[Any] = inbox
        if step.subscribers and not step.input_known:
            source = RecordingInbox(inbox, step)
        return self._transform(source, step)


class AggregateNode(LeafNode[In, Out]):
    """A leaf that needs its whole input: it adds the chunks up, then computes."""

    def _compute(self, value: In, step: Step) -> AsyncIterator[Out]:
        """Yield the output for the finalized input ``value`` (override in subclasses)."""
        raise NotImplementedError

    async def _chunks(self, inbox: Inbox[In], step: Step) -> AsyncIterator[Out]:
        value = await aggregate(inbox)
        step.set_input(value)
        results = self._compute(value, step)
        try:
            async for chunk in results:
                yield chunk
        finally:
            aclose = getattr(results, "aclose", None)
            if aclose is not None:
                await aclose()


async def aggregate(inbox: Inbox[Any]) -> Any:
    """The whole input of an inbox: its chunks added together."""
    if isinstance(inbox, ConstantInbox):
        return await inbox.receive()
    chunks = [chunk async for chunk in inbox]
    return concat_chunks(chunks, inbox.accumulation)


class _StageInbox:
    """A fused stage's output, read by the next stage as its inbox (same task)."""

    __slots__ = ("_chunks", "_done", "_step", "accumulation")

    def __init__(self, chunks: AsyncIterator[Any], step: Step) -> None:
        self._chunks = chunks
        self._step = step
        self._done = False
        self.accumulation = step.accumulation

    def __aiter__(self) -> _StageInbox:
        return self

    async def __anext__(self) -> Any:
        step = self._step
        # The stage's own code runs as its step, so runs it starts nest under it.
        token = _CURRENT_STEP.set(step)
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._finish(None)
            raise
        except BaseException as exc:
            self._finish(exc)
            raise
        finally:
            _CURRENT_STEP.reset(token)
        if step.subscribers:
            await step.emit_stream(chunk)
        return chunk

    async def receive(self) -> Any:
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise anyio.EndOfStream from None

    def _finish(self, error: BaseException | None) -> None:
        if not self._done:
            self._done = True
            self._step.unit_done(error)

    async def aclose(self) -> None:
        aclose = getattr(self._chunks, "aclose", None)
        try:
            if aclose is not None:
                await aclose()
        finally:
            # Closed before its end: the stage was stopped from downstream.
            self._finish(RunCancelled(self._step.name))


def launch_fused(
    launch: Launch, stages: list[tuple[LeafNode[Any, Any], Site]], inbox: Inbox[Any], outbox: Outbox[Any]
) -> None:
    """Launch consecutive leaves of a sequence as one actor (for an observed run).

    Each leaf keeps its own step and events; the chunks pass from one stage to the next
    by plain iteration in one task, so every chunk goes all the way down before the next
    one is made: subscribers see events in exact pipeline order, without a context
    switch per chunk and stage.
    """
    prepared: list[tuple[LeafNode[Any, Any], Step]] = []
    source: Inbox[Any] = inbox
    for node, site in stages:
        step = launch.new_step(node, site, source)
        step.accumulation = node._accumulation()
        prepared.append((node, step))
        # Only the first stage's input is a real inbox; later ones are set when running.
        source = _PENDING_INBOX
    last_node, last_step = prepared[-1]
    for _, step in prepared[:-1]:
        launch.claim(step)

    async def actor() -> None:
        current: Inbox[Any] = inbox
        stages: list[_StageInbox] = []
        try:
            for node, step in prepared[:-1]:
                stage = _StageInbox(node._chunks(current, step), step)
                stages.append(stage)
                current = stage
            await pump(last_node._chunks(current, last_step), outbox, last_step)
        finally:
            outbox.close()
            for stage in reversed(stages):
                await stage.aclose()
            for _, step in prepared[:-1]:
                if not step.finished:
                    step.unit_done(RunCancelled(step.name))

    launch.spawn(last_step, actor)


class _PendingInbox:
    """Stands for a fused stage's inbox at launch time (its input is not known)."""

    accumulation: Any = "add"


_PENDING_INBOX: Any = _PendingInbox()
