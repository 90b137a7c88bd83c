"""A Ray actor the Ray tests use to see and steer what runs on the workers.

Remote steps call it (``await probe.enter.remote()``...) from the workers' asyncio loop;
the tests read it from the driver. It counts the remote runs in flight (and the most at
once), holds them at a gate until the test opens it, and records that a run's ``finally``
ran, so "the worker stopped" is asserted by the worker's own word, not by timing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray


@ray.remote(num_cpus=0, max_restarts=0)
class Probe:
    """Counters, a gate and waits, on one asyncio loop."""

    def __init__(self) -> None:
        self.changed = asyncio.Condition()
        self.reset()

    def reset(self) -> None:
        """Counters to zero, the gate closed (one probe serves a module's tests)."""
        self.in_flight = 0
        self.peak = 0
        self.entered = 0
        self.cleaned = 0
        self.ticks = 0
        self.gate = asyncio.Event()

    async def _changed(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def enter(self) -> None:
        self.in_flight += 1
        self.entered += 1
        self.peak = max(self.peak, self.in_flight)
        await self._changed()

    async def leave(self) -> None:
        self.in_flight -= 1
        await self._changed()

    async def clean(self) -> None:
        self.cleaned += 1
        await self._changed()

    async def tick(self) -> int:
        self.ticks += 1
        await self._changed()
        return self.ticks

    async def wait_gate(self) -> None:
        await self.gate.wait()

    async def open_gate(self) -> None:
        self.gate.set()

    async def wait_for(self, name: str, count: int) -> int:
        """Wait until counter ``name`` reaches ``count``; return it."""
        async with self.changed:
            await self.changed.wait_for(lambda: getattr(self, name) >= count)
        return int(getattr(self, name))

    async def read(self) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "peak": self.peak,
            "entered": self.entered,
            "cleaned": self.cleaned,
            "ticks": self.ticks,
        }


# -- remote steps that report to a probe --------------------------------------------------
# Each is made inside a function, so cloudpickle ships it by value with its probe handle.
# A ``finally`` reports through ``left`` (not awaited: an ``await`` there would itself be
# cancelled when the run is). ``enter`` is awaited inside the ``try``: a run cancelled
# while waiting for its reply (the probe already counted it) still leaves.


def left(probe: Any) -> None:
    """Tell the probe a run left (its ``finally`` ran), from a thread of its own.

    Not from the run's task: ``ray.cancel`` is recursive, so calls a cancelled task
    submits (its ``finally``'s reports included) may be cancelled with it, and the probe
    would wait for a ``finally`` that did run (seen in about 1 round in 40).
    """
    import threading

    def report() -> None:
        probe.leave.remote()
        probe.clean.remote()

    threading.Thread(target=report, name="probe-report").start()


def gated_double(probe: Any) -> Any:
    """A step that waits at the probe's gate, then doubles its input (fails on < 0)."""
    from engine import RunnableLambda

    async def gated_double(x: int) -> int:
        try:
            await probe.enter.remote()
            await probe.wait_gate.remote()
            if x < 0:
                raise ValueError(f"negative input {x}")
            return x * 2
        finally:
            left(probe)

    return RunnableLambda(gated_double)


def endless(probe: Any) -> Any:
    """A step that streams for ever, ticking the probe once per chunk."""
    from engine import RunnableLambda

    async def endless(x: str) -> Any:
        try:
            await probe.enter.remote()
            n = 0
            while True:
                n += 1
                await probe.tick.remote()
                yield f"{x}{n} "
        finally:
            left(probe)

    return RunnableLambda(endless)


def gated_stream(probe: Any, gate_at: int, total: int) -> Any:
    """A step that streams ``total`` chunks, waiting at the gate before chunk ``gate_at``."""
    from engine import RunnableLambda

    async def gated_stream(x: str) -> Any:
        try:
            await probe.enter.remote()
            for i in range(total):
                if i == gate_at:
                    await probe.wait_gate.remote()
                yield f"{x}{i} "
        finally:
            left(probe)

    return RunnableLambda(gated_stream)


def counted_stream(probe: Any, total: int) -> Any:
    """A step that streams ``total`` chunks as fast as it can, ticking the probe per chunk."""
    from engine import RunnableLambda

    async def counted_stream(x: str) -> Any:
        for i in range(total):
            probe.tick.remote()
            yield f"{x}{i} "

    return RunnableLambda(counted_stream)


def gated_pid(probe: Any) -> Any:
    """A step that waits at the probe's gate, then answers its input with its process id."""
    import os

    from engine import RunnableLambda

    async def gated_pid(x: int) -> tuple[int, int]:
        try:
            await probe.enter.remote()
            await probe.wait_gate.remote()
            return x, os.getpid()
        finally:
            left(probe)

    return RunnableLambda(gated_pid)
