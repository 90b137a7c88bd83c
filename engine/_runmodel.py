"""A model of runs built from their lifecycle events: what ``engine.view`` draws and
``engine.trace`` exports.

The model is plain data updated by :meth:`RunModel.apply`, one event at a time, with the
time the caller read on its own clock: it never reads a clock, renders or does I/O, so
it is tested with made-up events and times. Steps are keyed by run id; each knows its
parent (the nearest ancestor the model has seen: a filtered or dropped ancestor is
skipped), its state, its chunk and token counts and its times. Any event of a step
creates its record, so a subscriber that lost a start event (``"drop"``) still shows the
step, from the moment it was first seen.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from ._events import EventPhase, kind_of, phase_of
from ._step import RunCancelled

__all__ = ("BatchProgress", "RunModel", "StepRecord", "StepState")


class StepState(enum.Enum):
    """Where a step stands, as its events say."""

    #: Started, no chunk yet (a model waiting for its first token, a step for its input).
    WAITING = "waiting"
    #: At least one chunk out, not ended.
    STREAMING = "streaming"
    #: Ended with its end event.
    DONE = "done"
    #: Ended with an error event carrying an error of its own.
    FAILED = "failed"
    #: Ended with an error event carrying ``RunCancelled``.
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the step has ended (done, failed or cancelled)."""
        return self in _FINISHED


_FINISHED = frozenset({StepState.DONE, StepState.FAILED, StepState.CANCELLED})


@attrs.define(eq=False)
class StepRecord:
    """What the model knows about one step.

    Attributes:
        run_id: The step's run id.
        name: The step's name, as its events carry it.
        kind: The step's kind (``chain``, ``chat_model``, ``parser``...).
        parent_id: The run id of its nearest ancestor the model has seen (``None``: a root).
        depth: How many seen ancestors it has (0 for a root).
        number: For a top-level run, its place among them (1 for the first seen), else ``None``.
        started: When it was first seen (its start event, unless that was lost).
        attempt: The ``attempt`` number its metadata carries (``with_retry`` and
            ``with_fallbacks`` put one on each attempt), else ``None``.
        state: Its :class:`StepState`.
        chunks: Stream events seen (one per output chunk).
        input_tokens: Input tokens its chunks reported (``usage_metadata``), ``None``
            while none reported any.
        output_tokens: Output tokens its chunks reported, ``None`` while none did.
        first_chunk: When its first chunk was seen.
        ended: When its end or error event was seen.
        error: ``"Type: message"`` for a failed step.
        children: Run ids of the steps under it, in the order they were seen.
        chunk_times: When each chunk was seen (only when the model keeps chunk times).
        closed_by_parent: Whether the step was closed when its parent ended, its own end
            event lost (its state is then its parent's outcome; a late end event of its
            own still counts).
    """

    run_id: str
    name: str
    kind: str
    parent_id: str | None
    depth: int
    started: float
    number: int | None = None
    attempt: int | None = None
    state: StepState = StepState.WAITING
    chunks: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    first_chunk: float | None = None
    ended: float | None = None
    error: str | None = None
    children: list[str] = attrs.field(factory=list)
    chunk_times: list[float] | None = None
    closed_by_parent: bool = False

    @property
    def time_to_first_chunk(self) -> float | None:
        """Seconds from start to the first chunk (``None`` before it)."""
        return None if self.first_chunk is None else self.first_chunk - self.started

    def duration(self, now: float) -> float:
        """Seconds from start to end, or to ``now`` while it runs."""
        return (self.ended if self.ended is not None else now) - self.started


@attrs.frozen
class BatchProgress:
    """How the top-level runs of a batch stand.

    Attributes:
        total: How many runs are expected (the batch's size), or how many were seen when
            nobody said.
        done: Runs that ended with their end event.
        failed: Runs that failed.
        cancelled: Runs that were cancelled.
        streaming: Runs that have output and have not ended.
        waiting: Runs started without output yet.
        not_started: Expected runs not seen yet.
    """

    total: int
    done: int
    failed: int
    cancelled: int
    streaming: int
    waiting: int
    not_started: int

    @property
    def finished(self) -> int:
        """Runs that ended, however they ended."""
        return self.done + self.failed + self.cancelled


