"""Chat messages to the ``system`` and ``messages`` fields of a Messages API request.

Three things happen besides the role mapping (:func:`to_anthropic_messages`):

* An AI message's content blocks go back as the API sent them: the ``index`` key that
  streamed chunks merge by is dropped, a ``thinking`` block keeps its ``signature`` (the
  API refuses one without), a ``redacted_thinking`` block its opaque ``data``, and a
  ``tool_use`` block streamed without its input gets the parsed arguments of its call.
* Image and document blocks of user content are checked and converted: the API's own
  ``{"type": "image", "source": {...}}`` passes through once checked; langchain-core's
  ``image_url`` blocks and its standard blocks (``{"type": "image", "base64": ...,
  "mime_type": ...}``, ``"url"``, ``"file_id"``, and their ``source_type`` spelling)
  become the API's ``image``/``document`` blocks, and a v1 ``text-plain`` block a
  plain-text document. An image or document without its data, or whose base64 data is not
  valid base64 (or, for text, not UTF-8), is a ``ValueError`` naming the message and
  block, raised before any request.
* Blocks carrying ``cache_control`` pass through with it, wherever they are.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ._messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    MessageContent,
    SystemMessage,
    ToolCall,
    ToolMessage,
)

__all__ = ("SystemContent", "to_anthropic_messages")

#: The ``system`` field of a request: a string, a list of text blocks, or nothing.
SystemContent = str | list[dict[str, Any]] | None

# base64_image_source_param.py: the media types an image may have.
_IMAGE_TYPES: Final = ("image/jpeg", "image/png", "image/gif", "image/webp")
# document_block_param.py: a PDF (base64 or url), plain text, or a file id.
_PDF: Final = "application/pdf"
_TEXT: Final = "text/plain"


def _text_blocks(content: str | Sequence[str | dict[str, Any]]) -> list[dict[str, Any]]:
    """Content as the API's blocks: a string (or a string item of a list) as a text block.

    The API rejects empty text blocks, so an empty string contributes nothing.
    """
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [
        {"type": "text", "text": item} if isinstance(item, str) else item for item in content if item != ""
    ]


# -- AI messages ------------------------------------------------------------------------


def _assistant_block(block: dict[str, Any], calls: Mapping[str, ToolCall], where: str) -> dict[str, Any]:
    """One block of an AI message as the API wants it back."""
    kind = block.get("type")
    if "index" not in block and kind not in ("thinking", "tool_use"):
        return block
    wire = {key: value for key, value in block.items() if key != "index"}
    if kind == "thinking":
        if not isinstance(wire.get("signature"), str) or not wire["signature"]:
            raise ValueError(
                f"{where} is a thinking block without its signature (was the stream cut short?); "
                "the API accepts a thinking block back only with the signature it sent"
            )
        wire.setdefault("thinking", "")
    elif kind == "tool_use":
        call = calls.get(wire.get("id", ""))
        if call is not None and not wire.get("input"):
            # Streamed, the block holds no input: the arguments are in the parsed tool call.
            wire["input"] = dict(call.args)
    return wire


def _assistant_content(message: BaseMessage, position: int) -> str | list[dict[str, Any]]:
    calls = message.tool_calls if isinstance(message, AIMessage | AIMessageChunk) else []
    if not calls and isinstance(message.content, str):
        return message.content
    by_id: dict[str, ToolCall] = {}
    for call in calls:
        if call.id is None:
            raise ValueError(
                f"the AI message's tool call {call.name!r} has no id; Anthropic needs the id to pair "
                "the tool_use block with its tool_result"
            )
        by_id[call.id] = call
    blocks = [
        _assistant_block(block, by_id, f"message {position}, block {number}")
        for number, block in enumerate(_text_blocks(message.content))
    ]
    # Content that already carries a call's tool_use block (a reply passed back as it came)
    # must not carry it twice.
    present = {block.get("id") for block in blocks if block.get("type") == "tool_use"}
    for call in calls:
        if call.id not in present:
            blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.args)})
    return blocks


# -- user content: images and documents ---------------------------------------------------


def _decoded(data: str, where: str, what: str) -> bytes:
    """The bytes of a base64 string, which must be valid base64 (the standard alphabet,
    padded, nothing else): Python's lenient decoding would drop what is not, and send a
    corrupt file."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(
            f"{where} is {what} whose data is not valid base64 ({exc}): give the file's bytes, or "
            f"their standard base64 encoding, got {data[:40]!r}{'...' if len(data) > 40 else ''}"
        ) from None


def _data(value: object, where: str, what: str) -> Any:
    """A base64 source's ``data``: a base64 string (checked), bytes (encoded here), or a path
    or file the SDK reads."""
    if isinstance(value, bytes | bytearray):
        if value:
            return base64.b64encode(value).decode("ascii")
    elif isinstance(value, str):
        if value:
            _decoded(value, where, what)
            return value
    elif isinstance(value, os.PathLike) or hasattr(value, "read"):
        return value
    raise ValueError(
        f"{where} is {what} without data: a base64 source needs its 'data' (a base64 string, bytes, "
        f"a pathlib.Path or a binary file), got {value!r}"
    )


