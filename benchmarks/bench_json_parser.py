"""How the incremental JSON parser's cost grows with the document.

Builds LLM-output-like JSON documents of about 1k, 2k, 4k and 8k tokens (4 characters
a token), feeds each to ``IncrementalJsonParser`` in 4-character pieces and takes a
snapshot whenever ``feed`` reports a change, as the JSON output node does. A second
column adds the JSON Patch between consecutive snapshots (the node's ``diff`` mode).

Prints the best time of several runs per size and the growth exponent, the slope of
log(time) against log(size) from the smallest document to the largest: 1.0 is linear,
2.0 quadratic. Targets: exponent <= 1.1 and the 8k-token document under 0.2 s.

Times are the process's CPU time (``time.process_time``), so that other work on a busy
machine does not land in one size and not another and skew the exponent; the best of
several runs, each after a garbage collection, is kept.

Run: ``.venv/bin/python benchmarks/bench_json_parser.py``
"""

from __future__ import annotations

import gc
import json
import math
import random
import time
from typing import Any

from nodes._json_stream import IncrementalJsonParser
from nodes._jsonpatch import json_patch_ops

CHARS_PER_TOKEN = 4
TOKEN_COUNTS = (1000, 2000, 4000, 8000)
REPEATS = 11

_WORDS = [
    "river", "harbor", "granite", "lantern", "meadow", "orbit", "saffron", "tundra", "violet", "willow",
    "quartz", "ember", "canyon", "delta", "fjord", "glacier", "horizon", "island", "jungle", "kelp",
]  # fmt: skip


def build_document(tokens: int, seed: int = 0) -> str:
    """An indented object holding a list of records, as a model asked for JSON writes it."""
    rng = random.Random(seed)
    target = tokens * CHARS_PER_TOKEN
    records: list[dict[str, Any]] = []
    document: dict[str, Any] = {"query": "places to visit", "count": 0, "results": records}
    text = json.dumps(document, indent=2)
    while len(text) < target:
        index = len(records)
        records.append(
            {
                "id": index,
                "name": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3))).title(),
                "summary": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 12))) + ".",
                "rating": round(rng.uniform(1, 5), 2),
                "visitors": rng.randint(100, 10_000_000),
                "open": rng.random() < 0.7,
                "closed_reason": None,
                "location": {"lat": round(rng.uniform(-90, 90), 4), "lon": round(rng.uniform(-180, 180), 4)},
                "tags": [rng.choice(_WORDS) for _ in range(rng.randint(0, 4))],
            }
        )
        document["count"] = len(records)
        text = json.dumps(document, indent=2)
    return text


def stream(text: str, *, diff: bool) -> int:
    """Feed ``text`` in token-sized pieces, snapshotting (and diffing) on every change."""
    parser = IncrementalJsonParser()
    previous: Any = None
    snapshots = 0
    for start in range(0, len(text), CHARS_PER_TOKEN):
        if parser.feed(text[start : start + CHARS_PER_TOKEN]):
            snapshot = parser.value
            if diff:
                json_patch_ops(previous, snapshot)
            previous = snapshot
            snapshots += 1
    parser.finish()
    return snapshots


def best_time(text: str, *, diff: bool) -> float:
    best = math.inf
    for _ in range(REPEATS):
        gc.collect()
        started = time.process_time()
        stream(text, diff=diff)
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    print(f"IncrementalJsonParser, {CHARS_PER_TOKEN}-character pieces, best CPU time of {REPEATS} runs")
    print(f"{'tokens':>7} {'chars':>7} {'snapshots':>9} {'parse+snapshot':>15} {'+json patch':>12}")
    sizes: list[int] = []
    plain: list[float] = []
    patched: list[float] = []
    for tokens in TOKEN_COUNTS:
        text = build_document(tokens)
        snapshots = stream(text, diff=False)
        sizes.append(len(text))
        plain.append(best_time(text, diff=False))
        patched.append(best_time(text, diff=True))
        print(
            f"{tokens:>7} {len(text):>7} {snapshots:>9} {plain[-1] * 1000:>12.1f} ms {patched[-1] * 1000:>9.1f} ms"
        )
    size_ratio = math.log(sizes[-1] / sizes[0])
    print(
        f"growth exponent {TOKEN_COUNTS[0]}->{TOKEN_COUNTS[-1]} tokens: "
        f"parse+snapshot {math.log(plain[-1] / plain[0]) / size_ratio:.3f}, "
        f"+json patch {math.log(patched[-1] / patched[0]) / size_ratio:.3f} "
        "(target <= 1.1; 8k tokens target < 200 ms)"
    )


if __name__ == "__main__":
    main()
