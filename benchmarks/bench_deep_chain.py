"""Scenario 6: a chain of 20 generator steps: what each step costs per chunk.

``t(k)`` is the time to stream ``N`` chunks through ``source | increment x (k-1)``.
The per-chunk cost of one step is ``(t(20) - t(1)) / (19 * N)``: the 19 ``increment``
steps added between the 1-step and the 20-step chain, divided by the chunks each of them
handles. Subtracting ``t(1)`` removes what does not depend on the number of steps (the
source producing the chunks, the consumer's loop, starting the run). ``t(1)`` and
``t(20)`` of one repetition come from the same round, so each round gives one paired
figure; the table shows their median, min and max.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable

from . import _handwritten
from ._chains import langchain_chain, langchain_missing, rillet_chain
from ._harness import (
    Backend,
    Budget,
    Contender,
    Sample,
    Section,
    Table,
    fmt_ratio,
    fmt_us,
    run_alternating,
    stat,
    target_at_most,
)
from ._measures import stream_measure

__all__ = ("run",)

KEY = "deep_chain"
DEPTH = 20
TARGETS = ((2.5e-6, "issue 7"), (3e-6, "issue 2"))
WARMUP = 300


def _handwritten_measure(count: int, stages: int) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        started = time.perf_counter()
        received = await _handwritten.run_pipeline("anyio-fast", count, stages)
        return {"seconds": time.perf_counter() - started, "items": received}

    return measure


def run(budget: Budget) -> Section:
    """Run scenario 6 and return its report section."""
    section = Section(KEY, f"6. A chain of {DEPTH} generator steps: per-chunk cost per step")
    count = budget.size(10_000, 2_000)
    section.notes.append(
        f"Formula: per-step cost = (t({DEPTH}) - t(1)) / ({DEPTH - 1} x N), with N = {count:,} "
        f"chunks, t(k) the time to stream N chunks through `source | increment x (k-1)` (one "
        f"actor per step) to the end. Subtracting t(1) removes the source, the consumer and the "
        f"run's start-up, which do not depend on depth; what is left is {DEPTH - 1} steps each "
        f"receiving, transforming and sending N chunks. t(1) and t({DEPTH}) of one round are "
        f"paired; median/min/max are over rounds. The hand-written row is the same formula on "
        f"the anyio-fast pipeline ({DEPTH} tasks on anyio memory streams with fast paths), the "
        f"floor for an engine on these channels."
    )
    groups: list[tuple[str, Backend, str]] = []
    for backend in budget.backends:
        groups.append((f"rillet [{backend}]", backend, "rillet"))
        groups.append((f"hand-written anyio-fast [{backend}]", backend, "hand"))
    missing = langchain_missing()
    if missing is None:
        groups.append(("langchain-core [asyncio]", "asyncio", "langchain"))
    else:
        section.skipped.append(missing)
    contenders: list[Contender] = []
    for label, backend, kind in groups:
        for depth in (1, DEPTH):
            if kind == "hand":
                measure = _handwritten_measure(count, depth)
                warmup = _handwritten_measure(WARMUP, depth)
            elif kind == "rillet":
                measure = stream_measure(functools.partial(rillet_chain, depth), count)
                warmup = stream_measure(functools.partial(rillet_chain, depth), WARMUP)
            else:
                measure = stream_measure(functools.partial(langchain_chain, depth), count, form="langchain")
                warmup = stream_measure(functools.partial(langchain_chain, depth), WARMUP, form="langchain")
            contenders.append(Contender(f"{label} k={depth}", backend, measure, warmup))
    reps = budget.reps(5, 2)
    samples = run_alternating(contenders, reps, name="deep chain")
    table = Table(
        ["side", "t(1) median", f"t({DEPTH}) median", "per step per chunk (median)", "min", "max"],
        caption=f"N = {count:,} chunks, {reps} rounds",
    )
    per_step: dict[str, float] = {}
    for label, _, _ in groups:
        t1 = samples[f"{label} k=1"]["seconds"]
        tk = samples[f"{label} k={DEPTH}"]["seconds"]
        cost = stat([(b - a) / ((DEPTH - 1) * count) for a, b in zip(t1, tk, strict=True)])
        per_step[label] = cost.median
        table.add(
            label,
            fmt_us(stat(t1).median),
            fmt_us(stat(tk).median),
            fmt_us(cost.median),
            fmt_us(cost.low),
            fmt_us(cost.high),
        )
    section.tables.append(table)
    lc = "langchain-core [asyncio]"
    for backend in budget.backends:
        label = f"rillet [{backend}]"
        hand = per_step[f"hand-written anyio-fast [{backend}]"]
        line = f"{label}: {fmt_ratio(per_step[label] / hand)} the hand-written floor's per-step cost"
        if lc in per_step:
            line += (
                f"; langchain-core's per-step cost is {fmt_ratio(per_step[lc] / per_step[label])} rillet's"
            )
        section.findings.append(line)
        for target, issue in TARGETS:
            section.findings.append(
                target_at_most(f"per-step cost on {backend} ({issue})", per_step[label], target, fmt_us)
            )
    return section
