"""Checking that an event stream tells a consistent story."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._events import EventPhase, phase_of

__all__ = ("EventOrderError", "check_event_order")


class EventOrderError(AssertionError):
    """An event stream broke one of the ordering rules."""


def check_event_order(events: Iterable[Mapping[str, Any]], *, complete: bool = True) -> None:
    """Assert the ordering rules on ``events`` (from ``astream_events`` or a bus).

    Per run: one start first, then stream events (and custom events), then exactly one
    end or error, then nothing. Across runs: a child starts after its parent started and
    ends before its parent ends. With ``complete=False`` (a stream that was cut off), runs
    may lack their terminal event. Drop and lost markers are skipped (after a replay
    log's lost marker, the events it stands for are missing: check what came before it).

    Raises:
        EventOrderError: Naming the first event that breaks a rule and why.
    """
    started: dict[str, int] = {}
    ended: dict[str, int] = {}
    parents: dict[str, list[str]] = {}
    for position, event in enumerate(events):
        try:
            phase = phase_of(event)
        except ValueError as exc:
            raise EventOrderError(f"event {position}: {exc}") from None
        if phase is EventPhase.DROPPED or phase is EventPhase.LOST:
            continue
        run_id = str(event["run_id"])
        where = f"event {position} ({event['event']} of {event.get('name')!r}, run {run_id[:8]})"
        if phase is EventPhase.START:
            if run_id in started:
                raise EventOrderError(f"{where}: a second start for the same run")
            for parent in event.get("parent_ids") or []:
                if parent in started and parent in ended:
                    raise EventOrderError(f"{where}: starts after its parent {parent[:8]} ended")
            started[run_id] = position
            parents[run_id] = [str(p) for p in event.get("parent_ids") or []]
            continue
        if run_id not in started:
            raise EventOrderError(f"{where}: comes before the run's start")
        if run_id in ended:
            raise EventOrderError(f"{where}: comes after the run's end or error")
        if phase is EventPhase.END or phase is EventPhase.ERROR:
            for child, child_parents in parents.items():
                if run_id in child_parents and child in started and child not in ended:
                    raise EventOrderError(f"{where}: the parent ends before its child {child[:8]} ended")
            ended[run_id] = position
    if complete:
        unfinished = [run for run in started if run not in ended]
        if unfinished:
            raise EventOrderError(f"runs never ended: {', '.join(r[:8] for r in unfinished)}")
