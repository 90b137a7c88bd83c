"""``with_retry`` and ``with_fallbacks`` around ``ChatAnthropic``, against the loopback Messages API.

The SDK's own retries are off (``max_retries=0``), so every retry here is the wrapper's:
the real SDK errors (status, ``retry-after``) and the real mid-stream ``event: error``
reach it as ``ChatAnthropic`` raises them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic_server import AnthropicServer, ErrorReply, TextStream

from engine.testing import cleanup_guard
from nodes import ChatAnthropic, ModelStreamError

MODEL = "claude-test-model"
NO_WAIT: dict[str, Any] = {"wait_exponential_jitter": False}


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    """A loopback Messages API server for one test."""
    with AnthropicServer() as running:
        yield running


def chat(server: AnthropicServer, name: str = "ChatAnthropic") -> ChatAnthropic:
    return ChatAnthropic(model=MODEL, api_key="test-key", base_url=server.base_url, max_retries=0, name=name)


async def texts_of(runnable: Any) -> list[str]:
    async with cleanup_guard():
        return [chunk.text async for chunk in runnable.astream("hi")]


async def test_a_529_with_retry_after_is_retried_by_the_wrapper(server: AnthropicServer) -> None:
    """The server's 529 (with retry-after) then a reply: the consumer sees the reply's tokens once."""
    server.script(ErrorReply(529, "overloaded_error", retry_after=0.001))
    assert await texts_of(chat(server).with_retry()) == ["Hello", ",", " world", "!", ""]
    assert [r.outcome for r in server.requests] == ["error_status", "complete"]


async def test_an_error_event_before_any_text_is_retried(server: AnthropicServer) -> None:
    """An event: error of type overloaded_error before the first text delta: a second request streams."""
    server.script(TextStream(["never", "sent"], error_after=0, error_type="overloaded_error"))
    assert await texts_of(chat(server).with_retry(**NO_WAIT)) == ["Hello", ",", " world", "!", ""]
    assert len(server.requests) == 2


async def test_a_connection_reset_before_any_text_is_retried(server: AnthropicServer) -> None:
    """A connection reset before the first text delta (a transient ModelStreamError) is retried."""
    server.script(TextStream(["a", "b"], drop_after=0, drop_mode="reset"))
    assert await texts_of(chat(server).with_retry(**NO_WAIT)) == ["Hello", ",", " world", "!", ""]
    assert len(server.requests) == 2


async def test_an_error_event_after_two_tokens_is_not_retried(server: AnthropicServer) -> None:
    """After two text deltas the overloaded_error is raised as ModelStreamError, noted, with one request."""
    server.script(TextStream(["a", "b", "c"], error_after=2, error_type="overloaded_error"))
    seen: list[str] = []
    with pytest.raises(ModelStreamError) as caught:
        async with cleanup_guard():
            async for chunk in chat(server).with_retry(**NO_WAIT).astream("hi"):
                seen.append(chunk.text)
    assert seen == ["a", "b"]
    assert "RunnableRetry had delivered 2 chunks" in " ".join(caught.value.__notes__)
    assert len(server.requests) == 1


async def test_an_invalid_request_is_not_retried(server: AnthropicServer) -> None:
    """A 400 is not transient: raised as the SDK's BadRequestError after one request."""
    server.script(ErrorReply(400, "invalid_request_error"))
    with pytest.raises(anthropic.BadRequestError):
        await chat(server).with_retry(**NO_WAIT).ainvoke("hi")
    assert len(server.requests) == 1


async def test_a_fallback_model_takes_over_from_an_overloaded_one(server: AnthropicServer) -> None:
    """The primary's 529s exhaust its retries, then the backup model (same server) answers."""
    server.script_many([ErrorReply(529, "overloaded_error", retry_after=0.001)] * 2)
    primary = chat(server, name="primary").with_retry(stop_after_attempt=2)
    message = await primary.with_fallbacks([chat(server, name="backup")]).ainvoke("hi")
    assert message.content == "Hello, world!"
    assert [r.outcome for r in server.requests] == ["error_status", "error_status", "complete"]
