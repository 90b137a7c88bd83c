"""``with_fallbacks``: the next runnable takes over before the commit point, never after."""

from __future__ import annotations

from typing import Any

import pytest
from _resilience_helpers import api_error, events_of, stream_error

from engine import RunnableLambda, RunnableWithFallbacks
from engine.testing import check_event_order
from nodes import AIMessageChunk, ScriptedChatModel, ScriptedReply, UsageMetadata

NO_WAIT: dict[str, Any] = {"wait_exponential_jitter": False}


async def test_a_fallback_takes_over_before_the_commit_point_in_astream() -> None:
    """The primary's 529 (after its message-start chunk) hands over: the consumer sees the fallback only."""
    primary = ScriptedChatModel(
        [
            ScriptedReply(
                "primary words", preamble="msg_p", error=stream_error("overloaded_error"), error_after=1
            )
        ],
        name="primary",
    )
    backup = ScriptedChatModel([ScriptedReply("backup words", preamble="msg_b")], name="backup")
    chunks = [c async for c in primary.with_fallbacks([backup]).astream("hi")]
    assert [(c.id, c.content) for c in chunks] == [("msg_b", ""), ("msg_b", "backup"), ("msg_b", " words")]
    assert (primary.calls, backup.calls) == (1, 1)


async def test_a_fallback_takes_over_in_invoke() -> None:
    """ainvoke: a failed primary and a failed first fallback, then the second fallback's reply."""
    first = ScriptedChatModel([ScriptedReply(error=api_error(529))])
    second = ScriptedChatModel([ScriptedReply(error=ValueError("broken"))])
    third = ScriptedChatModel(["third reply"])
    assert (await first.with_fallbacks([second, third]).ainvoke("hi")).content == "third reply"


async def test_no_fallback_after_the_commit_point() -> None:
    """The primary failing after 2 chunks: 2 chunks, then its own error with a note; the fallback never runs."""
    primary = ScriptedChatModel([ScriptedReply("a b c", error=api_error(529), error_after=2)])
    backup = ScriptedChatModel(["never"])
    received: list[str] = []
    with pytest.raises(type(api_error(529))) as caught:
        async with primary.with_fallbacks([backup]).astream("hi") as stream:
            async for chunk in stream:
                received.append(chunk.content)
    assert received == ["a", " b"]
    assert "RunnableWithFallbacks had delivered 2 chunks" in " ".join(caught.value.__notes__)
    assert backup.calls == 0


async def test_exceptions_to_handle_limits_what_hands_over() -> None:
    """An error outside exceptions_to_handle is raised as it is; the fallback never runs."""
    primary = ScriptedChatModel([ScriptedReply(error=KeyError("k"))])
    backup = ScriptedChatModel(["never"])
    with pytest.raises(KeyError):
        await primary.with_fallbacks([backup], exceptions_to_handle=(ValueError,)).ainvoke("hi")
    assert backup.calls == 0


async def test_when_every_runnable_fails_the_first_error_is_raised() -> None:
    """As in langchain-core, the primary's error is raised, the fallbacks' in a note."""
    primary = ScriptedChatModel([ScriptedReply(error=ValueError("primary"))])
    backup = ScriptedChatModel([ScriptedReply(error=ConnectionError("backup"))])
    with pytest.raises(ValueError, match="primary") as caught:
        await primary.with_fallbacks([backup]).ainvoke("hi")
    assert "ConnectionError('backup')" in " ".join(caught.value.__notes__)


async def test_exception_key_hands_the_previous_error_to_the_next_runnable() -> None:
    """With exception_key, each fallback gets the input dict plus the previous error under that key."""
    seen: list[dict[str, Any]] = []

    def primary(values: dict[str, Any]) -> str:
        seen.append(values)
        raise ValueError("first failed")

    def second(values: dict[str, Any]) -> str:
        seen.append(values)
        raise ValueError("second failed")

    def third(values: dict[str, Any]) -> str:
        seen.append(values)
        return f"answer to {values['question']} after {values['error']}"

    chain = RunnableLambda(primary).with_fallbacks(
        [RunnableLambda(second), RunnableLambda(third)], exception_key="error"
    )
    given = {"question": "q"}
    assert await chain.ainvoke(given) == "answer to q after second failed"
    assert [sorted(values) for values in seen] == [["question"], ["error", "question"], ["error", "question"]]
    assert str(seen[1]["error"]) == "first failed" and str(seen[2]["error"]) == "second failed"
    assert given == {"question": "q"}  # the caller's dict is not changed


