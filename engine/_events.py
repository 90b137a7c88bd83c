"""The shape of a lifecycle event and its name: the one place names are built and read.

An event is a plain dict (users print, index and serialise them) with exactly the keys of
:class:`StreamEvent`, the guide's shape for ``astream_events`` v1 and v2 alike. Its
``event`` key names the step's kind and the phase, ``on_<kind>_<phase>``
(``on_chat_model_stream``), except for two fixed names: ``on_custom_event`` (published by
a step's own code) and ``on_events_dropped`` (the bus's marker for events a ``"drop"``
subscriber lost). :func:`event_name` is the only place a name is formatted, and
:func:`phase_of` / :func:`kind_of` the only place one is read back; both are cached, so
neither formats nor slices per chunk.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, TypeAlias, TypedDict

__all__ = ("Event", "EventPhase", "StreamEvent", "event_name", "kind_of", "phase_of")


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


class StreamEvent(TypedDict):
    """One lifecycle event, as ``astream_events`` and ``EventBus`` subscribers get it.

    Attributes:
        event: ``on_<kind>_<phase>`` (``on_chain_start``, ``on_chat_model_stream``...),
            ``on_custom_event`` or ``on_events_dropped``; read it with :func:`phase_of`
            and :func:`kind_of`.
        name: The step's name (``run_name`` or class name); a custom event's own name.
        run_id: The step's run id (empty for ``on_events_dropped``).
        parent_ids: The run ids of the step's ancestors, root first (always empty in v1).
        tags: The step's tags.
        metadata: The step's metadata.
        data: ``{"input": ...}`` or ``{}`` at start, ``{"chunk": ...}`` per chunk,
            ``{"input", "output"}`` at end (``{"output", "input"}`` in v2, only
            ``{"output"}`` at the root of an ``astream_events`` stream), ``{"error",
            "input"?}`` on error, the dispatched value for a custom event, ``{"dropped":
            n}`` for a drop marker. ARCHITECTURE.md ("Differences from langchain-core")
            says which event shows what.
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

_FIXED_NAMES = {EventPhase.CUSTOM: "on_custom_event", EventPhase.DROPPED: "on_events_dropped"}
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
        f"{_FIXED_NAMES[EventPhase.CUSTOM]} or {_FIXED_NAMES[EventPhase.DROPPED]}"
    )
