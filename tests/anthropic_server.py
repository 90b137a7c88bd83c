"""A loopback HTTP server that speaks Anthropic's Messages streaming protocol.

It lets tests drive the real ``anthropic`` SDK offline. The server runs on plain
blocking sockets in background threads, so it is indifferent to the async
backend (trio or asyncio) of the test that talks to it.

Usage::

    with AnthropicServer() as server:
        server.script(TextStream(["Hel", "lo"]))
        client = AsyncAnthropic(api_key="test-key", base_url=server.base_url)
        ...

or take the ``anthropic_server`` fixture defined here. Each request to
``POST /v1/messages`` is recorded in ``server.requests`` and answered by the next
scripted reply, or by ``server.default_reply`` once the script is used up.

Streamed replies count *points* ``0..n`` where ``n`` is the number of
``content_block_delta`` events: point ``i`` is just before delta ``i`` and point
``n`` is just before the closing events. ``hold_before``, ``drop_after`` and
``error_after`` name points.
"""

from __future__ import annotations

import contextlib
import http
import itertools
import json
import select
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import attrs
import pytest

__all__ = [
    "DEFAULT_TOKENS",
    "AnthropicServer",
    "ErrorReply",
    "HangUp",
    "MessageStream",
    "RecordedRequest",
    "RedactedThinkingBlock",
    "Reply",
    "TextBlock",
    "TextStream",
    "ThinkingBlock",
    "ToolUse",
    "ToolUseBlock",
    "ToolUseStream",
    "anthropic_server",
]

DEFAULT_TOKENS: tuple[str, ...] = ("Hello", ",", " world", "!")
"""The text tokens of the reply served when the script is empty."""

_MAX_HEAD_BYTES = 64 * 1024


def _as_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _as_gates(gates: Mapping[int, threading.Event]) -> dict[int, threading.Event]:
    return dict(gates)


@attrs.frozen(kw_only=True, eq=False)
class _StreamFaults:
    """Options shared by the streamed replies; every field is keyword-only.

    Attributes:
        hold_before: Point index -> event; the server waits for the event before
            passing that point, noticing meanwhile if the client goes away.
        drop_after: Close the TCP connection at this point, without ending the
            chunked body, as a crashed proxy would.
        drop_mode: ``"close"`` sends a FIN; ``"reset"`` sends a RST (SO_LINGER 0).
        error_after: Send an ``event: error`` at this point and end the body.
        error_type: The ``error.type`` of that error event.
        error_message: The ``error.message`` of that error event.
        omit_message_stop: End the body after ``message_delta`` with no ``message_stop``.
        input_tokens: Reported in ``message_start``'s usage.
        output_tokens: Reported in ``message_delta``'s usage; defaults to the delta count.
    """

    hold_before: Mapping[int, threading.Event] = attrs.field(factory=dict, converter=_as_gates)
    drop_after: int | None = None
    drop_mode: Literal["close", "reset"] = "close"
    error_after: int | None = None
    error_type: str = "overloaded_error"
    error_message: str = "Overloaded"
    omit_message_stop: bool = False
    input_tokens: int = 12
    output_tokens: int | None = None

    def _check_points(self, deltas: int) -> None:
        if self.drop_after is not None and self.error_after is not None:
            raise ValueError("drop_after and error_after are mutually exclusive")
        for name, point in (("drop_after", self.drop_after), ("error_after", self.error_after)):
            if point is not None and not 0 <= point <= deltas:
                raise ValueError(f"{name}={point} is outside the points 0..{deltas}")
        for point in self.hold_before:
            if not 0 <= point <= deltas:
                raise ValueError(f"hold_before point {point} is outside the points 0..{deltas}")


