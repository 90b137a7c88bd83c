"""RayRunnable against local runs: batch throughput, stream throughput, first chunk, stop.

Run:  python -m benchmarks.bench_ray [--quick]   (needs the ``ray`` extra; starts a local
Ray with 2 CPUs and no dashboard, and stops it at the end). Prints a Markdown section
for benchmarks/RESULTS.md. On each driver backend (trio, asyncio):

* batch: ``abatch`` of N inputs, at most 32 in flight, on 2 actors vs local ``abatch``:
  a zero-work step (the per-item cost) and a 20 ms step (how close to ideal), the
  median of 3 batches after a warm-up batch;
* stream: chunks/s of a 20,000-chunk generator step, Ray vs local ``astream``;
* first chunk: median time from ``astream`` to the first chunk (warm actors), Ray vs local;
* stop: from the driver's cancel of a batch of 8 endless remote items to the last
  worker's ``finally`` (worker clock; same machine), median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

import anyio

from engine import RunnableLambda
from engine.ray import RayRunnable


def nothing(x: int) -> int:
    return x


async def twenty_ms(x: int) -> int:
    await asyncio.sleep(0.02)  # the worker's chain runs on asyncio
    return x


async def anyio_twenty_ms(x: int) -> int:
    await anyio.sleep(0.02)
    return x


async def chunks(n: int) -> Any:
    for i in range(n):
        yield i


class StopProbe:
    """Records, on the worker, when each endless item's ``finally`` ran."""

    def __init__(self) -> None:
        self.started = 0
        self.stopped: list[float] = []

    def start(self) -> None:
        self.started += 1

    def stop(self, when: float) -> None:
        self.stopped.append(when)

    def read(self) -> tuple[int, list[float]]:
        return self.started, list(self.stopped)

    def reset(self) -> None:
        self.started = 0
        self.stopped = []


def endless_step(probe: Any) -> Any:
    async def endless(x: int) -> int:
        probe.start.remote()
        try:
            while True:  # noqa: ASYNC110 (busy on purpose: a worker that is working when cancelled)
                await asyncio.sleep(0.001)
        finally:
            # Reported from a thread: ray.cancel is recursive, so a call the cancelled
            # task submits itself may be cancelled with it (and the bench would wait).
            stopped_at = time.time()
            threading.Thread(target=lambda: probe.stop.remote(stopped_at)).start()

    return RunnableLambda(endless)


async def rate(run: Any, count: int, rounds: int = 1) -> float:
    """Items per second of ``run()`` (``count`` items), the median over ``rounds``."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await run()
        samples.append(count / (time.perf_counter() - started))
    return statistics.median(samples)


async def bench_backend(ray: Any, quick: bool) -> dict[str, Any]:
    n = 200 if quick else 600
    out: dict[str, Any] = {}
    zero = RayRunnable(RunnableLambda(nothing), num_actors=2)
    slow = RayRunnable(RunnableLambda(twenty_ms), num_actors=2)
    stream = RayRunnable(RunnableLambda(chunks), num_actors=1)
    try:
        for remote in (zero, slow, stream):
            for actor in remote.start_actors():
                ray.get(actor.ping.remote())
        inputs = list(range(n))
        # Warm: a whole batch first (the first few hundred calls of a new actor are slower).
        await zero.abatch(inputs, max_concurrency=32)
        await slow.abatch(inputs[:64], max_concurrency=32)
        out["zero ray"] = await rate(lambda: zero.abatch(inputs, max_concurrency=32), n, 3)
        out["zero local"] = await rate(
            lambda: RunnableLambda(nothing).abatch(inputs, max_concurrency=32), n, 3
        )
        out["20ms ray"] = await rate(lambda: slow.abatch(inputs, max_concurrency=32), n, 3)
        out["20ms local"] = await rate(
            lambda: RunnableLambda(anyio_twenty_ms).abatch(inputs, max_concurrency=32), n, 3
        )
        out["20ms ideal"] = 32 / 0.02
        total = 5_000 if quick else 20_000

        async def drain(runnable: Any) -> None:
            async with runnable.astream(total) as got:
                async for _ in got:
                    pass

        out["stream ray"] = await rate(lambda: drain(stream), total)
        out["stream local"] = await rate(lambda: drain(RunnableLambda(chunks)), total)
        for name, runnable in (("first ray", stream), ("first local", RunnableLambda(chunks))):
            samples = []
            for _ in range(10 if quick else 30):
                started = time.perf_counter()
                async with runnable.astream(3) as got:
                    await got.__anext__()
                    samples.append(time.perf_counter() - started)
            out[name] = statistics.median(samples)
        out["stop"] = await stop_latency(ray, 3 if quick else 7)
    finally:
        for remote in (zero, slow, stream):
            remote.shutdown()
    return out


async def stop_latency(ray: Any, rounds: int) -> float:
    probe = ray.remote(StopProbe).options(num_cpus=0).remote()
    remote = RayRunnable(endless_step(probe), num_actors=2)
    samples = []
    try:
        for _ in range(rounds):
            ray.get(probe.reset.remote())
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(lambda: remote.abatch(list(range(8)), max_concurrency=8))
                    while ray.get(probe.read.remote())[0] < 8:  # noqa: ASYNC110 (polls another process)
                        await anyio.sleep(0.01)
                    cancelled_at = time.time()
                    scope.cancel()
            while len(ray.get(probe.read.remote())[1]) < 8:  # noqa: ASYNC110 (polls another process)
                await anyio.sleep(0.01)
            samples.append(max(ray.get(probe.read.remote())[1]) - cancelled_at)
    finally:
        remote.shutdown()
        ray.kill(probe)
    return statistics.median(samples)


def report(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| driver | batch, zero-work step: Ray / local (items/s) | batch, 20 ms step: Ray / local / ideal (items/s) "
        "| stream: Ray / local (chunks/s) | first chunk: Ray / local (ms, median) | stop: cancel to last worker finally (ms, median) |",
        "|---|---|---|---|---|---|",
    ]
    for backend, r in results.items():
        lines.append(
            f"| {backend} | {r['zero ray']:,.0f} / {r['zero local']:,.0f} "
            f"| {r['20ms ray']:,.0f} / {r['20ms local']:,.0f} / {r['20ms ideal']:,.0f} "
            f"| {r['stream ray']:,.0f} / {r['stream local']:,.0f} "
            f"| {r['first ray'] * 1000:.2f} / {r['first local'] * 1000:.3f} | {r['stop'] * 1000:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="ray", dir="/tmp") as folder:
        os.environ["RAY_TMPDIR"] = folder
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            results = {}
            for backend in ("trio", "asyncio"):
                results[backend] = anyio.run(bench_backend, ray, args.quick, backend=backend)
        finally:
            ray.shutdown()
    print(f"ray {ray.__version__}, python {sys.version.split()[0]}, nproc {os.cpu_count()}")
    print(report(results))


if __name__ == "__main__":
    main()
