"""``astream_events``: a run whose consumer reads its event subscription.

The run publishes to the bus given in its config (so a service-wide monitor sees it
too) or to a private bus. The consumer's subscription is restricted to this run (its
root run id) and closed by the root step's end, so the event stream always ends; if a
step raised, its error events (up to the root) come first, then the exception.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._bus import Event, EventBus, EventFilter
from ._edge import ConstantInbox
from ._run import RunStream
from ._step import RunScope, Step, new_run_id

if TYPE_CHECKING:
    from ._runnable import Config, Runnable

__all__ = ("open_event_stream",)

_VERSIONS = ("v1", "v2")


def open_event_stream(
    runnable: Runnable[Any, Any],
    input: Any,
    config: Config,
    *,
    version: str,
    filters: dict[str, Iterable[str] | None],
    capacity: int,
) -> RunStream[Event]:
    """Start (lazily) a run of ``runnable`` and return the stream of its events."""
    if version not in _VERSIONS:
        raise ValueError(f"unknown astream_events version {version!r}; use 'v1' or 'v2'")
    EventFilter.build(**filters)  # type: ignore[arg-type]  # validate now, before anything runs
    holder: dict[str, Any] = {}
    run_id = new_run_id()

    def adopt_scope(scope: RunScope) -> None:
        bus = scope.bus
        if bus is None:
            bus = scope.bus = EventBus()
        scope.version = version
        holder["subscription"] = bus.subscribe(
            capacity=capacity, overflow="block", _within_run_id=run_id, **filters
        )

    _, _, launch, edges = runnable._open(
        lambda _run, _parent: ConstantInbox(input),
        config,
        on_root=lambda root: _end_with(root, holder),
        scope_hook=adopt_scope,
        run_id=run_id,
        discard_output=True,
    )
    subscription = holder["subscription"]
    # A lossless subscription never holds a lag marker, so the consumer can read its
    # buffer directly, one call shallower per event.
    return RunStream(launch, subscription._edge, subscription.end, edges[1:])


def _end_with(root: Step, holder: dict[str, Any]) -> None:
    previous = root.on_finish

    def finish(step: Step) -> None:
        if previous is not None:
            previous(step)
        holder["subscription"].end()

    root.on_finish = finish