@attrs.frozen(kw_only=True, eq=False)
class TextStream(_StreamFaults):
    """A streamed text reply: one ``text_delta`` per token.

    Attributes:
        tokens: The text deltas, in order.
        stop_reason: The ``stop_reason`` of ``message_delta``.
    """

    tokens: Sequence[str] = attrs.field(kw_only=False, converter=_as_tuple)
    stop_reason: str = "end_turn"

    def __attrs_post_init__(self) -> None:
        self._check_points(len(self.tokens))


@attrs.frozen(eq=False)
class ToolUse:
    """One more ``tool_use`` block of a :class:`ToolUseStream` (name, id, JSON fragments)."""

    name: str
    id: str
    json_fragments: Sequence[str] = attrs.field(converter=_as_tuple)


@attrs.frozen(kw_only=True, eq=False)
class ToolUseStream(_StreamFaults):
    """A streamed tool call: an optional text block, then a ``tool_use`` block (or more).

    The tool input arrives as ``input_json_delta`` fragments. Points count the
    text deltas first, then the JSON fragments, block after block.

    Attributes:
        name: The tool name.
        id: The ``tool_use`` block id.
        json_fragments: The ``partial_json`` strings; joined they must be a JSON object.
        text_before: Text deltas of a text block sent before the tool call.
        stop_reason: The ``stop_reason`` of ``message_delta``.
        more: Further ``tool_use`` blocks, sent in order after the first.
    """

    name: str = attrs.field(kw_only=False)
    id: str = attrs.field(kw_only=False)
    json_fragments: Sequence[str] = attrs.field(kw_only=False, converter=_as_tuple)
    text_before: Sequence[str] = attrs.field(default=(), kw_only=False, converter=_as_tuple)
    stop_reason: str = "tool_use"
    more: Sequence[ToolUse] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        self._check_points(len(self.text_before) + sum(len(use.json_fragments) for use in self.tool_uses()))

    def tool_uses(self) -> list[ToolUse]:
        """Every ``tool_use`` block, in order."""
        return [ToolUse(self.name, self.id, self.json_fragments), *self.more]


@attrs.frozen(eq=False)
class TextBlock:
    """A ``text`` content block of a :class:`MessageStream`: one ``text_delta`` per token."""

    tokens: Sequence[str] = attrs.field(converter=_as_tuple)


@attrs.frozen(eq=False)
class ThinkingBlock:
    """A ``thinking`` block: ``thinking_delta`` events, then one ``signature_delta``.

    The API sends the block's whole signature in one ``signature_delta`` just before the
    block's ``content_block_stop`` (the SDK's accumulator takes each one as the whole).
    """

    thinking: Sequence[str] = attrs.field(converter=_as_tuple)
    signature: str = "sig"


@attrs.frozen(eq=False)
class RedactedThinkingBlock:
    """A ``redacted_thinking`` block: its opaque ``data`` whole in ``content_block_start``, no deltas."""

    data: str


@attrs.frozen(eq=False)
class ToolUseBlock:
    """A ``tool_use`` block: ``input_json_delta`` fragments that join into a JSON object."""

    name: str
    id: str
    json_fragments: Sequence[str] = attrs.field(converter=_as_tuple)


Block: TypeAlias = TextBlock | ThinkingBlock | RedactedThinkingBlock | ToolUseBlock


def _block_deltas(block: Block) -> list[dict[str, Any]]:
    if isinstance(block, TextBlock):
        return [{"type": "text_delta", "text": token} for token in block.tokens]
    if isinstance(block, ThinkingBlock):
        return [{"type": "thinking_delta", "thinking": piece} for piece in block.thinking] + [
            {"type": "signature_delta", "signature": block.signature}
        ]
    if isinstance(block, ToolUseBlock):
        return [{"type": "input_json_delta", "partial_json": fragment} for fragment in block.json_fragments]
    return []


def _block_start(block: Block) -> dict[str, Any]:
    """The ``content_block`` of a block's ``content_block_start``, as the API sends it."""
    if isinstance(block, TextBlock):
        return {"type": "text", "text": ""}
    if isinstance(block, ThinkingBlock):
        return {"type": "thinking", "thinking": "", "signature": ""}
    if isinstance(block, RedactedThinkingBlock):
        return {"type": "redacted_thinking", "data": block.data}
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}


