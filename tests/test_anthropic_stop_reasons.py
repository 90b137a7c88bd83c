"""Every stop reason of the Messages API surfaced by ChatAnthropic (loopback server, both backends)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anthropic_server import AnthropicServer, MessageStream, TextBlock, ToolUseBlock

from nodes import AIMessage, AIMessageChunk, ChatAnthropic

MODEL = "claude-test-model"
GUARD = 10.0  # seconds; bounds a call that should end at once, never paces a test


def chat(server: AnthropicServer) -> ChatAnthropic:
    return ChatAnthropic(model=MODEL, api_key="test-key", base_url=server.base_url, max_retries=0)


# stop_reason.py: every value of the installed SDK's StopReason.
REASONS = [
    ("end_turn", False, False),
    ("max_tokens", True, False),
    ("stop_sequence", False, False),
    ("tool_use", False, False),
    ("pause_turn", False, False),
    ("refusal", False, True),
    ("model_context_window_exceeded", True, False),
]


@pytest.mark.parametrize(("reason", "truncated", "refused"), REASONS)
async def test_each_stop_reason_is_in_response_metadata_and_the_properties(
    server: AnthropicServer, reason: str, truncated: bool, refused: bool
) -> None:
    """The stop reason is response_metadata['stop_reason'] on the last chunk and the message; truncated/refused tell."""
    blocks: list[Any] = [TextBlock(["partial"])]
    if reason == "tool_use":
        blocks.append(ToolUseBlock("lookup", "toolu_1", ["{}"]))
    server.script_many([MessageStream(blocks, stop_reason=reason)] * 2)
    model = chat(server)
    with anyio.fail_after(GUARD):
        chunks = [chunk async for chunk in model.astream("hi")]
        message = await model.ainvoke("hi")
    assert chunks[-1].response_metadata == {"model_name": MODEL, "stop_reason": reason}
    assert [chunk.stop_reason for chunk in chunks] == [None] * (len(chunks) - 1) + [reason]
    whole = AIMessageChunk.concat_chunks(chunks)
    for reply in (whole, message):
        assert reply.response_metadata["stop_reason"] == reason
        assert (reply.stop_reason, reply.truncated, reply.refused) == (reason, truncated, refused)


async def test_the_matched_stop_sequence_is_reported(server: AnthropicServer) -> None:
    """stop_reason 'stop_sequence' comes with response_metadata['stop_sequence'], the sequence that matched."""
    server.script(MessageStream([TextBlock(["a"])], stop_reason="stop_sequence", stop_sequence="\n\nHuman:"))
    with anyio.fail_after(GUARD):
        message = await chat(server).ainvoke("hi")
    assert message.response_metadata == {
        "model_name": MODEL,
        "stop_reason": "stop_sequence",
        "stop_sequence": "\n\nHuman:",
    }


async def test_a_refusal_carries_its_stop_details(server: AnthropicServer) -> None:
    """A refusal's stop_details (category, explanation) are in response_metadata as the API sent them."""
    details = {"type": "refusal", "category": "cyber", "explanation": "Declined."}
    server.script(MessageStream([TextBlock(["I can"])], stop_reason="refusal", stop_details=details))
    with anyio.fail_after(GUARD):
        message = await chat(server).ainvoke("hi")
    assert message.refused and not message.truncated
    assert message.response_metadata["stop_details"] == details


def test_a_message_without_a_stop_reason_is_neither_truncated_nor_refused() -> None:
    """Messages made by hand, or by models that report no stop reason, answer None/False."""
    plain = AIMessage("hi")
    assert (plain.stop_reason, plain.truncated, plain.refused) == (None, False, False)
    odd = AIMessage("hi", response_metadata={"stop_reason": 3})
    assert odd.stop_reason is None
