"""The OpenTelemetry subscriber (``engine.otel``): a task on the event loop reads a bus
subscription and hands the events, in batches, to a :class:`SpanBook` in a worker thread,
where spans are started and ended and span processors and exporters run.

The subscription uses the ``"drop"`` policy and takes each step's first stream event
only: the runs never wait for the subscriber and pay nothing for it per later chunk, and
an exporter slower than the runs costs lost events (counted, logged once, and marked on
the spans open at the time), never a slower pipeline."""

from __future__ import annotations

import contextlib
import importlib.metadata
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import attrs

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ImportError as error:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "engine.otel needs OpenTelemetry (opentelemetry-api, and opentelemetry-sdk to export "
        "spans): pip install 'rillet[otel]', or pip install -e '.[otel]' in a checkout"
    ) from error

from ._background import background_tasks
from ._bus import EventBus, Subscription, SubscriptionStatistics, validate_subscriber_capacity
from ._events import EventPhase, phase_of
from ._otelspans import SpanBook, TracingStatistics

__all__ = ("SpanSubscriber", "trace_runs")

#: The instrumentation scope name of the tracer spans are started with.
SCOPE = "rillet"
# Events handed to the worker thread at once, at most (one hop per batch, not per event).
_BATCH = 256
_CLOSING = frozenset({EventPhase.END, EventPhase.ERROR})


# Events in hand wait at most this long (loop time) for their run to end: a run that
# streams for minutes, or a traced run nested in an untraced one (which never looks
# ended to the reader: its end has parents), still gets its finished spans exported.
_HOLD = 1.0


def _ends_a_run(event: Any) -> bool:
    try:
        return phase_of(event) in _CLOSING and not event.get("parent_ids")
    except ValueError:
        return True  # not a step's event: the book counts it, now


def _version() -> str | None:
    try:
        return importlib.metadata.version("rillet")
    except importlib.metadata.PackageNotFoundError:
        return None


@attrs.define(eq=False)
class SpanSubscriber:
    """The subscriber :func:`trace_runs` yields: spans for the runs on its bus.

    Attributes:
        bus: The bus it subscribes to: run what you trace with ``config=tracing.config``
            (or ``{"bus": tracing.bus}`` in a config of your own).
    """

    bus: EventBus
    _subscription: Subscription
    _book: SpanBook
    # Events read and not yet given to the book: kept here, not in the reader's frame, so
    # that a cancel that comes before the worker thread takes them does not lose them.
    _in_hand: list[Any] = attrs.field(factory=list)

    @property
    def config(self) -> dict[str, Any]:
        """A run config attaching the subscriber's bus: ``chain.ainvoke(x, config=tracing.config)``."""
        return {"bus": self.bus}

    def statistics(self) -> TracingStatistics:
        """What it did so far: events, spans started, ended and open, events dropped, errors."""
        return self._book.statistics()

    def subscription_statistics(self) -> SubscriptionStatistics:
        """Its bus subscription: events delivered, dropped, buffered now."""
        return self._subscription.statistics()

    async def _read(self) -> None:
        subscription = self._subscription
        book = self._book
        checked = 0  # events of the batch in hand known to end no run
        held_until = 0.0  # the loop time the events in hand go to the thread at the latest
        while True:
            batch = self._in_hand
            try:
                if not batch:
                    batch.append(await subscription.receive())
                    held_until = anyio.current_time() + _HOLD
                else:
                    # (A cancelled receive takes no event: the subscription keeps it.)
                    with anyio.move_on_after(held_until - anyio.current_time()):
                        batch.append(await subscription.receive())
            except anyio.EndOfStream:
                return  # what is in hand goes to the book at the block's end
            batch.extend(subscription.receive_available(_BATCH - len(batch)))
            # A hop to the thread costs far more than a checkpoint: while the runs keep
            # publishing (a step's start comes with its siblings', its end with its
            # parents'), let them, and take the burst in one hop.
            while len(batch) < _BATCH:
                await anyio.lowlevel.checkpoint()
                more = subscription.receive_available(_BATCH - len(batch))
                if not more:
                    break
                batch.extend(more)
            if (
                len(batch) < _BATCH
                and not any(map(_ends_a_run, batch[checked:]))
                and anyio.current_time() < held_until
            ):
                # The events wait for their run's end (or a full batch, or _HOLD seconds):
                # spans take their times from the events, so nothing is lost by waiting,
                # and a long stream wakes the worker thread once, at its end, not while
                # it streams (each wake-up costs the event loop: on two busy cores, ~4 ms
                # of a 40 ms stream; benchmarks/RESULTS.md, issue 15).
                checked = len(batch)
                continue
            checked = 0
            # Not abandoned on cancel: once the thread took the batch, the block's end
            # waits for it, so the book is never used by two threads at once.
            await anyio.to_thread.run_sync(self._take_in_hand, book.take_all)

    def _take_in_hand(self, take: Callable[[list[Any]], None]) -> None:
        # In the worker thread: the batch is the book's from here on.
        events, self._in_hand = self._in_hand, []
        take(events)

    async def _finish(self) -> None:
        while batch := self._subscription.receive_available(_BATCH):
            self._in_hand.extend(batch)
        await self._subscription.aclose()
        await anyio.to_thread.run_sync(self._take_in_hand, self._book.finish)