def _block_json(block: Block) -> dict[str, Any]:
    """The block as a non-streamed Message holds it."""
    if isinstance(block, TextBlock):
        return {"type": "text", "text": "".join(block.tokens)}
    if isinstance(block, ThinkingBlock):
        return {
            "type": "thinking",
            "thinking": "".join(block.thinking),
            "signature": "".join(block.signature),
        }
    if isinstance(block, RedactedThinkingBlock):
        return _block_start(block)
    tool_input = json.loads("".join(block.json_fragments) or "{}")
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": tool_input}


@attrs.frozen(kw_only=True, eq=False)
class MessageStream(_StreamFaults):
    """A streamed reply made of any content blocks, in order (thinking, text, tool use...).

    Points count the deltas of every block in order (a thinking block's signature
    deltas included; a redacted thinking block has none).

    Attributes:
        blocks: The content blocks.
        stop_reason: The ``stop_reason`` of ``message_delta``.
        stop_sequence: The ``stop_sequence`` of ``message_delta``.
        stop_details: The ``stop_details`` of ``message_delta`` (a refusal's category...).
        usage: More ``message_start`` usage fields, such as ``cache_read_input_tokens``.
        delta_usage: More ``message_delta`` usage fields, such as ``output_tokens_details``.
        hold_after_stop: Block index -> event; the server waits for the event right after
            that block's ``content_block_stop`` (before the next block or the closing
            events), noticing meanwhile if the client goes away.
    """

    blocks: Sequence[Block] = attrs.field(kw_only=False, converter=tuple)
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    stop_details: Mapping[str, Any] | None = None
    usage: Mapping[str, Any] = attrs.field(factory=dict)
    delta_usage: Mapping[str, Any] = attrs.field(factory=dict)
    hold_after_stop: Mapping[int, threading.Event] = attrs.field(factory=dict, converter=_as_gates)

    def __attrs_post_init__(self) -> None:
        self._check_points(self.deltas)
        for index in self.hold_after_stop:
            if not 0 <= index < len(self.blocks):
                raise ValueError(
                    f"hold_after_stop block {index} is outside the blocks 0..{len(self.blocks) - 1}"
                )

    @property
    def deltas(self) -> int:
        """How many ``content_block_delta`` events the reply has."""
        return sum(len(_block_deltas(block)) for block in self.blocks)


@attrs.frozen(kw_only=True, eq=False)
class ErrorReply:
    """A non-streamed HTTP error with Anthropic's JSON error body.

    Attributes:
        status: HTTP status, e.g. 429, 529, 500, 401.
        error_type: ``error.type``, e.g. ``"rate_limit_error"``, ``"overloaded_error"``.
        message: ``error.message``.
        retry_after: Sent as the ``retry-after`` header, in seconds (fractions allowed).
        retry_after_ms: Sent as the ``retry-after-ms`` header, which the SDK reads first.
        should_retry: Sent as ``x-should-retry: true|false``, which overrides the SDK's policy.
    """

    status: int = attrs.field(kw_only=False)
    error_type: str = attrs.field(kw_only=False)
    message: str = attrs.field(default="scripted error", kw_only=False)
    retry_after: float | None = attrs.field(default=None, kw_only=False)
    retry_after_ms: float | None = None
    should_retry: bool | None = None


@attrs.frozen(kw_only=True, eq=False)
class HangUp:
    """Close the connection after reading the request, without sending a byte.

    Attributes:
        mode: ``"close"`` sends a FIN; ``"reset"`` sends a RST (SO_LINGER 0).
    """

    mode: Literal["close", "reset"] = attrs.field(default="close", kw_only=False)


Reply: TypeAlias = TextStream | ToolUseStream | MessageStream | ErrorReply | HangUp

