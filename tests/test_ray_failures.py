"""``engine.ray.RayRunnable`` when things break: dead actors, bad input, no Ray.

A killed actor's items are retried on another actor while nothing of them was delivered
(before the commit point); a stream that delivered a chunk is not retried. Actors are
killed with ``ray.kill`` while their work waits at a probe's gate.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import anyio
import pytest

pytest.importorskip("ray")

import ray
from _ray_probe import Probe, gated_double, gated_stream

from engine import RunnableLambda
from engine.ray import RayRunnable

pytestmark = [pytest.mark.usefixtures("ray_session")]


async def fetch(ref: Any) -> Any:
    """``ray.get`` from a test, in a thread (the test's own reads, not the engine's)."""
    return await anyio.to_thread.run_sync(functools.partial(ray.get, ref, timeout=60), abandon_on_cancel=True)


@pytest.fixture
def probe() -> Any:
    handle = Probe.remote()
    yield handle
    ray.kill(handle)


async def test_an_actor_killed_mid_batch_has_its_items_retried_elsewhere(probe: Any) -> None:
    """Killing one actor while its items wait gives every item's right result (retried on another actor)."""
    remote = RayRunnable(gated_double(probe), num_actors=2)
    try:
        victim = remote.start_actors()[0]
        results: list[Any] = []

        async def run() -> None:
            results.extend(await remote.abatch(list(range(6)), max_concurrency=6))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run)
            await fetch(probe.wait_for.remote("entered", 6))
            ray.kill(victim, no_restart=True)
            await fetch(probe.wait_for.remote("entered", 9))  # its 3 items, again on a live actor
            await fetch(probe.open_gate.remote())
        assert results == [2 * i for i in range(6)]
        assert victim not in remote.actors and len(remote.actors) == 2
    finally:
        remote.shutdown()


async def test_a_stream_whose_actor_dies_before_its_first_chunk_is_retried(probe: Any) -> None:
    """A stream whose actor dies before any chunk was delivered runs again elsewhere, each chunk once."""
    remote = RayRunnable(gated_stream(probe, 0, 3), num_actors=1)
    try:
        victim = remote.start_actors()[0]
        async with remote.astream("a") as chunks:
            await fetch(probe.wait_for.remote("entered", 1))
            ray.kill(victim, no_restart=True)
            await fetch(probe.wait_for.remote("entered", 2))
            await fetch(probe.open_gate.remote())
            got = [chunk async for chunk in chunks]
        assert got == ["a0 ", "a1 ", "a2 "]
    finally:
        remote.shutdown()


async def test_a_stream_whose_actor_dies_after_its_first_chunk_fails_without_a_repeat(probe: Any) -> None:
    """After a delivered chunk, a dead actor fails the stream (noted), and no chunk comes twice."""
    remote = RayRunnable(gated_stream(probe, 1, 3), num_actors=1)
    try:
        victim = remote.start_actors()[0]
        got: list[str] = []
        with pytest.raises(ray.exceptions.RayActorError) as caught:
            async with remote.astream("b") as chunks:
                async for chunk in chunks:
                    got.append(chunk)
                    ray.kill(victim, no_restart=True)
        assert got == ["b0 "]
        assert any("delivered 1 chunk" in note for note in caught.value.__notes__)
        assert (await fetch(probe.read.remote()))["entered"] == 1
    finally:
        remote.shutdown()


async def test_attempts_are_bounded(probe: Any) -> None:
    """With ``max_attempts=1`` a dead actor's item fails at once, saying it gave up."""
    remote = RayRunnable(gated_double(probe), num_actors=1, max_attempts=1)
    try:
        victim = remote.start_actors()[0]

        async def kill_once_entered() -> None:
            await fetch(probe.wait_for.remote("entered", 1))
            ray.kill(victim, no_restart=True)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(kill_once_entered)
            with pytest.raises(ray.exceptions.RayActorError) as caught:
                await remote.ainvoke(1)
        assert any("gave up" in note for note in caught.value.__notes__)
    finally:
        remote.shutdown()


def test_a_non_runnable_is_refused() -> None:
    """Wrapping something that is not a runnable fails at once, naming what was given."""
    with pytest.raises(TypeError, match=r"RayRunnable runs a runnable.*function"):
        RayRunnable(len)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["num_actors", "max_attempts", "batch_limit", "unread_objects"])
def test_a_count_below_one_is_refused(field: str) -> None:
    """``num_actors=0`` (and the other counts) fail at once, naming the argument."""
    with pytest.raises(ValueError, match=f"{field}"):
        RayRunnable(RunnableLambda(abs), **{field: 0})


@pytest.mark.parametrize("option", ["max_restarts", "max_task_retries", "max_retries"])
def test_turning_rays_retries_on_is_refused(option: str) -> None:
    """An actor option that turns Ray's own retries on is refused, saying why (a splice)."""
    with pytest.raises(ValueError, match="splice"):
        RayRunnable(RunnableLambda(abs), actor_options={option: 1})


def test_actor_options_that_are_not_a_dict_are_refused() -> None:
    """``actor_options`` must be a dict of Ray actor options; anything else fails at once, naming the argument."""
    with pytest.raises(TypeError, match=r"actor_options=\.\.\.\) must be a dict, got list"):
        RayRunnable(RunnableLambda(abs), actor_options=[("num_cpus", 1)])  # type: ignore[arg-type]


def test_without_ray_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Ray installed, making a RayRunnable says which extra to install."""
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[ray\]'"):
        RayRunnable(RunnableLambda(abs))


async def test_a_retried_streams_lost_attempt_ends_its_remote_steps_in_the_events(probe: Any) -> None:
    """The remote steps of an attempt whose actor died end with an error event; the retry's steps follow, all in order."""
    from engine.testing import check_event_order

    remote = RayRunnable(gated_stream(probe, 0, 2), num_actors=1)
    try:
        victim = remote.start_actors()[0]
        events: list[Any] = []
        killed = False
        async with remote.astream_events("e") as stream:
            async for event in stream:
                events.append(event)
                if event["event"] == "on_chain_start" and event["name"] == "gated_stream" and not killed:
                    killed = True
                    await fetch(probe.wait_for.remote("entered", 1))
                    ray.kill(victim, no_restart=True)
                    await fetch(probe.wait_for.remote("entered", 2))
                    await fetch(probe.open_gate.remote())
        check_event_order(events)
        lost = [e for e in events if e["event"] == "on_chain_error"]
        assert [e["name"] for e in lost] == ["gated_stream"]
        assert all(isinstance(e["data"]["error"], ray.exceptions.RayActorError) for e in lost)
        starts = [e["name"] for e in events if e["event"] == "on_chain_start"]
        assert starts.count("gated_stream") == 2
        assert events[-1]["event"] == "on_chain_end" and events[-1]["data"]["output"] == "e0 e1 "
    finally:
        remote.shutdown()


def test_importing_engine_ray_does_not_import_ray() -> None:
    """``import engine.ray`` leaves Ray unimported (it is imported when a RayRunnable is made)."""
    import subprocess

    code = "import sys, engine.ray; print('ray' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
