"""ChatAnthropic's extended thinking against the loopback Messages API, on trio and asyncio.

The thinking config is sent as the API takes it; thinking and signature deltas stream as
content blocks that add up to the whole block; the summed reply, sent back on the next
turn, gives the exact blocks the API wants (thinking with its signature, redacted thinking
unchanged, tool_use with its input, in their order).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anthropic_server import (
    AnthropicServer,
    MessageStream,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)

from engine.testing import cleanup_guard
from nodes import (
    AIMessage,
    AIMessageChunk,
    ChatAnthropic,
    HumanMessage,
    ModelStreamError,
    StrOutputParser,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
    UsageMetadata,
    tool,
)

MODEL = "claude-test-model"
GUARD = 10.0  # seconds; bounds a call that should end at once, never paces a test
ENABLED = {"type": "enabled", "budget_tokens": 2048}


def chat(server: AnthropicServer, **options: Any) -> ChatAnthropic:
    options.setdefault("max_tokens", 4096)
    return ChatAnthropic(model=MODEL, api_key="test-key", base_url=server.base_url, max_retries=0, **options)


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"sunny in {city}"


async def stream(model: ChatAnthropic, value: Any) -> list[AIMessageChunk]:
    with anyio.fail_after(GUARD):
        return [chunk async for chunk in model.astream(value)]


def thinking(text: str, index: int) -> dict[str, Any]:
    return {"type": "thinking", "thinking": text, "index": index}


def signature(text: str, index: int) -> dict[str, Any]:
    return {"type": "thinking", "signature": text, "index": index}


# -- the request ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        ENABLED,
        {"type": "enabled", "budget_tokens": 1024, "display": "omitted"},
        {"type": "adaptive"},
        {"type": "adaptive", "display": "summarized"},
        {"type": "disabled"},
        {"type": "between_tools"},
    ],
)
async def test_the_thinking_config_is_sent_as_given(server: AnthropicServer, config: dict[str, Any]) -> None:
    """thinking={...} in the API's own shape goes into the body unchanged, next to the other fields."""
    with anyio.fail_after(GUARD):
        await chat(server, thinking=config, effort="high").ainvoke("hi")
    assert server.requests[0].body == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": config,
        "output_config": {"effort": "high"},
        "stream": True,
    }


