"""Instructions per chunk, counted by valgrind: figures that the machine's load cannot move.

``python -m benchmarks.instructions`` runs each case twice under ``valgrind
--tool=callgrind`` (with 0 items and with ``--items`` items, each in a fresh interpreter)
and prints the difference divided by the number of items: the CPU instructions one more
chunk (or token) costs, start-up excluded. Wall-clock figures on a shared machine move
by tens of percent from one run to the next; these move by well under one percent, so
they are what to compare when changing the per-chunk path. Needs ``valgrind`` on the
PATH (not a Python dependency); about a minute per case.

Cases (each on trio and on asyncio):

* ``chain3``: ``source | increment | increment`` (scenario 1), per chunk;
* ``prompt_model_parser``: ``astream`` of prompt | model | parser, per token;
* ``with_unmatched_bus``: the same with a bus whose only subscriber matches nothing;
* ``events``: ``astream_events`` of prompt | model | parser, per token (3 events);
* ``replay_log``: ``astream`` of prompt | model | parser recorded by a replay log of 64
  events, per token (3 stamped events, each numbered, timed and kept in the log's ring);
* ``otel_subscriber``: ``astream`` of prompt | model | parser traced by ``engine.otel``'s
  ``trace_runs`` (spans to the SDK's in-memory exporter), per token (no event per token:
  the subscriber takes each step's first chunk only, but every step sums its output for
  its end event);
* ``every_step_subscriber``: the same with a bus subscriber of every step that takes no
  stream events (what observing every step costs by itself: compare with ``otel_subscriber``);
* ``retry_prompt_model_parser``: ``astream`` of prompt | model.with_retry() | parser, per
  token (compare with ``prompt_model_parser``: what the retry wrapper costs a healthy stream).
* ``retry_timeout_prompt_model_parser``: the same with ``.with_timeout(idle=30)`` around the
  retry wrapper (issue 13's benchmark chain).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from typing import Any

import anyio

__all__ = ("main",)

CASES = (
    "chain3",
    "prompt_model_parser",
    "with_unmatched_bus",
    "events",
    "replay_log",
    "otel_subscriber",
    "every_step_subscriber",
    "retry_prompt_model_parser",
    "retry_timeout_prompt_model_parser",
)
BACKENDS = ("trio", "asyncio")


async def _run_case(case: str, items: int) -> int:
    """Run one case with ``items`` chunks or tokens; return how many the consumer got."""
    from ._chains import (
        PROMPT_INPUT,
        rillet_chain,
        rillet_prompt_chain,
        rillet_retry_prompt_chain,
        rillet_retry_timeout_prompt_chain,
    )

    count = 0
    if case == "chain3":
        async for _ in rillet_chain(3).astream(items):
            count += 1
    elif case == "prompt_model_parser":
        async for _ in rillet_prompt_chain(items).astream(PROMPT_INPUT):
            count += 1
    elif case == "with_unmatched_bus":
        from engine import EventBus

        bus = EventBus()
        async with bus.subscribe(include_names=["no-step-has-this-name"]):
            async for _ in rillet_prompt_chain(items).astream(PROMPT_INPUT, {"bus": bus}):
                count += 1
    elif case == "retry_timeout_prompt_model_parser":
        async for _ in rillet_retry_timeout_prompt_chain(items).astream(PROMPT_INPUT):
            count += 1
    elif case == "retry_prompt_model_parser":
        async for _ in rillet_retry_prompt_chain(items).astream(PROMPT_INPUT):
            count += 1
    elif case == "events":
        async for _ in rillet_prompt_chain(items).astream_events(PROMPT_INPUT, version="v2"):
            count += 1
    elif case == "replay_log":
        stream = rillet_prompt_chain(items).astream(PROMPT_INPUT)
        stream.replay_log(64)
        async for _ in stream:
            count += 1
    elif case == "every_step_subscriber":
        from engine import EventBus

        bus = EventBus()
        async with bus.subscribe(capacity=100_000, overflow="drop", stream_events="none"):
            async for _ in rillet_prompt_chain(items).astream(PROMPT_INPUT, {"bus": bus}):
                count += 1
    elif case == "otel_subscriber":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from engine.otel import trace_runs

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        async with trace_runs(tracer_provider=provider) as tracing:
            async for _ in rillet_prompt_chain(items).astream(PROMPT_INPUT, tracing.config):
                count += 1
    else:
        raise ValueError(f"unknown case {case!r}; the cases are {', '.join(CASES)}")
    return count


def _collected(case: str, backend: str, items: int) -> int:
    """Instructions valgrind counted for one fresh interpreter running the case."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        case,
        backend,
        str(items),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    match = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"valgrind run of {case} [{backend}] failed:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--items", type=int, default=10_000, help="chunks or tokens per measured run")
    parser.add_argument("--only", choices=CASES, action="append", help="run only these cases")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "BACKEND", "ITEMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        case, backend, items = args.child
        got: Any = anyio.run(_run_case, case, int(items), backend=backend)
        if int(items) and got < int(items):
            print(f"{case}: expected at least {items} items, got {got}", file=sys.stderr)
            return 1
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: nothing to count", file=sys.stderr)
        return 2
    print(f"| case | backend | instructions per item ({args.items:,} items) |")
    print("|---|---|---:|")
    for case in args.only or CASES:
        for backend in BACKENDS:
            base = _collected(case, backend, 0)
            full = _collected(case, backend, args.items)
            print(f"| {case} | {backend} | {(full - base) / args.items:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
