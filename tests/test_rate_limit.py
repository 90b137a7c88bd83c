"""engine.RateLimiter and runnable.with_rate_limit: limits shared by every run that holds one.

Timed behaviour (request windows, token windows, a server's pause) runs on trio under the
autojump mock clock, so a minute of waiting takes no real time and start times are exact.
Untimed behaviour (the concurrency cap, cancellation, release on failure) runs on both
backends and is sequenced with ``wait_all_tasks_blocked``.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import functools
import pickle
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

import anthropic
import anyio
import attrs
import httpx2
import pytest
import trio
import trio.testing
from anthropic_server import AnthropicServer, ErrorReply, TextStream

from engine import RateLimiter, RunnableRateLimited
from engine.testing import check_event_order
from nodes import (
    AIMessageChunk,
    BaseChatModel,
    BaseMessage,
    ChatAnthropic,
    ChatPromptTemplate,
    ScriptedChatModel,
    StrOutputParser,
    UsageMetadata,
)

HANG_GUARD = 10.0  # real seconds; only bounds a wait that should end at once
VIRTUAL_GUARD = 3600.0  # mock-clock seconds: a test stuck for good jumps here and fails

Test = TypeVar("Test", bound=Callable[..., Awaitable[None]])


def virtual_hang_guard(test: Test) -> Test:
    """Fail a mock-clock test that would wait forever (autojump jumps to the deadline)."""

    @functools.wraps(test)
    async def guarded(*args: Any, **kwargs: Any) -> None:
        with trio.fail_after(VIRTUAL_GUARD):
            await test(*args, **kwargs)

    return guarded  # type: ignore[return-value]


@attrs.define(eq=False, repr=False)
class UsageModel(BaseChatModel):
    """A chat model that records when each call starts, how many run at once, and reports usage.

    Each call: waits for ``gate`` (if set), sleeps ``duration``, raises the call's entry of
    ``errors`` if it is one (before any chunk), yields a message-start chunk carrying the
    input tokens, raises ``fail_after_first`` if set, then yields ``"ok"`` with the output tokens.
    """

    duration: float = 0.0
    usage: tuple[int, int] = (0, 0)
    errors: Sequence[BaseException | None] = ()
    fail_after_first: BaseException | None = None
    gate: anyio.Event | None = None
    started: list[float] = attrs.field(factory=list)
    live: int = 0
    peak: int = 0

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        call = len(self.started)
        self.started.append(anyio.current_time())
        self.live += 1
        self.peak = max(self.peak, self.live)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.duration:
                await anyio.sleep(self.duration)
            error = self.errors[call] if call < len(self.errors) else None
            if error is not None:
                raise error
            yield AIMessageChunk(content="", usage_metadata=UsageMetadata(input_tokens=self.usage[0]))
            if self.fail_after_first is not None:
                raise self.fail_after_first
            yield AIMessageChunk(content="ok", usage_metadata=UsageMetadata(output_tokens=self.usage[1]))
        finally:
            self.live -= 1


def relative(times: Sequence[float], origin: float) -> list[float]:
    return [round(t - origin, 6) for t in times]


def api_error(status: int, headers: dict[str, str]) -> anthropic.APIStatusError:
    """The SDK's own exception for ``status``, with a response carrying ``headers``."""
    classes: dict[int, type[anthropic.APIStatusError]] = {
        429: anthropic.RateLimitError,
        529: anthropic.OverloadedError,
        500: anthropic.InternalServerError,
        503: anthropic.ServiceUnavailableError,
    }
    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    response = httpx2.Response(status, headers=headers, request=request)
    return classes[status](f"status {status}", response=response, body=None)