async def test_thinking_can_be_bound(server: AnthropicServer) -> None:
    """bind(thinking=...) sends it; the model bind was called on sends none."""
    model = chat(server)
    with anyio.fail_after(GUARD):
        await model.bind(thinking={"type": "adaptive"}).ainvoke("hi")
        await model.ainvoke("hi")
    bound, plain = server.requests
    assert bound.body["thinking"] == {"type": "adaptive"}
    assert "thinking" not in plain.body


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"max_tokens": 2048, "thinking": ENABLED},
            ValueError,
            r"thinking budget_tokens \(2048\) must be less than max_tokens \(2048\)",
        ),
        ({"max_tokens": 1024, "thinking": ENABLED}, ValueError, "must be less than max_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 512}}, ValueError, "at least 1024"),
        ({"thinking": {"type": "enabled"}}, TypeError, "needs budget_tokens"),
        ({"thinking": {"type": "adaptive", "budget_tokens": 2048}}, ValueError, "takes no budget_tokens"),
        ({"thinking": {"type": "sometimes"}}, ValueError, "unknown type 'sometimes'"),
        ({"thinking": {"type": "adaptive", "display": "full"}}, ValueError, "display"),
        ({"thinking": True}, TypeError, "thinking must be the API's dict"),
    ],
)
def test_a_bad_thinking_config_is_refused_at_construction(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """A budget not below max_tokens (the API's rule), under 1024, or a malformed config fails at once."""
    with pytest.raises(error, match=message):
        ChatAnthropic(model=MODEL, **options)


async def test_binding_max_tokens_below_the_budget_fails_before_any_request(server: AnthropicServer) -> None:
    """bind(max_tokens=...) at or under the thinking budget is refused when bound; nothing is sent."""
    model = chat(server, thinking=ENABLED)
    with pytest.raises(ValueError, match="must be less than max_tokens"):
        model.bind(max_tokens=1500)
    with pytest.raises(ValueError, match="must be less than max_tokens"):
        chat(server, max_tokens=1500).bind(thinking=ENABLED)
    assert server.requests == []


@pytest.mark.parametrize("config", [ENABLED, {"type": "adaptive"}])
@pytest.mark.parametrize(
    "bind",
    [
        lambda m: m.bind_tools([get_weather], tool_choice="any"),
        lambda m: m.bind_tools([get_weather], tool_choice="get_weather"),
        lambda m: m.bind_tools([get_weather]).bind(tool_choice={"type": "any"}),
        lambda m: m.bind(tool_choice="any"),
    ],
)
async def test_a_forced_tool_choice_with_thinking_is_refused_when_bound(
    server: AnthropicServer, config: dict[str, Any], bind: Any
) -> None:
    """With thinking on, tool_choice any or a named tool fails at bind time, naming both; nothing is sent."""
    with pytest.raises(ValueError, match="forces a tool call") as caught:
        bind(chat(server, thinking=config))
    message = str(caught.value)
    assert f"with thinking {config!r}" in message and "only tool_choice 'auto' or 'none'" in message
    # Set in the other order (the choice first, thinking bound last), the same refusal.
    with pytest.raises(ValueError, match="forces a tool call"):
        bind(chat(server)).bind(thinking=config)
    with pytest.raises(ValueError, match="forces a tool call"):
        chat(server, thinking=config, tool_choice="any")
    assert server.requests == []


async def test_auto_and_none_tool_choice_go_with_thinking(server: AnthropicServer) -> None:
    """tool_choice auto or none (and a forced choice with thinking disabled) is sent as given."""
    with anyio.fail_after(GUARD):
        await chat(server, thinking=ENABLED).bind_tools([get_weather], tool_choice="auto").ainvoke("hi")
        await chat(server, thinking=ENABLED).bind_tools([get_weather], tool_choice="none").ainvoke("hi")
        disabled = chat(server, thinking={"type": "disabled"})
        await disabled.bind_tools([get_weather], tool_choice="any").ainvoke("hi")
    sent = [(request.body["thinking"], request.body["tool_choice"]) for request in server.requests]
    assert sent == [
        (ENABLED, {"type": "auto"}),
        (ENABLED, {"type": "none"}),
        ({"type": "disabled"}, {"type": "any"}),
    ]


def test_function_calling_structured_output_with_thinking_says_to_use_json_schema() -> None:
    """with_structured_output(method='function_calling') with thinking on fails at once, pointing to json_schema."""
    model = ChatAnthropic(model=MODEL, max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 2000})
    schema = {"title": "Person", "type": "object", "properties": {"name": {"type": "string"}}}
    with pytest.raises(
        ValueError, match="method='function_calling' forces a call of the tool 'Person'"
    ) as caught:
        model.with_structured_output(schema, method="function_calling")
    assert "use method='json_schema'" in str(caught.value).lower()
    # The default method (json_schema) works with thinking.
    model.with_structured_output(schema)


# -- the stream -----------------------------------------------------------------------


async def test_thinking_and_signature_deltas_stream_as_blocks_that_add_up(server: AnthropicServer) -> None:
    """Each thinking and signature delta is a chunk; the sum holds the whole signed block, then the text."""
    server.script(
        MessageStream([ThinkingBlock(["Let me", " think."], signature="sig-abc"), TextBlock(["Hel", "lo"])])
    )
    chunks = await stream(chat(server, thinking=ENABLED), "hi")
    assert [chunk.content for chunk in chunks[:-1]] == [
        [thinking("Let me", 0)],
        [thinking(" think.", 0)],
        [signature("sig-abc", 0)],
        "Hel",
        "lo",
    ]
    assert chunks[0].id == "msg_test_0001"
    whole = AIMessageChunk.concat_chunks(chunks)
    assert whole.content == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig-abc", "index": 0},
        {"type": "text", "text": "Hello"},
    ]
    assert whole.text == "Hello"
    # Pairwise addition in any grouping gives the same message.
    left = chunks[0]
    for chunk in chunks[1:]:
        left = left + chunk
    assert left == whole
    assert chunks[0] + (chunks[1] + (chunks[2] + chunks[3])) + chunks[4] == AIMessageChunk.concat_chunks(
        chunks[:5]
    )


