"""The broadcast event bus: every lifecycle event of the runs attached, to any subscriber.

A subscriber's filters are matched once per step, when the step is created, so a step
that no subscriber can see builds no event at all. Each subscriber has its own bounded
buffer and overflow policy: ``"block"`` is lossless and slows the publishing actor while
the buffer is full; ``"drop"`` never makes a publisher wait, counts what it dropped and
tells the subscriber in-band with an ``on_events_dropped`` event. Terminal events (end
and error) never wait either: they may go past the buffer by one per step, so that a
cancelled run can always say how it ended without blocking its cleanup. Under both
policies a subscriber that got a step's start gets its end: a monitor that lagged still
learns how every run it saw begin ended. (A ``"drop"`` subscriber that never reads
stays bounded: it gets no new starts once full, so no more ends are owed to it.)

A subscriber gets a run's events stamped with their number in the run and the time they
were made (``seq``, ``time``: :class:`~engine.StampedEvent`); ``astream_events``' own
subscription gets the guide's shape. A replay log (``RunStream.replay_log``) is a
subscriber too, of a third kind: it never waits and keeps the newest events.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import attrs

from ._edge import Edge
from ._events import Event, EventPhase, event_name

if TYPE_CHECKING:
    from ._step import Step

Overflow = Literal["block", "drop"]

#: Which of a step's stream events (one per chunk) a subscriber takes: ``"all"``,
#: ``"first"`` (the step's first chunk only: enough for a time to first token, without
#: a delivery per chunk) or ``"none"`` (starts, ends, errors and custom events only).
StreamEvents = Literal["all", "first", "none"]

_STREAM_EVENTS = ("all", "first", "none")

__all__ = (
    "EventBus",
    "EventFilter",
    "EventFilterArgs",
    "Overflow",
    "StreamEvents",
    "Subscriber",
    "Subscription",
    "SubscriptionStatistics",
)

_KINDS = ("chat_model", "llm", "chain", "tool", "retriever", "prompt", "parser")


def _names(value: Iterable[str] | None, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"{what} must be a list of strings, not the string {value!r}")
    names = frozenset(value)
    for item in names:
        if not isinstance(item, str):
            raise TypeError(f"{what} must hold strings, got {item!r}")
    return names


def validate_subscriber_capacity(capacity: object) -> int:
    """Return ``capacity`` if it is a usable subscriber buffer size (an int >= 1), else raise."""
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"subscriber capacity must be an int, got {type(capacity).__name__} {capacity!r}")
    if capacity < 1:
        raise ValueError(f"subscriber capacity must be >= 1, got {capacity}")
    return capacity


@attrs.frozen
class EventFilterArgs:
    """The six filter arguments of ``astream_events``, ``astream_log`` and ``subscribe``,
    as the caller gave them (validated by :meth:`EventFilter.of`). The engine passes this
    one value around; only those three public signatures spell the arguments out."""

    include_names: Iterable[str] | None = None
    include_types: Iterable[str] | None = None
    include_tags: Iterable[str] | None = None
    exclude_names: Iterable[str] | None = None
    exclude_types: Iterable[str] | None = None
    exclude_tags: Iterable[str] | None = None


@attrs.frozen
class StepSelector:
    """Steps picked by name, kind or tag; a criterion that is ``None`` was not given."""

    names: frozenset[str] | None = None
    types: frozenset[str] | None = None
    tags: frozenset[str] | None = None

    @classmethod
    def build(
        cls, side: str, names: Iterable[str] | None, types: Iterable[str] | None, tags: Iterable[str] | None
    ) -> StepSelector:
        """Validate the ``<side>_names``, ``<side>_types`` and ``<side>_tags`` arguments."""
        built = cls(
            names=_names(names, f"{side}_names"),
            types=_names(types, f"{side}_types"),
            tags=_names(tags, f"{side}_tags"),
        )
        for kind in built.types or ():
            if kind not in _KINDS:
                raise ValueError(f"unknown step type {kind!r}; the types are {', '.join(_KINDS)}")
        return built

    @property
    def given(self) -> bool:
        """Whether any criterion was given."""
        return self.names is not None or self.types is not None or self.tags is not None

    def picks(self, name: str, kind: str, tags: tuple[str, ...]) -> bool:
        """Whether a step with this name, kind or any of these tags meets a given criterion."""
        return (
            (self.names is not None and name in self.names)
            or (self.types is not None and kind in self.types)
            or (self.tags is not None and not self.tags.isdisjoint(tags))
        )


@attrs.frozen
class EventFilter:
    """Which steps' events a subscriber sees.

    A step is kept if it matches any include filter (or none is given), then any exclude
    filter removes it. Types are a step's kind (``"chat_model"``, ``"parser"``, ...).
    ``within_run_id`` keeps only that run and the runs under it; with ``root_only``, that
    run alone (its own start, output chunks and end).
    """

    include: StepSelector = StepSelector()
    exclude: StepSelector = StepSelector()
    within_run_id: str | None = None
    root_only: bool = False

    @classmethod
    def of(
        cls, args: EventFilterArgs, *, within_run_id: str | None = None, root_only: bool = False
    ) -> EventFilter:
        """Validate and build a filter from the caller's :class:`EventFilterArgs`.

        Raises:
            TypeError: If a filter is a string or holds something that is not a string.
            ValueError: For an unknown step type.
        """
        return cls(
            include=StepSelector.build("include", args.include_names, args.include_types, args.include_tags),
            exclude=StepSelector.build("exclude", args.exclude_names, args.exclude_types, args.exclude_tags),
            within_run_id=within_run_id,
            root_only=root_only,
        )

    def matches(
        self, name: str, kind: str, tags: tuple[str, ...], run_id: str = "", parent_ids: tuple[str, ...] = ()
    ) -> bool:
        """Whether a step with this name, kind, tags (and place) is seen by this filter."""
        within = self.within_run_id
        if within is not None and run_id != within and (self.root_only or within not in parent_ids):
            return False
        include = self.include
        if include.given and not include.picks(name, kind, tags):
            return False
        return not self.exclude.picks(name, kind, tags)


class Subscriber(Protocol):
    """What a step publishes to: a :class:`Subscription`, or a replay log."""

    @property
    def filter(self) -> EventFilter:
        """Which steps' events it sees."""

    @property
    def overflow(self) -> str:
        """``"block"``, ``"drop"``, or ``"ring"`` (a replay log: never waits, keeps the newest)."""

    @property
    def native(self) -> bool:
        """Whether it gets stamped events (``seq``, ``time``); else the guide's shape."""

    @property
    def stream_events(self) -> StreamEvents:
        """Which stream events it takes (a subscriber that takes only some is native)."""

    @property
    def closed(self) -> bool:
        """Whether it takes no more events."""

    async def put(self, event: Event, on_delivered: Callable[[], None] | None = None) -> None:
        """Deliver ``event`` under its overflow policy (``on_delivered`` once it is in)."""

    def try_put(self, event: Event) -> bool:
        """Deliver ``event`` if that needs no waiting (the per-chunk path)."""

    def put_terminal(self, event: Event) -> None:
        """Deliver an end or error event without ever waiting."""

    def count_dropped(self) -> None:
        """Count one event it will not get."""

    def end(self) -> None:
        """Take no more events; readers finish what is held."""


