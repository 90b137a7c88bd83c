"""The loopback Anthropic server against the real ``anthropic`` SDK, on trio and asyncio.

These tests double as the record of how this SDK version behaves: which events
arrive, which exceptions surface, how retries and closing work. See
ANTHROPIC-SDK-NOTES.md for the same facts in prose.
"""

from __future__ import annotations

import gc
import socket
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import anyio
import anyio.to_thread
import httpx2
import pytest
from anthropic.types import MessageParam
from anthropic_server import (
    DEFAULT_TOKENS,
    AnthropicServer,
    ErrorReply,
    HangUp,
    MessageStream,
    RecordedRequest,
    RedactedThinkingBlock,
    TextBlock,
    TextStream,
    ThinkingBlock,
    ToolUseBlock,
    ToolUseStream,
)

MODEL = "claude-test-model"  # not in the SDK's DEPRECATED_MODELS, whose warning would be an error here
USER: list[MessageParam] = [{"role": "user", "content": "Say hello"}]
HANG_GUARD = 5.0  # seconds; only bounds a wait that should end at once, never paces a test

# On trio, a stream that ends other than by reading it to the end (an error event, a
# dropped connection, an early close) leaves the SDK's and httpx2's nested async
# generators unexhausted; trio's async-generator finalizer closes them but warns with
# this ResourceWarning, which filterwarnings=error would turn into a failure. asyncio
# finalizes them silently. Applied only to the tests that end streams early.
abandoned_asyncgens_ok = pytest.mark.filterwarnings(
    "ignore:Async generator .* was garbage collected before it had been exhausted:ResourceWarning"
)


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    """An AnthropicServer for one test."""
    with AnthropicServer() as running:
        yield running


@asynccontextmanager
async def sdk_client(
    server: AnthropicServer, max_retries: int = 0
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        api_key="test-key", base_url=server.base_url, max_retries=max_retries
    ) as client:
        yield client


async def wait_in_thread(event: threading.Event) -> bool:
    return await anyio.to_thread.run_sync(event.wait, HANG_GUARD)


def text_of(event: Any) -> str | None:
    if event.type == "content_block_delta" and event.delta.type == "text_delta":
        return str(event.delta.text)
    return None


async def collect_texts(stream: Any, received: list[str], after_two: threading.Event | None = None) -> None:
    """Append each text delta of a raw stream to received; set after_two once two have come."""
    async for event in stream:
        if (text := text_of(event)) is not None:
            received.append(text)
            if after_two is not None and len(received) == 2:
                after_two.set()


async def test_text_stream_yields_each_token_and_records_the_request(server: AnthropicServer) -> None:
    """A raw stream yields one text_delta per token and the server records the request body."""
    server.script(TextStream(["Hel", "lo", " there"], input_tokens=7))
    async with sdk_client(server) as client:
        stream = await client.messages.create(
            model=MODEL, max_tokens=64, system="Be brief.", messages=USER, stream=True
        )
        events = [event async for event in stream]

    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the server's ping is swallowed by the SDK
    assert [text_of(e) for e in events if text_of(e) is not None] == ["Hel", "lo", " there"]
    start, block_start, delta_event = events[0], events[1], events[-2]
    assert start.message.model == MODEL
    assert start.message.usage.input_tokens == 7
    assert block_start.content_block.type == "text"
    assert delta_event.delta.stop_reason == "end_turn"
    assert delta_event.usage.output_tokens == 3

    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.body == {
        "model": MODEL,
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": USER,
        "stream": True,
    }
    # This SDK version sends the API key as a bearer token, not as x-api-key.
    assert request.headers["authorization"] == "Bearer test-key"
    assert "x-api-key" not in request.headers
    assert "anthropic-version" in request.headers
    assert request.outcome == "complete"
    assert not request.client_closed_early


