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

Whoever sends through the emitter does so with an ``await`` (never a ``yield``), so no
cancel scope is held across a hand-over to another task.

:func:`run_attempt` is one attempt done that way (what ``with_retry`` and
``with_fallbacks`` share): the attempt's nested run is launched with an
:class:`AttemptOutbox` as its output, so its own tasks offer each chunk to the
:class:`Attempt` and send what passes the commit point through the emitter (past it, an
unobserved attempt writes straight into the hosting step's output edge: the wrapper
costs no hop per chunk). The hosting actor waits for the attempt to end; a failure after
the commit point is raised (noted), one before it is returned for the wrapper to handle.
:class:`UsageLog` keeps each attempt's token usage for the hosting step's end event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from typing import Any, Literal, TypeVar

import attrs

from ._actors import LeafNode, aggregate, publishers_of
from ._edge import Accumulation, Edge
from ._launch import Inbox, Launch, Outbox, Site
from ._runnable import Runnable
from ._step import Step

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = (
    "Attempt",
    "AttemptOutbox",
    "Emitter",
    "HostingNode",
    "UsageLog",
    "note_delivered",
    "run_attempt",
    "run_gated",
)


class Emitter:
    """The hosting step's output: publishes its stream events, then sends downstream."""

    __slots__ = ("_base", "_counted", "_publishers", "_sending", "_target")

    def __init__(self, outbox: Outbox[Any], step: Step) -> None:
        publishers, target = publishers_of(outbox, step)
        self._publishers = publishers
        self._target: Outbox[Any] = target
        # What the target counted so far, when it counts what went in (an edge, of which
        # this step is the one sender, or another hosting step's attempt): a send
        # cancelled after its chunk went in (the first chunk's hand-over checkpoint), or
        # a batch handed on whole (send_from), still counts.
        self._base = _sent_so_far(target)
        self._counted = 0
        self._sending = False

    @property
    def delivered(self) -> int:
        """Chunks sent downstream so far."""
        if self._base is not None:
            sent = _sent_so_far(self._target)
            assert sent is not None
            return sent - self._base
        return self._counted

    @property
    def waiting(self) -> bool:
        """Whether a send is waiting for downstream to take a chunk (the consumer, or a
        lossless subscriber, is slower than the step: the step itself is not idle)."""
        target = self._target
        if type(target) is Edge:
            return target.statistics().waiting_senders > 0
        if type(target) is AttemptOutbox:
            return target.waiting
        return self._sending

    async def send(self, chunk: Any) -> None:
        """Publish ``chunk``'s stream events and send it downstream."""
        self._sending = True
        for publisher in self._publishers:
            pending = publisher.publish_stream(chunk)
            if pending is not None:
                await pending
        await self._target.send(chunk)
        self._sending = False
        self._counted += 1

    async def send_from(self, chunks: AsyncIterator[Any]) -> None:
        """Send everything ``chunks`` yields, as :meth:`send` does for each.

        With nobody to publish to, this is the target's own loop: an edge's
        (``Edge.send_from``: no call per chunk while there is room), or the attempt
        gate of an enclosing hosting step (``AttemptOutbox.send_from``, which ends in
        an edge's): the committed part of an attempt then costs what an actor's own
        output costs, however many hosting steps wrap it.
        """
        target = self._target
        if self._publishers:
            async for chunk in chunks:
                await self.send(chunk)
        elif type(target) is Edge or type(target) is AttemptOutbox:
            await target.send_from(chunks)
        else:
            async for chunk in chunks:
                await self.send(chunk)

    def on_receiver_closed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once nobody reads the output any more."""
        self._target.on_receiver_closed(callback)

    @property
    def receiver_closed(self) -> bool:
        """Whether nobody reads the output any more (a send failing then is no attempt's fault)."""
        return self._target.receiver_closed


def _sent_so_far(target: Any) -> int | None:
    """How many chunks ``target`` took so far, if it counts them (else ``None``)."""
    if type(target) is Edge:
        return target.statistics().sent
    if type(target) is AttemptOutbox:
        return target.delivered
    return None


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
    #: Chunks offered so far (the gate offers only those before the commit point; past
    #: it, the emitter's ``delivered`` counts): progress a timeout's watchdog can read.
    offered: int = 0

    def offer(self, chunk: Any) -> list[Any]:
        self.offered += 1
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


class AttemptOutbox:
    """An attempt's outbox: its chunks go downstream from the attempt's own tasks.

    The nested run of an attempt is launched with this as the outbox of its last step,
    so each chunk is offered to the :class:`Attempt` (held until the commit point) and
    sent on through the hosting step's :class:`Emitter` by the task that made it; past
    the commit point, an unobserved attempt's actor sends straight into the hosting
    step's output edge (:meth:`send_from`). The nested run's own output edge gets
    nothing: the hosting actor only waits for the attempt to end (or fail). Without this
    the hosting actor would be one more hop per chunk (about a quarter of the cost of
    ``prompt | model | parser`` per token).
    """

    __slots__ = ("_emitter", "_own", "_usage", "accumulation", "attempt")

    def __init__(self, attempt: Attempt, emitter: Emitter, usage: UsageLog | None) -> None:
        self.attempt = attempt
        self._emitter = emitter
        self._usage = usage
        self._own: Outbox[Any] | None = None
        self.accumulation: Accumulation = "add"

    def attach(self, own: Outbox[Any]) -> None:
        """Take the nested run's own output edge (closed when the attempt's steps end)."""
        self._own = own
        self.accumulation = own.accumulation

    async def send(self, item: Any, /) -> None:
        usage = self._usage
        if usage is not None:
            usage.count(item)
        attempt = self.attempt
        if attempt.committed:
            await self._emitter.send(item)
            return
        for chunk in attempt.offer(item):
            await self._emitter.send(chunk)

    async def send_from(self, chunks: AsyncIterator[Any]) -> None:
        """Send everything ``chunks`` yields (read once per actor by ``pump``)."""
        async for item in chunks:
            await self.send(item)
            if self.attempt.committed:
                break
        else:
            return
        if self._usage is None:
            # Past the commit point: the edge's own loop, no call per chunk.
            await self._emitter.send_from(chunks)
        else:
            async for item in chunks:
                await self.send(item)

    @property
    def delivered(self) -> int:
        """Chunks this attempt sent on through the hosting step's emitter."""
        return self._emitter.delivered

    @property
    def waiting(self) -> bool:
        """Whether a send is waiting for downstream (see :attr:`Emitter.waiting`)."""
        return self._emitter.waiting

    async def send_released(self, chunk: Any) -> None:
        """Send a chunk the attempt released at its end (held, without content)."""
        await self._emitter.send(chunk)

    def _own_outbox(self) -> Outbox[Any]:
        assert self._own is not None, "an AttemptOutbox is attached when its run launches"
        return self._own

    def close(self) -> None:
        self._own_outbox().close()

    def add_sender(self) -> None:
        self._own_outbox().add_sender()

    def on_receiver_closed(self, callback: Callable[[], None], /) -> None:
        # Stopped when the hosting step leaves the attempt or nobody reads its output;
        # either counts as this one outbox's reader gone, so the callback runs once.
        called = False

        def once() -> None:
            nonlocal called
            if not called:
                called = True
                callback()

        self._own_outbox().on_receiver_closed(once)
        self._emitter.on_receiver_closed(once)

    @property
    def receiver_closed(self) -> bool:
        return self._own_outbox().receiver_closed or self._emitter.receiver_closed


@attrs.frozen(eq=False)
class _AttemptRun(Runnable[Any, Any]):
    """Launches ``runnable`` with an :class:`AttemptOutbox` around its run's output."""

    runnable: Runnable[Any, Any]
    gate: AttemptOutbox

    def get_name(self) -> str:
        return self.runnable.get_name()

    @property
    def output_accumulation(self) -> Accumulation:
        return self.runnable.output_accumulation

    def _launch(self, launch: Launch, inbox: Inbox[Any], outbox: Outbox[Any], site: Site) -> None:
        self.gate.attach(outbox)
        self.runnable._launch(launch, inbox, self.gate, site)


async def run_gated(
    runnable: Runnable[Any, Any], value: Any, gate: AttemptOutbox, config: Mapping[str, Any] | None = None
) -> None:
    """Run ``runnable`` on ``value`` as a nested run whose output goes through ``gate``
    (sent on by the nested run's own tasks), then release what the gate still holds (a
    reply of chunks without content is the output after all). Returns when the run ended."""
    nested = _AttemptRun(runnable, gate)
    async with nested.astream(value, config) as ended:
        async for _ in ended:
            pass  # nothing comes here: the output went downstream through the gate
    for item in gate.attempt.release_held():
        await gate.send_released(item)


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
    content held until then), sent by the attempt's own tasks (:class:`AttemptOutbox`);
    its events carry ``{"attempt": number}`` in their metadata.

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
        gate = AttemptOutbox(attempt, emitter, usage)
        await run_gated(runnable, value, gate, {"metadata": {"attempt": number}})
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

    The base of ``with_retry``, ``with_fallbacks``, ``with_timeout`` and
    ``nodes.ToolLoop``; subclass it (a frozen attrs class) for a step of your own that
    decides at run time what to run. Subclasses implement :meth:`host`, the one hook.
    The step's input is aggregated first (an attempt may need to run it again).
    """

    def _can_fuse(self) -> bool:
        return False

    async def host(self, value: In, emitter: Emitter, step: Step) -> None:
        """Run the attempts for ``value``, sending their output through ``emitter``.

        Called once per run of the step, in its actor task, with the whole input. Run
        other runnables as nested runs (``async with r.astream(v) as chunks``: they nest
        under ``step`` on their own) and hand output on with ``await emitter.send(chunk)``
        (never a ``yield``: no cancel scope or task group is held across a hand-over).
        Return to end the step; raise to fail it. Cancellation arrives at any ``await``:
        the run was cancelled, or nobody reads the output any more (then the step ends
        quietly). ``emitter.delivered`` says how many chunks went downstream, which is
        what decides whether a failure may still be handled (the commit point).
        """
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
