"""Timeouts that do not depend on the provider: ``runnable.with_timeout(...)``.

A :class:`RunnableTimeout` is a hosting step (see ``_hosting``): it runs the runnable it
wraps as a nested run, inside one cancel scope in its own actor task. As with
``with_retry``, the nested run's own tasks send its output downstream through an
attempt gate (``AttemptOutbox``: chunks without content held until the commit point),
so the wrapper costs no hop per chunk. Three limits, any subset:

* ``first_chunk``: from the start of the step's work to its first chunk that carries
  content (``Runnable.carries_content``: a chat model's keep-alive or id-only chunk
  does not count). Until then it takes the place of ``idle``.
* ``idle``: the longest the step may go without producing a chunk (any chunk). Time
  spent handing a chunk downstream (a slow consumer) is not counted: it is not the
  step that is silent.
* ``total``: the whole of the step's work, handing chunks downstream included.

Nothing is done per chunk. A *watchdog* task beside the actor looks at the step's
progress (how many chunks it offered and delivered, which the gate and the output edge
count anyway, and whether a send is waiting for downstream) every ``idle / 8`` seconds
(``RunnableTimeout.looks_per_idle``) and at each limit's due time, and cancels the attempt's scope when a limit ran out.
``first_chunk`` and ``total`` trip on time; ``idle`` trips once a look finds no progress
since a look ``idle`` seconds before, so between ``idle`` and ``idle * 9 / 8`` seconds
after the last chunk, never before. Reading a clock per chunk instead, to trip exactly
at ``idle``, would make the chunks go through the wrapper's actor (the gate's fast path
is an edge's own loop): about +45% instructions per token on ``prompt | model |
parser``. The scope sits around the nested run in the actor's own task and nothing
yields inside it, so cancelling it cancels the nested run, whose own actors close the
model's stream in their tasks, however the provider behaves; the timeout is then raised
as :class:`StepTimeout`.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.lowlevel
import attrs

from ._edge import Accumulation
from ._errors import CompositionError
from ._hosting import Attempt, AttemptOutbox, Emitter, HostingNode, run_gated
from ._runnable import Runnable
from ._signal import keyboard_interrupt_safe, running_trio
from ._step import Step

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("RunnableTimeout", "StepTimeout", "TimeoutPhase")


class TimeoutPhase(enum.Enum):
    """Which limit of :meth:`~engine.Runnable.with_timeout` ran out."""

    #: No chunk with content within ``first_chunk`` seconds of the start.
    FIRST_CHUNK = "first_chunk"
    #: No chunk at all for ``idle`` seconds.
    IDLE = "idle"
    #: The step's work took longer than ``total`` seconds.
    TOTAL = "total"


class StepTimeout(TimeoutError):
    """A limit set with :meth:`~engine.Runnable.with_timeout` ran out.

    The step's nested run was cancelled (a model's HTTP stream is closed) before this
    was raised. Before the commit point (``delivered == 0``) nobody downstream saw
    anything, so ``with_retry`` may retry it; after it, the chunks already delivered stay
    delivered and nothing retries.

    Attributes:
        phase: Which limit ran out (:class:`TimeoutPhase`).
        limit: That limit, in seconds.
        step: The name of the runnable that timed out (the one ``with_timeout`` wraps).
        delivered: How many chunks the step had sent downstream.
    """

    def __init__(self, phase: TimeoutPhase, limit: float, step: str, delivered: int) -> None:
        super().__init__(_describe(phase, limit, step, delivered))
        self.phase = phase
        self.limit = limit
        self.step = step
        self.delivered = delivered

    def __reduce__(self) -> tuple[type[StepTimeout], tuple[TimeoutPhase, float, str, int]]:
        # Rebuilt from its fields (OSError's own reduce would pass only the message).
        return (type(self), (self.phase, self.limit, self.step, self.delivered))


def _describe(phase: TimeoutPhase, limit: float, step: str, delivered: int) -> str:
    what = {
        TimeoutPhase.FIRST_CHUNK: f"sent no content within {limit:g} s (its first_chunk limit)",
        TimeoutPhase.IDLE: f"sent nothing for {limit:g} s (its idle limit)",
        TimeoutPhase.TOTAL: f"did not finish within {limit:g} s (its total limit)",
    }[phase]
    if delivered:
        plural = "s" if delivered != 1 else ""
        after = f"after delivering {delivered} chunk{plural} (past its commit point: not retried)"
    else:
        after = "before delivering anything"
    return f"{step} {what}, {after}"


def _seconds(name: str, value: object) -> float | None:
    """``value`` as a limit in seconds, or ``None``; a clear error for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"with_timeout({name}=...) takes seconds as a number, got {value!r}")
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(
            f"with_timeout({name}={value!r}): a limit must be a positive, finite number of "
            "seconds (leave it out, or pass None, for no limit)"
        )
    return seconds


