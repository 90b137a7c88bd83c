"""Steps that host another runnable: the base of retry, fallbacks and timeouts.

A :class:`HostingNode` is a leaf step whose actor aggregates its input, then runs one or
more *attempts*: nested runs of other runnables (``async with r.astream(value)``), which
nest under the hosting step automatically (their events are its children). What an
attempt produces goes to the step's output through an :class:`Emitter`, which publishes
the step's stream events and counts what was delivered.

**The commit point.** What an attempt produced is *uncommitted* until its first chunk
that carries content leaves the step (``Runnable.carries_content``: for a chat model,
text, a tool-call delta or a thinking delta; for other runnables, any chunk). Until then
nobody downstream has seen anything, so a failure can be handled (another attempt, a
fallback); chunks without content (a message-start chunk with only an id) are held back
and released with the first content chunk. After the commit point a failure propagates
unchanged, with the number of chunks delivered added as a note: nothing is retried,
so no consumer ever sees a chunk twice or a splice of two attempts.

The hosting actor sends from inside the attempt's ``async with`` (an ``await``, never a
``yield``), so no cancel scope is held across a hand-over to another task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from ._actors import LeafNode, aggregate
from ._launch import Inbox, Launch, Outbox, Site, TapOutbox
from ._step import Step

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("Attempt", "Emitter", "HostingNode")


class Emitter:
    """The hosting step's output: publishes its stream events, then sends downstream."""

    __slots__ = ("_publishers", "_target", "delivered")

    def __init__(self, outbox: Outbox[Any], step: Step) -> None:
        publishers = [step] if step.subscribers else []
        target: Any = outbox
        # Composite steps whose output this is publish right after this step.
        while type(target) is TapOutbox:
            publishers.append(target.step)
            target = target.outbox
        for publisher in publishers[1:]:
            publisher.share_output_log(publishers[0])
        self._publishers = publishers
        self._target: Outbox[Any] = target
        #: Chunks sent downstream so far.
        self.delivered = 0

    async def send(self, chunk: Any) -> None:
        """Publish ``chunk``'s stream events and send it downstream."""
        for publisher in self._publishers:
            pending = publisher.publish_stream(chunk)
            if pending is not None:
                await pending
        await self._target.send(chunk)
        self.delivered += 1


@attrs.define(eq=False)
class Attempt:
    """One attempt's output, held until its commit point.

    ``offer(chunk)`` returns the chunks to send now: nothing while only chunks without
    content have come (they are held), then the held chunks and this one at the first
    chunk with content, then each chunk as it comes.
    """

    carries_content: Callable[[Any], bool]
    committed: bool = False
    held: list[Any] = attrs.field(factory=list)

    def offer(self, chunk: Any) -> list[Any]:
        if self.committed:
            return [chunk]
        if not self.carries_content(chunk):
            self.held.append(chunk)
            return []
        self.committed = True
        released, self.held = [*self.held, chunk], []
        return released

    def release_held(self) -> list[Any]:
        """At a clean end without content: the held chunks (they are the output)."""
        self.committed = True
        released, self.held = self.held, []
        return released


def note_delivered(error: BaseException, step_name: str, delivered: int) -> None:
    """Note on ``error`` how many chunks its step had delivered (it was not retried)."""
    error.add_note(
        f"{step_name} had delivered {delivered} chunk{'s' if delivered != 1 else ''} "
        "before this error (after its commit point, so it was not retried)"
    )


class HostingNode(LeafNode[In, Out]):
    """A step that runs other runnables as nested runs in its own actor.

    Subclasses implement :meth:`host`. The step's input is aggregated first (an attempt
    may need to run it again).
    """

    def _can_fuse(self) -> bool:
        return False

    async def host(self, value: In, emitter: Emitter, step: Step) -> None:
        """Run the attempts for ``value``, sending their output through ``emitter``."""
        raise NotImplementedError

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        step = launch.new_step(self, site, inbox)

        async def actor() -> None:
            try:
                value = await aggregate(inbox)
                step.set_input(value)
                await self.host(value, Emitter(outbox, step), step)
            finally:
                outbox.close()

        launch.spawn(step, actor, inbox=inbox, outboxes=(outbox,))
