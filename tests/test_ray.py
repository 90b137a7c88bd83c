"""``engine.ray.RayRunnable`` on a real local Ray: batch, stream, events, cancellation.

One local Ray per session (the ``ray_session`` fixture); every async test runs with the
driver on trio and on asyncio. What happens on the workers is read from a probe actor
(``tests/_ray_probe.py``), and remote work is held at the probe's gate, not by sleeps.
"""

from __future__ import annotations

import functools
import pathlib
from collections import Counter
from typing import Any

import anyio
import pytest

pytest.importorskip("ray")

import ray
from _ray_probe import Probe, counted_stream, endless, gated_double, gated_pid, gated_stream

from engine import EventBus, RunnableLambda
from engine.ray import RayRunnable
from engine.testing import check_event_order

pytestmark = [pytest.mark.usefixtures("ray_session")]


async def fetch(ref: Any) -> Any:
    """``ray.get`` from a test, in a thread (the test's own reads, not the engine's)."""
    return await anyio.to_thread.run_sync(functools.partial(ray.get, ref, timeout=60), abandon_on_cancel=True)


#: Chunks a worker may make ahead of a driver that stopped reading, with batch_limit=4
#: and unread_objects=2: well above what the pipeline can hold (a few hundred), far
#: below what an unbounded worker makes while the driver reads 600 chunks.
SLOW_DRIVER_BOUND = 400

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "batch_on_ray.py"


def double(x: int) -> int:
    return x * 2


async def words(x: int) -> Any:
    for i in range(x):
        yield f"w{i} "


def fragile(x: int) -> float:
    return 10 / x


def local_chain() -> Any:
    return RunnableLambda(double) | RunnableLambda(words)


@pytest.fixture(scope="module")
def shared_probe(ray_session: Any) -> Any:
    handle = Probe.remote()
    yield handle
    ray.kill(handle)


@pytest.fixture
def probe(shared_probe: Any) -> Any:
    """The module's probe, reset (counters zero, gate closed) for this test."""
    ray.get(shared_probe.reset.remote())
    return shared_probe


@pytest.fixture(scope="module")
def remotes(shared_probe: Any) -> Any:
    """The module's RayRunnables, made once (actors take a process each) and reused."""
    made = {
        "chain": RayRunnable(local_chain(), num_actors=2),
        "chain small batches": RayRunnable(local_chain(), num_actors=1, batch_limit=7),
        "fragile": RayRunnable(RunnableLambda(fragile), num_actors=1),
        "gated": RayRunnable(gated_double(shared_probe), num_actors=2),
        "gated pid": RayRunnable(gated_pid(shared_probe), num_actors=2),
        "endless": RayRunnable(endless(shared_probe), num_actors=1),
        "gated stream": RayRunnable(gated_stream(shared_probe, 2, 4), num_actors=1),
        "counted": RayRunnable(
            counted_stream(shared_probe, 100_000), num_actors=1, batch_limit=4, unread_objects=2
        ),
    }
    yield made
    for remote in made.values():
        remote.shutdown()


async def test_batch_gives_the_local_results_in_input_order(remotes: dict[str, Any]) -> None:
    """``abatch`` on Ray returns what local ``abatch`` does, in input order."""
    remote = remotes["chain"]
    inputs = [3, 1, 4, 1, 5, 9, 2, 6]
    assert await remote.abatch(inputs, max_concurrency=4) == await local_chain().abatch(inputs)


async def test_batch_returns_each_failure_in_place_as_its_own_type(remotes: dict[str, Any]) -> None:
    """With ``return_exceptions``, a remote failure comes back in its place as the step's own exception type."""
    remote = remotes["fragile"]
    results = await remote.abatch([1, 0, 5], return_exceptions=True)
    assert results[0] == 10 and results[2] == 2
    assert type(results[1]) is ZeroDivisionError
    with pytest.raises(ZeroDivisionError):
        await remote.ainvoke(0)


