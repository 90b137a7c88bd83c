"""``with_retry``: attempts before the commit point are retried, a failure after it is not.

Every async test runs on trio and asyncio; tests of waits (backoff, ``retry-after``) run
on trio's ``MockClock`` so that they take no real time and can assert the exact wait.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import trio
import trio.testing
from _resilience_helpers import api_error, events_of, stream_error

from engine import (
    EventBus,
    RunnableGenerator,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
    RunnableRetry,
    current_step,
    is_transient_error,
    retry_after_seconds,
)
from engine.testing import assert_run_cleaned_up, check_event_order
from nodes import AIMessageChunk, ScriptedChatModel, ScriptedReply, StrOutputParser, UsageMetadata

NO_WAIT: dict[str, Any] = {"wait_exponential_jitter": False}


def texts(chunks: list[Any]) -> list[str]:
    return [chunk.content if isinstance(chunk, AIMessageChunk) else chunk for chunk in chunks]


# -- before the commit point: retried ------------------------------------------------------------


async def test_a_529_before_the_first_chunk_is_retried_and_the_consumer_sees_one_attempt() -> None:
    """A 529 then a success: the consumer sees exactly the second attempt's chunks."""
    model = ScriptedChatModel([ScriptedReply(error=api_error(529)), "second try"])
    chunks = [c async for c in model.with_retry(**NO_WAIT).astream("hi")]
    assert texts(chunks) == ["second", " try"]
    assert model.calls == 2


async def test_a_mid_stream_overloaded_error_before_content_is_retried() -> None:
    """An overloaded_error after the message-start chunk (no content yet) is retried; the
    first attempt's held preamble is never delivered."""
    first = ScriptedReply(
        "lost words", preamble="msg_1", error=stream_error("overloaded_error"), error_after=1
    )
    second = ScriptedReply("kept words", preamble="msg_2")
    model = ScriptedChatModel([first, second])
    chunks = [c async for c in model.with_retry(**NO_WAIT).astream("hi")]
    assert [c.id for c in chunks] == ["msg_2", "msg_2", "msg_2"]
    assert texts(chunks) == ["", "kept", " words"]


async def test_the_held_preamble_leaves_with_the_first_content_chunk() -> None:
    """Chunks without content are held, then released in order with the first content chunk."""
    model = ScriptedChatModel([ScriptedReply("a b", preamble="msg_1")])
    async with (model.with_retry(**NO_WAIT) | StrOutputParser()).astream("hi") as stream:
        assert [c async for c in stream] == ["", "a", " b"]


async def test_a_reply_without_content_is_delivered_at_its_clean_end() -> None:
    """An attempt that ends cleanly with only held chunks delivers them (they are its output)."""
    model = ScriptedChatModel([ScriptedReply("", preamble="msg_1", usage={"input_tokens": 3})])
    chunks = [c async for c in model.with_retry(**NO_WAIT).astream("hi")]
    assert [c.id for c in chunks] == ["msg_1", "msg_1"]
    assert chunks[1].usage_metadata == UsageMetadata(input_tokens=3)


async def test_stop_after_attempt_exhausted_raises_the_last_error() -> None:
    """Three failing attempts: the third one's error is raised, with a note, and nothing else runs."""
    errors = [api_error(529), api_error(500), api_error(429)]
    model = ScriptedChatModel([ScriptedReply(error=e) for e in errors] + ["never"])
    with pytest.raises(type(errors[2])) as caught:
        await model.with_retry(stop_after_attempt=3, **NO_WAIT).ainvoke("hi")
    assert caught.value.status_code == 429  # type: ignore[attr-defined]
    assert any("attempt 3 of 3" in note for note in caught.value.__notes__)
    assert model.calls == 3


async def test_stop_after_attempt_one_never_retries() -> None:
    """stop_after_attempt=1: one attempt, its error as it is."""
    model = ScriptedChatModel([ScriptedReply(error=api_error(529)), "ok"])
    with pytest.raises(type(api_error(529))):
        await model.with_retry(stop_after_attempt=1).ainvoke("hi")
    assert model.calls == 1


