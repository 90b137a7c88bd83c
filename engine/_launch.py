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
from ._errors import carry_interrupt, stray_cancellation
from ._signal import keyboard_interrupt_safe
from ._step import RunScope, Step, make_step, set_current_step

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._runnable import Runnable

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)

__all__ = ("DiscardOutbox", "Inbox", "KeyedOutbox", "Launch", "Outbox", "RecordingInbox", "Site", "TapOutbox")


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
    :meth:`child` does not carry them.
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

    def child(self, parent: Step, local_tag: str | None = None) -> Site:
        """The site of a child of ``parent`` (a step of a sequence, a branch)."""
        return Site(
            scope=self.scope,
            parent=parent,
            local_tags=(local_tag,) if local_tag else (),
            inherited_tags=parent.inheritable_tags,
            metadata=parent.metadata,
            capacity=self.capacity,
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
        self._units: list[tuple[Step, Callable[[], Awaitable[None]]]] = []
        self._feeders: list[tuple[Edge[Any], AsyncIterable[Any]]] = []
        self.root_step: Step | None = None
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
        if isinstance(inbox, ConstantInbox):
            step.input_known = True
            step.input_value = inbox.value
        else:
            step.input_accumulation = inbox.accumulation
        self._starts.append((step, runnable))
        if self.root_step is None:
            self.root_step = step
        return step

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
        self._units.append((step, partial(_until_unread, body, inbox, tuple(outboxes))))

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
                    if step.input_known:
                        await step.emit_start(runnable.start_event_input(step.input_value), has_input=True)
                    else:
                        await step.emit_start()
        except BaseException as exc:
            for step in [*claims, *(step for step, _ in units)]:
                step.unit_done(exc)
            raise
        finally:
            self._starts.clear()
        for step, body in units:
            task_group.start_soon(_unit, step, body, name=f"rillet {step.kind} {step.name}")


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


async def _until_unread(
    body: Callable[[], Awaitable[None]], inbox: Inbox[Any] | None, outboxes: tuple[Outbox[Any], ...]
) -> None:
    """Run ``body`` until it ends or nobody reads any of ``outboxes``; then close ``inbox``."""
    try:
        if not outboxes:
            await body()
            return
        # The scope belongs to this task and is cancelled only by a reader that closed
        # its side; it is nested in the run's own scope (see _run.py on why the run's
        # structured host scope is shielded on both backends).
        with anyio.CancelScope() as unread:
            waiting = len(outboxes)

            def one_reader_gone() -> None:
                nonlocal waiting
                waiting -= 1
                if waiting == 0:
                    unread.cancel()

            for outbox in outboxes:
                outbox.on_receiver_closed(one_reader_gone)
            try:
                await body()
            except anyio.BrokenResourceError:
                # A send found its reader gone: the same quiet stop, unless some other
                # resource of the step broke.
                if not all(outbox.receiver_closed for outbox in outboxes):
                    raise
    finally:
        if inbox is not None:
            inbox.close_receiver()


@keyboard_interrupt_safe
async def _unit(step: Step, body: Callable[[], Awaitable[None]]) -> None:
    set_current_step(step)
    try:
        await body()
    except BaseException as exc:
        error = stray_cancellation(step.name, exc)
        step.unit_done(error or exc)
        if error is not None:
            raise error from exc
        carried = carry_interrupt(exc)
        if carried is not exc:
            raise carried from None
        raise
    step.unit_done(None)