async def test_as_completed_gives_each_result_as_it_finishes(probe: Any, remotes: dict[str, Any]) -> None:
    """``abatch_as_completed`` yields the fast items while a slow one is still held on its worker."""
    remote = remotes["gated"]
    seen: list[tuple[int, Any]] = []
    async with remote.abatch_as_completed([1, 2, 3], max_concurrency=3) as pairs:
        await fetch(probe.wait_for.remote("entered", 3))
        await fetch(probe.open_gate.remote())
        async for pair in pairs:
            seen.append(pair)
    assert sorted(seen) == [(0, 2), (1, 4), (2, 6)]


async def test_max_concurrency_caps_the_calls_in_flight_on_driver_and_workers(
    probe: Any, remotes: dict[str, Any]
) -> None:
    """At most ``max_concurrency`` items run at once: counted on the workers and by the driver's events."""
    remote = remotes["gated"]
    bus = EventBus()
    driver_now = driver_peak = 0
    results: list[Any] = []

    async def watch() -> None:
        nonlocal driver_now, driver_peak
        async with bus.subscribe(include_names=["RayRunnable"], capacity=4) as events:
            async for event in events:
                if event["event"] == "on_chain_start":
                    driver_now += 1
                    driver_peak = max(driver_peak, driver_now)
                elif event["event"] in ("on_chain_end", "on_chain_error"):
                    driver_now -= 1

    async def run() -> None:
        results.extend(await remote.abatch(list(range(10)), {"bus": bus}, max_concurrency=3))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch)
        await anyio.wait_all_tasks_blocked()
        tasks.start_soon(run)
        assert await fetch(probe.wait_for.remote("entered", 3)) == 3
        await fetch(probe.open_gate.remote())
        while len(results) < 10:
            await anyio.sleep(0.01)  # the batch finishing (no timing asserted)
        await bus.aclose()
    state = await fetch(probe.read.remote())
    assert results == [2 * i for i in range(10)]
    assert state["peak"] == 3 and state["entered"] == 10
    assert driver_peak == 3


async def test_a_batch_spreads_over_every_actor(probe: Any, remotes: dict[str, Any]) -> None:
    """Items in flight together go to the least busy actors: 4 held items land 2 on each of the 2 actors."""
    remote = remotes["gated pid"]
    results: list[Any] = []

    async def run() -> None:
        results.extend(await remote.abatch([0, 1, 2, 3], max_concurrency=4))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run)
        await fetch(probe.wait_for.remote("entered", 4))
        await fetch(probe.open_gate.remote())
    assert [x for x, _ in results] == [0, 1, 2, 3]
    assert sorted(Counter(pid for _, pid in results).values()) == [2, 2]


def test_the_sync_batch_gives_the_local_results(remotes: dict[str, Any]) -> None:
    """``batch`` (the sync API) on Ray returns what local ``batch`` does, errors in place."""
    assert remotes["chain"].batch([2, 0, 1]) == local_chain().batch([2, 0, 1])
    results = remotes["fragile"].batch([0, 2], return_exceptions=True)
    assert isinstance(results[0], ZeroDivisionError) and results[1] == 5


async def test_stream_equals_the_local_stream(remotes: dict[str, Any]) -> None:
    """``astream`` on Ray gives exactly the local stream's chunks, in order, over many Ray objects."""
    remote = remotes["chain small batches"]
    async with remote.astream(300) as chunks:
        got = [chunk async for chunk in chunks]
    async with local_chain().astream(300) as chunks:
        want = [chunk async for chunk in chunks]
    assert got == want and len(got) == 600


