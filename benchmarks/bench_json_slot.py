"""Scenario 3: the streaming JSON parser, whose benchmark lives in ``bench_json_parser.py``.

That module is written separately. This slot only runs it when it exists, as
``python -m benchmarks.bench_json_parser [--quick]`` in a subprocess (so its interface
and its imports stay its own business), and puts its output in the report verbatim.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ._harness import Budget, Section

__all__ = ("run",)

KEY = "json"
MODULE = "bench_json_parser"
TIMEOUT = 300.0


def _invoke(extra: list[str]) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "-m", f"{__package__}.{MODULE}", *extra],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=TIMEOUT,
        check=False,
    )


def run(budget: Budget) -> Section:
    """Run ``bench_json_parser`` if present and report its output."""
    section = Section(KEY, "3. Streaming JSON parser")
    if not (Path(__file__).resolve().parent / f"{MODULE}.py").exists():
        section.skipped.append(f"benchmarks/{MODULE}.py does not exist yet (its own helper writes it)")
        return section
    extra = ["--quick"] if budget.quick else []
    completed = _invoke(extra)
    if completed.returncode == 2 and extra and "unrecognized arguments" in completed.stderr:
        extra = []
        completed = _invoke(extra)
    command = " ".join(["python -m", f"benchmarks.{MODULE}", *extra])
    section.notes.append(f"Output of `{command}` (exit status {completed.returncode}), verbatim:")
    section.notes.append("```\n" + completed.stdout.rstrip() + "\n```")
    if completed.returncode != 0:
        section.findings.append(f"{MODULE} exited with status {completed.returncode}")
        section.notes.append("stderr:\n\n```\n" + completed.stderr.rstrip()[-4000:] + "\n```")
    return section
