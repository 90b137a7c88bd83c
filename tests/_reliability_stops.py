"""Stopping a run at its k-th wait point, in every consumer style and every way, with checks.

A *pipeline* is any object with ``chain`` (the runnable), ``expected`` (its output chunks
when nothing stops it), ``assert_cleaned_up()`` (its user code all finished, inside the
run) and ``async after_run(stopped)`` (anything else to check once the run is over, such
as a server seeing its connection closed). ``run_stopped_at`` runs a fresh one under a
lossless monitor and stops it at one wait point; ``sweep`` does so at a sample of points
or at all of them.

Consumer styles: ``with`` (``async with astream``), ``bare`` (a bare ``async for``),
``events`` (``astream_events``) and ``invoke`` (``ainvoke``). Ways of stopping: ``break``
(the consumer breaks off at its next chunk), ``cancel`` (an enclosing cancel scope is
cancelled), ``timeout`` (a ``fail_after`` deadline expires) and ``raise`` (the consumer
raises a KeyboardInterrupt-like ``BaseException``, right in its wait when it is waiting).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import anyio
from _reliability_harness import (
    Interrupt,
    Monitor,
    WaitPoints,
    assert_edges_settled,
    sample_points,
    seed_scheduler,
    settle,
    tally,
)

from engine import EventBus, RunCancelled, RunStream
from engine.testing import check_event_order

__all__ = ["COMBINATIONS", "STYLES", "WAYS", "Outcome", "Pipeline", "run_stopped_at", "sweep"]

STYLES = ("with", "bare", "events", "invoke")
WAYS = ("break", "cancel", "timeout", "raise")
COMBINATIONS = [
    (style, way) for style in STYLES for way in WAYS if not (style == "invoke" and way == "break")
]


class Pipeline(Protocol):
    chain: Any
    expected: list[Any]

    def assert_cleaned_up(self) -> None: ...

    async def after_run(self, stopped: bool) -> None: ...


class Control:
    """What the consumer of one run is doing, for the wait-point action to act on."""

    def __init__(self, way: str) -> None:
        self.way = way
        self.consumer: int | None = None
        self.receiving = False
        self.pending_raise = False
        self.interrupt = Interrupt("interrupted by the consumer")
        self.scope: anyio.CancelScope | None = None

    def act(self) -> None:
        """At the chosen wait point: cancel, expire the deadline, or arm the interrupt."""
        if self.way == "cancel":
            assert self.scope is not None
            self.scope.cancel()
        elif self.way == "timeout":
            assert self.scope is not None
            self.scope.deadline = anyio.current_time()
        elif self.way == "raise":
            self.pending_raise = True
            self.maybe_raise()

    def maybe_raise(self) -> None:
        """Raise the interrupt if the consumer's task is waiting for the run right now."""
        if self.pending_raise and self.receiving and anyio.get_current_task().id == self.consumer:
            self.pending_raise = False
            raise self.interrupt