@pytest.mark.parametrize(
    "error",
    [ValueError("bad"), api_error(400), api_error(401), stream_error("invalid_request_error")],
    ids=["ValueError", "400", "401", "invalid_request_error mid-stream"],
)
async def test_a_non_transient_error_is_not_retried(error: Exception) -> None:
    """By default only transient failures are retried: a 400, a 401, a bug are raised at once."""
    model = ScriptedChatModel([ScriptedReply(error=error), "ok"])
    with pytest.raises(type(error)):
        await model.with_retry(**NO_WAIT).ainvoke("hi")
    assert model.calls == 1


async def test_retry_if_exception_type_picks_what_is_retried() -> None:
    """retry_if_exception_type=(ValueError,) retries a ValueError, and no longer a 529."""
    model = ScriptedChatModel([ScriptedReply(error=ValueError("flaky")), "ok"])
    retry = model.with_retry(retry_if_exception_type=(ValueError,), **NO_WAIT)
    assert (await retry.ainvoke("hi")).content == "ok"
    overloaded = ScriptedChatModel([ScriptedReply(error=api_error(529)), "ok"])
    with pytest.raises(type(api_error(529))):
        await overloaded.with_retry(retry_if_exception_type=(ValueError,), **NO_WAIT).ainvoke("hi")


async def test_a_timeout_error_subclass_is_retried_by_default() -> None:
    """A TimeoutError subclass (as engine.StepTimeout is) is transient: retried."""

    class PhaseTimeout(TimeoutError):
        pass

    model = ScriptedChatModel([ScriptedReply(error=PhaseTimeout("idle")), "ok"])
    assert (await model.with_retry(**NO_WAIT).ainvoke("hi")).content == "ok"


# -- after the commit point: not retried ----------------------------------------------------------


async def test_an_error_after_chunk_two_is_raised_as_itself_after_two_chunks() -> None:
    """After the commit point nothing is retried: 2 chunks, then the original error type with a note."""
    model = ScriptedChatModel(
        [ScriptedReply("a b c d", error=stream_error("overloaded_error"), error_after=2), "x"]
    )
    received: list[str] = []
    with pytest.raises(type(stream_error(None))) as caught:
        async with model.with_retry(**NO_WAIT).astream("hi") as stream:
            async for chunk in stream:
                received.append(chunk.content)
    assert received == ["a", " b"]
    assert caught.value.error_type == "overloaded_error"
    assert "RunnableRetry had delivered 2 chunks" in " ".join(caught.value.__notes__)
    assert model.calls == 1


async def test_invoke_after_the_commit_point_is_not_retried_either() -> None:
    """ainvoke follows the same rule: a failure after content was produced is raised."""
    model = ScriptedChatModel([ScriptedReply("a b c", error=api_error(529), error_after=1), "x"])
    with pytest.raises(type(api_error(529))) as caught:
        await model.with_retry(**NO_WAIT).ainvoke("hi")
    assert "had delivered 1 chunk before" in " ".join(caught.value.__notes__)
    assert model.calls == 1


async def test_a_consumer_that_stops_reading_ends_the_run_without_a_retry() -> None:
    """Breaking out of the stream stops the attempt quietly: no error, no second attempt."""
    model = ScriptedChatModel([["a", "b", "c", "d"] * 20, "x"])
    async with model.with_retry(**NO_WAIT).astream("hi", {"capacity": 1}) as stream:
        async for chunk in stream:
            assert chunk.content == "a"
            break
    assert model.calls == 1


async def test_a_consumer_that_leaves_an_observed_run_early_leaves_nothing_running() -> None:
    """astream_events left after the first chunk: no retry, every task ends, events in order."""
    model = ScriptedChatModel([["a", "b", "c", "d"] * 20, "x"])
    events: list[dict[str, Any]] = []
    async with (model.with_retry(**NO_WAIT) | StrOutputParser()).astream_events("hi", capacity=1) as stream:
        async for event in stream:
            events.append(event)
            if event["event"] == "on_parser_stream":
                break
    await assert_run_cleaned_up()
    check_event_order(events, complete=False)
    assert model.calls == 1