def _base64_source(data: object, media_type: object, where: str, kind: str) -> dict[str, Any]:
    allowed = _IMAGE_TYPES if kind == "image" else (_PDF,)
    if media_type not in allowed:
        raise ValueError(
            f"{where}: a base64 {kind} needs a media type among {', '.join(allowed)}, got {media_type!r}"
        )
    return {"type": "base64", "media_type": media_type, "data": _data(data, where, f"an {kind} block")}


def _check_source(source: object, where: str, kind: str) -> dict[str, Any]:
    """The API's ``source`` of an image or document block, checked."""
    if not isinstance(source, Mapping):
        raise ValueError(f"{where} is an {kind} block whose 'source' is not a dict: {source!r}")
    source_type = source.get("type")
    if source_type == "base64":
        if kind == "document" and source.get("media_type") == _TEXT:
            return dict(source)  # not base64 at all, but the API has no other spelling for it
        checked = _base64_source(source.get("data"), source.get("media_type"), where, kind)
        return {**source, **checked}
    if source_type == "url":
        if not isinstance(source.get("url"), str) or not source["url"]:
            raise ValueError(f"{where} is an {kind} block with a url source but no 'url': {source!r}")
        return dict(source)
    if source_type == "file":
        if not isinstance(source.get("file_id"), str) or not source["file_id"]:
            raise ValueError(f"{where} is an {kind} block with a file source but no 'file_id': {source!r}")
        return dict(source)
    if kind == "document" and source_type == "text":
        if not isinstance(source.get("data"), str):
            raise ValueError(
                f"{where} is a document block with a text source but no 'data' string: {source!r}"
            )
        return dict(source)
    if kind == "document" and source_type == "content":
        return dict(source)
    raise ValueError(f"{where} is an {kind} block with the unknown source type {source_type!r}: {source!r}")


def _from_url(url: object, where: str, kind: str) -> dict[str, Any]:
    """A source for a URL, which may be a ``data:`` URL holding the bytes."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"{where} is an {kind} block without data: it has no url")
    if not url.startswith("data:"):
        return {"type": "url", "url": url}
    header, comma, data = url[len("data:") :].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64":
        raise ValueError(f"{where}: a data URL must be 'data:<media type>;base64,<data>', got {url[:60]!r}")
    return _base64_source(data, media_type, where, kind)


def _standard_source(block: Mapping[str, Any], where: str, kind: str) -> dict[str, Any]:
    """The API's source for langchain-core's standard block keys (v1 and the older ``source_type``)."""
    source_type = block.get("source_type")
    mime_type = block.get("mime_type")
    if "base64" in block or source_type == "base64":
        data = block.get("base64") if "base64" in block else block.get("data")
        if kind == "document" and mime_type == _TEXT:
            if not isinstance(data, str) or not data:
                raise ValueError(f"{where} is a text document block without data")
            return _text_source(_decoded(data, where, "a text document block"), where)
        return _base64_source(data, mime_type, where, kind)
    if "url" in block or source_type == "url":
        return _from_url(block.get("url"), where, kind)
    if "file_id" in block or source_type == "id":
        file_id = block.get("file_id") if "file_id" in block else block.get("id")
        if not isinstance(file_id, str) or not file_id:
            raise ValueError(f"{where} is an {kind} block with an empty file id")
        return {"type": "file", "file_id": file_id}
    raise ValueError(
        f"{where} is an {kind} block without data: give it a 'source' (the API's form), or "
        "'base64' with 'mime_type', 'url', or 'file_id'"
    )


def _text_source(raw: bytes, where: str) -> dict[str, Any]:
    """The API's plain-text document source for a text file's bytes (UTF-8)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is a text document block whose data is not UTF-8 text ({exc})") from None
    return {"type": "text", "media_type": _TEXT, "data": text}


