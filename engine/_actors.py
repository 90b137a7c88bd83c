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
from typing import Any, ClassVar, TypeVar

import anyio

from ._chunks import concat_chunks
from ._edge import ConstantInbox, Edge
from ._launch import DiscardOutbox, Inbox, Launch, Outbox, RecordingInbox, Site, TapOutbox
from ._runnable import Runnable
from ._signal import checkpoint
from ._step import _CURRENT_STEP, RunCancelled, Step

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("AggregateNode", "LeafNode", "TransformNode", "launch_fused", "pump")


async def pump(source: AsyncIterator[Any], outbox: Outbox[Any], step: Step) -> None:
    """Send everything ``source`` yields to ``outbox``, publishing stream events first.

    ``source`` is closed here (in this task) however the loop ends.
    """
    try:
        if step.subscribers or type(outbox) is TapOutbox:
            await _pump_observed(source, outbox, step)
        elif type(outbox) is Edge:
            await outbox.send_from(source)
        else:
            send = outbox.send
            async for chunk in source:
                await send(chunk)
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


async def _pump_observed(source: AsyncIterator[Any], outbox: Outbox[Any], step: Step) -> None:
    # The composite steps whose output this is (taps around the outbox) publish each
    # chunk right after this step, in the same loop; they share one output log.
    publishers = [step] if step.subscribers else []
    target: Any = outbox
    while type(target) is TapOutbox:
        publishers.append(target.step)
        target = target.outbox
    for publisher in publishers[1:]:
        publisher.share_output_log(publishers[0])
    discard = type(target) is DiscardOutbox
    send = target.send
    pace = step.scope.pace
    async for chunk in source:
        for publisher in publishers:
            pending = publisher.publish_stream(chunk)
            if pending is not None:
                await pending
        if discard:
            # Nobody reads the output: still let other tasks in now and then.
            if pace.tick():
                await checkpoint()
        else:
            await send(chunk)


class LeafNode(Runnable[In, Out]):
    """A step that is one actor: it reads an inbox and writes chunks to an outbox."""

    #: Whether the node's code may need to know its own step while it runs (to nest
    #: the runs it starts, or to dispatch custom events). Nodes whose code never calls
    #: back into the engine say ``False``: a fused stage then skips switching the
    #: current step around every chunk it makes.
    _reads_current_step: ClassVar[bool] = True

    def _can_fuse(self) -> bool:
        """Whether this leaf can share a task with its neighbours in an observed sequence."""
        return True

    async def _start_output(self, inbox: Inbox[In], step: Step) -> AsyncIterator[Out]:
        """Start the step: return the iterator of its output chunks, reading ``inbox``."""
        raise NotImplementedError

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        step = launch.new_step(self, site, inbox)

        async def actor() -> None:
            try:
                await pump(await self._start_output(inbox, step), outbox, step)
            finally:
                outbox.close()

        launch.spawn(step, actor)


class TransformNode(LeafNode[In, Out]):
    """A leaf that works on the input stream: each input chunk may yield output at once."""

    def _transform(self, chunks: AsyncIterator[In], step: Step) -> AsyncIterator[Out]:
        """Yield output chunks while consuming ``chunks`` (override in subclasses)."""
        raise NotImplementedError

    async def _start_output(self, inbox: Inbox[In], step: Step) -> AsyncIterator[Out]:
        source: Inbox[Any] = inbox
        if step.subscribers and not step.input_known and not step.input_shared:
            source = RecordingInbox(inbox, step)
        return self._transform(source, step)


class AggregateNode(LeafNode[In, Out]):
    """A leaf that needs its whole input: it adds the chunks up, then computes."""

    def _compute(self, value: In, step: Step) -> AsyncIterator[Out]:
        """The output for the finalized input ``value``: an async iterator (usually an
        async generator), which the engine closes when the step ends."""
        raise NotImplementedError

    async def _start_output(self, inbox: Inbox[In], step: Step) -> AsyncIterator[Out]:
        value = await aggregate(inbox)
        step.set_input(value)
        return self._compute(value, step)


async def aggregate(inbox: Inbox[Any]) -> Any:
    """The whole input of an inbox: its chunks added together."""
    if isinstance(inbox, ConstantInbox):
        return await inbox.receive()
    chunks = [chunk async for chunk in inbox]
    return concat_chunks(chunks, inbox.accumulation)


class _StageInbox:
    """A fused stage's output, read by the next stage as its inbox (same task)."""

    __slots__ = ("_chunks", "_done", "_inbox", "_node", "_step", "accumulation")

    def __init__(self, node: LeafNode[Any, Any], inbox: Inbox[Any], step: Step) -> None:
        self._node = node
        self._inbox = inbox
        self._chunks: AsyncIterator[Any] | None = None
        self._step = step
        self._done = False
        self.accumulation = step.accumulation

    def __aiter__(self) -> _StageInbox:
        return self

    async def __anext__(self) -> Any:
        step = self._step
        # The stage's own code runs as its step, so runs it starts nest under it.
        token = _CURRENT_STEP.set(step) if self._node._reads_current_step else None
        try:
            chunks = self._chunks
            if chunks is None:
                chunks = self._chunks = await self._node._start_output(self._inbox, step)
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            self._finish(None)
            raise
        except BaseException as exc:
            self._finish(exc)
            raise
        finally:
            if token is not None:
                _CURRENT_STEP.reset(token)
        pending = step.publish_stream(chunk)
        if pending is not None:
            await pending
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
            for index, (node, step) in enumerate(prepared[:-1]):
                if index:
                    # This stage reads exactly what the one before emits: one log for both.
                    step.share_input_log(prepared[index - 1][1])
                stage = _StageInbox(node, current, step)
                stages.append(stage)
                current = stage
            if len(prepared) > 1:
                last_step.share_input_log(prepared[-2][1])
            await pump(await last_node._start_output(current, last_step), outbox, last_step)
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
