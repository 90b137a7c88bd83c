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

:func:`run_attempt` is one attempt done that way (the loop ``with_retry`` and
``with_fallbacks`` share): it forwards the attempt's output past the commit point,
raises a failure after it (noted), and returns a failure before it for the wrapper to
handle. :class:`UsageLog` keeps each attempt's token usage for the hosting step's end
event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from ._actors import LeafNode, aggregate
from ._edge import Edge
from ._launch import Inbox, Launch, Outbox, Site, TapOutbox
from ._step import Step

if TYPE_CHECKING:
    from ._runnable import Runnable

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("Attempt", "Emitter", "HostingNode", "UsageLog", "note_delivered", "run_attempt")


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

    async def send_from(self, chunks: AsyncIterator[Any]) -> None:
        """Send everything ``chunks`` yields, as :meth:`send` does for each.

        With nobody to publish to and an edge downstream, this is the edge's own loop
        (``Edge.send_from``: no call per chunk while there is room), and ``delivered``
        is taken from the edge's count: the committed part of an attempt then costs
        what an actor's output costs.
        """
        target = self._target
        if self._publishers or type(target) is not Edge:
            async for chunk in chunks:
                await self.send(chunk)
            return
        before = target.statistics().sent
        try:
            await target.send_from(chunks)
        finally:
            self.delivered += target.statistics().sent - before

    @property
    def receiver_closed(self) -> bool:
        """Whether nobody reads the output any more (a send failing then is no attempt's fault)."""
        return self._target.receiver_closed


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


Outcome = Literal["ok", "error", "cancelled"]

#: The usage log of the hosting step an attempt runs under, if it keeps one: a hosting
#: step nested inside an attempt reports its own total there (see UsageLog.close).
_ENCLOSING_LOG: ContextVar[UsageLog | None] = ContextVar("rillet_enclosing_usage_log", default=None)


@attrs.define(eq=False)
class UsageLog:
    """The token usage of each attempt of a hosting step, for its end (or error) event.

    An attempt's usage is the sum of the ``usage_metadata`` its output chunks carried
    (a chat model's ``AIMessageChunk``s), counted as they arrive, so a failed, timed-out
    or cancelled attempt counts what it had sent. When the attempt runs hosting steps of
    its own (``with_retry`` inside ``with_fallbacks``), their totals replace what this
    log counted for it: they saw every one of their attempts, failed ones too, and their
    output is what this log saw. The step's end event gets ``data["usage"]``::

        {"total": <sum over attempts, or None>,
         "attempts": [{"attempt": 1, "name": "ChatAnthropic", "outcome": "error",
                       "error": <the exception>, "usage": <sum, or None>}, ...]}

    ``outcome`` is ``"ok"``, ``"error"`` or ``"cancelled"``. Usage values are added with
    ``+`` (``nodes.UsageMetadata``); ``None`` where nothing was reported.
    """

    attempts: list[dict[str, Any]] = attrs.field(factory=list)
    enclosing: UsageLog | None = None
    _counted: Any = attrs.field(default=None, init=False)
    _nested: Any = attrs.field(default=None, init=False)
    _has_nested: bool = attrs.field(default=False, init=False)
    _token: Any = attrs.field(default=None, init=False)

    @classmethod
    def open(cls, step: Step) -> UsageLog | None:
        """A log for ``step``'s attempts when someone will read it (the step's end event,
        or an enclosing hosting step's log); else ``None``, and nothing is counted."""
        enclosing = _ENCLOSING_LOG.get()
        if not step.subscribers and enclosing is None:
            return None
        log = cls(enclosing=enclosing)
        # Set in the hosting actor's own task: the attempts' tasks start from it.
        log._token = _ENCLOSING_LOG.set(log)
        return log

    def begin(self, number: int, name: str) -> None:
        """Attempt ``number`` (of the runnable called ``name``) starts."""
        self._counted = self._nested = None
        self._has_nested = False
        self.attempts.append({"attempt": number, "name": name, "outcome": "cancelled", "error": None})

    def count(self, chunk: Any) -> None:
        """Count the usage ``chunk`` carries (if any) for the current attempt."""
        usage = getattr(chunk, "usage_metadata", None)
        if usage is not None:
            self._counted = _add(self._counted, usage)

    def add_nested(self, usage: Any) -> None:
        """A hosting step inside the current attempt reports its total."""
        self._has_nested = True
        if usage is not None:
            self._nested = _add(self._nested, usage)

    def end(self, outcome: Outcome, error: BaseException | None) -> None:
        """The current attempt ended so."""
        record = self.attempts[-1]
        record["outcome"] = outcome
        record["error"] = error
        record["usage"] = self._nested if self._has_nested else self._counted

    def total(self) -> Any:
        """Every attempt's usage added up (``None`` when none was reported)."""
        total = None
        for record in self.attempts:
            if record.get("usage") is not None:
                total = _add(total, record["usage"])
        return total

    def close(self, step: Step) -> None:
        """Put the roll-up on ``step``'s end event and report the total to the
        enclosing log. Call it in the hosting actor's task, when its attempts are over."""
        if self._token is not None:
            _ENCLOSING_LOG.reset(self._token)
            self._token = None
        total = self.total()
        step.add_end_data("usage", {"total": total, "attempts": self.attempts})
        if self.enclosing is not None:
            self.enclosing.add_nested(total)


def _add(total: Any, usage: Any) -> Any:
    if total is None:
        return usage
    try:
        return total + usage
    except Exception:
        # Observing never changes a run's result: an odd usage value is not counted.
        return total


async def run_attempt(
    runnable: Runnable[Any, Any],
    value: Any,
    number: int,
    emitter: Emitter,
    step: Step,
    usage: UsageLog | None,
) -> BaseException | None:
    """Run attempt ``number`` of ``runnable`` on ``value`` as a nested run of ``step``.

    Its output goes through ``emitter`` once it passes the commit point (chunks without
    content held until then); its events carry ``{"attempt": number}`` in their metadata.

    Returns:
        ``None`` when the attempt succeeded, or its exception when it failed before the
        commit point (nothing of it was delivered: the caller may try again).

    Raises:
        Exception: The attempt's own exception when it failed after the commit point,
            unchanged but for a note saying how many chunks were delivered; a failure
            to deliver (nobody reads the output any more) and cancellations, as they are.
    """
    attempt = Attempt(runnable.carries_content)
    if usage is not None:
        usage.begin(number, runnable.get_name())
    outcome: Outcome = "cancelled"
    failure: BaseException | None = None
    try:
        async with runnable.astream(value, {"metadata": {"attempt": number}}) as chunks:
            async for chunk in chunks:
                if usage is not None:
                    usage.count(chunk)
                for item in attempt.offer(chunk):
                    await emitter.send(item)
                if attempt.committed:
                    break
            if attempt.committed:
                # Past the commit point: the rest goes straight through.
                if usage is None:
                    await emitter.send_from(chunks)
                else:
                    async for chunk in chunks:
                        usage.count(chunk)
                        await emitter.send(chunk)
        for item in attempt.release_held():
            await emitter.send(item)
        outcome = "ok"
        return None
    except Exception as exc:
        if emitter.receiver_closed:
            raise  # nobody reads the output: the step's quiet stop, not a failed attempt
        outcome, failure = "error", exc
        if attempt.committed:
            note_delivered(exc, step.name, emitter.delivered)
            raise
        return exc
    finally:
        if usage is not None:
            usage.end(outcome, failure)


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
