"""ChatAnthropic against the loopback Messages API server, on trio and asyncio.

Every async test runs on both backends (see conftest). Tests that end a stream early or
on a failure run inside ``cleanup_guard``, which fails on any ResourceWarning (such as
trio's warning about an abandoned async generator) and on any task left running.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import anyio
import anyio.to_thread
import httpx2
import pytest
from anthropic_server import AnthropicServer, ErrorReply, TextStream, ToolUseStream

from engine.testing import check_event_order, cleanup_guard
from nodes import (
    AIMessage,
    AIMessageChunk,
    ChatAnthropic,
    ChatPromptTemplate,
    HumanMessage,
    JsonOutputParser,
    MissingCredentialsError,
    ModelStreamError,
    StrOutputParser,
    SystemMessage,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
    UsageMetadata,
    tool,
)
from nodes._anthropic import to_anthropic_messages

MODEL = "claude-test-model"  # not in the SDK's DEPRECATED_MODELS, whose warning would be an error here
HANG_GUARD = 5.0  # seconds; only bounds a wait that should end at once, never paces a test


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    """A loopback Messages API server for one test."""
    with AnthropicServer() as running:
        yield running


def chat(server: AnthropicServer, **options: Any) -> ChatAnthropic:
    options.setdefault("max_retries", 0)
    return ChatAnthropic(model=MODEL, api_key="test-key", base_url=server.base_url, **options)


async def wait_in_thread(event: threading.Event) -> bool:
    return await anyio.to_thread.run_sync(event.wait, HANG_GUARD)


async def no_connections_left(server: AnthropicServer) -> bool:
    return await anyio.to_thread.run_sync(server.wait_until_no_connections, HANG_GUARD)


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"sunny in {city}"


# -- input conversion -----------------------------------------------------------------


def test_system_messages_become_the_system_field_joined() -> None:
    """System messages leave the message list and join, in order, into the system field."""
    system, messages = to_anthropic_messages(
        [SystemMessage("Be brief."), HumanMessage("hi"), SystemMessage("Be kind.")]
    )
    assert system == "Be brief.\n\nBe kind."
    assert messages == [{"role": "user", "content": "hi"}]
    assert to_anthropic_messages([HumanMessage("hi")])[0] is None
    cached = {"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}
    blocks, _ = to_anthropic_messages(
        [SystemMessage([cached]), SystemMessage("Be brief."), HumanMessage("hi")]
    )
    assert blocks == [cached, {"type": "text", "text": "Be brief."}]


def test_each_message_type_maps_to_its_role_and_blocks() -> None:
    """Human is user, AI is assistant with tool_use blocks, a tool result is a user tool_result block."""
    call = ToolCall(name="get_weather", args={"city": "Paris"}, id="toolu_1")
    _, messages = to_anthropic_messages(
        [
            HumanMessage("weather in Paris?"),
            AIMessage("Checking.", tool_calls=[call]),
            ToolMessage("sunny", tool_call_id="toolu_1"),
            AIMessage("It is sunny."),
            ToolMessage("no such city", tool_call_id="toolu_2", status="error"),
        ]
    )
    assert messages == [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        {"role": "assistant", "content": "It is sunny."},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such city", "is_error": True}
            ],
        },
    ]


def test_consecutive_messages_of_one_role_merge_into_one() -> None:
    """Same-role neighbours merge: blocks concatenate and string content becomes a text block."""
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    _, messages = to_anthropic_messages(
        [
            HumanMessage("hi"),
            HumanMessage([image]),
            AIMessage("a"),
            AIMessage("b"),
            ToolMessage("one", tool_call_id="t1"),
            ToolMessage("two", tool_call_id="t2"),
            HumanMessage("thanks"),
        ]
    )
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, image]},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "one"},
                {"type": "tool_result", "tool_use_id": "t2", "content": "two"},
                {"type": "text", "text": "thanks"},
            ],
        },
    ]
    assert messages[0]["content"][1] is image  # blocks pass through as they are


def test_block_content_passes_through_without_repeating_tool_use_blocks() -> None:
    """List content is kept; an AI message whose blocks hold its tool_use gets no second copy."""
    use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}
    reply = AIMessage(
        [{"type": "text", "text": "Let me look."}, use],
        tool_calls=[ToolCall(name="get_weather", args={"city": "Oslo"}, id="toolu_1")],
    )
    only_calls = AIMessage("", tool_calls=[ToolCall(name="get_weather", args={}, id="toolu_2")])
    _, messages = to_anthropic_messages([HumanMessage("q"), reply, HumanMessage("q2"), only_calls])
    assert messages[1]["content"] == [{"type": "text", "text": "Let me look."}, use]
    assert messages[3]["content"] == [
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}
    ]


def test_a_tool_call_without_an_id_is_refused() -> None:
    """Anthropic pairs tool_use and tool_result by id, so a call without one is a ValueError."""
    with pytest.raises(ValueError, match="no id"):
        to_anthropic_messages([AIMessage("", tool_calls=[ToolCall(name="f", args={})])])


def test_construction_checks_arguments_and_keeps_the_key_out_of_repr() -> None:
    """Bad arguments fail at construction; the repr never shows the API key."""
    model = ChatAnthropic(model=MODEL, api_key="sk-secret", temperature=0.2, stop=["END"])
    assert "sk-secret" not in repr(model)
    assert (
        repr(model)
        == "ChatAnthropic(model='claude-test-model', max_tokens=1024, temperature=0.2, stop=['END'])"
    )
    assert model.get_name() == "ChatAnthropic"
    assert ChatAnthropic(model=MODEL, name="claude").get_name() == "claude"
    for bad in ({"max_tokens": 0}, {"temperature": 1.5}, {"max_retries": -1}, {"timeout": 0}, {"model": ""}):
        with pytest.raises(ValueError):
            ChatAnthropic(**{"model": MODEL, **bad})
    with pytest.raises(TypeError):
        ChatAnthropic(model=MODEL, stop="END")  # type: ignore[arg-type]


def test_model_stream_error_survives_pickling() -> None:
    """ModelStreamError keeps its message and fields through a pickle round trip."""
    error = ModelStreamError("broke", chunks_delivered=3, error_type="overloaded_error", request_id="req_1")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.chunks_delivered, copy.error_type, copy.request_id) == (
        "broke",
        3,
        "overloaded_error",
        "req_1",
    )


def test_bind_tools_returns_a_copy_with_the_schemas() -> None:
    """bind_tools leaves the model as it was and gives a copy holding Tool schemas and dicts as given."""
    raw = {"name": "lookup", "description": "Look a word up.", "input_schema": {"type": "object"}}
    model = ChatAnthropic(model=MODEL)
    bound = model.bind_tools([get_weather, raw])
    assert model.tools == ()
    assert bound.tools == (get_weather.to_anthropic(), raw)
    assert isinstance(bound, ChatAnthropic) and bound.model == MODEL
    with pytest.raises(TypeError):
        model.bind_tools([42])  # type: ignore[list-item]


# -- streaming --------------------------------------------------------------------------


async def test_tokens_arrive_one_by_one_before_the_server_sends_the_next(server: AnthropicServer) -> None:
    """Each token reaches the consumer while the server is still held before sending the next one."""
    gates = {point: threading.Event() for point in (1, 2, 3)}
    server.script(TextStream(["t0", "t1", "t2", "t3"], hold_before=gates))
    texts: list[str] = []
    async with chat(server).astream("hi") as chunks:
        async for chunk in chunks:
            if not chunk.content:
                continue
            texts.append(chunk.content)
            # Token n+1 cannot have been written yet: the server waits at gate n+1.
            assert server.requests[0].deltas_sent <= len(texts)
            if len(texts) in gates:
                gates[len(texts)].set()
    assert texts == ["t0", "t1", "t2", "t3"]


async def test_ainvoke_returns_the_whole_message_with_id_usage_and_stop_reason(
    server: AnthropicServer,
) -> None:
    """The message id is on every chunk; usage and stop_reason come on a final empty chunk marked last."""
    server.script_many([TextStream(["Hel", "lo"], input_tokens=7)] * 2)
    model = chat(server)
    chunks = [chunk async for chunk in model.astream("hi")]
    assert chunks[0] == AIMessageChunk(content="Hel", id="msg_test_0001")
    assert chunks[1] == AIMessageChunk(content="lo", id="msg_test_0001")
    assert {chunk.id for chunk in chunks} == {"msg_test_0001"}
    assert [chunk.chunk_position for chunk in chunks] == [None] * (len(chunks) - 1) + ["last"]
    assert chunks[-1].content == "" and chunks[-1].usage_metadata == UsageMetadata(7, 2)
    assert chunks[-1].response_metadata == {"model_name": MODEL, "stop_reason": "end_turn"}

    message = await model.ainvoke("hi")
    assert isinstance(message, AIMessage)
    assert message.content == "Hello"
    assert message.id == "msg_test_0002"
    assert message.usage_metadata == UsageMetadata(input_tokens=7, output_tokens=2)
    assert message.response_metadata["stop_reason"] == "end_turn"
    # Each call's client is closed when the call ends, which closes its pooled connection.
    assert await no_connections_left(server)


async def test_request_body_carries_the_converted_conversation_and_options(server: AnthropicServer) -> None:
    """The body has model, max_tokens, system, merged messages, tools, stream and the options that are set."""
    raw_tool = {"name": "lookup", "description": "Look a word up.", "input_schema": {"type": "object"}}
    model = chat(server, max_tokens=256, temperature=0.5, stop=["\n\nHuman:"]).bind_tools(
        [get_weather, raw_tool]
    )
    await model.ainvoke(
        [
            SystemMessage("Be brief."),
            HumanMessage("hi"),
            HumanMessage("weather in Paris?"),
            AIMessage("", tool_calls=[ToolCall(name="get_weather", args={"city": "Paris"}, id="toolu_9")]),
            ToolMessage("sunny", tool_call_id="toolu_9"),
        ]
    )
    await chat(server).ainvoke("plain")

    full, plain = server.requests
    assert full.body == {
        "model": MODEL,
        "max_tokens": 256,
        "system": "Be brief.",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "weather in Paris?"}],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Paris"}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "sunny"}],
            },
        ],
        "temperature": 0.5,
        "stop_sequences": ["\n\nHuman:"],
        "tools": [get_weather.to_anthropic(), raw_tool],
        "stream": True,
    }
    assert plain.body == {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "plain"}],
        "stream": True,
    }
    assert full.headers["authorization"] == "Bearer test-key"


async def test_tool_use_streams_as_tool_call_chunks_that_sum_to_parsed_calls(server: AnthropicServer) -> None:
    """A tool_use block streams its name and id, its JSON fragments, then an end marker; the sum has parsed tool_calls."""
    fragments = ['{"city": "Par', 'is", "da', 'ys": 3}']
    server.script_many(
        [ToolUseStream("get_weather", "toolu_01", fragments, text_before=["Let me check."])] * 2
    )
    model = chat(server).bind_tools([get_weather])
    chunks = [chunk async for chunk in model.astream("weather?")]
    assert chunks[0] == AIMessageChunk(content="Let me check.", id="msg_test_0001")
    assert chunks[1].tool_call_chunks == [ToolCallChunk(name="get_weather", id="toolu_01", args="", index=1)]
    assert [c.tool_call_chunks for c in chunks[2:5]] == [[ToolCallChunk(args=f, index=1)] for f in fragments]
    # content_block_stop: a fragment with only the index, then the closing chunk.
    assert chunks[5] == AIMessageChunk(
        content="", tool_call_chunks=[ToolCallChunk(index=1)], id="msg_test_0001"
    )
    assert len(chunks) == 7 and chunks[6].tool_call_chunks == [] and chunks[6].chunk_position == "last"

    whole = AIMessageChunk.concat_chunks(chunks)
    expected = [ToolCall(name="get_weather", args={"city": "Paris", "days": 3}, id="toolu_01")]
    assert whole.content == "Let me check." and whole.id == "msg_test_0001" and whole.chunk_position == "last"
    assert whole.tool_calls == expected
    assert whole.response_metadata["stop_reason"] == "tool_use"
    message = await model.ainvoke("weather?")
    assert message.tool_calls == expected and message.invalid_tool_calls == []


# -- failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 529])
async def test_retryable_status_is_retried_then_streams(server: AnthropicServer, status: int) -> None:
    """A 429 or 529 before the stream is retried by the SDK, and the retry's reply streams."""
    error_type = "rate_limit_error" if status == 429 else "overloaded_error"
    server.script(ErrorReply(status, error_type, retry_after=0.001))
    message = await chat(server, max_retries=2).ainvoke("hi")
    assert message.content == "Hello, world!"
    assert [r.outcome for r in server.requests] == ["error_status", "complete"]


