"""Scenario 4: time to first chunk of a 3-step chain (engine overhead only).

One sample is the time from calling ``astream`` to receiving the first chunk of
``source | increment | increment``; the stream is then closed, outside the timed part.
A repetition takes many samples and reports their median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import _handwritten
from ._chains import (
    ASYNCGEN_CLOSE_ERRORS,
    langchain_chain,
    langchain_missing,
    quiet_asyncgen_close_errors,
    rillet_chain,
)
from ._harness import Budget, Contender, Sample, Section, Table, fmt_ratio, fmt_us, run_alternating, stat

__all__ = ("run",)

KEY = "first_chunk"
INPUT = 1_000


def _rillet(form: str, samples: int) -> Callable[[], Awaitable[Sample]]:
    chain = rillet_chain(3)

    async def measure() -> Sample:
        times: list[float] = []
        for _ in range(samples):
            if form == "with":
                started = time.perf_counter()
                async with chain.astream(INPUT) as stream:
                    async for _chunk in stream:
                        times.append(time.perf_counter() - started)
                        break
            else:
                started = time.perf_counter()
                stream = chain.astream(INPUT)
                await stream.__anext__()
                times.append(time.perf_counter() - started)
                await stream.aclose()
        return {"median": statistics.median(times), "p90": statistics.quantiles(times, n=10)[-1]}

    return measure


def _langchain(samples: int) -> Callable[[], Awaitable[Sample]]:
    chain: Any = langchain_chain(3)

    async def measure() -> Sample:
        quiet_asyncgen_close_errors()
        times: list[float] = []
        for _ in range(samples):
            started = time.perf_counter()
            stream = chain.astream(INPUT)
            await stream.__anext__()
            times.append(time.perf_counter() - started)
            await stream.aclose()
        return {"median": statistics.median(times), "p90": statistics.quantiles(times, n=10)[-1]}

    return measure


def _handwritten_first(samples: int) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        times = [await _handwritten.time_to_first("anyio-fast", INPUT, 3) for _ in range(samples)]
        return {"median": statistics.median(times), "p90": statistics.quantiles(times, n=10)[-1]}

    return measure


def run(budget: Budget) -> Section:
    """Run scenario 4 and return its report section."""
    section = Section(KEY, "4. Time to first chunk (3-step chain)")
    samples = budget.size(300, 50)
    section.notes.append(
        f"One sample: `perf_counter()` just before calling `astream(...)`, again when the "
        f"first chunk arrives; closing the stream afterwards is not timed. Each repetition "
        f"takes {samples} samples and keeps their median (and 90th percentile); the table "
        f"shows the median, min and max of those per-repetition medians. `async for` rows "
        f"close with `aclose()` after the first chunk; `async with` rows break out of the block. "
        f"The hand-written floor starts 3 tasks on anyio memory streams in a task group and "
        f"takes the first item (then cancels)."
    )
    contenders: list[Contender] = []
    for backend in budget.backends:
        contenders.append(Contender(f"rillet (async for) [{backend}]", backend, _rillet("bare", samples)))
        contenders.append(Contender(f"rillet (async with) [{backend}]", backend, _rillet("with", samples)))
        contenders.append(
            Contender(f"hand-written anyio-fast [{backend}]", backend, _handwritten_first(samples))
        )
    missing = langchain_missing()
    lc = "langchain-core [asyncio]"
    if missing is None:
        contenders.append(Contender(lc, "asyncio", _langchain(samples)))
    else:
        section.skipped.append(missing)
    reps = budget.reps(5, 2)
    close_errors_before = len(ASYNCGEN_CLOSE_ERRORS)
    results = run_alternating(contenders, reps, name="first chunk")
    table = Table(
        ["contender", "median", "min", "max", "p90 (median of reps)"],
        caption=f"{reps} reps x {samples} samples",
    )
    medians = {label: stat(figures["median"]) for label, figures in results.items()}
    for label, figures in results.items():
        row = medians[label]
        table.add(
            label, fmt_us(row.median), fmt_us(row.low), fmt_us(row.high), fmt_us(stat(figures["p90"]).median)
        )
    section.tables.append(table)
    for backend in budget.backends:
        floor = medians[f"hand-written anyio-fast [{backend}]"].median
        for how in ("async for", "async with"):
            first = medians[f"rillet ({how}) [{backend}]"].median
            section.findings.append(
                f"rillet ({how}) [{backend}]: {fmt_us(first - floor)} above the hand-written 3-task floor "
                f"({fmt_us(first)} vs {fmt_us(floor)}, {fmt_ratio(first / floor)})"
            )
    if lc in medians:
        for label, m in medians.items():
            if label.startswith("rillet"):
                section.findings.append(
                    f"{label}: first chunk {fmt_ratio(medians[lc].median / m.median)} sooner than langchain-core "
                    f"({fmt_us(m.median)} vs {fmt_us(medians[lc].median)})"
                )
    close_errors = len(ASYNCGEN_CLOSE_ERRORS) - close_errors_before
    if close_errors:
        section.findings.append(
            f"langchain-core: {close_errors} async generators failed to close after `aclose()` "
            f'(asyncio reported "aclose(): asynchronous generator is already running"); counted, not printed'
        )
    return section
