"""What one step of a run knows about itself, and the one place its events are built.

Every node of a running graph (a leaf actor or a composite such as a sequence) is a
:class:`Step`: its run id, name, kind, tags, metadata, parents, and the subscribers that
see it. ``Step.subscribers`` is empty when nobody listens, and then every ``emit_*``
method returns before building anything: that is the zero-cost path.

A step finishes when all its units (its own actor or helper task, and its child steps)
have finished; it then publishes its end or error event and tells its parent. So a child
always ends before its parent, without any step waiting on another.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ._chunks import ChunkSum
from ._config import DEFAULT_RECURSION_LIMIT
from ._edge import Accumulation, Pace
from ._errors import RecursionLimitError
from ._events import Event, EventPhase, EventSequence, event_name, without_stamps

if TYPE_CHECKING:
    from ._bus import EventBus, Subscriber

__all__ = ("RunCancelled", "RunScope", "Step", "current_step")


class RunCancelled(Exception):
    """Stands in an error event's ``data["error"]`` for a step that was cancelled."""


#: An empty mapping shared by every step and site that has no ``configurable`` values.
NO_VALUES: Mapping[str, Any] = MappingProxyType({})

_CURRENT_STEP: ContextVar[Step | None] = ContextVar("rillet_current_step", default=None)


def current_step() -> Step | None:
    """The step whose code is running in this task (``None`` outside any run)."""
    return _CURRENT_STEP.get()


@attrs.define(eq=False)
class RunScope:
    """What every step of one top-level run shares."""

    root_run_id: str
    bus: EventBus | None
    capacity: int
    #: The shape of the events: ``"v1"`` or ``"v2"`` for an ``astream_events`` stream
    #: (langchain-core's shapes; see ARCHITECTURE.md, "Differences from langchain-core"),
    #: ``"native"`` for a run only ``EventBus`` subscribers see (every input and chunk).
    version: str = "native"
    #: Whether the run was started by ``ainvoke`` (inside an ``astream_events`` stream
    #: its steps publish no stream events but a model's tokens, as langchain-core's).
    invoked: bool = False
    #: How many of the run's steps built an event (each counted once, when it builds its
    #: first): 0 while no subscriber sees any of them, since such steps build nothing.
    #: Counted per step, not per event, so the per-chunk path pays nothing for it.
    steps_with_events: int = 0
    #: Shared by the run's edges: operations since one of its tasks last gave way.
    pace: Pace = attrs.field(factory=Pace)
    #: Numbers and times the run's stamped events (shared with the runs nested in it).
    sequence: EventSequence = attrs.field(factory=EventSequence)


def new_run_id() -> str:
    """A fresh run id."""
    return str(uuid.uuid4())


