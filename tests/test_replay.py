"""Stamped events and replay logs: every event of a run numbered and timed, and a bounded
log of a run's newest events that readers leave and rejoin without losing or repeating one.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import (
    EventBus,
    EventPhase,
    ReplayLog,
    RunnableGenerator,
    RunnableLambda,
    RunStream,
    StampedEvent,
    phase_of,
)
from engine.testing import GatedSource, check_event_order
from nodes import ChatPromptTemplate, ScriptedChatModel, StrOutputParser

GUIDE_KEYS = ["event", "name", "run_id", "parent_ids", "tags", "metadata", "data"]


def joke_chain(tokens: list[str], delay: float = 0.0) -> Any:
    prompt = ChatPromptTemplate.from_template("tell me a joke about {topic}")
    return prompt | ScriptedChatModel(replies=[tokens], delay=delay) | StrOutputParser()


async def times_ten(numbers: AsyncIterator[int]) -> AsyncIterator[int]:
    async for number in numbers:
        yield number * 10


def gated_chain(count: int) -> tuple[GatedSource[int], Any]:
    """A source the test releases item by item, then a generator step (it streams)."""
    source: GatedSource[int] = GatedSource(range(count))
    return source, source | RunnableGenerator(times_ten)


async def drain(stream: RunStream[Any]) -> list[Any]:
    return [chunk async for chunk in stream]


# -- stamps -------------------------------------------------------------------------------


async def test_bus_subscribers_get_each_event_numbered_and_timed_after_the_guide_keys() -> None:
    """A bus subscriber's events carry the guide's keys, then seq 1, 2, ... and a non-decreasing time."""
    bus = EventBus()
    async with bus.subscribe(capacity=200) as events:
        await joke_chain([" a", " b", " c"]).ainvoke({"topic": "x"}, {"bus": bus})
        seen = events.receive_available(200)
    assert [list(e) for e in seen] == [[*GUIDE_KEYS, "seq", "time"]] * len(seen)
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))  # type: ignore[typeddict-item]
    times = [e["time"] for e in seen]  # type: ignore[typeddict-item]
    assert times == sorted(times) and all(isinstance(t, float) for t in times)
    check_event_order(seen)


@pytest.mark.trio
async def test_event_times_are_the_loop_clock_so_virtual_under_the_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Under trio's MockClock, a model waiting 2 s per token stamps its chunks 2 s apart exactly."""
    stream = joke_chain([" a", " b", " c"], delay=2.0).astream({"topic": "x"})
    log = stream.replay_log(100, include_types=["chat_model"])
    start = trio.current_time()
    await drain(stream)
    chunks = [e for e in log.read().available(100) if phase_of(e) is EventPhase.STREAM]
    assert [e["time"] - start for e in chunks] == [2.0, 4.0, 6.0]


async def test_astream_events_keeps_the_guide_shape_while_a_bus_subscriber_gets_stamps() -> None:
    """One run seen by astream_events and by a bus subscriber: the first gets the guide's keys
    only, the second the same events stamped."""
    bus = EventBus()
    async with bus.subscribe(capacity=200) as monitor:
        guide = [e async for e in joke_chain([" a", " b"]).astream_events({"topic": "x"}, {"bus": bus})]
        stamped = monitor.receive_available(200)
    assert all(list(e) == GUIDE_KEYS for e in guide)
    assert [{k: e[k] for k in GUIDE_KEYS} for e in stamped] == guide  # type: ignore[literal-required]
    assert [e["seq"] for e in stamped] == list(range(1, len(guide) + 1))  # type: ignore[typeddict-item]


