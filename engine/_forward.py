"""Events made elsewhere, re-published under a local step: :class:`EventForwarder`.

A step that runs its work in another process (``engine.ray.RayRunnable``) gets the
remote run's events in batches and hands each one to an :class:`EventForwarder` made for
its own step. The remote run is expected to have been nested under a stand-in of that
step (same run id, parent ids, tags, metadata and event version: see
:meth:`EventForwarder.context`), so its events already carry the right identity; the
forwarder decides which local subscribers see each one (matched once per remote step,
at its start, as the engine matches its own steps), stamps it (``seq``, ``time``) from
the local run's sequence for subscribers that want stamps, and delivers it under each
subscriber's overflow policy: ``"block"`` subscribers lose nothing.

If the remote run stops without ending its steps (the process died, the call was
cancelled), :meth:`EventForwarder.close` ends every remote step still open with an error
event, children first, so every step that started ends exactly once.

Only steps someone listens to pay for this: :meth:`EventForwarder.open` returns ``None``
when no subscriber could see a step nested under the local one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._bus import EventBus, EventFilter, Subscriber
from ._events import Event, EventPhase, event_name, kind_of, phase_of, without_stamps
from ._step import RunCancelled, Step

__all__ = ("EventForwarder", "StepContext")


@attrs.frozen
class StepContext:
    """What a remote run needs to nest under a local step, as plain (picklable) values.

    Attributes:
        run_id: The local step's run id (the remote run's parent).
        name: The local step's name.
        kind: The local step's kind.
        root_run_id: The local top-level run's id.
        parent_ids: The local step's parent ids.
        tags: The local step's tags.
        inheritable_tags: The tags the remote run inherits.
        metadata: The metadata the remote run inherits.
        version: The event shape of the local run (``"v1"``, ``"v2"`` or ``"native"``).
        depth: How deep the local step's run is nested.
        recursion_limit: How deep runs under the local step may nest.
        configurable: The ``configurable`` values in force at the local step.
        filters: The filters of the local subscribers (a remote run publishes only the
            events one of them would see); empty when nobody listens.
    """

    run_id: str
    name: str
    kind: str
    root_run_id: str
    parent_ids: tuple[str, ...]
    tags: tuple[str, ...]
    inheritable_tags: tuple[str, ...]
    metadata: Mapping[str, Any]
    version: str
    depth: int
    recursion_limit: int
    configurable: Mapping[str, Any]
    filters: tuple[EventFilter, ...] = ()

    def matches(
        self, name: str, kind: str, tags: tuple[str, ...], run_id: str = "", parent_ids: tuple[str, ...] = ()
    ) -> bool:
        """Whether any local subscriber would see a step like this."""
        return any(f.matches(name, kind, tags, run_id, parent_ids) for f in self.filters)


def _buses(step: Step) -> tuple[EventBus, ...]:
    bus = step.scope.bus
    bound = step.bound_buses
    if bus is None:
        return bound
    return (bus, *(b for b in bound if b is not bus))


@attrs.define(eq=False)
class _Remote:
    """One remote step seen by the forwarder: who saw its start, and how to end it."""

    subscribers: tuple[Subscriber, ...]
    template: Event
    announced: list[Subscriber] = attrs.field(factory=list)
    ended: bool = False


@attrs.define(eq=False)
class EventForwarder:
    """Re-publishes a remote run's events nested under the local ``step``.

    Make one with :meth:`open` per remote run (or attempt), feed it every event in the
    order the remote run made them with :meth:`publish`, and :meth:`close` it when the
    remote run is over (in a ``finally``: it ends what the remote run left open).
    """

    step: Step
    _buses: tuple[EventBus, ...]
    _remote: dict[str, _Remote] = attrs.field(factory=dict)
    _order: list[str] = attrs.field(factory=list)

    @classmethod
    def open(cls, step: Step) -> EventForwarder | None:
        """A forwarder for runs nested under ``step``, or ``None`` when no subscriber of
        its run's bus (or of a bus bound above it) could see such a run's events."""
        buses = _buses(step)
        if not any(bus.subscriber_count for bus in buses):
            return None
        return cls(step, buses)

    def filters(self) -> tuple[EventFilter, ...]:
        """The filters of every subscriber that may see a remote step (to send along)."""
        seen: list[EventFilter] = []
        for bus in self._buses:
            for subscriber in bus._subscriptions:
                if subscriber.filter not in seen:
                    seen.append(subscriber.filter)
        return tuple(seen)

    @staticmethod
    def context(step: Step, filters: tuple[EventFilter, ...] = ()) -> StepContext:
        """``step``'s identity as plain values, for a remote run to nest under it."""
        return StepContext(
            run_id=step.run_id,
            name=step.name,
            kind=step.kind,
            root_run_id=step.root_run_id,
            parent_ids=step.parent_ids,
            tags=step.tags,
            inheritable_tags=step.inheritable_tags,
            metadata=dict(step.metadata),
            version=step.scope.version,
            depth=step.depth,
            recursion_limit=step.recursion_limit,
            configurable=dict(step.configurable),
            filters=filters,
        )

    def _match(self, event: Event) -> tuple[Subscriber, ...]:
        kind = kind_of(event) or ""
        name, tags = str(event["name"]), tuple(event.get("tags") or ())
        run_id, parent_ids = str(event["run_id"]), tuple(event.get("parent_ids") or ())
        if not parent_ids:
            # v1 events carry no parent ids: match as a step nested under the local one.
            parent_ids = (*self.step.parent_ids, self.step.run_id)
        matched: list[Subscriber] = []
        for bus in self._buses:
            for subscriber in bus.match_values(name, kind, tags, run_id, parent_ids):
                if subscriber not in matched:
                    matched.append(subscriber)
        return tuple(matched)

    def _shaped(self, event: Event, subscribers: tuple[Subscriber, ...]) -> tuple[Event, Event]:
        # (the stamped copy for native subscribers, the guide's shape for the others)
        plain = without_stamps(event) if "seq" in event else event
        if not any(s.native for s in subscribers):
            return plain, plain
        stamped = dict(plain)
        self.step.scope.sequence.stamp(stamped)
        return stamped, plain  # type: ignore[return-value]

    async def publish(self, event: Event) -> None:
        """Publish one remote event to the local subscribers that see its step.

        Start, stream and custom events respect each subscriber's overflow policy (a
        ``"block"`` subscriber that is full makes this wait); end and error events never
        wait, and go only to subscribers that got the step's start.
        """
        phase = phase_of(event)
        run_id = str(event["run_id"])
        remote = self._remote.get(run_id)
        if phase is EventPhase.START:
            if remote is not None:
                return  # a second start for one step: the remote run repeated itself
            remote = _Remote(self._match(event), event)
            self._remote[run_id] = remote
            self._order.append(run_id)
        if remote is None or remote.ended or not remote.subscribers:
            return
        stamped, plain = self._shaped(event, remote.subscribers)
        if phase is EventPhase.END or phase is EventPhase.ERROR:
            self._terminal(remote, stamped, plain)
            return
        for subscriber in remote.subscribers:
            shaped = stamped if subscriber.native else plain
            if phase is EventPhase.START:
                await subscriber.put(shaped, _announcer(remote, subscriber))
            elif subscriber in remote.announced:
                await subscriber.put(shaped)

    def _terminal(self, remote: _Remote, stamped: Event, plain: Event) -> None:
        remote.ended = True
        for subscriber in remote.subscribers:
            if subscriber in remote.announced:
                subscriber.put_terminal(stamped if subscriber.native else plain)
            elif subscriber.overflow == "drop":
                subscriber.count_dropped()

    def close(self, error: BaseException | None = None) -> None:
        """End every remote step that started and did not end (children first), with
        an error event carrying ``error`` (a :class:`RunCancelled` when ``None``)."""
        for run_id in reversed(self._order):
            remote = self._remote[run_id]
            if remote.ended:
                continue
            failure = error if error is not None else RunCancelled(f"{remote.template['name']} was cancelled")
            event: Event = {
                **remote.template,
                "event": event_name(kind_of(remote.template), EventPhase.ERROR),
                "data": {"error": failure},
            }
            remote.ended = True
            if remote.subscribers:
                stamped, plain = self._shaped(event, remote.subscribers)
                remote.ended = False
                self._terminal(remote, stamped, plain)


def _announcer(remote: _Remote, subscriber: Subscriber) -> Any:
    def announce() -> None:
        remote.announced.append(subscriber)

    return announce