async def test_the_sdk_accumulates_a_message_stream_of_every_block_kind(server: AnthropicServer) -> None:
    """A MessageStream's events are what the SDK's own types parse: thinking, redacted, text, tool use, usage."""
    server.script(
        MessageStream(
            [
                ThinkingBlock(["deep", " thought"], signature="sig"),
                RedactedThinkingBlock("opaque=="),
                TextBlock(["Hi"]),
                ToolUseBlock("lookup", "toolu_1", ['{"q": ', '"x"}']),
            ],
            stop_reason="refusal",
            stop_details={"type": "refusal", "category": "cyber", "explanation": None},
            usage={"cache_read_input_tokens": 7, "cache_creation_input_tokens": 3},
            delta_usage={"output_tokens_details": {"thinking_tokens": 4}},
        )
    )
    async with (
        sdk_client(server) as client,
        client.messages.stream(model=MODEL, max_tokens=16, messages=USER) as stream,
    ):
        final = await stream.get_final_message()
    assert [block.model_dump(exclude_none=True) for block in final.content] == [
        {"type": "thinking", "thinking": "deep thought", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque=="},
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}},
    ]
    assert final.stop_reason == "refusal"
    assert final.stop_details is not None and final.stop_details.category == "cyber"
    assert (final.usage.cache_read_input_tokens, final.usage.cache_creation_input_tokens) == (7, 3)
    assert final.usage.output_tokens_details is not None
    assert final.usage.output_tokens_details.thinking_tokens == 4


async def test_stream_helper_accumulates_the_final_message(server: AnthropicServer) -> None:
    """messages.stream() gives text_stream and a final Message built from the same events."""
    server.script(TextStream(["a", "b", "c"]))
    async with (
        sdk_client(server) as client,
        client.messages.stream(model=MODEL, max_tokens=16, messages=USER) as stream,
    ):
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()

    assert texts == ["a", "b", "c"]
    assert [block.type for block in final.content] == ["text"]
    assert final.content[0].text == "abc"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    assert server.requests[0].body["stream"] is True


async def test_tokens_reach_the_client_before_later_tokens_are_sent(server: AnthropicServer) -> None:
    """The client holds token 0 while the server is still held before sending token 1, and so on."""
    before_1, before_2 = threading.Event(), threading.Event()
    server.script(TextStream(["t0", "t1", "t2"], hold_before={1: before_1, 2: before_2}))
    async with sdk_client(server) as client:
        stream = await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
        record = server.requests[0]
        received: list[str] = []
        async for event in stream:
            text = text_of(event)
            if text is None:
                continue
            received.append(text)
            if text == "t0":
                # t1 cannot have been written yet: the server is held before it.
                assert record.deltas_sent <= 1
                before_1.set()
            elif text == "t1":
                assert record.deltas_sent <= 2
                before_2.set()
    assert received == ["t0", "t1", "t2"]
    assert record.deltas_sent == 3


async def test_tool_use_stream_yields_input_json_fragments(server: AnthropicServer) -> None:
    """A tool call streams as a tool_use block of input_json_delta fragments, stop_reason tool_use."""
    fragments = ['{"city": "Par', 'is", "da', 'ys": 3}']
    server.script(ToolUseStream("get_weather", "toolu_01", fragments, text_before=["Let me check."]))
    async with sdk_client(server) as client:
        stream = await client.messages.create(model=MODEL, max_tokens=64, messages=USER, stream=True)
        events = [event async for event in stream]

    starts = [e.content_block for e in events if e.type == "content_block_start"]
    assert [(b.type, getattr(b, "name", None), getattr(b, "id", None)) for b in starts] == [
        ("text", None, None),
        ("tool_use", "get_weather", "toolu_01"),
    ]
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert [d.type for d in deltas] == ["text_delta", *["input_json_delta"] * 3]
    assert [d.partial_json for d in deltas[1:]] == fragments
    assert [e.index for e in events if e.type == "content_block_stop"] == [0, 1]
    assert events[-2].delta.stop_reason == "tool_use"


