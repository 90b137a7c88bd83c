"""``with_timeout``: first_chunk, idle and total limits that hold whatever the step does.

Every async test runs on both backends. On trio the run's clock is a ``MockClock`` that
jumps ahead whenever every task waits, so limits are virtual seconds, no test takes real
time, and the trio runs also check *when* a limit ran out. On asyncio a tick is a small
real interval; every stall that should trip a limit is endless and the chunks before it
are ready at once (a generous ``first_chunk`` covers the start where ``idle`` is tested),
so the outcome does not depend on timing short of the process stalling for several
ticks. Tests of timing itself run on trio alone.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any, ClassVar

import anthropic  # noqa: F401  (imported at collection: its import takes seconds, not to be timed)
import anyio
import anyio.to_thread
import pytest
import trio
from anthropic_server import AnthropicServer, TextStream
from trio.testing import MockClock

from engine import (
    EventBus,
    RunCancelled,
    Runnable,
    RunnableLambda,
    RunnableParallel,
    RunnableTimeout,
    StepTimeout,
    TimeoutPhase,
)
from engine.testing import GatedSource, check_event_order, cleanup_guard
from nodes import (
    AIMessageChunk,
    BaseChatModel,
    BaseMessage,
    ChatAnthropic,
    ChatPromptTemplate,
    ScriptedChatModel,
    StrOutputParser,
    split_tokens,
)

STALL = "stall"  # in a Script: wait forever
GUARD_TICKS = 200  # a hang guard, in ticks: 200 virtual seconds on trio, 10 real ones on asyncio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Both backends; trio's with a fresh autojumping mock clock."""
    if request.param == "trio":
        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return "asyncio"


@pytest.fixture
def tick(anyio_backend: Any) -> float:
    """A unit of time: a virtual second on trio, a small real interval on asyncio."""
    return 0.05 if anyio_backend == "asyncio" else 1.0


@pytest.fixture
def trio_clock(anyio_backend: Any) -> bool:
    """Whether the test runs on trio's mock clock (so it may check times exactly)."""
    return anyio_backend != "asyncio"


class Script(BaseChatModel):
    """A chat model that follows a script, and counts its runs and their cleanups.

    Each item: text is a chunk with that text; ``""`` is a chunk with only an id (no
    content, like a message-start or keep-alive chunk); a number pauses that many ticks;
    ``STALL`` waits forever.
    """

    reads_current_step: ClassVar[bool] = False

    def __init__(self, *items: str | float, tick: float = 1.0) -> None:
        self.items = items
        self.tick = tick
        self.started = 0
        self.closed = 0

    def get_name(self) -> str:
        return "Script"

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        self.started += 1
        try:
            for item in self.items:
                if item == STALL:
                    await anyio.sleep_forever()
                elif isinstance(item, int | float):
                    await anyio.sleep(item * self.tick)
                elif item == "":
                    yield AIMessageChunk(content="", id="msg_1")
                else:
                    yield AIMessageChunk.from_text(item)
        finally:
            self.closed += 1


async def stream_until_error(
    runnable: Runnable[Any, Any], tick: float, config: dict[str, Any] | None = None
) -> tuple[list[Any], BaseException]:
    """The chunks a consumer saw, and the error that ended the stream."""
    seen: list[Any] = []
    with anyio.fail_after(GUARD_TICKS * tick):
        try:
            async with runnable.astream("hi", config) as chunks:
                async for chunk in chunks:
                    seen.append(chunk)
        except Exception as exc:
            return seen, exc
    raise AssertionError(f"the stream ended without an error after {seen!r}")


def texts(chunks: list[Any]) -> list[str]:
    return [chunk.text for chunk in chunks]


def assert_idle_tripped(last_chunk_at: float, idle: float) -> None:
    """idle ran out on the mock clock when documented: never before ``idle`` seconds of
    silence, and at most one look (``idle / RunnableTimeout.looks_per_idle``) after."""
    now = trio.current_time()
    assert last_chunk_at + idle <= now <= last_chunk_at + idle * (1 + 1 / RunnableTimeout.looks_per_idle), now