async def test_thinking_chunks_carry_content_for_the_commit_point(server: AnthropicServer) -> None:
    """carries_content is true for a thinking delta and a signature delta, false for the usage chunk."""
    server.script(MessageStream([ThinkingBlock(["hm"], signature="s"), TextBlock(["ok"])]))
    model = chat(server, thinking=ENABLED)
    chunks = await stream(model, "hi")
    assert [model.carries_content(chunk) for chunk in chunks] == [True, True, True, False]


async def test_an_error_after_a_thinking_delta_is_not_retried(server: AnthropicServer) -> None:
    """A thinking delta passes the commit point: a later overloaded_error is raised, with one request."""
    server.script(MessageStream([ThinkingBlock(["a", "b"]), TextBlock(["x"])], error_after=1))
    seen: list[Any] = []
    with pytest.raises(ModelStreamError):
        async with cleanup_guard():
            with anyio.fail_after(GUARD):
                async for chunk in (
                    chat(server, thinking=ENABLED).with_retry(wait_exponential_jitter=False).astream("hi")
                ):
                    seen.append(chunk.content)
    assert seen == [[thinking("a", 0)]]
    assert len(server.requests) == 1


async def test_an_error_before_the_first_thinking_delta_is_retried(server: AnthropicServer) -> None:
    """An overloaded_error before any delta is retried, and the retry's thinking streams."""
    server.script_many(
        [
            MessageStream([ThinkingBlock(["a"])], error_after=0),
            MessageStream([ThinkingBlock(["a"], signature="s"), TextBlock(["x"])]),
        ]
    )
    with anyio.fail_after(GUARD):
        message = await chat(server, thinking=ENABLED).with_retry(wait_exponential_jitter=False).ainvoke("hi")
    assert message.content == [
        {"type": "thinking", "thinking": "a", "signature": "s", "index": 0},
        {"type": "text", "text": "x"},
    ]
    assert len(server.requests) == 2


async def test_redacted_thinking_arrives_whole_and_opaque(server: AnthropicServer) -> None:
    """A redacted_thinking block is one chunk with its data unchanged, kept in order in the sum."""
    data = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIw=="
    server.script(
        MessageStream([RedactedThinkingBlock(data), ThinkingBlock(["b"], signature="s"), TextBlock(["t"])])
    )
    chunks = await stream(chat(server, thinking=ENABLED), "hi")
    assert chunks[0].content == [{"type": "redacted_thinking", "data": data, "index": 0}]
    assert AIMessageChunk.concat_chunks(chunks).content == [
        {"type": "redacted_thinking", "data": data, "index": 0},
        {"type": "thinking", "thinking": "b", "signature": "s", "index": 1},
        {"type": "text", "text": "t"},
    ]


async def test_thinking_tokens_are_reported_as_reasoning_output(server: AnthropicServer) -> None:
    """output_tokens_details.thinking_tokens becomes usage_metadata.output_token_details['reasoning']."""
    server.script(
        MessageStream(
            [ThinkingBlock(["a"]), TextBlock(["b"])],
            output_tokens=30,
            delta_usage={"output_tokens_details": {"thinking_tokens": 21}},
        )
    )
    with anyio.fail_after(GUARD):
        message = await chat(server, thinking=ENABLED).ainvoke("hi")
    assert message.usage_metadata == UsageMetadata(12, 30, output_token_details={"reasoning": 21})


# -- the next turn ----------------------------------------------------------------------


async def test_the_summed_reply_goes_back_with_its_signed_thinking(server: AnthropicServer) -> None:
    """ainvoke's message, sent back, is the thinking block with its signature then the text, no index."""
    server.script(
        MessageStream([ThinkingBlock(["Let me", " think."], signature="sig-abc"), TextBlock(["42"])])
    )
    model = chat(server, thinking=ENABLED)
    with anyio.fail_after(GUARD):
        reply = await model.ainvoke("q")
        await model.ainvoke([HumanMessage("q"), reply, HumanMessage("why?")])
    assert server.requests[1].body["messages"] == [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig-abc"},
                {"type": "text", "text": "42"},
            ],
        },
        {"role": "user", "content": "why?"},
    ]


