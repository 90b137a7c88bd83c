"""Replay logs: the newest events of one run, numbered, for readers that leave and come back.

A :class:`ReplayLog` is a subscriber of a run's bus (``RunStream.replay_log(capacity)``)
of a third kind beside ``"block"`` and ``"drop"``: it never makes the run wait, and it
keeps the newest ``capacity`` events of the run in a ring, stamped with their sequence
number. Any number of :class:`ReplayReader` s read it, each from a sequence number on: a
reader that lost its connection starts a new one after the last ``seq`` it saw and gets
every later event exactly once, in order, as long as the log still holds them. When the
log has let go of events the reader never saw, the reader gets one ``on_events_lost``
marker naming them (``data``: ``{"from": a, "to": b}``, sequence numbers, both included),
then goes on with the oldest event the log holds.

Appending is the per-chunk path of an observed run: a slot write and a counter, and a
wake-up only when a reader waits. The log's events come in the order they were numbered,
because steps deliver to replay logs first and a log never waits (see
``Step.choose_shapes``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.lowlevel
import attrs

from ._events import Event, EventPhase, EventSequence, StampedEvent, event_name

if TYPE_CHECKING:
    from ._bus import EventBus, EventFilter, StreamEvents

__all__ = ("ReplayLog", "ReplayLogStatistics", "ReplayReader", "validate_replay_capacity")


def validate_replay_capacity(capacity: object) -> int:
    """Return ``capacity`` if it is a usable replay log size (an int >= 1), else raise.

    Raises:
        TypeError: If it is not an int.
        ValueError: If it is below 1.
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"a replay log's capacity must be an int, got {type(capacity).__name__} {capacity!r}")
    if capacity < 1:
        raise ValueError(
            f"a replay log's capacity must be >= 1 (the events it keeps for readers that come "
            f"back), got {capacity}: a log that keeps nothing has nothing to replay"
        )
    return capacity


@attrs.frozen
class ReplayLogStatistics:
    """A snapshot of a replay log.

    Attributes:
        capacity: The most events it keeps.
        held: Events it holds now.
        recorded: Events it took in so far.
        evicted: Events it let go of to make room (``recorded - held``).
        oldest: The ``seq`` of the oldest event it holds (``None`` when empty).
        newest: The ``seq`` of the newest event it took in (0 before the first).
        waiting_readers: Readers waiting for the next event.
        closed: Whether its run ended (it takes no more events).
    """

    capacity: int
    held: int
    recorded: int
    evicted: int
    oldest: int | None
    newest: int
    waiting_readers: int
    closed: bool


