"""Scenario 7: a very long stream to a slow consumer: memory must not grow with length.

Peak RSS of a 10,000-chunk run and of a 1,000,000-chunk run of ``source | increment |
increment``, each in a fresh interpreter (``benchmarks._worker``), whose consumer does a
checkpoint and a little arithmetic per chunk. With bounded edges end to end, the
difference must stay within a few MiB (target: +10 MiB).

A second, in-process table shows what a slow consumer costs per chunk: the consumer's
loop alone (no pipeline: the floor), rillet, and the hand-written pipelines with the same
consumer. A consumer that checkpoints every chunk frees one slot of a full edge at a
time, so producers blocked on full edges are woken once per chunk.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel

from . import _handwritten
from ._chains import rillet_chain
from ._harness import (
    Budget,
    Contender,
    Sample,
    Section,
    Table,
    fmt_count,
    fmt_ratio,
    fmt_us,
    run_alternating,
    run_workers_alternating,
    stat,
    target_at_most,
)

__all__ = ("run",)

KEY = "long_stream"
TARGET_MIB = 10.0


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def _signed_mib(kib: float) -> str:
    return f"{kib / 1024:+.2f} MiB"


def _work(checksum: int, chunk: int) -> int:
    return (checksum + chunk * 31) % 1_000_003


def _floor(count: int) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        checksum = 0
        started = time.perf_counter()
        for chunk in range(count):
            await anyio.lowlevel.checkpoint()
            checksum = _work(checksum, chunk)
        return {"seconds": time.perf_counter() - started}

    return measure


def _rillet(count: int) -> Callable[[], Awaitable[Sample]]:
    chain = rillet_chain(3)

    async def measure() -> Sample:
        checksum = 0
        started = time.perf_counter()
        async with chain.astream(count) as stream:
            async for chunk in stream:
                await anyio.lowlevel.checkpoint()
                checksum = _work(checksum, chunk)
        return {"seconds": time.perf_counter() - started}

    return measure


def _hand(variant: _handwritten.Variant, count: int) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        started = time.perf_counter()
        await _handwritten.run_pipeline(variant, count, 3, slow_consumer=True)
        return {"seconds": time.perf_counter() - started}

    return measure


def _memory(budget: Budget, section: Section) -> None:
    short, long = 10_000, budget.size(1_000_000, 30_000)
    specs: list[tuple[str, dict[str, object]]] = []
    for backend in budget.backends:
        for chunks in (short, long):
            specs.append(
                (f"rillet [{backend}] {chunks}", {"task": "long", "backend": backend, "chunks": chunks})
            )
    samples = run_workers_alternating(specs, 1, name="long stream")
    table = Table(
        ["run", "chunks", "time", "per chunk", "baseline RSS", "peak RSS", "peak - baseline", "RSS at end"],
        caption="Fresh interpreter per run",
    )
    for label, figures in samples.items():
        received = figures["items"][0]
        seconds = figures["seconds"][0]
        table.add(
            label.rsplit(" ", 1)[0],
            fmt_count(received),
            f"{seconds:.1f} s",
            fmt_us(seconds / received),
            _mib(figures["baseline_kib"][0]),
            _mib(figures["peak_kib"][0]),
            _signed_mib(figures["peak_kib"][0] - figures["baseline_kib"][0]),
            _mib(figures["end_kib"][0]),
        )
    section.tables.append(table)
    for backend in budget.backends:
        a = samples[f"rillet [{backend}] {short}"]
        b = samples[f"rillet [{backend}] {long}"]
        delta_peak = b["peak_kib"][0] - a["peak_kib"][0]
        delta_growth = (b["peak_kib"][0] - b["baseline_kib"][0]) - (a["peak_kib"][0] - a["baseline_kib"][0])
        section.findings.append(
            f"rillet [{backend}]: peak RSS {long:,} vs {short:,} chunks: {_signed_mib(delta_peak)} "
            f"(growth during the run: {_signed_mib(delta_growth)})"
        )
        section.findings.append(
            target_at_most(
                f"peak RSS growth from {short:,} to {long:,} chunks on {backend}",
                max(delta_peak, delta_growth) / 1024,
                TARGET_MIB,
                lambda mib: f"{mib:+.2f} MiB",
            )
        )


def _per_chunk(budget: Budget, section: Section) -> None:
    count = budget.size(10_000, 3_000)
    contenders: list[Contender] = []
    for backend in budget.backends:
        contenders.append(Contender(f"consumer loop alone [{backend}]", backend, _floor(count), _floor(500)))
        contenders.append(Contender(f"rillet [{backend}]", backend, _rillet(count), _rillet(500)))
        variants: list[_handwritten.Variant] = ["anyio-fast", "anyio-plain"]
        if backend == "trio":
            variants.append("trio-fast")
        for variant in variants:
            contenders.append(
                Contender(
                    f"hand-written {variant} [{backend}]", backend, _hand(variant, count), _hand(variant, 500)
                )
            )
    reps = budget.reps(3, 1)
    samples = run_alternating(contenders, reps, name="slow consumer per chunk")
    table = Table(
        ["contender", "per chunk (median)", "min", "max", "vs consumer alone"],
        caption=f"Slow consumer, 3-step pipeline, {count:,} chunks, {reps} reps",
    )
    for label, figures in samples.items():
        per = stat([s / count for s in figures["seconds"]])
        loop_name = label.rsplit("[", 1)[1].rstrip("]")
        floor = stat(samples[f"consumer loop alone [{loop_name}]"]["seconds"]).median / count
        table.add(label, fmt_us(per.median), fmt_us(per.low), fmt_us(per.high), fmt_ratio(per.median / floor))
    section.tables.append(table)


def run(budget: Budget) -> Section:
    """Run scenario 7 and return its report section."""
    section = Section(KEY, "7. Long stream, slow consumer: peak RSS must not grow with length")
    section.notes.append(
        "Consumer: `async with chain.astream(n) as s: async for c in s: await "
        "anyio.lowlevel.checkpoint(); checksum = (checksum + c * 31) % 1_000_003`. The RSS "
        "runs are one fresh interpreter each (rillet only: langchain-core streams this chain "
        "at ~15k chunks/s, so a million chunks would take over a minute per run and its "
        "generators are pull-based anyway). The delta compared with the target is the larger "
        "of (peak at long - peak at short) and (growth during the long run - growth during the "
        "short run). Each worker collects garbage and resets the RSS high-water mark "
        "(`/proc/self/clear_refs`) just before the run, so peak RSS (`VmHWM`) is the run's own "
        "peak."
    )
    _memory(budget, section)
    _per_chunk(budget, section)
    return section
