"""Images and documents in HumanMessage content, sent to the loopback Messages API (both backends).

The API's own blocks pass through once checked; langchain-core's ``image_url`` and standard
blocks become the API's; a block without its data fails before any request.
"""

from __future__ import annotations

import base64
import pathlib
from typing import Any

import anyio
import pytest
from anthropic_server import AnthropicServer

from nodes import AIMessage, ChatAnthropic, HumanMessage, ToolCall, ToolMessage

MODEL = "claude-test-model"
GUARD = 10.0  # seconds; bounds a call that should end at once, never paces a test
PNG = b"\x89PNG\r\n\x1a\n-not-really-a-png"
PNG64 = base64.b64encode(PNG).decode()
PDF64 = base64.b64encode(b"%PDF-1.7 tiny").decode()
CACHED = {"type": "ephemeral"}
TEXT = "text/plain"


def chat(server: AnthropicServer) -> ChatAnthropic:
    return ChatAnthropic(model=MODEL, api_key="test-key", base_url=server.base_url, max_retries=0)


def image(source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "image", "source": source, **extra}


def document(source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "document", "source": source, **extra}


BASE64_IMAGE = image({"type": "base64", "media_type": "image/png", "data": PNG64})
URL_IMAGE = image({"type": "url", "url": "https://example.com/cat.png"})

CASES = [
    # The API's own blocks, as they are.
    (BASE64_IMAGE, BASE64_IMAGE),
    (image(URL_IMAGE["source"], cache_control=CACHED), image(URL_IMAGE["source"], cache_control=CACHED)),
    (image({"type": "file", "file_id": "file_1"}), image({"type": "file", "file_id": "file_1"})),
    (
        document({"type": "base64", "media_type": "application/pdf", "data": PDF64}, title="Report"),
        document({"type": "base64", "media_type": "application/pdf", "data": PDF64}, title="Report"),
    ),
    (
        document({"type": "url", "url": "https://example.com/a.pdf"}),
        document({"type": "url", "url": "https://example.com/a.pdf"}),
    ),
    (
        document({"type": "text", "media_type": "text/plain", "data": "plain words"}),
        document({"type": "text", "media_type": "text/plain", "data": "plain words"}),
    ),
    # Raw bytes are base64-encoded here.
    (image({"type": "base64", "media_type": "image/png", "data": PNG}), BASE64_IMAGE),
    # langchain-core's OpenAI-style image_url, a data URL or a link.
    ({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG64}"}}, BASE64_IMAGE),
    ({"type": "image_url", "image_url": "https://example.com/cat.png"}, URL_IMAGE),
    # langchain-core's standard blocks (v1 keys, and the older source_type spelling).
    ({"type": "image", "base64": PNG64, "mime_type": "image/png"}, BASE64_IMAGE),
    (
        {"type": "image", "url": "https://example.com/cat.png", "cache_control": CACHED},
        {**URL_IMAGE, "cache_control": CACHED},
    ),
    ({"type": "image", "file_id": "file_1"}, image({"type": "file", "file_id": "file_1"})),
    ({"type": "image", "source_type": "base64", "data": PNG64, "mime_type": "image/png"}, BASE64_IMAGE),
    ({"type": "image", "source_type": "url", "url": "https://example.com/cat.png"}, URL_IMAGE),
    (
        {"type": "file", "base64": PDF64, "mime_type": "application/pdf"},
        document({"type": "base64", "media_type": "application/pdf", "data": PDF64}),
    ),
    (
        {"type": "file", "url": "https://example.com/a.pdf"},
        document({"type": "url", "url": "https://example.com/a.pdf"}),
    ),
    # A text file as base64, and langchain-core v1's text-plain block: plain-text documents.
    (
        {"type": "file", "base64": base64.b64encode("naïve words".encode()).decode(), "mime_type": TEXT},
        document({"type": "text", "media_type": TEXT, "data": "naïve words"}),
    ),
    (
        {"type": "text-plain", "text": "plain words", "mime_type": TEXT, "title": "Notes"},
        document({"type": "text", "media_type": TEXT, "data": "plain words"}, title="Notes"),
    ),
    (
        {"type": "text-plain", "base64": base64.b64encode(b"plain words").decode(), "mime_type": TEXT},
        document({"type": "text", "media_type": TEXT, "data": "plain words"}),
    ),
    (
        {"type": "text-plain", "file_id": "file_2", "mime_type": TEXT, "cache_control": CACHED},
        document({"type": "file", "file_id": "file_2"}, cache_control=CACHED),
    ),
]


@pytest.mark.parametrize(("given", "sent"), CASES)
async def test_an_image_or_document_block_is_sent_in_the_apis_form(
    server: AnthropicServer, given: dict[str, Any], sent: dict[str, Any]
) -> None:
    """The block reaches the wire as the API's image/document block, next to the text, unchanged otherwise."""
    with anyio.fail_after(GUARD):
        await chat(server).ainvoke([HumanMessage([{"type": "text", "text": "What is this?"}, given])])
    assert server.requests[0].body == {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, sent]}],
        "stream": True,
    }