class ReplayLog:
    """The newest ``capacity`` events of one run, for readers that come and go.

    Made by ``RunStream.replay_log(capacity, ...)`` before the run starts; it ends with
    the run. Read it with :meth:`read`::

        stream = chain.astream(x)
        log = stream.replay_log(1000)
        async for event in log.read(after=last_seen_seq):
            ...

    Its events are stamped (:class:`~engine.StampedEvent`): ``seq`` is what a reader
    resumes after.
    """

    #: A log never waits: a full log lets go of its oldest event.
    overflow = "ring"
    native = True
    #: A log keeps every chunk's event.
    stream_events: StreamEvents = "all"

    def __init__(self, capacity: int, *, run_id: str, event_filter: EventFilter, sequence: EventSequence):
        self._capacity = validate_replay_capacity(capacity)
        self._run_id = run_id
        self._filter = event_filter
        self._sequence = sequence
        self._slots: list[StampedEvent] = []
        self._recorded = 0
        self._newest = 0
        # The seq of the newest event let go of (0: none yet): a reader that has not
        # seen that far lost the events from its position up to it.
        self._evicted_seq = 0
        self._wakeup: anyio.Event | None = None
        self._waiting = 0
        self._closed = False
        self._bus: EventBus | None = None
        self._attached = False

    # -- the run's side ------------------------------------------------------------------

    @property
    def filter(self) -> EventFilter:
        """Which of the run's steps it records."""
        return self._filter

    @property
    def closed(self) -> bool:
        """Whether the run ended (the log takes no more events; readers finish what it holds)."""
        return self._closed

    @property
    def run_id(self) -> str:
        """The run id of the run it records (its root step's)."""
        return self._run_id

    @property
    def capacity(self) -> int:
        """The most events it keeps."""
        return self._capacity

    @property
    def newest(self) -> int:
        """The ``seq`` of the newest event it took in (0 before the first)."""
        return self._newest

    def attach(self, bus: EventBus) -> None:
        """Subscribe to ``bus`` (when the run starts; a log is attached once)."""
        if self._attached or self._closed:
            return
        self._attached = True
        self._bus = bus
        bus._attach(self)

    def _append(self, event: Event) -> None:
        if self._closed:
            return
        stamped = cast("StampedEvent", event)
        recorded = self._recorded
        slots = self._slots
        if recorded < self._capacity:
            slots.append(stamped)
        else:
            index = recorded % self._capacity
            self._evicted_seq = slots[index]["seq"]
            slots[index] = stamped
        self._recorded = recorded + 1
        self._newest = stamped["seq"]
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    def try_put(self, event: Event) -> bool:
        """Record ``event`` (never waits)."""
        self._append(event)
        return True

    async def put(self, event: Event, on_delivered: Callable[[], None] | None = None) -> None:
        """Record ``event`` (never waits)."""
        self._append(event)
        if on_delivered is not None:
            on_delivered()

    def put_terminal(self, event: Event) -> None:
        """Record an end or error event."""
        self._append(event)

    def count_dropped(self) -> None:
        """A log records every event it sees: nothing is dropped unannounced."""

    def end(self) -> None:
        """The run ended: take no more events; readers finish what the log holds."""
        if self._closed:
            return
        self._closed = True
        if self._bus is not None:
            self._bus._discard(self)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    # -- the readers' side ---------------------------------------------------------------

    def read(self, after: int = 0) -> ReplayReader:
        """A reader of the events numbered above ``after``, in order, as they come.

        ``after=0`` reads from the run's first event; a reader that lost its connection
        passes the last ``seq`` it saw (a lost marker's ``seq`` too: it is the marker's
        ``to``). The reader ends once the run ended and it read what the log holds.

        Raises:
            TypeError: If ``after`` is not an int.
            ValueError: If ``after`` is negative, or newer than any event the log took
                in (it cannot come from this run's log).
        """
        if isinstance(after, bool) or not isinstance(after, int):
            raise TypeError(f"after must be an event's seq (an int), got {type(after).__name__} {after!r}")
        if after < 0:
            raise ValueError(f"after must be an event's seq (>= 0; 0 reads from the start), got {after}")
        if after > self._newest:
            raise ValueError(
                f"cannot resume after event {after} of run {self._run_id}: its replay log "
                f"has taken in events up to {self._newest} so far"
            )
        return ReplayReader(self, after, self._position_after(after))

    def _first_held(self) -> int:
        """The absolute position of the oldest event held."""
        return self._recorded - len(self._slots)

    def _at(self, position: int) -> StampedEvent:
        return self._slots[position % self._capacity]

    def _position_after(self, after: int) -> int:
        # Events are held in seq order: the first one newer than ``after``, by bisection.
        low, high = self._first_held(), self._recorded
        while low < high:
            middle = (low + high) // 2
            if self._at(middle)["seq"] <= after:
                low = middle + 1
            else:
                high = middle
        return low

    async def _changed(self) -> None:
        wakeup = self._wakeup
        if wakeup is None:
            wakeup = self._wakeup = anyio.Event()
        self._waiting += 1
        try:
            await wakeup.wait()
        finally:
            self._waiting -= 1

    def _lost_marker(self, first: int, last: int) -> StampedEvent:
        return {
            "event": event_name(None, EventPhase.LOST),
            "name": "ReplayLog",
            "run_id": self._run_id,
            "parent_ids": [],
            "tags": [],
            "metadata": {},
            "data": {"from": first, "to": last},
            "seq": last,
            "time": self._sequence.clock(),
        }

    def statistics(self) -> ReplayLogStatistics:
        """Return a frozen snapshot of the log."""
        held = len(self._slots)
        return ReplayLogStatistics(
            capacity=self._capacity,
            held=held,
            recorded=self._recorded,
            evicted=self._recorded - held,
            oldest=self._at(self._first_held())["seq"] if held else None,
            newest=self._newest,
            waiting_readers=self._waiting,
            closed=self._closed,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ReplayLog {state} {len(self._slots)}/{self._capacity} events, newest {self._newest}>"

    # A log is a live subscriber of a run in this process.
    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {self!r}: it records a run running in this process")


class ReplayReader:
    """One reader of a :class:`ReplayLog`: an async iterator of its events after a seq.

    Each event comes once, in order; where the log let go of events this reader had not
    read, one ``on_events_lost`` marker stands for them. A reader holds nothing but its
    place: drop it when its connection goes, and start a new one after :attr:`last`.
    """

    def __init__(self, log: ReplayLog, after: int, position: int) -> None:
        self._log = log
        self._last = after
        self._position = position

    @property
    def last(self) -> int:
        """The ``seq`` of the last event (or lost marker) this reader returned."""
        return self._last

    def __aiter__(self) -> AsyncIterator[StampedEvent]:
        return self

    async def __anext__(self) -> StampedEvent:
        await anyio.lowlevel.checkpoint()
        while True:
            item = self._next_held()
            if item is not None:
                return item
            if self._log._closed:
                raise StopAsyncIteration
            await self._log._changed()

    def _next_held(self) -> StampedEvent | None:
        """The next event (or lost marker) the log holds for this reader, if any."""
        log = self._log
        if log._evicted_seq > self._last:
            # Events after this reader's place were let go of before it read them.
            marker = log._lost_marker(self._last + 1, log._evicted_seq)
            self._last = log._evicted_seq
            self._position = log._first_held()
            return marker
        if self._position < log._recorded:
            event = log._at(self._position)
            self._position += 1
            self._last = event["seq"]
            return event
        return None

    def available(self, limit: int) -> list[StampedEvent]:
        """The events that are ready now, up to ``limit``, without waiting."""
        items: list[StampedEvent] = []
        while len(items) < limit:
            item = self._next_held()
            if item is None:
                break
            items.append(item)
        return items

    def __repr__(self) -> str:
        return f"<ReplayReader of run {self._log.run_id[:8]} after {self._last}>"
