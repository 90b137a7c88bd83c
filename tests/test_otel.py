"""engine.otel: spans for runs, checked with the OpenTelemetry SDK's in-memory exporter.

Every async test runs on trio and asyncio. A second, lossless subscription on the same bus
records the events the spans are checked against.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
import trio
import trio.testing
from anthropic_server import AnthropicServer, TextStream
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from engine import EventBus, RunnableLambda, RunnablePassthrough, StampedEvent, adispatch_custom_event
from engine.otel import Attr, trace_runs
from engine.testing import GatedSource
from nodes import (
    AIMessageChunk,
    ChatAnthropic,
    ChatPromptTemplate,
    ScriptedChatModel,
    ScriptedReply,
    StrOutputParser,
)

HANG_GUARD = 10.0  # seconds; only bounds a wait that should end at once, never paces a test
PARROT = "Why did the parrot talk?"


def provider_with(exporter: SpanExporter, *, simple: bool = True) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter) if simple else _BareProcessor(exporter))
    return provider


class _BareProcessor(SpanProcessor):
    """Exports each span as it ends and lets the exporter's errors through (unlike the SDK's)."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def on_end(self, span: ReadableSpan) -> None:
        self.exporter.export([span])


class _RaisingExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise ConnectionError("collector unreachable")


class _GatedExporter(InMemorySpanExporter):
    """Blocks its first export until the test opens the gate (a collector that stalls)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.gate.wait(HANG_GUARD)
        return super().export(spans)


def prompt_chain(model: Any = None) -> Any:
    model = model if model is not None else ScriptedChatModel(replies=[PARROT])
    return ChatPromptTemplate.from_template("tell me about {topic}") | model | StrOutputParser()


def by_run_id(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {str(span.attributes[Attr.RUN_ID]): span for span in spans if span.attributes}


def starts(events: list[StampedEvent]) -> dict[str, StampedEvent]:
    return {e["run_id"]: e for e in events if e["event"].endswith("_start")}


async def test_one_span_per_step_named_and_parented_as_the_steps_are() -> None:
    """Each step is one ended span named after it, whose parent is its parent step's span."""
    exporter = InMemorySpanExporter()
    bus = EventBus()
    with anyio.fail_after(HANG_GUARD):
        async with bus.subscribe(capacity=1000) as record:
            async with trace_runs(bus, tracer_provider=provider_with(exporter)):
                assert await prompt_chain().ainvoke({"topic": "parrots"}, {"bus": bus}) == PARROT
            events: list[StampedEvent] = record.receive_available(1000)  # type: ignore[assignment]
    spans = by_run_id(exporter.get_finished_spans())
    started = starts(events)
    assert set(spans) == set(started)
    assert len(spans) == 4
    trace_ids = {span.context.trace_id for span in spans.values() if span.context}
    assert len(trace_ids) == 1
    for run_id, event in started.items():
        span = spans[run_id]
        assert span.name == event["name"]
        assert span.end_time is not None
        if event["parent_ids"]:
            parent = spans[event["parent_ids"][-1]]
            assert span.parent is not None and parent.context is not None
            assert span.parent.span_id == parent.context.span_id
        else:
            assert span.parent is None
    assert spans[events[0]["run_id"]].name == "RunnableSequence"
    kinds = {span.name: span.kind for span in spans.values()}
    assert kinds["ScriptedChatModel"] is SpanKind.CLIENT and kinds["StrOutputParser"] is SpanKind.INTERNAL


async def test_spans_take_the_events_times() -> None:
    """Spans start and end at their step's start and end events' times, on one epoch offset."""
    exporter = InMemorySpanExporter()
    bus = EventBus()
    with anyio.fail_after(HANG_GUARD):
        async with bus.subscribe(capacity=1000) as record:
            async with trace_runs(bus, tracer_provider=provider_with(exporter)):
                await prompt_chain().ainvoke({"topic": "parrots"}, {"bus": bus})
            events: list[StampedEvent] = record.receive_available(1000)  # type: ignore[assignment]
    spans = by_run_id(exporter.get_finished_spans())
    ends = {e["run_id"]: e["time"] for e in events if e["event"].endswith("_end")}
    root = events[0]
    root_start = spans[root["run_id"]].start_time
    assert root_start is not None
    for run_id, event in starts(events).items():
        span = spans[run_id]
        assert span.start_time is not None and span.end_time is not None
        assert abs((span.start_time - root_start) - round((event["time"] - root["time"]) * 1e9)) <= 1
        assert abs((span.end_time - root_start) - round((ends[run_id] - root["time"]) * 1e9)) <= 1