async def test_stream_helper_parses_the_tool_input(server: AnthropicServer) -> None:
    """messages.stream() assembles the JSON fragments into the tool_use block's input."""
    server.script(ToolUseStream("lookup", "toolu_02", ['{"q": ', '"rillet"', "}"]))
    async with (
        sdk_client(server) as client,
        client.messages.stream(model=MODEL, max_tokens=16, messages=USER) as stream,
    ):
        final = await stream.get_final_message()
    [block] = final.content
    assert block.type == "tool_use"
    assert (block.name, block.id, block.input) == ("lookup", "toolu_02", {"q": "rillet"})
    assert final.stop_reason == "tool_use"


async def test_rate_limit_is_retried_then_streams(server: AnthropicServer) -> None:
    """A 429 with a tiny retry-after is retried at once and the retry streams the default reply."""
    server.script(ErrorReply(429, "rate_limit_error", "slow down", retry_after=0.001))
    async with sdk_client(server, max_retries=2) as client:
        stream = await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
        texts = [t async for t in (text_of(e) async for e in stream) if t is not None]

    assert texts == list(DEFAULT_TOKENS)
    first, second = server.requests
    assert (first.outcome, second.outcome) == ("error_status", "complete")
    assert first.headers["x-stainless-retry-count"] == "0"
    assert second.headers["x-stainless-retry-count"] == "1"
    assert first.body == second.body


async def test_rate_limit_without_retries_raises_rate_limit_error(server: AnthropicServer) -> None:
    """With max_retries=0 a 429 raises RateLimitError carrying the status and error type."""
    server.script(ErrorReply(429, "rate_limit_error", "slow down", retry_after=30))
    async with sdk_client(server, max_retries=0) as client:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
    assert caught.value.status_code == 429
    assert caught.value.type == "rate_limit_error"
    assert caught.value.api_message == "slow down"
    assert caught.value.request_id == server.requests[0].request_id
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "error_type", "exception"),
    [
        (529, "overloaded_error", anthropic.OverloadedError),
        (500, "api_error", anthropic.InternalServerError),
        (401, "authentication_error", anthropic.AuthenticationError),
    ],
)
async def test_error_status_maps_to_its_sdk_exception(
    server: AnthropicServer, status: int, error_type: str, exception: type[anthropic.APIStatusError]
) -> None:
    """Each HTTP error status raises its own APIStatusError subclass with the body's error type."""
    server.script(ErrorReply(status, error_type, "nope"))
    async with sdk_client(server, max_retries=0) as client:
        with pytest.raises(exception) as caught:
            await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
    assert type(caught.value) is exception
    assert caught.value.status_code == status
    assert caught.value.type == error_type


async def test_overloaded_is_retried_until_retries_run_out(server: AnthropicServer) -> None:
    """529 is retried max_retries times, then the last OverloadedError is raised."""
    server.script_many([ErrorReply(529, "overloaded_error", "busy", retry_after=0.001)] * 3)
    async with sdk_client(server, max_retries=2) as client:
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1", "2"]


async def test_should_retry_false_header_stops_retries(server: AnthropicServer) -> None:
    """x-should-retry: false makes the SDK raise a retryable status at once."""
    server.script(ErrorReply(529, "overloaded_error", "busy", should_retry=False))
    async with sdk_client(server, max_retries=2) as client:
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
    assert len(server.requests) == 1


@abandoned_asyncgens_ok
async def test_error_event_mid_stream_raises_api_status_error(server: AnthropicServer) -> None:
    """An `event: error` after two tokens raises a plain APIStatusError (status 200) and is not retried."""
    server.script(TextStream(["a", "b", "c"], error_after=2, error_type="overloaded_error"))
    received: list[str] = []
    async with sdk_client(server, max_retries=2) as client:
        stream = await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
        with pytest.raises(anthropic.APIStatusError) as caught:
            await collect_texts(stream, received)
    assert received == ["a", "b"]
    assert type(caught.value) is anthropic.APIStatusError  # not OverloadedError: the HTTP status was 200
    assert caught.value.status_code == 200
    assert caught.value.type == "overloaded_error"
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert len(server.requests) == 1
    assert server.requests[0].outcome == "error_event"