@attrs.frozen(eq=False, repr=False)
class RunnableTimeout(HostingNode[In, Out]):
    """A runnable whose work is bounded in time (what ``with_timeout`` returns).

    Its step hosts the wrapped runnable as a nested run (whose events are its
    children) and ends with an error event carrying the :class:`StepTimeout` when a
    limit runs out. See :meth:`~engine.Runnable.with_timeout` for the limits.

    Raises:
        CompositionError: If ``inner`` is not a runnable.
        TypeError: If a limit is not a number.
        ValueError: If a limit is not positive and finite, or none is given.
    """

    #: How many looks at the step's progress its watchdog takes per ``idle`` period: a
    #: stall is caught at most ``idle / looks_per_idle`` seconds after ``idle`` ran out.
    looks_per_idle: ClassVar[int] = 8

    inner: Runnable[In, Out]
    first_chunk: float | None = attrs.field(default=None, kw_only=True)
    idle: float | None = attrs.field(default=None, kw_only=True)
    total: float | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.inner, Runnable):
            raise CompositionError(f"with_timeout wraps a runnable, got {type(self.inner).__name__}")
        limits = {name: _seconds(name, getattr(self, name)) for name in ("first_chunk", "idle", "total")}
        if all(limit is None for limit in limits.values()):
            raise ValueError(
                "with_timeout() needs at least one limit: first_chunk=, idle= or total= (seconds)"
            )
        for name, limit in limits.items():
            object.__setattr__(self, name, limit)

    def get_name(self) -> str:
        return "RunnableTimeout"

    @property
    def output_accumulation(self) -> Accumulation:
        return self.inner.output_accumulation

    def carries_content(self, chunk: Any) -> bool:
        return self.inner.carries_content(chunk)

    async def host(self, value: In, emitter: Emitter, step: Step) -> None:
        attempt = Attempt(self.inner.carries_content)
        gate = AttemptOutbox(attempt, emitter, None)
        scope = anyio.CancelScope()
        watch = _Watch(self, scope, attempt, emitter)
        failure: BaseException | None = None
        async with anyio.create_task_group() as watchers:
            watchers.start_soon(_watchdog, watch, name=f"rillet timeout watchdog {step.name}")
            try:
                with scope:
                    await run_gated(self.inner, value, gate)
            except BaseException as exc:  # raised below as itself: the task group would wrap it
                failure = exc
            finally:
                await watch.stop()
        if failure is not None:
            raise failure
        if scope.cancelled_caught:
            assert watch.tripped is not None
            # A scope around this step cancelled in the meantime wins: the step was
            # cancelled (by its run, or by a reader gone), it did not time out.
            await anyio.lowlevel.checkpoint_if_cancelled()
            limit = getattr(self, watch.tripped.value)
            raise StepTimeout(watch.tripped, limit, self.inner.get_name(), emitter.delivered)

    def __repr__(self) -> str:
        limits = ", ".join(
            f"{name}={getattr(self, name):g}"
            for name in ("first_chunk", "idle", "total")
            if getattr(self, name) is not None
        )
        return f"{self.inner!r}.with_timeout({limits})"