async def test_thinking_and_tool_calls_go_back_in_their_order_with_inputs(server: AnthropicServer) -> None:
    """Interleaved thinking, redacted thinking and tool_use blocks go back in stream order, inputs filled in."""
    server.script(
        MessageStream(
            [
                ThinkingBlock(["first"], signature="s1"),
                ToolUseBlock("get_weather", "toolu_1", ['{"city": ', '"Paris"}']),
                RedactedThinkingBlock("opaque=="),
                ThinkingBlock(["second"], signature="s2"),
                ToolUseBlock("get_weather", "toolu_2", ['{"city": "Oslo"}']),
            ],
            stop_reason="tool_use",
        )
    )
    model = chat(server, thinking=ENABLED).bind_tools([get_weather])
    chunks = await stream(model, "weather?")
    start = next(chunk for chunk in chunks if chunk.tool_call_chunks)
    assert start.tool_call_chunks == [ToolCallChunk(name="get_weather", id="toolu_1", args="", index=1)]
    assert start.content == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}, "index": 1}
    ]
    reply = AIMessageChunk.concat_chunks(chunks).to_message()
    assert reply.tool_calls == [
        ToolCall(name="get_weather", args={"city": "Paris"}, id="toolu_1"),
        ToolCall(name="get_weather", args={"city": "Oslo"}, id="toolu_2"),
    ]
    results = [ToolMessage("sunny", tool_call_id="toolu_1"), ToolMessage("rain", tool_call_id="toolu_2")]
    with anyio.fail_after(GUARD):
        await model.ainvoke([HumanMessage("weather?"), reply, *results])
    assert server.requests[1].body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "first", "signature": "s1"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "redacted_thinking", "data": "opaque=="},
                {"type": "thinking", "thinking": "second", "signature": "s2"},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain"},
            ],
        },
    ]


async def test_an_omitted_thinking_display_goes_back_with_empty_thinking(server: AnthropicServer) -> None:
    """With display 'omitted' only a signature streams; the block goes back with thinking ''."""
    server.script(MessageStream([ThinkingBlock([], signature="only-sig"), TextBlock(["x"])]))
    model = chat(server, thinking={"type": "adaptive", "display": "omitted"})
    with anyio.fail_after(GUARD):
        reply = await model.ainvoke("q")
        await model.ainvoke([HumanMessage("q"), reply, HumanMessage("more")])
    assert server.requests[1].body["messages"][1]["content"][0] == {
        "type": "thinking",
        "signature": "only-sig",
        "thinking": "",
    }


async def test_a_thinking_block_without_a_signature_is_refused_before_any_request(
    server: AnthropicServer,
) -> None:
    """A thinking block cut before its signature cannot go back: a ValueError naming it, nothing sent."""
    cut = AIMessage([{"type": "thinking", "thinking": "half", "index": 0}, {"type": "text", "text": "x"}])
    with pytest.raises(ValueError, match="message 1, block 0 is a thinking block without its signature"):
        with anyio.fail_after(GUARD):
            await chat(server).ainvoke([HumanMessage("q"), cut, HumanMessage("more")])
    assert server.requests == []


async def test_with_thinking_asked_for_a_tool_call_is_a_content_block_from_the_start(
    server: AnthropicServer,
) -> None:
    """With adaptive thinking and no thinking block, text then tool_use stay in order in content and on the wire."""
    server.script(
        MessageStream(
            [TextBlock(["Checking."]), ToolUseBlock("get_weather", "toolu_1", ['{"city": "Rome"}'])]
        )
    )
    model = chat(server, thinking={"type": "adaptive"}).bind_tools([get_weather])
    reply = AIMessageChunk.concat_chunks(await stream(model, "weather?"))
    assert reply.content == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}, "index": 1},
    ]
    with anyio.fail_after(GUARD):
        await model.ainvoke([HumanMessage("weather?"), reply, ToolMessage("sunny", tool_call_id="toolu_1")])
    assert server.requests[1].body["messages"][1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Rome"}},
    ]


async def test_a_str_parser_after_a_thinking_model_passes_only_the_text(server: AnthropicServer) -> None:
    """model | StrOutputParser streams the reply's text; thinking chunks contribute empty strings."""
    server.script(MessageStream([ThinkingBlock(["private"]), TextBlock(["Hel", "lo"])]))
    with anyio.fail_after(GUARD):
        texts = [text async for text in (chat(server, thinking=ENABLED) | StrOutputParser()).astream("hi")]
    assert "".join(texts) == "Hello"
    assert [text for text in texts if text] == ["Hel", "lo"]
