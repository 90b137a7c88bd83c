"""Running contenders side by side, and turning their samples into report tables.

A *contender* is one thing being measured (rillet on trio, a hand-written pipeline on
asyncio, langchain-core...). ``run_alternating`` runs one warm-up repetition of every
contender, then ``reps`` repetitions in which the contenders take turns (the order is
rotated every repetition, so none always runs first or last). Each measurement runs in
its own event loop (``anyio.run``) after a ``gc.collect()``, and times itself with
``time.perf_counter`` inside that loop, so loop start-up is never counted.

Only ratios measured in one process run mean anything on a shared machine: absolute
figures are printed for context.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio

__all__ = (
    "Backend",
    "Budget",
    "Contender",
    "Sample",
    "Samples",
    "Section",
    "Stat",
    "Table",
    "fmt_count",
    "fmt_ratio",
    "fmt_rate",
    "fmt_us",
    "progress",
    "run_alternating",
    "run_worker",
    "run_workers_alternating",
    "stat",
    "target_at_least",
    "target_at_most",
)

Backend = Literal["trio", "asyncio"]

#: What one repetition of a contender returns: named figures (seconds, counts...).
Sample = Mapping[str, float]
#: Every repetition's figures, per contender label, per figure name.
Samples = dict[str, dict[str, list[float]]]


@dataclass(frozen=True)
class Budget:
    """How much work a run does: the full suite, or ``--quick`` (under a minute).

    Attributes:
        quick: Whether this is the quick run.
        backends: The backends rillet and the hand-written pipelines run on.
    """

    quick: bool
    backends: tuple[Backend, ...]

    def reps(self, full: int, quick: int = 2) -> int:
        """Measured repetitions (the warm-up repetition comes on top)."""
        return quick if self.quick else full

    def size(self, full: int, quick: int) -> int:
        """A problem size: ``full`` normally, ``quick`` under ``--quick``."""
        return quick if self.quick else full


@dataclass(frozen=True)
class Contender:
    """One thing to measure.

    Attributes:
        label: The row label in the report (unique within a scenario).
        backend: The event loop it runs on.
        measure: One repetition: returns its figures (see :data:`Sample`).
        warmup: The warm-up repetition, when it should differ from ``measure`` (for
            example a smaller size for a slow reference).
    """

    label: str
    backend: Backend
    measure: Callable[[], Awaitable[Sample]]
    warmup: Callable[[], Awaitable[object]] | None = None


def progress(message: str) -> None:
    """A progress line on stderr (the report itself goes to stdout)."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def run_alternating(contenders: Sequence[Contender], reps: int, *, name: str = "") -> Samples:
    """Warm every contender up once, then run ``reps`` rotating rounds of all of them."""
    samples: Samples = {c.label: {} for c in contenders}
    started = time.perf_counter()
    for contender in contenders:
        gc.collect()
        anyio.run(contender.warmup or contender.measure, backend=contender.backend)
    for rep in range(reps):
        shift = rep % len(contenders)
        for contender in [*contenders[shift:], *contenders[:shift]]:
            gc.collect()
            figures = anyio.run(contender.measure, backend=contender.backend)
            per_label = samples[contender.label]
            for key, value in figures.items():
                per_label.setdefault(key, []).append(float(value))
    progress(f"{name}: {len(contenders)} contenders x {reps} reps in {time.perf_counter() - started:.1f} s")
    return samples


@dataclass(frozen=True)
class Stat:
    """Median, min and max of one figure over the repetitions."""

    median: float
    low: float
    high: float
    count: int


def stat(values: Sequence[float]) -> Stat:
    """The :class:`Stat` of ``values`` (which must not be empty)."""
    return Stat(statistics.median(values), min(values), max(values), len(values))


# -- formatting -------------------------------------------------------------------------


def fmt_rate(per_second: float) -> str:
    """``152.3k/s`` style."""
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f}M/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f}k/s"
    return f"{per_second:.0f}/s"


