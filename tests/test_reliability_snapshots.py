"""Issue 12, defect 6: collecting a stream of snapshots keeps only the last one.

A JSON parser emits a snapshot of the whole document each time it grows. Every way of
collecting its output (``ainvoke``, ``invoke``, ``abatch``, a function after the
parser, a parallel step holding the parser, end events) must hold the newest snapshot
only, or memory is quadratic in the document. The tests hold a run at a gate once the
whole document has been parsed and every chunk consumed, and count the snapshot lists
still alive: each snapshot is a new list whose first item is the document's marker.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.to_thread
import pytest

from engine import Runnable, RunnableGenerator, RunnableParallel
from nodes import JsonOutputParser

MARKER = "defect-6-snapshot-marker"
ITEMS = 60
PIECE = 4


def _pieces() -> list[str]:
    text = json.dumps([MARKER, *(f"s{i}" for i in range(ITEMS))])
    return [text[i : i + PIECE] for i in range(0, len(text), PIECE)]


def _expected() -> list[str]:
    return [MARKER, *(f"s{i}" for i in range(ITEMS))]


# What collecting a snapshot stream may hold at once, whatever its length: the newest
# snapshot, and the parser's two working lists (its own final value, which no snapshot
# shares, and the twin that snapshots copy from). Holding every snapshot would be n.
HELD = 3


def _live_snapshots() -> int:
    """Lists alive that start with the marker: the snapshots, and the parser's own
    working lists of the items completed so far."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is list and o and type(o[0]) is str and o[0] == MARKER)


class _Gate:
    """Holds each run's text source open after its last piece until the test releases it."""

    def __init__(self, runs: int = 1) -> None:
        self.runs = runs
        self.reached = 0
        self.all_reached = anyio.Event()
        self.release = anyio.Event()

    def source(self) -> RunnableGenerator[Any, str]:
        async def text(inputs: AsyncIterator[Any]) -> AsyncIterator[str]:
            async for _ in inputs:
                pass
            for piece in _pieces():
                yield piece
            self.reached += 1
            if self.reached == self.runs:
                self.all_reached.set()
            await self.release.wait()

        return RunnableGenerator(text)


