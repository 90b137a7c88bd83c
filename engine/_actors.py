"""The two leaf node kinds of the design card, and the actor loop each one runs.

* A :class:`TransformNode` consumes its inbox and emits chunks as it goes
  (:meth:`TransformNode.transform_stream` is an async generator over the input chunks).
* An :class:`AggregateNode` adds its input chunks together until upstream closes, then
  computes on the finalized value (:meth:`AggregateNode.compute` is an async generator
  too, so an aggregate may stream its result, as a chat model does).

Those two methods, with :attr:`LeafNode.reads_current_step`, are the hooks a user's
node overrides; ``_start_output``, ``_can_fuse`` and ``_launch`` are the engine's own.

These loops are the only places a leaf publishes its stream events: once per chunk,
before the chunk is sent downstream (so anything the chunk causes is published later),
and only when the step has subscribers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar, Final, TypeVar

import anyio

from ._chunks import ChunkSum
from ._edge import ConstantInbox, Edge
from ._errors import is_cancellation
from ._launch import DiscardOutbox, Inbox, Launch, Outbox, RecordingInbox, Site, TapOutbox
from ._runnable import Runnable
from ._signal import checkpoint
from ._step import _CURRENT_STEP, RunCancelled, Step

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("AggregateNode", "LeafNode", "TransformNode", "launch_fused", "publishers_of", "pump")


async def pump(source: AsyncIterator[Any], outbox: Outbox[Any], step: Step) -> None:
    """Send everything ``source`` yields to ``outbox``, publishing stream events first.

    ``source`` is closed here (in this task) however the loop ends.
    """
    try:
        if step.subscribers or type(outbox) is TapOutbox:
            await _pump_observed(source, outbox, step)
        elif type(outbox) is Edge:
            await outbox.send_from(source)
        elif (send_from := getattr(outbox, "send_from", None)) is not None:
            # An outbox with a loop of its own (a hosting step's attempt: _hosting.py).
            await send_from(source)
        else:
            send = outbox.send
            async for chunk in source:
                await send(chunk)
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


def publishers_of(outbox: Outbox[Any], step: Step) -> tuple[list[Step], Any]:
    """The steps that publish a stream event for each chunk ``step`` sends to ``outbox``
    (itself if observed, then the composite steps whose taps wrap the outbox: their
    output is this step's, so they share one output log), and the outbox under the taps."""
    publishers = [step] if step.subscribers else []
    target: Any = outbox
    while type(target) is TapOutbox:
        publishers.append(target.step)
        target = target.outbox
    for publisher in publishers[1:]:
        publisher.share_output_log(publishers[0])
    return publishers, target


async def _pump_observed(source: AsyncIterator[Any], outbox: Outbox[Any], step: Step) -> None:
    # The taps around the outbox publish each chunk right after this step, in the same loop.
    publishers, target = publishers_of(outbox, step)
    discard = type(target) is DiscardOutbox
    send = target.send
    pace = step.scope.pace
    first = type(target) is Edge
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
        if first:
            first = False
            quiet = _recording_only(publishers)
            if quiet is not _PUBLISHING:
                # No stream event for any later chunk (the subscribers take none, or the
                # first only): the edge's own loop records and sends the rest.
                await target.send_from(source, quiet)
                return


class _Publishing:
    """Marks steps that still publish stream events (see :func:`_recording_only`)."""


_PUBLISHING: Final = _Publishing()


def _recording_only(publishers: list[Step]) -> ChunkSum | _Publishing | None:
    """What publishing a chunk still means for ``publishers`` after their first chunk:
    appending it to the one log returned (``None``: to none), or more than that."""
    logs = []
    for publisher in publishers:
        if publisher.streams_chunks:
            return _PUBLISHING
        log = publisher.own_output_log
        if log is not None:
            logs.append(log)
    if len(logs) > 1:
        return _PUBLISHING
    return logs[0] if logs else None


class LeafNode(Runnable[In, Out]):
    """A step that is one actor: it reads an inbox and writes chunks to an outbox."""

    #: Whether the node's code may need to know its own step while it runs: to nest
    #: the runs it starts (``invoke``/``ainvoke`` of another runnable), to dispatch
    #: custom events, or to call ``current_step()``. A node whose code never calls back
    #: into the engine sets it to ``False`` as a class attribute: when its run is
    #: observed and it shares a task with its neighbours, the engine then skips
    #: switching the current step around every chunk it makes. Leaving it ``True`` is
    #: always correct; ``False`` on a node that does call back nests those calls under
    #: a neighbouring step instead of its own.
    reads_current_step: ClassVar[bool] = True

    def _can_fuse(self) -> bool:
        """Whether this leaf can share a task with its neighbours in an observed sequence
        (engine-internal: ``False`` for leaves with their own ``_launch``)."""
        return True

    async def _start_output(self, inbox: Inbox[In], step: Step) -> AsyncIterator[Out]:
        """Start the step: return the iterator of its output chunks, reading ``inbox``
        (engine-internal: the node kinds implement it with their public hook)."""
        raise NotImplementedError

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        step = launch.new_step(self, site, inbox)

        async def actor() -> None:
            try:
                await pump(await self._start_output(inbox, step), outbox, step)
            finally:
                outbox.close()

        launch.spawn(step, actor, inbox=inbox, outboxes=(outbox,))


class TransformNode(LeafNode[In, Out]):
    """A leaf that works on the input stream: each input chunk may yield output at once.

    Subclass it (as a frozen attrs class) and implement :meth:`transform_stream`; set
    ``kind``, :attr:`~engine.Runnable.output_accumulation` and
    :attr:`~LeafNode.reads_current_step` where the defaults do not fit.
    """

    #: It works on the input stream: inside a composite its start shows no input.
    input_at_start: ClassVar[bool] = False

    def transform_stream(self, chunks: AsyncIterator[In], step: Step) -> AsyncIterator[Out]:
        """Yield this step's output chunks while reading its input ``chunks``.

        Implement it as an async generator (``async def`` with ``yield``). The engine
        calls it once per run of the step, when the step's actor starts, and sends each
        chunk it yields downstream (after the step's stream event) before asking for
        the next, so a slow consumer holds it at its ``yield`` once the bounded edge
        downstream is full.

        It may read ``chunks`` with ``async for`` (each item is one input chunk, in
        order; the loop ends when upstream is done), await anything and keep state
        across chunks; ``step`` is this run's step (its name, run id, tags). It must read ``chunks`` only in its own
        task (not hand it to another task), and must not hold a cancel scope or task
        group open across a ``yield``: the engine resumes the generator once per chunk
        from its own loop, and a scope left open there would catch cancellations that
        are not its own (PEP 789). Blocking calls go to a worker thread
        (``anyio.to_thread.run_sync``).

        The engine closes the returned iterator (``aclose()``) in the task that iterated
        it (the step's actor, shared with its neighbours when an observed run fuses
        them) when the step ends: after its last chunk, on an error, or when the run is
        cancelled or stopped from downstream. Its ``finally`` blocks run then, inside
        the run's cancel scope, so a cleanup that must await when the run was cancelled
        shields itself (``anyio.CancelScope(shield=True)``) and bounds its wait.
        """
        raise NotImplementedError

    async def _start_output(self, inbox: Inbox[In], step: Step) -> AsyncIterator[Out]:
        source: Inbox[Any] = inbox
        if step.subscribers and not step.input_known and not step.input_shared:
            source = RecordingInbox(inbox, step)
        return self.transform_stream(source, step)


class AggregateNode(LeafNode[In, Out]):
    """A leaf that needs its whole input: it adds the chunks up, then computes.

    Subclass it (as a frozen attrs class) and implement :meth:`compute`; set ``kind``,
    :attr:`~engine.Runnable.output_accumulation`, :attr:`~LeafNode.reads_current_step`
    and :meth:`~engine.Runnable.start_event_input` where the defaults do not fit.
    """

    def compute(self, value: In, step: Step) -> AsyncIterator[Out]:
        """Return the output chunks for the finalized input ``value``.

        The engine calls it once per run of the step, after upstream has finished and
        its chunks were added up into ``value`` (by the upstream step's
        ``output_accumulation``), and after ``step.set_input(value)``. Implement it as
        an async generator that yields one chunk (a plain result) or several (a result
        that streams, as a chat model's reply); it may also return another async
        iterator it made, which then is the step's output as it is (no wrapper
        generator). Each chunk is sent downstream (after the step's stream event)
        before the next is asked for.

        It may await anything and call ``step.set_input`` to change what the end event
        shows as the input. It must not hold a cancel scope or task group open across
        a ``yield`` (the engine resumes it once per chunk from its own loop; PEP 789),
        and must not block the event loop (use ``anyio.to_thread.run_sync``).

        The engine closes the returned iterator (``aclose()``, if it has one) in the
        task that iterated it (the step's actor, shared with its neighbours when an
        observed run fuses them) when the step ends: after its last chunk, on an error,
        or when the run is cancelled or stopped from downstream. Its ``finally`` blocks run
        then, inside the run's cancel scope, so a cleanup that must await when the run
        was cancelled shields itself (``anyio.CancelScope(shield=True)``) and bounds its
        wait.
        """
        raise NotImplementedError

    async def _start_output(self, inbox: Inbox[In], step: Step) -> AsyncIterator[Out]:
        value = await aggregate(inbox)
        step.set_input(value)
        return self.compute(value, step)


async def aggregate(inbox: Inbox[Any]) -> Any:
    """The whole input of an inbox: its chunks added together."""
    if isinstance(inbox, ConstantInbox):
        return await inbox.receive()
    total = ChunkSum(inbox.accumulation)
    # ChunkSum.append written out (this loop runs once per chunk): a list append, and a
    # carry once the sum holds `limit` chunks (every chunk of snapshots, 256 of text).
    recent = total.recent
    append = recent.append
    room = total.limit
    async for chunk in inbox:
        append(chunk)
        room -= 1
        if room <= 0:
            total.carry()
            room = total.limit - len(recent)
    return total.total()


class _StageInbox:
    """A fused stage's output, read by the next stage as its inbox (same task)."""

    __slots__ = ("_chunks", "_done", "_inbox", "_log", "_node", "_quiet", "_step", "accumulation")

    def __init__(self, node: LeafNode[Any, Any], inbox: Inbox[Any], step: Step) -> None:
        self._node = node
        self._inbox = inbox
        self._chunks: AsyncIterator[Any] | None = None
        self._step = step
        self._done = False
        self.accumulation = step.accumulation
        # Decided by the first chunk (None until then): True when the step publishes no
        # event for later ones, each then only appended to ``_log`` (ChunkSum.append
        # written out).
        self._quiet: bool | None = None
        self._log: ChunkSum | None = None

    def __aiter__(self) -> _StageInbox:
        return self

    async def __anext__(self) -> Any:
        step = self._step
        # The stage's own code runs as its step, so runs it starts nest under it.
        token = _CURRENT_STEP.set(step) if self._node.reads_current_step else None
        try:
            chunks = self._chunks
            if chunks is None:
                chunks = self._chunks = await self._node._start_output(self._inbox, step)
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            self._finish(None)
            raise
        except BaseException as exc:
            # A cancellation may be the quiet stop of the whole actor (nobody reads its
            # output): the actor decides how the stage ends (see launch_fused).
            if not is_cancellation(exc):
                self._finish(exc)
            raise
        finally:
            if token is not None:
                _CURRENT_STEP.reset(token)
        quiet = self._quiet
        if quiet:
            log = self._log
            if log is not None:
                recent = log.recent
                recent.append(chunk)
                if len(recent) >= log.limit:
                    log.carry()
            return chunk
        pending = step.publish_stream(chunk)
        if pending is not None:
            await pending
        if quiet is None:
            self._quiet = not step.streams_chunks
            self._log = step.own_output_log
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

    def close_receiver(self) -> None:
        pass  # the stage is closed by its actor (``aclose``), in the same task

    async def aclose(self, *, quiet: bool) -> None:
        """Close the stage's iterator; a stage that had not ended ends as a success when
        ``quiet`` (a later stage stopped reading it), else as cancelled."""
        aclose = getattr(self._chunks, "aclose", None)
        try:
            if aclose is not None:
                await aclose()
        finally:
            self._finish(None if quiet else RunCancelled(self._step.name))


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
        step.accumulation = node.output_accumulation
        if prepared:
            step.input_accumulation = prepared[-1][1].accumulation
        prepared.append((node, step))
        # Only the first stage's input is a real inbox; later ones are set when running.
        source = _PENDING_INBOX
    last_node, last_step = prepared[-1]
    for _, step in prepared[:-1]:
        launch.claim(step)

    async def actor() -> None:
        current: Inbox[Any] = inbox
        stages: list[_StageInbox] = []
        completed = False
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
            completed = True
        finally:
            # Stages left unfinished because a later stage stopped reading (or nobody
            # reads the actor's output) end as successes, with the output they made.
            # The output closes after them, so no reader's end interrupts their cleanup.
            quiet = completed or outbox.receiver_closed
            try:
                for stage in reversed(stages):
                    await stage.aclose(quiet=quiet)
            finally:
                outbox.close()
                for _, step in prepared[:-1]:
                    if not step.finished:
                        step.unit_done(None if quiet else RunCancelled(step.name))

    launch.spawn(last_step, actor, inbox=inbox, outboxes=(outbox,))


class _PendingInbox:
    """Stands for a fused stage's inbox at launch time (its input is not known)."""

    accumulation: Any = "add"


_PENDING_INBOX: Any = _PendingInbox()