async def test_each_subscriber_keeps_its_shape_when_the_run_waits_for_a_full_buffer() -> None:
    """With one-event buffers (every publish waits), astream_events still gets the guide's keys
    and the bus subscriber the stamps, each event once."""
    bus = EventBus()
    stamped: list[dict[str, Any]] = []

    async def monitor(events: Any) -> None:
        async for event in events:
            stamped.append(event)

    async with anyio.create_task_group() as tg, bus.subscribe(capacity=1) as events:
        tg.start_soon(monitor, events)
        chain_ = joke_chain([f" t{i}" for i in range(20)])
        guide = [e async for e in chain_.astream_events({"topic": "x"}, {"bus": bus}, capacity=1)]
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert guide and all(list(e) == GUIDE_KEYS for e in guide)
    assert [{k: e[k] for k in GUIDE_KEYS} for e in stamped] == guide
    assert sorted(e["seq"] for e in stamped) == list(range(1, len(guide) + 1))


async def test_runs_started_inside_a_step_share_their_runs_numbering() -> None:
    """A chain run inside a function step numbers its events in the outer run's sequence."""
    inner = joke_chain([" a", " b"])

    async def tell(topic: str) -> str:
        return await inner.ainvoke({"topic": topic})

    stream = RunnableLambda(tell).astream("parrot")
    log = stream.replay_log(100)
    assert await drain(stream) == [" a b"]
    events = log.read().available(100)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["name"] for e in events} >= {"tell", "ScriptedChatModel", "StrOutputParser"}
    check_event_order(events)


# -- the replay log -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "error", "message"),
    [
        (
            0,
            ValueError,
            "a replay log's capacity must be >= 1 (the events it keeps for readers that come back), got 0",
        ),
        (-3, ValueError, "got -3"),
        (2.5, TypeError, "a replay log's capacity must be an int, got float 2.5"),
        (True, TypeError, "must be an int, got bool True"),
    ],
)
def test_a_replay_capacity_below_one_or_not_an_int_is_refused_at_once(
    capacity: Any, error: type[Exception], message: str
) -> None:
    """replay_log(0) (or a non-int) raises before anything runs, saying what a capacity is."""
    stream = joke_chain([" a"]).astream({"topic": "x"})
    with pytest.raises(error, match=re.escape(message)):
        stream.replay_log(capacity)


async def test_a_replay_log_must_be_asked_for_before_the_run_starts() -> None:
    """replay_log() on a started stream raises RuntimeError: it could not record the start."""
    async with joke_chain([" a"]).astream({"topic": "x"}) as stream:
        with pytest.raises(RuntimeError, match="before the run starts"):
            stream.replay_log(10)


async def test_a_reader_gets_every_event_once_in_order_and_resumes_after_any_seq() -> None:
    """read() yields the run's events in seq order; read(after=k) yields exactly those after k."""
    stream = joke_chain([" a", " b", " c"]).astream({"topic": "x"})
    log = stream.replay_log(100)
    assert log.run_id == stream.run_id
    await drain(stream)
    everything = [e async for e in log.read()]
    seqs = [e["seq"] for e in everything]
    assert seqs == list(range(1, len(seqs) + 1)) and log.newest == seqs[-1]
    assert everything[0]["run_id"] == stream.run_id and phase_of(everything[-1]) is EventPhase.END
    for after in range(len(seqs) + 1):
        assert [e["seq"] async for e in log.read(after=after)] == seqs[after:]
    assert log.statistics().closed and log.statistics().evicted == 0


async def test_a_reader_that_fell_behind_the_log_gets_one_lost_marker_naming_the_gap() -> None:
    """A log of 5 holds the newest 5 events; a reader from the start gets on_events_lost(1..n-5) first."""
    stream = joke_chain([" a", " b", " c", " d"]).astream({"topic": "x"})
    log = stream.replay_log(5)
    await drain(stream)
    stats = log.statistics()
    newest = stats.newest
    assert (stats.held, stats.evicted, stats.oldest) == (5, newest - 5, newest - 4)
    events = [e async for e in log.read()]
    marker, rest = events[0], events[1:]
    assert phase_of(marker) is EventPhase.LOST and marker["event"] == "on_events_lost"
    assert marker["data"] == {"from": 1, "to": newest - 5} and marker["seq"] == newest - 5
    assert marker["run_id"] == stream.run_id and list(marker) == [*GUIDE_KEYS, "seq", "time"]
    assert [e["seq"] for e in rest] == list(range(newest - 4, newest + 1))
    # Resuming inside the held range loses nothing; resuming before it names the exact gap.
    assert [e["seq"] async for e in log.read(after=newest - 3)] == [newest - 2, newest - 1, newest]
    resumed = [e async for e in log.read(after=3)]
    assert resumed[0]["data"] == {"from": 4, "to": newest - 5}


