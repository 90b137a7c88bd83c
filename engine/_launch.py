"""Turning a runnable graph into running actors.

Launching walks the graph once: every node gets a :class:`Step`, composites wire edges
between their children, and leaves register their actor. Only then are the start events
published (in graph pre-order, so a sequence's start comes before its first step's, and
its steps' starts come in pipeline order), and only then are the actors started. So the
start events of one graph are in a fixed order whatever the scheduler does.

Inboxes and outboxes are small protocols: an :class:`~engine._edge.Edge` is both, and
the wrappers here (keyed fan-in for parallel steps, recording taps for composite steps
that someone listens to) add work only where a step needs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import anyio.abc
import attrs

from ._chunks import AddableDict
from ._edge import Accumulation, ConstantInbox, Edge
from ._errors import carry_interrupt, only_cancellations, stray_cancellation
from ._signal import keyboard_interrupt_safe
from ._step import NO_VALUES, RunScope, Step, make_step, set_current_step

if TYPE_CHECKING:
    from ._bus import EventBus, Subscription
    from ._runnable import Runnable

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)

#: The kinds that stream their tokens even in an invoked run (langchain-core streams a
#: model's tokens to an ``astream_events`` handler whichever way the model is called).
_TOKEN_KINDS = frozenset({"chat_model", "llm"})

__all__ = (
    "DiscardOutbox",
    "Inbox",
    "KeyedOutbox",
    "Launch",
    "Outbox",
    "RecordingInbox",
    "Site",
    "StepListener",
    "TapOutbox",
)


class Inbox(Protocol[T_co]):
    """What an actor reads its input from."""

    accumulation: Accumulation

    async def receive(self) -> T_co: ...

    def __aiter__(self) -> AsyncIterator[T_co]: ...

    async def __anext__(self) -> T_co: ...

    def close_receiver(self) -> None: ...


class Outbox(Protocol[T_contra]):
    """What an actor sends its output to."""

    accumulation: Accumulation

    async def send(self, item: T_contra, /) -> None: ...

    def close(self) -> None: ...

    def add_sender(self) -> None: ...

    def on_receiver_closed(self, callback: Callable[[], None], /) -> None: ...

    @property
    def receiver_closed(self) -> bool: ...


class StepListener(Protocol):
    """What watches the one step placed at a site (``with_listeners``)."""

    def attach(self, step: Step, launch: Launch, /) -> Subscription:
        """The subscriber to add to ``step``, which ``launch`` just made."""
        ...


class RecordingInbox:
    """An inbox that records every chunk for its step's end event."""

    __slots__ = ("_inbox", "_step", "accumulation")

    def __init__(self, inbox: Inbox[Any], step: Step) -> None:
        self._inbox = inbox
        self._step = step
        self.accumulation = inbox.accumulation

    async def receive(self) -> Any:
        item = await self._inbox.receive()
        self._step.record_input(item)
        return item

    def __aiter__(self) -> RecordingInbox:
        return self

    async def __anext__(self) -> Any:
        item = await self._inbox.__anext__()
        self._step.record_input(item)
        return item

    def close_receiver(self) -> None:
        self._inbox.close_receiver()


class TapOutbox:
    """An outbox that publishes its step's stream event before passing each chunk on.

    Composite steps (a sequence, a parallel step) own no actor; their output chunks are
    the last child's, so the child's sends go through this tap when someone listens.
    (A leaf's actor that finds taps around its outbox publishes for them itself, in the
    same loop as its own events.)
    """

    __slots__ = ("accumulation", "outbox", "step")

    def __init__(self, outbox: Outbox[Any], step: Step) -> None:
        self.outbox = outbox
        self.step = step
        self.accumulation = outbox.accumulation

    async def send(self, item: Any, /) -> None:
        await self.step.emit_stream(item)
        await self.outbox.send(item)

    def close(self) -> None:
        self.outbox.close()

    def add_sender(self) -> None:
        self.outbox.add_sender()

    def on_receiver_closed(self, callback: Callable[[], None], /) -> None:
        self.outbox.on_receiver_closed(callback)

    @property
    def receiver_closed(self) -> bool:
        return self.outbox.receiver_closed