#: The replies the server streams.
Streamed: TypeAlias = TextStream | ToolUseStream | MessageStream

Outcome: TypeAlias = Literal[
    "complete",  # the whole response was written
    "error_status",  # an ErrorReply or a 404 was written
    "error_event",  # an `event: error` was written and the body ended
    "dropped",  # the server cut the connection as scripted (drop_after or HangUp)
    "client_gone",  # the client closed its end before the response was complete
    "server_stopped",  # the server was stopped mid-response
]


@attrs.define(eq=False)
class RecordedRequest:
    """One request the server received, and what became of its response.

    Attributes:
        method: The HTTP method.
        path: The request target, query included.
        headers: Header names lower-cased; a repeated header keeps its last value.
        raw_body: The body bytes.
        body: The body parsed as JSON, or None if it was not JSON.
        reply: The reply the server chose for it.
        request_id: The ``request-id`` header the server sent back.
        deltas_sent: How many ``content_block_delta`` events were fully written.
        client_closed_early: Whether the client went away before the response was complete.
        client_gone: Set when the server noticed that early close.
        finished: Set when the server is done with this response, however it ended.
        outcome: How the response ended. Set before the response's last write (or the
            cut), so it is already final once the client has seen the end; a client
            that goes away during that last write turns it into ``"client_gone"``.
    """

    method: str
    path: str
    headers: dict[str, str]
    raw_body: bytes
    body: Any
    reply: Reply | None
    request_id: str
    deltas_sent: int = 0
    client_closed_early: bool = False
    client_gone: threading.Event = attrs.field(factory=threading.Event)
    finished: threading.Event = attrs.field(factory=threading.Event)
    outcome: Outcome | None = None


class _ClientGone(Exception):
    """The peer closed its end of the connection."""


class _ServerStopping(Exception):
    """The server is shutting down."""


class _Dropped(Exception):
    """The scripted reply asked for the connection to be cut."""


class _Conn:
    """A blocking socket with a read buffer, for one client connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def read_head(self) -> bytes | None:
        """Read up to and including the blank line; None on EOF between requests."""
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > _MAX_HEAD_BYTES:
                raise ValueError("request head too large")
            chunk = self._recv()
            if not chunk:
                if self._buffer:
                    raise _ClientGone
                return None
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        return head

    def read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self._recv()
            if not chunk:
                raise _ClientGone
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return b""

    def peer_closed(self) -> bool:
        """Whether the client has closed its end (EOF or reset), without consuming data."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable:
            return False
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except OSError:
            # The server shut the socket down while stopping.
            return True

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _ClientGone from exc


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):X}\r\n".encode() + payload + b"\r\n"


_LAST_CHUNK = b"0\r\n\r\n"


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        # 529 is Anthropic's own status, not in the IANA registry.
        return "Overloaded" if status == 529 else "Error"


