"""Reference pipelines written by hand on bare memory channels (no engine at all).

Each pipeline has the same shape as rillet's ``source | increment | ...`` chain: one task
per stage, each pair of neighbours (and the last stage and the consumer) joined by a
bounded channel of capacity 16 (rillet's default edge capacity), the consumer being
the calling task. The stages' work is written inline, not as async generators: these
are the floor an actor engine on these channels could reach.

Variants:

* ``anyio-fast``: anyio memory object streams; ``send_nowait``/``receive_nowait``
  first, awaiting only on ``WouldBlock``, and a checkpoint every 64 operations
  (what the design notes measured);
* ``anyio-plain``: the same streams used one item at a time with ``await send()`` and
  ``async for`` (every operation goes through the scheduler);
* ``trio-plain`` and ``trio-fast``: trio's native memory channels, the same two ways
  (trio backend only).
"""

from __future__ import annotations

import time
from typing import Any, Literal, Protocol

import anyio
import anyio.lowlevel

__all__ = ("VARIANTS", "Variant", "run_pipeline", "time_to_first")

Variant = Literal["anyio-fast", "anyio-plain", "trio-fast", "trio-plain"]
VARIANTS: tuple[Variant, ...] = ("anyio-fast", "anyio-plain", "trio-fast", "trio-plain")

CAPACITY = 16
CHECKPOINT_EVERY = 64


class _Out(Protocol):
    async def send(self, item: int) -> None: ...

    def close(self) -> None: ...


class _In(Protocol):
    async def receive(self) -> int: ...


class _FastOut:
    """Send without a trip through the scheduler when there is room."""

    __slots__ = ("_channel", "_ops", "_would_block")

    def __init__(self, channel: Any, would_block: type[Exception]) -> None:
        self._channel = channel
        self._would_block = would_block
        self._ops = 0

    async def send(self, item: int) -> None:
        try:
            self._channel.send_nowait(item)
        except self._would_block:
            self._ops = 0
            await self._channel.send(item)
            return
        self._ops += 1
        if self._ops >= CHECKPOINT_EVERY:
            self._ops = 0
            await anyio.lowlevel.checkpoint()

    def close(self) -> None:
        self._channel.close()


class _FastIn:
    """Receive without a trip through the scheduler when an item is ready."""

    __slots__ = ("_channel", "_ops", "_would_block")

    def __init__(self, channel: Any, would_block: type[Exception]) -> None:
        self._channel = channel
        self._would_block = would_block
        self._ops = 0

    async def receive(self) -> int:
        try:
            item: int = self._channel.receive_nowait()
        except self._would_block:
            self._ops = 0
            return int(await self._channel.receive())
        self._ops += 1
        if self._ops >= CHECKPOINT_EVERY:
            self._ops = 0
            await anyio.lowlevel.checkpoint()
        return item


class _PlainOut:
    __slots__ = ("_channel",)

    def __init__(self, channel: Any) -> None:
        self._channel = channel

    async def send(self, item: int) -> None:
        await self._channel.send(item)

    def close(self) -> None:
        self._channel.close()


class _PlainIn:
    __slots__ = ("_channel",)

    def __init__(self, channel: Any) -> None:
        self._channel = channel

    async def receive(self) -> int:
        return int(await self._channel.receive())


def _link(variant: Variant) -> tuple[_Out, _In, type[Exception]]:
    """One bounded channel of ``variant``: its two ends and its end-of-stream error."""
    if variant.startswith("trio"):
        import trio

        trio_send, trio_receive = trio.open_memory_channel[int](CAPACITY)
        if variant == "trio-fast":
            return (
                _FastOut(trio_send, trio.WouldBlock),
                _FastIn(trio_receive, trio.WouldBlock),
                trio.EndOfChannel,
            )
        return _PlainOut(trio_send), _PlainIn(trio_receive), trio.EndOfChannel
    send, receive = anyio.create_memory_object_stream[int](CAPACITY)
    if variant == "anyio-fast":
        return _FastOut(send, anyio.WouldBlock), _FastIn(receive, anyio.WouldBlock), anyio.EndOfStream
    return _PlainOut(send), _PlainIn(receive), anyio.EndOfStream


async def _source(out: _Out, count: int) -> None:
    try:
        for index in range(count):
            await out.send(index)
    finally:
        out.close()


async def _increment(inbox: _In, out: _Out, end: type[Exception]) -> None:
    try:
        while True:
            try:
                value = await inbox.receive()
            except end:
                return
            await out.send(value + 1)
    finally:
        out.close()


async def run_pipeline(variant: Variant, count: int, stages: int = 3, *, slow_consumer: bool = False) -> int:
    """Stream ``count`` items through ``stages`` tasks; return how many the consumer got.

    A ``slow_consumer`` checkpoints and does a little arithmetic per item (scenario 7).
    """
    received = 0
    checksum = 0
    async with anyio.create_task_group() as task_group:
        out, inbox, end = _link(variant)
        task_group.start_soon(_source, out, count)
        for _ in range(stages - 1):
            next_out, next_inbox, end = _link(variant)
            task_group.start_soon(_increment, inbox, next_out, end)
            inbox = next_inbox
        while True:
            try:
                item = await inbox.receive()
            except end:
                break
            received += 1
            if slow_consumer:
                await anyio.lowlevel.checkpoint()
                checksum = (checksum + item * 31) % 1_000_003
    return received


async def time_to_first(variant: Variant, count: int, stages: int = 3) -> float:
    """Seconds from starting a pipeline to its first item reaching the consumer.

    The pipeline is then cancelled (not timed), as a consumer that stops would do.
    """
    started = time.perf_counter()
    async with anyio.create_task_group() as task_group:
        out, inbox, end = _link(variant)
        task_group.start_soon(_source, out, count)
        for _ in range(stages - 1):
            next_out, next_inbox, end = _link(variant)
            task_group.start_soon(_increment, inbox, next_out, end)
            inbox = next_inbox
        await inbox.receive()
        elapsed = time.perf_counter() - started
        task_group.cancel_scope.cancel()
    return elapsed