@contextlib.asynccontextmanager
async def trace_runs(
    bus: EventBus | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    parent_context: otel_context.Context | None = None,
    capacity: int = 8192,
) -> AsyncIterator[SpanSubscriber]:
    """Turn the runs published on ``bus`` while the block runs into OpenTelemetry spans.

    One span per step, named after the step and parented as the steps are (a run started
    inside a step is that step's child), with the events' own times. A span carries
    ``rillet.run_id``, ``rillet.kind``, ``rillet.tags`` and ``rillet.metadata.<key>``; a
    failed step's span has status ERROR, ``error.type`` and an exception event; a
    cancelled step's (the consumer left early, or a failure or timeout elsewhere stopped
    it) has ``rillet.cancelled`` and status UNSET (a stop is not a failure). A model
    step's span (kind CLIENT) has the GenAI conventions' ``gen_ai.operation.name``,
    ``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``,
    ``gen_ai.usage.output_tokens``, ``gen_ai.response.finish_reasons`` and, where known,
    ``gen_ai.provider.name`` (and ``gen_ai.system``); every span that streamed has
    ``rillet.time_to_first_chunk`` (seconds: a model's time to first token) and a
    ``first_chunk`` event. When the block ends, spans still open end there, marked
    ``rillet.incomplete``.

    The runs never wait for it: its subscription drops events when its buffer is full
    (an exporter slower than the runs), counts them in :meth:`SpanSubscriber.statistics`,
    logs a warning once and marks the spans open then with ``rillet.events_dropped``.
    Span processors and exporters run in a worker thread, never on the event loop; one
    that raises is logged once (logger ``rillet``) and counted, and the runs go on. The
    thread takes the events in batches: when a run ends, when 256 are in hand, or a
    second after the first of them was read, so a span reaches the SDK after its step
    (within about a second of it), with the step's own start and end times, and
    :meth:`SpanSubscriber.statistics` counts it then. The block's end waits for the
    exporter to take the last spans (even when cancelled).

    Args:
        bus: The bus to trace; by default a new one (``tracing.config`` attaches it).
        tracer_provider: Where spans go; by default the global one
            (``opentelemetry.trace.get_tracer_provider()``). The tracer's instrumentation
            scope is ``rillet``.
        parent_context: The context root spans start in (a request's span, say); by
            default each top-level run starts a trace of its own.
        capacity: The subscriber's event buffer (events are few: a start, a first chunk
            and an end per step). The default absorbs a burst of a few hundred short
            runs back to back while the SDK catches up (with 1024, 200 runs of four
            steps lost 290-796 of their 2,400 events here; benchmarks/RESULTS.md).

    Raises:
        TypeError: If ``capacity`` is not an int.
        ValueError: If ``capacity`` is below 1.
        anyio.ClosedResourceError: If ``bus`` is closed.
    """
    subscriber = _open(bus, tracer_provider, parent_context, capacity)
    # However the block ends, what was published is turned into spans and no span is
    # left open (``_finish``, shielded: a cancelled task would read no buffered event).
    async with background_tasks(subscriber._read, finish=subscriber._finish):
        yield subscriber


def _open(
    bus: EventBus | None,
    tracer_provider: trace.TracerProvider | None,
    parent_context: otel_context.Context | None,
    capacity: int,
) -> SpanSubscriber:
    validate_subscriber_capacity(capacity)
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    tracer = provider.get_tracer(SCOPE, _version())
    # Events are timed on the event loop's clock; spans want epoch nanoseconds.
    offset_ns = time.time_ns() - int(anyio.current_time() * 1e9)
    if bus is None:
        bus = EventBus()
    subscription = bus.subscribe(capacity=capacity, overflow="drop", stream_events="first")
    return SpanSubscriber(bus, subscription, SpanBook(tracer, offset_ns, parent_context))
