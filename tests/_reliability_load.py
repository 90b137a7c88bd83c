"""Many concurrent short runs sharing one bus with three lossless subscribers.

Run as a script so that its memory figures are its own (not the test session's)::

    PYTHONMALLOC=malloc python -W error tests/_reliability_load.py trio 10000 5 [trace]

An unmeasured warm-up round comes first (lazy imports, internal tables reaching their
high-water size). Each round runs ``ScriptedChatModel | StrOutputParser`` (three tokens) on ``runs`` inputs
at once through ``abatch``, all publishing to one ``EventBus`` read by three "block"
subscribers, each in its own task. A round checks, for every subscriber: every event
delivered exactly once (the same event objects as the other two), each run's events in
its exact pipeline order (and ``check_event_order``), the buffer within its documented
bound; and afterwards that no task, subscription or rillet object outlives the round.
It prints one JSON report; any violated check raises ``AssertionError`` (exit status 1).

Memory is read from ``/proc/self/statm`` after ``gc.collect()`` and ``malloc_trim(0)``.
Start it with ``PYTHONMALLOC=malloc`` to measure the memory live objects hold: with
pymalloc, asyncio's many short-lived objects fragment its arenas, which grows RSS over the
first rounds although the live Python memory and the number of objects stay flat (see
tests/RELIABILITY.md). With ``trace``, ``tracemalloc`` reports that live memory per round.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import anyio  # noqa: E402

from engine import Edge, EventBus, RunStream, Step, Subscription  # noqa: E402
from engine.testing import check_event_order, rillet_tasks  # noqa: E402
from nodes import ScriptedChatModel, StrOutputParser  # noqa: E402

TOKENS = ["a", "b", "c"]
SUBSCRIBERS = 3
CAPACITY = 64
EXPECTED_ORDER = [
    ("on_chain_start", "RunnableSequence"),
    ("on_chat_model_start", "ScriptedChatModel"),
    ("on_parser_start", "StrOutputParser"),
    *[
        pair
        for _ in TOKENS
        for pair in (
            ("on_chat_model_stream", "ScriptedChatModel"),
            ("on_parser_stream", "StrOutputParser"),
            ("on_chain_stream", "RunnableSequence"),
        )
    ],
    ("on_chat_model_end", "ScriptedChatModel"),
    ("on_parser_end", "StrOutputParser"),
    ("on_chain_end", "RunnableSequence"),
]
STEPS_PER_RUN = 3


def resident_bytes() -> int:
    """The process's resident set size, after returning freed heap memory to the system."""
    gc.collect()
    with contextlib.suppress(OSError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rillet_objects() -> int:
    """How many rillet runtime objects (steps, edges, streams, subscriptions) are alive."""
    kinds = (Step, Edge, RunStream, Subscription)
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kinds))


def _root(event: dict[str, Any]) -> str:
    parents = event["parent_ids"]
    return str(parents[0]) if parents else str(event["run_id"])


def check_subscriber(events: list[dict[str, Any]], runs: int) -> None:
    """Every run's events, exactly once, in exact pipeline order."""
    assert len(events) == len(EXPECTED_ORDER) * runs, f"{len(events)} events for {runs} runs"
    assert len({id(event) for event in events}) == len(events), "an event was delivered twice"
    by_root: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_root.setdefault(_root(event), []).append(event)
    assert len(by_root) == runs, f"events of {len(by_root)} runs, expected {runs}"
    for root, run_events in by_root.items():
        check_event_order(run_events, complete=True)
        got = [(e["event"], e["name"]) for e in run_events]
        assert got == EXPECTED_ORDER, f"run {root[:8]}: {got}"
        chunks = [e["data"]["chunk"] for e in run_events if e["event"] == "on_parser_stream"]
        assert chunks == TOKENS, f"run {root[:8]} streamed {chunks}"


async def one_round(runs: int) -> dict[str, Any]:
    """One round of ``runs`` concurrent runs; returns its figures."""
    bus = EventBus()
    chain = ScriptedChatModel(replies=[TOKENS]) | StrOutputParser()
    subscriptions = [bus.subscribe(capacity=CAPACITY) for _ in range(SUBSCRIBERS)]
    received: list[list[dict[str, Any]]] = [[] for _ in range(SUBSCRIBERS)]

    async def read(subscription: Subscription, into: list[dict[str, Any]]) -> None:
        async for event in subscription:
            into.append(event)

    started = time.perf_counter()
    async with anyio.create_task_group() as readers:
        for subscription, into in zip(subscriptions, received, strict=True):
            readers.start_soon(read, subscription, into)
        results = await chain.abatch(["go"] * runs, {"bus": bus})
        for subscription in subscriptions:
            subscription.end()
    seconds = time.perf_counter() - started
    assert results == ["".join(TOKENS)] * runs
    statistics = [s.statistics() for s in subscriptions]
    for stats in statistics:
        assert stats.waiting_publishers == 0 and stats.dropped == 0
        # Terminal events never wait: they may pass the buffer by one per step.
        assert stats.peak <= CAPACITY + STEPS_PER_RUN * runs, stats
    for events in received:
        check_subscriber(events, runs)
    ids = [{id(e) for e in events} for events in received]
    assert ids[0] == ids[1] == ids[2], "the subscribers did not get the same events"
    for subscription in subscriptions:
        await subscription.aclose()
    assert bus.subscriber_count == 0
    return {
        "seconds": round(seconds, 2),
        "events_checked": sum(len(events) for events in received),
        "peaks": [s.peak for s in statistics],
    }


async def measured_round(runs: int) -> dict[str, Any]:
    """One round, then what outlived it: tasks, rillet objects, memory (all its locals gone)."""
    figures = await one_round(runs)
    await anyio.wait_all_tasks_blocked()
    assert rillet_tasks() == [], rillet_tasks()
    left = rillet_objects()
    assert left == 0, f"{left} rillet objects outlived the round"
    figures["rss_bytes"] = resident_bytes()
    figures["gc_objects"] = len(gc.get_objects())
    if tracemalloc.is_tracing():
        figures["traced_bytes"] = tracemalloc.get_traced_memory()[0]
    return figures


async def main(runs: int, rounds: int) -> dict[str, Any]:
    report: dict[str, Any] = {"runs": runs, "warm_up": await measured_round(runs), "rounds": []}
    for _ in range(rounds):
        report["rounds"].append(await measured_round(runs))
    return report


if __name__ == "__main__":
    backend, run_count, round_count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if "trace" in sys.argv[4:]:
        # The live Python memory, whatever the allocator keeps: flat if nothing leaks.
        tracemalloc.start(1)
    result = anyio.run(main, run_count, round_count, backend=backend)
    result["backend"] = backend
    print(json.dumps(result))