class Outcome:
    """What the consumer saw."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.result: Any = None
        self.error: BaseException | None = None
        self.stopped = False
        self.statistics: list[Any] = []


HANG_GUARD = 10.0  # seconds; only bounds a regression (a detached run that never finishes)


class _DetachedRun:
    """Keeps hold of a bare ``async for`` run's host state (not of its stream, which the
    loop alone must reference), to wait for the host to finish once the loop is left.

    A stopped run's cleanup may wait on worker threads or sockets (ChatAnthropic closes
    its HTTP stream), which ``anyio.wait_all_tasks_blocked`` cannot see; the host's own
    "done" event is the synchronization.
    """

    def __init__(self) -> None:
        self.run: Any = None

    def hold(self, stream: RunStream[Any]) -> RunStream[Any]:
        self.run = getattr(stream, "_run", None)
        return stream

    async def finished(self) -> None:
        done = getattr(self.run, "done", None)
        if done is None:
            return
        with anyio.move_on_after(HANG_GUARD):
            await done.wait()


async def _consume(
    pipe: Pipeline,
    style: str,
    control: Control,
    points: WaitPoints,
    bus: EventBus,
    capacity: int,
    detached: _DetachedRun,
) -> Outcome:
    """Run the chain in ``style``; break or raise in the loop body once the point fired."""
    outcome = Outcome()
    config = {"bus": bus, "capacity": capacity}

    def stop_here() -> bool:
        if not points.fired:
            return False
        if control.way == "break":
            outcome.stopped = True
            return True
        if control.way == "raise" and control.pending_raise:
            control.pending_raise = False
            raise control.interrupt
        return False

    if style == "with":
        stream: RunStream[Any] = pipe.chain.astream("q", config)
        async with stream as chunks:
            control.receiving = True
            async for chunk in chunks:
                control.receiving = False
                outcome.items.append(chunk)
                if stop_here():
                    break
                control.receiving = True
            control.receiving = False
        outcome.statistics = stream.statistics()
    elif style == "bare":
        control.receiving = True
        # The stream is referenced only by the loop, as in user code, so a break drops it.
        async for chunk in detached.hold(pipe.chain.astream("q", config)):
            control.receiving = False
            outcome.items.append(chunk)
            if stop_here():
                break
            control.receiving = True
        control.receiving = False
    elif style == "events":
        async with pipe.chain.astream_events("q", config) as events:
            control.receiving = True
            async for event in events:
                control.receiving = False
                outcome.items.append(event)
                if stop_here():
                    break
                control.receiving = True
            control.receiving = False
    else:
        control.receiving = True
        outcome.result = await pipe.chain.ainvoke("q", config)
        control.receiving = False
    if control.pending_raise:
        # Armed after the consumer's last wait: the consumer raises on its way out.
        control.pending_raise = False
        raise control.interrupt
    return outcome


async def run_stopped_at(
    make_pipe: Callable[[], Pipeline],
    style: str,
    way: str,
    point: int | None,
    seed: int,
    *,
    capacity: int = 1,
    monitor_capacity: int = 64,
) -> tuple[WaitPoints, Outcome]:
    """One run of a fresh pipeline stopped at wait point ``point``, with every check.

    ``capacity`` is the run's edge capacity; ``monitor_capacity`` the buffer of the
    lossless ("block") monitor that reads the run's bus concurrently.
    """
    seed_scheduler(seed)
    pipe = make_pipe()
    control = Control(way)
    points = WaitPoints(point, control.act, after=control.maybe_raise)
    bus = EventBus()
    outcome = Outcome()
    detached = _DetachedRun()
    async with Monitor(bus, capacity=monitor_capacity) as monitor:
        control.consumer = anyio.get_current_task().id
        with points.installed():
            try:
                if way == "cancel":
                    with anyio.CancelScope() as scope:
                        control.scope = scope
                        outcome = await _consume(pipe, style, control, points, bus, capacity, detached)
                elif way == "timeout":
                    with anyio.fail_after(3600) as scope:
                        control.scope = scope
                        outcome = await _consume(pipe, style, control, points, bus, capacity, detached)
                else:
                    outcome = await _consume(pipe, style, control, points, bus, capacity, detached)
            except (Interrupt, TimeoutError) as exc:
                outcome.error = exc
        await detached.finished()
        await settle()
        pipe.assert_cleaned_up()
        assert_edges_settled(outcome.statistics)
        assert monitor.statistics().waiting_publishers == 0
    # Leaving the Monitor block checked the monitor's events with complete=True.
    assert monitor.started_steps() == monitor.ended_steps()
    assert bus.subscriber_count == 0, "astream_events left its subscription open"
    stopped = _check_outcome(pipe, style, way, points, outcome, control, monitor)
    await pipe.after_run(stopped)
    tally("runs")
    tally("runs stopped at a wait point", points.fired)
    return points, outcome


def _check_outcome(
    pipe: Pipeline,
    style: str,
    way: str,
    points: WaitPoints,
    outcome: Outcome,
    control: Control,
    monitor: Monitor,
) -> bool:
    """The caller saw what it caused, and a run that was not stopped produced everything.

    Returns:
        Whether the run was stopped before its end.
    """
    expected = pipe.expected
    if way == "raise" and points.fired:
        assert outcome.error is control.interrupt, f"expected the consumer's Interrupt, got {outcome.error!r}"
    elif way == "timeout" and outcome.error is not None:
        assert isinstance(outcome.error, TimeoutError)
    else:
        assert outcome.error is None
    stopped = (
        outcome.error is not None
        or outcome.stopped
        or (way == "cancel" and control.scope is not None and control.scope.cancelled_caught)
    )
    if style in ("with", "bare"):
        assert outcome.items == expected[: len(outcome.items)], "chunks out of order or altered"
        if not stopped:
            assert outcome.items == expected
    elif style == "events":
        check_event_order(outcome.items, complete=not stopped)
        if not stopped:
            assert outcome.items[-1]["event"] == "on_chain_end"
            assert outcome.items[-1]["data"]["output"] == "".join(expected)
    elif not stopped:
        assert outcome.result == "".join(expected)
    roots = [e for e in monitor.events if not e["parent_ids"] and e["event"].endswith(("_end", "_error"))]
    if not stopped:
        assert [e["event"] for e in roots] == ["on_chain_end"]
    elif roots and roots[0]["event"].endswith("_error"):
        # A stopped run says so: its root ends with a RunCancelled error.
        assert isinstance(roots[0]["data"]["error"], RunCancelled)
    return stopped


async def sweep(
    make_pipe: Callable[[], Pipeline],
    style: str,
    way: str,
    sample: int | None,
    *,
    seed: int = 0,
    exact: bool = True,
    **options: Any,
) -> tuple[int, int]:
    """Stop runs at ``sample`` seeded wait points (all of them for ``None``).

    Every run of one sweep uses the same scheduler seed, so that (with ``exact``, for
    pipelines without I/O) a run stopped at point k is the unstopped run up to k and every
    chosen point is reached. ``options`` go to ``run_stopped_at``.

    Returns:
        The number of wait points of an unstopped run and the number of runs stopped.
    """
    unstopped, _ = await run_stopped_at(make_pipe, style, way, None, seed, **options)
    total = unstopped.count
    engine_points = unstopped.engine_points()
    if sample is None:
        chosen: Sequence[int] = range(1, total + 1)
    else:
        chosen = sample_points(total, sample, seed=total, engine_points=engine_points)
    tally("wait points of unstopped runs", total)
    tally("engine wait points of unstopped runs", len(engine_points))
    tally("wait points chosen to stop at", len(chosen))
    tally("engine wait points chosen to stop at", len(set(chosen) & set(engine_points)))
    stopped = 0
    for point in chosen:
        points, _ = await run_stopped_at(make_pipe, style, way, point, seed, **options)
        stopped += points.fired
    if exact:
        # Past the last point the run completes (checked inside) without the action firing.
        past, _ = await run_stopped_at(make_pipe, style, way, total + 1, seed, **options)
        assert not past.fired
    return total, stopped