def _backend_clock() -> Callable[[], float]:
    """The running loop's clock as a bound method (``anyio.current_time`` looks the
    backend up on every call); trio's is its ``MockClock`` in tests."""
    if running_trio():
        import trio

        return trio.lowlevel.current_clock().current_time
    import asyncio

    return asyncio.get_running_loop().time


class _Watch:
    """What the actor and its watchdog share for one run of a :class:`RunnableTimeout`."""

    __slots__ = (
        "attempt",
        "clock",
        "done",
        "emitter",
        "first_chunk",
        "idle",
        "progress",
        "quiet_since",
        "scope",
        "started",
        "stopping",
        "total",
        "tripped",
        "wake",
    )

    def __init__(
        self, node: RunnableTimeout[Any, Any], scope: anyio.CancelScope, attempt: Attempt, emitter: Emitter
    ) -> None:
        self.first_chunk = node.first_chunk
        self.idle = node.idle
        self.total = node.total
        self.scope = scope
        self.attempt = attempt
        self.emitter = emitter
        self.clock = _backend_clock()
        self.started = self.clock()
        #: The progress the last look saw, and when a look last saw it move.
        self.progress = 0
        self.quiet_since = self.started
        self.tripped: TimeoutPhase | None = None
        self.stopping = False
        #: Set to make the watchdog return at once.
        self.wake = anyio.Event()
        self.done = anyio.Event()

    def look(self) -> tuple[TimeoutPhase | None, float]:
        """Look at the step's progress now: the limit that ran out (or ``None``), and
        when to look again.

        Progress is every chunk offered to the gate before the commit point and every
        chunk delivered after it; a send waiting for downstream counts as progress (the
        step is not silent, its consumer is slow). On a tie, the more specific limit is
        named.
        """
        now = self.clock()
        progress = self.attempt.offered + self.emitter.delivered
        if progress != self.progress or self.emitter.waiting:
            self.progress = progress
            self.quiet_since = now
        due = math.inf
        if not self.attempt.committed and self.first_chunk is not None:
            due = self.started + self.first_chunk
            if now >= due:
                return TimeoutPhase.FIRST_CHUNK, now
        elif self.idle is not None:
            due = self.quiet_since + self.idle
            if now >= due:
                return TimeoutPhase.IDLE, now
        if self.total is not None:
            end = self.started + self.total
            if now >= end:
                return TimeoutPhase.TOTAL, now
            due = min(due, end)
        if self.idle is not None:
            # Keep looking while first_chunk applies too: its end is when idle takes over.
            due = min(due, now + self.idle / RunnableTimeout.looks_per_idle)
        return None, due

    async def stop(self) -> None:
        """Stop the watchdog and wait until it has returned (so that the task group
        around it exits without waiting, and never cancels itself)."""
        self.stopping = True
        self.wake.set()
        with anyio.CancelScope(shield=True):
            await self.done.wait()


@keyboard_interrupt_safe
async def _watchdog(watch: _Watch) -> None:
    """Cancel ``watch.scope`` when a limit runs out; return when the actor stops it.

    Shielded: only the actor ends it (``_Watch.stop``), right after the attempt, so a
    cancelled run does not leave the actor's task group waiting on it half-way.
    """
    try:
        with anyio.CancelScope(shield=True):
            while not watch.stopping:
                tripped, due = watch.look()
                if tripped is not None:
                    watch.tripped = tripped
                    watch.scope.cancel()
                    return
                if due == math.inf:
                    return  # nothing left to watch (first_chunk alone, satisfied)
                with anyio.move_on_at(due):
                    await watch.wake.wait()
    finally:
        watch.done.set()
