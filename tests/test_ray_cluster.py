"""RayRunnable with a Ray of its own (a subprocess each): a two-node cluster losing a node
mid-batch, and a first use before ``ray.init`` (a local Ray is started, and the log says so)."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

import pytest

pytest.importorskip("ray")

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture
def ray_tmp() -> Any:
    """A short temporary folder for Ray's session (its socket paths must stay under 108 bytes)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_scenario(name: str, ray_tmp: pathlib.Path, *args: str) -> tuple[dict[str, Any], str]:
    env = {
        **os.environ,
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_AUTH_MODE": "disabled",
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)]),
    }
    log = ray_tmp / "scenario.log"
    # Output to a file, not a pipe: Ray's helper processes inherit the output, and a pipe
    # would stay open as long as they live. In a session of its own, so that whatever
    # the scenario's Ray leaves behind is ended with it.
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "_ray_scenarios.py"), name, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=150)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text()
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert returncode == 0 and lines, output[-5000:]
    return json.loads(lines[-1][len("RESULT ") :]), output


def test_a_node_removed_mid_batch_has_its_items_retried_on_the_other(ray_tmp: pathlib.Path) -> None:
    """On a two-node cluster, removing the node of some actors mid-batch still gives every right result."""
    seen, _ = run_scenario("cluster", ray_tmp)
    assert seen["results"] == [2 * i for i in range(8)]
    assert seen["second"] in seen["nodes"] and len(seen["nodes"]) == 2  # an actor was on the removed node
    assert seen["entered"] >= 12 and seen["actors"] == 2


def test_a_first_use_without_ray_init_starts_a_local_ray_and_logs_it(ray_tmp: pathlib.Path) -> None:
    """Used before ``ray.init``, a RayRunnable starts a local Ray, says so in the ``rillet`` log, and runs."""
    seen, output = run_scenario("uninitialised", ray_tmp)
    assert seen == {"result": 3, "initialised": True}
    assert "LOG rillet engine.ray: Ray was not initialised; starting a local Ray" in output


@pytest.mark.slow
def test_the_batch_on_ray_example_runs_offline(ray_tmp: pathlib.Path) -> None:
    """examples/batch_on_ray.py runs its inputs through prompt | model | parser on a local Ray and reports them."""
    log = ray_tmp / "example.log"
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(HERE.parent / "examples" / "batch_on_ray.py"), "--inputs", "40"],
            env=env,
            cwd=ray_tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=150)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text()
    assert returncode == 0, output[-3000:]
    assert "40/40" in output and "40 answers in" in output
    assert "  0: parrot: " in output and "  39: wren: " in output
