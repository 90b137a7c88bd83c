"""``engine.trace``: a run as a Chrome / Perfetto trace file, checked against the
trace-event format without a viewer.

The format (Chromium's "Trace Event Format" document): a JSON object whose
``traceEvents`` list holds events with a phase ``ph``, a ``name``, a timestamp ``ts`` in
microseconds, a ``pid`` and a ``tid``; complete events (``X``) carry a ``dur``, begin and
end events (``B``/``E``) pair up per thread, instant events (``i``/``I``) carry a scope
``s`` (``g``, ``p`` or ``t``), and metadata events (``M``) name processes and threads.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
from trio.testing import MockClock

from engine import ExponentialJitterParams
from engine.trace import record_trace, trace_events, write_trace
from engine.view import RunModel, watch
from nodes import ChatPromptTemplate, ScriptedChatModel, ScriptedReply, StrOutputParser

_PHASES = {"X", "B", "E", "i", "I", "M"}
_METADATA = {
    "process_name": "name",
    "process_labels": "labels",
    "process_sort_index": "sort_index",
    "thread_name": "name",
    "thread_sort_index": "sort_index",
}


def check_trace_format(trace: Any) -> list[dict[str, Any]]:
    """Check ``trace`` against the trace-event format; return its events."""
    assert isinstance(trace, dict) and isinstance(trace["traceEvents"], list)
    assert trace.get("displayTimeUnit", "ms") in ("ms", "ns")
    open_slices: dict[tuple[int, int], list[str]] = defaultdict(list)
    for event in trace["traceEvents"]:
        assert isinstance(event, dict), event
        phase = event["ph"]
        assert phase in _PHASES, event
        assert isinstance(event["name"], str), event
        for key in ("pid", "tid"):
            assert isinstance(event[key], int) and not isinstance(event[key], bool), event
        assert isinstance(event["ts"], int | float) and event["ts"] >= 0, event  # microseconds
        assert isinstance(event.get("args", {}), dict) and isinstance(event.get("cat", ""), str), event
        thread = (event["pid"], event["tid"])
        if phase == "X":
            assert isinstance(event["dur"], int | float) and event["dur"] >= 0, event
        elif phase == "B":
            open_slices[thread].append(event["name"])
        elif phase == "E":
            assert open_slices[thread], f"an E event with no B before it: {event}"
            open_slices[thread].pop()
        elif phase in ("i", "I"):
            assert event.get("s", "t") in ("g", "p", "t"), event
        else:
            key = _METADATA[event["name"]]
            assert key in event["args"], event
    assert not any(open_slices.values()), f"B events never ended: {dict(open_slices)}"
    return list(trace["traceEvents"])


def _retried_chain() -> Any:
    """prompt | model.with_retry() | parser: the first attempt stalls 2 s and times out."""
    model = ScriptedChatModel(
        replies=[
            ScriptedReply(content=("Why",), error=TimeoutError("slow start"), stall=2.0),
            ScriptedReply(content=("Why", " did", " it?"), usage={"input_tokens": 9, "output_tokens": 3}),
        ],
        delay=0.25,
    )
    retried = model.with_retry(exponential_jitter_params=ExponentialJitterParams(initial=0.5, jitter=0))
    return ChatPromptTemplate.from_template("a joke about {topic}") | retried | StrOutputParser()


def _slices(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"] + str(e["args"].get("attempt", "")): e for e in events if e["ph"] == "X"}


@pytest.mark.trio
async def test_a_run_is_a_track_per_step_with_a_slice_and_its_chunks(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    """One named track per step in tree order, a slice from its start to its end (exact
    microseconds under the mock clock), and an instant per chunk inside the slice."""
    path = tmp_path / "run.json"
    with trio.fail_after(60):
        async with record_trace(path) as view:
            await _retried_chain().ainvoke({"topic": "parrots"}, config=view.config)
    events = check_trace_format(json.loads(path.read_text(encoding="utf-8")))
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert list(names.values()) == [
        "RunnableSequence",
        "ChatPromptTemplate",
        "RunnableRetry",
        "ScriptedChatModel",
        "ScriptedChatModel",
        "StrOutputParser",
    ]
    slices = _slices(events)
    assert len(slices) == len(names) and {(s["pid"], s["tid"]) for s in slices.values()} == set(names)
    timing = {name: (s["ts"], s["dur"], s["args"]["state"]) for name, s in slices.items()}
    assert timing == {
        "RunnableSequence": (0.0, 3_500_000.0, "done"),
        "ChatPromptTemplate": (0.0, 0.0, "done"),
        "RunnableRetry": (0.0, 3_500_000.0, "done"),
        "ScriptedChatModel1": (0.0, 2_000_000.0, "failed"),
        "ScriptedChatModel2": (2_500_000.0, 1_000_000.0, "done"),
        "StrOutputParser": (0.0, 3_500_000.0, "done"),
    }
    model = slices["ScriptedChatModel2"]
    assert model["cat"] == "chat_model" and model["args"]["input_tokens"] == 9
    assert slices["ScriptedChatModel1"]["args"]["error"] == "TimeoutError: slow start"
    chunks = [e for e in events if e["ph"] == "i" and e["tid"] == model["tid"]]
    assert [c["ts"] for c in chunks] == [2_750_000.0, 3_000_000.0, 3_250_000.0, 3_500_000.0]
    assert all(c["s"] == "t" and c["pid"] == model["pid"] for c in chunks)


async def test_steps_nest_and_overlap_in_time(tmp_path: Path) -> None:
    """Each slice lies within its parent's; the model's and the parser's overlap (they stream together)."""
    path = tmp_path / "run.json"
    chain = (
        ChatPromptTemplate.from_template("{topic}")
        | ScriptedChatModel(replies=["a b c d"])
        | StrOutputParser()
    )
    with anyio.fail_after(10):
        async with record_trace(path) as view:
            await chain.ainvoke({"topic": "parrots"}, config=view.config)
    slices = {
        s["args"]["run_id"]: s for s in check_trace_format(json.loads(path.read_text())) if s["ph"] == "X"
    }
    for child in slices.values():
        parent = slices.get(child["args"]["parent_id"])
        if parent is not None:
            assert parent["ts"] <= child["ts"] and child["ts"] + child["dur"] <= parent["ts"] + parent["dur"]
    by_name = {s["name"]: s for s in slices.values()}
    model, parser = by_name["ScriptedChatModel"], by_name["StrOutputParser"]
    assert parser["ts"] < model["ts"] + model["dur"] and model["ts"] < parser["ts"] + parser["dur"]


