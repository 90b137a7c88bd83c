"""Prompt caching with ChatAnthropic against the loopback Messages API, on trio and asyncio.

Cache-control markers on system blocks, tools, message blocks and the request itself go to
the wire exactly; the cache read and creation counts come back in ``usage_metadata``.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anthropic_server import AnthropicServer, MessageStream, TextBlock

from nodes import AIMessageChunk, ChatAnthropic, HumanMessage, SystemMessage, ToolMessage, UsageMetadata, tool

MODEL = "claude-test-model"
GUARD = 10.0  # seconds; bounds a call that should end at once, never paces a test
EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}


def chat(server: AnthropicServer, **options: Any) -> ChatAnthropic:
    return ChatAnthropic(model=MODEL, api_key="test-key", base_url=server.base_url, max_retries=0, **options)


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"sunny in {city}"


async def test_cache_markers_on_system_tools_and_blocks_reach_the_wire_exactly(
    server: AnthropicServer,
) -> None:
    """cache_control on a system block, a tool dict, a user block and a tool result is sent as given."""
    rules = {"type": "text", "text": "Long rules.", "cache_control": HOUR}
    cached_tool = {**get_weather.to_anthropic(), "cache_control": EPHEMERAL}
    document = {"type": "text", "text": "A long document.", "cache_control": EPHEMERAL}
    result = [{"type": "text", "text": "sunny", "cache_control": EPHEMERAL}]
    model = chat(server).bind_tools([cached_tool])
    with anyio.fail_after(GUARD):
        await model.ainvoke(
            [
                SystemMessage([rules]),
                SystemMessage("Be brief."),
                HumanMessage([document, {"type": "text", "text": "Summarise it."}]),
                AIMessageChunk(
                    content="", tool_call_chunks=[{"name": "get_weather", "id": "t1", "args": "{}"}]
                ),
                ToolMessage(result, tool_call_id="t1"),
            ]
        )
    assert server.requests[0].body == {
        "model": MODEL,
        "max_tokens": 1024,
        "system": [rules, {"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [document, {"type": "text", "text": "Summarise it."}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": result}]},
        ],
        "tools": [cached_tool],
        "stream": True,
    }


async def test_the_model_level_cache_control_is_the_requests_own(server: AnthropicServer) -> None:
    """cache_control= on the model (or bound) is the request's top-level field, which marks the last block."""
    with anyio.fail_after(GUARD):
        await chat(server, cache_control=EPHEMERAL).ainvoke("hi")
        await chat(server).bind(cache_control=HOUR).ainvoke("hi")
    assert [request.body for request in server.requests] == [
        {
            "model": MODEL,
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "hi"}],
            "cache_control": control,
            "stream": True,
        }
        for control in (EPHEMERAL, HOUR)
    ]


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("ephemeral", TypeError, "cache_control must be a dict"),
        ({"type": "ephemeral", "ttl": "2d"}, ValueError, "ttl"),
    ],
)
def test_a_bad_model_cache_control_is_refused_at_construction(
    value: Any, error: type[Exception], message: str
) -> None:
    """A cache_control that is not the API's dict, or has an unknown ttl, fails when the model is built."""
    with pytest.raises(error, match=message):
        ChatAnthropic(model=MODEL, cache_control=value)


async def test_cache_read_and_creation_counts_are_in_usage_metadata(server: AnthropicServer) -> None:
    """message_start's cache counts become input_token_details; input_tokens counts every prompt token."""
    usage = {"cache_read_input_tokens": 1800, "cache_creation_input_tokens": 200}
    server.script_many(
        [MessageStream([TextBlock(["a", "b"])], input_tokens=5, usage=usage)] * 2
        + [MessageStream([TextBlock(["c"])], input_tokens=5, usage={"cache_read_input_tokens": 0})]
    )
    model = chat(server)
    with anyio.fail_after(GUARD):
        chunks = [chunk async for chunk in model.astream("hi")]
        message = await model.ainvoke("hi")
        uncached = await model.ainvoke("hi")
    expected = UsageMetadata(
        input_tokens=2005, output_tokens=2, input_token_details={"cache_read": 1800, "cache_creation": 200}
    )
    assert chunks[-1].usage_metadata == expected
    assert [chunk.usage_metadata for chunk in chunks[:-1]] == [None, None]
    assert message.usage_metadata == expected
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_token_details"]["cache_read"] == 1800  # langchain-core's spelling
    assert expected.total_tokens == 2007
    # A usage without cache counts has no details; one with a zero count has that zero.
    assert uncached.usage_metadata == UsageMetadata(5, 1, input_token_details={"cache_read": 0})


def test_token_details_add_key_by_key_in_any_grouping() -> None:
    """Usage with details adds per key; a usage without details adds as zero; sum() works."""
    a = UsageMetadata(10, 1, input_token_details={"cache_read": 8})
    b = UsageMetadata(20, 2, input_token_details={"cache_read": 1, "cache_creation": 4})
    c = UsageMetadata(30, 3, output_token_details={"reasoning": 2})
    total = UsageMetadata(
        60,
        6,
        input_token_details={"cache_read": 9, "cache_creation": 4},
        output_token_details={"reasoning": 2},
    )
    assert (a + b) + c == a + (b + c) == sum([a, b, c]) == total
    assert UsageMetadata(1, 1) + UsageMetadata(2, 2) == UsageMetadata(3, 3)
    assert (UsageMetadata(1, 1) + UsageMetadata(2, 2)).input_token_details is None
    assert AIMessageChunk(content="", usage_metadata=a) + AIMessageChunk(
        content="", usage_metadata=b
    ) == AIMessageChunk(content="", usage_metadata=a + b)
    assert (
        repr(a)
        == "UsageMetadata(input_tokens=10, output_tokens=1, total_tokens=11, input_token_details={'cache_read': 8})"
    )
    assert hash(a) == hash(
        UsageMetadata(10, 1, input_token_details={"cache_read": 0})
    )  # details leave the hash
