"""``ChatAnthropic``: a chat-model node on Anthropic's Messages API (``anthropic.AsyncAnthropic``).

How a call goes:

* The input messages become a Messages API request (:func:`to_anthropic_messages`, in
  ``_anthropic_input``): system messages become the ``system`` field, tool results become
  ``tool_result`` blocks, images and documents take the API's form, an earlier reply's
  thinking blocks go back signed, and consecutive messages of one role are merged, as the
  API requires. The request options in the API's own shapes (thinking, tool choice,
  output config, cache control) are checked by ``_anthropic_options`` when the model is
  built or bound.
* The request goes out through the SDK (``messages.create(stream=True)``), so authentication,
  retries of 408/409/429/5xx/connection failures and the SDK's exception types all apply
  before the first byte of the stream arrives.
* The body is read as raw server-sent events (``AsyncStream.raw_events``) and each event
  becomes at most one ``AIMessageChunk`` the moment it arrives.

Why raw events rather than iterating the SDK's ``AsyncStream``: the SDK raises a mid-stream
``event: error`` from the middle of a stack of nested async generators, which leaves the
inner ones suspended; trio then warns about each when it is garbage collected, and nothing
public can close them. Reading raw events, every way out of the loop either comes from the
innermost read (a dropped connection, a cancellation), which finishes every layer on its way
out, or is taken by this module, which then closes the HTTP response and pulls from the same
iterator until the innermost read fails (close-then-drain). No generator is left behind on
trio or asyncio.

Client lifetime: one ``AsyncAnthropic`` per call, closed when the call ends. A node is an
immutable description shared by runs on different event loops (trio, asyncio, the sync
API's background loop), and the engine has no per-run cleanup hook, so a client cannot be
safely shared beyond one call. What makes a client expensive is its TLS context (about
30-100 ms of certificate loading on the event loop); that context is made once per process
in a worker thread and handed to every client, which brings construction under a millisecond.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import os
import ssl
import warnings
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self

import anyio
import anyio.to_thread
import attrs

from ._anthropic_input import SystemContent, to_anthropic_messages
from ._anthropic_options import (
    check_thinking_budget,
    check_thinking_tool_choice,
    check_tool_choice,
    merge_output_config,
    to_cache_control,
    to_effort,
    to_output_config,
    to_thinking,
    to_tool_choice,
    with_parallel_tool_calls,
)
from ._anthropic_tools import to_tool_definitions
from ._chat_model import BaseChatModel
from ._exceptions import SecretShippedWarning
from ._messages import (
    AIMessageChunk,
    BaseMessage,
    ToolCallChunk,
    UsageMetadata,
)

if TYPE_CHECKING:
    # Imported where used at run time: the SDK takes seconds to import, which every
    # `import nodes` would otherwise pay, model or no model.
    import anthropic
    import httpx2

__all__ = (
    "ChatAnthropic",
    "MissingCredentialsError",
    "ModelStreamError",
    "SystemContent",
    "to_anthropic_messages",
)

_API_KEY_ENV: Final = "ANTHROPIC_API_KEY"
_BASE_URL_ENV: Final = "ANTHROPIC_BASE_URL"
# Cleanup runs shielded from cancellation, so it needs its own bound: a wedged peer must
# not hold a cancelled run open for longer than this.
_CLEANUP_SECONDS: Final = 5.0


# The error types of an ``event: error`` worth another attempt: the stream forms of 529, 429, 500.
_TRANSIENT_ERROR_TYPES: Final = frozenset({"overloaded_error", "rate_limit_error", "api_error"})


class MissingCredentialsError(RuntimeError):
    """No API key: neither the ``api_key`` argument nor the ``ANTHROPIC_API_KEY`` variable is set."""


class ModelStreamError(RuntimeError):
    """The model's stream failed after the response had started; nothing was retried.

    The chunks delivered before the failure stay delivered; the error says how many there
    were. The underlying error, if any, is the ``__cause__``.

    Attributes:
        chunks_delivered: How many chunks the node had yielded before the failure.
        error_type: The API's ``error.type`` for an ``event: error`` (such as
            ``"overloaded_error"``), otherwise ``None``.
        request_id: The response's ``request-id`` header, for support requests.
    """

    def __init__(
        self,
        message: str,
        *,
        chunks_delivered: int,
        error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """Record the failure.

        Args:
            message: What happened, in words a user can act on.
            chunks_delivered: How many chunks had been yielded before it happened.
            error_type: The API's ``error.type``, for an ``event: error``.
            request_id: The response's ``request-id`` header.
        """
        super().__init__(message)
        self.chunks_delivered = chunks_delivered
        self.error_type = error_type
        self.request_id = request_id

    @property
    def transient(self) -> bool:
        """Whether another attempt may well succeed (read by ``engine.is_transient_error``).

        True for an ``overloaded_error``, ``rate_limit_error`` or ``api_error`` event (the
        API's 529, 429 and 500 sent mid-stream) and for a connection that broke; false
        for anything else (a malformed event, a stream cut short without an error). Only
        a failure before the commit point is retried: ``with_retry`` decides that, not
        this error.
        """
        if self.error_type in _TRANSIENT_ERROR_TYPES:
            return True
        import httpx2

        return isinstance(self.__cause__, httpx2.TransportError)

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException's reduce re-calls the class with ``args`` alone, which would drop
        # the keyword-only fields; pickling (process pools, caches) must round-trip them.
        keywords: dict[str, Any] = {
            "chunks_delivered": self.chunks_delivered,
            "error_type": self.error_type,
            "request_id": self.request_id,
        }
        return (functools.partial(type(self), **keywords), self.args, self.__dict__)


# -- the stream -------------------------------------------------------------------------


class _MalformedEventError(Exception):
    """An event whose JSON does not have the shape the Messages API documents."""


def _field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], event: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise _MalformedEventError(f"a {event!r} event without a valid {key!r}: {data!r}")
    return value


def _prompt_tokens(usage: Mapping[str, Any]) -> int:
    # Cached prompt tokens are reported apart from input_tokens; they are still prompt.
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return sum(value for key in keys if isinstance(value := usage.get(key), int))


# usage.py: the cache counts, under langchain-core's InputTokenDetails names.
_CACHE_DETAILS: Final = (
    ("cache_read_input_tokens", "cache_read"),
    ("cache_creation_input_tokens", "cache_creation"),
)


def _cache_details(usage: Mapping[str, Any]) -> dict[str, int] | None:
    details = {name: value for key, name in _CACHE_DETAILS if isinstance(value := usage.get(key), int)}
    return details or None


def _reasoning_tokens(usage: Mapping[str, Any]) -> int | None:
    # output_tokens_details.py: thinking_tokens, a part of output_tokens.
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("thinking_tokens"), int):
        return int(details["thinking_tokens"])
    return None


# The content blocks that carry thinking; once one is seen, tool_use blocks join the content
# too, so that the summed message keeps thinking and tool calls in the order the API wants back.
_THINKING_BLOCKS: Final = frozenset({"thinking", "redacted_thinking"})


@attrs.define
class _Translator:
    """Turns Messages API stream events into ``AIMessageChunk``s, one event at a time.

    Text deltas are string content (the common path costs no dict per token). A
    thinking block streams as content blocks ``{"type": "thinking", "thinking": ...,
    "index": i}`` then ``{"type": "thinking", "signature": ..., "index": i}``, which add
    up (by ``index``) to the whole block; a redacted thinking block arrives whole. After
    a thinking block (or from the start, when thinking was asked for), a tool call also puts
    its ``tool_use`` block in the content, so the blocks of the summed message stay in the
    API's order.

    Attributes:
        produced: How many chunks it has produced. Each carries the message id (from
            ``message_start``); the one for ``message_stop`` is marked ``chunk_position="last"``.
        complete: Whether ``message_stop`` has arrived.
    """

    message_id: str | None = None
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_details: dict[str, int] | None = None
    reasoning_tokens: int | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    stop_details: dict[str, Any] | None = None
    thinking_seen: bool = False
    tool_block: int | None = None
    produced: int = 0
    complete: bool = False

    def _chunk(self, **fields: Any) -> AIMessageChunk:
        self.produced += 1
        return AIMessageChunk(id=self.message_id, **fields)

    def feed(self, event: str, data: Mapping[str, Any]) -> AIMessageChunk | None:
        """The chunk for one event (``None`` for events that carry nothing to stream).

        Raises:
            _MalformedEventError: If the event lacks a field it must have.
        """
        if event == "content_block_delta":
            # The per-token path: text and tool-argument deltas are handled here, inline.
            index = _field(data, "index", int, event)
            delta = _field(data, "delta", dict, event)
            kind = delta.get("type")
            if kind == "text_delta":
                self.produced += 1
                return AIMessageChunk.from_text(_field(delta, "text", str, event), self.message_id)
            if kind == "input_json_delta":
                fragment = _field(delta, "partial_json", str, event)
                return self._chunk(content="", tool_call_chunks=[ToolCallChunk(args=fragment, index=index)])
            return self._thinking_delta(index, delta)
        if event == "content_block_start":
            return self._block_start(data)
        if event == "content_block_stop":
            return self._block_stop(data)
        if event == "message_start":
            message = _field(data, "message", dict, event)
            message_id = message.get("id")
            # Checked once here: every chunk of the reply carries it, unchecked.
            self.message_id = message_id if isinstance(message_id, str) else None
            self.model = message.get("model")
            usage = message.get("usage")
            if isinstance(usage, dict):
                self.input_tokens = _prompt_tokens(usage)
                self.cache_details = _cache_details(usage)
                self.reasoning_tokens = _reasoning_tokens(usage)
            return None
        if event == "message_delta":
            self._message_delta(data)
            return None
        if event == "message_stop":
            self.complete = True
            return self._chunk(
                content="",
                usage_metadata=self._usage(),
                response_metadata=self._metadata(),
                chunk_position="last",
            )
        # Event types newer than this code carry nothing to stream.
        return None

    def _block_start(self, data: Mapping[str, Any]) -> AIMessageChunk | None:
        event = "content_block_start"
        index = _field(data, "index", int, event)
        block = _field(data, "content_block", dict, event)
        kind = block.get("type")
        if kind == "text":
            return self._chunk(content=block["text"]) if block.get("text") else None
        if kind == "tool_use":
            self.tool_block = index
            call = ToolCallChunk(name=block.get("name"), id=block.get("id"), args="", index=index)
            if not self.thinking_seen:
                return self._chunk(content="", tool_call_chunks=[call])
            use = {"type": "tool_use", "id": block.get("id"), "name": block.get("name"), "input": {}}
            return self._chunk(content=[{**use, "index": index}], tool_call_chunks=[call])
        if kind in _THINKING_BLOCKS:
            self.thinking_seen = True
            if kind == "thinking" and not block.get("thinking") and not block.get("signature"):
                # An empty start, as the API sends it: the deltas carry the block.
                return None
            return self._chunk(content=[{**block, "index": index}])
        # Server tool blocks and block types newer than this code are not streamed.
        return None

    def _block_stop(self, data: Mapping[str, Any]) -> AIMessageChunk | None:
        index = _field(data, "index", int, "content_block_stop")
        if index != self.tool_block:
            return None
        # The end of a tool_use block: its arguments are complete. A fragment with only
        # the index says so (it adds nothing to the call), so that a consumer can run the
        # call now rather than when the next block or the message's end shows it.
        self.tool_block = None
        return self._chunk(content="", tool_call_chunks=[ToolCallChunk(index=index)])

    def _thinking_delta(self, index: int, delta: Mapping[str, Any]) -> AIMessageChunk | None:
        event = "content_block_delta"
        kind = delta.get("type")
        if kind == "thinking_delta":
            thinking = _field(delta, "thinking", str, event)
            return self._chunk(content=[{"type": "thinking", "thinking": thinking, "index": index}])
        if kind == "signature_delta":
            signature = _field(delta, "signature", str, event)
            return self._chunk(content=[{"type": "thinking", "signature": signature, "index": index}])
        # Citation deltas are not part of this node's output.
        return None

    def _message_delta(self, data: Mapping[str, Any]) -> None:
        delta = _field(data, "delta", dict, "message_delta")
        self.stop_reason = delta.get("stop_reason", self.stop_reason)
        self.stop_sequence = delta.get("stop_sequence", self.stop_sequence)
        if isinstance(delta.get("stop_details"), dict):
            self.stop_details = delta["stop_details"]
        usage = data.get("usage")
        if not isinstance(usage, dict):
            return
        # The output count is cumulative: the last one is the total. The prompt count
        # stays message_start's, which is the one that always has the cache counts.
        if isinstance(usage.get("output_tokens"), int):
            self.output_tokens = usage["output_tokens"]
        reasoning = _reasoning_tokens(usage)
        if reasoning is not None:
            self.reasoning_tokens = reasoning

    def _usage(self) -> UsageMetadata:
        reasoning = None if self.reasoning_tokens is None else {"reasoning": self.reasoning_tokens}
        return UsageMetadata(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            input_token_details=self.cache_details,
            output_token_details=reasoning,
        )

    def _metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"model_name": self.model, "stop_reason": self.stop_reason}
        if self.stop_sequence is not None:
            metadata["stop_sequence"] = self.stop_sequence
        if self.stop_details is not None:
            metadata["stop_details"] = self.stop_details
        return metadata


class _EventReader:
    """The raw server-sent events of one streamed response, with a close that leaves nothing behind."""

    def __init__(self, response: httpx2.Response) -> None:
        import anthropic

        self.response = response
        self._events = anthropic.AsyncStream.raw_events(response)
        self._exhausted = False

    async def next(self) -> tuple[str, str] | None:
        """The next named event as ``(event, data)``, or ``None`` at the end of the body.

        Raises:
            httpx2.HTTPError: If the body cannot be read (a dropped connection, a timeout).
        """
        while True:
            try:
                sse = await self._events.__anext__()
            except StopAsyncIteration:
                self._exhausted = True
                return None
            # Unnamed events and pings carry nothing (the SDK drops them too).
            if sse.event is not None and sse.event != "ping":
                return sse.event, sse.data

    async def close(self) -> None:
        """Close the response; if the body was not read to its end, drain the iterator.

        Pulling until the read of the closed response fails finishes each nested generator
        of the SDK and httpx2 from the inside out, instead of leaving them suspended for
        the garbage collector (which trio warns about). An iterator that already failed
        ends the drain at once.
        """
        await self.response.aclose()
        while not self._exhausted:
            try:
                await self._events.__anext__()
            except StopAsyncIteration:
                self._exhausted = True
            except Exception:
                # The expected end of a drain: reading the closed response fails.
                self._exhausted = True


_ssl_context: ssl.SSLContext | None = None


def _load_sdk() -> ssl.SSLContext:
    importlib.import_module("anthropic")
    import httpx2

    return httpx2.create_ssl_context()


async def _prepare_sdk() -> ssl.SSLContext:
    """Import the SDK and make the TLS context every client of this process shares.

    Both block for a long time (the import for seconds, loading the certificate store
    for tens of milliseconds), so the first call does them in a worker thread rather than
    stalling the event loop; later calls return at once. Two calls racing on the first
    use may both make a context; either will do.
    """
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = await anyio.to_thread.run_sync(_load_sdk)
    return _ssl_context


def _delivered(count: int) -> str:
    if count == 0:
        return "before any chunk was delivered"
    return f"after {count} chunk{'s' if count != 1 else ''} had been delivered"


def _error_event(
    raw: str, delivered: int, response: httpx2.Response
) -> tuple[ModelStreamError, anthropic.APIStatusError]:
    """The error for an ``event: error`` in the stream, and the SDK's own exception for it (its cause)."""
    import anthropic

    try:
        body: object = json.loads(raw)
    except ValueError:
        body = raw
    # The class the SDK itself raises for an error event (a plain APIStatusError carrying
    # the stream's HTTP status, 200), so that callers can classify the cause the same way.
    cause = anthropic.APIStatusError(str(body), response=response, body=body)
    error = ModelStreamError(
        f"the Messages API stream failed mid-response with {cause.type or 'an error'}: "
        f"{cause.api_message or raw} {_delivered(delivered)}; the SDK does not retry a failure "
        "after the stream has started (with_retry does, before the first content chunk)",
        chunks_delivered=delivered,
        error_type=cause.type,
        request_id=cause.request_id,
    )
    return error, cause


def _to_stop(value: Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"stop must be a list of strings, got the string {value!r}")
    return tuple(value)


def _check_temperature(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"temperature must be between 0 and 1, got {value}")


@attrs.frozen(eq=False, repr=False)
class ChatAnthropic(BaseChatModel):
    """A chat model served by Anthropic's Messages API, streamed token by token.

    Each text delta is yielded as an ``AIMessageChunk`` as soon as it arrives. A tool call
    streams as ``tool_call_chunks`` (name and id first, then the JSON argument fragments,
    then, at the block's ``content_block_stop``, an end marker: a fragment with only the
    call's ``index``, which adds nothing), so the chunks add up to a message with parsed
    ``tool_calls``. Every chunk carries the message id (``message_start``'s ``msg_...``);
    a final chunk, marked ``chunk_position="last"``, with empty content carries ``usage_metadata`` (with the
    prompt cache's counts in ``input_token_details`` and thinking tokens in
    ``output_token_details``, when reported) and ``response_metadata`` (``model_name``,
    ``stop_reason``, and ``stop_sequence``/``stop_details`` when the API sends them; the
    message's ``stop_reason``, ``truncated`` and ``refused`` properties read them).

    With thinking on, each thinking or signature delta is a chunk whose content is one
    block, ``{"type": "thinking", "thinking": ..., "index": i}`` or ``{"type":
    "thinking", "signature": ..., "index": i}``; they add up to the whole signed block,
    in order with the text and (after a thinking block) ``tool_use`` blocks, and the
    summed message sent back on the next turn gives the API the blocks it sent. A
    ``redacted_thinking`` block arrives whole and goes back unchanged.

    Args:
        model: The model name, such as ``"claude-sonnet-4-5"``.
        max_tokens: The most tokens the reply may have.
        temperature: Sampling temperature, 0 to 1; not sent when ``None``. The installed
            SDK has no such parameter (its API version, ``2026-10-21``, dropped the
            sampling parameters), so it is sent through ``extra_body``; an API that
            refuses it answers 400, raised as ``anthropic.BadRequestError``.
        stop: Stop sequences.
        api_key: The API key; ``ANTHROPIC_API_KEY`` when ``None`` (read at call time).
            No other credential source of the SDK (auth tokens, profiles) is consulted.
        base_url: The API's URL; ``ANTHROPIC_BASE_URL`` or the SDK's default when ``None``.
        max_retries: How often the SDK retries a failed request before the stream starts.
        timeout: The SDK's request timeout in seconds (connect, and each read).
        name: The name this step's events carry.
        tools: Tool definitions sent with each request, in any form :meth:`bind_tools`
            takes.
        tool_choice: How the model must use the tools: ``"auto"``, ``"any"``, ``"none"``,
            a tool's name (``{"type": "tool", "name": ...}``), or the API's dict
            (which may carry ``disable_parallel_tool_use``). A choice that forces a
            tool that is not bound is refused before any request, and so is a choice
            that forces a tool (``"any"``, a name) while ``thinking`` is ``enabled`` or
            ``adaptive``: the API allows only ``"auto"`` and ``"none"`` with thinking.
        output_config: The API's ``output_config`` as a dict, such as ``{"format":
            {"type": "json_schema", "schema": {...}}}``; keys set to ``None`` are left out.
        effort: The ``output_config.effort`` level: ``"low"``, ``"medium"``,
            ``"high"``, ``"xhigh"`` or ``"max"``; merged into ``output_config``.
        thinking: The API's thinking config: ``{"type": "enabled", "budget_tokens":
            n}`` (``n`` at least 1024 and less than ``max_tokens``, checked at once),
            ``{"type": "adaptive"}``, ``{"type": "disabled"}`` or ``{"type":
            "between_tools"}``, with an optional ``"display"``.
        cache_control: The request's top-level ``cache_control`` (``{"type":
            "ephemeral"}``, optionally with ``"ttl": "1h"``), with which the API marks
            the last cacheable block itself. Blocks, system blocks and tool dicts carry
            their own ``cache_control`` as given.

    ``model.bind(...)`` takes ``stop`` (sent as ``stop_sequences``), ``max_tokens``,
    ``temperature``, ``tools``, ``tool_choice``, ``output_config``, ``effort``,
    ``thinking`` and ``cache_control``, and returns a copy with them set, checked as the
    constructor checks them. A bound ``output_config`` merges into the model's, key by
    key (a key bound to ``None`` is removed), so ``bind(output_config={"format": ...})``
    keeps an effort set before.

    Raises:
        ValueError: For a bad argument value (at construction).
        TypeError: If ``stop`` is a string rather than a list of strings, or an option
            is not of the API's shape.

    A call (a run of this step) raises:

    * :class:`MissingCredentialsError` when there is no API key;
    * the SDK's own exceptions (``anthropic.RateLimitError``, ``OverloadedError``,
      ``APIConnectionError``...) for a failure before the stream starts, after the SDK's
      ``max_retries`` retries;
    * :class:`ModelStreamError` for a failure after it started (an ``event: error``, a
      broken connection, a body that ends without ``message_stop``), never retried,
      once the chunks before it have been delivered.
    """

    reads_current_step: ClassVar[bool] = False
    #: What ``bind(...)`` accepts (argument: field).
    call_arguments: ClassVar[Mapping[str, str]] = {
        "stop": "stop",
        "max_tokens": "max_tokens",
        "temperature": "temperature",
        "tools": "tools",
        "tool_choice": "tool_choice",
        "output_config": "output_config",
        "effort": "effort",
        "thinking": "thinking",
        "cache_control": "cache_control",
    }
    #: Claude's native structured output (``output_config.format``): the API holds the
    #: reply to the schema, and it streams as text deltas (see ANTHROPIC-SDK-NOTES.md).
    default_structured_output_method: ClassVar[str] = "json_schema"

    model: str = attrs.field(validator=attrs.validators.min_len(1))
    max_tokens: int = attrs.field(default=1024, validator=attrs.validators.ge(1))
    temperature: float | None = attrs.field(default=None, validator=_check_temperature)
    stop: tuple[str, ...] | None = attrs.field(default=None, converter=_to_stop)
    api_key: str | None = None
    base_url: str | None = None
    max_retries: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    name_: str = attrs.field(default="ChatAnthropic", alias="name")
    tools: tuple[dict[str, Any], ...] = attrs.field(default=(), converter=to_tool_definitions)
    tool_choice: dict[str, Any] | None = attrs.field(default=None, converter=to_tool_choice)
    output_config: dict[str, Any] | None = attrs.field(default=None, converter=to_output_config)
    effort: str | None = attrs.field(default=None, converter=to_effort)
    thinking: dict[str, Any] | None = attrs.field(default=None, converter=to_thinking)
    cache_control: dict[str, Any] | None = attrs.field(default=None, converter=to_cache_control)

    def __attrs_post_init__(self) -> None:
        merge_output_config(self.output_config, self.effort, self.get_name())
        check_thinking_budget(self.thinking, self.max_tokens, self.get_name())
        # Here, so that whichever of the two is set last (constructor, bind, bind_tools)
        # fails at once, before any request.
        check_thinking_tool_choice(self.thinking, self.tool_choice, self.get_name())
        if self.tools:
            # Without tools the choice may still be waiting for bind_tools; the call checks it.
            check_tool_choice(self.tool_choice, self.tools, self.get_name())

    def get_name(self) -> str:
        return self.name_

    # -- pickling: a key given explicitly travels with the model; say so ----------------

    def _state(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in attrs.fields(type(self))}

    def __getstate__(self) -> dict[str, Any]:
        if self.api_key:
            warnings.warn(
                f"{self.get_name()} is being pickled with its explicit api_key: the key travels "
                "in the pickle (to a Ray worker, a process pool...). Leave api_key unset and "
                f"set {_API_KEY_ENV} in the workers' environment (Ray: runtime_env) instead",
                SecretShippedWarning,
                stacklevel=2,
            )
        return self._state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def __copy__(self) -> Self:
        return self  # immutable: a copy in this process ships nothing anywhere

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        copied = object.__new__(type(self))
        memo[id(self)] = copied
        copied.__setstate__(copy.deepcopy(self._state(), memo))
        return copied

    def _thinking_on(self) -> bool:
        return self.thinking is not None and self.thinking["type"] != "disabled"

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | Mapping[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
    ) -> ChatAnthropic:
        """A copy of this model that offers ``tools`` to the model (replacing any bound before).

        Args:
            tools: ``Tool`` objects (sent as ``Tool.to_anthropic()``), plain functions
                (made tools with ``@tool``), schema classes (a pydantic model, a
                dataclass, an attrs class or a ``TypedDict``: named after the class,
                described by its docstring), the API's tool dicts (sent as given, so a
                dict may carry ``cache_control``; a server tool's dict, whose ``type``
                is not ``"custom"``, too) or OpenAI's ``{"type": "function",
                "function": {"name", "description", "parameters"}}``. Each is
                converted here, once.
            tool_choice: How the model must use them: ``"auto"``, ``"any"``, ``"none"``,
                a tool's name (forces that tool), or the API's dict such as ``{"type":
                "tool", "name": ...}``. ``None`` keeps the choice bound before, if any.
            parallel_tool_calls: ``False`` sends ``disable_parallel_tool_use: true`` (at
                most one tool call per turn; with no ``tool_choice``, on ``"auto"``).

        Returns:
            The new model; this one is unchanged.

        Raises:
            TypeError: If an item is none of those, or ``tool_choice`` is of no accepted
                shape.
            ValueError: If a custom tool's dict has no ``input_schema``, a tool's name
                does not match the API's pattern (``^[a-zA-Z0-9_-]{1,64}$``),
                ``tool_choice`` names a tool that is not among ``tools``, or it forces a
                tool call while thinking is on.
        """
        choice = self.tool_choice if tool_choice is None else to_tool_choice(tool_choice)
        if parallel_tool_calls is not None:
            choice = with_parallel_tool_calls(choice, parallel_tool_calls)
        return attrs.evolve(self, tools=to_tool_definitions(tools), tool_choice=choice)

    def with_call_arguments(self, arguments: Mapping[str, Any]) -> Self:
        config = arguments.get("output_config")
        if self.output_config and isinstance(config, Mapping):
            # Bound key by key, so that binding a format keeps an effort (and the reverse);
            # a key bound to None is dropped by the converter.
            arguments = {**arguments, "output_config": {**self.output_config, **config}}
        return super().with_call_arguments(arguments)

    def request_params(self, messages: Sequence[BaseMessage]) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` for ``messages`` (without ``stream``).

        Args:
            messages: The conversation.

        Returns:
            ``model``, ``max_tokens`` and ``messages``, plus ``system``,
            ``stop_sequences``, ``tools``, ``tool_choice``, ``output_config``,
            ``thinking``, ``cache_control`` and ``extra_body`` (holding ``temperature``)
            where set.

        Raises:
            ValueError: If the messages cannot be expressed in the API (see
                :func:`to_anthropic_messages`), or ``tool_choice`` forces a tool that
                is not bound.
        """
        system, converted = to_anthropic_messages(messages)
        params: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "messages": converted}
        if system is not None:
            params["system"] = system
        if self.temperature is not None:
            # This SDK's create() has no sampling parameters (they were dropped with the API
            # version it sends); extra_body is its documented way to send a field it lacks.
            params["extra_body"] = {"temperature": self.temperature}
        if self.stop:
            params["stop_sequences"] = list(self.stop)
        if self.tools:
            params["tools"] = [dict(tool) for tool in self.tools]
        if self.tool_choice is not None:
            check_tool_choice(self.tool_choice, self.tools, self.get_name())
            params["tool_choice"] = dict(self.tool_choice)
        output_config = merge_output_config(self.output_config, self.effort, self.get_name())
        if output_config is not None:
            params["output_config"] = output_config
        if self.thinking is not None:
            params["thinking"] = dict(self.thinking)
        if self.cache_control is not None:
            params["cache_control"] = dict(self.cache_control)
        return params

    def _credentials(self) -> tuple[str, str | None]:
        api_key = self.api_key or os.environ.get(_API_KEY_ENV)
        if not api_key:
            raise MissingCredentialsError(
                f"{self.get_name()} has no Anthropic API key: set the {_API_KEY_ENV} environment "
                "variable or pass api_key=... to ChatAnthropic"
            )
        return api_key, self.base_url or os.environ.get(_BASE_URL_ENV) or None

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        params = self.request_params(messages)
        api_key, base_url = self._credentials()
        ssl_context = await _prepare_sdk()
        import anthropic

        http_client = anthropic.DefaultAsyncHttpxClient(verify=ssl_context)
        try:
            client = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                max_retries=self.max_retries,
                timeout=self.timeout,
                http_client=http_client,
            )
        except BaseException:
            await http_client.aclose()
            raise
        try:
            # HTTP errors raise from here, as the SDK's own types, after the SDK's retries.
            stream = await client.messages.create(**params, stream=True)
            reader = _EventReader(stream.response)
            try:
                # With thinking asked for, tool_use blocks join the content from the start.
                translator = _Translator(thinking_seen=self._thinking_on())
                while (event := await self._next_event(reader, translator)) is not None:
                    chunk = self._chunk_for(event, translator, reader.response)
                    if chunk is not None:
                        yield chunk
                if not translator.complete:
                    raise ModelStreamError(
                        "the Messages API stream ended without message_stop "
                        f"{_delivered(translator.produced)}; the reply may be cut short",
                        chunks_delivered=translator.produced,
                        request_id=reader.response.headers.get("request-id"),
                    )
            finally:
                # At once, whatever ended the call: a consumer that left, a cancellation, a failure.
                with anyio.move_on_after(_CLEANUP_SECONDS, shield=True):
                    await reader.close()
        finally:
            with anyio.move_on_after(_CLEANUP_SECONDS, shield=True):
                await client.close()

    @staticmethod
    async def _next_event(reader: _EventReader, translator: _Translator) -> tuple[str, str] | None:
        import httpx2

        try:
            return await reader.next()
        except httpx2.HTTPError as exc:
            if translator.complete:
                # Only the end of the body was lost; the message itself is whole.
                return None
            raise ModelStreamError(
                f"the connection to the Messages API broke mid-response ({type(exc).__name__}: {exc}) "
                f"{_delivered(translator.produced)}; the SDK does not retry a failure after the stream "
                "has started (with_retry does, before the first content chunk)",
                chunks_delivered=translator.produced,
                request_id=reader.response.headers.get("request-id"),
            ) from exc

    @staticmethod
    def _chunk_for(
        event: tuple[str, str], translator: _Translator, response: httpx2.Response
    ) -> AIMessageChunk | None:
        name, raw = event
        if translator.complete:
            # Nothing belongs to the message after message_stop.
            return None
        if name == "error":
            error, cause = _error_event(raw, translator.produced, response)
            raise error from cause
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise _MalformedEventError(f"a {name!r} event whose data is not a JSON object: {raw[:200]!r}")
            return translator.feed(name, data)
        except (ValueError, _MalformedEventError) as exc:
            raise ModelStreamError(
                f"the Messages API sent a malformed {name!r} event {_delivered(translator.produced)}: {exc}",
                chunks_delivered=translator.produced,
                request_id=response.headers.get("request-id"),
            ) from exc

    def __repr__(self) -> str:
        shown = [f"model={self.model!r}", f"max_tokens={self.max_tokens}"]
        if self.temperature is not None:
            shown.append(f"temperature={self.temperature}")
        if self.stop:
            shown.append(f"stop={list(self.stop)!r}")
        if self.tools:
            shown.append(f"tools={[tool.get('name') for tool in self.tools]!r}")
        if self.tool_choice is not None:
            shown.append(f"tool_choice={self.tool_choice!r}")
        if self.output_config is not None:
            shown.append(f"output_config={self.output_config!r}")
        if self.effort is not None:
            shown.append(f"effort={self.effort!r}")
        if self.thinking is not None:
            shown.append(f"thinking={self.thinking!r}")
        if self.cache_control is not None:
            shown.append(f"cache_control={self.cache_control!r}")
        if self.name_ != "ChatAnthropic":
            shown.append(f"name={self.name_!r}")
        return f"ChatAnthropic({', '.join(shown)})"
