"""Memory a replay log holds for one run: 10,000 events, and a smaller log under the same run.

``python -m benchmarks.replay_memory`` runs ``prompt | model | StrOutputParser()`` (a
``ScriptedChatModel`` streaming short word tokens) recorded by ``RunStream.replay_log``
and measures what the log keeps alive once the run is over: the Python allocations
(``tracemalloc``) with the log still referenced, minus the same after the log is dropped
and garbage collected. That is every event dict, its ``data``, its stamps and the chunks
only the log still refers to (an event's tags, metadata and parent ids are shared with
its step's other events).

Cases:

* ``every step``: a log of 10,000 (every event of the run: three stream events per
  token, model, parser and chain, so 3,331 tokens make 10,000 events and a few more);
* ``root only``: ``root_only=True`` (what ``engine.sse``'s resumable output mode keeps:
  the run's own start, one stream event per output chunk and its end), 9,998 tokens;
* ``chat_model only``: ``include_types=["chat_model"]`` (an ``EventsView`` of the
  model), 9,998 tokens;
* ``every step, capacity 1,000``: the first case's run with a log of 1,000 (it stays
  bounded: it holds the newest 1,000).
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
from typing import Any

import anyio

__all__ = ("main",)

EVENTS = 10_000
CASES = ("every step", "root only", "chat_model only", "every step, capacity 1,000")


def _tokens(count: int) -> list[str]:
    return [f" w{i % 1000}" for i in range(count)]


def _plan(case: str) -> tuple[int, int, dict[str, Any]]:
    """(tokens, capacity, replay_log options) of a case."""
    if case == "every step":
        return (EVENTS - 7) // 3, EVENTS, {}
    if case == "root only":
        return EVENTS - 2, EVENTS, {"root_only": True}
    if case == "chat_model only":
        return EVENTS - 2, EVENTS, {"include_types": ["chat_model"]}
    if case == "every step, capacity 1,000":
        return (EVENTS - 7) // 3, 1_000, {}
    raise ValueError(f"unknown case {case!r}; the cases are {', '.join(CASES)}")


async def _measure(case: str) -> tuple[int, int, int]:
    """(events recorded, events held, bytes the log keeps alive) for one case."""
    from nodes import ChatPromptTemplate, ScriptedChatModel, StrOutputParser

    count, capacity, options = _plan(case)
    tokens = _tokens(count)
    chain: Any = (
        ChatPromptTemplate.from_template("say {n} words")
        | ScriptedChatModel(replies=[tokens])
        | StrOutputParser()
    )
    gc.collect()
    tracemalloc.start()
    try:
        stream = chain.astream({"n": count})
        log = stream.replay_log(capacity, **options)
        async with stream as chunks:
            while await chunks.next_batch(1024):
                pass
        del stream, chunks
        stats = log.statistics()
        gc.collect()
        with_log = tracemalloc.get_traced_memory()[0]
        del log
        gc.collect()
        without_log = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return stats.recorded, stats.held, with_log - without_log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.replay_memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--backend", choices=("trio", "asyncio"), default="trio")
    args = parser.parse_args(argv)
    print("| case | events recorded | events held | memory held | per event held |")
    print("|---|---:|---:|---:|---:|")
    for case in CASES:
        recorded, held, size = anyio.run(_measure, case, backend=args.backend)
        print(
            f"| {case} | {recorded:,} | {held:,} | {size / 1024 / 1024:.2f} MiB | {size / held:,.0f} B |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
