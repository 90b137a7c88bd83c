"""The shape of a lifecycle event and its name: the one place names are built and read.

An event is a plain dict (users print, index and serialise them) with exactly the keys of
:class:`StreamEvent`, the guide's shape for ``astream_events`` v1 and v2 alike. Its
``event`` key names the step's kind and the phase, ``on_<kind>_<phase>``
(``on_chat_model_stream``), except for three fixed names: ``on_custom_event`` (published
by a step's own code), ``on_events_dropped`` (the bus's marker for events a ``"drop"``
subscriber lost) and ``on_events_lost`` (a replay log's marker for events it no longer
holds). :func:`event_name` is the only place a name is formatted, and :func:`phase_of` /
:func:`kind_of` the only place one is read back; both are cached, so neither formats nor
slices per chunk.

rillet's own subscribers (``EventBus.subscribe``, replay logs) get a run's events
*stamped*: after the guide's keys, ``seq`` (the event's number in its run, from 1) and
``time`` (when it was made, on the run's event loop clock), as :class:`StampedEvent`
declares. ``astream_events`` and ``astream_log`` never see the stamps: their events keep
the guide's shape exactly.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, TypedDict

import attrs
import sniffio

__all__ = (
    "Event",
    "EventPhase",
    "EventSequence",
    "StampedEvent",
    "StreamEvent",
    "event_name",
    "kind_of",
    "phase_of",
    "without_stamps",
)


class EventPhase(enum.StrEnum):
    """Where in a step's life an event stands (its value is the name's last word)."""

    START = "start"
    STREAM = "stream"
    END = "end"
    ERROR = "error"
    #: ``on_custom_event``: published by a step's code with ``dispatch_custom_event``.
    CUSTOM = "custom"
    #: ``on_events_dropped``: how many events a ``"drop"`` subscriber lost at this point.
    DROPPED = "dropped"
    #: ``on_events_lost``: the events (``from``, ``to``: sequence numbers) that a replay
    #: log's reader missed because the log no longer held them.
    LOST = "lost"


class StreamEvent(TypedDict):
    """One lifecycle event, as ``astream_events`` and ``EventBus`` subscribers get it.

    Attributes:
        event: ``on_<kind>_<phase>`` (``on_chain_start``, ``on_chat_model_stream``...),
            ``on_custom_event``, ``on_events_dropped`` or ``on_events_lost``; read it with
            :func:`phase_of` and :func:`kind_of`.
        name: The step's name (``run_name`` or class name); a custom event's own name.
        run_id: The step's run id (empty for ``on_events_dropped``).
        parent_ids: The run ids of the step's ancestors, root first (always empty in v1).
        tags: The step's tags.
        metadata: The step's metadata.
        data: ``{"input": ...}`` or ``{}`` at start, ``{"chunk": ...}`` per chunk,
            ``{"input", "output"}`` at end (``{"output", "input"}`` in v2, only
            ``{"output"}`` at the root of an ``astream_events`` stream), ``{"error",
            "input"?}`` on error, the dispatched value for a custom event, ``{"dropped":
            n}`` for a drop marker, ``{"from": a, "to": b}`` for a lost marker.
            ARCHITECTURE.md ("Differences from langchain-core") says which event shows what.
    """

    event: str
    name: str
    run_id: str
    parent_ids: list[str]
    tags: list[str]
    metadata: dict[str, Any]
    data: Any


#: The type of an event; the same as :class:`StreamEvent`.
Event: TypeAlias = StreamEvent


class StampedEvent(StreamEvent):
    """An event of a run as rillet's own subscribers get it: the guide's keys, then two more.

    ``EventBus.subscribe`` subscribers and replay logs get these; ``astream_events`` and
    ``astream_log`` do not (their events keep the guide's shape). A bus's own
    ``on_events_dropped`` marker belongs to no run and carries no stamps.

    Attributes:
        seq: The event's number in its run: 1 for the run's first event, one more for
            each event the run made after it (runs started inside its steps included).
            Events nobody sees are never made, so a subscriber that sees part of a run
            sees gaps; a replay log reader resumes after the last ``seq`` it saw.
        time: When the event was made, in seconds on the run's event loop clock
            (``trio.current_time()``, ``loop.time()``): monotonic, and virtual under
            trio's ``MockClock``.
    """

    seq: int
    time: float


def without_stamps(event: Mapping[str, Any]) -> Event:
    """A copy of ``event`` in the guide's shape (its ``seq`` and ``time`` left out)."""
    copied = dict(event)
    copied.pop("seq", None)
    copied.pop("time", None)
    return copied  # type: ignore[return-value]


def _loop_clock() -> Callable[[], float]:
    # Found once per run: anyio.current_time() looks the backend up per call, and
    # trio.current_time() goes through the runner to the clock; the clock's own method
    # (the MockClock's too) is one call.
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_clock().current_time
    return asyncio.get_running_loop().time


@attrs.define(eq=False)
class EventSequence:
    """Numbers the events of one run (shared by the runs started inside it) and reads
    the clock that times them; the clock is the run's event loop's, found at the first
    event (a run may be planned outside any loop)."""

    last: int = 0
    _clock: Callable[[], float] | None = None

    def clock(self) -> float:
        """The time now on the run's event loop clock."""
        clock = self._clock
        if clock is None:
            clock = self._clock = _loop_clock()
        return clock()

    def stamp(self, event: Any) -> None:
        """Give ``event`` the run's next sequence number and the time now."""
        number = self.last + 1
        self.last = number
        event["seq"] = number
        clock = self._clock
        if clock is None:
            clock = self._clock = _loop_clock()
        event["time"] = clock()


_FIXED_NAMES = {
    EventPhase.CUSTOM: "on_custom_event",
    EventPhase.DROPPED: "on_events_dropped",
    EventPhase.LOST: "on_events_lost",
}
_FIXED_PHASES = {name: phase for phase, name in _FIXED_NAMES.items()}
_LIFECYCLE = {phase.value: phase for phase in EventPhase if phase not in _FIXED_NAMES}


def event_name(kind: str | None, phase: EventPhase | str) -> str:
    """The ``event`` value of a step of ``kind`` at ``phase`` (``on_<kind>_<phase>``).

    A custom event and a drop marker have fixed names that do not say a kind, so ``kind``
    is ignored for them (``None`` is fine). Names are cached: building the same name
    twice formats nothing.

    Raises:
        ValueError: For an unknown phase, or a lifecycle phase without a kind.
    """
    try:
        return _NAMES[kind, phase]
    except (KeyError, TypeError):  # not built yet, or not even hashable
        return _new_name(kind, phase)


def phase_of(event: Mapping[str, Any] | str) -> EventPhase:
    """The phase of an event (or of an event's name).

    Raises:
        ValueError: If the name is not one :func:`event_name` builds.
    """
    return _parsed(event)[1]


def kind_of(event: Mapping[str, Any] | str) -> str | None:
    """The step kind an event's name says (``None`` for a custom event or a drop marker).

    Raises:
        ValueError: If the name is not one :func:`event_name` builds.
    """
    return _parsed(event)[0]


# Both caches hold only valid names, and stop growing at a size no real set of step kinds
# reaches, so names made up on the fly cannot fill memory.
_CACHE_LIMIT = 4096
_NAMES: dict[tuple[str | None, str], str] = {}
_PARSED: dict[object, tuple[str | None, EventPhase]] = {}


def _new_name(kind: str | None, phase: EventPhase | str) -> str:
    try:
        checked = EventPhase(phase)
    except ValueError:
        raise ValueError(f"unknown event phase {phase!r}; the phases are {', '.join(EventPhase)}") from None
    name = _FIXED_NAMES.get(checked)
    if name is None:
        if not isinstance(kind, str) or not kind:
            raise ValueError(
                f"an {checked.value!r} event needs a step kind (a non-empty string), got {kind!r}"
            )
        name = f"on_{kind}_{checked.value}"
    if len(_NAMES) < _CACHE_LIMIT and (kind is None or isinstance(kind, str)):
        _NAMES[kind, checked] = name
    return name


def _parsed(event: Mapping[str, Any] | str) -> tuple[str | None, EventPhase]:
    name = event if isinstance(event, str) else event.get("event")
    try:
        return _PARSED[name]
    except (KeyError, TypeError):  # not read yet, or not even hashable
        return _parse(name)


def _parse(name: object) -> tuple[str | None, EventPhase]:
    if not isinstance(name, str):
        raise ValueError(f"an event's 'event' key must be its name (a string), got {name!r}")
    parsed = _read(name)
    if len(_PARSED) < _CACHE_LIMIT:
        _PARSED[name] = parsed
    return parsed


def _read(name: str) -> tuple[str | None, EventPhase]:
    fixed = _FIXED_PHASES.get(name)
    if fixed is not None:
        return None, fixed
    if name.startswith("on_"):
        # A kind may hold underscores (chat_model); the phase is the last word.
        kind, _, last = name[3:].rpartition("_")
        phase = _LIFECYCLE.get(last)
        if kind and phase is not None:
            return kind, phase
    raise ValueError(
        f"{name!r} is not an event name: expected on_<kind>_<{'|'.join(_LIFECYCLE)}>, "
        f"{_FIXED_NAMES[EventPhase.CUSTOM]}, {_FIXED_NAMES[EventPhase.DROPPED]} "
        f"or {_FIXED_NAMES[EventPhase.LOST]}"
    )
