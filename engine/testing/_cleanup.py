"""Checking that runs left nothing behind: no task running, no subscriber open, no warning."""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import anyio.to_thread

from .._bus import EventBus

__all__ = ("RunLeftovers", "assert_run_cleaned_up", "cleanup_guard", "rillet_tasks")


class RunLeftovers(AssertionError):
    """Something a run started was still alive after the run."""


def rillet_tasks() -> list[str]:
    """The names of the running tasks that belong to rillet runs (hosts and actors)."""
    return [task.name or "" for task in anyio.get_running_tasks() if (task.name or "").startswith("rillet ")]


async def assert_run_cleaned_up(*, bus: EventBus | None = None, settle: float = 5.0) -> None:
    """Assert that no rillet task is running (and, given a bus, no subscriber is open).

    Waits until every other task is blocked first, so that runs that were just cancelled
    (a bare ``async for`` that was broken off) get to finish; a run whose cleanup waits
    on a thread or a socket (a model closing its HTTP stream) looks blocked while it is
    still finishing, so leftovers are then polled for up to ``settle`` seconds of real
    time (a hang guard: a clean run passes at once, mock clock or not).

    Raises:
        RunLeftovers: Naming the tasks or subscribers still alive.
    """
    # A just-cancelled host may need a few more scheduler passes (its children's
    # done-callbacks on asyncio) after every task is blocked: allow a bounded number.
    for _ in range(20):
        await anyio.wait_all_tasks_blocked()
        if not rillet_tasks():
            break
        await anyio.lowlevel.checkpoint()
    deadline = time.monotonic() + settle
    while rillet_tasks() and time.monotonic() < deadline:
        # Real time, in a thread: a mock clock must not make this bound expire at once.
        await anyio.to_thread.run_sync(time.sleep, 0.002)
        await anyio.wait_all_tasks_blocked()
    left = rillet_tasks()
    if left:
        raise RunLeftovers(f"tasks still running after the run: {left}")
    if bus is not None and bus.subscriber_count:
        raise RunLeftovers(f"{bus.subscriber_count} subscription(s) still open on the bus")


@asynccontextmanager
async def cleanup_guard(*, bus: EventBus | None = None, settle: float = 5.0) -> AsyncIterator[None]:
    """Run the block, then assert it left no task, subscriber or ``ResourceWarning``.

    Raises:
        RunLeftovers: For a task or subscriber left alive, or a ``ResourceWarning``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        await assert_run_cleaned_up(bus=bus, settle=settle)
        gc.collect()
        await anyio.lowlevel.checkpoint()
    leaked = [w for w in caught if issubclass(w.category, ResourceWarning)]
    if leaked:
        raise RunLeftovers(f"ResourceWarning(s) during the run: {[str(w.message) for w in leaked]}")