# -- each limit trips -------------------------------------------------------------------


async def test_first_chunk_trips_on_a_model_that_stalls_before_its_first_chunk(
    tick: float, trio_clock: bool
) -> None:
    """A model silent past first_chunk fails with StepTimeout(FIRST_CHUNK), nothing delivered."""
    model = ScriptedChatModel(["never sent"], delay=1000 * tick)
    async with cleanup_guard():
        seen, error = await stream_until_error(model.with_timeout(first_chunk=5 * tick), tick)
    assert seen == []
    assert isinstance(error, StepTimeout) and isinstance(error, TimeoutError)
    assert (error.phase, error.limit, error.step, error.delivered) == (
        TimeoutPhase.FIRST_CHUNK,
        5 * tick,
        "ScriptedChatModel",
        0,
    )
    assert "ScriptedChatModel sent no content within" in str(error) and "first_chunk" in str(error)
    assert "before delivering anything" in str(error)
    if trio_clock:
        assert trio.current_time() == 5


async def test_first_chunk_is_not_satisfied_by_a_chunk_without_content(tick: float, trio_clock: bool) -> None:
    """An id-only chunk does not stop the first_chunk clock, and is never delivered."""
    model = Script("", STALL, tick=tick)
    seen, error = await stream_until_error(model.with_timeout(first_chunk=5 * tick), tick)
    assert seen == []
    assert isinstance(error, StepTimeout)
    assert (error.phase, error.delivered) == (TimeoutPhase.FIRST_CHUNK, 0)
    if trio_clock:
        assert trio.current_time() == 5


async def test_keep_alive_chunks_do_not_postpone_first_chunk(tick: float, trio_clock: bool) -> None:
    """Chunks without content every tick still leave first_chunk to run out on time."""
    model = Script(*["", 1] * 20, "late", tick=tick)
    seen, error = await stream_until_error(model.with_timeout(first_chunk=5.5 * tick), tick)
    assert seen == []
    assert isinstance(error, StepTimeout) and error.phase is TimeoutPhase.FIRST_CHUNK
    if trio_clock:
        assert trio.current_time() == 5.5


async def test_idle_trips_on_a_stall_after_the_commit_point(tick: float, trio_clock: bool) -> None:
    """The consumer gets the chunks before a stall, then StepTimeout(IDLE) with that count."""
    model = Script("a", "b", STALL, tick=tick)
    timed = model.with_timeout(first_chunk=100 * tick, idle=5 * tick)  # idle from the first content on
    seen, error = await stream_until_error(timed, tick)
    assert texts(seen) == ["a", "b"]
    assert isinstance(error, StepTimeout)
    assert (error.phase, error.limit, error.step, error.delivered) == (
        TimeoutPhase.IDLE,
        5 * tick,
        "Script",
        2,
    )
    assert "sent nothing for" in str(error) and "after delivering 2 chunks" in str(error)
    assert "not retried" in str(error)
    if trio_clock:
        assert_idle_tripped(0, 5)


async def test_total_trips_on_a_step_that_does_not_finish(tick: float, trio_clock: bool) -> None:
    """A step still streaming at total fails with StepTimeout(TOTAL) after what it delivered."""
    model = Script("a", "b", STALL, tick=tick)
    seen, error = await stream_until_error(model.with_timeout(total=20 * tick, idle=50 * tick), tick)
    assert texts(seen) == ["a", "b"]
    assert isinstance(error, StepTimeout)
    assert (error.phase, error.limit, error.delivered) == (TimeoutPhase.TOTAL, 20 * tick, 2)
    assert "did not finish within" in str(error)
    if trio_clock:
        assert trio.current_time() == 20


@pytest.mark.parametrize(
    "limits",
    [{"first_chunk": 5}, {"idle": 5}, {"total": 5}],
    ids=["first_chunk", "idle", "total"],
)
async def test_the_model_stream_is_closed_when_a_limit_runs_out(
    tick: float, limits: dict[str, float]
) -> None:
    """Whichever limit trips, the model's stream is closed (its finally ran) and no task is left."""
    model = Script("", STALL, tick=tick) if "first_chunk" in limits else Script("a", STALL, tick=tick)
    timed = model.with_timeout(**{name: value * tick for name, value in limits.items()})
    async with cleanup_guard():
        _, error = await stream_until_error(timed, tick)
    assert isinstance(error, StepTimeout)
    assert (model.started, model.closed) == (1, 1)


