"""Opening a run: one named plan that every streaming entry point uses.

``astream``, ``atransform``, ``astream_events`` and ``astream_log`` differ in three
things only: what the run reads (one value, or a stream of chunks), where its output
goes (to the consumer, or nowhere because the end events carry it), and what the
consumer reads (the output, or an event subscription). A :class:`RunPlan` holds those
choices with the run's scope and edges; :class:`~engine._run.RunStream` starts it.

Nothing is subscribed, spawned or published before the run starts: a stream that is
created and dropped without being iterated holds nothing (``open_source`` makes the
subscription of an event stream only when the run starts).
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import anyio.abc
import attrs

from ._bus import (
    EventBus,
    EventFilter,
    EventFilterArgs,
    Subscriber,
    Subscription,
    validate_subscriber_capacity,
)
from ._config import DEFAULT_CAPACITY, RunConfig
from ._edge import ConstantInbox, Edge
from ._launch import DiscardOutbox, Inbox, Launch, Outbox, Site
from ._replay import ReplayLog, validate_replay_capacity
from ._step import NO_VALUES, RunScope, Step, current_step, new_run_id

if TYPE_CHECKING:
    from ._run import RunSource
    from ._runnable import Config, Runnable

T = TypeVar("T")

__all__ = ("EventsRequest", "RunPlan", "plan_run")

_VERSIONS = ("v1", "v2")


@attrs.frozen
class EventsRequest:
    """What an ``astream_events`` consumer asked to see (validated when the stream is made)."""

    filters: EventFilterArgs
    version: str = "v2"
    capacity: int = 64

    def __attrs_post_init__(self) -> None:
        if self.version not in _VERSIONS:
            raise ValueError(f"unknown astream_events version {self.version!r}; use 'v1' or 'v2'")
        validate_subscriber_capacity(self.capacity)
        EventFilter.of(self.filters)  # bad filters fail now, before anything runs


@attrs.define(eq=False)
class RunPlan(Generic[T]):
    """One run of a runnable, ready to start.

    Attributes:
        runnable: What runs.
        scope: What the run's steps share (root run id, bus, capacity, version).
        site: Where the root step is placed (its parent step when the run is nested).
        output: The run's output edge (read by the consumer unless events are read).
        edges: Every edge of the run, the output edge first (for ``statistics()``).
        events: For an event stream, what the consumer asked to see; else ``None``.
        logs: Replay logs that record the run (attached when it starts).
    """

    runnable: Runnable[Any, Any]
    scope: RunScope
    site: Site
    output: Edge[Any]
    edges: list[Edge[Any]]
    input: Any = None
    input_stream: AsyncIterable[Any] | None = None
    events: EventsRequest | None = None
    logs: list[ReplayLog] = attrs.field(factory=list)
    _subscription: Subscription | None = None

    @property
    def run_id(self) -> str:
        """The run id of the run's root step (chosen now if it was not yet)."""
        run_id = self.site.run_id
        if run_id is None:
            run_id = new_run_id()
            self.site = attrs.evolve(self.site, run_id=run_id)
        return run_id

    def replay_log(self, capacity: int, filters: EventFilterArgs, *, root_only: bool) -> ReplayLog:
        """A replay log of this run, attached to its bus (a private one if it has none)
        when the run starts.

        Raises:
            TypeError, ValueError: For a bad capacity or filter (at once).
        """
        validate_replay_capacity(capacity)
        event_filter = EventFilter.of(filters, within_run_id=self.run_id, root_only=root_only)
        if self.scope.bus is None:
            self.scope.bus = EventBus()
        log = ReplayLog(capacity, run_id=self.run_id, event_filter=event_filter, sequence=self.scope.sequence)
        self.logs.append(log)
        return log

    def open_source(self) -> RunSource[T]:
        """What the consumer reads, made when the run starts (replay logs attach now too)."""
        bus = self.scope.bus
        for log in self.logs:
            assert bus is not None
            log.attach(bus)
        if self.events is None:
            return self.output
        assert bus is not None
        subscription = bus._subscribe(
            self.events.filters, self.events.capacity, "block", within_run_id=self.site.run_id, native=False
        )
        self._subscription = subscription
        # A lossless subscription never holds a lag marker, so the consumer reads its
        # buffer directly, one call shallower per event.
        return cast("RunSource[T]", subscription.buffer)

    async def launch(self, task_group: anyio.abc.TaskGroup) -> None:
        """Build the graph, publish its start events, and start its tasks in ``task_group``."""
        launch = Launch(self.scope)
        launch.edges = self.edges
        launch.events_root = self.events is not None
        inbox: Inbox[Any]
        if self.input_stream is None:
            inbox = ConstantInbox(self.input)
        else:
            edge = launch.edge(self.scope.capacity, f"{self.runnable.get_name()} input")
            launch.add_feeder(edge, self.input_stream)
            inbox = edge
        outbox: Outbox[Any] = self.output if self.events is None else DiscardOutbox(self.output.accumulation)
        self.runnable._launch(launch, inbox, outbox, self.site)
        if launch.root_step is not None:
            if self._subscription is not None:
                _end_subscription_with(launch.root_step, self._subscription)
            for log in self.logs:
                _end_subscription_with(launch.root_step, log)
        await launch.start(task_group)

    def finish(self) -> None:
        """The run is over: close what the consumer reads, so it sees the end."""
        self.output.close_all()
        if self._subscription is not None:
            self._subscription.end()
        for log in self.logs:
            log.end()