async def test_a_slow_driver_slows_the_worker(probe: Any, remotes: dict[str, Any]) -> None:
    """A driver slower than the worker keeps it at most a bounded number of chunks ahead (never the whole stream)."""
    remote = remotes["counted"]
    read = 0
    async with remote.astream("c") as chunks:
        async for _ in chunks:
            # The driver is the slow side: one probe round trip per chunk it reads, while
            # the worker only fires a tick per chunk. Unbounded, the worker runs ahead by
            # thousands over these reads; bounded, it is never more than what the
            # pipeline holds (edges of 16, the worker's 16-item channel, unread objects
            # of up to 4 x 4 chunks), whatever the timing: no sleep, no time bet.
            read += 1
            ahead = (await fetch(probe.read.remote()))["ticks"] - read
            assert ahead <= SLOW_DRIVER_BOUND, f"the worker was {ahead} chunks ahead after {read} chunks read"
            if read == 600:
                break
    assert read == 600


async def test_events_nest_under_the_ray_step_in_order(remotes: dict[str, Any]) -> None:
    """The remote steps' events reach ``astream_events`` nested under the RayRunnable, ordered, tagged."""
    remote = remotes["chain"]
    outer = RunnableLambda(lambda x: x + 1) | remote.with_config(tags=["on-ray"], metadata={"where": "ray"})
    events = [e async for e in outer.astream_events(2, version="v2")]
    check_event_order(events)
    ray_step = next(e for e in events if e["name"] == "RayRunnable")
    remote_events = [e for e in events if ray_step["run_id"] in e["parent_ids"]]
    assert {e["name"] for e in remote_events} == {"RunnableSequence", "double", "words"}
    for event in remote_events:
        assert event["parent_ids"][: len(ray_step["parent_ids"]) + 1] == [
            *ray_step["parent_ids"],
            ray_step["run_id"],
        ]
        assert "on-ray" in event["tags"] and event["metadata"]["where"] == "ray"
    # The remote run's events are those of the same chain run locally.
    local = [e async for e in local_chain().astream_events(3)]
    want = Counter((e["event"], e["name"]) for e in local)
    got = Counter((e["event"], e["name"]) for e in remote_events)
    assert got == want
    assert events[-1]["event"] == "on_chain_end" and events[-1]["data"]["output"] == "w0 w1 w2 w3 w4 w5 "


async def test_a_block_subscriber_of_a_bus_misses_no_remote_event(remotes: dict[str, Any]) -> None:
    """A ``"block"`` bus subscriber of capacity 1 sees every remote event, stamped in order."""
    remote = remotes["chain"]
    bus = EventBus()
    seen: list[Any] = []

    async def watch() -> None:
        async with bus.subscribe(capacity=1) as events:
            async for event in events:
                seen.append(event)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch)
        await anyio.wait_all_tasks_blocked()
        assert await remote.ainvoke(20, {"bus": bus}) == "".join(f"w{i} " for i in range(40))
        await bus.aclose()
    check_event_order(seen)
    words_stream = [e for e in seen if e["name"] == "words" and e["event"] == "on_chain_stream"]
    assert len(words_stream) == 40
    assert [e["seq"] for e in seen] == sorted(e["seq"] for e in seen)


async def test_cancelling_a_batch_stops_the_remote_work(probe: Any, remotes: dict[str, Any]) -> None:
    """A cancel scope around a batch cancels every remote call: each worker's ``finally`` runs, none is left in flight."""
    remote = remotes["gated"]
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(functools.partial(remote.abatch, list(range(6)), max_concurrency=4))
            await fetch(probe.wait_for.remote("entered", 4))
            scope.cancel()
    assert scope.cancelled_caught
    assert await fetch(probe.wait_for.remote("cleaned", 4)) == 4
    state = await fetch(probe.read.remote())
    assert state["in_flight"] == 0 and state["entered"] == 4


async def test_a_deadline_around_a_batch_stops_the_remote_work(probe: Any, remotes: dict[str, Any]) -> None:
    """A deadline that expires while a batch's items are held on the workers cancels them all: none is left running."""
    remote = remotes["gated pid"]
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(functools.partial(remote.abatch, list(range(6)), max_concurrency=4))
            await fetch(probe.wait_for.remote("entered", 4))
            # The deadline expires now, with 4 items held at the gate (no time is bet on).
            scope.deadline = anyio.current_time()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert await fetch(probe.wait_for.remote("cleaned", 4)) == 4
    state = await fetch(probe.read.remote())
    assert state["in_flight"] == 0 and state["entered"] == 4