async def test_a_gated_source_is_stopped_when_idle_runs_out(tick: float) -> None:
    """A stalled generator step is cancelled in its own task when the limit trips."""
    source = GatedSource(["a", "b", "c"])
    source.release(1)
    async with cleanup_guard():
        seen, error = await stream_until_error(
            source.with_timeout(first_chunk=100 * tick, idle=5 * tick), tick
        )
    assert seen == ["a"]
    assert isinstance(error, StepTimeout) and error.delivered == 1
    assert (source.started, source.finished, source.cancelled) == (1, 1, 1)


# -- no timeout when fast -----------------------------------------------------------------


async def test_no_limit_trips_when_the_step_is_fast(tick: float) -> None:
    """A fast model streams exactly what it would unwrapped, through astream, ainvoke and abatch."""
    reply = "one two three four five six seven eight nine ten " * 5
    model = ScriptedChatModel([reply])
    timed = model.with_timeout(first_chunk=5 * tick, idle=5 * tick, total=50 * tick)
    chain = ChatPromptTemplate.from_template("say {n}") | timed | StrOutputParser()
    with anyio.fail_after(GUARD_TICKS * tick):
        streamed = [text async for text in chain.astream({"n": 1})]
        assert streamed == split_tokens(reply)
        assert (await timed.ainvoke("hi")).content == reply
        assert await chain.abatch([{"n": 1}, {"n": 2}]) == [reply, reply]


async def test_a_reply_of_chunks_without_content_is_delivered_at_its_end(tick: float) -> None:
    """Held id-only chunks are the output when the step ends without content."""
    model = Script("", "", tick=tick)
    with anyio.fail_after(GUARD_TICKS * tick):
        chunks = [chunk async for chunk in model.with_timeout(first_chunk=5 * tick).astream("hi")]
    assert [chunk.id for chunk in chunks] == ["msg_1", "msg_1"]


async def test_a_timeout_inside_another_is_raised_as_itself(tick: float) -> None:
    """An inner wrapper's StepTimeout passes through an outer one unchanged, as retry needs."""
    model = Script("a", STALL, tick=tick)
    nested = model.with_timeout(first_chunk=100 * tick, idle=5 * tick).with_timeout(total=150 * tick)
    seen, error = await stream_until_error(nested, tick)
    assert texts(seen) == ["a"]
    assert type(error) is StepTimeout
    assert (error.phase, error.step, error.delivered) == (TimeoutPhase.IDLE, "Script", 1)


async def test_an_outer_total_stops_an_inner_step_and_names_itself(tick: float) -> None:
    """The outer wrapper's limit cancels the inner wrapper and raises its own StepTimeout."""
    model = Script("a", STALL, tick=tick)
    nested = model.with_timeout(idle=50 * tick).with_timeout(total=5 * tick)
    async with cleanup_guard():
        _, error = await stream_until_error(nested, tick)
    assert isinstance(error, StepTimeout)
    assert (error.phase, error.step) == (TimeoutPhase.TOTAL, "RunnableTimeout")
    assert model.closed == 1


# -- cancellation --------------------------------------------------------------------------


async def test_an_outer_cancellation_during_a_timeout_wait_is_a_cancellation(tick: float) -> None:
    """A scope around the consumer that runs out before the limit cancels the run: no StepTimeout."""
    model = Script("a", STALL, tick=tick)
    seen: list[Any] = []
    async with cleanup_guard():
        with anyio.move_on_after(10 * tick) as outer:
            async with model.with_timeout(idle=20 * tick).astream("hi") as chunks:
                async for chunk in chunks:
                    seen.append(chunk)
    assert outer.cancelled_caught
    assert texts(seen) == ["a"] and model.closed == 1