def _head(status: int, headers: Mapping[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason(status)}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode("latin-1")


@attrs.frozen
class _Point:
    index: int


@attrs.frozen
class _Event:
    name: str
    data: Mapping[str, Any]
    is_delta: bool = False


@attrs.frozen
class _Gate:
    """Wait here for ``gate`` (a hold between two events that is not a delta point)."""

    gate: threading.Event


_Step: TypeAlias = _Point | _Event | _Gate


def _text_block_steps(index: int, tokens: Sequence[str], first_point: int) -> Iterator[_Step]:
    for offset, token in enumerate(tokens):
        yield _Point(first_point + offset)
        yield _Event(
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": token}},
            is_delta=True,
        )


def _as_blocks(reply: Streamed) -> list[Block]:
    if isinstance(reply, MessageStream):
        return list(reply.blocks)
    if isinstance(reply, TextStream):
        return [TextBlock(reply.tokens)]
    text: list[Block] = [TextBlock(reply.text_before)] if reply.text_before else []
    return [*text, *(ToolUseBlock(use.name, use.id, use.json_fragments) for use in reply.tool_uses())]


def _plan_blocks(reply: MessageStream, message_id: str, model: str) -> list[_Step]:
    """The SSE events of a MessageStream, with the fault points between them."""
    message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1, **reply.usage},
    }
    steps: list[_Step] = [_Event("message_start", {"type": "message_start", "message": message})]
    point = 0
    for index, block in enumerate(reply.blocks):
        start = {"type": "content_block_start", "index": index, "content_block": _block_start(block)}
        steps.append(_Event("content_block_start", start))
        if index == 0:
            steps.append(_Event("ping", {"type": "ping"}))
        for delta in _block_deltas(block):
            steps.append(_Point(point))
            point += 1
            data = {"type": "content_block_delta", "index": index, "delta": delta}
            steps.append(_Event("content_block_delta", data, is_delta=True))
        if index < len(reply.blocks) - 1:
            steps.append(_Event("content_block_stop", {"type": "content_block_stop", "index": index}))
            if index in reply.hold_after_stop:
                steps.append(_Gate(reply.hold_after_stop[index]))
    steps.append(_Point(point))
    if reply.blocks:
        last = len(reply.blocks) - 1
        steps.append(_Event("content_block_stop", {"type": "content_block_stop", "index": last}))
        if last in reply.hold_after_stop:
            steps.append(_Gate(reply.hold_after_stop[last]))
    delta_fields: dict[str, Any] = {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence}
    if reply.stop_details is not None:
        delta_fields["stop_details"] = dict(reply.stop_details)
    output_tokens = reply.output_tokens if reply.output_tokens is not None else point
    usage = {"output_tokens": output_tokens, **reply.delta_usage}
    steps.append(_Event("message_delta", {"type": "message_delta", "delta": delta_fields, "usage": usage}))
    if not reply.omit_message_stop:
        steps.append(_Event("message_stop", {"type": "message_stop"}))
    return steps


def _plan(reply: Streamed, message_id: str, model: str) -> list[_Step]:
    """The SSE events of a streamed reply, with the fault points between them."""
    if isinstance(reply, MessageStream):
        return _plan_blocks(reply, message_id, model)
    uses = reply.tool_uses() if isinstance(reply, ToolUseStream) else []
    text = reply.tokens if isinstance(reply, TextStream) else reply.text_before
    deltas = len(text) + sum(len(use.json_fragments) for use in uses)
    message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
    }
    steps: list[_Step] = [_Event("message_start", {"type": "message_start", "message": message})]
    blocks = 0
    if isinstance(reply, TextStream) or text:
        steps.append(
            _Event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        steps.append(_Event("ping", {"type": "ping"}))
        steps.extend(_text_block_steps(0, text, 0))
        blocks = 1
    point = len(text)
    for use in uses:
        if blocks:
            steps.append(_Event("content_block_stop", {"type": "content_block_stop", "index": blocks - 1}))
        tool_block = {"type": "tool_use", "id": use.id, "name": use.name, "input": {}}
        steps.append(
            _Event(
                "content_block_start",
                {"type": "content_block_start", "index": blocks, "content_block": tool_block},
            )
        )
        if not blocks:
            steps.append(_Event("ping", {"type": "ping"}))
        for fragment in use.json_fragments:
            steps.append(_Point(point))
            point += 1
            steps.append(
                _Event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": blocks,
                        "delta": {"type": "input_json_delta", "partial_json": fragment},
                    },
                    is_delta=True,
                )
            )
        blocks += 1
    steps.append(_Point(deltas))
    steps.append(_Event("content_block_stop", {"type": "content_block_stop", "index": blocks - 1}))
    output_tokens = reply.output_tokens if reply.output_tokens is not None else deltas
    steps.append(
        _Event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
    )
    if not reply.omit_message_stop:
        steps.append(_Event("message_stop", {"type": "message_stop"}))
    return steps