@abandoned_asyncgens_ok
@pytest.mark.parametrize(
    ("mode", "exception"),
    [("close", httpx2.RemoteProtocolError), ("reset", httpx2.ReadError)],
)
async def test_dropped_connection_mid_stream_raises_httpx2_error(
    server: AnthropicServer, mode: Any, exception: type[Exception]
) -> None:
    """A connection cut mid-body raises the raw httpx2 transport error, not an anthropic error."""
    # Held until the client has both tokens, so a RST cannot discard unread data.
    cut = threading.Event()
    server.script(TextStream(["a", "b", "c"], drop_after=2, drop_mode=mode, hold_before={2: cut}))
    received: list[str] = []
    async with sdk_client(server, max_retries=2) as client:
        stream = await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
        with pytest.raises(exception) as caught:
            await collect_texts(stream, received, after_two=cut)
    assert received == ["a", "b"]
    assert not isinstance(caught.value, anthropic.AnthropicError)
    assert len(server.requests) == 1
    assert server.requests[0].outcome == "dropped"


async def test_hang_up_before_the_response_raises_api_connection_error(server: AnthropicServer) -> None:
    """A connection closed before any response bytes raises APIConnectionError (retryable)."""
    server.script(HangUp())
    async with sdk_client(server, max_retries=0) as client:
        with pytest.raises(anthropic.APIConnectionError) as caught:
            await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    assert server.requests[0].outcome == "dropped"


async def test_missing_message_stop_ends_the_stream_quietly(server: AnthropicServer) -> None:
    """A body that ends after message_delta without message_stop raises nothing, raw or via the helper."""
    server.script_many([TextStream(["a", "b"], omit_message_stop=True)] * 2)
    async with sdk_client(server) as client:
        stream = await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
        types = [event.type async for event in stream]
        async with client.messages.stream(model=MODEL, max_tokens=16, messages=USER) as helper:
            final = await helper.get_final_message()
    assert types[-1] == "message_delta"
    assert "message_stop" not in types
    assert final.content[0].text == "ab"
    assert final.stop_reason == "end_turn"


async def drain(stream: Any) -> None:
    """Pull from stream until it ends or raises."""
    while True:
        try:
            await stream.__anext__()
        except StopAsyncIteration:
            return


async def close_raw_after_two_tokens(client: anthropic.AsyncAnthropic) -> list[str]:
    stream = await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
    received: list[str] = []
    while len(received) < 2:
        if (text := text_of(await stream.__anext__())) is not None:
            received.append(text)
    await stream.close()
    return received


async def leave_helper_after_two_tokens(client: anthropic.AsyncAnthropic) -> list[str]:
    received: list[str] = []
    async with client.messages.stream(model=MODEL, max_tokens=16, messages=USER) as stream:
        async for text in stream.text_stream:
            received.append(text)
            if len(received) == 2:
                break
    return received


@abandoned_asyncgens_ok
@pytest.mark.parametrize("consume", [close_raw_after_two_tokens, leave_helper_after_two_tokens])
async def test_closing_the_stream_early_is_seen_by_the_server(server: AnthropicServer, consume: Any) -> None:
    """Closing a stream after two tokens closes the connection, which the held server notices."""
    never = threading.Event()
    server.script(TextStream(["a", "b", "c", "d"], hold_before={2: never}))
    async with sdk_client(server) as client:
        assert await consume(client) == ["a", "b"]
        record: RecordedRequest = server.requests[0]
        assert await wait_in_thread(record.client_gone)
    assert record.client_closed_early
    assert record.outcome == "client_gone"
    assert record.deltas_sent == 2
    assert server.disconnects == [record]