async def test_a_cancelled_run_ends_the_timeout_step_as_cancelled(tick: float) -> None:
    """Cancelling the run while a limit is pending ends the step with RunCancelled, not StepTimeout."""
    model = Script("a", STALL, tick=tick)
    bus = EventBus()
    monitor = bus.subscribe(capacity=256)
    async with cleanup_guard():
        with anyio.move_on_after(2 * tick) as outer:
            async with model.with_timeout(idle=5 * tick).astream("hi", {"bus": bus}) as chunks:
                async for _ in chunks:
                    pass
    assert outer.cancelled_caught
    events = monitor.receive_available(256)
    await monitor.aclose()
    check_event_order(events)
    ends = {event["name"]: event for event in events if event["event"].endswith(("_end", "_error"))}
    assert type(ends["RunnableTimeout"]["data"]["error"]) is RunCancelled
    assert type(ends["Script"]["data"]["error"]) is RunCancelled


@pytest.mark.trio
async def test_an_outer_scope_running_out_with_the_limit_stays_a_cancellation(
    autojump_clock: MockClock,
) -> None:
    """When an enclosing deadline and the limit fall at the same instant, the cancellation wins."""
    model = Script("a", STALL)
    with anyio.move_on_after(5) as outer:
        async with model.with_timeout(idle=5).astream("hi") as chunks:
            async for _ in chunks:
                pass
    assert outer.cancelled_caught

    async def inside_a_step(value: str) -> str:
        # A nested run under a scope of the step's own code, both running out at t+5.
        with anyio.move_on_after(5):
            await model.with_timeout(idle=5).ainvoke(value)
        return "moved on"

    assert await RunnableLambda(inside_a_step).ainvoke("hi") == "moved on"


@pytest.mark.trio
async def test_a_reader_leaving_as_the_limit_runs_out_is_a_quiet_stop(autojump_clock: MockClock) -> None:
    """Downstream stopping at the instant idle runs out stops the step quietly: no StepTimeout."""

    async def first_then_leave(chunks: AsyncIterator[Any]) -> AsyncIterator[str]:
        async for chunk in chunks:
            yield chunk.text
            await trio.sleep(5)  # returns (stops reading) just as idle runs out upstream
            return

    model = Script("a", STALL)
    bus = EventBus()
    monitor = bus.subscribe(capacity=256)
    chain = model.with_timeout(idle=5) | first_then_leave
    assert await chain.ainvoke("hi", {"bus": bus}) == "a"
    assert trio.current_time() == 5
    events = monitor.receive_available(256)
    await monitor.aclose()
    check_event_order(events)
    assert [event["event"] for event in events if event["name"] == "RunnableTimeout"][-1] == "on_chain_end"
    assert model.closed == 1


# -- events --------------------------------------------------------------------------------


async def test_the_timeout_step_ends_with_an_error_event_carrying_the_step_timeout(tick: float) -> None:
    """The wrapper's error event carries the StepTimeout; the model's run is its child, cancelled."""
    model = Script("a", STALL, tick=tick)
    events: list[dict[str, Any]] = []
    with anyio.fail_after(GUARD_TICKS * tick), pytest.raises(StepTimeout) as raised:
        async with model.with_timeout(first_chunk=100 * tick, idle=5 * tick).astream_events("hi") as stream:
            async for event in stream:
                events.append(event)
    check_event_order(events)
    ends = {event["name"]: event for event in events if event["event"].endswith(("_end", "_error"))}
    wrapper, inner = ends["RunnableTimeout"], ends["Script"]
    assert wrapper["event"] == "on_chain_error" and wrapper["data"]["error"] is raised.value
    assert inner["event"] == "on_chat_model_error"
    assert type(inner["data"]["error"]).__name__ == "RunCancelled"
    assert wrapper["run_id"] in inner["parent_ids"]
    streamed = [event["data"]["chunk"].text for event in events if event["event"] == "on_chain_stream"]
    assert streamed == ["a"]


# -- timing (trio's mock clock) --------------------------------------------------------------


