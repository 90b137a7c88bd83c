"""Scenario 8: cancellation latency of a 20-step chain stopped mid-stream.

The chain is ``endless | increment x 19``: its source never ends, so every edge is full
or busy when the consumer stops after its 64th chunk. One sample is the time from the
consumer leaving the stream to the stop being complete:

* ``async with``: from the ``break`` out of the loop (which leaves the block) to
  ``__aexit__`` returning, which in rillet happens only after every actor finished;
* ``async for`` + ``aclose()``: rillet's bare form, from calling ``aclose()`` (which
  cancels the run's host and waits for it) to its return;
* langchain-core: from calling ``aclose()`` on its ``astream`` async generator to its
  return (it has no task to wait for: closing unwinds the nested generators).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._chains import (
    ASYNCGEN_CLOSE_ERRORS,
    langchain_endless_chain,
    langchain_missing,
    quiet_asyncgen_close_errors,
    rillet_endless_chain,
)
from ._harness import (
    Budget,
    Contender,
    Sample,
    Section,
    Table,
    fmt_us,
    run_alternating,
    stat,
    target_at_most,
)

__all__ = ("run",)

KEY = "cancel"
DEPTH = 20
READ = 64
TARGET = 5e-3


def _summary(times: list[float]) -> Sample:
    return {"median": statistics.median(times), "max": max(times)}


def _rillet_with(samples: int) -> Callable[[], Awaitable[Sample]]:
    chain = rillet_endless_chain(DEPTH)

    async def measure() -> Sample:
        times: list[float] = []
        for _ in range(samples):
            stopped = 0.0
            async with chain.astream(None) as stream:
                received = 0
                async for _chunk in stream:
                    received += 1
                    if received == READ:
                        stopped = time.perf_counter()
                        break
            times.append(time.perf_counter() - stopped)
        return _summary(times)

    return measure


def _aclose_measure(
    chain: Any, samples: int, *, before: Callable[[], None] | None = None
) -> Callable[[], Awaitable[Sample]]:
    """Break a bare ``async for`` after READ chunks, then time ``aclose()`` on the stream."""

    async def measure() -> Sample:
        if before is not None:
            before()
        times: list[float] = []
        for _ in range(samples):
            stream = chain.astream(None)
            received = 0
            async for _chunk in stream:
                received += 1
                if received == READ:
                    break
            stopped = time.perf_counter()
            await stream.aclose()
            times.append(time.perf_counter() - stopped)
        return _summary(times)

    return measure


def run(budget: Budget) -> Section:
    """Run scenario 8 and return its report section."""
    section = Section(KEY, f"8. Cancellation latency ({DEPTH}-step chain, mid-stream)")
    samples = budget.size(40, 8)
    section.notes.append(
        f"`endless | increment x {DEPTH - 1}` (the source never stops); the consumer reads "
        f"{READ} chunks, then stops. `async with`: time from the `break` that leaves the block "
        f"to `__aexit__` returning (every actor finished). `async for + aclose()`: time spent "
        f"in `aclose()` of the bare stream (it cancels the run's host and waits for it). "
        f"langchain-core: time spent in `aclose()` of its `astream` generator. Each repetition "
        f"takes {samples} samples; the table shows the median of the per-repetition medians, "
        f"their min/max, and the worst single sample seen."
    )
    contenders: list[Contender] = []
    for backend in budget.backends:
        contenders.append(Contender(f"rillet (async with) [{backend}]", backend, _rillet_with(samples)))
        contenders.append(
            Contender(
                f"rillet (async for + aclose()) [{backend}]",
                backend,
                _aclose_measure(rillet_endless_chain(DEPTH), samples),
            )
        )
    missing = langchain_missing()
    lc = "langchain-core (aclose()) [asyncio]"
    if missing is None:
        measure = _aclose_measure(langchain_endless_chain(DEPTH), samples, before=quiet_asyncgen_close_errors)
        contenders.append(Contender(lc, "asyncio", measure))
    else:
        section.skipped.append(missing)
    reps = budget.reps(5, 2)
    close_errors_before = len(ASYNCGEN_CLOSE_ERRORS)
    results = run_alternating(contenders, reps, name="cancel")
    table = Table(
        ["contender", "median", "min", "max", "worst sample"], caption=f"{reps} reps x {samples} samples"
    )
    medians: dict[str, float] = {}
    for label, figures in results.items():
        m = stat(figures["median"])
        medians[label] = m.median
        table.add(label, fmt_us(m.median), fmt_us(m.low), fmt_us(m.high), fmt_us(max(figures["max"])))
    section.tables.append(table)
    for backend in budget.backends:
        for how in ("async with", "async for + aclose()"):
            label = f"rillet ({how}) [{backend}]"
            section.findings.append(
                target_at_most(f"cancellation latency, {how}, {backend}", medians[label], TARGET, fmt_us)
            )
    close_errors = len(ASYNCGEN_CLOSE_ERRORS) - close_errors_before
    if lc in medians:
        section.findings.append(
            f"langchain-core's `aclose()` takes {fmt_us(medians[lc])}"
            + (
                f'; {close_errors} of its async generators failed to close ("already running")'
                if close_errors
                else ""
            )
        )
    return section