def fmt_us(seconds: float) -> str:
    """A duration in microseconds (or milliseconds/seconds when large)."""
    us = seconds * 1e6
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1_000:
        return f"{us / 1e3:.2f} ms"
    if us >= 100:
        return f"{us:.0f} µs"
    return f"{us:.2f} µs"


def fmt_count(value: float) -> str:
    """An integer count with thousands separators."""
    return f"{value:,.0f}"


def fmt_ratio(ratio: float) -> str:
    """``12.3x`` style."""
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def target_at_least(what: str, value: float, target: float, shown: Callable[[float], str]) -> str:
    """A verdict line for a figure that must reach ``target``."""
    if value >= target:
        return f"MET: {what} = {shown(value)} (target >= {shown(target)}; {value / target:.2f}x the target)"
    short = 1 - value / target
    return (
        f"MISSED: {what} = {shown(value)} (target >= {shown(target)}; "
        f"{short:.0%} short, needs {target / value:.2f}x)"
    )


def target_at_most(what: str, value: float, target: float, shown: Callable[[float], str]) -> str:
    """A verdict line for a figure that must stay at or below ``target``."""
    if value <= target:
        return f"MET: {what} = {shown(value)} (target <= {shown(target)})"
    return (
        f"MISSED: {what} = {shown(value)} (target <= {shown(target)}; "
        f"over by {shown(value - target)}, {value / target:.2f}x the target)"
    )


# -- report -----------------------------------------------------------------------------


@dataclass
class Table:
    """A markdown table."""

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""

    def add(self, *cells: str) -> None:
        """Append a row."""
        self.rows.append(list(cells))

    def markdown(self) -> str:
        """The table as GitHub markdown (with its caption above it, if any)."""
        lines = [f"**{self.caption}**", ""] if self.caption else []
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.headers))) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        return "\n".join(lines)


@dataclass
class Section:
    """One scenario's part of the report.

    Attributes:
        key: The scenario's ``--only`` name.
        title: The heading.
        notes: Markdown paragraphs: what is measured, and how.
        tables: The figures.
        findings: Ratio and target lines (rendered as a bullet list).
        skipped: Why the scenario (or a variant of it) did not run, if it did not.
        seconds: How long the scenario took.
    """

    key: str
    title: str
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def markdown(self) -> str:
        """The section as markdown."""
        parts = [f"## {self.title}", ""]
        for note in self.notes:
            parts += [note, ""]
        for line in self.skipped:
            parts += [f"> SKIPPED: {line}", ""]
        for table in self.tables:
            parts += [table.markdown(), ""]
        if self.findings:
            parts += [*(f"- {line}" for line in self.findings), ""]
        parts += [f"_Scenario wall time: {self.seconds:.1f} s._", ""]
        return "\n".join(parts)


def run_worker(spec: Mapping[str, object], *, timeout: float = 600.0) -> dict[str, float]:
    """Run one ``benchmarks._worker`` measurement in a fresh interpreter; return its figures."""
    import json
    import subprocess
    from pathlib import Path

    completed = subprocess.run(
        [sys.executable, "-m", f"{__package__}._worker", json.dumps(dict(spec))],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"worker {dict(spec)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    figures: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return figures


def run_workers_alternating(
    specs: Sequence[tuple[str, Mapping[str, object]]], reps: int, *, name: str = ""
) -> Samples:
    """``reps`` rotating rounds of fresh-process measurements (no warm-up: every process is cold)."""
    samples: Samples = {label: {} for label, _ in specs}
    started = time.perf_counter()
    for rep in range(reps):
        shift = rep % len(specs)
        for label, spec in [*specs[shift:], *specs[:shift]]:
            for key, value in run_worker(spec).items():
                samples[label].setdefault(key, []).append(float(value))
    progress(f"{name}: {len(specs)} sides x {reps} fresh processes in {time.perf_counter() - started:.1f} s")
    return samples
