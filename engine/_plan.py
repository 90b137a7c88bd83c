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

from ._bus import EventBus, EventFilter, EventFilterArgs, Subscription, validate_subscriber_capacity
from ._config import DEFAULT_CAPACITY, RunConfig
from ._edge import ConstantInbox, Edge
from ._launch import DiscardOutbox, Inbox, Launch, Outbox, Site
from ._step import RunScope, Step, current_step, new_run_id

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
    """

    runnable: Runnable[Any, Any]
    scope: RunScope
    site: Site
    output: Edge[Any]
    edges: list[Edge[Any]]
    input: Any = None
    input_stream: AsyncIterable[Any] | None = None
    events: EventsRequest | None = None
    _subscription: Subscription | None = None

    def open_source(self) -> RunSource[T]:
        """What the consumer reads, made when the run starts."""
        if self.events is None:
            return self.output
        bus = self.scope.bus
        assert bus is not None
        subscription = bus._subscribe(
            self.events.filters, self.events.capacity, "block", within_run_id=self.site.run_id
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
        if self._subscription is not None and launch.root_step is not None:
            _end_subscription_with(launch.root_step, self._subscription)
        await launch.start(task_group)

    def finish(self) -> None:
        """The run is over: close what the consumer reads, so it sees the end."""
        self.output.close_all()
        if self._subscription is not None:
            self._subscription.end()


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
        scope = RunScope(
            root_run_id=new_run_id(),
            bus=cfg.bus,
            capacity=cfg.capacity if cfg.capacity is not None else DEFAULT_CAPACITY,
        )
        site = Site(
            scope=scope,
            own_tags=cfg.tags,
            metadata=cfg.metadata,
            run_name=cfg.run_name,
            run_id=run_id,
            recursion_limit=cfg.recursion_limit,
        )
        return scope, site
    outer = parent.scope
    scope = RunScope(
        root_run_id=outer.root_run_id,
        bus=cfg.bus if cfg.bus is not None else outer.bus,
        capacity=cfg.capacity if cfg.capacity is not None else outer.capacity,
        version=outer.version,
    )
    site = Site(
        scope=scope,
        parent=parent,
        own_tags=cfg.tags,
        inherited_tags=parent.inheritable_tags,
        metadata={**parent.metadata, **cfg.metadata},
        run_name=cfg.run_name,
        linked=False,
        run_id=run_id,
        recursion_limit=cfg.recursion_limit,
    )
    return scope, site


def _end_subscription_with(root: Step, subscription: Subscription) -> None:
    # The event stream ends with the root step's end (or error) event.
    previous = root.on_finish

    def finish(step: Step) -> None:
        if previous is not None:
            previous(step)
        subscription.end()

    root.on_finish = finish