@pytest.mark.trio
async def test_total_bounds_a_steady_stream(autojump_clock: MockClock) -> None:
    """A stream that never pauses long still ends at total, after the chunks made by then."""
    model = ScriptedChatModel(["t0 t1 t2 t3 t4 t5 t6 t7 t8 t9"], delay=2)
    seen, error = await stream_until_error(model.with_timeout(total=7, idle=3), 1.0)
    # Tokens come at t=2, 4, 6; total runs out at t=7.
    assert texts(seen) == ["t0", " t1", " t2"]
    assert isinstance(error, StepTimeout) and (error.phase, error.delivered) == (TimeoutPhase.TOTAL, 3)
    assert trio.current_time() == 7


@pytest.mark.trio
async def test_idle_counts_every_chunk_and_restarts_after_each(autojump_clock: MockClock) -> None:
    """Pauses shorter than idle never trip it, keep-alive chunks included; the first longer one does."""
    model = Script("", 4, "", 4, "a", 4, "b", 4.5, "c", 6, "d")
    seen, error = await stream_until_error(model.with_timeout(idle=5), 1.0)
    assert [chunk.text for chunk in seen] == ["", "", "a", "b", "c"]
    assert isinstance(error, StepTimeout) and (error.phase, error.delivered) == (TimeoutPhase.IDLE, 5)
    assert_idle_tripped(4 + 4 + 4 + 4.5, 5)


@pytest.mark.trio
async def test_first_chunk_stands_in_for_idle_before_the_first_content(autojump_clock: MockClock) -> None:
    """With first_chunk given, a silence longer than idle before the first content is allowed."""
    model = Script("", 8, "a", 2, "b")
    chunks = [chunk async for chunk in model.with_timeout(first_chunk=10, idle=5).astream("hi")]
    assert [chunk.text for chunk in chunks] == ["", "a", "b"]


@pytest.mark.trio
async def test_idle_takes_over_from_first_chunk_at_the_first_content(autojump_clock: MockClock) -> None:
    """After the first content, idle runs out on time though first_chunk was further away."""
    model = Script(1, "a", STALL)
    seen, error = await stream_until_error(model.with_timeout(first_chunk=30, idle=5), 1.0)
    assert texts(seen) == ["a"]
    assert isinstance(error, StepTimeout) and (error.phase, error.delivered) == (TimeoutPhase.IDLE, 1)
    assert_idle_tripped(1, 5)


@pytest.mark.trio
async def test_a_slow_consumer_does_not_trip_idle(autojump_clock: MockClock) -> None:
    """Time spent waiting for the consumer to take a chunk is not the step being idle."""
    model = ScriptedChatModel([[f"t{i}" for i in range(40)]])
    seen: list[str] = []
    async with model.with_timeout(idle=5).astream("hi", {"capacity": 1}) as chunks:
        async for chunk in chunks:
            seen.append(chunk.text)
            await trio.sleep(10)
    assert len(seen) == 40


def _timed_twelve_tokens(wrapping: str) -> Runnable[Any, Any]:
    model = ScriptedChatModel([[f"t{i}" for i in range(12)]])
    if wrapping == "bare":
        return model.with_timeout(idle=5)
    if wrapping == "around-retry":
        return model.with_retry().with_timeout(idle=5)
    if wrapping == "inside-retry":
        return model.with_timeout(idle=5).with_retry()
    assert wrapping == "in-parallel"
    return RunnableParallel(x=model.with_timeout(idle=5))


@pytest.mark.trio
@pytest.mark.parametrize("observed", [False, True], ids=["unobserved", "observed"])
@pytest.mark.parametrize("wrapping", ["bare", "around-retry", "inside-retry", "in-parallel"])
async def test_a_slow_consumer_does_not_trip_idle_through_any_wrapping(
    autojump_clock: MockClock, observed: bool, wrapping: str
) -> None:
    """Waiting for a slow consumer is not idleness, whatever sits between the timeout and the consumer."""
    timed = _timed_twelve_tokens(wrapping)
    bus = EventBus()
    config: dict[str, Any] = {"capacity": 1, "bus": bus}
    seen: list[str] = []
    subscribed = bus.subscribe(capacity=1024) if observed else contextlib.nullcontext()
    async with subscribed, timed.astream("hi", config) as chunks:
        async for chunk in chunks:
            seen.append(chunk["x"].text if wrapping == "in-parallel" else chunk.text)
            await trio.sleep(10)
    assert seen == [f"t{i}" for i in range(12)]