@attrs.define(eq=False, repr=False)
class Step:
    """One running node of a graph: identity, inheritance and lifecycle.

    Attributes:
        run_id: This step's run id.
        name: The name events carry (``run_name`` where set).
        kind: The event kind (``chain``, ``chat_model``, ``parser``...).
        tags: The step's tags: its local tags, then its own and inherited ones.
        inheritable_tags: The tags its children inherit.
        metadata: Metadata, inherited by children.
        parent: The parent step, or ``None`` for a run's root.
        scope: What the whole run shares.
        subscribers: The subscribers that see this step (empty when nobody listens).
        depth: How deep the run this step belongs to is nested (0 for a top-level run;
            a run started inside a step is one deeper than that step).
        recursion_limit: How deep runs started inside this step may be nested.
        bound_buses: Buses bound with ``with_config(bus=...)`` on this step or above it
            (also across nested runs): the step publishes to them besides the run's bus.
        configurable: The ``configurable`` values in force here (the run's config and
            bindings above it), inherited by the steps and runs under it.
    """

    run_id: str
    name: str
    kind: str
    tags: tuple[str, ...]
    inheritable_tags: tuple[str, ...]
    metadata: Mapping[str, Any]
    parent: Step | None
    scope: RunScope
    subscribers: tuple[Subscriber, ...] = ()
    parent_ids: tuple[str, ...] = ()
    accumulation: Accumulation = "add"
    input_accumulation: Accumulation = "add"
    input_known: bool = False
    input_value: Any = None
    _pending: int = 0
    _error: BaseException | None = None
    _cancelled: bool = False
    _finished: bool = False
    _inputs: ChunkSum | None = None
    _outputs: ChunkSum | None = None
    _templates: dict[EventPhase, Event] | None = None
    linked: bool = True
    on_finish: Callable[[Step], None] | None = None
    _announced: tuple[Subscriber, ...] = ()
    _stream_template: Event | None = None
    _output_shared: bool = False
    input_shared: bool = False
    depth: int = 0
    recursion_limit: int = DEFAULT_RECURSION_LIMIT
    bound_buses: tuple[EventBus, ...] = ()
    #: The step an ``astream_events`` stream was asked for (its start shows the raw
    #: input, its end only the output, as langchain-core's root events do).
    events_root: bool = False
    #: Whether ``astream_events`` leaves out this step's stream events (see
    #: ``Runnable.publishes_chunks``); its chunks are still summed for its end event.
    mute_stream: bool = False
    #: The subscribers its stream events go to (set at start: none when muted).
    _stream_to: tuple[Subscriber, ...] = ()
    _end_extras: dict[str, Any] | None = None
    configurable: Mapping[str, Any] = NO_VALUES
    # Set when a subscriber of this step wants stamped events (seq and time); _mixed
    # (the per-chunk path's one flag for its slow way) when others want the guide's
    # shape (_guide_shapes), so each gets a copy without the stamps, or until the first
    # chunk when some subscriber takes that chunk only (then _stream_later, the
    # subscribers of the later chunks, takes _stream_to's place).
    _stamps: EventSequence | None = None
    _mixed: bool = False
    _guide_shapes: bool = False
    _partial_streams: bool = False
    _stream_later: tuple[Subscriber, ...] | None = None

    @property
    def root_run_id(self) -> str:
        """The run id of the top-level run this step belongs to."""
        return self.scope.root_run_id

    @property
    def error(self) -> BaseException | None:
        """The first real error of this step or its children, once finished."""
        return self._error

    @property
    def finished(self) -> bool:
        """Whether the step and all its units finished."""
        return self._finished

    def __repr__(self) -> str:
        return f"<Step {self.kind}:{self.name} {self.run_id[:8]}>"

    # -- lifecycle --------------------------------------------------------------------

    def add_unit(self) -> None:
        """Count one more actor, helper task or child that must finish before this step."""
        self._pending += 1

    def unit_done(self, error: BaseException | None) -> None:
        """One unit finished, with ``error`` if it raised; finishes the step after the last."""
        if error is not None:
            if isinstance(error, anyio.get_cancelled_exc_class() | RunCancelled):
                self._cancelled = True
            elif self._error is None:
                self._error = error
        self._pending -= 1
        if self._pending <= 0:
            self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._announced:
            if self._error is not None:
                self._publish_terminal(self._error)
            elif self._cancelled:
                self._publish_terminal(RunCancelled(f"{self.name} was cancelled"))
            else:
                self._publish_terminal(None)
        if self.on_finish is not None:
            self.on_finish(self)
        parent = self.parent
        if parent is not None and self.linked:
            if self._error is not None:
                parent.unit_done(self._error)
            elif self._cancelled:
                parent.unit_done(RunCancelled(self.name))
            else:
                parent.unit_done(None)

    # -- events -----------------------------------------------------------------------

    def _template(self, phase: EventPhase) -> Event:
        # One template per phase, made the first time: later events copy it (a dict copy,
        # no formatting) and set their own ``data``.
        templates = self._templates
        if templates is None:
            templates = self._templates = {}
            self.scope.steps_with_events += 1
        template = templates.get(phase)
        if template is None:
            template = templates[phase] = {
                "event": event_name(self.kind, phase),
                "name": self.name,
                "run_id": self.run_id,
                "parent_ids": list(self.parent_ids) if self.scope.version != "v1" else [],
                "tags": list(self.tags),
                "metadata": dict(self.metadata),
                "data": None,
            }
            if self._stamps is not None:
                # Present in the template, so that stamping a copy adds no key to it.
                template["seq"] = 0  # type: ignore[typeddict-unknown-key]
                template["time"] = 0.0  # type: ignore[typeddict-unknown-key]
        return template

    def _event(self, phase: EventPhase, data: Any) -> Event:
        event = self._template(phase).copy()
        event["data"] = data
        if self._stamps is not None:
            self._stamps.stamp(event)
        return event

    def choose_shapes(self) -> None:
        """Decide, once its subscribers are known, which shape this step's events take.

        rillet's own subscribers get stamped events (``seq``, ``time``); ``astream_events``
        gets the guide's shape. Replay logs come first: they never wait, so each gets the
        run's events in the order they were numbered.
        """
        subscribers = self.subscribers
        native = sum(1 for s in subscribers if s.native)
        if not native:
            return
        self._stamps = self.scope.sequence
        self._mixed = self._guide_shapes = native < len(subscribers)
        self._partial_streams = any(s.stream_events != "all" for s in subscribers)
        if any(s.overflow == "ring" for s in subscribers):
            self.subscribers = tuple(sorted(subscribers, key=lambda s: s.overflow != "ring"))

    def _shaped(self, event: Event, subscriber: Subscriber) -> Event:
        if self._mixed and not subscriber.native:
            return without_stamps(event)
        return event

    async def emit_start(self, start_input: Any = None, *, has_input: bool = False) -> None:
        """Publish the start event (with the input when it is known at start)."""
        if not self.subscribers:
            return
        self._outputs = ChunkSum(self.accumulation, tolerant=True)
        if not self.input_known:
            self._inputs = ChunkSum(self.input_accumulation, tolerant=True)
        self._stream_to = () if self.mute_stream else self.subscribers
        if self._partial_streams and self._stream_to:
            self._split_streams()
        data: dict[str, Any] = {"input": start_input} if has_input else {}
        event = self._event(EventPhase.START, data)
        for subscriber in self.subscribers:
            # Only a subscriber that got the start is owed the end.
            await subscriber.put(self._shaped(event, subscriber), partial(self._announce, subscriber))

    def _split_streams(self) -> None:
        # The first chunk goes to every subscriber but the "none" ones; later chunks to
        # the "all" ones only. Chosen once per step, so later chunks pay nothing for it.
        first = tuple(s for s in self._stream_to if s.stream_events != "none")
        later = tuple(s for s in first if s.stream_events == "all")
        self._stream_to = first
        if later != first:
            self._stream_later = later
            self._mixed = True

    def _announce(self, subscriber: Subscriber) -> None:
        self._announced = (*self._announced, subscriber)

    @property
    def streams_chunks(self) -> bool:
        """Whether :meth:`publish_stream` publishes an event for the next chunk.

        Decided at start, and once more by the first chunk (a subscriber may take the
        first chunk only): after that first chunk, a step for which this is ``False``
        only records its chunks, and its loop may append them to
        :attr:`own_output_log` itself instead of calling :meth:`publish_stream`.
        """
        return bool(self._stream_to)

    @property
    def own_output_log(self) -> ChunkSum | None:
        """The running sum this step records its output chunks in for its end event:
        ``None`` when nobody listens to it, or when it shares another step's log."""
        return None if self._output_shared else self._outputs

    def publish_stream(self, chunk: Any) -> Awaitable[None] | None:
        """Publish a stream event for ``chunk`` (and remember it for the end event).

        This is the per-chunk path, so it never waits: it returns ``None`` once every
        subscriber took the event, or else an awaitable that delivers it to the rest,
        which the caller must await at once (a ``"block"`` subscriber is full).
        """
        log = self._outputs
        if log is None:
            return None
        if not self._output_shared:
            recent = log.recent
            recent.append(chunk)
            if len(recent) >= log.limit:
                log.carry()
        if not self._stream_to:
            return None  # muted (a v2 prompt, retriever or plain tool): no event, no seq
        template = self._stream_template
        if template is None:
            template = self._stream_template = self._template(EventPhase.STREAM)
        event = template.copy()
        event["data"] = {"chunk": chunk}
        stamps = self._stamps
        if stamps is not None:
            stamps.stamp(event)
            if self._mixed:
                return self._publish_shaped(event)
        for subscriber in self._stream_to:
            if not subscriber.try_put(event):
                return self._deliver_from(subscriber, event)
        return None

    def _publish_shaped(self, event: Event) -> Awaitable[None] | None:
        # Some subscribers want the stamps, some the guide's shape: one copy for the
        # latter. Or this is the first chunk and some subscribers take no more.
        targets = self._stream_to
        later = self._stream_later
        if later is not None:
            self._stream_to, self._stream_later, self._mixed = later, None, self._guide_shapes
        guide: Event | None = None
        for subscriber in targets:
            shaped = event
            if not subscriber.native:
                if guide is None:
                    guide = without_stamps(event)
                shaped = guide
            if not subscriber.try_put(shaped):
                return self._deliver_from(subscriber, event, targets)
        return None

    async def _deliver_from(
        self, first: Subscriber, event: Event, targets: tuple[Subscriber, ...] | None = None
    ) -> None:
        subscribers = self._stream_to if targets is None else targets
        for subscriber in subscribers[subscribers.index(first) :]:
            await subscriber.put(self._shaped(event, subscriber))

    async def emit_stream(self, chunk: Any) -> None:
        """:meth:`publish_stream`, waiting for subscribers that are full."""
        pending = self.publish_stream(chunk)
        if pending is not None:
            await pending

    def share_output_log(self, owner: Step) -> None:
        """Sum this step's output from ``owner``'s log: both steps emit the same chunks.

        A composite step's output is its last child's, chunk for chunk, so the two need
        only one log (the owner appends; this step publishes without recording).
        """
        log = owner._outputs
        if (
            log is not None
            and self._outputs is not None
            and not self._outputs
            and self.accumulation == owner.accumulation
        ):
            self._outputs = log
            self._output_shared = True

    def share_input_log(self, upstream: Step) -> None:
        """Take this step's input log from ``upstream``'s output log, when this step reads
        exactly what ``upstream`` emits (fused stages of one actor); ``input_shared``
        then tells the step it needs no recording inbox."""
        log = upstream._outputs
        if log is None or self._inputs is None or self._inputs or self.input_known:
            return
        self._inputs = log
        self.input_shared = True

    def _custom_event(self, name: str, data: Any) -> Event:
        event = self._event(EventPhase.CUSTOM, data)
        event["name"] = name
        return event

    async def emit_custom(self, name: str, data: Any) -> None:
        """Publish an ``on_custom_event`` from inside this step (not in v1, as langchain-core)."""
        if not self.subscribers or self.scope.version == "v1":
            return
        event = self._custom_event(name, data)
        for subscriber in self.subscribers:
            await subscriber.put(self._shaped(event, subscriber))

    def emit_custom_nowait(self, name: str, data: Any) -> None:
        """Publish an ``on_custom_event`` without waiting (from synchronous code; not in v1)."""
        if not self.subscribers or self.scope.version == "v1":
            return
        event = self._custom_event(name, data)
        for subscriber in self.subscribers:
            subscriber.put_terminal(self._shaped(event, subscriber))

    def record_input(self, chunk: Any) -> None:
        """Remember an input chunk, so the end event can carry the whole input."""
        inputs = self._inputs
        if inputs is not None:
            inputs.append(chunk)

    def set_input(self, value: Any) -> None:
        """Record the step's whole input once it is known (an aggregate step's)."""
        self.input_known = True
        self.input_value = value
        self._inputs = None

    def end_data(self) -> dict[str, Any]:
        """The ``data`` of the end event: the whole input and the summed output.

        As langchain-core shapes it: the root of an ``astream_events`` stream shows only
        the output; v2 puts the output first, v1 (and native events) the input.
        """
        output = self._outputs.total() if self._outputs is not None else None
        if self.events_root:
            return {"output": output}
        data: dict[str, Any] = {"output": output} if self.scope.version == "v2" else {}
        if self.input_known:
            data["input"] = self.input_value
        elif self._inputs is not None:
            data["input"] = self._inputs.total()
        data["output"] = output
        return data

    def add_end_data(self, key: str, value: Any) -> None:
        """Add ``key: value`` to the ``data`` of this step's end or error event.

        For what a step knows only once it is over (a hosting step's usage roll-up);
        call it before the step finishes. Only a step someone listens to keeps it.
        """
        if self.subscribers:
            if self._end_extras is None:
                self._end_extras = {}
            self._end_extras[key] = value

    def _publish_terminal(self, error: BaseException | None) -> None:
        if error is None:
            phase, data = EventPhase.END, self.end_data()
        else:
            phase, data = EventPhase.ERROR, {"error": error}
            if self.input_known:
                data["input"] = self.input_value
            elif self._inputs:
                data["input"] = self._inputs.total()
        if self._end_extras:
            data.update(self._end_extras)
        event = self._event(phase, data)
        announced = self._announced
        for subscriber in self.subscribers:
            if subscriber in announced:
                subscriber.put_terminal(self._shaped(event, subscriber))
            elif subscriber.overflow == "drop":
                # Its start was dropped, so its end is one more event this subscriber lost.
                subscriber.count_dropped()


