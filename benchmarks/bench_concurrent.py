"""Scenario 5: 1,000 concurrent chains of 100 tokens each: total time and peak RSS.

Every measurement runs in a fresh interpreter (``benchmarks._worker``), which starts all
the runs at once in one task group and waits for them all. The baseline is the RSS just
before the runs start (after imports, setup, and a reset of the high-water mark); the
peak is the high-water mark at the end, so *peak - baseline* is what the runs cost.
"""

from __future__ import annotations

from ._chains import langchain_missing, nodes_status
from ._harness import (
    Budget,
    Section,
    Table,
    fmt_count,
    fmt_rate,
    fmt_ratio,
    run_workers_alternating,
    stat,
)

__all__ = ("run",)

KEY = "concurrent"


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def _variant(
    budget: Budget, section: Section, variant: str, title: str, chains: int, tokens: int, reps: int
) -> None:
    specs: list[tuple[str, dict[str, object]]] = []
    base = {"task": "concurrent", "variant": variant, "chains": chains, "tokens": tokens}
    for backend in budget.backends:
        specs.append((f"rillet [{backend}]", {**base, "side": "rillet", "backend": backend}))
    lc = "langchain-core [asyncio]"
    if langchain_missing() is None:
        specs.append((lc, {**base, "side": "langchain", "backend": "asyncio"}))
    samples = run_workers_alternating(specs, reps, name=f"concurrent {variant}")
    table = Table(
        [
            "side",
            "chunks",
            "median total time",
            "min",
            "max",
            "chunks/s",
            "peak RSS",
            "baseline RSS",
            "peak - baseline",
            "per chain",
        ],
        caption=f"{title}: {chains:,} concurrent chains x {tokens} tokens, {reps} fresh process(es) per side",
    )
    times: dict[str, float] = {}
    deltas: dict[str, float] = {}
    for label, figures in samples.items():
        seconds = stat(figures["seconds"])
        peak = stat(figures["peak_kib"]).median
        baseline = stat(figures["baseline_kib"]).median
        delta = stat(
            [p - b for p, b in zip(figures["peak_kib"], figures["baseline_kib"], strict=True)]
        ).median
        times[label] = seconds.median
        deltas[label] = delta
        table.add(
            label,
            fmt_count(figures["items"][0]),
            f"{seconds.median:.2f} s",
            f"{seconds.low:.2f} s",
            f"{seconds.high:.2f} s",
            fmt_rate(figures["items"][0] / seconds.median),
            _mib(peak),
            _mib(baseline),
            _mib(delta),
            f"{delta / chains:.1f} KiB",
        )
    section.tables.append(table)
    if lc in times:
        for label in times:
            if label != lc:
                memory = f"RSS growth {_mib(deltas[label])} vs {_mib(deltas[lc])}"
                if deltas[lc] > 0:
                    memory += f" ({deltas[label] / deltas[lc]:.2f}x langchain-core's)"
                section.findings.append(
                    f"{title}: {label} finishes {fmt_ratio(times[lc] / times[label])} faster than "
                    f"langchain-core; {memory}"
                )


def run(budget: Budget) -> Section:
    """Run scenario 5 and return its report section."""
    section = Section(KEY, "5. Concurrent chains: total time and peak RSS")
    chains = budget.size(1_000, 200)
    section.notes.append(
        f"{chains:,} runs started at once in one task group, each reading its 100 chunks to "
        "the end (rillet: `async with chain.astream(x) as s`, langchain-core: `async for`). "
        "Each figure comes from a fresh interpreter per side and repetition (sides alternate); "
        "just before the runs start (after imports and setup) the worker collects garbage and "
        "resets the RSS high-water mark (`/proc/self/clear_refs`), so baseline is the RSS then, "
        "peak is the high-water mark (`VmHWM`) at the end, and peak - baseline is what the "
        "concurrent runs cost. `VmHWM` rather than `ru_maxrss`: in a child started by the "
        "benchmark process, Linux folds the parent's RSS at `exec` time (~76 MiB here) into "
        "`ru_maxrss`, and `clear_refs` does not reset that part (see `benchmarks/_worker.py`)."
    )
    missing = langchain_missing()
    if missing is not None:
        section.skipped.append(missing)
    _variant(budget, section, "engine", "Engine only: 3-step generator chain", chains, 100, budget.reps(3, 1))
    reason = nodes_status()
    if reason is not None:
        section.skipped.append(f"prompt | model | parser: {reason}")
    else:
        # langchain-core's prompt|model|parser streams ~2k chunks/s here: one process per side.
        _variant(
            budget, section, "nodes", "prompt | model | StrOutputParser", budget.size(1_000, 100), 100, 1
        )
    return section
