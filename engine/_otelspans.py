"""Turning a bus's stamped events into OpenTelemetry spans (``engine.otel``'s core).

:class:`SpanBook` is plain synchronous code with no event loop in sight: ``engine._otel``
hands it batches of events in a worker thread, so that span processors and exporters
(which may block on I/O) never run on the event loop. It keeps one open span per step
it saw start, ends it when the step's end or error arrives, and ends whatever is still
open when told to finish, so no span is ever left open.

Event times are the run's event loop clock (monotonic, seconds); spans get them as epoch
nanoseconds through one offset measured when the subscriber opened.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._events import EventPhase, kind_of, phase_of
from ._step import RunCancelled

__all__ = ("Attr", "SpanBook", "TracingStatistics")

_LOG = logging.getLogger("rillet")

_MODEL_KINDS = {"chat_model": "chat", "llm": "text_completion"}
# Providers the engine's own model nodes speak to, by their default step name; a step's
# ``ls_provider`` metadata (langchain-core's key) says it for any other.
_PROVIDERS = {"ChatAnthropic": "anthropic"}
_PRIMITIVES = (str, bool, int, float)


class Attr:
    """The attribute names ``engine.otel`` sets besides the GenAI conventions' own."""

    RUN_ID = "rillet.run_id"
    PARENT_RUN_ID = "rillet.parent_run_id"
    KIND = "rillet.kind"
    TAGS = "rillet.tags"
    METADATA = "rillet.metadata."
    TIME_TO_FIRST_CHUNK = "rillet.time_to_first_chunk"
    CANCELLED = "rillet.cancelled"
    EVENTS_DROPPED = "rillet.events_dropped"
    INCOMPLETE = "rillet.incomplete"


@attrs.frozen
class TracingStatistics:
    """A snapshot of an OpenTelemetry subscriber (:class:`engine.otel.SpanSubscriber`).

    Attributes:
        events: Events turned into span operations so far.
        spans_started: Spans started.
        spans_ended: Spans ended (by their step's end or error, or at the finish).
        spans_open: Spans started and not yet ended.
        events_dropped: Events the runs published that the subscriber lost because its
            buffer was full (its exporter was slower than the runs).
        errors: Span operations that raised (a span processor or exporter that failed);
            the first is logged, the run never sees any.
    """

    events: int
    spans_started: int
    spans_ended: int
    spans_open: int
    events_dropped: int
    errors: int


@attrs.define(eq=False)
class _Open:
    """A span started for a step, and what its end needs to know."""

    span: trace.Span
    started: float
    kind: str
    #: The run id of the top-level run it belongs to (its own for a root step).
    root: str
    #: Whether ``gen_ai.request.model`` was set at start (from the step's metadata).
    request_model: bool = False
    first_chunk: float | None = None
    dropped: int = 0


def attribute_value(value: Any) -> Any:
    """``value`` as an OpenTelemetry attribute value (a primitive, a list of one
    primitive type, or else its ``str``); ``None`` for no value."""
    if value is None or isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items = list(value)
        if (
            items
            and all(type(item) is type(items[0]) for item in items)
            and isinstance(items[0], _PRIMITIVES)
        ):
            return items
    return str(value)


def _field(value: Any, key: str) -> Any:
    # A message and its usage answer both ways (attributes, or keys as a dict).
    if isinstance(value, Mapping):
        return value.get(key)
    return getattr(value, key, None)


