"""Load: thousands of concurrent short runs sharing one bus with three lossless subscribers.

The rounds run in a subprocess (``tests/_reliability_load.py``, with warnings as errors)
so that the memory figures belong to the load alone, not to the test session. Every event
must reach each subscriber exactly once and in each run's exact pipeline order; nothing
may outlive a round; the resident memory after the last round must be within 10% of the
first measured round's (after an unmeasured warm-up round, with the system allocator so
that RSS follows the live heap: see _reliability_load.py). ``run_load(..., trace=True)``
also checks that the live Python memory (tracemalloc) stays flat; it is too slow for the
default run, and tests/RELIABILITY.md records its figures.
"""

from __future__ import annotations

import faulthandler
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _reliability_harness import RECORDS, tally

LOAD = Path(__file__).with_name("_reliability_load.py")
EVENTS_PER_RUN = 15
SUBSCRIBERS = 3
HANG_GUARD = 1800  # seconds; only ends a hung subprocess, never paces the test


def run_load(backend: str, runs: int, rounds: int, *, trace: bool = False) -> dict[str, Any]:
    """Run the load script and return its report (failing with its stderr if it failed)."""
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            str(LOAD),
            backend,
            str(runs),
            str(rounds),
            *(["trace"] if trace else []),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_GUARD,
        check=False,
    )
    assert done.returncode == 0, f"the load script failed:\n{done.stderr[-4000:]}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def check_report(report: dict[str, Any], runs: int, rounds: int) -> None:
    RECORDS[f"load {report['backend']} {runs} runs x {rounds} rounds"] = report
    measured = report["rounds"]
    assert len(measured) == rounds
    for round_ in [report["warm_up"], *measured]:
        assert round_["events_checked"] == EVENTS_PER_RUN * SUBSCRIBERS * runs
    first, last = measured[0], measured[-1]
    assert last["rss_bytes"] <= 1.10 * first["rss_bytes"], (
        f"RSS grew from {first['rss_bytes']} to {last['rss_bytes']} bytes over {rounds} rounds"
    )
    assert last["gc_objects"] - first["gc_objects"] <= 100 * rounds, "objects accumulate across rounds"
    if "traced_bytes" in first:
        # Live Python memory after a round: the same, give or take a few small objects.
        assert last["traced_bytes"] - first["traced_bytes"] <= 16 * 1024 * rounds
    tally("runs", runs * (rounds + 1))
    tally(
        "events checked (order, completeness)",
        sum(r["events_checked"] for r in [report["warm_up"], *measured]),
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_thousand_concurrent_runs_deliver_every_event_once_in_order(backend: str) -> None:
    """1,000 concurrent runs on one bus: each of 3 block subscribers gets every event once, in order; no leak."""
    report = run_load(backend, runs=1000, rounds=2)
    check_report(report, runs=1000, rounds=2)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ten_thousand_concurrent_runs_over_five_rounds(backend: str) -> None:
    """10,000 concurrent runs, 5 rounds: every event once and in order, RSS within 10% of round 1."""
    # This takes longer than the session's faulthandler_timeout on two cores; the
    # subprocess's own HANG_GUARD bounds it instead of a traceback dump mid-run.
    faulthandler.cancel_dump_traceback_later()
    report = run_load(backend, runs=10_000, rounds=5)
    check_report(report, runs=10_000, rounds=5)