async def test_exception_key_needs_a_dict_input() -> None:
    """exception_key with a non-dict input fails clearly before anything runs."""
    primary = ScriptedChatModel(["x"])
    with pytest.raises(ValueError, match="must be a dict"):
        await primary.with_fallbacks([ScriptedChatModel(["y"])], exception_key="error").ainvoke("text")
    assert primary.calls == 0


async def test_each_runnable_tried_is_an_attempt_on_the_bus() -> None:
    """Events: the primary's start and error (attempt 1), the fallback's start and end (attempt 2)."""
    primary = ScriptedChatModel([ScriptedReply(error=api_error(529))], name="primary")
    backup = ScriptedChatModel(["ok"], name="backup")
    events, error = await events_of(primary.with_fallbacks([backup]), "hi")
    assert error is None
    check_event_order(events)
    lifecycle = [
        (e["event"], e["name"], e["metadata"].get("attempt"))
        for e in events
        if e["event"].startswith("on_chat_model") and not e["event"].endswith("stream")
    ]
    assert lifecycle == [
        ("on_chat_model_start", "primary", 1),
        ("on_chat_model_error", "primary", 1),
        ("on_chat_model_start", "backup", 2),
        ("on_chat_model_end", "backup", 2),
    ]


async def test_usage_rolls_up_through_retries_nested_in_fallbacks() -> None:
    """Fallbacks over retried models: the outer roll-up counts every inner attempt, failed ones too."""
    start = AIMessageChunk(content="", usage_metadata=UsageMetadata(input_tokens=5))
    failing = ScriptedReply(preamble=start, error=api_error(529), error_after=1)
    primary = ScriptedChatModel([failing], name="primary")
    backup = ScriptedChatModel(
        [failing, ScriptedReply("ok", usage=UsageMetadata(input_tokens=5, output_tokens=1))], name="backup"
    )
    chain = primary.with_retry(stop_after_attempt=2, **NO_WAIT).with_fallbacks(
        [backup.with_retry(stop_after_attempt=2, **NO_WAIT)]
    )
    events, error = await events_of(chain, "hi")
    assert error is None
    check_event_order(events)
    outer = events[-1]
    assert outer["name"] == "RunnableWithFallbacks"
    usage = outer["data"]["usage"]
    assert [(a["attempt"], a["outcome"], a["usage"]) for a in usage["attempts"]] == [
        (1, "error", UsageMetadata(input_tokens=10)),
        (2, "ok", UsageMetadata(input_tokens=10, output_tokens=1)),
    ]
    assert usage["total"] == UsageMetadata(input_tokens=20, output_tokens=1)


@pytest.mark.parametrize(
    ("fallbacks", "kwargs", "kind", "match"),
    [
        ([], {}, ValueError, "at least one fallback"),
        ([lambda x: x], {}, TypeError, r"fallbacks\[0\] is not a runnable"),
        ([ScriptedChatModel(["y"]), "model"], {}, TypeError, r"fallbacks\[1\] is not a runnable"),
        (ScriptedChatModel(["y"]), {}, TypeError, "list of runnables"),
        ([ScriptedChatModel(["y"])], {"exceptions_to_handle": ()}, TypeError, "exceptions_to_handle"),
        ([ScriptedChatModel(["y"])], {"exceptions_to_handle": (str,)}, TypeError, "exception types"),
        ([ScriptedChatModel(["y"])], {"exception_key": ""}, TypeError, "exception_key"),
    ],
)
def test_bad_fallback_arguments_fail_at_construction(
    fallbacks: Any, kwargs: dict[str, Any], kind: type[Exception], match: str
) -> None:
    """An empty list, a non-runnable, bad exception types or key: a clear error at once."""
    with pytest.raises(kind, match=match):
        ScriptedChatModel(["x"]).with_fallbacks(fallbacks, **kwargs)


def test_runnable_with_fallbacks_lists_the_runnables_in_order() -> None:
    """runnables is the primary, then the fallbacks."""
    a, b, c = ScriptedChatModel(["a"]), ScriptedChatModel(["b"]), ScriptedChatModel(["c"])
    wrapper = a.with_fallbacks([b, c])
    assert isinstance(wrapper, RunnableWithFallbacks)
    assert wrapper.runnables == (a, b, c)