@attrs.frozen
class SubscriptionStatistics:
    """A snapshot of one subscriber.

    Attributes:
        capacity: The subscriber's buffer size.
        buffered: Events waiting to be read now.
        peak: The most events ever buffered.
        delivered: Events put in the buffer so far.
        dropped: Events dropped because the buffer was full (``"drop"`` policy only).
        waiting_publishers: Publishers blocked on this subscriber (``"block"`` only).
        overflow: The overflow policy.
        closed: Whether the subscription is closed.
        stream_events: Which stream events it takes (``"all"``, ``"first"``, ``"none"``).
    """

    capacity: int
    buffered: int
    peak: int
    delivered: int
    dropped: int
    waiting_publishers: int
    overflow: Overflow
    closed: bool
    stream_events: StreamEvents = "all"


class Subscription:
    """One subscriber's view of a bus: an async iterator of event dicts.

    Use it as ``async with bus.subscribe(...) as events: async for event in events``.
    Leaving the block unsubscribes. It also ends by itself when the bus, or the run it
    was made for, closes it.
    """

    def __init__(
        self,
        bus: EventBus,
        event_filter: EventFilter,
        capacity: int,
        overflow: Overflow,
        *,
        native: bool = True,
        stream_events: StreamEvents = "all",
    ) -> None:
        self._bus = bus
        self.filter = event_filter
        self.overflow: Overflow = overflow
        #: Whether events come stamped (``seq``, ``time``); ``astream_events``' are not.
        self.native = native
        #: Which stream events it takes: read once per step, at its start.
        self.stream_events: StreamEvents = stream_events
        self._edge: Edge[Event] = Edge(capacity, name="subscription")
        self._dropped_total = 0
        self._dropped_pending = 0
        self._closed = False

    # -- publishing side (called by the engine) ------------------------------------

    @property
    def closed(self) -> bool:
        """Whether this subscription takes no more events."""
        return self._closed

    def _flush_lag(self) -> None:
        if self._dropped_pending:
            count, self._dropped_pending = self._dropped_pending, 0
            self._edge.force_put(_dropped_event(count))

    async def put(self, event: Event, on_delivered: Callable[[], None] | None = None) -> None:
        """Deliver ``event`` under this subscriber's overflow policy.

        ``on_delivered`` runs if (and as soon as) the event is in the buffer, even if the
        publisher is cancelled at the same moment.
        """
        if self._closed:
            return
        edge = self._edge
        if self._dropped_pending and len(edge._buffer) < edge._capacity:
            self._flush_lag()
        if edge.put_nowait(event):  # the fast path: room in the buffer, nobody queued
            if on_delivered is not None:
                on_delivered()
            return
        if self.overflow == "drop":
            self._dropped_total += 1
            self._dropped_pending += 1
            return
        try:
            await edge.send_waiting(event, on_delivered)
        except anyio.BrokenResourceError:
            # The subscriber left while we waited: nothing more is owed to it.
            return

    def try_put(self, event: Event) -> bool:
        """Deliver ``event`` if that needs no waiting and no bookkeeping (the hot path)."""
        return not (self._closed or self._dropped_pending) and self._edge.put_nowait(event)

    def count_dropped(self) -> None:
        """Count one event this subscriber will not get (reported in-band like a drop)."""
        if not self._closed:
            self._dropped_total += 1
            self._dropped_pending += 1

    def put_terminal(self, event: Event) -> None:
        """Deliver an end or error event without ever waiting (past the buffer if full)."""
        if self._closed:
            return
        self._flush_lag()
        self._edge.force_put(event)

    def end(self) -> None:
        """Close the publishing side: the subscriber reads what is buffered, then stops."""
        if not self._closed:
            self._closed = True
            self._bus._discard(self)
            self._flush_lag()
            self._edge.close()

    # -- subscriber side -------------------------------------------------------------

    @property
    def buffer(self) -> Edge[Event]:
        """The subscription's buffer, for a lossless (``"block"``) subscriber that reads
        it directly (it never holds a lag marker)."""
        return self._edge

    def _lag_marker(self) -> Event | None:
        # Once the events before a gap are read, the gap itself is reported.
        if self._dropped_pending and not self._edge._buffer:
            count, self._dropped_pending = self._dropped_pending, 0
            return _dropped_event(count)
        return None

    async def receive(self) -> Event:
        """The next event (an ``on_events_dropped`` event stands where events were lost).

        Raises:
            anyio.EndOfStream: The subscription ended and every event was read.
        """
        if self._dropped_pending and not self._edge._buffer:
            # The checkpoint first: a cancel there leaves the gap still to be reported.
            await anyio.lowlevel.checkpoint()
            marker = self._lag_marker()
            if marker is not None:
                return marker
        return await self._edge.receive()

    def receive_available(self, limit: int) -> list[Event]:
        """Events that are ready now, up to ``limit``, without waiting."""
        events = self._edge.receive_available(limit)
        if len(events) < limit:  # else the gap is reported by the next read, not lost
            marker = self._lag_marker()
            if marker is not None:
                events.append(marker)
        return events

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Unsubscribe and discard what is buffered."""
        self.end()
        self._edge.close_receiver()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end()
        self._edge.close_receiver()

    def __del__(self) -> None:
        if not self._closed:
            warnings.warn(f"{self!r} was never closed", ResourceWarning, stacklevel=1)

    def statistics(self) -> SubscriptionStatistics:
        """Return a frozen snapshot of this subscriber's buffer."""
        edge = self._edge.statistics()
        return SubscriptionStatistics(
            capacity=edge.capacity,
            buffered=edge.buffered,
            peak=edge.peak,
            delivered=edge.sent,
            dropped=self._dropped_total,
            waiting_publishers=edge.waiting_senders,
            overflow=self.overflow,
            closed=self._closed,
            stream_events=self.stream_events,
        )

    def __repr__(self) -> str:
        return f"<Subscription {self.overflow} {self._edge.statistics().buffered} buffered>"

    # A subscription is one subscriber's live buffer: a copy would be a second reader
    # that nothing ever publishes to, so copying or pickling it is refused.
    def __reduce__(self) -> Any:
        raise TypeError(
            f"cannot pickle {self!r}: it is a live subscriber buffer of an EventBus in this "
            "process, and a copy elsewhere would never receive an event"
        )

    def __copy__(self) -> Subscription:
        raise TypeError(f"cannot copy {self!r}: subscribe again for a second subscriber")

    def __deepcopy__(self, memo: dict[int, Any]) -> Subscription:
        raise TypeError(f"cannot copy {self!r}: subscribe again for a second subscriber")