@pytest.mark.parametrize(
    ("status", "error_type", "exception"),
    [
        (429, "rate_limit_error", anthropic.RateLimitError),
        (529, "overloaded_error", anthropic.OverloadedError),
    ],
)
async def test_status_error_without_retries_raises_the_sdk_exception(
    server: AnthropicServer, status: int, error_type: str, exception: type[anthropic.APIStatusError]
) -> None:
    """With max_retries=0 a 429/529 raises the SDK's own RateLimitError/OverloadedError."""
    server.script(ErrorReply(status, error_type, "busy", retry_after=0.001))
    with pytest.raises(exception) as caught:
        await chat(server, max_retries=0).ainvoke("hi")
    assert type(caught.value) is exception
    assert caught.value.status_code == status
    assert len(server.requests) == 1


async def test_error_event_mid_stream_raises_after_the_earlier_chunks(server: AnthropicServer) -> None:
    """An event: error after two tokens delivers both, then raises ModelStreamError; nothing is retried."""
    server.script(TextStream(["a", "b", "c"], error_after=2, error_type="overloaded_error"))
    texts: list[str] = []
    async with cleanup_guard():
        with pytest.raises(ModelStreamError) as caught:
            async for chunk in chat(server, max_retries=2).astream("hi"):
                texts.append(chunk.text)
    assert texts == ["a", "b"]
    error = caught.value
    assert (error.chunks_delivered, error.error_type) == (2, "overloaded_error")
    assert "overloaded_error" in str(error) and "after 2 chunks" in str(error)
    assert type(error.__cause__) is anthropic.APIStatusError
    assert error.__cause__.status_code == 200 and error.__cause__.type == "overloaded_error"
    assert error.request_id == server.requests[0].request_id
    assert len(server.requests) == 1


