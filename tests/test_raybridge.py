"""Awaiting Ray from trio and asyncio (``engine/_raybridge.py``): refs and streaming
generators, through a ref's future and a loop wake-up, with no thread per call."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

pytest.importorskip("ray")

import ray

from engine._raybridge import await_ref, next_ref

pytestmark = [pytest.mark.usefixtures("ray_session")]


@ray.remote(num_cpus=0)
class Source:
    """A gate to hold a call, and a generator that yields then may fail."""

    def __init__(self) -> None:
        import asyncio

        self.gate = asyncio.Event()

    async def held(self, value: int) -> int:
        await self.gate.wait()
        return value

    async def release(self) -> None:
        self.gate.set()

    async def close(self) -> None:
        import asyncio

        self.gate = asyncio.Event()

    async def numbers(self, count: int, fail: bool) -> Any:
        for i in range(count):
            yield i
        if fail:
            raise KeyError("after the numbers")


@pytest.fixture(scope="module")
def source(ray_session: Any) -> Any:
    handle = Source.remote()
    yield handle
    ray.kill(handle)


async def test_a_ref_is_awaited_without_a_thread(source: Any) -> None:
    """A held call's ref is awaited on the driver's loop: no thread is started for it, and it wakes once released."""
    ray.get(source.close.remote())
    ref = source.held.remote(7)
    threads = threading.active_count()
    result: list[int] = []
    async with anyio.create_task_group() as tasks:

        async def wait() -> None:
            result.append(await await_ref(ref))

        tasks.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        assert threading.active_count() == threads
        assert result == []
        await await_ref(source.release.remote())
    assert result == [7]


async def test_a_remote_error_is_raised_from_the_ref(source: Any) -> None:
    """Reading a failed generator's last ref raises Ray's error, an instance of the original type."""
    generator = source.numbers.options(num_returns="streaming").remote(2, True)
    values = []
    with pytest.raises(KeyError):
        while True:
            values.append(await await_ref(await next_ref(generator)))
    assert values == [0, 1]


async def test_a_generator_is_read_to_its_end(source: Any) -> None:
    """``next_ref`` gives each object of a streaming generator in order, then stops."""
    generator = source.numbers.options(num_returns="streaming").remote(50, False)
    values = []
    while True:
        try:
            ref = await next_ref(generator)
        except StopAsyncIteration:
            break
        values.append(await await_ref(ref))
    assert values == list(range(50))


async def test_a_cancelled_wait_returns_at_once(source: Any) -> None:
    """A wait for a ref that never becomes ready is a cancel point."""
    ray.get(source.close.remote())
    ref = source.held.remote(1)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(await_ref, ref)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    ray.cancel(ref)