@pytest.mark.trio
@pytest.mark.parametrize("observed", [False, True], ids=["unobserved", "observed"])
async def test_idle_trips_inside_a_retry_wrapper_with_the_chunks_delivered(
    autojump_clock: MockClock, observed: bool
) -> None:
    """with_retry().with_timeout(idle=...) catches a stall after the commit point and counts what got through."""
    model = Script("a", 1, "b", 1, "c", STALL)
    bus = EventBus()
    async with bus.subscribe(capacity=1024) if observed else contextlib.nullcontext():
        seen, error = await stream_until_error(model.with_retry().with_timeout(idle=5), 1.0, {"bus": bus})
    assert texts(seen) == ["a", "b", "c"]
    assert isinstance(error, StepTimeout)
    assert (error.phase, error.step, error.delivered) == (TimeoutPhase.IDLE, "RunnableRetry", 3)
    assert_idle_tripped(2, 5)
    assert model.closed == 1


@pytest.mark.trio
async def test_total_counts_the_time_spent_waiting_for_the_consumer(autojump_clock: MockClock) -> None:
    """total bounds the whole step, backpressure included; the consumer still gets every chunk sent."""
    model = ScriptedChatModel([[f"t{i}" for i in range(40)]])
    seen: list[str] = []
    with pytest.raises(StepTimeout) as raised:
        async with model.with_timeout(total=25).astream("hi", {"capacity": 1}) as chunks:
            async for chunk in chunks:
                seen.append(chunk.text)
                await trio.sleep(10)
    assert raised.value.phase is TimeoutPhase.TOTAL
    assert len(seen) == raised.value.delivered
    assert seen == [f"t{i}" for i in range(len(seen))]


@pytest.mark.trio
async def test_each_run_starts_its_limits_afresh(autojump_clock: MockClock) -> None:
    """A wrapper run again (as a retry does) gets its full first_chunk and total again."""
    timed = ScriptedChatModel(["a b"], delay=3).with_timeout(first_chunk=5, total=8)
    for _ in range(3):
        assert (await timed.ainvoke("hi")).content == "a b"
    assert trio.current_time() == 18


# -- the Anthropic node over loopback --------------------------------------------------------


class TestAnthropicStall:
    """A Messages API stream that stops sending without closing is caught by idle."""

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        # Real sockets: a mock clock would jump while the client waits on the network.
        return str(request.param)

    @pytest.fixture
    def server(self) -> Iterator[AnthropicServer]:
        with AnthropicServer() as running:
            yield running

    async def test_idle_catches_a_stream_that_stops_sending_and_closes_the_response(
        self, server: AnthropicServer
    ) -> None:
        """Two tokens, then silence on an open connection: StepTimeout(IDLE), and the HTTP response is closed."""
        never = threading.Event()
        server.script(TextStream(["a", "b", "c", "d"], hold_before={2: never}))
        model = ChatAnthropic(
            model="claude-test-model", api_key="test-key", base_url=server.base_url, max_retries=0
        )
        # first_chunk is generous (the first call of a process loads the certificate store
        # in a thread); idle starts at the first token, and the first two come back to back.
        timed = model.with_timeout(first_chunk=30, idle=0.5)
        async with cleanup_guard():
            seen, error = await stream_until_error(timed, tick=0.25)
            record = server.requests[0]
            assert await anyio.to_thread.run_sync(record.client_gone.wait, 5.0)
        assert [chunk.text for chunk in seen] == ["a", "b"]
        assert isinstance(error, StepTimeout)
        assert (error.phase, error.step, error.delivered) == (TimeoutPhase.IDLE, "ChatAnthropic", 2)
        assert (record.outcome, record.deltas_sent) == ("client_gone", 2)
        assert await anyio.to_thread.run_sync(server.wait_until_no_connections, 5.0)


# -- synchronous use, values, bad input --------------------------------------------------------