class DiscardOutbox:
    """An outbox nobody reads: for ``astream_events``, whose end events carry the output."""

    __slots__ = ("accumulation",)

    def __init__(self, accumulation: Accumulation) -> None:
        self.accumulation = accumulation

    async def send(self, item: Any, /) -> None:
        pass

    def close(self) -> None:
        pass

    def add_sender(self) -> None:
        pass

    def on_receiver_closed(self, callback: Callable[[], None], /) -> None:
        pass  # nobody reads it, so nobody stops reading it

    @property
    def receiver_closed(self) -> bool:
        return False


class KeyedOutbox:
    """A parallel branch's outbox: wraps each chunk as ``{key: chunk}`` for the fan-in."""

    __slots__ = ("_key", "_outbox", "_snapshot_keys", "accumulation")

    def __init__(self, key: str, outbox: Outbox[Any], branch_accumulation: Accumulation) -> None:
        self._key = key
        self._outbox = outbox
        self._snapshot_keys = frozenset((key,)) if branch_accumulation == "last" else frozenset()
        self.accumulation = branch_accumulation

    async def send(self, item: Any, /) -> None:
        await self._outbox.send(AddableDict({self._key: item}, snapshot_keys=self._snapshot_keys))

    def close(self) -> None:
        self._outbox.close()

    def add_sender(self) -> None:
        self._outbox.add_sender()

    def on_receiver_closed(self, callback: Callable[[], None], /) -> None:
        self._outbox.on_receiver_closed(callback)

    @property
    def receiver_closed(self) -> bool:
        return self._outbox.receiver_closed


@attrs.frozen
class Site:
    """Where a runnable is placed: its parent step and what the placement adds to it.

    ``recursion_limit`` and ``buses`` are set where a run's config or a binding sets
    them; the steps placed below inherit them from their parent step, so
    :meth:`child` does not carry them. ``configurable`` is in force here and below.
    ``listeners`` watch the one step placed here (``with_listeners``): :meth:`child`
    does not carry them.
    """

    scope: RunScope
    parent: Step | None = None
    local_tags: tuple[str, ...] = ()
    own_tags: tuple[str, ...] = ()
    inherited_tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    run_name: str | None = None
    linked: bool = True
    capacity: int | None = None
    run_id: str | None = None
    recursion_limit: int | None = None
    buses: tuple[EventBus, ...] = ()
    configurable: Mapping[str, Any] = NO_VALUES
    listeners: tuple[StepListener, ...] = ()

    def child(self, parent: Step, local_tag: str | None = None) -> Site:
        """The site of a child of ``parent`` (a step of a sequence, a branch)."""
        return Site(
            scope=self.scope,
            parent=parent,
            local_tags=(local_tag,) if local_tag else (),
            inherited_tags=parent.inheritable_tags,
            metadata=parent.metadata,
            capacity=self.capacity,
            configurable=parent.configurable,
        )

    def bind(self, *, run_name: str | None, tags: tuple[str, ...], metadata: Mapping[str, Any]) -> Site:
        """This site with a binding's ``with_config`` applied to the step placed here."""
        return attrs.evolve(
            self,
            run_name=run_name if run_name is not None else self.run_name,
            own_tags=self.own_tags + tags,
            metadata={**self.metadata, **metadata} if metadata else self.metadata,
        )


