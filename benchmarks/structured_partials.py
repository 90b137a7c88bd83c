"""Structured output that streams: the time per partial snapshot must stay flat.

``python -m benchmarks.structured_partials`` streams LLM-like JSON documents of about 1k,
2k, 4k and 8k tokens (4 characters a token; ``bench_json_parser.build_document``) through
``model.with_structured_output(Places)``, a dataclass schema, with both methods: the
reply's text (``json_schema``, ``ScriptedChatModel``) and a forced tool call's argument
fragments (``function_calling``, a model node here that streams them as Claude does).
The consumer reads every chunk: the partial snapshots, then the ``Places`` instance.

Each fragment goes through the incremental parser once, so a partial costs the same at
the end of the document as at its start: the table gives the mean CPU time between
consecutive partials in each quarter of the stream (Q1 the first, Q4 the last) and their
ratio Q4/Q1 (flat is about 1). The growth exponent is the slope of log(total time) over
log(size) from the smallest document to the largest (1.0 is linear). For contrast, the
``re-parse`` row does what the issue rules out, at the 4k size only: a fresh parser fed
the whole prefix for every token (its Q4/Q1 grows with the document).

Times are CPU time (``time.process_time_ns``), best total of ``--repeats`` runs (after a
garbage collection each); the quarters are those of the best run.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import math
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import anyio

from .bench_json_parser import CHARS_PER_TOKEN, build_document

__all__ = ("main",)

TOKEN_COUNTS = (1000, 2000, 4000, 8000)
METHODS = ("json_schema", "function_calling")


@dataclasses.dataclass
class Location:
    lat: float
    lon: float


@dataclasses.dataclass
class Place:
    id: int
    name: str
    summary: str
    rating: float
    visitors: int
    open: bool
    closed_reason: str | None
    location: Location
    tags: list[str]


@dataclasses.dataclass
class Places:
    """Places to visit."""

    query: str
    count: int
    results: list[Place]


def _tool_model(fragments: Sequence[str]) -> Any:
    """A model node that answers with one call of the ``Places`` tool, argument by argument."""
    import attrs

    from nodes import AIMessageChunk, BaseChatModel, BaseMessage, ToolCallChunk

    @attrs.define(eq=False, repr=False)
    class ToolFragments(BaseChatModel):
        call_arguments = {"tools": "tools", "tool_choice": "tool_choice"}  # noqa: RUF012  # attrs sees no annotation
        tools: tuple[Any, ...] = ()
        tool_choice: Any = None

        def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None) -> Any:
            return self.bind(tools=tuple(tools), tool_choice=tool_choice)

        async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
            start = ToolCallChunk(name="Places", id="toolu_1", args="", index=0)
            yield AIMessageChunk(content="", tool_call_chunks=[start])
            for fragment in fragments:
                yield AIMessageChunk(content="", tool_call_chunks=[ToolCallChunk(args=fragment, index=0)])

    return ToolFragments()


def _runnable(method: str, tokens: list[str]) -> Any:
    from nodes import ScriptedChatModel

    model = ScriptedChatModel([tokens]) if method == "json_schema" else _tool_model(tokens)
    return model.with_structured_output(Places, method=method)


async def _run(method: str, tokens: list[str]) -> tuple[list[int], Any]:
    """The CPU-time stamps of every chunk's arrival, and the last chunk."""
    runnable = _runnable(method, tokens)
    stamps = [time.process_time_ns()]
    last: Any = None
    async with runnable.astream("go") as chunks:
        async for chunk in chunks:
            stamps.append(time.process_time_ns())
            last = chunk
    return stamps, last


def _quarters(stamps: list[int]) -> list[float]:
    """Mean microseconds between consecutive partials in each quarter of the stream."""
    gaps = [b - a for a, b in itertools.pairwise(stamps[1:-1])]  # partials only, not the final value
    size = max(1, len(gaps) // 4)
    return [
        sum(part) / len(part) / 1000 for part in (gaps[i * size : (i + 1) * size] for i in range(4)) if part
    ]


def _reparse(tokens: list[str]) -> list[int]:
    """The rejected way: a fresh parser fed the whole prefix for every token."""
    from nodes import IncrementalJsonParser

    stamps = [time.process_time_ns()]
    prefix = ""
    for token in tokens:
        prefix += token
        parser = IncrementalJsonParser()
        if parser.feed(prefix) and parser.has_value:
            _ = parser.value
            stamps.append(time.process_time_ns())
    return stamps


async def _best(method: str, tokens: list[str], repeats: int) -> tuple[float, list[float], int]:
    best: tuple[float, list[float], int] = (math.inf, [], 0)
    for _ in range(repeats):
        gc.collect()
        stamps, last = await _run(method, tokens)
        if not isinstance(last, Places):
            raise AssertionError(f"{method}: the last chunk is {type(last).__name__}, not Places")
        total = (stamps[-1] - stamps[0]) / 1e6
        if total < best[0]:
            best = (total, _quarters(stamps), len(stamps) - 2)
    return best


def _row(label: str, tokens: int, chars: int, partials: int, total: float, quarters: list[float]) -> str:
    shown = " | ".join(f"{q:.1f}" for q in quarters)
    return f"| {label} | {tokens:,} | {chars:,} | {partials:,} | {total:.1f} | {shown} | {quarters[-1] / quarters[0]:.2f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.structured_partials", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; the best total is kept")
    parser.add_argument("--backend", choices=("trio", "asyncio", "both"), default="both")
    parser.add_argument("--no-reparse", action="store_true", help="skip the re-parse contrast row")
    args = parser.parse_args(argv)
    backends = ("trio", "asyncio") if args.backend == "both" else (args.backend,)
    print(
        f"CPU time, best total of {args.repeats}; per partial: mean µs between consecutive partials per quarter"
    )
    print("| case | tokens | chars | partials | total ms | Q1 µs | Q2 µs | Q3 µs | Q4 µs | Q4/Q1 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    documents = {count: build_document(count) for count in TOKEN_COUNTS}
    exponents: list[str] = []
    for backend in backends:
        for method in METHODS:
            totals: list[float] = []
            for count, text in documents.items():
                tokens = [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]
                total, quarters, partials = anyio.run(_best, method, tokens, args.repeats, backend=backend)
                totals.append(total)
                print(_row(f"{method}, {backend}", count, len(text), partials, total, quarters), flush=True)
            exponent = math.log(totals[-1] / totals[0]) / math.log(TOKEN_COUNTS[-1] / TOKEN_COUNTS[0])
            exponents.append(f"{method}, {backend}: {exponent:.2f}")
    if not args.no_reparse:
        text = documents[4000]
        tokens = [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]
        gc.collect()
        stamps = _reparse(tokens)
        quarters = _quarters([*stamps, stamps[-1]])
        total = (stamps[-1] - stamps[0]) / 1e6
        print(
            _row(
                "re-parse the prefix per token (rejected)", 4000, len(text), len(stamps) - 1, total, quarters
            )
        )
    span = f"{TOKEN_COUNTS[0]}->{TOKEN_COUNTS[-1]} tokens"
    print(f"growth exponent of the total, {span} (1.0 is linear): {'; '.join(exponents)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