def _message_json(reply: Streamed, message_id: str, model: str) -> dict[str, Any]:
    """The non-streamed Message a streamed reply adds up to."""
    blocks = _as_blocks(reply)
    deltas = sum(len(_block_deltas(block)) for block in blocks)
    extra = reply.usage if isinstance(reply, MessageStream) else {}
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": [_block_json(block) for block in blocks],
        "model": model,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence if isinstance(reply, MessageStream) else None,
        "usage": {
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens if reply.output_tokens is not None else deltas,
            **extra,
        },
    }


class AnthropicServer:
    """A scripted Messages API on 127.0.0.1, served from background threads.

    Use it as a context manager, or call ``start()`` and ``stop()``. Handler
    crashes are collected and re-raised by ``stop()`` so a broken script fails
    the test instead of hanging it.

    Args:
        default_reply: Served when the script is empty; a short ``TextStream`` if None.
        poll_interval: How often, in seconds, a server thread held at a gate
            re-checks the gate; a client close is noticed at once regardless.
        join_timeout: How long ``stop()`` waits for each thread before reporting it stuck.
    """

    def __init__(
        self,
        *,
        default_reply: Reply | None = None,
        poll_interval: float = 0.005,
        join_timeout: float = 5.0,
    ) -> None:
        self.default_reply: Reply = default_reply if default_reply is not None else TextStream(DEFAULT_TOKENS)
        self._poll_interval = poll_interval
        self._join_timeout = join_timeout
        self._lock = threading.Condition()
        self._script: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._errors: list[BaseException] = []
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._port: int | None = None

    # -- scripting and inspection -------------------------------------------------

    def script(self, reply: Reply) -> None:
        """Queue one reply for the next request."""
        with self._lock:
            self._script.append(reply)

    def script_many(self, replies: Iterable[Reply]) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._script.extend(replies)

    @property
    def base_url(self) -> str:
        """The URL to pass as the SDK's ``base_url``."""
        if self._port is None:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self._port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def disconnects(self) -> list[RecordedRequest]:
        """The requests whose client went away before the response was complete."""
        return [r for r in self.requests if r.client_closed_early]

    @property
    def open_connections(self) -> int:
        """How many client TCP connections are currently open."""
        with self._lock:
            return len(self._conns)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised in the server's threads (a bug in the server or a script)."""
        with self._lock:
            return list(self._errors)

    def wait_for_request(self, index: int, timeout: float = 5.0) -> RecordedRequest | None:
        """Block until request ``index`` (0-based) has arrived; None on timeout.

        A blocking call: from async code run it via ``anyio.to_thread.run_sync``.
        """
        with self._lock:
            self._lock.wait_for(lambda: len(self._requests) > index, timeout)
            return self._requests[index] if len(self._requests) > index else None

    def wait_until_no_connections(self, timeout: float = 5.0) -> bool:
        """Block until every client connection is closed; False on timeout.

        A blocking call: from async code run it via ``anyio.to_thread.run_sync``.
        """
        with self._lock:
            return self._lock.wait_for(lambda: not self._conns, timeout)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Bind 127.0.0.1 on a free port and start accepting."""
        if self._listener is not None:
            raise RuntimeError("the server is already started")
        if self._stopping.is_set():
            raise RuntimeError("a stopped server cannot be restarted; make a new one")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            self._wake_r, self._wake_w = socket.socketpair()
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="anthropic-server-accept", daemon=True
        )
        self._accept_thread.start()

    def stop(self) -> None:
        """Stop accepting, cut open connections, join every thread, close every socket.

        Raises:
            RuntimeError: A server thread crashed or did not stop in time.
        """
        if self._listener is None:
            return
        self._stopping.set()
        assert self._wake_w is not None
        self._wake_w.send(b"x")
        stuck: list[str] = []
        if self._accept_thread is not None:
            self._accept_thread.join(self._join_timeout)
            if self._accept_thread.is_alive():
                stuck.append(self._accept_thread.name)
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for sock in conns:
            # Wakes a handler blocked in recv() waiting for the client's next request.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(self._join_timeout)
            if thread.is_alive():
                stuck.append(thread.name)
        for owned in (self._listener, self._wake_r, self._wake_w):
            if owned is not None:
                owned.close()
        self._listener = self._wake_r = self._wake_w = None
        self._port = None
        errors = self.errors
        if stuck:
            raise RuntimeError(f"server threads did not stop: {stuck}")
        if errors:
            raise RuntimeError(f"{len(errors)} error(s) in the server's threads") from errors[0]

    def __enter__(self) -> AnthropicServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            self.stop()
        except RuntimeError:
            # Don't hide the test's own failure behind a server complaint.
            if exc is None:
                raise

    # -- server threads ----------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        assert self._wake_r is not None
        try:
            while True:
                readable, _, _ = select.select([self._listener, self._wake_r], [], [])
                if self._stopping.is_set():
                    return
                if self._listener not in readable:
                    continue
                sock, _ = self._listener.accept()
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                thread = threading.Thread(
                    target=self._serve_connection, args=(sock,), name="anthropic-server-conn", daemon=True
                )
                with self._lock:
                    self._conns.add(sock)
                    self._threads.append(thread)
                thread.start()
        except BaseException as exc:
            with self._lock:
                self._errors.append(exc)

    def _serve_connection(self, sock: socket.socket) -> None:
        conn = _Conn(sock)
        try:
            while not self._stopping.is_set():
                head = conn.read_head()
                if head is None:
                    return
                if not self._handle(conn, head):
                    return
        except (_ClientGone, _ServerStopping, _Dropped):
            pass
        except BaseException as exc:
            if not self._stopping.is_set():
                with self._lock:
                    self._errors.append(exc)
        finally:
            sock.close()
            with self._lock:
                self._conns.discard(sock)
                self._lock.notify_all()

    def _handle(self, conn: _Conn, head: bytes) -> bool:
        """Answer one request; return whether the connection may serve another."""
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise ValueError("chunked request bodies are not supported by this test server")
        raw_body = conn.read_exact(int(headers.get("content-length", "0")))
        try:
            body: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        serial = next(self._ids)
        is_messages = method == "POST" and target.split("?", 1)[0] == "/v1/messages"
        with self._lock:
            reply: Reply | None = None
            if is_messages:
                reply = self._script.popleft() if self._script else self.default_reply
            record = RecordedRequest(
                method=method,
                path=target,
                headers=headers,
                raw_body=raw_body,
                body=body,
                reply=reply,
                request_id=f"req_test_{serial:04d}",
            )
            self._requests.append(record)
            self._lock.notify_all()
        keep_alive = headers.get("connection", "").lower() != "close"
        # Each path records its outcome *before* its last write (or the cut), so a
        # client that has seen the end of the response can trust the record.
        try:
            if reply is None:
                record.outcome = "error_status"
                self._send_json(
                    conn, record, 404, _error_body("not_found_error", f"{method} {target} not found")
                )
            elif isinstance(reply, HangUp):
                self._drop(conn, record, reply.mode)
            elif isinstance(reply, ErrorReply):
                record.outcome = "error_status"
                self._send_error(conn, record, reply)
            else:
                model = body.get("model", "claude-test") if isinstance(body, dict) else "claude-test"
                message_id = f"msg_test_{serial:04d}"
                if isinstance(body, dict) and body.get("stream") is True:
                    self._stream(conn, record, reply, message_id, str(model))
                else:
                    record.outcome = "complete"
                    self._send_json(conn, record, 200, _message_json(reply, message_id, str(model)))
        except _ClientGone:
            if self._stopping.is_set():
                # stop() shut the socket down under us: that close was ours, not the client's.
                record.outcome = "server_stopped"
                raise _ServerStopping from None
            record.client_closed_early = True
            record.outcome = "client_gone"
            record.client_gone.set()
            raise
        except _ServerStopping:
            record.outcome = "server_stopped"
            raise
        finally:
            record.finished.set()
        return keep_alive

    def _send_json(
        self, conn: _Conn, record: RecordedRequest, status: int, payload: Mapping[str, Any]
    ) -> None:
        self._send_plain(conn, record, status, payload, {})

    def _send_error(self, conn: _Conn, record: RecordedRequest, reply: ErrorReply) -> None:
        extra: dict[str, str] = {}
        if reply.retry_after is not None:
            extra["retry-after"] = format(reply.retry_after, "g")
        if reply.retry_after_ms is not None:
            extra["retry-after-ms"] = format(reply.retry_after_ms, "g")
        if reply.should_retry is not None:
            extra["x-should-retry"] = "true" if reply.should_retry else "false"
        self._send_plain(conn, record, reply.status, _error_body(reply.error_type, reply.message), extra)

    def _send_plain(
        self,
        conn: _Conn,
        record: RecordedRequest,
        status: int,
        payload: Mapping[str, Any],
        extra_headers: Mapping[str, str],
    ) -> None:
        data = json.dumps(payload).encode()
        headers = {
            "content-type": "application/json",
            "content-length": str(len(data)),
            "request-id": record.request_id,
            **extra_headers,
        }
        conn.send(_head(status, headers) + data)

    def _stream(
        self,
        conn: _Conn,
        record: RecordedRequest,
        reply: Streamed,
        message_id: str,
        model: str,
    ) -> None:
        headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "transfer-encoding": "chunked",
            "request-id": record.request_id,
        }
        conn.send(_head(200, headers))
        plan = _plan(reply, message_id, model)
        final_step = plan[-1]
        for step in plan:
            if isinstance(step, _Gate):
                self._wait_at_gate(conn, step.gate)
                continue
            if isinstance(step, _Point):
                gate = reply.hold_before.get(step.index)
                if gate is not None:
                    self._wait_at_gate(conn, gate)
                if reply.drop_after == step.index:
                    self._drop(conn, record, reply.drop_mode)
                if reply.error_after == step.index:
                    record.outcome = "error_event"
                    error = _error_body(reply.error_type, reply.error_message)
                    self._send_event(conn, _sse("error", error))
                    conn.send(_LAST_CHUNK)
                    return
                continue
            if step is final_step:
                record.outcome = "complete"
            self._send_event(conn, _sse(step.name, step.data))
            if step.is_delta:
                record.deltas_sent += 1
        conn.send(_LAST_CHUNK)

    def _send_event(self, conn: _Conn, payload: bytes) -> None:
        # A write into a socket the client already closed can still succeed once,
        # so look for the close first: that makes an early close visible as such.
        if self._stopping.is_set():
            raise _ServerStopping
        if conn.peer_closed():
            raise _ClientGone
        conn.send(_chunk(payload))

    def _wait_at_gate(self, conn: _Conn, gate: threading.Event) -> None:
        while not gate.is_set():
            if self._stopping.is_set():
                raise _ServerStopping
            # Sleeps until the client sends something or closes, or the poll interval passes.
            readable, _, _ = select.select([conn.sock], [], [], self._poll_interval)
            if self._stopping.is_set():
                raise _ServerStopping
            if readable:
                if conn.peer_closed():
                    raise _ClientGone
                # Unread bytes from the client keep the socket readable; wait on the gate instead of spinning.
                gate.wait(self._poll_interval)

    def _drop(self, conn: _Conn, record: RecordedRequest, mode: Literal["close", "reset"]) -> None:
        record.outcome = "dropped"
        if mode == "reset":
            # Linger on with a zero timeout: close() then sends RST instead of FIN.
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            conn.sock.shutdown(socket.SHUT_RDWR)
        raise _Dropped


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


@pytest.fixture
def anthropic_server() -> Iterator[AnthropicServer]:
    """An ``AnthropicServer`` running for the duration of one test."""
    with AnthropicServer() as server:
        yield server
