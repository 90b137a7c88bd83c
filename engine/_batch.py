"""``abatch``: one runnable on many inputs at once, under one concurrency cap per run.

The cap is a limiter shared by the whole run: a batch started inside a batch item (a
``@chain`` that calls ``abatch``, say) draws from the same limiter, so ``n`` means ``n``
items at once across every level. A task that runs a batch item holds a
:class:`BatchLease` on one slot. When such an item starts a nested batch, it *lends* its
slot: the nested batch runs its items one after another on the lent slot, and runs more
at once only on slots it can borrow. Without lending, ``n`` items each waiting for a slot
for their own nested batch would wait for each other forever.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any

import anyio
import attrs

from ._errors import carry_interrupt, collapse_errors

__all__ = ("BatchLease", "run_batch")


@attrs.define(eq=False)
class BatchLease:
    """One slot of a batch limiter, held by the task running one batch item.

    It is also the limiter's borrower, so the slot is released by whichever task
    finishes the item.
    """

    limiter: anyio.CapacityLimiter


# The lease of the batch item this task runs (``None`` outside any capped batch).
_LEASE: ContextVar[BatchLease | None] = ContextVar("rillet_batch_lease", default=None)


@attrs.define(eq=False)
class _Dispatch:
    """Hands the pending items of one batch to slots as they come free."""

    pending: deque[int]
    run_one: Callable[[int], Coroutine[Any, Any, None]]
    limiter: anyio.CapacityLimiter
    waiting: anyio.CancelScope | None = None

    async def dispatch(self, task_group: anyio.abc.TaskGroup) -> None:
        """In the batch's own task: borrow a slot for each pending item, start it there."""
        pending = self.pending
        while pending:
            lease = BatchLease(self.limiter)
            # The scope belongs to this task, so cancelling it (from the lent-slot task,
            # when it took the last item) never touches another task's count of
            # cancellations (see _run.py on asyncio's un-cancel bookkeeping).
            with anyio.CancelScope() as waiting:
                self.waiting = waiting
                await self.limiter.acquire_on_behalf_of(lease)
            self.waiting = None
            if waiting.cancelled_caught:
                return
            if not pending:
                self.limiter.release_on_behalf_of(lease)
                return
            task_group.start_soon(self._on_slot, lease, pending.popleft())

    async def _on_slot(self, lease: BatchLease, index: int) -> None:
        _LEASE.set(lease)
        try:
            await _carrying_interrupts(self.run_one, index)
        finally:
            self.limiter.release_on_behalf_of(lease)

    async def on_lent_slot(self) -> None:
        """Run items one after another on the slot lent by the enclosing batch item."""
        pending = self.pending
        while pending:
            index = pending.popleft()
            if not pending and self.waiting is not None:
                self.waiting.cancel()  # nothing left for the dispatcher to wait for
            await _carrying_interrupts(self.run_one, index)


async def _carrying_interrupts(run_one: Callable[[int], Coroutine[Any, Any, None]], index: int) -> None:
    # An item's task must not let KeyboardInterrupt out as itself (see CarriedInterrupt).
    try:
        await run_one(index)
    except (KeyboardInterrupt, SystemExit) as exc:
        raise carry_interrupt(exc) from None


async def run_batch(
    count: int, run_one: Callable[[int], Coroutine[Any, Any, None]], limit: int | None
) -> None:
    """Run ``run_one(i)`` for every ``i < count``, at most ``limit`` at once.

    Inside a capped batch item, the enclosing batch's limiter applies instead (and the
    item's slot is lent to this batch). One failure cancels the others and is raised as
    itself; several are raised as one group.
    """
    lease = _LEASE.get()
    limiter = lease.limiter if lease is not None else None
    if limiter is None and limit is not None:
        limiter = anyio.CapacityLimiter(limit)
    failure: BaseException | None = None
    try:
        async with anyio.create_task_group() as task_group:
            if limiter is None:
                for index in range(count):
                    task_group.start_soon(_carrying_interrupts, run_one, index)
            else:
                dispatch = _Dispatch(deque(range(count)), run_one, limiter)
                if lease is not None:
                    task_group.start_soon(dispatch.on_lent_slot)
                await dispatch.dispatch(task_group)
    except BaseExceptionGroup as group:
        failure = collapse_errors(group)
        if failure is group:
            raise
    if failure is not None:
        raise failure  # outside the except block: the error keeps its own chain