async def test_a_path_is_read_and_encoded_by_the_sdk(server: AnthropicServer, tmp_path: pathlib.Path) -> None:
    """A pathlib.Path as a base64 source's data is read (off the event loop) and sent base64-encoded."""
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    with anyio.fail_after(GUARD):
        await chat(server).ainvoke(
            [HumanMessage([image({"type": "base64", "media_type": "image/png", "data": path})])]
        )
    assert server.requests[0].body["messages"][0]["content"] == [BASE64_IMAGE]


async def test_an_image_returned_by_a_tool_is_converted_in_its_result(server: AnthropicServer) -> None:
    """A ToolMessage whose content holds an image_url block sends the API's image inside tool_result."""
    call = AIMessage("", tool_calls=[ToolCall(name="snap", args={}, id="t1")])
    result = ToolMessage(
        [{"type": "image_url", "image_url": "https://example.com/cat.png"}], tool_call_id="t1"
    )
    with anyio.fail_after(GUARD):
        await chat(server).ainvoke([HumanMessage("snap"), call, result])
    assert server.requests[0].body["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [URL_IMAGE]}],
    }


BAD = [
    ({"type": "image", "source": {"type": "base64", "media_type": "image/png"}}, "image block without data"),
    ({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}, "without data"),
    (
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": None}},
        "without data",
    ),
    ({"type": "image"}, "image block without data"),
    ({"type": "image", "base64": "", "mime_type": "image/png"}, "without data"),
    ({"type": "image_url", "image_url": {}}, "image block without data"),
    ({"type": "image", "source": {"type": "url"}}, "url source but no 'url'"),
    (
        {"type": "image", "source": {"type": "base64", "media_type": "image/tiff", "data": PNG64}},
        "media type",
    ),
    ({"type": "image", "base64": PNG64}, "media type"),
    ({"type": "image", "source": "cat.png"}, "'source' is not a dict"),
    ({"type": "image", "source": {"type": "carrier-pigeon"}}, "unknown source type"),
    (
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf"}},
        "document block without data",
    ),
    ({"type": "file"}, "document block without data"),
    ({"type": "image_url", "image_url": "data:image/png,notbase64"}, "data URL must be"),
    # Data that is not base64 (Python's lenient decoding would drop the bad characters).
    (image({"type": "base64", "media_type": "image/png", "data": "!!!not base64!!!"}), "not valid base64"),
    ({"type": "image", "base64": PNG64[:-1], "mime_type": "image/png"}, "not valid base64"),
    ({"type": "image_url", "image_url": "data:image/png;base64,a b c d"}, "not valid base64"),
    (
        document({"type": "base64", "media_type": "application/pdf", "data": PDF64 + "\n"}),
        "not valid base64",
    ),
    (
        {"type": "file", "base64": "!!!", "mime_type": TEXT},
        "text document block whose data is not valid base64",
    ),
    ({"type": "file", "base64": base64.b64encode(b"\xff\xfe").decode(), "mime_type": TEXT}, "not UTF-8"),
    ({"type": "text-plain", "base64": "!!!", "mime_type": TEXT}, "not valid base64"),
    ({"type": "text-plain", "url": "https://example.com/a.txt", "mime_type": TEXT}, "only PDFs by URL"),
    ({"type": "text-plain", "mime_type": TEXT}, "text-plain block without data"),
]


@pytest.mark.parametrize(("block", "message"), BAD)
async def test_a_media_block_without_data_fails_before_any_request(
    server: AnthropicServer, block: dict[str, Any], message: str
) -> None:
    """A ValueError naming the message and block positions and the problem; the server sees nothing."""
    with pytest.raises(ValueError, match=message) as caught:
        with anyio.fail_after(GUARD):
            await chat(server).ainvoke(
                [HumanMessage("first"), HumanMessage([{"type": "text", "text": "x"}, block])]
            )
    assert "message 1, block 1" in str(caught.value)
    assert server.requests == []