def test_invoke_raises_the_step_timeout_as_itself() -> None:
    """The synchronous API raises the StepTimeout unchanged."""
    model = Script("a", STALL)
    with pytest.raises(StepTimeout) as raised:
        model.with_timeout(first_chunk=10, idle=0.05).invoke("hi")
    assert raised.value.delivered == 1 and model.closed == 1


def test_a_step_timeout_pickles_with_its_fields() -> None:
    """A StepTimeout survives pickling with its phase, limit, step, count and message."""
    error = StepTimeout(TimeoutPhase.IDLE, 2.5, "model", 3)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.phase, copy.limit, copy.step, copy.delivered, str(copy)) == (
        TimeoutPhase.IDLE,
        2.5,
        "model",
        3,
        str(error),
    )


def test_the_wrapper_passes_on_what_the_wrapped_runnable_says() -> None:
    """Output accumulation and the commit point are the wrapped runnable's; the repr shows the limits."""
    model = ScriptedChatModel(["x"])
    timed = model.with_timeout(idle=2, total=30)
    assert isinstance(timed, RunnableTimeout)
    assert timed.output_accumulation == model.output_accumulation
    assert not timed.carries_content(AIMessageChunk(content="", id="m"))
    assert timed.carries_content(AIMessageChunk.from_text("x"))
    assert repr(timed) == f"{model!r}.with_timeout(idle=2, total=30)"
    assert (timed.first_chunk, timed.idle, timed.total) == (None, 2.0, 30.0)


@pytest.mark.parametrize("bad", [0, -1, -0.5, math.nan, math.inf])
@pytest.mark.parametrize("name", ["first_chunk", "idle", "total"])
def test_a_limit_that_is_not_positive_and_finite_is_refused(name: str, bad: float) -> None:
    """Zero, negative, NaN and infinite limits fail at construction, naming the argument."""
    with pytest.raises(ValueError, match=f"with_timeout\\({name}=.*positive, finite"):
        ScriptedChatModel(["x"]).with_timeout(**{name: bad})


@pytest.mark.parametrize("bad", ["5", True, None.__class__, [1]])
def test_a_limit_that_is_not_a_number_is_refused(bad: Any) -> None:
    """A string, a bool or any other non-number fails at construction with a TypeError."""
    with pytest.raises(TypeError, match=r"with_timeout\(idle=\.\.\.\) takes seconds as a number"):
        ScriptedChatModel(["x"]).with_timeout(idle=bad)


def test_at_least_one_limit_is_required() -> None:
    """with_timeout() with no limit (or only None) fails at construction."""
    with pytest.raises(ValueError, match="at least one limit"):
        ScriptedChatModel(["x"]).with_timeout()
    with pytest.raises(ValueError, match="at least one limit"):
        ScriptedChatModel(["x"]).with_timeout(first_chunk=None, idle=None, total=None)


def test_only_a_runnable_can_be_wrapped() -> None:
    """RunnableTimeout made directly around a non-runnable fails at construction."""
    from engine import CompositionError

    with pytest.raises(CompositionError, match="with_timeout wraps a runnable"):
        RunnableTimeout(lambda x: x, idle=1)  # type: ignore[arg-type]


@pytest.mark.trio
async def test_a_timeout_before_the_commit_point_is_retried(autojump_clock: MockClock) -> None:
    """A StepTimeout before the first content is retried by with_retry; the consumer sees only the retry's chunks."""
    from nodes import AIMessageChunk, ScriptedChatModel, ScriptedReply, StrOutputParser

    start = AIMessageChunk(content="", id="msg_1")
    silent = ScriptedReply("never streamed", preamble=start, stall=60.0, stall_before=1)
    model = ScriptedChatModel([silent, "second try"])
    guarded = model.with_timeout(idle=1).with_retry(stop_after_attempt=2, wait_exponential_jitter=False)
    started = trio.current_time()
    chunks = [chunk async for chunk in (guarded | StrOutputParser()).astream("hi")]
    assert "".join(chunks) == "second try"
    assert model.calls == 2
    assert trio.current_time() - started < 60  # the stall was cut short by idle, not waited out