async def test_error_event_publishes_the_model_error_then_the_chain_error(server: AnthropicServer) -> None:
    """astream_events shows both tokens, then on_chat_model_error, then the sequence's on_chain_error."""
    server.script(TextStream(["a", "b", "c"], error_after=2))
    chain = ChatPromptTemplate.from_template("say {word}") | chat(server)
    events: list[dict[str, Any]] = []
    async with cleanup_guard():
        with pytest.raises(ModelStreamError) as caught:
            async for event in chain.astream_events({"word": "abc"}):
                events.append(event)
    check_event_order(events)
    streamed = [e["data"]["chunk"].content for e in events if e["event"] == "on_chat_model_stream"]
    assert streamed == ["a", "b"]
    assert [(e["event"], e["name"]) for e in events[-2:]] == [
        ("on_chat_model_error", "ChatAnthropic"),
        ("on_chain_error", "RunnableSequence"),
    ]
    assert events[-2]["data"]["error"] is caught.value


@pytest.mark.parametrize(
    ("mode", "cause"), [("close", httpx2.RemoteProtocolError), ("reset", httpx2.ReadError)]
)
async def test_dropped_connection_raises_model_stream_error(
    server: AnthropicServer, mode: Any, cause: type[Exception]
) -> None:
    """A connection cut mid-body (FIN or RST) after two tokens raises ModelStreamError from the transport error."""
    # Held until the client has both tokens, so that a RST cannot discard unread data.
    cut = threading.Event()
    server.script(TextStream(["a", "b", "c"], drop_after=2, drop_mode=mode, hold_before={2: cut}))
    texts: list[str] = []
    async with cleanup_guard():
        with pytest.raises(ModelStreamError) as caught:
            async for chunk in chat(server, max_retries=2).astream("hi"):
                texts.append(chunk.text)
                if len(texts) == 2:
                    cut.set()
    assert texts == ["a", "b"]
    assert caught.value.chunks_delivered == 2
    assert "broke" in str(caught.value) and "after 2 chunks" in str(caught.value)
    assert isinstance(caught.value.__cause__, cause)
    assert len(server.requests) == 1