async def test_leaving_a_stream_early_stops_the_worker(probe: Any, remotes: dict[str, Any]) -> None:
    """Leaving ``async with`` after a few chunks of an endless remote stream ends the worker's run."""
    remote = remotes["endless"]
    async with remote.astream("x") as chunks:
        got = [await chunks.__anext__() for _ in range(3)]
    assert got == ["x1 ", "x2 ", "x3 "]
    assert await fetch(probe.wait_for.remote("cleaned", 1)) == 1
    assert (await fetch(probe.read.remote()))["in_flight"] == 0


async def test_breaking_a_bare_loop_stops_the_worker(probe: Any, remotes: dict[str, Any]) -> None:
    """Breaking off a bare ``async for`` over a remote stream ends the worker's run."""
    remote = remotes["endless"]
    async for chunk in remote.astream("y"):
        assert chunk == "y1 "
        break
    assert await fetch(probe.wait_for.remote("cleaned", 1)) == 1


async def test_a_held_stream_waits_at_the_gate_then_finishes(probe: Any, remotes: dict[str, Any]) -> None:
    """A remote stream held mid-way delivers its first chunks at once, then the rest once released."""
    remote = remotes["gated stream"]
    async with remote.astream("s") as chunks:
        first = [await chunks.__anext__(), await chunks.__anext__()]
        await fetch(probe.open_gate.remote())
        rest = [chunk async for chunk in chunks]
    assert first + rest == ["s0 ", "s1 ", "s2 ", "s3 "]


def test_a_model_on_a_worker_reads_its_key_from_the_workers_environment(
    anthropic_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``ChatAnthropic`` without a key ships no secret; on the worker it uses the key of the worker's ``runtime_env``."""
    from anthropic_server import TextStream

    from nodes import ChatAnthropic

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    anthropic_server.script(TextStream(["Hel", "lo"]))
    model = ChatAnthropic(model="claude-test", base_url=anthropic_server.base_url, max_retries=0)
    env = {"env_vars": {"ANTHROPIC_API_KEY": "sk-worker-env"}}
    remote = RayRunnable(model, num_actors=1, actor_options={"runtime_env": env})
    try:
        reply = remote.invoke("hi")
    finally:
        remote.shutdown()
    assert reply.content == "Hello"
    headers = anthropic_server.requests[0].headers
    assert any("sk-worker-env" in value for value in headers.values()), sorted(headers)


async def test_the_batch_on_ray_example_runs_on_the_sessions_ray(capsys: pytest.CaptureFixture[str]) -> None:
    """examples/batch_on_ray.py's run (40 inputs here) answers every input through prompt | model | parser on Ray."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("batch_on_ray", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    await example.run(40)
    output = capsys.readouterr().out
    assert "40/40" in output and "40 answers in" in output
    # (Each actor's scripted model gives its replies in turn: which item gets which
    # reply depends on the actor it ran on.)
    replies = example.make_chain().bound.steps[1].replies
    shown = [line.split(": ", 2) for line in output.splitlines() if line.startswith("  ")]
    assert [(index.strip(), animal) for index, animal, _ in shown] == [
        ("0", "parrot"),
        ("1", "otter"),
        ("39", "wren"),
    ]
    assert all(answer in replies for _, _, answer in shown), shown


def test_the_ray_session_leaves_the_environment_alone(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The session's Ray set-up (temp folder, auth off, workers' import path) is not left in ``os.environ``."""
    import os
    import pathlib

    tests = str(pathlib.Path(__file__).resolve().parent)
    assert tests not in os.environ.get("PYTHONPATH", "").split(os.pathsep)
    assert not os.environ.get("RAY_TMPDIR", "").startswith(str(tmp_path_factory.getbasetemp()))