async def test_a_parallel_step_can_be_retried_and_its_branches_all_arrive() -> None:
    """A retried parallel step (several senders into one attempt): each branch's output once."""

    def branch(make: Any) -> RunnableLambda[str, Any]:
        async def run(text: str) -> Any:
            step = current_step()
            assert step is not None
            if step.metadata["attempt"] == 1:  # every step of an attempt carries its number
                raise ConnectionError("the first attempt fails")
            return make(text)

        return RunnableLambda(run)

    parallel = RunnableParallel({"shout": branch(str.upper), "count": branch(len)})
    chunks = [c async for c in parallel.with_retry(**NO_WAIT).astream("hi")]
    assert sorted(chunks, key=lambda c: sorted(c)) == [{"count": 2}, {"shout": "HI"}]
    await assert_run_cleaned_up()


async def test_a_parallel_step_is_committed_by_its_first_branch_to_deliver() -> None:
    """A branch's output that left the step commits the attempt: a later failure is not retried."""
    calls: list[int] = []

    async def late_failure(text: str) -> str:
        calls.append(1)
        await anyio.wait_all_tasks_blocked()  # the other branch has delivered by now
        raise ConnectionError("after the other branch delivered")

    parallel = RunnableParallel({"fails": RunnableLambda(late_failure), "echo": RunnablePassthrough()})
    with pytest.raises(ConnectionError) as caught:
        await parallel.with_retry(**NO_WAIT).ainvoke("hi")
    assert calls == [1]
    assert "had delivered 1 chunk before" in " ".join(caught.value.__notes__)


# -- every way of running ---------------------------------------------------------------------------


def test_invoke_and_batch_from_sync_code_retry() -> None:
    """The synchronous invoke and batch retry too."""
    model = ScriptedChatModel([ScriptedReply(error=api_error(503)), "ok"])
    assert model.with_retry(**NO_WAIT).invoke("hi").content == "ok"
    assert [m.content for m in model.with_retry(**NO_WAIT).batch(["a"])] == ["ok"]


async def test_batch_retries_each_item_on_its_own() -> None:
    """abatch: only the items that failed are tried again, each as often as it needs."""
    failures = {"b": 1, "c": 2}
    calls: dict[str, int] = {}

    async def flaky(text: str) -> str:
        calls[text] = calls.get(text, 0) + 1
        if calls[text] <= failures.get(text, 0):
            raise ConnectionResetError(f"{text} attempt {calls[text]}")
        return text.upper()

    retry = RunnableLambda(flaky).with_retry(**NO_WAIT)
    assert await retry.abatch(["a", "b", "c"]) == ["A", "B", "C"]
    assert calls == {"a": 1, "b": 2, "c": 3}
    results = (
        await RunnableLambda(flaky)
        .with_retry(stop_after_attempt=1)
        .abatch(["d", "b2"], return_exceptions=True)
    )
    assert results == ["D", "B2"]