@pytest.mark.parametrize(
    ("after", "error", "message"),
    [
        (-1, ValueError, "after must be an event's seq (>= 0; 0 reads from the start), got -1"),
        ("7", TypeError, "after must be an event's seq (an int), got str '7'"),
    ],
)
async def test_a_bad_resume_point_is_refused(after: Any, error: type[Exception], message: str) -> None:
    """read(after=...) refuses a negative or non-int seq, naming it."""
    stream = joke_chain([" a"]).astream({"topic": "x"})
    log = stream.replay_log(10)
    await drain(stream)
    with pytest.raises(error, match=re.escape(message)):
        log.read(after=after)


async def test_resuming_after_a_seq_the_log_never_took_in_is_refused() -> None:
    """read(after=n) with n past the newest event raises ValueError naming the run and the newest."""
    stream = joke_chain([" a"]).astream({"topic": "x"})
    log = stream.replay_log(10)
    await drain(stream)
    newest = log.newest
    with pytest.raises(ValueError, match=re.escape(f"events up to {newest} so far")) as caught:
        log.read(after=newest + 1)
    assert stream.run_id in str(caught.value)


async def test_root_only_records_the_runs_start_output_chunks_and_end() -> None:
    """replay_log(root_only=True) holds the root's start, one stream event per output chunk, its end."""
    stream = joke_chain([" a", " b", " c"]).astream({"topic": "x"})
    log = stream.replay_log(100, root_only=True)
    output = await drain(stream)
    events = [e async for e in log.read()]
    assert {e["run_id"] for e in events} == {stream.run_id}
    assert [phase_of(e) for e in events] == [EventPhase.START, *[EventPhase.STREAM] * 3, EventPhase.END]
    assert [e["data"]["chunk"] for e in events[1:-1]] == output == [" a", " b", " c"]


async def test_the_log_never_slows_the_run_and_stays_bounded() -> None:
    """A log of 3 that nobody reads lets a 500-token run finish, holding 3 events."""
    stream = joke_chain([f" t{i}" for i in range(500)]).astream({"topic": "x"})
    log = stream.replay_log(3)
    with anyio.fail_after(10):
        assert len(await drain(stream)) == 500
    stats = log.statistics()
    assert stats.held == 3 and stats.recorded == stats.newest > 1500 and stats.closed


async def test_a_waiting_reader_gets_events_as_they_come_and_ends_with_the_run() -> None:
    """A reader waits for the next event, wakes for it, and stops after the run's end."""
    source, chain_ = gated_chain(3)
    stream = chain_.astream(None)
    log = stream.replay_log(100, include_names=["times_ten"])
    got: list[Any] = []

    async def read() -> None:
        async for event in log.read():
            got.append((phase_of(event), event["data"].get("chunk")))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg, stream as chunks:
            tg.start_soon(read)
            tg.start_soon(drain, chunks)
            await anyio.wait_all_tasks_blocked()
            assert log.statistics().waiting_readers == 1
            for expected in range(3):
                source.release()
                await anyio.wait_all_tasks_blocked()
                streamed = [chunk for phase, chunk in got if phase is EventPhase.STREAM]
                assert streamed == [n * 10 for n in range(expected + 1)]
    assert got[0][0] is EventPhase.START and got[-1][0] is EventPhase.END