async def test_a_batch_is_one_process_per_run(tmp_path: Path) -> None:
    """Each top-level run of a batch is a process of its own, named after its root step."""
    path = tmp_path / "batch.json"
    chain = ChatPromptTemplate.from_template("{topic}") | ScriptedChatModel(replies=["hi"])
    with anyio.fail_after(10):
        async with record_trace(path) as view:
            await chain.abatch([{"topic": str(i)} for i in range(3)], config=view.config)
    events = check_trace_format(json.loads(path.read_text()))
    processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert processes == {n: f"run #{n}: RunnableSequence" for n in (1, 2, 3)}
    assert {e["pid"] for e in events if e["ph"] == "X"} == {1, 2, 3}
    assert len({e["tid"] for e in events if e["ph"] == "X"}) == 9  # a track per step, none shared


async def test_the_trace_is_written_when_the_block_fails(tmp_path: Path) -> None:
    """A failing run still gets its trace (watch(trace=...)), with the failed steps marked."""
    path = tmp_path / "failed.json"
    model = ScriptedChatModel(
        replies=[ScriptedReply(content="a b c", error=ValueError("boom"), error_after=1)]
    )
    with anyio.fail_after(10), pytest.raises(ValueError, match="boom"):
        async with watch(display="none", trace=path) as view:
            await model.ainvoke("hi", config=view.config)
    (step,) = _slices(check_trace_format(json.loads(path.read_text()))).values()
    assert step["args"]["state"] == "failed" and step["args"]["error"] == "ValueError: boom"
    assert step["args"]["chunks"] == 1


def test_a_model_without_chunk_times_has_slices_but_no_chunk_marks(tmp_path: Path) -> None:
    """trace_events of a model kept without chunk times has its slices and no instants;
    write_trace writes the same as JSON."""
    model = RunModel()
    for phase, now in (("start", 1.0), ("stream", 1.5), ("end", 2.0)):
        event = {"event": f"on_chain_{phase}", "name": "step", "run_id": "a", "parent_ids": []}
        model.apply({**event, "tags": [], "metadata": {}, "data": {"chunk": 1}}, now)
    trace = trace_events(model)
    events = check_trace_format(trace)
    assert [e["ph"] for e in events] == ["M", "M", "M", "M", "X"]
    assert _slices(events)["step"]["dur"] == 1_000_000.0
    write_trace(model, tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text()) == trace


@pytest.mark.parametrize(
    "bad",
    [
        {"traceEvents": [{"ph": "X", "name": "a", "ts": 0, "pid": 1, "tid": 1}]},  # no dur
        {"traceEvents": [{"ph": "i", "name": "a", "ts": 0, "pid": 1, "tid": 1, "s": "x"}]},
        {"traceEvents": [{"ph": "B", "name": "a", "ts": 0, "pid": 1, "tid": 1}]},
        {"traceEvents": [{"ph": "X", "name": "a", "ts": -1, "dur": 1, "pid": 1, "tid": 1}]},
        {"traceEvents": [{"ph": "M", "name": "thread_name", "ts": 0, "pid": 1, "tid": 1, "args": {}}]},
        {"traceEvents": [{"ph": "Q", "name": "a", "ts": 0, "pid": 1, "tid": 1}]},
    ],
)
def test_the_format_check_refuses_what_the_format_does_not_allow(bad: dict[str, Any]) -> None:
    """The checker itself fails on a trace outside the format (so passing it means something)."""
    with pytest.raises((AssertionError, KeyError)):
        check_trace_format(bad)