async def test_a_generator_step_is_retried_before_its_first_chunk_only() -> None:
    """Any runnable can be retried; for a non-model step the first chunk is the commit point."""
    attempts: list[int] = []

    async def gen(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for _ in chunks:
            pass
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            raise ConnectionError("before any chunk")
        yield "one"
        if len(attempts) == 2:
            raise ConnectionError("after a chunk")

    with pytest.raises(ConnectionError, match="after a chunk"):
        await RunnableGenerator(gen).with_retry(**NO_WAIT).ainvoke("x")
    assert attempts == [1, 2]


# -- events and usage per attempt -----------------------------------------------------------------


async def test_each_attempt_is_a_nested_run_with_its_attempt_number() -> None:
    """Events: the failed attempt's start and error, then the next attempt's, nested under
    the wrapper with {"attempt": n} in their metadata; the order rules hold."""
    model = ScriptedChatModel(
        [ScriptedReply(error=api_error(529)), ScriptedReply(error=api_error(500)), "ok now"]
    )
    events, error = await events_of(model.with_retry(**NO_WAIT) | StrOutputParser(), "hi")
    assert error is None
    check_event_order(events)
    wrapper = next(e for e in events if e["name"] == "RunnableRetry")
    model_events = [e for e in events if e["event"].startswith("on_chat_model")]
    assert [
        (e["event"], e["metadata"].get("attempt"))
        for e in model_events
        if e["event"] != "on_chat_model_stream"
    ] == [
        ("on_chat_model_start", 1),
        ("on_chat_model_error", 1),
        ("on_chat_model_start", 2),
        ("on_chat_model_error", 2),
        ("on_chat_model_start", 3),
        ("on_chat_model_end", 3),
    ]
    assert all(wrapper["run_id"] in e["parent_ids"] for e in model_events)
    assert len({e["run_id"] for e in model_events}) == 3
    assert [e["data"]["chunk"] for e in events if e["event"] == "on_parser_stream"] == ["ok", " now"]


async def test_usage_of_every_attempt_is_rolled_up_on_the_wrappers_end_event() -> None:
    """data["usage"]: each attempt's usage (a failed one counted from what arrived) and the total."""
    failed = ScriptedReply(
        "lost",
        preamble=AIMessageChunk(content="", id="m1", usage_metadata=UsageMetadata(input_tokens=10)),
        error=stream_error("overloaded_error"),
        error_after=1,
    )
    ok = ScriptedReply("fine", usage=UsageMetadata(input_tokens=10, output_tokens=4))
    model = ScriptedChatModel([ScriptedReply(error=api_error(529)), failed, ok])
    events, _ = await events_of(model.with_retry(**NO_WAIT), "hi")
    end = next(e for e in events if e["event"] == "on_chain_end" and e["name"] == "RunnableRetry")
    usage = end["data"]["usage"]
    assert [(a["attempt"], a["outcome"], a["usage"]) for a in usage["attempts"]] == [
        (1, "error", None),
        (2, "error", UsageMetadata(input_tokens=10)),
        (3, "ok", UsageMetadata(input_tokens=10, output_tokens=4)),
    ]
    assert usage["attempts"][1]["error"].error_type == "overloaded_error"
    assert usage["total"] == UsageMetadata(input_tokens=20, output_tokens=4, total_tokens=24)


async def test_usage_is_on_the_error_event_when_every_attempt_failed() -> None:
    """A wrapper that gave up reports what its attempts cost on its error event."""
    failed = ScriptedReply(
        preamble=AIMessageChunk(content="", usage_metadata={"input_tokens": 7}),
        error=api_error(529),
        error_after=1,
    )
    model = ScriptedChatModel([failed])
    events, error = await events_of(model.with_retry(stop_after_attempt=2, **NO_WAIT), "hi")
    assert error is not None
    check_event_order(events)
    last = events[-1]
    assert last["event"] == "on_chain_error" and last["name"] == "RunnableRetry"
    assert last["data"]["usage"]["total"] == UsageMetadata(input_tokens=14)


@pytest.mark.trio
async def test_a_cancelled_attempt_counts_the_usage_that_arrived(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A run cancelled while its second attempt stalls: the wrapper's error event reports
    the failed attempt, the cancelled one (its message-start usage) and the total."""
    start = AIMessageChunk(content="", usage_metadata=UsageMetadata(input_tokens=6))
    failed = ScriptedReply("x", preamble=start, error=api_error(529), error_after=1)
    stalled = ScriptedReply("late words", preamble=start, stall=100, stall_before=1)
    model = ScriptedChatModel([failed, stalled])
    bus = EventBus()
    async with bus.subscribe(capacity=64) as monitor:
        with trio.move_on_after(5):
            async with model.with_retry(**NO_WAIT).astream("hi", {"bus": bus}) as stream:
                async for _ in stream:
                    pass
        await anyio.wait_all_tasks_blocked()
        events = monitor.receive_available(100)
    check_event_order(events)
    last = events[-1]
    assert (last["event"], last["name"]) == ("on_chain_error", "RunnableRetry")
    usage = last["data"]["usage"]
    assert [(a["outcome"], a["usage"]) for a in usage["attempts"]] == [
        ("error", UsageMetadata(input_tokens=6)),
        ("cancelled", UsageMetadata(input_tokens=6)),
    ]
    assert usage["total"] == UsageMetadata(input_tokens=12)


# -- waits: MockClock -----------------------------------------------------------------------------


@pytest.mark.trio
@pytest.mark.parametrize(
    ("headers", "expected"), [({"retry_after": "7"}, 7.0), ({"retry_after_ms": "2500"}, 2.5)]
)
async def test_retry_after_is_honoured_exactly(
    autojump_clock: trio.testing.MockClock, headers: dict[str, str], expected: float
) -> None:
    """A 429 carrying retry-after: the next attempt starts exactly that long after (virtual time)."""
    model = ScriptedChatModel([ScriptedReply(error=api_error(429, **headers)), "ok"])
    start = trio.current_time()
    assert (await model.with_retry().ainvoke("hi")).content == "ok"
    assert trio.current_time() - start == pytest.approx(expected)


@pytest.mark.trio
async def test_a_retry_after_beyond_max_retry_after_gives_up_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A server asking for 120 s when max_retry_after is 60: the error is raised without waiting."""
    model = ScriptedChatModel([ScriptedReply(error=api_error(529, retry_after="120")), "ok"])
    start = trio.current_time()
    with pytest.raises(type(api_error(529))) as caught:
        await model.with_retry().ainvoke("hi")
    assert trio.current_time() == start
    assert "more than max_retry_after" in " ".join(caught.value.__notes__)


@pytest.mark.trio
async def test_the_exponential_backoff_with_jitter(autojump_clock: trio.testing.MockClock) -> None:
    """Without retry-after the waits are initial*2**(n-1) + jitter: [1, 2) then [2, 3) seconds."""
    times: list[float] = []

    async def flaky(text: str) -> str:
        times.append(trio.current_time())
        if len(times) < 3:
            raise ConnectionError("down")
        return text

    await RunnableLambda(flaky).with_retry().ainvoke("x")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 1.0 <= gaps[0] < 2.0 and 2.0 <= gaps[1] < 3.0
    exact = RunnableLambda(flaky).with_retry(
        exponential_jitter_params={"initial": 0.5, "jitter": 0, "exp_base": 3}
    )
    times.clear()
    await exact.ainvoke("x")
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([0.5, 1.5])


async def test_cancelling_during_a_backoff_wait_stops_at_once() -> None:
    """A run cancelled while it waits 1000 s to retry ends promptly, without another attempt."""
    model = ScriptedChatModel([ScriptedReply(error=api_error(503)), "ok"])
    retry = model.with_retry(exponential_jitter_params={"initial": 1000, "jitter": 0})
    with anyio.fail_after(10):  # a hang guard only: the wait must not run out
        async with anyio.create_task_group() as group:

            async def consume() -> None:
                async with retry.astream("hi") as stream:
                    async for _ in stream:
                        pass

            group.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            assert model.calls == 1
            group.cancel_scope.cancel()
    assert model.calls == 1


@pytest.mark.trio
async def test_cancelling_during_a_backoff_takes_no_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Under the mock clock a cancel 5 s into a 1000 s backoff ends the run at 5 s, with an error event."""
    model = ScriptedChatModel([ScriptedReply(error=api_error(503)), "ok"])
    retry = model.with_retry(exponential_jitter_params={"initial": 1000, "jitter": 0})
    events: list[dict[str, Any]] = []
    start = trio.current_time()
    with trio.move_on_after(5):
        async with retry.astream_events("hi") as stream:
            async for event in stream:
                events.append(event)
    assert trio.current_time() - start == pytest.approx(5)
    assert model.calls == 1
    check_event_order(events, complete=False)


# -- what counts as transient -----------------------------------------------------------------------


def _group(*errors: Exception) -> BaseException:
    return ExceptionGroup("several", list(errors))


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (api_error(429), True),
        (api_error(500), True),
        (api_error(503), True),
        (api_error(529), True),
        (api_error(400), False),
        (api_error(401), False),
        (TimeoutError("t"), True),
        (ConnectionResetError("reset"), True),
        (ValueError("v"), False),
        (RuntimeError("r"), False),
        (stream_error("overloaded_error"), True),
        (stream_error("rate_limit_error"), True),
        (stream_error("api_error"), True),
        (stream_error("invalid_request_error"), False),
        (stream_error(None), False),
        (_group(TimeoutError("a"), api_error(529)), True),
        (_group(TimeoutError("a"), ValueError("b")), False),
    ],
)
def test_what_is_transient_by_default(error: BaseException, transient: bool) -> None:
    """429, 5xx, 529, timeouts, connection errors and overloaded/rate-limit stream events; nothing else."""
    assert is_transient_error(error) is transient


def test_the_sdks_connection_errors_are_transient() -> None:
    """anthropic.APIConnectionError and APITimeoutError, and a stream broken by httpx2, are transient."""
    import anthropic
    import httpx2

    request = httpx2.Request("POST", "https://api.anthropic.test/v1/messages")
    assert is_transient_error(anthropic.APIConnectionError(request=request))
    assert is_transient_error(anthropic.APITimeoutError(request))
    broken = stream_error(None)
    broken.__cause__ = httpx2.ReadError("connection reset")
    assert is_transient_error(broken)


def test_retry_after_seconds_reads_the_response_headers() -> None:
    """retry-after in seconds or as an HTTP date, retry-after-ms, through __cause__; None without."""
    import email.utils
    import time

    assert retry_after_seconds(api_error(429, retry_after="3")) == 3.0
    assert retry_after_seconds(api_error(429, retry_after_ms="1500", retry_after="3")) == 1.5
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (retry_after_seconds(api_error(529, retry_after=date)) or 0) <= 30
    assert retry_after_seconds(api_error(529)) is None
    assert retry_after_seconds(ValueError("no response")) is None
    wrapped = stream_error("rate_limit_error")
    wrapped.__cause__ = api_error(429, retry_after="4")
    assert retry_after_seconds(wrapped) == 4.0


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "kind", "match"),
    [
        ({"stop_after_attempt": 0}, ValueError, "stop_after_attempt must be an int >= 1"),
        ({"stop_after_attempt": -2}, ValueError, "stop_after_attempt"),
        ({"stop_after_attempt": True}, ValueError, "stop_after_attempt"),
        ({"stop_after_attempt": 2.5}, ValueError, "stop_after_attempt"),
        (
            {"exponential_jitter_params": {"initial": -1}},
            ValueError,
            r"exponential_jitter_params\['initial'\]",
        ),
        ({"exponential_jitter_params": {"jitter": -0.1}}, ValueError, "jitter"),
        ({"exponential_jitter_params": {"max": math.nan}}, ValueError, "max"),
        ({"exponential_jitter_params": {"start": 1}}, ValueError, "unknown key"),
        ({"max_retry_after": -1}, ValueError, "max_retry_after"),
        ({"retry_if_exception_type": (int,)}, TypeError, "exception types"),
        ({"retry_if_exception_type": ()}, TypeError, "non-empty tuple"),
    ],
)
def test_bad_retry_arguments_fail_at_construction(
    kwargs: dict[str, Any], kind: type[Exception], match: str
) -> None:
    """Each bad argument is refused when with_retry is called, naming the argument."""
    with pytest.raises(kind, match=match):
        ScriptedChatModel(["x"]).with_retry(**kwargs)


def test_with_retry_wraps_runnables_only() -> None:
    """RunnableRetry built by hand refuses something that is not a runnable."""
    with pytest.raises(TypeError, match="wraps a runnable"):
        RunnableRetry(lambda x: x)  # type: ignore[arg-type]
