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

from ._chunks import concat_chunks
from ._edge import ConstantInbox
from ._launch import Inbox, Launch, Outbox, RecordingInbox, Site
from ._runnable import Runnable
from ._step import Step

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("AggregateNode", "TransformNode", "pump")


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


class TransformNode(Runnable[In, Out]):
    """A leaf that works on the input stream: each input chunk may yield output at once."""

    def _transform(self, chunks: AsyncIterator[In], step: Step) -> AsyncIterator[Out]:
        """Yield output chunks while consuming ``chunks`` (override in subclasses)."""
        raise NotImplementedError

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        step = launch.new_step(self, site, inbox)

        async def actor() -> None:
            source: Inbox[Any] = inbox
            if step.subscribers and not step.input_known:
                source = RecordingInbox(inbox, step)
            try:
                await pump(self._transform(source, step), outbox, step)
            finally:
                outbox.close()

        launch.spawn(step, actor)


class AggregateNode(Runnable[In, Out]):
    """A leaf that needs its whole input: it adds the chunks up, then computes."""

    def _compute(self, value: In, step: Step) -> AsyncIterator[Out]:
        """Yield the output for the finalized input ``value`` (override in subclasses)."""
        raise NotImplementedError

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        step = launch.new_step(self, site, inbox)

        async def actor() -> None:
            try:
                value = await aggregate(inbox)
                step.set_input(value)
                await pump(self._compute(value, step), outbox, step)
            finally:
                outbox.close()

        launch.spawn(step, actor)


async def aggregate(inbox: Inbox[Any]) -> Any:
    """The whole input of an inbox: its chunks added together."""
    if isinstance(inbox, ConstantInbox):
        return await inbox.receive()
    chunks = [chunk async for chunk in inbox]
    return concat_chunks(chunks, inbox.accumulation)