async def test_tags_metadata_and_time_to_first_chunk_are_attributes() -> None:
    """Tags, each metadata key, the run ids and the time to the first chunk are span attributes."""
    exporter = InMemorySpanExporter()
    chain = prompt_chain().with_config(
        tags=["nightly"], metadata={"user": "ann", "tries": 3, "cfg": {"a": 1}}
    )
    with anyio.fail_after(HANG_GUARD):
        async with trace_runs(tracer_provider=provider_with(exporter)) as tracing:
            await chain.ainvoke({"topic": "parrots"}, tracing.config)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    root = spans["RunnableSequence"].attributes
    assert root is not None
    assert root[Attr.TAGS] == ("nightly",)
    assert root[Attr.METADATA + "user"] == "ann"
    assert root[Attr.METADATA + "tries"] == 3
    assert root[Attr.METADATA + "cfg"] == "{'a': 1}"
    assert root[Attr.KIND] == "chain" and Attr.PARENT_RUN_ID not in root
    model = spans["ScriptedChatModel"]
    assert model.attributes is not None
    assert model.attributes[Attr.PARENT_RUN_ID] == root[Attr.RUN_ID]
    assert "nightly" in model.attributes[Attr.TAGS]  # type: ignore[operator]
    first = model.attributes[Attr.TIME_TO_FIRST_CHUNK]
    assert isinstance(first, float) and first >= 0
    (event,) = [e for e in model.events if e.name == "first_chunk"]
    assert model.start_time is not None
    assert abs(event.timestamp - model.start_time - round(first * 1e9)) <= 1


async def test_a_scripted_model_span_has_the_genai_attributes() -> None:
    """A model step's span has the operation, model, token usage, finish reason and response id."""
    reply = ScriptedReply(
        content=PARROT,
        preamble=AIMessageChunk(
            content="", id="msg_1", response_metadata={"model_name": "scripted-1", "stop_reason": "end_turn"}
        ),
        usage={"input_tokens": 11, "output_tokens": 5},
    )
    model = ScriptedChatModel(replies=[reply]).with_config(metadata={"ls_provider": "scripted"})
    exporter = InMemorySpanExporter()
    with anyio.fail_after(HANG_GUARD):
        async with trace_runs(tracer_provider=provider_with(exporter)) as tracing:
            assert await prompt_chain(model).ainvoke({"topic": "parrots"}, tracing.config) == PARROT
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "ScriptedChatModel"]
    attributes = dict(span.attributes or {})
    assert {k: v for k, v in attributes.items() if k.startswith("gen_ai.")} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "scripted",
        "gen_ai.system": "scripted",
        "gen_ai.request.model": "scripted-1",
        "gen_ai.response.model": "scripted-1",
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.response.id": "msg_1",
    }
    assert span.kind is SpanKind.CLIENT


async def test_a_chat_anthropic_span_has_the_genai_attributes(server: AnthropicServer) -> None:
    """ChatAnthropic against the loopback server: provider, model, usage, stop reason, first token."""
    server.script(TextStream(["Hel", "lo"], input_tokens=7))
    model = ChatAnthropic(model="claude-test-model", api_key="k", base_url=server.base_url, max_retries=0)
    exporter = InMemorySpanExporter()
    with anyio.fail_after(HANG_GUARD):
        async with trace_runs(tracer_provider=provider_with(exporter)) as tracing:
            assert await (model | StrOutputParser()).ainvoke("hi", tracing.config) == "Hello"
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "ChatAnthropic"]
    attributes = dict(span.attributes or {})
    assert {k: v for k, v in attributes.items() if k.startswith("gen_ai.")} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-test-model",
        "gen_ai.response.model": "claude-test-model",
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 2,
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.response.id": "msg_test_0001",
    }
    assert isinstance(attributes[Attr.TIME_TO_FIRST_CHUNK], float)
    assert span.kind is SpanKind.CLIENT and span.status.status_code is StatusCode.UNSET


async def test_a_custom_event_is_an_event_on_its_steps_span() -> None:
    """adispatch_custom_event inside a step adds a span event with its name and data."""

    async def work(value: str) -> str:
        await adispatch_custom_event("progress", {"done": 3, "of": "parrots"})
        return value

    exporter = InMemorySpanExporter()
    with anyio.fail_after(HANG_GUARD):
        async with trace_runs(tracer_provider=provider_with(exporter)) as tracing:
            assert (
                await (prompt_chain() | RunnableLambda(work)).ainvoke({"topic": "x"}, tracing.config)
                == PARROT
            )
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "work"]
    (event,) = [e for e in span.events if e.name == "progress"]
    assert dict(event.attributes or {}) == {"done": 3, "of": "parrots"}


