"""The subprocess behind the peak-RSS scenarios: one measurement per fresh interpreter.

Peak RSS only ever grows, so every measurement that reports it runs in its own process:
``python -m benchmarks._worker '<json spec>'``, which prints one JSON object on its last
stdout line. The worker imports only the side it measures; after its imports and setup
it collects garbage and resets the kernel's RSS high-water mark (``/proc/self/clear_refs``),
records the RSS (the baseline), runs, and records the high-water mark again (the peak).

The peak is read from ``VmHWM`` in ``/proc/self/status``, not from ``getrusage``'s
``ru_maxrss``: Linux folds the RSS of the process image replaced by ``exec`` into
``ru_maxrss`` (for a child started with ``vfork``, that is the parent's own RSS: about
76 MiB for the benchmark process with langchain-core loaded), and ``clear_refs`` does not
reset it. ``ru_maxrss`` is still printed (``ru_maxrss_kib``) for reference, and is used
where ``/proc`` is not available.

Tasks:

* ``concurrent``: ``chains`` runs of a chain started at once in one task group, each
  reading its ``tokens`` chunks to the end; ``seconds`` for all of them.
* ``long``: one run of ``source | increment | increment`` streaming ``chunks`` chunks to
  a slow consumer (a checkpoint and a little arithmetic per chunk).
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from typing import Any

import anyio
import anyio.lowlevel

__all__ = ("main",)


def _ru_maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` memory field in KiB (``None`` where /proc is not available)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _current_rss_kib() -> int:
    rss = _status_kib("VmRSS")
    return rss if rss is not None else _ru_maxrss_kib()


def _peak_rss_kib() -> int:
    """This process's RSS high-water mark (the current RSS too: the kernel syncs lazily)."""
    hwm = _status_kib("VmHWM")
    if hwm is None:
        return _ru_maxrss_kib()
    return max(hwm, _current_rss_kib())


def _start_measuring() -> int:
    """Collect garbage and reset the RSS high-water mark where Linux allows; return the RSS."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass
    return _current_rss_kib()


def _make_chain(side: str, variant: str, tokens: int) -> tuple[Any, Any]:
    from . import _chains

    if variant == "nodes":
        if side == "rillet":
            return _chains.rillet_prompt_chain(tokens), _chains.PROMPT_INPUT
        return _chains.langchain_prompt_chain(tokens), _chains.PROMPT_INPUT
    if side == "rillet":
        return _chains.rillet_chain(3), tokens
    return _chains.langchain_chain(3), tokens


async def _concurrent(spec: dict[str, Any]) -> dict[str, Any]:
    side, variant, chains, tokens = spec["side"], spec["variant"], spec["chains"], spec["tokens"]
    # nodes' ScriptedChatModel may consume its replies, so every run gets its own chain.
    if variant == "nodes":
        runs = [_make_chain(side, variant, tokens) for _ in range(chains)]
    else:
        runs = [_make_chain(side, variant, tokens)] * chains
    received = [0]

    async def rillet_one(index: int) -> None:
        chain, value = runs[index]
        async with chain.astream(value) as stream:
            async for _ in stream:
                received[0] += 1

    async def langchain_one(index: int) -> None:
        chain, value = runs[index]
        async for _ in chain.astream(value):
            received[0] += 1

    one = rillet_one if side == "rillet" else langchain_one
    baseline = _start_measuring()
    started = time.perf_counter()
    async with anyio.create_task_group() as task_group:
        for index in range(chains):
            task_group.start_soon(one, index)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "items": received[0],
        "baseline_kib": baseline,
        "peak_kib": _peak_rss_kib(),
        "end_kib": _current_rss_kib(),
        "ru_maxrss_kib": _ru_maxrss_kib(),
    }


async def _long(spec: dict[str, Any]) -> dict[str, Any]:
    from ._chains import rillet_chain

    chain = rillet_chain(3)
    chunks = spec["chunks"]
    received = 0
    checksum = 0
    baseline = _start_measuring()
    started = time.perf_counter()
    async with chain.astream(chunks) as stream:
        async for chunk in stream:
            await anyio.lowlevel.checkpoint()
            checksum = (checksum + chunk * 31) % 1_000_003  # a little work per chunk
            received += 1
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "items": received,
        "baseline_kib": baseline,
        "peak_kib": _peak_rss_kib(),
        "end_kib": _current_rss_kib(),
        "ru_maxrss_kib": _ru_maxrss_kib(),
    }


def main(argv: list[str]) -> int:
    """Run the measurement described by the JSON spec in ``argv[0]``; print the result."""
    spec: dict[str, Any] = json.loads(argv[0])
    task = {"concurrent": _concurrent, "long": _long}[spec["task"]]

    async def body() -> dict[str, Any]:
        return await task(spec)

    result = anyio.run(body, backend=spec["backend"])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