@attrs.define(eq=False)
class RunModel:
    """The steps of the runs seen on a bus, built from their events.

    Args:
        total: How many top-level runs to expect (an ``abatch``'s number of inputs), for
            the progress of a batch; ``None`` when unknown.
        keep_chunk_times: Keep the time of every chunk (``StepRecord.chunk_times``), for a
            trace; off by default (a float per chunk).

    Raises:
        ValueError: For a negative ``total``.
    """

    total: int | None = attrs.field(default=None)
    keep_chunk_times: bool = False
    #: Every step seen, by run id.
    steps: dict[str, StepRecord] = attrs.field(factory=dict, init=False)
    #: Run ids of the top-level runs, in the order they were seen.
    roots: list[str] = attrs.field(factory=list, init=False)
    #: Events the subscriber lost (its ``on_events_dropped`` markers, added up).
    dropped: int = attrs.field(default=0, init=False)
    #: When the first event was seen (``None`` before any).
    first_seen: float | None = attrs.field(default=None, init=False)
    #: When the last event was seen.
    last_seen: float | None = attrs.field(default=None, init=False)
    # How many top-level runs are in each state, kept as they change (a batch's progress
    # is read per redraw and per finished run: counting would be quadratic in its size).
    _root_states: dict[StepState, int] = attrs.field(factory=lambda: dict.fromkeys(StepState, 0), init=False)

    @total.validator
    def _check_total(self, attribute: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"total must be a number of runs (an int >= 0) or None, got {value!r}")

    def apply(self, event: Mapping[str, Any], now: float) -> StepRecord | None:
        """Take one event, seen at ``now`` (seconds on the caller's clock).

        Returns the step it changed (``None`` for a drop marker or a custom event).

        Raises:
            ValueError: If the event's name is not an event name.
        """
        phase = phase_of(event)
        if self.first_seen is None:
            self.first_seen = now
        self.last_seen = now
        if phase is EventPhase.DROPPED:
            self.dropped += int(event["data"]["dropped"])
            return None
        if phase is EventPhase.CUSTOM:
            return None
        record = self.steps.get(event["run_id"])
        if record is None:
            record = self._add(event, now)
        if phase is EventPhase.STREAM:
            self._chunk(record, event["data"], now)
        elif phase is EventPhase.END:
            self._end(record, StepState.DONE, now)
        elif phase is EventPhase.ERROR:
            self._failed(record, event["data"], now)
        return record

    def _add(self, event: Mapping[str, Any], now: float) -> StepRecord:
        parent: StepRecord | None = None
        for ancestor in reversed(event["parent_ids"]):
            parent = self.steps.get(ancestor)
            if parent is not None:
                break
        run_id = event["run_id"]
        record = StepRecord(
            run_id=run_id,
            name=event["name"],
            kind=kind_of(event) or "",
            parent_id=None if parent is None else parent.run_id,
            depth=0 if parent is None else parent.depth + 1,
            started=now,
            number=len(self.roots) + 1 if parent is None else None,
            attempt=_attempt(event["metadata"]),
            chunk_times=[] if self.keep_chunk_times else None,
        )
        self.steps[run_id] = record
        if parent is None:
            self.roots.append(run_id)
            self._root_states[StepState.WAITING] += 1
        else:
            parent.children.append(run_id)
        return record

    def _set_state(self, record: StepRecord, state: StepState) -> None:
        if record.parent_id is None:
            self._root_states[record.state] -= 1
            self._root_states[state] += 1
        record.state = state

    def _chunk(self, record: StepRecord, data: Mapping[str, Any], now: float) -> None:
        record.chunks += 1
        if record.first_chunk is None:
            record.first_chunk = now
            if not record.state.finished:
                self._set_state(record, StepState.STREAMING)
        if record.chunk_times is not None:
            record.chunk_times.append(now)
        usage = getattr(data.get("chunk"), "usage_metadata", None)
        if usage is not None:
            # Chunks' usage adds up to the message's (nodes.UsageMetadata, or a dict).
            record.input_tokens = (record.input_tokens or 0) + _tokens(usage, "input_tokens")
            record.output_tokens = (record.output_tokens or 0) + _tokens(usage, "output_tokens")

    def _end(self, record: StepRecord, state: StepState, now: float) -> None:
        if record.state.finished and not record.closed_by_parent:
            return
        self._set_state(record, state)
        record.ended = now
        record.closed_by_parent = False
        # A child ends before its parent: one still open lost its end event (a "drop"
        # subscriber owes no end for a start it did not get). It takes its parent's
        # outcome, done or (for a failed parent, whose error its own step reported) cancelled.
        inferred = StepState.DONE if state is StepState.DONE else StepState.CANCELLED
        stack = [child for child in record.children if not self.steps[child].state.finished]
        while stack:
            child = self.steps[stack.pop()]
            self._set_state(child, inferred)
            child.ended = now
            child.closed_by_parent = True
            stack.extend(c for c in child.children if not self.steps[c].state.finished)

    def _failed(self, record: StepRecord, data: Mapping[str, Any], now: float) -> None:
        error = data.get("error")
        if isinstance(error, RunCancelled):
            self._end(record, StepState.CANCELLED, now)
            return
        self._end(record, StepState.FAILED, now)
        if record.error is None:
            record.error = _describe(error)

    # -- reading -----------------------------------------------------------------------

    def walk(self, run_id: str | None = None) -> Iterator[StepRecord]:
        """Every step in tree order (a step, then its children), from ``run_id`` or from
        every root."""
        stack = [run_id] if run_id is not None else list(reversed(self.roots))
        while stack:
            record = self.steps[stack.pop()]
            yield record
            stack.extend(reversed(record.children))

    def tokens(self, run_id: str) -> tuple[int, int] | None:
        """A step's ``(input, output)`` tokens: what its own chunks reported, else the sum
        over its children (a sequence's are its model's; a retry's own chunks already
        count its attempt, so its children are not added again); ``None`` for none."""
        record = self.steps[run_id]
        if record.input_tokens is not None or record.output_tokens is not None:
            return record.input_tokens or 0, record.output_tokens or 0
        total: tuple[int, int] | None = None
        for child in record.children:
            counted = self.tokens(child)
            if counted is not None:
                total = counted if total is None else (total[0] + counted[0], total[1] + counted[1])
        return total

    def progress(self) -> BatchProgress:
        """How the top-level runs stand (a batch's progress)."""
        counts = self._root_states
        seen = len(self.roots)
        total = max(self.total, seen) if self.total is not None else seen
        return BatchProgress(
            total=total,
            done=counts[StepState.DONE],
            failed=counts[StepState.FAILED],
            cancelled=counts[StepState.CANCELLED],
            streaming=counts[StepState.STREAMING],
            waiting=counts[StepState.WAITING],
            not_started=total - seen,
        )

    @property
    def is_batch(self) -> bool:
        """Whether this is a batch: a ``total`` was given, or more than one run was seen."""
        return self.total is not None or len(self.roots) > 1


def _attempt(metadata: Mapping[str, Any]) -> int | None:
    attempt = metadata.get("attempt") if isinstance(metadata, Mapping) else None
    return attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None


def _tokens(usage: Any, key: str) -> int:
    get = getattr(usage, "get", None)
    value = get(key, 0) if get is not None else getattr(usage, key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _describe(error: object) -> str:
    if isinstance(error, BaseException):
        text = str(error).strip().splitlines()
        return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    return repr(error)