# -- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({}, ValueError, "at least one limit"),
        ({"requests_per_minute": 0}, ValueError, "requests_per_minute must be >= 1, got 0"),
        ({"requests_per_minute": -5}, ValueError, "requests_per_minute must be >= 1"),
        ({"requests_per_minute": 1.5}, TypeError, "requests_per_minute must be a positive int"),
        ({"requests_per_minute": True}, TypeError, "requests_per_minute must be a positive int"),
        ({"requests_per_minute": "3"}, TypeError, "requests_per_minute must be a positive int"),
        ({"max_concurrent": 0}, ValueError, "max_concurrent must be >= 1"),
        ({"tokens_per_minute": 0}, ValueError, "tokens_per_minute must be >= 1"),
        ({"tokens_per_minute": 100, "token_estimate": -1}, ValueError, "token_estimate must be >= 0"),
        ({"tokens_per_minute": 100, "token_estimate": 1.0}, TypeError, "token_estimate must be an int"),
        ({"max_concurrent": 1, "token_estimate": 10}, ValueError, "token_estimate needs tokens_per_minute"),
        ({"tokens_per_minute": 100, "token_estimate": 101}, ValueError, "no call could ever start"),
        ({"max_concurrent": 1, "max_pause": 0}, ValueError, "max_pause must be a finite number"),
        ({"max_concurrent": 1, "max_pause": float("inf")}, ValueError, "max_pause must be a finite"),
        ({"max_concurrent": 1, "max_pause": float("nan")}, ValueError, "max_pause must be a finite"),
        ({"max_concurrent": 1, "max_pause": "5"}, TypeError, "max_pause must be a number"),
        ({"max_concurrent": 1, "name": 3}, TypeError, "name must be a string"),
    ],
)
def test_bad_limits_are_refused_at_construction(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    """A limiter with no limit, or any bad value, raises a clear error naming it."""
    with pytest.raises(error, match=match):
        RateLimiter(**options)


def test_with_rate_limit_needs_a_rate_limiter() -> None:
    """with_rate_limit refuses anything but a RateLimiter, naming the runnable."""
    with pytest.raises(TypeError, match=r"Bot\.with_rate_limit\(\) needs an engine\.RateLimiter, got 5"):
        ScriptedChatModel(replies=["x"], name="Bot").with_rate_limit(5)  # type: ignore[arg-type]


def test_a_limiter_is_shared_by_copies_and_refuses_pickling() -> None:
    """Copies of a rate-limited runnable hold the same limiter; pickling the limiter fails clearly."""
    limiter = RateLimiter(max_concurrent=1)
    limited = ScriptedChatModel(replies=["x"]).with_rate_limit(limiter)
    assert copy.deepcopy(limited).limiter is limiter
    assert copy.copy(limiter) is limiter
    with pytest.raises(TypeError, match="cannot pickle RateLimiter"):
        pickle.dumps(limiter)


# -- pass-through -----------------------------------------------------------------------------


async def test_a_limited_model_streams_its_chunks_unchanged_and_nests_its_events() -> None:
    """The wrapper streams the model's chunks as they come; the model's events nest under it."""
    model = ScriptedChatModel(replies=["Hello there friend"])
    limited = model.with_rate_limit(RateLimiter(max_concurrent=2))
    assert isinstance(limited, RunnableRateLimited)
    assert [c.content async for c in limited.astream("hi")] == ["Hello", " there", " friend"]
    chain = ChatPromptTemplate.from_template("{q}") | limited | StrOutputParser()
    assert await chain.ainvoke({"q": "hi"}) == "Hello there friend"
    events = [e async for e in limited.astream_events("hi")]
    check_event_order(events)
    wrapper = next(e for e in events if e["event"] == "on_chain_start")
    model_start = next(e for e in events if e["event"] == "on_chat_model_start")
    assert wrapper["name"] == "RunnableRateLimited"
    assert model_start["parent_ids"][-1] == wrapper["run_id"]
    assert [e["event"] for e in events].count("on_custom_event") == 0


# -- request rate ---------------------------------------------------------------------------------


@pytest.mark.trio
@virtual_hang_guard
async def test_request_rate_spaces_call_starts_across_a_batch(autojump_clock: trio.testing.MockClock) -> None:
    """abatch of 8 under 3 requests/minute starts 3 calls at once, then 3 a minute later, and so on."""
    model = UsageModel(duration=1.0)
    limiter = RateLimiter(requests_per_minute=3)
    origin = trio.current_time()
    results = await model.with_rate_limit(limiter).abatch(["q"] * 8)
    assert [r.content for r in results] == ["ok"] * 8
    assert relative(model.started, origin) == [0, 0, 0, 60, 60, 60, 120, 120]
    assert limiter.statistics().requests_in_window == 2


@pytest.mark.trio
@virtual_hang_guard
async def test_request_rate_is_shared_by_different_runnables(autojump_clock: trio.testing.MockClock) -> None:
    """Two models holding one limiter share its window: never more than 2 starts in any minute."""
    limiter = RateLimiter(requests_per_minute=2)
    first, second = UsageModel(), UsageModel()
    origin = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(first.with_rate_limit(limiter).ainvoke, "a")
            nursery.start_soon(second.with_rate_limit(limiter).ainvoke, "b")
    starts = sorted(relative(first.started + second.started, origin))
    assert starts == [0, 0, 60, 60, 120, 120]
    assert all(later - earlier >= 60 for earlier, later in zip(starts, starts[2:], strict=False))


# -- concurrency ----------------------------------------------------------------------------------


async def test_concurrency_cap_holds_across_runs() -> None:
    """With max_concurrent=3, a batch of 8 never has more than 3 calls in flight."""
    gate = anyio.Event()
    model = UsageModel(gate=gate)
    other = UsageModel(gate=gate)
    limiter = RateLimiter(max_concurrent=3)
    results: list[Any] = []

    async def batch() -> None:
        results.extend(await model.with_rate_limit(limiter).abatch(["q"] * 6))

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(batch)
            tg.start_soon(other.with_rate_limit(limiter).ainvoke, "x")
            tg.start_soon(other.with_rate_limit(limiter).ainvoke, "y")
            await anyio.wait_all_tasks_blocked()
            stats = limiter.statistics()
            assert (stats.in_flight, stats.waiting) == (3, 5)
            assert model.live + other.live == 3
            gate.set()
    assert len(results) == 6
    stats = limiter.statistics()
    assert (stats.in_flight, stats.waiting, stats.peak_in_flight) == (0, 0, 3)
    assert len(model.started) + len(other.started) == 8
    assert max(model.peak, other.peak) <= 3


# -- tokens ----------------------------------------------------------------------------------------


@pytest.mark.trio
@virtual_hang_guard
async def test_token_budget_is_charged_the_usage_each_call_reports(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Calls reporting 40 + 20 tokens under 100/minute: the third waits until the first's usage leaves the window."""
    model = UsageModel(duration=1.0, usage=(40, 20))
    limiter = RateLimiter(tokens_per_minute=100)
    limited = model.with_rate_limit(limiter)
    origin = trio.current_time()
    for _ in range(4):
        reply = await limited.ainvoke("q")
        assert reply.usage_metadata == UsageMetadata(40, 20)
    # 1st at 0 (charged 60 at 1), 2nd at 1 (120 charged by 2), 3rd waits for 1 + 60,
    # 4th at 62 when the charge made at 2 has left the window.
    assert relative(model.started, origin) == [0, 1, 61, 62]
    stats = limiter.statistics()
    assert (stats.tokens_in_window, stats.tokens_reserved) == (120, 0)


@pytest.mark.trio
@virtual_hang_guard
async def test_token_estimate_is_reserved_then_replaced_by_real_usage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An estimate of 50 lets 2 calls of a 100 budget start; their real usage (20 each) then frees room."""
    model = UsageModel(duration=1.0, usage=(15, 5))
    limiter = RateLimiter(tokens_per_minute=100, token_estimate=50)
    limited = model.with_rate_limit(limiter)
    origin = trio.current_time()
    seen: list[tuple[int, int]] = []

    async def watch() -> None:
        await trio.sleep(0.5)
        stats = limiter.statistics()
        seen.append((stats.tokens_reserved, stats.tokens_in_window))
        await trio.sleep(1.0)
        stats = limiter.statistics()
        seen.append((stats.tokens_reserved, stats.tokens_in_window))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await limited.abatch(["q"] * 4)
    # At 1 the first two are charged 20 each: 40 + the third's 50 fits, the fourth's does
    # not until those charges leave the window at 61.
    assert relative(model.started, origin) == [0, 0, 1, 61]
    assert seen == [(100, 0), (50, 40)]
    stats = limiter.statistics()
    assert (stats.tokens_reserved, stats.tokens_in_window) == (0, 20)


# -- cancellation and failure -------------------------------------------------------------------------


async def test_cancelling_a_waiting_call_leaves_nothing_acquired() -> None:
    """A call cancelled while waiting takes no turn, and the call behind it moves up."""
    gate = anyio.Event()
    model = UsageModel(gate=gate)
    limiter = RateLimiter(max_concurrent=1)
    limited = model.with_rate_limit(limiter)
    done: list[str] = []

    async def call(name: str) -> None:
        await limited.ainvoke(name)
        done.append(name)

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "holder")
            await anyio.wait_all_tasks_blocked()
            async with anyio.create_task_group() as waiting:
                waiting.start_soon(call, "cancelled")
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(call, "behind")
                await anyio.wait_all_tasks_blocked()
                assert limiter.statistics().waiting == 2
                waiting.cancel_scope.cancel()
            stats = limiter.statistics()
            assert (stats.in_flight, stats.waiting) == (1, 1)
            gate.set()
    assert done == ["holder", "behind"]
    assert len(model.started) == 2
    stats = limiter.statistics()
    assert (stats.in_flight, stats.waiting) == (0, 0)


@pytest.mark.trio
@virtual_hang_guard
async def test_cancelling_a_timed_wait_takes_no_request(autojump_clock: trio.testing.MockClock) -> None:
    """The first in line cancelled while waiting for the window counts no request; the call behind it starts at 60."""
    model = UsageModel()
    limiter = RateLimiter(requests_per_minute=1)
    limited = model.with_rate_limit(limiter)
    origin = trio.current_time()
    await limited.ainvoke("first")

    async def cancelled() -> None:
        with trio.move_on_after(10) as scope:
            await limited.ainvoke("cancelled")
        assert scope.cancelled_caught
        stats = limiter.statistics()
        assert (stats.requests_in_window, stats.waiting, stats.in_flight) == (1, 1, 0)

    async def behind() -> None:
        await trio.sleep(5)
        await limited.ainvoke("behind")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancelled)
        nursery.start_soon(behind)
    assert relative(model.started, origin) == [0, 60]
    await limited.ainvoke("next")
    assert relative(model.started, origin) == [0, 60, 120]


async def test_the_turn_is_given_back_when_the_call_fails() -> None:
    """A call failing mid-stream raises its own error, frees its slot and is charged the usage that arrived."""
    model = UsageModel(usage=(30, 10), fail_after_first=ValueError("boom"))
    limiter = RateLimiter(max_concurrent=1, tokens_per_minute=1000)
    with pytest.raises(ValueError, match="boom"):
        await model.with_rate_limit(limiter).ainvoke("q")
    stats = limiter.statistics()
    assert (stats.in_flight, stats.tokens_in_window, stats.tokens_reserved) == (0, 30, 0)
    model.fail_after_first = None
    with anyio.fail_after(HANG_GUARD):
        assert (await model.with_rate_limit(limiter).ainvoke("q")).content == "ok"


async def test_the_turn_is_given_back_when_the_run_is_cancelled_mid_call() -> None:
    """A run cancelled while its model call is in flight frees its slot; the next call starts at once."""
    gate = anyio.Event()
    model = UsageModel(gate=gate)
    limiter = RateLimiter(max_concurrent=1)
    limited = model.with_rate_limit(limiter)
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(limited.ainvoke, "q")
            await anyio.wait_all_tasks_blocked()
            assert limiter.statistics().in_flight == 1
            tg.cancel_scope.cancel()
        assert limiter.statistics().in_flight == 0
        gate.set()
        assert (await limited.ainvoke("q")).content == "ok"
    assert limiter.statistics().in_flight == 0


async def test_the_turn_is_given_back_when_the_consumer_stops_early() -> None:
    """Leaving an astream block after the first chunk frees the slot."""
    limiter = RateLimiter(max_concurrent=1)
    limited = ScriptedChatModel(replies=[["a", "b", "c"]]).with_rate_limit(limiter)
    with anyio.fail_after(HANG_GUARD):
        async with limited.astream("q") as chunks:
            async for chunk in chunks:
                assert chunk.content == "a"
                break
        assert limiter.statistics().in_flight == 0
        assert (await limited.ainvoke("q")).content == "abc"


# -- a server's retry-after --------------------------------------------------------------------------


@pytest.mark.trio
@virtual_hang_guard
async def test_a_429_with_retry_after_pauses_every_run_sharing_the_limiter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A 429 asking for 30 s at t=5 holds back runs starting at 10 and 20 until 35; one in flight goes on."""
    limiter = RateLimiter(max_concurrent=10)
    failing = UsageModel(duration=5.0, errors=[api_error(429, {"retry-after": "30"})])
    long_call = UsageModel(duration=20.0)
    others = UsageModel()
    origin = trio.current_time()
    finished: list[float] = []

    async def fails() -> None:
        with pytest.raises(anthropic.RateLimitError):
            await failing.with_rate_limit(limiter).ainvoke("q")

    async def in_flight() -> None:
        await trio.sleep(1)
        await long_call.with_rate_limit(limiter).ainvoke("q")
        finished.append(trio.current_time() - origin)

    async def later(delay: float) -> None:
        await trio.sleep(delay)
        await others.with_rate_limit(limiter).ainvoke("q")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fails)
        nursery.start_soon(in_flight)
        nursery.start_soon(later, 10)
        nursery.start_soon(later, 20)
        await trio.sleep(10)
        assert limiter.statistics().paused_for == pytest.approx(25)
    assert relative(others.started, origin) == [35, 35]
    assert finished == [pytest.approx(21)]
    assert limiter.statistics().paused_for == 0


@pytest.mark.trio
@pytest.mark.parametrize(
    ("status", "headers", "pause"),
    [
        (429, {"retry-after": "30"}, 30.0),
        (529, {"retry-after": "12"}, 12.0),
        (529, {"retry-after-ms": "2500", "retry-after": "9"}, 2.5),
        (429, {"retry-after": "5000"}, 300.0),  # at most max_pause
        (429, {}, 0.0),
        (429, {"retry-after": "soon"}, 0.0),
        (500, {"retry-after": "30"}, 0.0),
        (503, {"retry-after": "30"}, 0.0),
    ],
)
@virtual_hang_guard
async def test_only_a_429_or_529_with_retry_after_pauses(
    autojump_clock: trio.testing.MockClock, status: int, headers: dict[str, str], pause: float
) -> None:
    """The next call waits exactly the pause a 429/529 asked for (capped); other errors pause nobody."""
    limiter = RateLimiter(max_concurrent=1)
    model = UsageModel(errors=[api_error(status, headers)])
    limited = model.with_rate_limit(limiter)
    origin = trio.current_time()
    with pytest.raises(anthropic.APIStatusError) as caught:
        await limited.ainvoke("q")
    assert caught.value.status_code == status
    await limited.ainvoke("again")
    assert relative(model.started, origin) == [0, pause]


@pytest.mark.trio
@virtual_hang_guard
async def test_a_caller_that_tries_again_after_a_429_waits_out_the_pause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A hand-rolled retry re-enters the limiter, so its second attempt starts after the pause."""
    model = UsageModel(errors=[api_error(429, {"retry-after": "20"})])
    limited = model.with_rate_limit(RateLimiter(requests_per_minute=100))
    origin = trio.current_time()
    for _attempt in range(2):
        try:
            reply = await limited.ainvoke("q")
            break
        except anthropic.RateLimitError:
            continue
    assert reply.content == "ok"
    assert relative(model.started, origin) == [0, 20]


@pytest.mark.trio
@virtual_hang_guard
async def test_a_retry_after_date_or_one_inside_an_exception_group_pauses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """retry-after as an HTTP date pauses until then; a 529 inside an exception group pauses too."""
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    group = ExceptionGroup("two", [ValueError("other"), api_error(529, {"retry-after": "7"})])
    limiter = RateLimiter(max_concurrent=1)
    model = UsageModel(errors=[api_error(429, {"retry-after": when}), group])
    limited = model.with_rate_limit(limiter)
    with pytest.raises(anthropic.RateLimitError):
        await limited.ainvoke("q")
    # The date has a resolution of one second and was made from the wall clock.
    assert 25 < limiter.statistics().paused_for <= 31
    await trio.sleep(limiter.statistics().paused_for)
    with pytest.raises(ExceptionGroup):
        await limited.ainvoke("q")
    assert limiter.statistics().paused_for == pytest.approx(7)


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    """A loopback Messages API server for one test."""
    with AnthropicServer() as running:
        yield running


async def test_chat_anthropic_429_pauses_and_its_usage_is_charged(server: AnthropicServer) -> None:
    """ChatAnthropic's real RateLimitError pauses the limiter; a reply's reported usage is charged."""
    server.script_many(
        [TextStream(["Hel", "lo"], input_tokens=7), ErrorReply(429, "rate_limit_error", retry_after=30)]
    )
    model = ChatAnthropic(
        model="claude-test-model", api_key="test-key", base_url=server.base_url, max_retries=0
    )
    limiter = RateLimiter(tokens_per_minute=10_000)
    limited = model.with_rate_limit(limiter)
    with anyio.fail_after(HANG_GUARD):
        assert (await limited.ainvoke("hi")).content == "Hello"
        assert limiter.statistics().tokens_in_window == 9
        with pytest.raises(anthropic.RateLimitError):
            await limited.ainvoke("hi")
    # Real time: the pause was just set to 30 s, so nearly all of it is left.
    assert 20 < limiter.statistics().paused_for <= 30


# -- events ----------------------------------------------------------------------------------------


@pytest.mark.trio
@virtual_hang_guard
async def test_a_call_that_waits_for_the_request_window_publishes_a_wait_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The wait event names the reason, the planned wait and the limiter, from the wrapper's step."""
    limiter = RateLimiter(requests_per_minute=1, name="anthropic-key")
    limited = UsageModel().with_rate_limit(limiter)
    first = [e async for e in limited.astream_events("q")]
    assert not [e for e in first if e["event"] == "on_custom_event"]
    await trio.sleep(15)
    events = [e async for e in limited.astream_events("q")]
    check_event_order(events)
    waits = [e for e in events if e["event"] == "on_custom_event"]
    wrapper = next(e for e in events if e["event"] == "on_chain_start")
    assert [(w["name"], w["run_id"]) for w in waits] == [("rate_limit_wait", wrapper["run_id"])]
    assert waits[0]["data"] == {
        "reason": "requests",
        "wait": pytest.approx(45),
        "ahead": 0,
        "limiter": "anthropic-key",
    }
    # The wait comes before the model starts.
    names = [e["event"] for e in events]
    assert names.index("on_custom_event") < names.index("on_chat_model_start")


@pytest.mark.trio
@virtual_hang_guard
async def test_a_paused_limiter_publishes_a_paused_wait(autojump_clock: trio.testing.MockClock) -> None:
    """A call held by a server's pause says so, with the time left."""
    limiter = RateLimiter(max_concurrent=5)
    model = UsageModel(errors=[api_error(529, {"retry-after": "40"})])
    limited = model.with_rate_limit(limiter)
    with pytest.raises(anthropic.OverloadedError):
        await limited.ainvoke("q")
    await trio.sleep(10)
    waits = [e["data"] async for e in limited.astream_events("q") if e["event"] == "on_custom_event"]
    assert waits == [{"reason": "paused", "wait": pytest.approx(30), "ahead": 0, "limiter": "RateLimiter"}]


@pytest.mark.trio
@virtual_hang_guard
async def test_a_waiting_call_reports_a_pause_that_comes_while_it_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A call waiting for a slot when the holder gets a 429 publishes a second wait, 'paused', and starts after it."""
    limiter = RateLimiter(max_concurrent=1)
    holder = UsageModel(duration=5.0, errors=[api_error(429, {"retry-after": "30"})])
    waiter = UsageModel()
    origin = trio.current_time()
    waits: list[dict[str, Any]] = []

    async def fails() -> None:
        with pytest.raises(anthropic.RateLimitError):
            await holder.with_rate_limit(limiter).ainvoke("q")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fails)
        await trio.testing.wait_all_tasks_blocked()
        async for event in waiter.with_rate_limit(limiter).astream_events("q"):
            if event["event"] == "on_custom_event":
                waits.append({k: event["data"][k] for k in ("reason", "wait")})
    assert waits == [{"reason": "concurrency", "wait": None}, {"reason": "paused", "wait": pytest.approx(30)}]
    assert relative(waiter.started, origin) == [35]


async def test_calls_waiting_for_a_slot_publish_concurrency_waits() -> None:
    """Calls held by the concurrency cap publish reason 'concurrency', no planned wait, and their place in line."""
    gate = anyio.Event()
    limiter = RateLimiter(max_concurrent=1)
    limited = UsageModel(gate=gate).with_rate_limit(limiter)
    waits: list[dict[str, Any]] = []

    async def watched() -> None:
        async for event in limited.astream_events("q"):
            if event["event"] == "on_custom_event":
                waits.append(event["data"])

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(limited.ainvoke, "holder")
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(watched)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(watched)
            await anyio.wait_all_tasks_blocked()
            gate.set()
    assert waits == [
        {"reason": "concurrency", "wait": None, "ahead": 0, "limiter": "RateLimiter"},
        {"reason": "concurrency", "wait": None, "ahead": 1, "limiter": "RateLimiter"},
    ]


# -- event loops ------------------------------------------------------------------------------------


@pytest.mark.trio
async def test_a_busy_limiter_refuses_a_call_from_another_event_loop() -> None:
    """While trio holds a turn, a call from an asyncio loop in a thread raises a clear RuntimeError."""
    gate = trio.Event()
    model = UsageModel(gate=gate)  # type: ignore[arg-type]
    limiter = RateLimiter(max_concurrent=2)
    limited = model.with_rate_limit(limiter)

    def from_asyncio() -> None:
        asyncio.run(limited.ainvoke("other loop"))

    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(limited.ainvoke, "q")
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(RuntimeError, match="in use by another event loop"):
                await trio.to_thread.run_sync(from_asyncio)
            gate.set()
    assert len(model.started) == 1


def test_an_idle_limiter_moves_to_the_next_event_loop() -> None:
    """A limiter used by one asyncio.run and left idle works in the next one."""
    limited = UsageModel().with_rate_limit(RateLimiter(max_concurrent=1))
    assert asyncio.run(limited.ainvoke("q")).content == "ok"
    assert asyncio.run(limited.ainvoke("q")).content == "ok"