def make_step(
    *,
    name: str,
    kind: str,
    parent: Step | None,
    scope: RunScope,
    local_tags: tuple[str, ...] = (),
    own_tags: tuple[str, ...] = (),
    inherited_tags: tuple[str, ...] = (),
    metadata: Mapping[str, Any] | None = None,
    accumulation: Accumulation = "add",
    run_id: str | None = None,
    linked: bool = True,
    recursion_limit: int | None = None,
    buses: tuple[EventBus, ...] = (),
) -> Step:
    """Create a step under ``parent`` and find its subscribers.

    ``recursion_limit`` and ``buses`` are what a config or binding sets at this place;
    otherwise the step inherits its parent's.

    Raises:
        RecursionLimitError: If this step starts a run nested deeper than the limit.
    """
    depth, limit = _nesting(name, parent, linked, recursion_limit)
    bound = parent.bound_buses if parent is not None else ()
    for added in buses:
        if added not in bound:
            bound = (*bound, added)
    inheritable = _dedupe(own_tags + inherited_tags)
    tags = _dedupe(local_tags + inheritable)
    step = Step(
        run_id=run_id or new_run_id(),
        name=name,
        kind=kind,
        tags=tags,
        inheritable_tags=inheritable,
        metadata=metadata if metadata is not None else {},
        parent=parent,
        scope=scope,
        parent_ids=(*parent.parent_ids, parent.run_id) if parent is not None else (),
        accumulation=accumulation,
        linked=linked,
        depth=depth,
        recursion_limit=limit,
        bound_buses=bound,
    )
    if parent is not None and linked:
        parent.add_unit()
    bus = scope.bus
    if bus is not None:
        step.subscribers = bus.match(step)
    for extra in bound:
        if extra is not bus:
            seen = step.subscribers
            step.subscribers = (*seen, *(s for s in extra.match(step) if s not in seen))
    if step.subscribers:
        step.choose_shapes()
    return step


def _nesting(name: str, parent: Step | None, linked: bool, limit: int | None) -> tuple[int, int]:
    """The depth and recursion limit of a new step, checked where a nested run starts.

    A step of the same run sits at its parent's depth; the first step of a run started
    inside a step (an unlinked child) is one deeper, and is checked against the limit
    set for that run, or else the one its parent inherited. It is the first step its
    launch creates, so failing here leaves no step half made.
    """
    if parent is None:
        return 0, limit if limit is not None else DEFAULT_RECURSION_LIMIT
    if limit is None:
        limit = parent.recursion_limit
    if linked:
        return parent.depth, limit
    depth = parent.depth + 1
    if depth > limit:
        raise RecursionLimitError(name, depth, limit, parent.name)
    return depth, limit


def _dedupe(tags: tuple[str, ...]) -> tuple[str, ...]:
    if len(tags) < 2:
        return tags
    return tuple(dict.fromkeys(tags))


def set_current_step(step: Step | None) -> None:
    """Make ``step`` the current step of this task (each actor runs in its own task)."""
    _CURRENT_STEP.set(step)
