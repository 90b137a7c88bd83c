"""``ScriptedReply``: a scripted model call that fails, stalls, starts with a preamble, reports
usage, or answers with tool calls; and the plain scripted replies still work as before."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from _resilience_helpers import api_error, stream_error

from nodes import AIMessage, AIMessageChunk, ScriptedChatModel, ScriptedReply, ToolCall, UsageMetadata


async def collect(model: ScriptedChatModel) -> tuple[list[AIMessageChunk], BaseException | None]:
    chunks: list[AIMessageChunk] = []
    try:
        async with model.astream("hi") as stream:
            async for chunk in stream:
                chunks.append(chunk)
    except Exception as exc:
        return chunks, exc
    return chunks, None


async def test_an_error_before_the_first_chunk() -> None:
    """error_after=0 (the default): nothing streams, the error is raised."""
    chunks, error = await collect(ScriptedChatModel([ScriptedReply("a b", error=api_error(529))]))
    assert chunks == [] and isinstance(error, type(api_error(529)))


async def test_an_error_after_chunk_k() -> None:
    """error_after=2: two chunks, then the error."""
    chunks, error = await collect(
        ScriptedChatModel([ScriptedReply("a b c", error=ValueError, error_after=2)])
    )
    assert [c.content for c in chunks] == ["a", " b"] and isinstance(error, ValueError)


async def test_a_preamble_chunk_comes_first_and_counts_as_a_chunk() -> None:
    """The preamble is chunk 0: error_after=1 fails right after it, before any content."""
    reply = ScriptedReply("a b", preamble="msg_1", error=stream_error("overloaded_error"), error_after=1)
    chunks, error = await collect(ScriptedChatModel([reply]))
    assert [(c.id, c.content) for c in chunks] == [("msg_1", "")]
    assert getattr(error, "error_type", None) == "overloaded_error"


async def test_usage_is_reported_on_a_last_chunk_and_adds_up() -> None:
    """usage= gives a last chunk without content; the reply sums to the text with that usage."""
    model = ScriptedChatModel(
        [ScriptedReply("a b", preamble="msg_1", usage={"input_tokens": 4, "output_tokens": 2})]
    )
    message = await model.ainvoke("hi")
    assert message == AIMessage("a b", id="msg_1", usage_metadata=UsageMetadata(4, 2))


async def test_a_reply_with_tool_calls_streams_and_adds_up_to_the_message() -> None:
    """An AIMessage with tool calls (as a reply or inside a ScriptedReply) sums back to itself."""
    message = AIMessage(
        "Let me look.",
        id="msg_t",
        tool_calls=[
            ToolCall(name="search", args={"q": "rillet", "n": 2}, id="call_1"),
            ToolCall(name="now", args={}, id="call_2"),
        ],
        usage_metadata=UsageMetadata(10, 5),
    )
    model = ScriptedChatModel([message, ScriptedReply(message)])
    assert await model.ainvoke("hi") == message
    chunks, _ = await collect(model)
    assert [bool(c.tool_call_chunks) for c in chunks] == [False, False, False, True, True, True, True, False]
    assert chunks[3].tool_call_chunks[0].name == "search"


async def test_the_script_cycles_per_call_so_each_attempt_can_differ() -> None:
    """Calls take the replies in turn: fail, succeed, fail, succeed..."""
    model = ScriptedChatModel([ScriptedReply(error=ConnectionError("down")), "up"])
    outcomes = []
    for _ in range(4):
        chunks, error = await collect(model)
        outcomes.append("error" if error else "".join(str(c.content) for c in chunks))
    assert outcomes == ["error", "up", "error", "up"]
    assert model.calls == 4


async def test_a_fresh_copy_of_the_error_is_raised_each_call() -> None:
    """Notes added to a raised error do not pile up on the script; the cause is kept."""
    template = stream_error("overloaded_error")
    template.__cause__ = api_error(529)
    model = ScriptedChatModel([ScriptedReply(error=template)])
    _, first = await collect(model)
    assert first is not None
    first.add_note("seen downstream")
    _, second = await collect(model)
    assert second is not None and second is not first and second is not template
    assert getattr(second, "__notes__", []) == []
    assert second.__cause__ is template.__cause__


@pytest.mark.trio
async def test_a_stall_before_a_chunk_takes_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    """stall=30 before chunk 1: the first chunk at once, the second 30 (virtual) seconds later."""
    model = ScriptedChatModel([ScriptedReply("a b", stall=30, stall_before=1)])
    times: list[float] = []
    start = trio.current_time()
    async with model.astream("hi") as stream:
        async for _ in stream:
            times.append(trio.current_time() - start)
    assert times == [0, 30]


@pytest.mark.trio
async def test_a_stall_then_an_error(autojump_clock: trio.testing.MockClock) -> None:
    """A stall and an error at the same place: the wait comes first, then the error."""
    model = ScriptedChatModel([ScriptedReply("a", stall=5, error=TimeoutError, error_after=0)])
    start = trio.current_time()
    with pytest.raises(TimeoutError):
        await model.ainvoke("hi")
    assert trio.current_time() - start == 5


async def test_plain_replies_are_unchanged() -> None:
    """Strings are word tokens, lists of strings exact tokens, as before ScriptedReply existed."""
    model = ScriptedChatModel(["Hello there", ["x", "y"]])
    first, _ = await collect(model)
    second, _ = await collect(model)
    assert [c.content for c in first] == ["Hello", " there"]
    assert [c.content for c in second] == ["x", "y"]


@pytest.mark.parametrize(
    ("kwargs", "kind", "match"),
    [
        ({"content": 5}, TypeError, "content must be"),
        ({"preamble": AIMessageChunk(content="text")}, ValueError, "preamble carries no content"),
        ({"preamble": 3}, TypeError, "preamble must be"),
        ({"usage": [1, 2]}, TypeError, "usage must be"),
        ({"error": "boom"}, TypeError, "error must be an exception"),
        ({"content": "a b", "error": ValueError, "error_after": 3}, ValueError, "streams only 2 chunks"),
        ({"error_after": 1}, ValueError, "needs an error"),
        ({"error": ValueError, "error_after": -1}, ValueError, "error_after must be an int >= 0"),
        ({"stall": -1}, ValueError, "stall must be a number of seconds >= 0"),
        ({"stall_before": 1, "content": "a b"}, ValueError, "needs a stall"),
        ({"stall": 1, "stall_before": 9, "content": "a"}, ValueError, "streams only 1 chunk$"),
    ],
)
def test_bad_scripted_replies_fail_at_construction(
    kwargs: dict[str, Any], kind: type[Exception], match: str
) -> None:
    """Each bad field is refused when the reply is made, naming the field."""
    with pytest.raises(kind, match=match):
        ScriptedReply(**kwargs)


def test_a_model_refuses_something_that_is_not_a_reply() -> None:
    """A number among the replies is refused at construction, naming what replies may be."""
    with pytest.raises(ValueError, match="ScriptedReply"):
        ScriptedChatModel(["ok", 42])  # type: ignore[list-item]
