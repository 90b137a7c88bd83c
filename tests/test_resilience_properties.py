"""Property: whatever the failure schedule, no chunk is seen twice, out of order or spliced.

A schedule says, for each attempt, whether it succeeds or fails, and where: before its
first chunk, after its message-start preamble (before the commit point), or after k
content chunks (after it). For every drawn schedule, wrapped by ``with_retry`` or by
``with_fallbacks`` (one scripted model per attempt), on both backends:

* the consumer of ``astream`` sees exactly one successful attempt's chunks, or the chunks
  the attempt that failed after its commit point had delivered, then that attempt's own
  error (noted), or, when every attempt failed before it, nothing and the error;
* a lossless (``"block"``) subscriber, with a buffer of one event so that the run waits
  for it, sees the same on the wrapper; on the steps after it (a parser, the sequence),
  the same or, after a failure, a prefix of it (the failure cancels the steps that had
  not yet passed the last chunks on: the engine's rule for any failing step); each
  attempt's own chunks in order and never twice; and ``check_event_order`` holds.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Runnable
from engine.testing import check_event_order
from nodes import ScriptedChatModel, ScriptedReply, StrOutputParser


class Fault(ConnectionError):
    """A transient failure that names its attempt."""


TOKENS = 3


def tokens(attempt: int) -> tuple[str, ...]:
    return tuple(f"<{attempt}.{n}>" for n in range(TOKENS))


# One attempt: ("ok", preamble) or ("fail", content chunks before the error, preamble).
ATTEMPTS = st.one_of(
    st.tuples(st.just("ok"), st.just(0), st.booleans()),
    st.tuples(st.just("fail"), st.integers(min_value=0, max_value=TOKENS), st.booleans()),
)
CASES = st.tuples(
    st.lists(ATTEMPTS, min_size=1, max_size=4),
    st.sampled_from(["retry", "fallbacks"]),
    st.sampled_from([1, 2, 16]),
)


def reply(attempt: int, kind: str, before: int, preamble: bool) -> ScriptedReply:
    if kind == "ok":
        return ScriptedReply(tokens(attempt), preamble=f"m{attempt}" if preamble else None)
    return ScriptedReply(
        tokens(attempt),
        preamble=f"m{attempt}" if preamble else None,
        error=Fault(f"attempt {attempt}"),
        error_after=before + (1 if preamble else 0),
    )


def wrapper(schedule: list[tuple[str, int, bool]], how: str) -> Runnable[Any, Any]:
    replies = [reply(n, *attempt) for n, attempt in enumerate(schedule, start=1)]
    if how == "retry" or len(replies) == 1:
        return ScriptedChatModel(replies).with_retry(
            stop_after_attempt=len(replies), wait_exponential_jitter=False
        )
    models = [ScriptedChatModel([r], name=f"model{n}") for n, r in enumerate(replies, start=1)]
    return models[0].with_fallbacks(models[1:])


def expected(schedule: list[tuple[str, int, bool]], how: str) -> tuple[list[str], str | None]:
    """The text chunks the consumer must see, and the message of the error after them."""
    for attempt, (kind, before, preamble) in enumerate(schedule, start=1):
        head = [""] if preamble else []
        if kind == "ok":
            return head + list(tokens(attempt)), None
        if before > 0:
            # Past the commit point: this attempt's prefix, then its own error.
            return head + list(tokens(attempt)[:before]), f"attempt {attempt}"
        if attempt == len(schedule):
            # Out of attempts: retry raises the last error, fallbacks the first (as langchain-core).
            return [], f"attempt {1 if how == 'fallbacks' and attempt > 1 else attempt}"
    raise AssertionError("unreachable")


async def consume(runnable: Runnable[Any, Any], capacity: int) -> tuple[list[str], BaseException | None]:
    seen: list[str] = []
    try:
        async with runnable.astream("hi", {"capacity": capacity}) as stream:
            async for chunk in stream:
                seen.append(text(chunk))
    except Fault as exc:
        return seen, exc
    return seen, None


async def observe(runnable: Runnable[Any, Any]) -> tuple[list[dict[str, Any]], BaseException | None]:
    events: list[dict[str, Any]] = []
    try:
        async with (runnable | StrOutputParser()).astream_events("hi", capacity=1) as stream:
            async for event in stream:
                events.append(event)
    except Fault as exc:
        return events, exc
    return events, None


def text(chunk: Any) -> str:
    return chunk if isinstance(chunk, str) else str(chunk.content)


def check_events(events: list[dict[str, Any]], want: list[str], failed: bool) -> None:
    check_event_order(events)
    per_run: dict[str, list[str]] = {}
    for event in events:
        if event["event"].endswith("_stream"):
            per_run.setdefault(event["run_id"], []).append(text(event["data"]["chunk"]))
    names = {event["run_id"]: event["name"] for event in events}
    for run_id, chunks in per_run.items():
        if names[run_id] in ("RunnableRetry", "RunnableWithFallbacks"):
            assert chunks == want, (names[run_id], chunks, want)
        elif names[run_id] in ("StrOutputParser", "RunnableSequence"):
            assert chunks == (want[: len(chunks)] if failed else want), (names[run_id], chunks, want)
        else:
            # An attempt's own run: its chunks, in order, each once (a prefix of its script).
            contents = [c for c in chunks if c]
            attempt = int(contents[0][1]) if contents else None
            if attempt is not None:
                assert contents == list(tokens(attempt)[: len(contents)]), chunks


SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}


@pytest.mark.anyio
@settings(max_examples=60, **SETTINGS)
@given(CASES)
async def test_no_schedule_shows_a_chunk_twice_out_of_order_or_spliced(case: Any) -> None:
    """For any failure schedule: one attempt's output, or a prefix and the original error; the
    block subscriber agrees, and every attempt's own chunks are in order and seen once."""
    schedule, how, capacity = case
    want, error_message = expected(schedule, how)
    seen, error = await consume(wrapper(schedule, how), capacity)
    assert seen == want
    assert (str(error) if error is not None else None) == error_message
    if error is not None:
        assert type(error) is Fault
        committed = schedule[int(error_message.split()[-1]) - 1][1] > 0  # type: ignore[union-attr]
        assert any("before this error" in note for note in getattr(error, "__notes__", [])) == committed
    events, observed_error = await observe(wrapper(schedule, how))
    assert (str(observed_error) if observed_error is not None else None) == error_message
    check_events(events, want, failed=error_message is not None)
