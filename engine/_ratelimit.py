"""A rate limiter shared across runs, and the step that holds a runnable to it.

A :class:`RateLimiter` keeps up to three limits for every run that uses it: request
starts per minute, calls in flight at once, and tokens (input + output) per minute.
``runnable.with_rate_limit(limiter)`` wraps a runnable in a :class:`RunnableRateLimited`
step (a :class:`~engine._hosting.HostingNode`): each run of it waits for its turn, runs
the runnable as a nested run, and gives its turn back when that run ends, however it
ends (success, error, cancellation); the bookkeeping is synchronous, so it cannot block
and no cancellation can interrupt it.

**Windows.** Requests and tokens are counted over a sliding minute: a call may start
when fewer than ``requests_per_minute`` calls started in the last 60 seconds. This never
exceeds a provider's token bucket of the same rate (a bucket refills what a sliding
window forgets, at least as fast), and it is the plain reading of "n per minute".

**Tokens.** A model's usage is known only when its call ends (``usage_metadata`` on its
chunks, summed over the call). A call reserves ``token_estimate`` tokens (0 by default)
when it starts and is charged what it actually reported when it ends, at that time (the
reservation is dropped), so the budget converges on the real figures. A call may start
when the tokens charged in the last minute, the reservations of the calls in flight and
its own estimate fit in ``tokens_per_minute`` (with an estimate of 0: while some budget
is left). With no estimate a burst of calls can overshoot the budget once; the calls
after it then wait until the overshoot has left the window.

**Order.** Waiting calls are served first come, first served: a call never starts
before one that began waiting earlier, so a large token estimate is not starved by
small ones. Only the first call in line watches the clock; the others wait their turn.

**Server pauses.** A 429 or 529 whose response carries ``retry-after`` (or
``retry-after-ms``), such as the anthropic SDK's ``RateLimitError`` and
``OverloadedError``, pauses every run sharing the limiter for that long (at most
``max_pause``): one overloaded key slows everyone instead of each run hammering it. The
error still propagates from the step; a retry around it re-enters the limiter and so
waits out the pause too.

**Time and loops.** Time is anyio's clock (``anyio.current_time()``), so trio's
``MockClock`` makes waits instant in tests. A limiter belongs to one event loop: every
run on that loop may share it; it is not thread-safe. Used from another loop while calls
of the first are in flight or waiting, it raises ``RuntimeError``; once idle it may move
to another loop, forgetting its windows (two loops' clocks cannot be compared).
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import anyio
import attrs

from ._hosting import Emitter, HostingNode
from ._runnable import Runnable
from ._signal import Signal, running_trio
from ._step import Step
from ._wrapper import BoundWrapper

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = (
    "WAIT_EVENT",
    "RateLimiter",
    "RateLimiterStatistics",
    "RunnableRateLimited",
    "WaitReason",
    "retry_after",
)

#: The length of the request and token windows, in seconds.
PERIOD = 60.0
#: The HTTP statuses whose ``retry-after`` pauses the limiter: rate limited, overloaded.
PAUSE_STATUSES = frozenset({429, 529})
#: The name of the custom event a waiting call publishes.
WAIT_EVENT = "rate_limit_wait"
# Float slack when comparing clock times: a wait computed as ``t + PERIOD - now`` may
# wake a hair before ``t + PERIOD``; without slack it would compute a wait of ~1e-14 s
# that the clock cannot represent, and spin.
_SLACK = 1e-6

WaitReason = Literal["requests", "concurrency", "tokens", "paused"]


@attrs.frozen
class RateLimiterStatistics:
    """A snapshot of a :class:`RateLimiter`.

    Attributes:
        in_flight: Calls holding a turn now.
        peak_in_flight: The most calls ever in flight at once.
        waiting: Calls waiting for their turn.
        requests_in_window: Calls started in the last minute.
        tokens_in_window: Tokens charged in the last minute (reported usage).
        tokens_reserved: Tokens reserved by calls in flight (their estimates).
        paused_for: Seconds left of a pause a server asked for (0 when none).
    """

    in_flight: int
    peak_in_flight: int
    waiting: int
    requests_in_window: int
    tokens_in_window: int
    tokens_reserved: int
    paused_for: float


@attrs.frozen
class _Hold:
    """What keeps the first call in line from starting, and for how long."""

    reason: WaitReason
    #: Seconds until this limit may let the call go; ``None``: until a call in flight ends.
    wait: float | None


@attrs.define(eq=False)
class _Waiter:
    estimate: int
    wake: Signal | None = None


OnWait = Callable[[_Hold, int], Awaitable[None]]


class RateLimiter:
    """Limits on the calls of every run that uses it: rate, concurrency, token budget.

    Attach it with ``runnable.with_rate_limit(limiter)``; every runnable holding the same
    limiter shares its limits. Waiting is backpressure (the run is suspended, not failed),
    first come first served, and cancellable (a cancelled wait takes nothing). A call
    that has to wait publishes an ``on_custom_event`` named ``"rate_limit_wait"`` (see
    :class:`RunnableRateLimited`).

    * Requests and tokens are counted over a sliding minute: a call starts only when
      fewer than ``requests_per_minute`` calls started in the last 60 seconds.
    * Tokens: a call reserves ``token_estimate`` when it starts; when it ends (however it
      ends) the reservation is dropped and the input + output tokens its chunks reported
      (``usage_metadata``, summed) are charged, so the budget converges on real usage.
      A call starts when the last minute's charges, the reservations in flight and its
      estimate fit in ``tokens_per_minute`` (estimate 0: while some budget is left; a
      burst may then overshoot once, and later calls wait for it to leave the window).
    * A 429 or 529 whose response carries ``retry-after`` (or ``retry-after-ms``; the
      anthropic SDK's ``RateLimitError``/``OverloadedError``) pauses every call sharing
      the limiter for that long, at most ``max_pause``; calls in flight go on.
    * Time is ``anyio.current_time()`` (trio's ``MockClock`` makes waits instant).
      A limiter belongs to one event loop and is not thread-safe: used from another loop
      while calls of the first are in flight or waiting, it raises ``RuntimeError``;
      once idle it moves to the new loop, forgetting its windows.

    Args:
        requests_per_minute: Most calls that may start in any 60 seconds.
        max_concurrent: Most calls in flight at once.
        tokens_per_minute: Most tokens (input + output, as the model reports them) that
            calls may use in any 60 seconds.
        token_estimate: Tokens a call reserves when it starts, until its real usage is
            known (needs ``tokens_per_minute``; at most that). 0 reserves nothing.
        max_pause: Longest pause a server's ``retry-after`` may impose, in seconds.
        name: The name wait events carry.

    Raises:
        ValueError: If no limit is given, or a value is out of range.
        TypeError: If a value has the wrong type.
    """

    __slots__ = (
        "_in_flight",
        "_loop",
        "_paused_until",
        "_peak",
        "_queue",
        "_reserved",
        "_spent",
        "_spent_total",
        "_starts",
        "max_concurrent",
        "max_pause",
        "name",
        "requests_per_minute",
        "token_estimate",
        "tokens_per_minute",
    )

    def __init__(
        self,
        *,
        requests_per_minute: int | None = None,
        max_concurrent: int | None = None,
        tokens_per_minute: int | None = None,
        token_estimate: int = 0,
        max_pause: float = 300.0,
        name: str = "RateLimiter",
    ) -> None:
        if requests_per_minute is None and max_concurrent is None and tokens_per_minute is None:
            raise ValueError(
                "RateLimiter needs at least one limit: requests_per_minute, max_concurrent "
                "or tokens_per_minute"
            )
        self.requests_per_minute = _positive_int_or_none("requests_per_minute", requests_per_minute)
        self.max_concurrent = _positive_int_or_none("max_concurrent", max_concurrent)
        self.tokens_per_minute = _positive_int_or_none("tokens_per_minute", tokens_per_minute)
        self.token_estimate = _token_estimate(token_estimate, self.tokens_per_minute)
        self.max_pause = _max_pause(max_pause)
        if not isinstance(name, str):
            raise TypeError(f"RateLimiter name must be a string, got {name!r}")
        self.name = name
        self._loop: object | None = None
        self._forget()

    def _forget(self) -> None:
        """Start with empty windows, no pause and nobody in flight or waiting."""
        self._starts: deque[float] = deque()
        self._spent: deque[tuple[float, int]] = deque()
        self._spent_total = 0
        self._reserved = 0
        self._in_flight = 0
        self._peak = 0
        self._paused_until = -math.inf
        self._queue: deque[_Waiter] = deque()

    # -- what users see ------------------------------------------------------------------

    def statistics(self) -> RateLimiterStatistics:
        """A snapshot of the limiter (call it from a task on the limiter's event loop)."""
        now = _now()
        self._expire(now)
        return RateLimiterStatistics(
            in_flight=self._in_flight,
            peak_in_flight=self._peak,
            waiting=len(self._queue),
            requests_in_window=len(self._starts),
            tokens_in_window=self._spent_total,
            tokens_reserved=self._reserved,
            paused_for=max(0.0, self._paused_until - now),
        )

    def __repr__(self) -> str:
        limits = [
            f"{key}={value}"
            for key, value in (
                ("requests_per_minute", self.requests_per_minute),
                ("max_concurrent", self.max_concurrent),
                ("tokens_per_minute", self.tokens_per_minute),
            )
            if value is not None
        ]
        return f"RateLimiter({', '.join(limits)}, name={self.name!r})"

    def __reduce__(self) -> Any:
        raise TypeError(
            f"cannot pickle {self!r}: its limits are shared by the runs of one event loop in "
            "this process, and a copy elsewhere would limit nobody with it"
        )

    def __copy__(self) -> RateLimiter:
        # Copies of what holds a limiter share it: a copy with its own windows would
        # defeat the limit.
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> RateLimiter:
        return self

    # -- taking and giving back a turn ---------------------------------------------------

    async def _acquire(self, on_wait: OnWait) -> _Lease:
        """Wait for a turn (first come, first served) and take it.

        ``on_wait(hold, ahead)`` is awaited when the call starts waiting and again when
        the limit holding it changes (``ahead``: calls in line before it).
        """
        self._bind_loop()
        queue = self._queue
        waiter = _Waiter(self.token_estimate)
        ahead = len(queue)
        queue.append(waiter)
        reported: WaitReason | None = None
        try:
            while True:
                now = anyio.current_time()
                first = queue[0] is waiter
                hold = self._hold(now, queue[0].estimate)
                if first and hold is None:
                    queue.popleft()
                    lease = self._take(now, waiter.estimate)
                    self._wake_first()
                    return lease
                if hold is not None and hold.reason != reported:
                    reported = hold.reason
                    await on_wait(hold, 0 if first else ahead)
                    continue  # the limiter may have changed while the event went out
                # Only the first in line watches the clock; the others wait their turn.
                timeout = math.inf
                if first and hold is not None and hold.wait is not None:
                    timeout = hold.wait
                waiter.wake = wake = Signal()
                with anyio.move_on_after(timeout):
                    await wake.wait()
        except BaseException:
            was_first = queue[0] is waiter
            queue.remove(waiter)
            if was_first:
                self._wake_first()
            raise

    def _take(self, now: float, estimate: int) -> _Lease:
        if self.requests_per_minute is not None:
            self._starts.append(now)
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        self._reserved += estimate
        return _Lease(self, estimate)

    def _give_back(self, lease: _Lease, tokens: int, error: BaseException | None) -> None:
        """Synchronous: end a call's turn, charge its usage, note a server's pause."""
        now = anyio.current_time()
        self._in_flight -= 1
        self._reserved -= lease.reserved
        if tokens > 0 and self.tokens_per_minute is not None:
            self._spent.append((now, tokens))
            self._spent_total += tokens
        if error is not None:
            delay = retry_after(error)
            if delay is not None:
                self._paused_until = max(self._paused_until, now + min(delay, self.max_pause))
        self._wake_first()

    def _wake_first(self) -> None:
        if self._queue:
            wake = self._queue[0].wake
            if wake is not None:
                wake.set()

    # -- the limits ----------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        horizon = now - PERIOD + _SLACK
        starts = self._starts
        while starts and starts[0] <= horizon:
            starts.popleft()
        spent = self._spent
        while spent and spent[0][0] <= horizon:
            self._spent_total -= spent.popleft()[1]

    def _hold(self, now: float, estimate: int) -> _Hold | None:
        """What keeps a call with ``estimate`` from starting now (``None``: nothing).

        Of the limits that hold it for a known time, the longest is reported (all must
        clear); a limit that waits for a call in flight to end comes after those.
        """
        self._expire(now)
        timed: list[_Hold] = []
        untimed: _Hold | None = None
        if now < self._paused_until - _SLACK:
            timed.append(_Hold("paused", self._paused_until - now))
        rpm = self.requests_per_minute
        if rpm is not None and len(self._starts) >= rpm:
            timed.append(_Hold("requests", self._starts[len(self._starts) - rpm] + PERIOD - now))
        tokens = self._token_hold(now, estimate)
        if tokens is not None:
            if tokens.wait is None:
                untimed = tokens
            else:
                timed.append(tokens)
        if timed:
            return max(timed, key=lambda hold: hold.wait or 0.0)
        if self.max_concurrent is not None and self._in_flight >= self.max_concurrent:
            return _Hold("concurrency", None)
        return untimed

    def _token_hold(self, now: float, estimate: int) -> _Hold | None:
        budget = self.tokens_per_minute
        if budget is None:
            return None
        excess = self._spent_total + self._reserved + max(estimate, 1) - budget
        if excess <= 0:
            return None
        freed = 0
        for at, tokens in self._spent:
            freed += tokens
            if freed >= excess:
                return _Hold("tokens", max(0.0, at + PERIOD - now))
        # Even with the window empty the reservations of calls in flight leave no room.
        return _Hold("tokens", None)

    def _bind_loop(self) -> None:
        loop = _current_loop()
        if loop is self._loop:
            return
        if self._loop is not None and (self._in_flight or self._queue):
            raise RuntimeError(
                f"{self!r} is in use by another event loop: a rate limiter is shared by the "
                "runs of one event loop (it is not thread-safe); make one limiter per loop"
            )
        # Idle: move to this loop. The old loop's clock times mean nothing here.
        self._loop = loop
        self._forget()


@attrs.define(eq=False)
class _Lease:
    """One call's turn; :meth:`end` gives it back exactly once."""

    limiter: RateLimiter
    reserved: int
    ended: bool = False

    def end(self, tokens: int, error: BaseException | None) -> None:
        if not self.ended:
            self.ended = True
            self.limiter._give_back(self, tokens, error)


def _now() -> float:
    try:
        return anyio.current_time()
    except Exception as exc:  # sniffio's AsyncLibraryNotFoundError, or no running loop
        raise RuntimeError("RateLimiter.statistics() must be called from a task on its event loop") from exc


def _current_loop() -> object:
    if running_trio():
        import trio

        return trio.lowlevel.current_trio_token()
    return asyncio.get_running_loop()


# -- validation -----------------------------------------------------------------------------


def _positive_int_or_none(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"RateLimiter {name} must be a positive int or None, got {value!r}")
    if value < 1:
        raise ValueError(f"RateLimiter {name} must be >= 1, got {value}")
    return value


def _token_estimate(value: object, budget: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"RateLimiter token_estimate must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"RateLimiter token_estimate must be >= 0, got {value}")
    if value and budget is None:
        raise ValueError("RateLimiter token_estimate needs tokens_per_minute (it reserves from that budget)")
    if budget is not None and value > budget:
        raise ValueError(
            f"RateLimiter token_estimate ({value}) is more than tokens_per_minute ({budget}): "
            "no call could ever start"
        )
    return value


def _max_pause(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"RateLimiter max_pause must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"RateLimiter max_pause must be a finite number of seconds > 0, got {value}")
    return float(value)


# -- a server's retry-after ------------------------------------------------------------------


def retry_after(error: BaseException) -> float | None:
    """Seconds a 429/529 ``error`` asks to wait (its response's ``retry-after``), if any.

    Reads ``error.status_code`` and ``error.response.headers`` (as the anthropic SDK's
    ``APIStatusError`` carries them): ``retry-after-ms``, else ``retry-after`` in seconds
    or as an HTTP date. For an exception group, the longest of its members'. ``None``
    for any other error or a header that does not parse.
    """
    if isinstance(error, BaseExceptionGroup):
        delays = [d for member in error.exceptions if (d := retry_after(member)) is not None]
        return max(delays, default=None)
    if getattr(error, "status_code", None) not in PAUSE_STATUSES:
        return None
    headers = getattr(getattr(error, "response", None), "headers", None)
    get = getattr(headers, "get", None)
    if get is None:
        return None
    delay = _seconds(get("retry-after-ms"), scale=1000.0)
    if delay is None:
        delay = _seconds(get("retry-after"), scale=1.0)
    if delay is None:
        delay = _date_delay(get("retry-after"))
    return None if delay is None else max(0.0, delay)


def _seconds(header: object, *, scale: float) -> float | None:
    if not isinstance(header, str):
        return None
    try:
        value = float(header) / scale
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _date_delay(header: object) -> float | None:
    if not isinstance(header, str):
        return None
    parsed = email.utils.parsedate_tz(header)
    if parsed is None:
        return None
    # An HTTP date is wall-clock time; the difference is a duration on any clock.
    return float(email.utils.mktime_tz(parsed) - time.time())


# -- the step ------------------------------------------------------------------------------


def _usage_tokens(chunk: Any) -> int:
    """Input + output tokens a chunk reports (``usage_metadata``, attrs or dict), else 0."""
    usage = getattr(chunk, "usage_metadata", None)
    if usage is None:
        return 0
    get = getattr(usage, "get", None)
    if get is None:
        return 0
    total = 0
    for key in ("input_tokens", "output_tokens"):
        value = get(key, 0)
        if isinstance(value, int) and not isinstance(value, bool):
            total += value
    return total


@attrs.frozen(eq=False, repr=False)
class RunnableRateLimited(BoundWrapper[In, Out], HostingNode[In, Out]):
    """A runnable whose every run waits its turn on a :class:`RateLimiter` (what
    ``with_rate_limit`` returns).

    The run aggregates its input, waits for a turn, runs ``bound`` as a nested run (its
    events nest under this step), streams its output as it comes, and gives the turn
    back when the nested run ends, charging the tokens its chunks reported
    (``usage_metadata``: wrap the model itself, ``prompt | model.with_rate_limit(l)``,
    so its chunks are the ones seen). A call that has to wait publishes a custom event
    ``"rate_limit_wait"`` from this step, with ``reason`` (``"requests"``,
    ``"concurrency"``, ``"tokens"`` or ``"paused"``), ``wait`` (seconds until that limit
    may let the first call in line go; ``None`` when it waits for a call in flight to
    end), ``ahead`` (calls in line before it; for those the wait is a lower bound) and
    ``limiter`` (its name); again if the limit holding it changes.

    Errors of the nested run propagate unchanged; a 429/529 with ``retry-after`` also
    pauses the limiter for everyone.
    """

    bound: Runnable[In, Out]
    limiter: RateLimiter

    @classmethod
    def wrap(cls, runnable: Runnable[In, Out], limiter: RateLimiter) -> RunnableRateLimited[In, Out]:
        """``runnable`` held to ``limiter``.

        Raises:
            TypeError: If ``limiter`` is not a :class:`RateLimiter`.
        """
        if not isinstance(limiter, RateLimiter):
            raise TypeError(
                f"{runnable.get_name()}.with_rate_limit() needs an engine.RateLimiter, got {limiter!r}"
            )
        return cls(runnable, limiter)

    async def host(self, value: In, emitter: Emitter, step: Step) -> None:
        limiter = self.limiter

        async def on_wait(hold: _Hold, ahead: int) -> None:
            data = {"reason": hold.reason, "wait": hold.wait, "ahead": ahead, "limiter": limiter.name}
            await step.emit_custom(WAIT_EVENT, data)

        lease = await limiter._acquire(on_wait)
        tokens = 0
        try:
            async with self.bound.astream(value) as chunks:
                if limiter.tokens_per_minute is None:
                    async for chunk in chunks:
                        await emitter.send(chunk)
                else:
                    async for chunk in chunks:
                        tokens += _usage_tokens(chunk)
                        await emitter.send(chunk)
        except BaseException as exc:
            # Synchronous bookkeeping: nothing here can block or be cancelled.
            lease.end(tokens, exc)
            raise
        lease.end(tokens, None)

    def __repr__(self) -> str:
        return f"{self.bound!r}.with_rate_limit({self.limiter!r})"