async def test_a_failed_step_has_error_status_and_an_exception_event() -> None:
    """The failing step's span and its parents' have status ERROR, error.type and the exception."""

    def explode(_: Any) -> str:
        raise ValueError("no parrots today")

    chain = prompt_chain() | RunnableLambda(explode)
    exporter = InMemorySpanExporter()
    with anyio.fail_after(HANG_GUARD), pytest.raises(ValueError, match="no parrots"):
        async with trace_runs(tracer_provider=provider_with(exporter)) as tracing:
            await chain.ainvoke({"topic": "parrots"}, tracing.config)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    for name in ("explode", "RunnableSequence"):
        span = spans[name]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError: no parrots today"
        assert span.attributes is not None and span.attributes["error.type"] == "ValueError"
        (exception,) = [e for e in span.events if e.name == "exception"]
        assert exception.attributes is not None
        assert exception.attributes["exception.message"] == "no parrots today"
    assert spans["ScriptedChatModel"].status.status_code is StatusCode.UNSET
    assert tracing.statistics().spans_open == 0


async def test_a_consumer_that_leaves_early_marks_the_spans_cancelled_and_ends_them() -> None:
    """Leaving astream early ends every span; the stopped ones carry rillet.cancelled, status UNSET."""
    source: GatedSource[int] = GatedSource(range(100))
    source.release(3)
    exporter = InMemorySpanExporter()
    with anyio.fail_after(HANG_GUARD):
        async with (
            trace_runs(tracer_provider=provider_with(exporter)) as tracing,
            (source | RunnablePassthrough()).astream(None, tracing.config) as chunks,
        ):
            async for _ in chunks:
                break
    spans = exporter.get_finished_spans()
    assert len(spans) == 3 and all(span.end_time is not None for span in spans)
    for span in spans:
        assert span.attributes is not None and span.attributes[Attr.CANCELLED] is True
        assert span.status.status_code is StatusCode.UNSET
        assert Attr.INCOMPLETE not in span.attributes
    statistics = tracing.statistics()
    assert statistics.spans_started == statistics.spans_ended == 3 and statistics.spans_open == 0


async def test_spans_still_open_when_the_block_ends_are_ended_as_incomplete() -> None:
    """A run still going when the block ends leaves no span open: they end marked incomplete."""
    source: GatedSource[int] = GatedSource(range(3))
    exporter = InMemorySpanExporter()
    chain = source | RunnableLambda(lambda x: x + 1)
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as group:
            async with trace_runs(tracer_provider=provider_with(exporter)) as tracing:
                group.start_soon(chain.ainvoke, None, tracing.config)
                await anyio.wait_all_tasks_blocked()
            spans = exporter.get_finished_spans()
            assert len(spans) == 3
            for span in spans:
                assert span.attributes is not None and span.attributes[Attr.INCOMPLETE] is True
            assert tracing.statistics().spans_open == 0
            source.release_all()


async def test_root_spans_start_in_the_parent_context_given() -> None:
    """With parent_context, a run's root span is a child of the span in that context."""
    exporter = InMemorySpanExporter()
    provider = provider_with(exporter)
    request = provider.get_tracer("app").start_span("request")
    with anyio.fail_after(HANG_GUARD):
        async with trace_runs(
            tracer_provider=provider, parent_context=trace.set_span_in_context(request)
        ) as t:
            await prompt_chain().ainvoke({"topic": "parrots"}, t.config)
    request.end()
    (root,) = [s for s in exporter.get_finished_spans() if s.name == "RunnableSequence"]
    assert root.parent is not None and root.parent.span_id == request.get_span_context().span_id
    assert root.instrumentation_scope is not None and root.instrumentation_scope.name == "rillet"