async def test_a_reader_cancelled_while_waiting_resumes_without_a_gap_or_a_repeat() -> None:
    """A reader cut off while it waits (a dropped connection) is resumed after its last seq: the next event once."""
    source, chain_ = gated_chain(4)
    stream = chain_.astream(None)
    log = stream.replay_log(100, include_names=["times_ten"])
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg, stream as chunks:
            tg.start_soon(drain, chunks)
            reader = log.read()
            first = await reader.__anext__()
            source.release()
            second = await reader.__anext__()
            async with anyio.create_task_group() as connection:
                connection.start_soon(reader.__anext__)  # nothing comes...
                await anyio.wait_all_tasks_blocked()
                assert log.statistics().waiting_readers == 1
                connection.cancel_scope.cancel()  # ...and the connection drops
            assert log.statistics().waiting_readers == 0
            source.release(3)
            await anyio.wait_all_tasks_blocked()
            resumed = [e async for e in log.read(after=reader.last)]
    assert phase_of(first) is EventPhase.START and second["data"]["chunk"] == 0
    assert [e["data"].get("chunk") for e in resumed] == [10, 20, 30, None]


async def test_a_stream_closed_before_it_started_ends_its_log() -> None:
    """aclose() on a stream that never ran closes its replay log: readers end at once."""
    stream = joke_chain([" a"]).astream({"topic": "x"})
    log = stream.replay_log(10)
    await stream.aclose()
    with anyio.fail_after(10):
        assert [e async for e in log.read()] == []
    assert log.closed


# -- the property -------------------------------------------------------------------------

# One step of a schedule: let the run make k more chunks (each makes several events), let
# the reader read up to k events that are ready, or drop the reader (its connection goes)
# and come back after the last seq it saw.
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("produce"), st.integers(min_value=1, max_value=6)),
        st.tuples(st.just("read"), st.integers(min_value=1, max_value=12)),
        st.tuples(st.just("reconnect"), st.just(0)),
    ),
    max_size=25,
)


class Client:
    """A reader that drops and resumes, keeping what it received and checking each read."""

    def __init__(self, log: ReplayLog) -> None:
        self.log = log
        self.reader = log.read()
        self.received: list[StampedEvent] = []

    def read(self, limit: int) -> None:
        last = self.reader.last
        stats = self.log.statistics()
        got = self.reader.available(limit)
        for item in got:
            if phase_of(item) is EventPhase.LOST:
                # Only events the log no longer held: the oldest it holds is past the gap.
                assert item["data"]["from"] == last + 1
                assert stats.oldest is None or stats.oldest > item["data"]["to"]
            else:
                # While the log holds the next event, it is exactly the next one.
                assert item["seq"] == last + 1
            last = item["seq"]
        self.received.extend(got)

    def reconnect(self) -> None:
        self.reader = self.log.read(after=self.reader.last)


@pytest.mark.anyio
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=STEPS, capacity=st.sampled_from([1, 4, 16, 1000]))
async def test_any_schedule_of_disconnects_yields_each_event_exactly_once_in_order(
    steps: list[tuple[str, int]], capacity: int
) -> None:
    """For any schedule of production, reads and reconnects: every event once, in seq order, or
    inside exactly one lost marker, and a marker only for events the log no longer held."""
    count = 12
    source, chain_ = gated_chain(count)
    stream = chain_.astream(None)
    log = stream.replay_log(capacity)
    client = Client(log)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg, stream as chunks:
            tg.start_soon(drain, chunks)
            await anyio.wait_all_tasks_blocked()
            for action, amount in steps:
                if action == "produce":
                    source.release(amount)
                    await anyio.wait_all_tasks_blocked()
                elif action == "read":
                    client.read(amount)
                else:
                    client.reconnect()
            source.release_all()
        client.reconnect()
        client.read(10_000)
    covered: list[int] = []
    for item in client.received:
        if phase_of(item) is EventPhase.LOST:
            covered.extend(range(item["data"]["from"], item["data"]["to"] + 1))
        else:
            covered.append(item["seq"])
    assert covered == list(range(1, log.newest + 1))
    if capacity >= log.newest:
        assert all(phase_of(item) is not EventPhase.LOST for item in client.received)