def _plain_text_source(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The source of langchain-core's v1 ``text-plain`` block: its text, base64 or file id."""
    text = block.get("text")
    if isinstance(text, str) and text:
        return {"type": "text", "media_type": _TEXT, "data": text}
    if "base64" in block:
        data = block["base64"]
        if not isinstance(data, str) or not data:
            raise ValueError(f"{where} is a text-plain block with empty 'base64' data")
        return _text_source(_decoded(data, where, "a text-plain block"), where)
    if isinstance(block.get("file_id"), str) and block["file_id"]:
        return {"type": "file", "file_id": block["file_id"]}
    if "url" in block:
        # document_block_param.py: the API's URL source is a PDF's (URLPDFSourceParam).
        raise ValueError(
            f"{where} is a text-plain block with a url, which the Messages API cannot read (it reads "
            "only PDFs by URL): give its 'text'"
        )
    raise ValueError(f"{where} is a text-plain block without data: give it 'text', 'base64' or 'file_id'")


def _media_block(kind: str, source: dict[str, Any], block: Mapping[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {"type": kind, "source": source}
    for key in ("cache_control", "title", "context", "citations"):
        if key in block:
            converted[key] = block[key]
    return converted


def _user_block(block: dict[str, Any], where: str) -> dict[str, Any]:
    kind = block.get("type")
    if kind in ("image", "document"):
        if "source" in block:
            source = _check_source(block["source"], where, kind)
            return block if source == block["source"] else {**block, "source": source}
        return _media_block(kind, _standard_source(block, where, kind), block)
    if kind == "file":
        # langchain-core's standard file block: a PDF or plain text becomes a document.
        return _media_block("document", _standard_source(block, where, "document"), block)
    if kind == "text-plain":
        # langchain-core v1's plain-text document block.
        return _media_block("document", _plain_text_source(block, where), block)
    if kind == "image_url":
        image_url = block.get("image_url")
        url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
        return _media_block("image", _from_url(url, where, "image"), block)
    return block


_MEDIA_TYPES: Final = frozenset({"image", "document", "file", "image_url", "text-plain"})


def _user_content(content: MessageContent, position: int) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if all(isinstance(item, dict) for item in content) and not any(
        isinstance(block, dict) and block.get("type") in _MEDIA_TYPES for block in content
    ):
        return content  # type: ignore[return-value]  # every item is a dict
    return [
        _user_block(block, f"message {position}, block {number}")
        if block.get("type") in _MEDIA_TYPES
        else block
        for number, block in enumerate(_text_blocks(content))
    ]


# -- the conversation ---------------------------------------------------------------------


def _tool_result(message: ToolMessage, position: int) -> list[dict[str, Any]]:
    # A tool may return an image: it goes in the tool_result as in a user message.
    content = _user_content(message.content, position)
    if isinstance(content, list):
        content = list(content)
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": content}
    if message.status == "error":
        block["is_error"] = True
    return [block]


def _system(parts: list[MessageContent]) -> SystemContent:
    if not parts:
        return None
    if all(isinstance(part, str) for part in parts):
        joined = "\n\n".join(part for part in parts if isinstance(part, str) and part)
        return joined or None
    blocks: list[dict[str, Any]] = []
    for part in parts:
        blocks.extend(_text_blocks(part))
    return blocks or None


def to_anthropic_messages(messages: Sequence[BaseMessage]) -> tuple[SystemContent, list[dict[str, Any]]]:
    """Turn chat messages into the ``system`` field and ``messages`` list of a Messages API request.

    * System messages, wherever they are, become the ``system`` field: their strings joined
      with a blank line, or their blocks concatenated if any has a list of blocks (a
      block's ``cache_control`` is kept).
    * Human messages become ``"user"`` messages, their image and document blocks checked
      and converted to the API's form; AI messages become ``"assistant"`` messages with
      their blocks as the API sent them (thinking with its signature, redacted thinking
      unchanged, the ``index`` merge key dropped) and one ``tool_use`` block per tool
      call not already among them; a tool message becomes a ``"user"`` message holding
      one ``tool_result`` block (``is_error`` when its status is ``"error"``).
    * Consecutive messages of one role merge into one message whose content blocks are
      theirs concatenated (string content becomes a text block), since the API wants the
      roles to alternate.
    * Blocks that need no change pass through (the list is copied, the blocks are not).

    Args:
        messages: The conversation.

    Returns:
        ``(system, messages)``: the ``system`` field (``None`` when no system message has
        content) and the API's message dicts.

    Raises:
        ValueError: If an AI message has a tool call without an id or a thinking block
            without its signature, an image or document block has no data (or a bad
            media type), or a message has a type the API has no role for; the message
            names the message's and the block's position.
    """
    system_parts: list[MessageContent] = []
    converted: list[dict[str, Any]] = []
    for position, message in enumerate(messages):
        role: str
        content: str | list[dict[str, Any]]
        if isinstance(message, SystemMessage):
            system_parts.append(message.content)
            continue
        if isinstance(message, HumanMessage):
            role, content = "user", _user_content(message.content, position)
        elif isinstance(message, AIMessage | AIMessageChunk):
            role, content = "assistant", _assistant_content(message, position)
        elif isinstance(message, ToolMessage):
            role, content = "user", _tool_result(message, position)
        else:
            raise ValueError(f"Anthropic has no role for a {type(message).__name__} ({message.type!r})")
        if converted and converted[-1]["role"] == role:
            previous = converted[-1]
            previous["content"] = _text_blocks(previous["content"]) + _text_blocks(content)
        else:
            converted.append(
                {"role": role, "content": content if isinstance(content, str) else list(content)}
            )
    return _system(system_parts), converted
