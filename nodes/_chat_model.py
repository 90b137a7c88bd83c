"""The chat-model base every model node shares, and the scripted model for offline use.

A chat model is an aggregate step that streams: it waits for its whole input (a string,
messages or a prompt value), then streams its reply one ``AIMessageChunk`` at a time.
The base class does the input conversion and the ``on_chat_model_*`` events; a model
node implements only :meth:`BaseChatModel.stream_chunks`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import attrs

from engine import AggregateNode, RunnableSequence, Step

from ._messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ToolCallChunk,
    UsageMetadata,
    coerce_to_messages,
)

if TYPE_CHECKING:
    from ._structured import StructuredOutputMethod

__all__ = ("BaseChatModel", "ScriptedChatModel", "ScriptedReply", "split_tokens")


class BaseChatModel(AggregateNode[Any, AIMessageChunk]):
    """The shared base of chat-model nodes.

    Subclasses implement :meth:`stream_chunks`, yielding ``AIMessageChunk``s as the
    model produces them (langchain-core's ``_astream``). The base converts the input
    (``str``, a list of messages or ``(role, text)`` pairs, or a prompt value) to
    messages, names the events ``on_chat_model_*`` and puts ``{"messages": [[...]]}``
    in their input. ``compute`` is the base's own: a model overrides
    :meth:`stream_chunks` only (and ``reads_current_step = False`` when its code never
    calls back into the engine).
    """

    kind: ClassVar[str] = "chat_model"
    #: The ``method`` of :meth:`with_structured_output` when none is given. The base's is
    #: ``"function_calling"`` (any model with ``bind_tools`` can do it); a model with a
    #: native structured output says ``"json_schema"``.
    default_structured_output_method: ClassVar[str] = "function_calling"

    def with_structured_output(
        self, schema: Any, *, method: StructuredOutputMethod | None = None, include_raw: bool = False
    ) -> RunnableSequence[Any, Any]:
        """This model, answering with a value that fits ``schema``, streamed as it is written.

        Returns ``bound_model | parser``: ``astream`` yields partial snapshots (plain JSON
        values, each extending the last) while the JSON arrives, and as its last chunk the
        final value, checked against the schema and converted to its type; ``ainvoke``
        returns that value. Each fragment of the JSON is parsed once (see
        ``nodes/_structured.py``).

        Args:
            schema: A JSON-schema dict (or a tool definition with ``name`` and
                ``input_schema``), a dataclass, an attrs class, a ``TypedDict``, or a pydantic
                model if pydantic is installed. The final value is an instance of the class
                (a dict for a ``TypedDict`` or a dict schema).
            method: ``"json_schema"``: the model's native structured output
                (``output_config.format``; the reply is the JSON text).
                ``"function_calling"``: the schema as a tool the model is made to call
                (``tool_choice`` names it; its arguments are the JSON). ``None``:
                :attr:`default_structured_output_method`.
            include_raw: Yield and return ``{"raw": ..., "parsed": ..., "parsing_error":
                ...}`` as langchain-core does; a reply that does not parse or fit then gives
                ``parsing_error`` instead of raising.

        Raises:
            UnsupportedSchemaError: For a schema kind, a field type or a JSON-schema keyword
                with no converter here, or one ``method`` cannot express (at once, before any
                request).
            TypeError: If ``include_raw`` is not a bool or this model cannot be bound for
                ``method``.
            ValueError: For an unknown ``method``.
        """
        from ._structured import structured_output

        return structured_output(
            self,
            schema,
            method=method,
            include_raw=include_raw,
            default_method=self.default_structured_output_method,
        )

    def _messages(self, value: Any) -> list[BaseMessage]:
        return coerce_to_messages(value, where=f"the input of {self.get_name()}")

    def carries_content(self, chunk: Any) -> bool:
        """A chunk with text, a tool-call delta or a thinking (or other) content block
        carries content; one with only an id, usage or metadata does not."""
        if not isinstance(chunk, AIMessageChunk):
            return True
        content = chunk.content
        return bool(content) or bool(chunk.tool_call_chunks)

    def start_event_input(self, value: Any) -> Any:
        try:
            return {"messages": [self._messages(value)]}
        except (TypeError, ValueError):
            # A bad input fails in the actor, where it becomes the step's error event.
            return value

    def compute(self, value: Any, step: Step) -> AsyncIterator[AIMessageChunk]:
        messages = self._messages(value)
        step.set_input({"messages": [messages]})
        # The stream itself is the step's output: the engine closes it in the actor's own
        # task when the step ends, so a model's HTTP stream never waits for the garbage
        # collector (and costs no wrapper generator per token).
        return self.stream_chunks(messages)

    def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        """Yield the reply to ``messages`` chunk by chunk, as the model produces it.

        Implement it as an async generator. The engine calls it once per run of the
        step, with the whole input converted to messages, and the generator it returns
        is the step's output itself: each chunk is sent downstream (after its
        ``on_chat_model_stream`` event) before the next is asked for, so a slow
        consumer holds the model at its ``yield`` once the bounded edge between them is
        full. Chunks add up with ``+`` into the
        reply.

        As langchain-core's models do, every chunk should carry the reply's id (the
        provider's message id) and the last one ``chunk_position="last"``; the base does
        not add them (that would cost a wrapper per chunk), so a model sets them itself
        (``AIMessageChunk.from_text(text, id)`` is the cheap way for text).

        It may await anything (an HTTP stream, a sleep). It must not hold a cancel
        scope or task group open across a ``yield`` (the engine resumes it once per
        chunk from its own loop; PEP 789) and must not block the event loop.

        The engine closes the generator (``aclose()``) in the task that iterated it when
        the step ends: after its last chunk, on an error, or when the run is cancelled or
        stopped from downstream, so a ``finally`` or ``async with`` around the model's
        stream releases it there and then (never in the garbage collector). Those
        cleanups run inside the run's cancel scope: one that must await when the run
        was cancelled shields itself and bounds its wait, as ``ChatAnthropic`` does.
        """
        raise NotImplementedError

    async def ainvoke(self, input: Any, config: Any = None) -> AIMessage:  # type: ignore[override]
        """Run the model and return the whole reply as an ``AIMessage``."""
        chunk = await super().ainvoke(input, config)
        return chunk.to_message()


_TOKEN = re.compile(r"\s*\S+|\s+")


def split_tokens(text: str) -> list[str]:
    """Split ``text`` into word tokens, each carrying the whitespace before it.

    ``" Hello! My name"`` gives ``[" Hello!", " My", " name"]``, like a tokenizer's
    pieces; joining the tokens gives back the text exactly.
    """
    return _TOKEN.findall(text)


def _stop_sequences(value: Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"stop must be a list of strings, got {value!r}")
    if not all(value):
        raise ValueError(f"a stop sequence must not be empty, got {list(value)!r}")
    return tuple(value)


def _cut_at_stop(tokens: list[str], stop: tuple[str, ...]) -> list[str]:
    """``tokens`` up to (not including) the first place any ``stop`` sequence occurs."""
    text = "".join(tokens)
    cut = min((at for sequence in stop if (at := text.find(sequence)) >= 0), default=-1)
    if cut < 0:
        return tokens
    kept: list[str] = []
    length = 0
    for token in tokens:
        if length + len(token) >= cut:
            if cut > length:
                kept.append(token[: cut - length])
            break
        kept.append(token)
        length += len(token)
    return kept


def _reply_content(value: Any) -> str | tuple[str, ...] | AIMessage:
    if isinstance(value, str | AIMessage):
        return value
    if isinstance(value, Sequence) and all(isinstance(token, str) for token in value):
        return tuple(value)
    raise TypeError(
        f"a scripted reply's content must be a string, a list of strings or an AIMessage, got {value!r}"
    )


def _preamble(value: Any) -> AIMessageChunk | None:
    if value is None:
        return None
    chunk = AIMessageChunk(content="", id=value) if isinstance(value, str) else value
    if not isinstance(chunk, AIMessageChunk):
        raise TypeError(f"a preamble must be an AIMessageChunk or an id string, got {value!r}")
    if chunk.content or chunk.tool_call_chunks:
        raise ValueError(f"a preamble carries no content (it is held back as such), got {chunk!r}")
    return chunk


def _usage(value: Any) -> UsageMetadata | None:
    if value is None or isinstance(value, UsageMetadata):
        return value
    if isinstance(value, Mapping):
        return UsageMetadata(**value)
    raise TypeError(f"usage must be a UsageMetadata or a dict of token counts, got {value!r}")


def _error(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None or isinstance(value, BaseException):
        return
    if isinstance(value, type) and issubclass(value, BaseException):
        return
    raise TypeError(f"error must be an exception or an exception class, got {value!r}")


def _non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")


def _non_negative_seconds(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{attribute.name} must be a number of seconds >= 0, got {value!r}")


@attrs.frozen
class ScriptedReply:
    """One scripted call of :class:`ScriptedChatModel`: what it streams, how it stalls or fails.

    The chunks of a reply are numbered in the order they stream: the ``preamble`` (if
    any), the content chunks, then a chunk with the ``usage`` (if any). ``error_after``
    and ``stall_before`` count in those numbers, so a reply with a preamble and
    ``error_after=1`` fails mid-stream before its first chunk with content (before the
    commit point), and ``error_after=0`` fails before anything was streamed.

    Attributes:
        content: The reply. A string is streamed as word tokens (:func:`split_tokens`), a
            list of strings as exactly those tokens, an :class:`AIMessage` as its text
            (word tokens) then, for each tool call, a chunk with its name and id and a
            chunk with its JSON arguments (so the chunks add up to the message's tool
            calls); its ``id`` goes on every chunk and its ``usage_metadata`` is
            reported unless ``usage`` is given.
        preamble: A first chunk without content, as a provider's message-start: an
            ``AIMessageChunk`` (an id, usage figures...) or a string, taken as its id.
            Its id, if any, goes on every chunk of the reply.
        usage: Token counts (``UsageMetadata`` or a dict), reported on a last chunk
            without content, as a provider reports usage when the message ends.
        error: Raised after ``error_after`` chunks instead of the rest of the reply: an
            exception (a copy, with its ``__cause__``, is raised on each call, so notes
            added downstream do not pile up on the script) or an exception class
            (called with no arguments).
        error_after: How many chunks stream before ``error`` is raised.
        stall: Seconds to wait (``anyio.sleep``: virtual under trio's ``MockClock``)
            before chunk number ``stall_before`` (or before the end, or before the
            error, when it is that number).
        stall_before: Where the stall happens.

    Raises:
        ValueError: For ``error_after``/``stall_before`` beyond the reply's chunks or
            without an ``error``/``stall``, a negative number, or a preamble with content.
        TypeError: For a value of the wrong kind.
    """

    content: str | tuple[str, ...] | AIMessage = attrs.field(default="", converter=_reply_content)
    preamble: AIMessageChunk | None = attrs.field(default=None, converter=_preamble)
    usage: UsageMetadata | None = attrs.field(default=None, converter=_usage)
    error: BaseException | type[BaseException] | None = attrs.field(default=None, validator=_error)
    error_after: int = attrs.field(default=0, validator=_non_negative_int)
    stall: float = attrs.field(default=0.0, validator=_non_negative_seconds)
    stall_before: int = attrs.field(default=0, validator=_non_negative_int)

    def __attrs_post_init__(self) -> None:
        count = len(self.chunks())
        if self.error is None and self.error_after:
            raise ValueError(f"error_after={self.error_after} needs an error to raise")
        if self.error_after > count:
            raise ValueError(f"error_after={self.error_after}, but the reply streams only {_chunks(count)}")
        if not self.stall and self.stall_before:
            raise ValueError(f"stall_before={self.stall_before} needs a stall of some seconds")
        if self.stall_before > count:
            raise ValueError(f"stall_before={self.stall_before}, but the reply streams only {_chunks(count)}")

    def chunks(self, message_id: str | None = None) -> list[AIMessageChunk]:
        """The chunks this reply streams when nothing fails, in order.

        Every chunk carries the reply's id: the preamble's, else the ``AIMessage``'s, else
        ``message_id``; the last one is marked ``chunk_position="last"``.
        """
        chunks: list[AIMessageChunk] = [] if self.preamble is None else [self.preamble]
        content = self.content
        usage = self.usage
        if isinstance(content, AIMessage):
            chunks.extend(_message_chunks(content))
            usage = usage if usage is not None else content.usage_metadata
            message_id = content.id or message_id
        else:
            tokens = split_tokens(content) if isinstance(content, str) else content
            chunks.extend(AIMessageChunk.from_text(token) for token in tokens)
        if usage is not None:
            chunks.append(AIMessageChunk(content="", usage_metadata=usage))
        if self.preamble is not None and self.preamble.id:
            message_id = self.preamble.id
        last = len(chunks) - 1
        return [
            attrs.evolve(chunk, id=message_id or chunk.id, chunk_position="last" if number == last else None)
            for number, chunk in enumerate(chunks)
        ]

    def raised(self) -> BaseException:
        """A fresh exception for ``error`` (which must be set)."""
        error = self.error
        assert error is not None
        if isinstance(error, type):
            return error()
        try:
            fresh = copy.copy(error)
        except Exception:
            return error  # an exception that cannot be copied is raised itself
        fresh.__cause__ = error.__cause__
        fresh.__suppress_context__ = error.__suppress_context__
        return fresh


def _chunks(count: int) -> str:
    return f"{count} chunk{'s' if count != 1 else ''}"


def _message_chunks(message: AIMessage) -> list[AIMessageChunk]:
    text = message.content
    chunks: list[AIMessageChunk] = []
    if isinstance(text, str):
        chunks.extend(AIMessageChunk.from_text(token) for token in split_tokens(text))
    elif text:
        chunks.append(AIMessageChunk(content=text))
    # Tool calls are content blocks after the text, as the Messages API numbers them.
    first_index = 1 if chunks else 0
    for offset, call in enumerate(message.tool_calls):
        index = first_index + offset
        start = ToolCallChunk(name=call.name, id=call.id, args="", index=index)
        chunks.append(AIMessageChunk(content="", tool_call_chunks=[start]))
        arguments = ToolCallChunk(args=json.dumps(call.args), index=index)
        chunks.append(AIMessageChunk(content="", tool_call_chunks=[arguments]))
    return chunks


Reply = str | Sequence[str] | AIMessage | ScriptedReply


def _tool_definitions(tools: Sequence[Any]) -> tuple[dict[str, Any], ...]:
    definitions: list[dict[str, Any]] = []
    for tool in tools:
        to_anthropic = getattr(tool, "to_anthropic", None)
        if to_anthropic is not None:
            definitions.append(to_anthropic())
        elif isinstance(tool, Mapping):
            definitions.append(dict(tool))
        else:
            raise TypeError(
                f"a tool must be a Tool or a tool-definition dict, got {type(tool).__name__}: {tool!r}"
            )
    return tuple(definitions)


def _optional_dict(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"output_config must be a dict, got {type(value).__name__}: {value!r}")
    return dict(value)


def _is_reply(reply: object) -> bool:
    if isinstance(reply, str | AIMessage | ScriptedReply):
        return True
    return isinstance(reply, Sequence) and all(isinstance(token, str) for token in reply)


@attrs.define(eq=False, repr=False)
class ScriptedChatModel(BaseChatModel):
    """A chat model that streams scripted replies: for tests, examples and offline use.

    Each call takes the next reply (cycling), so a list of replies scripts what each
    attempt of a retried call does. A reply given as a string is split into word tokens
    (see :func:`split_tokens`); a reply given as a list of strings is streamed as exactly
    those tokens; an ``AIMessage`` is streamed with its tool calls; a
    :class:`ScriptedReply` also scripts a preamble chunk, usage figures, a stall and a
    failure. Each chunk is one ``AIMessageChunk``, after ``delay`` seconds (instant
    under trio's mock clock). Every chunk of a reply carries its id (the reply's own, or
    ``"lc_run--<run id>"`` as langchain-core's fakes), and the last one is marked
    ``chunk_position="last"``; an empty reply streams one empty chunk.

    Args:
        replies: The replies, used in turn.
        delay: Seconds to wait before each chunk.
        name: The name events carry (default ``"ScriptedChatModel"``).
        stop: Stop sequences, as a model API takes them: a reply ends right before the
            first place any of them occurs (the token there is cut short), and the rest
            is never streamed. Also bound with ``model.bind(stop=[...])``, which returns
            a copy (with its own call count and ``received`` logs).
        tools: Tool definitions, as a model API takes them (dicts, or ``Tool`` objects,
            recorded as ``Tool.to_anthropic()``). Recorded per call in
            :attr:`received_arguments`, never acted on: the replies are the script.
        tool_choice: How the model must use the tools (recorded, as ``tools``).
        output_config: Claude's ``output_config`` (a structured-output format, an effort
            level; recorded, as ``tools``), so ``with_structured_output`` can be tested
            offline with either method.

    Raises:
        ValueError: If ``replies`` is empty or holds something that is not a reply,
            ``delay`` is negative or a stop sequence is empty.
        TypeError: If ``stop`` is a string rather than a list of strings.
    """

    reads_current_step: ClassVar[bool] = False
    #: ``bind(stop=[...], tools=..., tool_choice=..., output_config=...)`` sets them on a copy.
    call_arguments: ClassVar[Mapping[str, str]] = {
        "stop": "stop",
        "tools": "tools",
        "tool_choice": "tool_choice",
        "output_config": "output_config",
    }
    #: As ``ChatAnthropic``'s, so scripted tests of structured output take Claude's default.
    default_structured_output_method: ClassVar[str] = "json_schema"

    replies: Sequence[Reply]
    delay: float = 0.0
    name_: str = attrs.field(default="ScriptedChatModel", alias="name")
    _calls: int = attrs.field(default=0, init=False)
    received: list[list[BaseMessage]] = attrs.field(factory=list, init=False)
    stop: tuple[str, ...] | None = attrs.field(default=None, converter=_stop_sequences)
    #: The call arguments in force for each call, in order: ``stop``, ``tools``,
    #: ``tool_choice`` and ``output_config``, those that are set (``{}`` for none).
    received_arguments: list[dict[str, Any]] = attrs.field(factory=list, init=False)
    tools: tuple[dict[str, Any], ...] = attrs.field(default=(), converter=_tool_definitions)
    tool_choice: dict[str, Any] | str | None = None
    output_config: dict[str, Any] | None = attrs.field(default=None, converter=_optional_dict)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.replies, str) or not self.replies:
            raise ValueError("ScriptedChatModel needs a non-empty list of replies")
        for reply in self.replies:
            if not _is_reply(reply):
                raise ValueError(
                    "a scripted reply must be a string, a list of strings, an AIMessage or a "
                    f"ScriptedReply, got {reply!r}"
                )
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")

    def get_name(self) -> str:
        return self.name_

    def _arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        if self.stop is not None:
            arguments["stop"] = list(self.stop)
        if self.tools:
            arguments["tools"] = [dict(tool) for tool in self.tools]
        if self.tool_choice is not None:
            arguments["tool_choice"] = self.tool_choice
        if self.output_config is not None:
            arguments["output_config"] = self.output_config
        return arguments

    @property
    def calls(self) -> int:
        """How many times the model was called."""
        return self._calls

    def _next_reply(self) -> Reply:
        reply = self.replies[self._calls % len(self.replies)]
        self._calls += 1
        return reply

    def compute(self, value: Any, step: Step) -> AsyncIterator[AIMessageChunk]:
        messages = self._messages(value)
        step.set_input({"messages": [messages]})
        # langchain-core's id for a reply without a provider id: "lc_run-" and the run id.
        return self._reply_stream(messages, f"lc_run--{step.run_id}")

    def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        """The next scripted reply (called outside a run, its chunks carry only a scripted id)."""
        return self._reply_stream(messages, None)

    def _reply_stream(
        self, messages: list[BaseMessage], message_id: str | None
    ) -> AsyncGenerator[AIMessageChunk, None]:
        self.received.append(messages)
        self.received_arguments.append(self._arguments())
        reply = self._next_reply()
        if isinstance(reply, ScriptedReply):
            return self._stream_scripted(reply, message_id)
        if isinstance(reply, AIMessage):
            return self._stream_scripted(ScriptedReply(reply), message_id)
        tokens = split_tokens(reply) if isinstance(reply, str) else list(reply)
        if self.stop:
            tokens = _cut_at_stop(tokens, self.stop)
        # Cut (or scripted) to nothing, the reply is one empty chunk (a model API still answers).
        return self._stream_tokens(tokens or [""], message_id)

    async def _stream_tokens(
        self, tokens: list[str], message_id: str | None
    ) -> AsyncGenerator[AIMessageChunk, None]:
        # The plain path (benchmarks stream it): one chunk per token, nothing else per chunk
        # (the constructor and the delay are looked up once).
        make = AIMessageChunk.from_text
        delay = self.delay
        for token in tokens[:-1]:
            if delay:
                await anyio.sleep(delay)
            yield make(token, message_id)
        if delay:
            await anyio.sleep(delay)
        yield AIMessageChunk(content=tokens[-1], id=message_id, chunk_position="last")

    async def _stream_scripted(
        self, reply: ScriptedReply, message_id: str | None
    ) -> AsyncGenerator[AIMessageChunk, None]:
        chunks = reply.chunks(message_id)
        for position in range(len(chunks) + 1):
            if reply.stall and position == reply.stall_before:
                await anyio.sleep(reply.stall)
            if reply.error is not None and position == reply.error_after:
                raise reply.raised()
            if position == len(chunks):
                return
            if self.delay:
                await anyio.sleep(self.delay)
            yield chunks[position]

    def __repr__(self) -> str:
        return f"ScriptedChatModel(replies={len(self.replies)}, delay={self.delay})"
