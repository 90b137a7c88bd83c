"""Peak memory of collecting a JSON parser's output, for each way of running the chain.

``python -m benchmarks.collect_memory`` streams a JSON document of about ``--kib`` KiB
(100 by default) through ``ScriptedChatModel | JsonOutputParser`` in 4-character tokens
and collects the output in several ways. The parser emits a snapshot of the whole value
each time it grows, so a collector that kept every snapshot would need memory quadratic
in the document (issue 12, defect 6); ``astream`` with a loop that drops each snapshot
is the floor the others are compared with.

Documents: ``flat``, a list of short strings (the worst case: every snapshot is a new
list of every item so far), and ``records``, the LLM-like document of
``bench_json_parser`` (snapshots copy only the open path).

Figures: the peak of Python allocations during the run (``tracemalloc``, reset after a
garbage collection just before the call; the document and tokens are built before), and
the CPU time of the same run done again without tracing (``time.process_time``, best of
``--repeats``).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .bench_json_parser import build_document

__all__ = ("main",)

CHARS_PER_TOKEN = 4
WAYS = ("astream", "ainvoke", "abatch", "function after parser")
DOCUMENTS = ("flat", "records")


def _document(kind: str, kib: int) -> str:
    target = kib * 1024
    if kind == "records":
        return build_document(target // CHARS_PER_TOKEN)
    items = [f"s{i}" for i in range(target // 6)]
    text = json.dumps(items)
    while len(text) > target:
        items.pop()
        text = json.dumps(items)
    return text


def _collector(way: str, tokens: list[str]) -> Callable[[], Awaitable[Any]]:
    from nodes import JsonOutputParser, ScriptedChatModel

    chain: Any = ScriptedChatModel(replies=[tokens]) | JsonOutputParser()
    if way == "astream":

        async def stream() -> Any:
            last = None
            async for chunk in chain.astream("go"):
                last = chunk  # each snapshot dropped as the next arrives
            return last

        return stream
    if way == "ainvoke":
        return lambda: chain.ainvoke("go")
    if way == "abatch":

        async def batch() -> Any:
            return (await chain.abatch(["go"]))[0]

        return batch
    if way == "function after parser":
        after = chain | (lambda value: value)
        return lambda: after.ainvoke("go")
    raise ValueError(f"unknown way {way!r}; the ways are {', '.join(WAYS)}")


async def _measure(way: str, tokens: list[str], repeats: int) -> tuple[int, float, int]:
    """``(peak bytes traced, best CPU seconds untraced, items in the result)``."""
    collect = _collector(way, tokens)
    gc.collect()
    tracemalloc.start()
    try:
        value = await collect()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del value
    best = float("inf")
    for _ in range(repeats):
        collect = _collector(way, tokens)
        gc.collect()
        started = time.process_time()
        value = await collect()
        best = min(best, time.process_time() - started)
    size = len(value["results"]) if isinstance(value, dict) else len(value)
    return peak, best, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.collect_memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--kib", type=int, default=100, help="document size in KiB")
    parser.add_argument("--repeats", type=int, default=3, help="untraced runs for the CPU time")
    parser.add_argument("--backend", choices=("trio", "asyncio", "both"), default="both")
    parser.add_argument("--only", choices=DOCUMENTS, action="append", help="run only these documents")
    args = parser.parse_args(argv)
    backends = ("trio", "asyncio") if args.backend == "both" else (args.backend,)
    print(f"| document | way | backend | items | peak traced | CPU time (best of {args.repeats}) |")
    print("|---|---|---|---:|---:|---:|")
    for kind in args.only or DOCUMENTS:
        text = _document(kind, args.kib)
        tokens = [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]
        label = f"{kind} ({len(text) / 1024:.0f} KiB, {len(tokens):,} tokens)"
        for way in WAYS:
            for backend in backends:
                peak, seconds, size = anyio.run(_measure, way, tokens, args.repeats, backend=backend)
                print(
                    f"| {label} | {way} | {backend} | {size:,} | {peak / 2**20:,.1f} MiB | {seconds:.2f} s |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