async def test_stream_without_message_stop_raises_model_stream_error(server: AnthropicServer) -> None:
    """A body that ends after message_delta with no message_stop delivers its tokens, then raises."""
    server.script(TextStream(["a", "b"], omit_message_stop=True))
    texts: list[str] = []
    async with cleanup_guard():
        with pytest.raises(ModelStreamError, match="without message_stop") as caught:
            async for chunk in chat(server).astream("hi"):
                texts.append(chunk.text)
    assert texts == ["a", "b"]
    assert caught.value.chunks_delivered == 2
    assert caught.value.__cause__ is None


async def test_missing_api_key_raises_at_call_time_naming_the_variable(
    server: AnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without api_key or ANTHROPIC_API_KEY, construction succeeds and the call raises MissingCredentialsError."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    model = ChatAnthropic(model=MODEL, base_url=server.base_url)
    with pytest.raises(MissingCredentialsError, match="ANTHROPIC_API_KEY"):
        await model.ainvoke("hi")
    assert server.requests == []


async def test_key_and_base_url_come_from_the_environment(
    server: AnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL, read at call time, stand in for the arguments."""
    model = ChatAnthropic(model=MODEL, max_retries=0)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    message = await model.ainvoke("hi")
    assert message.content == "Hello, world!"
    assert server.requests[0].headers["authorization"] == "Bearer env-key"


# -- leaving early ----------------------------------------------------------------------


async def test_leaving_the_async_with_block_closes_the_connection(server: AnthropicServer) -> None:
    """Breaking out of `async with chain.astream()` after two tokens closes the HTTP stream at once."""
    never = threading.Event()
    server.script(TextStream(["a", "b", "c", "d"], hold_before={2: never}))
    texts: list[str] = []
    async with cleanup_guard():
        async with (chat(server) | StrOutputParser()).astream("hi") as chunks:
            async for text in chunks:
                texts.append(text)
                if len(texts) == 2:
                    break
        record = server.requests[0]
        assert await wait_in_thread(record.client_gone)
    assert texts == ["a", "b"]
    assert (record.outcome, record.deltas_sent) == ("client_gone", 2)
    assert await no_connections_left(server)


async def test_breaking_a_bare_async_for_closes_the_connection(server: AnthropicServer) -> None:
    """Breaking out of a bare `async for` after two tokens closes the HTTP stream once the run unwinds."""
    never = threading.Event()
    server.script(TextStream(["a", "b", "c", "d"], hold_before={2: never}))
    texts: list[str] = []
    async with cleanup_guard():
        async for text in (chat(server) | StrOutputParser()).astream("hi"):
            texts.append(text)
            if len(texts) == 2:
                break
        await anyio.wait_all_tasks_blocked()
        record = server.requests[0]
        assert await wait_in_thread(record.client_gone)
    assert texts == ["a", "b"]
    assert record.outcome == "client_gone"
    assert await no_connections_left(server)


async def test_cancelling_the_run_while_it_waits_for_a_token_closes_the_connection(
    server: AnthropicServer,
) -> None:
    """Cancelling the consumer's scope while the model waits on the network closes the HTTP stream."""
    never = threading.Event()
    server.script(TextStream(["a", "b", "c"], hold_before={2: never}))
    two_tokens = anyio.Event()
    texts: list[str] = []

    async def consume() -> None:
        async with chat(server).astream("hi") as chunks:
            async for chunk in chunks:
                texts.append(chunk.text)
                if len(texts) == 2:
                    two_tokens.set()

    async with cleanup_guard():
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            await two_tokens.wait()
            group.cancel_scope.cancel()
        assert await wait_in_thread(server.requests[0].client_gone)
    assert texts == ["a", "b"]
    assert await no_connections_left(server)


async def test_stopping_while_a_chunk_is_downstream_closes_the_stream(server: AnthropicServer) -> None:
    """A run stopped while the model waits to hand a chunk downstream closes the stream without a warning."""
    server.script(TextStream([f" t{i}" for i in range(40)]))
    # Capacity 1: the model soon blocks handing over a chunk, its stream suspended at a yield.
    async with cleanup_guard(), chat(server).astream("hi", {"capacity": 1}) as chunks:
        async for _ in chunks:
            break
    assert await no_connections_left(server)


# -- in pipelines -----------------------------------------------------------------------


async def test_prompt_model_and_str_parser_stream_end_to_end(server: AnthropicServer) -> None:
    """The guide's prompt | model | StrOutputParser streams the model's tokens as text."""
    tokens = ["Why", " did", " the", " parrot", " talk", "?"]
    server.script_many([TextStream(tokens)] * 2)
    chain = (
        ChatPromptTemplate.from_template("tell me a joke about {topic}") | chat(server) | StrOutputParser()
    )
    texts = [text async for text in chain.astream({"topic": "parrots"})]
    assert [text for text in texts if text] == tokens
    assert await chain.ainvoke({"topic": "parrots"}) == "Why did the parrot talk?"
    assert server.requests[0].body["messages"] == [
        {"role": "user", "content": "tell me a joke about parrots"}
    ]


async def test_prompt_model_and_json_parser_stream_end_to_end(server: AnthropicServer) -> None:
    """prompt | model | JsonOutputParser streams growing JSON values as the model's tokens arrive."""
    tokens = ['{"setup', '": "Why', " did", '", "punch', 'line": "', "Be", "cause", '"}']
    server.script_many([TextStream(tokens)] * 2)
    prompt = ChatPromptTemplate.from_template("tell me a joke about {topic} as JSON")
    chain = prompt | chat(server) | JsonOutputParser()
    values = [value async for value in chain.astream({"topic": "parrots"})]
    final = {"setup": "Why did", "punchline": "Because"}
    assert {"setup": "Why"} in values
    assert values[-1] == final and len(values) > 3
    assert await chain.ainvoke({"topic": "parrots"}) == final