def plan_run(
    runnable: Runnable[Any, Any],
    config: Config,
    *,
    input: Any = None,
    input_stream: AsyncIterable[Any] | None = None,
    events: EventsRequest | None = None,
    invoked: bool = False,
) -> RunPlan[Any]:
    """The plan of one run of ``runnable`` (nested under the current step, if any).

    ``invoked`` says the caller wants only the whole output (``ainvoke``).

    Raises:
        ConfigError: For a bad ``config`` (at once, before anything runs).
    """
    cfg = RunConfig.coerce(config)
    scope, site = _scope_and_site(cfg, run_id=new_run_id() if events is not None else None)
    if events is not None:
        if scope.bus is None:
            scope.bus = EventBus()
        scope.version = events.version
    scope.invoked = invoked
    output: Edge[Any] = Edge(
        scope.capacity,
        name=f"{runnable.get_name()} output",
        accumulation=runnable.output_accumulation,
        pace=scope.pace,
    )
    return RunPlan(
        runnable=runnable,
        scope=scope,
        site=site,
        output=output,
        edges=[output],
        input=input,
        input_stream=input_stream,
        events=events,
    )


def _scope_and_site(cfg: RunConfig, run_id: str | None) -> tuple[RunScope, Site]:
    parent = current_step()
    if parent is None:
        root_id = cfg.run_id or run_id or new_run_id()
        scope = RunScope(
            root_run_id=root_id,
            bus=cfg.bus,
            capacity=cfg.capacity if cfg.capacity is not None else DEFAULT_CAPACITY,
        )
        site = Site(
            scope=scope,
            own_tags=cfg.tags,
            metadata=cfg.metadata,
            run_name=cfg.run_name,
            run_id=root_id,
            recursion_limit=cfg.recursion_limit,
            configurable=cfg.configurable or NO_VALUES,
        )
        return scope, site
    outer = parent.scope
    run_name = cfg.run_name
    if cfg.callbacks is not None and run_name == cfg.callbacks.name:
        # A step's own config passed on (``other.invoke(x, config)``): its run name is
        # the calling step's, not one for this run.
        run_name = None
    if cfg.run_id is not None and cfg.run_id != outer.root_run_id:
        # (The root's id, as a step's config carries it, is taken: passed on, it is ignored.)
        run_id = cfg.run_id
    scope = RunScope(
        root_run_id=outer.root_run_id,
        bus=cfg.bus if cfg.bus is not None else outer.bus,
        capacity=cfg.capacity if cfg.capacity is not None else outer.capacity,
        version=outer.version,
        sequence=outer.sequence,
    )
    site = Site(
        scope=scope,
        parent=parent,
        own_tags=cfg.tags,
        inherited_tags=parent.inheritable_tags,
        metadata={**parent.metadata, **cfg.metadata},
        run_name=run_name,
        linked=False,
        run_id=run_id,
        recursion_limit=cfg.recursion_limit,
        configurable={**parent.configurable, **cfg.configurable} if cfg.configurable else parent.configurable,
    )
    return scope, site


def _end_subscription_with(root: Step, subscription: Subscriber) -> None:
    # The event stream ends with the root step's end (or error) event.
    previous = root.on_finish

    def finish(step: Step) -> None:
        if previous is not None:
            previous(step)
        subscription.end()

    root.on_finish = finish