@attrs.define(eq=False)
class SpanBook:
    """The spans of the steps seen so far; fed events in order, from one thread at a time.

    Attributes:
        tracer: Where spans are started.
        offset_ns: Epoch nanoseconds minus the event loop clock's, in nanoseconds.
        parent_context: The context root spans start in (``None``: a new trace each).
    """

    tracer: trace.Tracer
    offset_ns: int
    parent_context: otel_context.Context | None = None
    _open: dict[str, _Open] = attrs.field(factory=dict)
    _last_time: float | None = None
    _events: int = 0
    _started: int = 0
    _ended: int = 0
    _dropped: int = 0
    _errors: int = 0

    def statistics(self) -> TracingStatistics:
        """A snapshot of what was done so far."""
        return TracingStatistics(
            events=self._events,
            spans_started=self._started,
            spans_ended=self._ended,
            spans_open=len(self._open),
            events_dropped=self._dropped,
            errors=self._errors,
        )

    def take_all(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Apply ``events`` in order; a span operation that raises is counted (the first
        logged) and the rest go on."""
        for event in events:
            try:
                self._take(event)
            except Exception as exc:  # a processor or exporter failed: never the run's business
                self._failed(exc)

    def finish(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Apply the last ``events``, then end every span still open (marked incomplete)."""
        self.take_all(events)
        self._close_open(list(self._open), incomplete=True)

    # -- one event --------------------------------------------------------------------

    def _take(self, event: Mapping[str, Any]) -> None:
        self._events += 1
        phase = phase_of(event)
        if phase is EventPhase.DROPPED:
            self._lost(int(event["data"]["dropped"]))
            return
        time = event.get("time")
        if isinstance(time, float):
            self._last_time = time
        if phase is EventPhase.START:
            self._start(event)
            return
        record = self._open.get(event["run_id"])
        if record is None:
            return  # its start was lost (or it is not a step's event)
        if phase is EventPhase.STREAM:
            if record.first_chunk is None:
                self._first_chunk(record, self._time(event))
        elif phase is EventPhase.END:
            self._end(event, record)
        elif phase is EventPhase.ERROR:
            self._error(event, record)
        elif phase is EventPhase.CUSTOM:
            record.span.add_event(
                str(event["name"]),
                _custom_attributes(event.get("data")),
                timestamp=self._ns(self._time(event)),
            )

    def _time(self, event: Mapping[str, Any]) -> float:
        time = event.get("time")
        if isinstance(time, float):
            return time
        return self._last_time if self._last_time is not None else 0.0

    def _ns(self, time: float) -> int:
        return self.offset_ns + int(time * 1e9)

    def _start(self, event: Mapping[str, Any]) -> None:
        run_id = event["run_id"]
        kind = kind_of(event) or "chain"
        parent: _Open | None = None
        for ancestor in reversed(event.get("parent_ids") or ()):
            parent = self._open.get(ancestor)
            if parent is not None:
                break
        # Never the worker thread's ambient context: a root span starts a trace, or
        # continues the one the subscriber was given.
        base = self.parent_context or otel_context.Context()
        start_context = base if parent is None else trace.set_span_in_context(parent.span, base)
        time = self._time(event)
        span_kind = SpanKind.CLIENT if kind in _MODEL_KINDS else SpanKind.INTERNAL
        attributes = _start_attributes(event, kind)
        span = self.tracer.start_span(
            str(event["name"]),
            context=start_context,
            kind=span_kind,
            attributes=attributes,
            start_time=self._ns(time),
        )
        parents = event.get("parent_ids")
        root = parents[0] if parents else run_id
        self._open[run_id] = _Open(span, time, kind, root, "gen_ai.request.model" in attributes)
        self._started += 1

    def _first_chunk(self, record: _Open, time: float) -> None:
        record.first_chunk = time
        record.span.set_attribute(Attr.TIME_TO_FIRST_CHUNK, time - record.started)
        record.span.add_event("first_chunk", timestamp=self._ns(time))

    def _end(self, event: Mapping[str, Any], record: _Open) -> None:
        data = event.get("data")
        if record.kind in _MODEL_KINDS and isinstance(data, Mapping):
            _model_result(record, data.get("output"))
        self._close(event["run_id"], record, self._time(event))

    def _error(self, event: Mapping[str, Any], record: _Open) -> None:
        data = event.get("data")
        error = data.get("error") if isinstance(data, Mapping) else None
        span = record.span
        time = self._time(event)
        if isinstance(error, RunCancelled):
            # A stop, not a failure: the consumer left early, or a sibling's failure or a
            # timeout stopped this step (that one's span says why). Status stays UNSET so
            # that error rates count failures only.
            span.set_attribute(Attr.CANCELLED, True)
        elif isinstance(error, BaseException):
            span.set_attribute("error.type", _qualified_name(type(error)))
            span.record_exception(error, timestamp=self._ns(time))
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        else:
            span.set_status(Status(StatusCode.ERROR, str(error)))
        self._close(event["run_id"], record, time)

    def _close(self, run_id: str, record: _Open, time: float) -> None:
        if record.root == run_id:
            # A run's steps end before it does; one whose end never came (the subscriber
            # lost it) ends with the run, marked incomplete, rather than stay open.
            left = [key for key, other in self._open.items() if other.root == run_id and key != run_id]
            if left:
                self._close_open(left, incomplete=True, at=time)
        # Forgotten first: a span whose end raised is not ended twice.
        del self._open[run_id]
        self._ended += 1
        if record.dropped:
            record.span.set_attribute(Attr.EVENTS_DROPPED, record.dropped)
        record.span.end(end_time=self._ns(max(time, record.started)))

    def _close_open(self, run_ids: list[str], *, incomplete: bool, at: float | None = None) -> None:
        # Children before parents (they opened later), each at ``at`` or the last time seen.
        time = self._last_time if at is None else at
        for run_id in reversed(run_ids):
            record = self._open.get(run_id)
            if record is None:
                continue
            try:
                if incomplete:
                    record.span.set_attribute(Attr.INCOMPLETE, True)
                self._close(run_id, record, time if time is not None else record.started)
            except Exception as exc:
                self._failed(exc)

    def _lost(self, count: int) -> None:
        if not self._dropped:
            _LOG.warning(
                "the OpenTelemetry subscriber lost %d events: its exporter is slower than the "
                "runs (the spans open now carry %s; raise its capacity or export in batches)",
                count,
                Attr.EVENTS_DROPPED,
            )
        self._dropped += count
        for record in self._open.values():
            record.dropped += count

    def _failed(self, error: Exception) -> None:
        self._errors += 1
        if self._errors == 1:
            _LOG.error(
                "an OpenTelemetry span processor or exporter raised %s: %s (the runs go on; "
                "later failures are only counted, in statistics().errors)",
                type(error).__name__,
                error,
                exc_info=error,
            )


def _start_attributes(event: Mapping[str, Any], kind: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {Attr.RUN_ID: event["run_id"], Attr.KIND: kind}
    parents = event.get("parent_ids")
    if parents:
        attributes[Attr.PARENT_RUN_ID] = parents[-1]
    tags = event.get("tags")
    if tags:
        attributes[Attr.TAGS] = [str(tag) for tag in tags]
    metadata = event.get("metadata") or {}
    for key, value in metadata.items():
        converted = attribute_value(value)
        if converted is not None:
            attributes[Attr.METADATA + str(key)] = converted
    operation = _MODEL_KINDS.get(kind)
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
        provider = metadata.get("ls_provider") or _PROVIDERS.get(str(event["name"]))
        if isinstance(provider, str):
            # The current conventions' name, and the one older backends read.
            attributes["gen_ai.provider.name"] = provider
            attributes["gen_ai.system"] = provider
        model = metadata.get("ls_model_name")
        if isinstance(model, str):
            attributes["gen_ai.request.model"] = model
    return attributes


def _model_result(record: _Open, output: Any) -> None:
    """Set the GenAI attributes a model step's whole reply tells (usage, model, stop)."""
    if output is None:
        return
    span = record.span
    usage = _field(output, "usage_metadata")
    if usage is not None:
        for key in ("input_tokens", "output_tokens"):
            count = _field(usage, key)
            if isinstance(count, int):
                span.set_attribute(f"gen_ai.usage.{key}", count)
    response = _field(output, "response_metadata")
    if isinstance(response, Mapping):
        model = response.get("model_name") or response.get("model")
        if isinstance(model, str):
            span.set_attribute("gen_ai.response.model", model)
            if not record.request_model:
                # The model the reply names is the one asked for (an alias aside).
                span.set_attribute("gen_ai.request.model", model)
        reason = response.get("stop_reason") or response.get("finish_reason")
        if isinstance(reason, str):
            span.set_attribute("gen_ai.response.finish_reasons", [reason])
    message_id = _field(output, "id")
    if isinstance(message_id, str):
        span.set_attribute("gen_ai.response.id", message_id)


def _custom_attributes(data: Any) -> dict[str, Any]:
    if isinstance(data, Mapping):
        converted = {str(k): attribute_value(v) for k, v in data.items()}
        return {k: v for k, v in converted.items() if v is not None}
    value = attribute_value(data)
    return {} if value is None else {"value": value}


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