class Launch:
    """Collects the steps, start events and actors of one graph before starting them."""

    def __init__(self, scope: RunScope) -> None:
        self.scope = scope
        self._starts: list[tuple[Step, Runnable[Any, Any]]] = []
        self._units: list[_Unit] = []
        self._feeders: list[tuple[Edge[Any], AsyncIterable[Any]]] = []
        self.root_step: Step | None = None
        #: Whether the root step is what an ``astream_events`` stream was asked for.
        self.events_root = False
        self._claims: list[Step] = []
        self.edges: list[Edge[Any]] = []
        #: The task group the tasks run in, once :meth:`start` was called: a step that
        #: launches part of its graph only once the run is going (a branch, when its
        #: route is known) starts that part there, next to every other task of the run.
        self.task_group: anyio.abc.TaskGroup | None = None

    def edge(self, capacity: int, name: str, accumulation: Accumulation = "add") -> Edge[Any]:
        """A new edge of this run (kept so tests and monitors can read its statistics)."""
        edge: Edge[Any] = Edge(capacity, name=name, accumulation=accumulation, pace=self.scope.pace)
        self.edges.append(edge)
        return edge

    def new_step(self, runnable: Runnable[Any, Any], site: Site, inbox: Inbox[Any]) -> Step:
        """Create the step for ``runnable`` placed at ``site`` and reading ``inbox``."""
        parent = site.parent
        step = make_step(
            name=site.run_name or runnable.get_name(),
            kind=runnable.kind,
            parent=parent,
            scope=self.scope,
            local_tags=site.local_tags,
            own_tags=site.own_tags,
            inherited_tags=site.inherited_tags,
            metadata=site.metadata,
            accumulation=runnable.output_accumulation,
            linked=site.linked,
            run_id=site.run_id,
            recursion_limit=site.recursion_limit,
            buses=site.buses,
        )
        step.configurable = site.configurable
        for listener in site.listeners:
            step.subscribers = (*step.subscribers, listener.attach(step, self))
        if isinstance(inbox, ConstantInbox):
            step.input_known = True
            step.input_value = inbox.value
        else:
            step.input_accumulation = inbox.accumulation
        self._starts.append((step, runnable))
        if self.root_step is None:
            self.root_step = step
            step.events_root = self.events_root
        if step.subscribers and self.scope.version != "native" and self._quiet(runnable):
            # langchain-core's shape: no stream events for a step that makes its output
            # at once, except (v1) at the root of the stream.
            step.mute_stream = not (step.events_root and self.scope.version == "v1")
        return step

    def _quiet(self, runnable: Runnable[Any, Any]) -> bool:
        """Whether ``astream_events`` leaves out the stream events of ``runnable``'s step:
        its output is one value made at once, or its run was invoked (only a model's
        tokens stream then)."""
        if self.scope.invoked and runnable.kind not in _TOKEN_KINDS:
            return True
        return not runnable.publishes_chunks

    def add_feeder(self, edge: Edge[Any], inputs: AsyncIterable[Any]) -> None:
        """Feed a run's input stream into ``edge`` (a task of the root step)."""
        self._feeders.append((edge, inputs))

    def spawn(
        self,
        step: Step,
        body: Callable[[], Awaitable[None]],
        *,
        inbox: Inbox[Any] | None = None,
        outboxes: Sequence[Outbox[Any]] = (),
    ) -> None:
        """Register a task that belongs to ``step`` (its actor, or a helper).

        ``inbox`` is what the task reads and ``outboxes`` what it writes to: once no one
        reads any of its outboxes the task is stopped quietly (its step ends as a
        success, with the output it made), and when it ends, however it ends, its inbox
        is closed, which stops its upstream the same way. So a step that stops reading
        its input stops everything upstream of it, and the run ends with the output it has.
        """
        step.add_unit()
        self._units.append(_Unit(step, body, inbox, tuple(outboxes)))

    def claim(self, step: Step) -> None:
        """Count a unit of ``step`` that another step's task will end (fused stages)."""
        step.add_unit()
        self._claims.append(step)

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Publish every start event in graph order, then start every task.

        If publishing is interrupted (a full ``"block"`` subscriber, then a cancelled
        run), every registered unit is ended as cancelled, so each step whose start went
        out still ends with an error event.
        """
        self.task_group = task_group
        root = self.root_step
        for edge, inputs in self._feeders:
            assert root is not None
            self.spawn(root, partial(_feed, edge, inputs), outboxes=(edge,))
        units, self._units = self._units, []
        claims, self._claims = self._claims, []
        try:
            for step, runnable in self._starts:
                if step.subscribers:
                    if _input_at_start(step, runnable):
                        value = (
                            step.input_value
                            if step.events_root
                            else runnable.start_event_input(step.input_value)
                        )
                        await step.emit_start(value, has_input=True)
                    else:
                        await step.emit_start()
        except BaseException as exc:
            for step in [*claims, *(unit.step for unit in units)]:
                step.unit_done(exc)
            raise
        finally:
            self._starts.clear()
        for unit in units:
            step = unit.step
            handle = task_group.start_soon(unit.run, name=f"rillet {step.kind} {step.name}")
            unit.stop_when_unread(handle)


def _input_at_start(step: Step, runnable: Runnable[Any, Any]) -> bool:
    """Whether ``step``'s start event shows its input.

    Only an input known at launch can be shown (see ARCHITECTURE.md, "Differences
    from langchain-core"). Native events show it wherever it is known; ``astream_events``
    shows it as langchain-core does: at the root of the stream (the raw input), at the
    root of a run started inside a step, and for a step inside a composite that takes
    its whole input at once (``Runnable.input_at_start``).
    """
    if not step.input_known:
        return False
    if step.scope.version == "native" or step.events_root or step.parent is None or not step.linked:
        return True
    return runnable.input_at_start


async def _feed(edge: Edge[Any], inputs: AsyncIterable[Any]) -> None:
    iterator = aiter(inputs)
    try:
        async for item in iterator:
            await edge.send(item)
    finally:
        edge.close()
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class _Readers:
    """Counts the readers of a task's outboxes and stops the task when the last one left.

    Kept apart from :class:`_Unit`: the outboxes keep this callback, and a callback that
    held the unit (and so its body, which holds the outboxes) would make a cycle.
    """

    __slots__ = ("handle", "left")

    def __init__(self, outboxes: int) -> None:
        self.left = outboxes
        self.handle: anyio.TaskHandle[None] | None = None

    def one_gone(self) -> None:
        self.left -= 1
        if self.left == 0 and self.handle is not None:
            self.handle.cancel()


class _Unit:
    """One task of a step: its body, what it reads and what it writes to.

    The task is stopped quietly once nobody reads any of its outboxes: through the cancel
    scope anyio gives every task it starts (its task handle's), not a scope of its own,
    because every scope a task is in is one more for each of its receives to check for a
    pending cancellation (``engine/_signal.py``, ``TaskWatch``). When the task ends,
    however it ends, its inbox is closed, which stops its upstream the same way.
    """

    __slots__ = ("body", "inbox", "outboxes", "readers", "step")

    def __init__(
        self,
        step: Step,
        body: Callable[[], Awaitable[None]],
        inbox: Inbox[Any] | None,
        outboxes: tuple[Outbox[Any], ...],
    ) -> None:
        self.step = step
        self.body = body
        self.inbox = inbox
        self.outboxes = outboxes
        self.readers = _Readers(len(outboxes))

    def stop_when_unread(self, handle: anyio.TaskHandle[None]) -> None:
        """Cancel the started task (``handle``) once every outbox's reader is gone."""
        if not self.outboxes:
            return
        self.readers.handle = handle
        for outbox in self.outboxes:
            outbox.on_receiver_closed(self.readers.one_gone)

    def stopped_by(self, exc: BaseException) -> bool:
        """Whether ``exc`` is how the task stopped because nobody reads it any more: the
        cancellation of its scope, or a send that found its reader gone (unless some
        other resource of the step broke)."""
        if not self.outboxes or self.readers.left > 0:
            return False
        if isinstance(exc, anyio.BrokenResourceError):
            return all(outbox.receiver_closed for outbox in self.outboxes)
        return only_cancellations(exc)

    @keyboard_interrupt_safe
    async def run(self) -> None:
        """The task: run the body, close the inbox, end the step's unit exactly once."""
        step = self.step
        set_current_step(step)
        try:
            try:
                await self.body()
            finally:
                if self.inbox is not None:
                    self.inbox.close_receiver()
        except BaseException as exc:
            if self.stopped_by(exc):
                step.unit_done(None)
                if isinstance(exc, anyio.BrokenResourceError):
                    return
                raise  # the task's own scope was cancelled: it ends the cancellation
            error = stray_cancellation(step.name, exc)
            step.unit_done(error or exc)
            if error is not None:
                raise error from exc
            carried = carry_interrupt(exc)
            if carried is not exc:
                raise carried from None
            raise
        finally:
            # The handle keeps the task's exception, whose traceback holds this unit:
            # forgetting it leaves no cycle for the garbage collector.
            self.readers.handle = None
        step.unit_done(None)