@pytest.mark.parametrize("helper", [False, True])
async def test_close_then_drain_ends_early_without_abandoned_generators(
    server: AnthropicServer, helper: bool
) -> None:
    """Closing the HTTP response, then draining the same iterator until it raises, leaves trio nothing to warn about."""
    # No abandoned_asyncgens_ok mark: this is the pattern that avoids the warning on trio.
    never = threading.Event()
    server.script(TextStream(["a", "b", "c", "d"], hold_before={2: never}))
    received: list[str] = []
    async with sdk_client(server) as client:
        if helper:
            manager = client.messages.stream(model=MODEL, max_tokens=16, messages=USER)
            stream: Any = await manager.__aenter__()
        else:
            stream = await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
        # __anext__ rather than `async for ... break`: a broken-out-of `async for` leaves its own generator behind.
        while len(received) < 2:
            if (text := text_of(await stream.__anext__())) is not None:
                received.append(text)
        await stream.response.aclose()
        with anyio.CancelScope(shield=True), pytest.raises(httpx2.ReadError):
            await drain(stream)
        if helper:
            await manager.__aexit__(None, None, None)
        assert await wait_in_thread(server.requests[0].client_gone)
    assert received == ["a", "b"]
    assert server.requests[0].client_closed_early


async def test_client_close_releases_connections_without_resource_warnings(server: AnthropicServer) -> None:
    """await client.close() closes the pooled keep-alive connection and leaves nothing to warn about."""
    client = anthropic.AsyncAnthropic(api_key="test-key", base_url=server.base_url, max_retries=0)
    for _ in range(2):
        stream = await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
        assert [t async for t in (text_of(e) async for e in stream) if t is not None] == list(DEFAULT_TOKENS)
    # Both requests went over the one pooled connection, still open between them.
    assert server.open_connections == 1
    await client.close()
    assert client.is_closed()
    assert await anyio.to_thread.run_sync(server.wait_until_no_connections, HANG_GUARD)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client, stream
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_non_streaming_create_gets_the_whole_message(server: AnthropicServer) -> None:
    """Without stream=True the server answers with the Message the stream would add up to."""
    server.script(TextStream(["one", " two"]))
    async with sdk_client(server) as client:
        message = await client.messages.create(model=MODEL, max_tokens=16, messages=USER)
    assert message.content[0].type == "text"
    assert message.content[0].text == "one two"
    assert message.stop_reason == "end_turn"
    assert "stream" not in server.requests[0].body


async def test_unknown_path_gets_not_found(server: AnthropicServer) -> None:
    """Any request other than POST /v1/messages is recorded and answered 404 without using the script."""
    server.script(TextStream(["kept"]))
    async with sdk_client(server) as client:
        with pytest.raises(anthropic.NotFoundError):
            await client.models.list()
        stream = await client.messages.create(model=MODEL, max_tokens=16, messages=USER, stream=True)
        assert [t async for t in (text_of(e) async for e in stream) if t is not None] == ["kept"]
    assert [r.reply is None for r in server.requests] == [True, False]


def test_server_rejects_faults_outside_the_stream() -> None:
    """Fault points must lie within 0..deltas and drop/error are exclusive."""
    with pytest.raises(ValueError):
        TextStream(["a"], drop_after=2)
    with pytest.raises(ValueError):
        TextStream(["a"], drop_after=1, error_after=1)
    with pytest.raises(ValueError):
        ToolUseStream("f", "toolu", ["{}"], hold_before={5: threading.Event()})


def test_server_stops_while_a_response_is_held() -> None:
    """Stopping the server while a handler waits at a gate ends the handler and joins cleanly."""
    never = threading.Event()
    with AnthropicServer() as server:
        server.script(TextStream(["a", "b"], hold_before={1: never}))
        body = b'{"model": "m", "max_tokens": 1, "messages": [], "stream": true}'
        head = f"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        port = int(server.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head + body)
            record = server.wait_for_request(0, HANG_GUARD)
            assert record is not None
            server.stop()
            assert record.finished.is_set()
            assert record.outcome == "server_stopped"
            assert not record.client_closed_early
        with pytest.raises(RuntimeError):
            server.start()
