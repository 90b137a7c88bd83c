"""OpenTelemetry spans for runs: one span per step, as the steps nest (extra ``otel``).

::

    from engine.otel import trace_runs

    async with trace_runs(tracer_provider=provider) as tracing:
        await chain.ainvoke({"topic": "parrots"}, config=tracing.config)

:func:`trace_runs` subscribes to a bus (its own, or one you pass) like any subscriber,
with the ``"drop"`` policy: a slow exporter never slows the runs, it loses events, which
are counted and reported. It needs ``opentelemetry-api`` (and ``opentelemetry-sdk`` to
export): ``pip install 'rillet[otel]'``. See :func:`trace_runs` for the spans' names and
attributes (the GenAI semantic conventions' for model steps).
"""

from ._otel import SpanSubscriber as SpanSubscriber
from ._otel import trace_runs as trace_runs
from ._otelspans import Attr as Attr
from ._otelspans import TracingStatistics as TracingStatistics

__all__ = (
    "Attr",
    "SpanSubscriber",
    "TracingStatistics",
    "trace_runs",
)
