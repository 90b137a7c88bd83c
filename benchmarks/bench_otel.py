"""Scenario 11: ``astream`` throughput with the OpenTelemetry subscriber attached.

``astream`` of prompt | model | parser, four ways on each backend: no bus; a bus with
``engine.otel.trace_runs`` attached, spans exported to the SDK's in-memory exporter
through a ``SimpleSpanProcessor`` (the exporter keeps up); and the same with an exporter
that stalls 20 ms per span and a subscriber buffer of 4 events (the exporter cannot keep
up: the runs must not slow down, and the events it lost are counted); and, for reference,
a bus with a plain subscriber of every step that takes no stream events (what observing
every step costs the engine by itself, whoever the subscriber is). Two stream lengths:
a long stream (per-chunk cost: the throughput target, within 15% of no bus) and short
runs in a row (per-step cost: a span per step), where what tracing adds to a run is set
beside what the SDK alone takes to make that run's spans, measured without the engine.
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
        options = {"capacity": 4} if stalled else {}  # else trace_runs's default
        async with trace_runs(tracer_provider=_provider(stalled), **options) as tracing:
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
            what = (
                f"{runs:,} x {tokens:,} tokens: astream time with {side} / without a bus on {b} "
                f"(median of {ratios.count} rounds)"
            )
            if runs == 1 and side == _SIDES[1]:
                # The target is throughput: a stream long enough that per-chunk cost is
                # what counts (see _per_run_cost for short runs).
                section.findings.append(target_at_most(what, ratios.median, 1.15, lambda v: f"{v:.2f}x"))
            else:
                section.findings.append(f"{what} = {ratios.median:.2f}x")
        if runs > 1:
            section.findings.append(_per_run_cost(samples, b, runs))


def _per_run_cost(samples: dict[str, dict[str, list[float]]], backend: str, runs: int) -> str:
    """What tracing adds to one short run, beside what the SDK alone takes for its spans."""
    plain = samples[f"{_SIDES[0]} [{backend}]"]["seconds"]
    traced = samples[f"{_SIDES[1]} [{backend}]"]["seconds"]
    added = stat([(t - p) / runs for t, p in zip(traced, plain, strict=True)]).median
    floor = _sdk_seconds_per_run()
    return (
        f"short runs on {backend}: tracing adds {added * 1e6:,.0f} us per run of 4 steps; the "
        f"OpenTelemetry SDK alone takes {floor * 1e6:,.0f} us to start and end those 4 spans "
        f"(same attributes, same processor and exporter, no engine), "
        f"{floor / (stat(plain).median / runs):.0%} of an untraced run"
    )


def _sdk_seconds_per_run(runs: int = 2_000) -> float:
    """Seconds the SDK takes for one short run's spans, driven directly: a root span and
    three children, each with the attributes ``engine.otel`` gives a step, a
    ``first_chunk`` event on each child. The floor under any subscriber that makes real
    spans: no engine, no bus, no thread."""
    from opentelemetry import trace

    tracer = _provider(stalled=False).get_tracer("rillet")
    attributes = {
        "rillet.run_id": "0" * 36,
        "rillet.parent_run_id": "1" * 36,
        "rillet.kind": "chain",
        "rillet.tags": ("seq:step:1",),
    }

    def one_run() -> None:
        now = time.time_ns()
        root = tracer.start_span("RunnableSequence", start_time=now, attributes=attributes)
        context = trace.set_span_in_context(root)
        for name in ("ChatPromptTemplate", "ScriptedChatModel", "StrOutputParser"):
            span = tracer.start_span(name, context=context, start_time=now, attributes=attributes)
            span.set_attribute("rillet.time_to_first_chunk", 0.001)
            span.add_event("first_chunk", timestamp=now)
            span.end(end_time=now)
        root.end(end_time=now)

    for _ in range(runs // 10):
        one_run()
    started = time.perf_counter()
    for _ in range(runs):
        one_run()
    return (time.perf_counter() - started) / runs


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