async def _live_at_gate(gate: _Gate, collect: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``collect`` until every run waits at the gate; count snapshots; finish."""
    result: list[Any] = []

    async def run() -> None:
        result.append(await collect())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(run)
            await gate.all_reached.wait()
            await anyio.wait_all_tasks_blocked()
            live = _live_snapshots()
            gate.release.set()
    return live, result[0]


def _parsed(gate: _Gate) -> Runnable[Any, Any]:
    return gate.source() | JsonOutputParser()


async def test_ainvoke_keeps_only_the_last_snapshot() -> None:
    """ainvoke of a JSON parser holds one snapshot (plus the parser's list) while it runs."""
    gate = _Gate()
    chain = _parsed(gate)
    live, value = await _live_at_gate(gate, lambda: chain.ainvoke(None))
    assert live <= HELD, f"{live} snapshot lists alive while collecting"
    assert value == _expected()


async def test_invoke_keeps_only_the_last_snapshot() -> None:
    """invoke (from a worker thread, run on this loop) holds one snapshot while it runs."""
    gate = _Gate()
    chain = _parsed(gate)
    live, value = await _live_at_gate(gate, lambda: anyio.to_thread.run_sync(chain.invoke, None))
    assert live <= HELD, f"{live} snapshot lists alive while collecting"
    assert value == _expected()


async def test_abatch_keeps_only_the_last_snapshot_per_input() -> None:
    """abatch holds one snapshot per running input, not every snapshot of each."""
    gate = _Gate(runs=3)
    chain = _parsed(gate)
    live, values = await _live_at_gate(gate, lambda: chain.abatch([None, None, None]))
    assert live <= HELD * 3, f"{live} snapshot lists alive while collecting three runs"
    assert values == [_expected()] * 3


async def test_function_after_the_parser_sums_to_the_last_snapshot() -> None:
    """A plain function after the parser is fed the last snapshot; the others are dropped as they come."""
    gate = _Gate()
    chain = _parsed(gate) | (lambda document: len(document))
    live, value = await _live_at_gate(gate, lambda: chain.ainvoke(None))
    assert live <= HELD, f"{live} snapshot lists alive while the function's input is summed"
    assert value == ITEMS + 1


async def test_parallel_snapshot_branch_keeps_only_its_last_value() -> None:
    """A parallel step's snapshot branch sums to its last value, holding no other."""
    gate = _Gate()
    chain = RunnableParallel(document=_parsed(gate))
    live, value = await _live_at_gate(gate, lambda: chain.ainvoke(None))
    assert live <= HELD, f"{live} snapshot lists alive while the parallel output is summed"
    assert value == {"document": _expected()}


async def test_function_after_a_parallel_snapshot_branch() -> None:
    """A function after a parallel step with a snapshot branch gets the last value, holding no other."""
    gate = _Gate()
    chain = RunnableParallel(document=_parsed(gate)) | (lambda both: both["document"])
    live, value = await _live_at_gate(gate, lambda: chain.ainvoke(None))
    assert live <= HELD, f"{live} snapshot lists alive while the function's input is summed"
    assert value == _expected()


async def test_end_events_keep_only_the_last_snapshot() -> None:
    """An observed parser's end event sums its snapshots holding only the last one."""
    gate = _Gate()
    chain = _parsed(gate)

    async def collect() -> Any:
        output = None
        async for event in chain.astream_events(None, version="v2"):
            if event["event"] == "on_parser_end":
                output = event["data"]["output"]
        return output

    live, value = await _live_at_gate(gate, collect)
    assert live <= HELD, f"{live} snapshot lists alive while the end event's output is summed"
    assert value == _expected()


async def test_a_step_after_the_parser_gets_the_last_snapshot_as_its_input() -> None:
    """The end event of a generator after the parser carries the last snapshot as input, not their sum."""

    async def count(documents: AsyncIterator[list[int]]) -> AsyncIterator[int]:
        async for document in documents:
            yield len(document)

    async def text(inputs: AsyncIterator[Any]) -> AsyncIterator[str]:
        async for _ in inputs:
            pass
        for piece in ("[1", ", 2", ", 3]"):
            yield piece

    chain = RunnableGenerator(text) | JsonOutputParser() | RunnableGenerator(count)
    ends = [
        e async for e in chain.astream_events(None, include_names=["count"]) if e["event"].endswith("_end")
    ]
    assert [e["data"] for e in ends] == [{"input": [1, 2, 3], "output": 6}]


async def test_astream_log_final_output_is_the_last_snapshot() -> None:
    """astream_log's running final_output of a JSON parser is its newest snapshot, never a sum of them."""

    async def text(inputs: AsyncIterator[Any]) -> AsyncIterator[str]:
        async for _ in inputs:
            pass
        for piece in ("[1", ", 2", ", 3]"):
            yield piece

    chain = RunnableGenerator(text) | JsonOutputParser()
    finals = [log.state["final_output"] async for log in chain.astream_log(None, diff=False)]
    # Three patches per snapshot (the generator's chunk, the parser's, the root's); the
    # root's end adds nothing, and the steps' ends leave final_output as it is.
    assert [final for final in finals if final is not None] == [[1]] * 3 + [[1, 2]] * 3 + [[1, 2, 3]] * 3


@pytest.mark.parametrize(
    ("chunks", "accumulation", "expected"),
    [
        (["a", "b", "c"], "add", "abc"),
        ([[1], [2, 3], []], "add", [1, 2, 3]),
        ([[1], [1, 2], [1, 2, 3]], "last", [1, 2, 3]),
        ([{"a": 1}, {"a": 2}], "add", {"a": 2}),
        ([1, "x", "y"], "add", "y"),
        ([], "add", None),
    ],
)
def test_concat_chunks_rules(chunks: list[Any], accumulation: Any, expected: Any) -> None:
    """concat_chunks joins strings and lists, keeps the last snapshot, and the last chunk where + fails."""
    from engine import concat_chunks

    assert concat_chunks(chunks, accumulation) == expected


def test_parallel_chunks_sum_key_by_key_as_plus_does() -> None:
    """AddableDict chunks (strings, lists, nested dicts, snapshot keys) sum to what + gives."""
    import functools
    import operator

    from engine import AddableDict, concat_chunks

    snapshot = frozenset({"doc"})
    chunks = [
        AddableDict({"text": "a"}),
        AddableDict({"doc": [1]}, snapshot_keys=snapshot),
        AddableDict({"items": ["x"], "text": "b"}),
        AddableDict({"inner": AddableDict({"t": "p"})}),
        AddableDict({"doc": [1, 2]}, snapshot_keys=snapshot),
        AddableDict({"inner": AddableDict({"t": "q", "u": "r"})}),
        AddableDict({"items": ["y"], "text": "c"}),
    ] * 300
    expected = functools.reduce(operator.add, chunks)
    total = concat_chunks(chunks)
    assert total == expected
    assert total == {
        "text": "abc" * 300,
        "doc": [1, 2],
        "items": ["x", "y"] * 300,
        "inner": {"t": "pq" * 300, "u": "r" * 300},
    }
    assert isinstance(total, AddableDict) and total.snapshot_keys == snapshot
