"""abatch's scheduler (engine/_batch.py): one cap per run, lent slots, no deadlock."""

from __future__ import annotations

import anyio
import pytest

from engine import RunnableLambda
from engine.testing import assert_run_cleaned_up


class _Gauge:
    def __init__(self) -> None:
        self.active = 0
        self.peak = 0

    async def leaf(self, value: int) -> int:
        self.active += 1
        self.peak = max(self.peak, self.active)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        self.active -= 1
        return value


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_nested_batches_share_the_cap_and_never_deadlock(limit: int) -> None:
    """Three levels of batches under one cap finish, with at most ``limit`` leaves running at once."""
    gauge = _Gauge()
    leaf = RunnableLambda(gauge.leaf)

    async def middle(value: int) -> list[int]:
        return await leaf.abatch([value, value + 1])

    mid = RunnableLambda(middle)

    async def outer(value: int) -> list[list[int]]:
        return await mid.abatch([value, value + 10])

    with anyio.fail_after(10):
        results = await RunnableLambda(outer).abatch([0, 100, 200], max_concurrency=limit)
    assert results == [[[v, v + 1], [v + 10, v + 11]] for v in (0, 100, 200)]
    assert 1 <= gauge.peak <= limit
    await assert_run_cleaned_up()


async def test_a_failing_item_cancels_the_items_waiting_for_a_slot() -> None:
    """One failure (without return_exceptions) is raised as itself, and no item starts after it."""
    started: list[int] = []

    async def work(value: int) -> int:
        started.append(value)
        await anyio.lowlevel.checkpoint()
        if value == 1:
            raise ValueError("item one")
        return value

    with pytest.raises(ValueError, match="item one"):
        await RunnableLambda(work).abatch(list(range(10)), max_concurrency=2)
    assert len(started) < 10
    await assert_run_cleaned_up()


async def test_an_empty_batch_returns_an_empty_list() -> None:
    """abatch([]) returns [] with or without a cap."""
    assert await RunnableLambda(lambda x: x).abatch([]) == []
    assert await RunnableLambda(lambda x: x).abatch([], max_concurrency=1) == []