async def test_a_stalled_exporter_never_slows_the_runs_and_drops_are_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With a stalled exporter the runs finish; lost events are counted, logged once and marked."""
    exporter = _GatedExporter()
    chain = prompt_chain()
    inputs = [{"topic": topic} for topic in ("parrots", "owls", "crows")]
    caplog.set_level(logging.WARNING, logger="rillet")
    with anyio.fail_after(HANG_GUARD):
        async with trace_runs(tracer_provider=provider_with(exporter), capacity=1) as tracing:
            assert await chain.ainvoke(inputs[0], tracing.config) == PARROT
            # The run's end sent its events to the worker thread, stalled on the first span.
            await anyio.wait_all_tasks_blocked()
            assert await chain.abatch(inputs[1:], tracing.config) == [PARROT] * 2
            # The runs ended while the exporter was still stalled on its first span.
            assert not exporter.gate.is_set()
            dropped = tracing.subscription_statistics().dropped
            assert dropped > 0
            exporter.gate.set()
    statistics = tracing.statistics()
    assert statistics.events_dropped == dropped
    assert statistics.spans_open == 0 and statistics.spans_started == statistics.spans_ended
    spans = exporter.get_finished_spans()
    assert len(spans) == statistics.spans_started
    assert any(span.attributes and span.attributes.get(Attr.EVENTS_DROPPED) for span in spans)
    warnings = [r for r in caplog.records if r.name == "rillet" and "lost" in r.getMessage()]
    assert len(warnings) == 1


async def test_an_exporter_that_raises_is_logged_once_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exporter that raises on every span: same result, one error logged, every failure counted."""
    exporter = _RaisingExporter()
    chain = prompt_chain()
    expected = await chain.ainvoke({"topic": "parrots"})
    caplog.set_level(logging.ERROR, logger="rillet")
    with anyio.fail_after(HANG_GUARD):
        async with trace_runs(tracer_provider=provider_with(exporter, simple=False)) as tracing:
            assert await chain.ainvoke({"topic": "parrots"}, tracing.config) == expected
            assert [c async for c in chain.astream({"topic": "owls"}, tracing.config)] == [
                c async for c in chain.astream({"topic": "owls"})
            ]
    errors = [r for r in caplog.records if r.name == "rillet"]
    assert len(errors) == 1 and "ConnectionError" in errors[0].getMessage()
    assert exporter.calls == 8 and tracing.statistics().errors == 8
    assert tracing.statistics().spans_open == 0


async def test_tracing_does_not_change_what_a_run_yields() -> None:
    """astream's chunks and ainvoke's result are the same with and without the subscriber."""
    chain = prompt_chain()
    plain = [c async for c in chain.astream({"topic": "parrots"})]
    exporter = InMemorySpanExporter()
    with anyio.fail_after(HANG_GUARD):
        async with trace_runs(tracer_provider=provider_with(exporter)) as tracing:
            traced = [c async for c in chain.astream({"topic": "parrots"}, tracing.config)]
    assert traced == plain and len(plain) > 1
    assert len(exporter.get_finished_spans()) == 4


async def test_the_subscriber_takes_only_each_steps_first_chunk_and_never_blocks() -> None:
    """Its subscription drops rather than waits and gets one stream event per step, not one per chunk."""
    exporter = InMemorySpanExporter()
    with anyio.fail_after(HANG_GUARD):
        async with trace_runs(tracer_provider=provider_with(exporter)) as tracing:
            await prompt_chain().ainvoke({"topic": "parrots"}, tracing.config)
    subscription = tracing.subscription_statistics()
    assert subscription.overflow == "drop" and subscription.stream_events == "first"
    # 4 steps: a start, a first chunk and an end each.
    assert subscription.delivered == 12 and tracing.statistics().events == 12


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True])
async def test_a_bad_capacity_is_refused_before_anything_is_traced(capacity: Any) -> None:
    """A capacity that is not an int >= 1 is refused at once, naming the capacity."""
    with pytest.raises((TypeError, ValueError), match="capacity"):
        async with trace_runs(tracer_provider=provider_with(InMemorySpanExporter()), capacity=capacity):
            pass


def test_without_opentelemetry_the_import_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Importing engine.otel without opentelemetry raises an ImportError naming the extra."""
    for name in ("engine.otel", "engine._otel", "engine._otelspans"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[otel\]'"):
        importlib.import_module("engine.otel")


@pytest.mark.trio
@pytest.mark.parametrize("nested", [False, True])
async def test_a_long_runs_finished_steps_are_exported_before_the_run_ends(
    autojump_clock: trio.testing.MockClock, nested: bool
) -> None:
    """Events wait for their run's end at most about a second (loop time), with no other
    event to come: the span of a step that finished early reaches the exporter while the
    run still waits; also for a traced run started inside an untraced one."""
    exporter = InMemorySpanExporter()
    gate = trio.Event()

    async def held(value: int) -> int:
        await gate.wait()
        return value

    chain = RunnableLambda(lambda value: value, name="quick") | RunnableLambda(held, name="held")
    async with (
        trace_runs(tracer_provider=provider_with(exporter)) as tracing,
        trio.open_nursery() as nursery,
    ):
        if nested:
            # The outer run is not traced: the inner run's end carries its parent's id.
            outer = RunnableLambda(lambda value: chain.invoke(value, tracing.config), name="outer")
            nursery.start_soon(outer.ainvoke, 1)
        else:
            nursery.start_soon(chain.ainvoke, 1, tracing.config)
        for _ in range(100_000):  # the worker thread's export: real time, virtual clock
            if exporter.get_finished_spans():
                break
            await trio.sleep(0.001)
        assert [span.name for span in exporter.get_finished_spans()] == ["quick"]
        gate.set()
    assert len(exporter.get_finished_spans()) == 3
