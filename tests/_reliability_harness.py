"""Shared machinery of the reliability tests: counted wait points, lifecycle-counting nodes,
a concurrent event monitor and the after-run checks.

Nothing here sleeps or measures time. The scheduler of trio is made deterministic per run
(``seed_scheduler``) so that a failing wait point can be replayed; asyncio's is FIFO already.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import random
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from engine import EdgeStatistics, EventBus, RunnableGenerator, Subscription
from engine.testing import assert_run_cleaned_up, check_event_order, observe_wait_points, rillet_tasks
from nodes import AIMessageChunk, BaseChatModel, BaseMessage

__all__ = [
    "RECORDS",
    "TALLY",
    "tally",
    "Interrupt",
    "settle",
    "Lifecycle",
    "LifecycleModel",
    "Monitor",
    "StepFault",
    "WaitPoints",
    "assert_edges_settled",
    "lifecycle_generator",
    "sample_points",
    "seed_scheduler",
]


#: What the reliability tests of this process did (runs, stops, faults, events checked...).
#: With ``RELIABILITY_TALLY=path`` in the environment it is written there as JSON at exit;
#: tests/RELIABILITY.md's figures come from it.
TALLY: collections.Counter[str] = collections.Counter()


#: Figures that are not counts (such as the load rounds' memory), written with TALLY.
RECORDS: dict[str, Any] = {}


def tally(key: str, count: int = 1) -> None:
    """Add ``count`` to the figure ``key``."""
    TALLY[key] += count


def _write_tally(path: str) -> None:
    with open(path, "w") as out:
        json.dump({"counts": dict(sorted(TALLY.items())), "records": RECORDS}, out, indent=1)


if os.environ.get("RELIABILITY_TALLY"):
    atexit.register(_write_tally, os.environ["RELIABILITY_TALLY"])


class Interrupt(BaseException):
    """A KeyboardInterrupt-like BaseException raised by a consumer (not an Exception)."""


class StepFault(Exception):
    """The error a faulty step raises on purpose."""


class Lifecycle:
    """How many times a piece of user code started, finished, and was cancelled or failed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = 0
        self.finished = 0
        self.cancelled = 0
        self.failed = 0
        self.finished_in: list[str] = []

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Count one run of the code inside the block."""
        self.started += 1
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                self.cancelled += 1
            else:
                self.failed += 1
            raise
        finally:
            self.finished += 1
            self.finished_in.append(anyio.get_current_task().name or "")

    @property
    def open(self) -> int:
        """Runs that started and did not finish (cleanup that never ran)."""
        return self.started - self.finished

    def assert_cleaned_up_in_run(self) -> None:
        """Every run of the code finished, inside a task of the rillet run (not later, in
        a garbage-collection finalizer)."""
        assert self.open == 0, f"{self} did not finish"
        outside = [name for name in self.finished_in if not name.startswith("rillet ")]
        assert not outside, f"{self.name}'s cleanup ran outside the run, in {outside}"

    def __repr__(self) -> str:
        return f"<Lifecycle {self.name} {self.started}/{self.finished}>"


class LifecycleModel(BaseChatModel):
    """A chat model streaming fixed tokens, counting its runs; it may fail at one token.

    ``fail_at`` is the index of the token at which it raises ``StepFault`` instead of
    yielding (``len(tokens)`` fails after the last token). Like ``ScriptedChatModel``, it
    implements only ``stream_chunks``: closing that stream is ``BaseChatModel``'s job.
    """

    def __init__(
        self, tokens: Sequence[str], *, fail_at: int | None = None, name: str = "LifecycleModel"
    ) -> None:
        self.tokens = list(tokens)
        self.fail_at = fail_at
        self._name = name
        self.life = Lifecycle(name)
        self.received: list[list[BaseMessage]] = []

    def get_name(self) -> str:
        return self._name

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncIterator[AIMessageChunk]:
        with self.life.running():
            self.received.append(messages)
            for index, token in enumerate(self.tokens):
                if index == self.fail_at:
                    raise StepFault(f"{self._name} failed at token {index}")
                await anyio.lowlevel.checkpoint()
                yield AIMessageChunk(content=token)
            if self.fail_at == len(self.tokens):
                raise StepFault(f"{self._name} failed after its last token")


def lifecycle_generator(
    name: str,
    transform: Callable[[Any], Any],
    *,
    fail_at: int | None = None,
    cleanup_error: BaseException | None = None,
) -> tuple[RunnableGenerator[Any, Any], Lifecycle]:
    """An async generator step mapping each chunk with ``transform``, and its lifecycle.

    It checkpoints once per chunk (as user code that awaits would), raises ``StepFault``
    at input chunk ``fail_at`` (``-1``: after the input ended) and, if ``cleanup_error``
    is given, raises it from its ``finally`` block.
    """
    life = Lifecycle(name)

    async def step(chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            with life.running():
                index = 0
                async for chunk in chunks:
                    if index == fail_at:
                        raise StepFault(f"{name} failed at chunk {index}")
                    await anyio.lowlevel.checkpoint()
                    yield transform(chunk)
                    index += 1
                if fail_at == -1:
                    raise StepFault(f"{name} failed after its input ended")
        finally:
            if cleanup_error is not None:
                raise cleanup_error

    step.__name__ = name
    return RunnableGenerator(step), life


class WaitPoints:
    """Counts the wait points every task passes while installed, and acts at the k-th.

    ``after`` runs at every later point (in whichever task reaches it).

    A wait point is a call of ``anyio.lowlevel.checkpoint``, ``anyio.Event.wait`` (the
    running backend's class) or ``anyio.to_thread.run_sync``, or one of the engine's own
    waits, seen through ``engine.testing.observe_wait_points``: its checkpoints (an edge
    giving way every few dozen items, or handing over a stream's first item) and its
    blocking waits (a full or empty edge). Together: every place where rillet's actors,
    hosts, edges and subscriptions (and the test's own tasks) can be suspended, cancelled
    or interrupted. The action runs synchronously in the task that reached the point,
    before the wait itself, so a cancellation it requests is delivered right there.
    ``kinds[k - 1]`` says what point k was (``"anyio checkpoint"``, ``"anyio event"``,
    ``"thread"``, ``"engine checkpoint"``, ``"engine wait"``).
    """

    def __init__(
        self,
        fire_at: int | None = None,
        action: Callable[[], None] | None = None,
        *,
        after: Callable[[], None] | None = None,
    ) -> None:
        self.fire_at = fire_at
        self.action = action
        self.after = after
        self.count = 0
        self.fired = False
        self.kinds: list[str] = []

    def _point(self, kind: str) -> None:
        self.count += 1
        self.kinds.append(kind)
        if not self.fired and self.count == self.fire_at:
            self.fired = True
            if self.action is not None:
                self.action()
        elif self.fired and self.after is not None:
            self.after()

    def engine_points(self) -> list[int]:
        """The numbers of the points that were the engine's own waits."""
        return [number for number, kind in enumerate(self.kinds, 1) if kind.startswith("engine ")]

    @contextlib.contextmanager
    def installed(self) -> Iterator[WaitPoints]:
        """Patch the wait points for the duration of the block (inside an event loop)."""
        event_class: Any = type(anyio.Event())
        original_wait = event_class.wait
        original_checkpoint = anyio.lowlevel.checkpoint
        original_run_sync = anyio.to_thread.run_sync

        async def wait(event: Any) -> None:
            self._point("anyio event")
            await original_wait(event)

        async def checkpoint() -> None:
            self._point("anyio checkpoint")
            await original_checkpoint()

        async def run_sync(*args: Any, **kwargs: Any) -> Any:
            self._point("thread")
            return await original_run_sync(*args, **kwargs)

        event_class.wait = wait
        anyio.lowlevel.checkpoint = checkpoint  # type: ignore[assignment]
        anyio.to_thread.run_sync = run_sync
        try:
            with observe_wait_points(lambda kind: self._point(f"engine {kind}")):
                yield self
        finally:
            event_class.wait = original_wait
            anyio.lowlevel.checkpoint = original_checkpoint  # type: ignore[assignment]
            anyio.to_thread.run_sync = original_run_sync


async def settle(*, rounds: int = 50) -> None:
    """Let runs that were just stopped finish, then ``assert_run_cleaned_up()``.

    ``assert_run_cleaned_up`` once waited for every task to block only once, and on asyncio
    a broken-off bare run's host could then still have its children's done-callbacks
    queued (test_assert_run_cleaned_up_waits_for_a_broken_off_bare_run). Here every round
    waits for all tasks to block and passes one checkpoint, until no rillet task is left;
    a task still there after ``rounds`` rounds is a real leftover.
    """
    for _ in range(rounds):
        await anyio.wait_all_tasks_blocked()
        if not rillet_tasks():
            break
        await anyio.lowlevel.checkpoint()
    await assert_run_cleaned_up()


def seed_scheduler(seed: int) -> None:
    """Make trio's choice among ready tasks reproducible (asyncio's is FIFO already).

    pytest-trio turns on trio's deterministic scheduling when Hypothesis is installed;
    the order then depends only on trio's module-level Random, which this seeds. It is
    the one private name the tests still reach, on purpose: trio has no public seed, and
    its public route (Hypothesis's ``register_random``, which re-seeds that Random once
    per example) cannot replay one schedule several times within a test, which a sweep
    needs (the unstopped run, then each run stopped at a point of that same schedule).
    Without it, 22 of 131 trio sweep tests failed in each of three runs (points moved
    between the counting run and the stopped runs). If trio renames it, sweeps on trio
    run unseeded and say so through their failures, rather than erroring here.
    """
    try:
        import trio._core._run as trio_run
    except ImportError:  # pragma: no cover - trio is a dependency
        return
    scheduler_random = getattr(trio_run, "_r", None)
    if scheduler_random is not None:
        scheduler_random.seed(seed)


def sample_points(total: int, count: int, seed: int, engine_points: Sequence[int] = ()) -> list[int]:
    """``count`` wait-point numbers among ``1..total``, seeded: always the first and the last,
    then (when ``count`` leaves room) one of ``engine_points`` (the engine's own waits, which
    a sample must not miss), then any."""
    if total <= count:
        return list(range(1, total + 1))
    chooser = random.Random(seed)
    chosen = {1, total}
    inner_engine_points = [point for point in engine_points if 1 < point < total]
    if count > 2 and inner_engine_points:
        chosen.add(chooser.choice(inner_engine_points))
    rest = [point for point in range(2, total) if point not in chosen]
    chosen.update(chooser.sample(rest, count - len(chosen)))
    return sorted(chosen)


def assert_edges_settled(statistics: Iterable[EdgeStatistics]) -> None:
    """Every edge is closed by all its senders, and nobody is left waiting on it."""
    for stats in statistics:
        assert stats.open_senders == 0, f"edge {stats.name!r} still has open senders: {stats}"
        assert stats.waiting_senders == 0, f"edge {stats.name!r} has blocked senders: {stats}"
        assert stats.waiting_receivers == 0, f"edge {stats.name!r} has a blocked receiver: {stats}"
        assert stats.peak <= max(stats.capacity, 1), f"edge {stats.name!r} went past its capacity: {stats}"


class Monitor:
    """A service-wide monitor: a bus subscriber read by its own task, outside the run.

    Use ``async with Monitor(bus, capacity=4) as monitor:``; leaving the block ends the
    subscription, waits for the reader to take everything that was buffered, and checks
    that it got a complete, causally ordered story (``check_event_order(complete=True)``).
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        capacity: int = 4,
        overflow: str = "block",
        complete: bool = True,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.bus = bus
        self.capacity = capacity
        self.overflow = overflow
        self.complete = complete
        self.on_event = on_event
        self.events: list[dict[str, Any]] = []
        self.subscription: Subscription | None = None
        self._task_group: Any = None

    async def _read(self, subscription: Subscription) -> None:
        async for event in subscription:
            self.events.append(event)
            if self.on_event is not None:
                self.on_event(event)

    async def __aenter__(self) -> Monitor:
        self.subscription = self.bus.subscribe(capacity=self.capacity, overflow=self.overflow)  # type: ignore[arg-type]
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._read, self.subscription, name="reliability monitor")
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self.subscription is not None
        self.subscription.end()
        try:
            await self._task_group.__aexit__(*exc_info)
        finally:
            await self.subscription.aclose()
        if exc_info[0] is None:
            check_event_order(self.events, complete=self.complete)
            tally("events checked (order, completeness)", len(self.events))

    def statistics(self) -> Any:
        assert self.subscription is not None
        return self.subscription.statistics()

    def started_steps(self) -> set[str]:
        return {e["run_id"] for e in self.events if e["event"].endswith("_start")}

    def ended_steps(self) -> set[str]:
        return {e["run_id"] for e in self.events if e["event"].endswith(("_end", "_error"))}
