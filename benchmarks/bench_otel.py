"""Scenario 11: ``astream`` throughput with the OpenTelemetry subscriber attached.

``astream`` of prompt | model | parser, four ways on each backend: no bus; a bus with
``engine.otel.trace_runs`` attached, spans exported to the SDK's in-memory exporter
through a ``SimpleSpanProcessor`` (the exporter keeps up); and the same with an exporter
that stalls 20 ms per span and a subscriber buffer of 4 events (the exporter cannot keep
up: the runs must not slow down, and the events it lost are counted); and, for reference,
a bus with a plain subscriber of every step that takes no stream events (what observing
every step costs the engine by itself, whoever the subscriber is). Two stream lengths:
a long stream (per-chunk cost) and short runs in a row (per-step cost: a span per step).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ._chains import PROMPT_INPUT, nodes_status, rillet_prompt_chain
from ._harness import (
    Budget,
    Contender,
    Section,
    Table,
    fmt_count,
    fmt_rate,
    run_alternating,
    stat,
    target_at_most,
)

__all__ = ("run",)

KEY = "otel"
_STALL = 0.02  # seconds per exported span, for the exporter that cannot keep up
_SIDES = (
    "no bus",
    "OTel, exporter keeps up",
    "OTel, stalled exporter (capacity 4)",
    "bus, a subscriber of every step taking no stream events",
)


def _provider(stalled: bool) -> Any:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class Stalled(InMemorySpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            time.sleep(_STALL)  # a collector that answers slowly (in the exporter's thread)
            return super().export(spans)

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Stalled() if stalled else InMemorySpanExporter()))
    return provider


def _measure(side: str, tokens: int, runs: int) -> Callable[[], Any]:
    """Time ``runs`` astreams of ``tokens`` tokens each, one after the other."""

    async def measure() -> dict[str, float]:
        from engine.otel import trace_runs

        chain = rillet_prompt_chain(tokens)
        count = 0
        if side == _SIDES[0]:
            started = time.perf_counter()
            for _ in range(runs):
                async for _ in chain.astream(PROMPT_INPUT):
                    count += 1
            return {"seconds": time.perf_counter() - started, "items": count, "dropped": 0}
        if side == _SIDES[3]:
            # What observing every step costs by itself (each step sums its output for its
            # end event): the floor under any subscriber that sees every step.
            from engine import EventBus

            bus = EventBus()
            async with bus.subscribe(capacity=100_000, overflow="drop", stream_events="none") as plain:
                started = time.perf_counter()
                for _ in range(runs):
                    async for _ in chain.astream(PROMPT_INPUT, {"bus": bus}):
                        count += 1
                seconds = time.perf_counter() - started
                dropped = plain.statistics().dropped
            return {"seconds": seconds, "items": count, "dropped": dropped}
        stalled = side == _SIDES[2]
        async with trace_runs(tracer_provider=_provider(stalled), capacity=4 if stalled else 1024) as tracing:
            started = time.perf_counter()
            for _ in range(runs):
                async for _ in chain.astream(PROMPT_INPUT, tracing.config):
                    count += 1
            seconds = time.perf_counter() - started
            dropped = tracing.subscription_statistics().dropped
        return {"seconds": seconds, "items": count, "dropped": dropped}

    return measure


def _variant(budget: Budget, section: Section, tokens: int, runs: int, reps: int) -> None:
    contenders = [
        Contender(f"{side} [{b}]", b, _measure(side, tokens, runs), warmup=_measure(side, 100, 1))
        for b in budget.backends
        for side in _SIDES
    ]
    samples = run_alternating(contenders, reps, name=f"otel {tokens}x{runs}")
    table = Table(
        ["side", "tokens per run", "runs", "median tokens/s", "min", "max", "events dropped (median)"],
        caption=f"astream of prompt | model | StrOutputParser, {runs:,} run(s) of {tokens:,} tokens, {reps} reps",
    )
    for contender in contenders:
        figures = samples[contender.label]
        rates = stat([tokens * runs / s for s in figures["seconds"]])
        table.add(
            contender.label,
            fmt_count(tokens),
            fmt_count(runs),
            fmt_rate(rates.median),
            fmt_rate(rates.low),
            fmt_rate(rates.high),
            fmt_count(stat(figures["dropped"]).median),
        )
    section.tables.append(table)
    for b in budget.backends:
        # Every side runs once per round: the median of the rounds' ratios is steadier on
        # a shared machine than the ratio of two medians.
        plain = samples[f"{_SIDES[0]} [{b}]"]["seconds"]
        for side in _SIDES[1:]:
            ratios = stat([t / p for t, p in zip(samples[f"{side} [{b}]"]["seconds"], plain, strict=True)])
            line = target_at_most(
                f"{runs:,} x {tokens:,} tokens: astream time with {side} / without a bus on {b} "
                f"(median of {ratios.count} rounds)",
                ratios.median,
                1.15,
                lambda v: f"{v:.2f}x",
            )
            section.findings.append(
                line if side == _SIDES[1] else line.replace("MET: ", "").replace("MISSED: ", "")
            )


def run(budget: Budget) -> Section:
    """Run scenario 11 and return its report section."""
    section = Section(KEY, "11. astream with the OpenTelemetry subscriber (engine.otel)")
    section.notes.append(__doc__.split("\n\n", 1)[1].replace("\n", " ").strip())
    reason = nodes_status()
    if reason is not None:
        section.skipped.append(reason)
        return section
    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        section.skipped.append("opentelemetry-sdk is not installed: pip install -e '.[otel]'")
        return section
    _variant(budget, section, tokens=2_000 if budget.quick else 10_000, runs=1, reps=budget.reps(9, 3))
    _variant(budget, section, tokens=20, runs=50 if budget.quick else 200, reps=budget.reps(9, 3))
    return section