def _dropped_event(count: int) -> Event:
    return {
        "event": event_name(None, EventPhase.DROPPED),
        "name": "EventBus",
        "run_id": "",
        "parent_ids": [],
        "tags": [],
        "metadata": {},
        "data": {"dropped": count},
    }


class EventBus:
    """Publishes the lifecycle events of every run attached to it to its subscribers.

    Attach a bus to a run with ``config={"bus": bus}`` or ``chain.with_config(bus=bus)``;
    runs started inside that run inherit it. Subscribe from anywhere on the same event
    loop::

        async with bus.subscribe(include_types=["chat_model"], overflow="drop") as events:
            async for event in events:
                ...

    A bus is a live object: copying a chain or config that holds it (``copy.copy``,
    ``copy.deepcopy``) shares the bus, and pickling it raises ``TypeError`` (a copy in
    another process would be connected to none of its subscribers).
    """

    def __init__(self) -> None:
        self._subscriptions: list[Subscriber] = []
        self._closed = False

    def subscribe(
        self,
        *,
        include_names: Iterable[str] | None = None,
        include_types: Iterable[str] | None = None,
        include_tags: Iterable[str] | None = None,
        exclude_names: Iterable[str] | None = None,
        exclude_types: Iterable[str] | None = None,
        exclude_tags: Iterable[str] | None = None,
        capacity: int = 64,
        overflow: Overflow = "block",
        stream_events: StreamEvents = "all",
    ) -> Subscription:
        """Add a subscriber and return its :class:`Subscription`.

        Args:
            include_names: Keep steps with these names (``run_name`` or class name).
            include_types: Keep steps of these kinds (``"chat_model"``, ``"parser"``...).
            include_tags: Keep steps carrying any of these tags.
            exclude_names: Remove steps with these names.
            exclude_types: Remove steps of these kinds.
            exclude_tags: Remove steps carrying any of these tags.
            capacity: Events buffered before the overflow policy applies (>= 1).
            overflow: ``"block"`` (lossless; a full buffer slows the pipeline) or
                ``"drop"`` (never slows it; drops are counted and reported in-band).
            stream_events: Which stream events (one per chunk) to take: ``"all"``;
                ``"first"``, each step's first only (a time to first token, at no cost
                per later chunk); or ``"none"``. A step's end event still carries its
                whole output either way. Decided per step when it starts.

        Raises:
            TypeError: If a filter is a string or holds something that is not a string.
            ValueError: For an unknown overflow policy, ``stream_events`` value, type or
                a capacity below 1.
            anyio.ClosedResourceError: If the bus was closed.
        """
        filters = EventFilterArgs(
            include_names, include_types, include_tags, exclude_names, exclude_types, exclude_tags
        )
        if stream_events not in _STREAM_EVENTS:
            raise ValueError(f"unknown stream_events {stream_events!r}; use 'all', 'first' or 'none'")
        return self._subscribe(filters, capacity, overflow, stream_events=stream_events)

    def _subscribe(
        self,
        filters: EventFilterArgs,
        capacity: int,
        overflow: Overflow,
        within_run_id: str | None = None,
        *,
        native: bool = True,
        stream_events: StreamEvents = "all",
    ) -> Subscription:
        # The engine's way in (``astream_events`` adds ``within_run_id``, its own run
        # only, and asks for the guide's shape).
        if overflow not in ("block", "drop"):
            raise ValueError(f"unknown overflow policy {overflow!r}; use 'block' or 'drop'")
        validate_subscriber_capacity(capacity)
        event_filter = EventFilter.of(filters, within_run_id=within_run_id)
        subscription = Subscription(
            self, event_filter, capacity, overflow, native=native, stream_events=stream_events
        )
        self._attach(subscription)
        return subscription

    def _attach(self, subscriber: Subscriber) -> None:
        """Add a subscriber made elsewhere (a replay log): steps made from now on see it.

        Raises:
            anyio.ClosedResourceError: If the bus was closed.
        """
        if self._closed:
            raise anyio.ClosedResourceError("subscribe on a closed EventBus")
        self._subscriptions.append(subscriber)

    def _discard(self, subscription: Subscriber) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def match(self, step: Step) -> tuple[Subscriber, ...]:
        """The subscribers that see ``step``'s events (the empty tuple for none)."""
        subscriptions = self._subscriptions
        if not subscriptions:
            return ()
        return tuple(
            s
            for s in subscriptions
            if s.filter.matches(step.name, step.kind, step.tags, step.run_id, step.parent_ids)
        )

    def match_values(
        self, name: str, kind: str, tags: tuple[str, ...], run_id: str, parent_ids: tuple[str, ...]
    ) -> tuple[Subscriber, ...]:
        """The subscribers that see a step with these values (a step of a run made
        elsewhere, whose events an ``EventForwarder`` re-publishes here)."""
        return tuple(s for s in self._subscriptions if s.filter.matches(name, kind, tags, run_id, parent_ids))

    def would_see(self, *, name: str, kind: str, tags: tuple[str, ...], parent_ids: tuple[str, ...]) -> bool:
        """Whether any subscriber would see a step like this (before it exists)."""
        return any(s.filter.matches(name, kind, tags, "", parent_ids) for s in self._subscriptions)

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscriptions)

    async def aclose(self) -> None:
        """End every subscription (each reads what it has buffered, then stops)."""
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.end()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> EventBus:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._subscriptions)} subscribers"
        return f"<EventBus {state}>"

    def __reduce__(self) -> Any:
        raise TypeError(
            f"cannot pickle {self!r}: an EventBus delivers to subscribers in this process, and "
            "a copy in another process would be connected to none of them; attach a bus in "
            "the process that runs the chain"
        )

    def __copy__(self) -> EventBus:
        # Copies of what holds a bus (a chain bound with_config(bus=...), a config)
        # publish to the same subscribers: the bus is shared, not duplicated.
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> EventBus:
        return self
