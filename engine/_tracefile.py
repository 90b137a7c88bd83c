"""Runs as a Chrome / Perfetto trace: the trace-event JSON format, built from a RunModel.

The format (the "Trace Event Format" document of the Chromium project; Perfetto's UI
and ``chrome://tracing`` read it): a JSON object whose ``traceEvents`` list holds events
with a phase ``ph``, a ``name``, a timestamp ``ts`` in microseconds, a process ``pid``
and a thread ``tid``. We write:

* one *process* per top-level run (a batch's inputs side by side), named by a
  ``process_name`` metadata event (``ph: "M"``);
* one *thread* (track) per step, named by a ``thread_name`` metadata event and ordered
  by ``thread_sort_index`` in tree order, so the tracks read as the tree;
* a complete event (``ph: "X"``, with ``dur``) per step, from its start to its end,
  with its kind as ``cat`` and its figures in ``args``;
* a thread-scoped instant event (``ph: "i"``, ``s: "t"``) per chunk, on its step's
  track.

Times are relative to the first event the model saw.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ._runmodel import RunModel, StepRecord

__all__ = ("trace_events", "write_trace")


def _us(seconds: float) -> float:
    return round(seconds * 1_000_000, 3)


def _metadata(kind: str, pid: int, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": kind, "ph": "M", "ts": 0, "pid": pid, "tid": tid, "args": args}


def _step_events(
    model: RunModel, record: StepRecord, pid: int, tid: int, origin: float, end: float
) -> list[dict[str, Any]]:
    args: dict[str, Any] = {
        "run_id": record.run_id,
        "parent_id": record.parent_id,
        "state": record.state.value,
        "chunks": record.chunks,
    }
    if record.time_to_first_chunk is not None:
        args["time_to_first_chunk_ms"] = round(record.time_to_first_chunk * 1000, 3)
    tokens = model.tokens(record.run_id)
    if tokens is not None:
        args["input_tokens"], args["output_tokens"] = tokens
    if record.attempt is not None:
        args["attempt"] = record.attempt
    if record.error is not None:
        args["error"] = record.error
    events = [
        _metadata("thread_name", pid, tid, {"name": record.name}),
        _metadata("thread_sort_index", pid, tid, {"sort_index": tid}),
        {
            "name": record.name,
            "cat": record.kind,
            "ph": "X",
            "ts": _us(record.started - origin),
            "dur": _us(record.duration(end)),
            "pid": pid,
            "tid": tid,
            "args": args,
        },
    ]
    for number, at in enumerate(record.chunk_times or (), start=1):
        events.append(
            {
                "name": "chunk",
                "cat": record.kind,
                "ph": "i",
                "s": "t",
                "ts": _us(at - origin),
                "pid": pid,
                "tid": tid,
                "args": {"n": number},
            }
        )
    return events


def trace_events(model: RunModel) -> dict[str, Any]:
    """The runs ``model`` saw, as a trace-event JSON object (``{"traceEvents": [...]}``).

    Chunk instants are there only if the model kept chunk times
    (``RunModel(keep_chunk_times=True)``, which :func:`engine.trace.record_trace` and
    ``watch(trace=...)`` ask for). A step that never ended lasts until the last event seen.
    """
    origin = model.first_seen if model.first_seen is not None else 0.0
    end = model.last_seen if model.last_seen is not None else origin
    events: list[dict[str, Any]] = []
    tid = 0
    for pid, root_id in enumerate(model.roots, start=1):
        root = model.steps[root_id]
        events.append(_metadata("process_name", pid, 0, {"name": f"run #{pid}: {root.name}"}))
        events.append(_metadata("process_sort_index", pid, 0, {"sort_index": pid}))
        for record in model.walk(root_id):
            tid += 1  # unique across the file: a viewer keys tracks by (pid, tid)
            events.extend(_step_events(model, record, pid, tid, origin, end))
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"producer": "rillet", "dropped_events": model.dropped},
    }


def write_trace(model: RunModel, path: str | os.PathLike[str]) -> None:
    """Write :func:`trace_events` of ``model`` to ``path`` as JSON (UTF-8)."""
    with open(path, "w", encoding="utf-8") as file:
        json.dump(trace_events(model), file, default=str)
        file.write("\n")
