"""Chat messages, tool calls, and the streamed chunks that add up to a message.

A chat model streams :class:`AIMessageChunk` values; adding them with ``+`` (or, in one
linear pass, with :meth:`AIMessageChunk.concat_chunks`) gives the whole message. Addition
is associative, so the engine may add chunks in any grouping and get the same result:

* Content: two strings concatenate. Otherwise the result is a list of content blocks in
  which blocks carrying the same ``"index"`` merge into the first of them, and runs of
  plain text (string content, and blocks that are exactly ``{"type": "text", "text": ...}``)
  join into one text block.
  A string item of list content counts as plain text.
* Tool-call chunks with the same ``index`` merge into the first of them; chunks without an
  index are appended.
* ``name``: the first that is set. ``id``: the first provider id (one not starting with
  ``"lc_"``), else the first ``"lc_run-..."`` id, else the first other one, as
  langchain-core ranks them. ``usage_metadata``: the sum. ``chunk_position``: ``"last"``
  when any chunk is the last.
* ``response_metadata`` and ``additional_kwargs`` merge key by key as langchain-core's
  ``merge_dicts`` does (see ``merge_metadata``): strings concatenate, dicts merge, lists
  append (dicts with the same ``"index"`` merge), ``None`` gives way, equal values stay,
  differing ints add up, and values of different types, differing bools and other differing
  scalars raise ``TypeError`` (``nodes/_metadata.py``). Those rules are langchain-core's, and two of them are not
  associative (a differing int after equal ones, an equal ``id`` string after a differing
  one): only there does the grouping of ``+`` matter, and a left fold gives langchain-core's
  result.

A single chunk is never rewritten: the normal form above only applies to sums.
"""

from __future__ import annotations

import json
import operator
import reprlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain, repeat
from typing import Any, ClassVar, Final, Literal

import attrs

from ._metadata import merge_metadata

__all__ = (
    "MessageContent",
    "UsageMetadata",
    "ToolCall",
    "ToolCallChunk",
    "InvalidToolCall",
    "BaseMessage",
    "SystemMessage",
    "HumanMessage",
    "AIMessage",
    "ToolMessage",
    "AIMessageChunk",
    "coerce_to_messages",
    "message_from_role",
)

#: A message's content: a string, or a list whose items are strings (plain text) or content
#: blocks such as ``{"type": "text", "text": ...}`` or
#: ``{"type": "tool_use", "id": ..., "name": ..., "input": ...}``.
MessageContent = str | list[str | dict[str, Any]]


class _Missing:
    """The type of :data:`_MISSING`, so that ``None`` stays an ordinary value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()


# -- small values -----------------------------------------------------------------------


class _KeyAccess:
    """``value["name"]`` for attrs values that LangChain spells as TypedDicts.

    User code written against LangChain subscripts tool calls and usage
    (``gathered.tool_call_chunks[0]["args"]``); this keeps such code working.
    """

    __slots__ = ()
    _keys: ClassVar[frozenset[str]] = frozenset()

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """The field called ``key``, or ``default`` when there is no such field.

        Args:
            key: A field name.
            default: What to return for an unknown key.

        Returns:
            The field's value or ``default``.
        """
        return getattr(self, key) if key in self._keys else default


def _to_token_details(value: Mapping[str, int] | None) -> dict[str, int] | None:
    return None if value is None else dict(value)


def _add_token_details(values: Iterable[dict[str, int] | None]) -> dict[str, int] | None:
    """Token-detail dicts added key by key (``None`` where none of them is set)."""
    total: dict[str, int] | None = None
    for value in values:
        if value is None:
            continue
        if total is None:
            total = {}
        for key, count in value.items():
            total[key] = total.get(key, 0) + count
    return total


@attrs.frozen(repr=False)
class UsageMetadata(_KeyAccess):
    """Token counts of one model call; ``+`` adds them up (the details key by key).

    Attributes:
        input_tokens: Tokens in the prompt (cached ones included).
        output_tokens: Tokens generated.
        total_tokens: Their sum, unless the provider says otherwise.
        input_token_details: A breakdown of the prompt tokens, as langchain-core's
            ``InputTokenDetails``: ``{"cache_read": n, "cache_creation": n}`` (tokens read
            from, and written to, the provider's prompt cache), ``None`` when the provider
            reported none.
        output_token_details: A breakdown of the output tokens: ``{"reasoning": n}``
            (thinking tokens), ``None`` when the provider reported none.
    """

    _keys: ClassVar[frozenset[str]] = frozenset(
        {"input_tokens", "output_tokens", "total_tokens", "input_token_details", "output_token_details"}
    )

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = attrs.field(
        default=attrs.Factory(lambda self: self.input_tokens + self.output_tokens, takes_self=True)
    )
    # Dicts, as langchain-core's; left out of the hash, which they would make fail.
    input_token_details: dict[str, int] | None = attrs.field(
        default=None, converter=_to_token_details, hash=False, kw_only=True
    )
    output_token_details: dict[str, int] | None = attrs.field(
        default=None, converter=_to_token_details, hash=False, kw_only=True
    )

    def __add__(self, other: object) -> UsageMetadata:
        if not isinstance(other, UsageMetadata):
            return NotImplemented
        return _sum_usage((self, other))  # type: ignore[return-value]  # two values: never None

    def __radd__(self, other: object) -> UsageMetadata:
        # ``sum(usages)`` starts from 0.
        if other == 0:
            return self
        return NotImplemented

    def __repr__(self) -> str:
        # The details only when reported, so that a plain count reads as it always did.
        shown = [
            f"input_tokens={self.input_tokens}",
            f"output_tokens={self.output_tokens}",
            f"total_tokens={self.total_tokens}",
        ]
        if self.input_token_details is not None:
            shown.append(f"input_token_details={self.input_token_details!r}")
        if self.output_token_details is not None:
            shown.append(f"output_token_details={self.output_token_details!r}")
        return f"UsageMetadata({', '.join(shown)})"


@attrs.frozen
class ToolCall(_KeyAccess):
    """A complete request from the model to call a tool.

    Attributes:
        name: The tool's name.
        args: The arguments, parsed from JSON.
        id: The provider's id for the call, which the answering ``ToolMessage`` repeats.

    ``call["type"]`` is ``"tool_call"``, as in LangChain's ``ToolCall`` dict, so a tool
    (``Tool.ainvoke``) tells a call from plain arguments.
    """

    _keys: ClassVar[frozenset[str]] = frozenset({"name", "args", "id", "type"})
    #: Always ``"tool_call"`` (the ``type`` key of LangChain's ``ToolCall`` dict).
    type: ClassVar[str] = "tool_call"

    name: str
    args: dict[str, Any]
    id: str | None = None


@attrs.frozen
class ToolCallChunk(_KeyAccess):
    """A streamed fragment of a tool call.

    Fragments with the same ``index`` belong to the same call: their ``args`` strings
    join into the call's JSON arguments. A fragment with nothing but its ``index`` (no
    name, args or id) marks the end of its call: it adds nothing when chunks add up, and
    tells a consumer such as ``ToolLoop`` that the call is complete (``ChatAnthropic``
    sends one at the end of each tool_use block).

    Attributes:
        name: The tool's name, usually only on the first fragment.
        args: A fragment of the JSON arguments.
        id: The call's id, usually only on the first fragment.
        index: Which call of the message this fragment belongs to.
    """

    _keys: ClassVar[frozenset[str]] = frozenset({"name", "args", "id", "index"})

    name: str | None = None
    args: str | None = None
    id: str | None = None
    index: int | None = None


@attrs.frozen
class InvalidToolCall(_KeyAccess):
    """A tool call that could not be parsed (bad JSON arguments, or no tool name).

    Attributes:
        name: The tool's name, if the model gave one.
        args: The raw argument string.
        id: The call's id, if the model gave one.
        error: What is wrong with it.
    """

    _keys: ClassVar[frozenset[str]] = frozenset({"name", "args", "id", "error"})

    name: str | None = None
    args: str | None = None
    id: str | None = None
    error: str | None = None


# -- converters and validators ----------------------------------------------------------


def _check_content(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, str):
        return
    if isinstance(value, list):
        for position, block in enumerate(value):
            if not isinstance(block, str | dict):
                raise TypeError(
                    f"{type(instance).__name__}.content: item {position} is a {type(block).__name__} "
                    f"{reprlib.repr(block)}; a content item is a str or a block dict such as "
                    "{'type': 'text', 'text': ...}"
                )
        return
    raise TypeError(
        f"{type(instance).__name__}.content must be a str or a list of strings and content blocks, "
        f"got {type(value).__name__} {reprlib.repr(value)}"
    )


def _to_tool_calls(values: Iterable[ToolCall | Mapping[str, Any]]) -> list[ToolCall]:
    return [
        value
        if isinstance(value, ToolCall)
        else ToolCall(name=value["name"], args=dict(value["args"]), id=value.get("id"))
        for value in values
    ]


def _to_invalid_tool_calls(values: Iterable[InvalidToolCall | Mapping[str, Any]]) -> list[InvalidToolCall]:
    return [
        value
        if isinstance(value, InvalidToolCall)
        else InvalidToolCall(
            name=value.get("name"), args=value.get("args"), id=value.get("id"), error=value.get("error")
        )
        for value in values
    ]


def _to_tool_call_chunks(values: Iterable[ToolCallChunk | Mapping[str, Any]]) -> list[ToolCallChunk]:
    return [
        value
        if isinstance(value, ToolCallChunk)
        else ToolCallChunk(
            name=value.get("name"), args=value.get("args"), id=value.get("id"), index=value.get("index")
        )
        for value in values
    ]


def _to_usage(value: UsageMetadata | Mapping[str, Any] | None) -> UsageMetadata | None:
    if value is None or isinstance(value, UsageMetadata):
        return value
    return UsageMetadata(**value)


# -- messages ---------------------------------------------------------------------------


@attrs.frozen(repr=False)
class BaseMessage:
    """What every message has. Not instantiated itself: use one of its subclasses.

    Attributes:
        content: A string, or a list of content blocks (dicts with a ``"type"`` key).
        additional_kwargs: Provider-specific extras.
        response_metadata: What the provider said about the response (model, stop reason...).
        name: An optional name for the author of the message.
        id: An optional id, such as the provider's message id.
    """

    #: The message's role: ``"system"``, ``"human"``, ``"ai"`` or ``"tool"``.
    type: ClassVar[str] = ""

    content: MessageContent = attrs.field(validator=_check_content)
    additional_kwargs: dict[str, Any] = attrs.field(factory=dict, kw_only=True)
    response_metadata: dict[str, Any] = attrs.field(factory=dict, kw_only=True)
    name: str | None = attrs.field(default=None, kw_only=True)
    id: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not type(self).type:
            raise TypeError(
                f"{type(self).__name__} is not a concrete message type; use SystemMessage, "
                "HumanMessage, AIMessage, ToolMessage or AIMessageChunk"
            )

    @property
    def text(self) -> str:
        """The message's text: the content string, or its string items and text blocks joined."""
        content = self.content
        if isinstance(content, str):
            return content
        return "".join(
            block
            if isinstance(block, str)
            else block["text"]
            if block.get("type") == "text" and isinstance(block.get("text"), str)
            else ""
            for block in content
        )

    def __repr__(self) -> str:
        # Like LangChain's repr, minus the noise: content always, the rest only when set.
        shown: list[str] = []
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if field.name != "content" and field.default is not attrs.NOTHING:
                factory = getattr(field.default, "factory", None)
                default = factory() if callable(factory) else field.default
                if value == default:
                    continue
            shown.append(f"{field.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


@attrs.frozen(repr=False)
class SystemMessage(BaseMessage):
    """Instructions for the model, usually first in the conversation."""

    type: ClassVar[str] = "system"


@attrs.frozen(repr=False)
class HumanMessage(BaseMessage):
    """A message from the user."""

    type: ClassVar[str] = "human"


# What a model reports as the reason it stopped (``response_metadata["stop_reason"]``) when
# the reply was cut at a length limit: Anthropic's max_tokens and model_context_window_exceeded.
_TRUNCATED: Final = frozenset({"max_tokens", "model_context_window_exceeded"})


class _StopReason:
    """Why a model's reply ended, read from ``response_metadata``."""

    __slots__ = ()
    response_metadata: dict[str, Any]

    @property
    def stop_reason(self) -> str | None:
        """The provider's stop reason (``response_metadata["stop_reason"]``), if it gave one.

        Anthropic's are ``"end_turn"``, ``"max_tokens"``, ``"stop_sequence"`` (the
        sequence is ``response_metadata["stop_sequence"]``), ``"tool_use"``,
        ``"pause_turn"`` (send the reply back as is to let the model go on),
        ``"refusal"`` and ``"model_context_window_exceeded"``.
        """
        reason = self.response_metadata.get("stop_reason")
        return reason if isinstance(reason, str) else None

    @property
    def truncated(self) -> bool:
        """Whether the reply was cut short by a length limit (``max_tokens``, or the context window)."""
        return self.stop_reason in _TRUNCATED

    @property
    def refused(self) -> bool:
        """Whether the model declined to answer (stop reason ``"refusal"``; any details are in
        ``response_metadata["stop_details"]``)."""
        return self.stop_reason == "refusal"


@attrs.frozen(repr=False)
class AIMessage(_StopReason, BaseMessage):
    """A whole message from the model.

    Attributes:
        tool_calls: The tools the model asks to call.
        invalid_tool_calls: Tool calls whose arguments could not be parsed.
        usage_metadata: Token counts, if the provider reported them.
    """

    type: ClassVar[str] = "ai"

    tool_calls: list[ToolCall] = attrs.field(factory=list, kw_only=True, converter=_to_tool_calls)
    invalid_tool_calls: list[InvalidToolCall] = attrs.field(
        factory=list, kw_only=True, converter=_to_invalid_tool_calls
    )
    usage_metadata: UsageMetadata | None = attrs.field(default=None, kw_only=True, converter=_to_usage)


@attrs.frozen(repr=False)
class ToolMessage(BaseMessage):
    """The result of a tool call, sent back to the model.

    Attributes:
        tool_call_id: The id of the :class:`ToolCall` this answers.
        status: ``"error"`` when the tool failed and ``content`` describes the failure.
    """

    type: ClassVar[str] = "tool"

    tool_call_id: str = attrs.field(kw_only=True)
    status: Literal["success", "error"] = attrs.field(
        default="success", kw_only=True, validator=attrs.validators.in_(("success", "error"))
    )


@attrs.frozen(repr=False)
class AIMessageChunk(_StopReason, BaseMessage):
    """A streamed piece of an :class:`AIMessage`; chunks add up with ``+``.

    Every chunk of one model reply carries the reply's ``id`` (the provider's message id, or
    ``"lc_run-<run id>"`` for a scripted model), so a consumer can tell replies apart
    chunk by chunk, and the sum has it.

    Attributes:
        usage_metadata: Token counts carried by this piece (they add up).
        tool_call_chunks: Fragments of tool calls, merged by ``index`` when chunks add.
        chunk_position: ``"last"`` on the last chunk of a reply (and on any sum that
            includes it), ``None`` on the others, as langchain-core marks them: a
            consumer knows the reply is complete without waiting for the stream's end.
    """

    type: ClassVar[str] = "ai"

    usage_metadata: UsageMetadata | None = attrs.field(default=None, kw_only=True, converter=_to_usage)
    tool_call_chunks: list[ToolCallChunk] = attrs.field(
        factory=list, kw_only=True, converter=_to_tool_call_chunks
    )
    chunk_position: Literal["last"] | None = attrs.field(
        default=None, kw_only=True, validator=attrs.validators.in_((None, "last"))
    )

    @classmethod
    def from_text(cls, text: str, id: str | None = None) -> AIMessageChunk:
        """``AIMessageChunk(content=text, id=id)``, made without the per-field checks.

        Model nodes make one chunk per token, so this is on the per-chunk path; a test
        checks it equals the checked constructor field for field. ``id`` is not checked
        here: it is the model node's own value for the whole reply (a ``str`` or ``None``),
        checked once where the node gets it.
        """
        if type(text) is not str or cls is not AIMessageChunk:
            return cls(content=text, id=id)
        chunk = _new_object(cls)
        # Each field's slot is filled through its descriptor: the frozen class's
        # __setattr__ would refuse, and object.__setattr__ costs twice as much per field.
        _SET_CONTENT(chunk, text)
        _SET_ADDITIONAL_KWARGS(chunk, {})
        _SET_RESPONSE_METADATA(chunk, {})
        _SET_NAME(chunk, None)
        _SET_ID(chunk, id)
        _SET_USAGE_METADATA(chunk, None)
        _SET_TOOL_CALL_CHUNKS(chunk, [])
        _SET_CHUNK_POSITION(chunk, None)
        return chunk

    def __add__(self, other: object) -> AIMessageChunk:
        if not isinstance(other, AIMessageChunk):
            return NotImplemented
        return _concat((self, other))

    @classmethod
    def concat_chunks(cls, chunks: Sequence[AIMessageChunk]) -> AIMessageChunk:
        """Add ``chunks`` up in one pass: the same message as ``chunks[0] + chunks[1] + ...``.

        Strings and argument fragments are joined once at the end, so the time is linear in
        the total size of the chunks, where a left fold of ``+`` copies the growing message
        at every step.

        Args:
            chunks: The chunks, in stream order.

        Returns:
            Their sum (the chunk itself when there is only one).

        Raises:
            ValueError: If ``chunks`` is empty.
            TypeError: If an element is not an :class:`AIMessageChunk`.
        """
        if not chunks:
            raise ValueError("concat_chunks needs at least one chunk")
        if not all(map(isinstance, chunks, repeat(AIMessageChunk))):
            position, chunk = next((i, c) for i, c in enumerate(chunks) if not isinstance(c, AIMessageChunk))
            raise TypeError(
                f"concat_chunks: item {position} is a {type(chunk).__name__}, not an AIMessageChunk"
            )
        if len(chunks) == 1:
            return chunks[0]
        return _concat(chunks)

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tool calls whose fragments parse: JSON object arguments and a tool name.

        Parsed from ``tool_call_chunks`` at each access (a chunk keeps no cache, so that
        making a chunk costs nothing per token); :meth:`to_message` parses once for both
        lists.
        """
        return _parse_tool_call_chunks(self.tool_call_chunks)[0]

    @property
    def invalid_tool_calls(self) -> list[InvalidToolCall]:
        """The tool calls whose fragments do not parse, each with the reason."""
        return _parse_tool_call_chunks(self.tool_call_chunks)[1]

    def to_message(self) -> AIMessage:
        """The whole message this chunk stands for, with its tool calls parsed.

        Returns:
            An :class:`AIMessage` with the same content, ids, metadata and usage.
        """
        tool_calls, invalid_tool_calls = _parse_tool_call_chunks(self.tool_call_chunks)
        return AIMessage(
            self.content,
            additional_kwargs=dict(self.additional_kwargs),
            response_metadata=dict(self.response_metadata),
            name=self.name,
            id=self.id,
            tool_calls=tool_calls,
            invalid_tool_calls=invalid_tool_calls,
            usage_metadata=self.usage_metadata,
        )


# -- adding chunks ----------------------------------------------------------------------
#
# Every merge below computes a function of the whole sequence of values (the first set,
# the last of a kind, all strings joined...), which is what makes ``+`` associative and
# lets the bulk path and the pairwise path share the code: ``a + b`` is ``_concat((a, b))``.


def _slot_setter(cls: type, name: str) -> Callable[[object, object], None]:
    """The ``__set__`` of the slot that holds ``name`` on instances of ``cls``."""
    for klass in cls.__mro__:
        descriptor = klass.__dict__.get(name)
        if descriptor is not None:
            return descriptor.__set__  # type: ignore[no-any-return]
    raise AttributeError(f"{cls.__name__} has no slot {name!r}")  # pragma: no cover


_new_object = object.__new__
_SET_CONTENT = _slot_setter(AIMessageChunk, "content")
_SET_ADDITIONAL_KWARGS = _slot_setter(AIMessageChunk, "additional_kwargs")
_SET_RESPONSE_METADATA = _slot_setter(AIMessageChunk, "response_metadata")
_SET_NAME = _slot_setter(AIMessageChunk, "name")
_SET_ID = _slot_setter(AIMessageChunk, "id")
_SET_USAGE_METADATA = _slot_setter(AIMessageChunk, "usage_metadata")
_SET_TOOL_CALL_CHUNKS = _slot_setter(AIMessageChunk, "tool_call_chunks")
_SET_CHUNK_POSITION = _slot_setter(AIMessageChunk, "chunk_position")


def _concat(chunks: Sequence[AIMessageChunk]) -> AIMessageChunk:
    # Runs once per block of a stream's chunks (ChunkSum adds them a block at a time). Most
    # chunks of a reply carry only text and the reply's id: one loop reading their slots
    # (a specialised attribute load each) finds out, and such a block is one join.
    contents: list[MessageContent] = []
    add_content = contents.append
    for chunk in chunks:
        add_content(chunk.content)
        if (
            chunk.additional_kwargs
            or chunk.response_metadata
            or chunk.tool_call_chunks
            or chunk.usage_metadata is not None
            or chunk.name is not None
            or chunk.chunk_position is not None
        ):
            return _concat_fields(chunks)
    content = _merge_contents(contents)
    best_id = _best_id(dict.fromkeys(map(_GET_ID, chunks)))
    if type(content) is str:
        return AIMessageChunk.from_text(content, best_id)
    return AIMessageChunk(content, id=best_id)


def _concat_fields(chunks: Sequence[AIMessageChunk]) -> AIMessageChunk:
    """:func:`_concat` of chunks that carry more than text: every field merged."""
    usages = list(map(_GET_USAGE, chunks))
    tool_call_chunks = list(chain.from_iterable(map(_GET_TOOL_CALL_CHUNKS, chunks)))
    return AIMessageChunk(
        _merge_contents(list(map(_GET_CONTENT, chunks))),
        additional_kwargs=merge_metadata(
            list(filter(None, map(_GET_ADDITIONAL_KWARGS, chunks))), "additional_kwargs"
        ),
        response_metadata=merge_metadata(
            list(filter(None, map(_GET_RESPONSE_METADATA, chunks))), "response_metadata"
        ),
        name=_first_set(dict.fromkeys(map(_GET_NAME, chunks))),
        id=_best_id(dict.fromkeys(map(_GET_ID, chunks))),
        usage_metadata=None if usages.count(None) == len(usages) else _sum_usage(usages),
        tool_call_chunks=_merge_tool_call_chunks((tool_call_chunks,)) if tool_call_chunks else [],
        chunk_position="last" if "last" in map(_GET_POSITION, chunks) else None,
    )


def _first_set(values: Iterable[str | None]) -> str | None:
    for value in values:
        if value is not None:
            return value
    return None


# Ids made up by a framework rather than a provider: ``lc_run-<run id>`` for a run's reply,
# other ``lc_...`` ids ranking lowest.
_RUN_ID_PREFIX: Final = "lc_run-"
_MADE_UP_PREFIX: Final = "lc_"


_GET_ID: Final = operator.attrgetter("id")
_GET_POSITION: Final = operator.attrgetter("chunk_position")
_GET_CONTENT: Final = operator.attrgetter("content")
_GET_NAME: Final = operator.attrgetter("name")
_GET_USAGE: Final = operator.attrgetter("usage_metadata")
_GET_TOOL_CALL_CHUNKS: Final = operator.attrgetter("tool_call_chunks")
_GET_ADDITIONAL_KWARGS: Final = operator.attrgetter("additional_kwargs")
_GET_RESPONSE_METADATA: Final = operator.attrgetter("response_metadata")


def _best_id(ids: Iterable[str | None]) -> str | None:
    """The first provider id, else the first run id, else the first other id (empty ones
    never count); a function of the sequence, so ``+`` stays associative."""
    run_id: str | None = None
    other: str | None = None
    for value in ids:
        if not value:
            continue
        if not value.startswith(_MADE_UP_PREFIX):
            return value
        if value.startswith(_RUN_ID_PREFIX):
            if run_id is None:
                run_id = value
        elif other is None:
            other = value
    return run_id if run_id is not None else other


def _sum_usage(values: Iterable[UsageMetadata | None]) -> UsageMetadata | None:
    present = [value for value in values if value is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return UsageMetadata(
        sum(value.input_tokens for value in present),
        sum(value.output_tokens for value in present),
        sum(value.total_tokens for value in present),
        input_token_details=_add_token_details(value.input_token_details for value in present),
        output_token_details=_add_token_details(value.output_token_details for value in present),
    )


# Block keys whose string values are streamed in fragments (Anthropic's text, input JSON,
# thinking and signature deltas). Other keys keep their first value.
_FRAGMENT_KEYS: Final = frozenset({"text", "partial_json", "input", "thinking", "signature"})


def _is_blank(value: object) -> bool:
    # A tool_use block starts with ``"input": {}`` before its JSON fragments arrive.
    return value is None or (isinstance(value, dict) and not value)


class _Fragments:
    """A fragment key's value: the strings joined, unless a non-string value turns up.

    Over the whole sequence: the last non-blank non-string value if there is one, else
    the strings joined if there are any, else the first blank value.
    """

    __slots__ = ("blank", "other", "parts")

    def __init__(self) -> None:
        self.blank: object = _MISSING
        self.other: object = _MISSING
        self.parts: list[str] = []

    def add(self, value: object) -> None:
        if isinstance(value, str):
            if self.other is _MISSING:
                self.parts.append(value)
        elif _is_blank(value):
            if self.blank is _MISSING:
                self.blank = value
        else:
            self.other = value

    def result(self) -> object:
        if self.other is not _MISSING:
            return self.other
        if self.parts:
            return "".join(self.parts)
        return self.blank


class _FirstValue:
    """A key's value: the first non-blank one, else the first blank one."""

    __slots__ = ("blank", "value")

    def __init__(self) -> None:
        self.blank: object = _MISSING
        self.value: object = _MISSING

    def add(self, value: object) -> None:
        if self.value is not _MISSING:
            return
        if _is_blank(value):
            if self.blank is _MISSING:
                self.blank = value
        else:
            self.value = value

    def result(self) -> object:
        return self.value if self.value is not _MISSING else self.blank


class _BlockMerge:
    """The blocks of one ``index``, merged key by key into the first one's place."""

    __slots__ = ("first", "keys")

    def __init__(self, first: dict[str, Any]) -> None:
        self.first = first
        self.keys: dict[str, _Fragments | _FirstValue] | None = None

    def add(self, block: dict[str, Any]) -> None:
        keys = self.keys
        if keys is None:
            # Only a second block with this index costs anything.
            keys = self.keys = {}
            self._add(keys, self.first)
        self._add(keys, block)

    @staticmethod
    def _add(keys: dict[str, _Fragments | _FirstValue], block: dict[str, Any]) -> None:
        for key, value in block.items():
            state = keys.get(key)
            if state is None:
                state = keys[key] = _Fragments() if key in _FRAGMENT_KEYS else _FirstValue()
            state.add(value)

    def result(self) -> dict[str, Any]:
        if self.keys is None:
            return self.first
        return {key: state.result() for key, state in self.keys.items()}


def _is_plain_text(block: dict[str, Any]) -> bool:
    return len(block) == 2 and block.get("type") == "text" and isinstance(block.get("text"), str)


def _merge_contents(contents: Sequence[MessageContent]) -> MessageContent:
    if all(map(isinstance, contents, repeat(str))):
        return "".join(contents)  # type: ignore[arg-type]  # all strings, checked just above
    # Entries: a run of plain text (list of strings), an indexed merge, or a block as is.
    out: list[list[str] | _BlockMerge | dict[str, Any]] = []
    by_index: dict[Any, _BlockMerge] = {}

    def add_text(text: str) -> None:
        last = out[-1] if out else None
        if type(last) is list:
            last.append(text)
        else:
            out.append([text])

    for content in contents:
        if isinstance(content, str):
            if content:
                add_text(content)
            continue
        for block in content:
            if isinstance(block, str):
                if block:
                    add_text(block)
                continue
            if _is_plain_text(block):
                add_text(block["text"])
                continue
            index = block.get("index")
            if index is None:
                out.append(block)
                continue
            merge = by_index.get(index)
            if merge is None:
                merge = by_index[index] = _BlockMerge(block)
                out.append(merge)
            else:
                merge.add(block)

    result: list[str | dict[str, Any]] = []
    for entry in out:
        if isinstance(entry, list):
            result.append({"type": "text", "text": "".join(entry)})
        elif isinstance(entry, _BlockMerge):
            result.append(entry.result())
        else:
            result.append(entry)
    return result


class _ToolCallMerge:
    """The tool-call fragments of one ``index``."""

    __slots__ = ("args", "count", "first", "id", "name")

    def __init__(self, first: ToolCallChunk) -> None:
        self.first = first
        self.count = 1
        self.name = first.name
        self.id = first.id
        self.args: list[str] = [] if first.args is None else [first.args]

    def add(self, chunk: ToolCallChunk) -> None:
        self.count += 1
        if self.name is None:
            self.name = chunk.name
        if self.id is None:
            self.id = chunk.id
        if chunk.args is not None:
            self.args.append(chunk.args)

    def result(self) -> ToolCallChunk:
        if self.count == 1:
            return self.first
        args = "".join(self.args) if self.args else None
        return ToolCallChunk(name=self.name, args=args, id=self.id, index=self.first.index)


def _merge_tool_call_chunks(lists: Iterable[list[ToolCallChunk]]) -> list[ToolCallChunk]:
    out: list[ToolCallChunk | _ToolCallMerge] = []
    by_index: dict[int, _ToolCallMerge] = {}
    for chunks in lists:
        for chunk in chunks:
            if chunk.index is None:
                out.append(chunk)
                continue
            merge = by_index.get(chunk.index)
            if merge is None:
                merge = by_index[chunk.index] = _ToolCallMerge(chunk)
                out.append(merge)
            else:
                merge.add(chunk)
    return [entry.result() if isinstance(entry, _ToolCallMerge) else entry for entry in out]


def _parse_tool_call_chunks(
    chunks: list[ToolCallChunk],
) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for chunk in _merge_tool_call_chunks([chunks]):
        raw = chunk.args or ""
        if not chunk.name:
            invalid.append(
                InvalidToolCall(
                    name=chunk.name, args=chunk.args, id=chunk.id, error="the tool call has no name"
                )
            )
            continue
        if not raw.strip():
            calls.append(ToolCall(name=chunk.name, args={}, id=chunk.id))
            continue
        try:
            args = json.loads(raw)
        except json.JSONDecodeError as error:
            invalid.append(
                InvalidToolCall(
                    name=chunk.name, args=raw, id=chunk.id, error=f"the arguments are not valid JSON: {error}"
                )
            )
            continue
        if not isinstance(args, dict):
            invalid.append(
                InvalidToolCall(
                    name=chunk.name,
                    args=raw,
                    id=chunk.id,
                    error=f"the arguments are a JSON {type(args).__name__}, not an object",
                )
            )
            continue
        calls.append(ToolCall(name=chunk.name, args=args, id=chunk.id))
    return calls, invalid


# -- building messages from loose values ------------------------------------------------

_ROLES: Final[Mapping[str, type[BaseMessage]]] = {
    "system": SystemMessage,
    "human": HumanMessage,
    "user": HumanMessage,
    "ai": AIMessage,
    "assistant": AIMessage,
    "tool": ToolMessage,
}

_ROLE_NAMES: Final = "'system', 'human', 'user', 'ai', 'assistant' and 'tool' (with a tool_call_id)"


def message_from_role(
    role: str,
    content: MessageContent,
    *,
    name: str | None = None,
    id: str | None = None,
    tool_call_id: str | None = None,
) -> BaseMessage:
    """Make the message a role string stands for, as in ``("human", "hi")``.

    Args:
        role: ``"system"``, ``"human"``/``"user"``, ``"ai"``/``"assistant"``, or ``"tool"``.
        content: The message's content.
        name: The optional author name.
        id: The optional message id.
        tool_call_id: The answered call's id; required for ``"tool"``, refused otherwise.

    Returns:
        The message.

    Raises:
        ValueError: If the role is unknown, or a tool message has no ``tool_call_id``
            (or another role has one).
        TypeError: If ``role`` is not a string or ``content`` is not message content.
    """
    if not isinstance(role, str):
        raise TypeError(f"a message role must be a str, got {type(role).__name__} {reprlib.repr(role)}")
    kind = _ROLES.get(role)
    if kind is None:
        raise ValueError(f"unknown message role {role!r}; the roles are {_ROLE_NAMES}")
    if kind is ToolMessage:
        if tool_call_id is None:
            raise ValueError(
                "a 'tool' message needs the id of the tool call it answers; "
                "build it as ToolMessage(content, tool_call_id=...)"
            )
        return ToolMessage(content, name=name, id=id, tool_call_id=tool_call_id)
    if tool_call_id is not None:
        raise ValueError(f"only a 'tool' message has a tool_call_id, not a {role!r} message")
    return kind(content, name=name, id=id)


def _describe(value: object) -> str:
    return f"{type(value).__name__} {reprlib.repr(value)}"


_ITEM_FORMS: Final = (
    "a message, a (role, content) tuple or a message dict ({'role': ..., 'content': ...} "
    "or {'type': ..., 'content': ...})"
)
# The keys a message dict may have: its role (as "role", or as langchain's "type"), and fields.
_DICT_KEYS: Final = frozenset(
    {
        "role",
        "type",
        "content",
        "name",
        "id",
        "tool_call_id",
        "tool_calls",
        "status",
        "additional_kwargs",
        "response_metadata",
    }
)
# Fields only some message types have.
_TYPE_FIELDS: Final[Mapping[str, type[BaseMessage]]] = {"tool_calls": AIMessage, "status": ToolMessage}


def _coerce_item(item: object, position: int, where: str, whole: object) -> BaseMessage:
    if isinstance(item, BaseMessage):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        role, content = item
        if not isinstance(role, str):
            raise TypeError(
                f"{where}: item {position} is a (role, content) tuple whose role is a "
                f"{_describe(role)}; the role must be a str"
            )
        return _from_role(role, content, {}, position, where)
    if isinstance(item, Mapping) and ("role" in item or "type" in item):
        return _from_dict(item, position, where)
    hint = ""
    if isinstance(item, str) and isinstance(whole, tuple) and len(whole) == 2 and item in _ROLES:
        hint = f"; for one message write a list of tuples: [{whole!r}]"
    elif isinstance(item, str):
        hint = f"; for a user message write ('human', {reprlib.repr(item)})"
    raise TypeError(f"{where}: item {position} is a {_describe(item)}; expected {_ITEM_FORMS}{hint}")


def _dict_role(item: Mapping[Any, Any], position: int, where: str) -> str:
    """The role a message dict names with ``"role"`` or ``"type"`` (both: the same one)."""
    named = [item[key] for key in ("role", "type") if key in item]
    for role in named:
        if not isinstance(role, str):
            raise TypeError(f"{where}: item {position} has a role that is a {_describe(role)}, not a str")
    if len(named) == 2 and _ROLES.get(named[0]) is not _ROLES.get(named[1]):
        raise ValueError(
            f"{where}: item {position} is a message dict whose 'role' {named[0]!r} and 'type' "
            f"{named[1]!r} disagree; give one of them"
        )
    return str(named[0])


def _from_dict(item: Mapping[Any, Any], position: int, where: str) -> BaseMessage:
    kind = item.get("type")
    if "role" not in item and isinstance(kind, str) and kind not in _ROLES:
        raise ValueError(
            f"{where}: item {position} is a dict of type {kind!r}, which is no message type (a content "
            f"block? blocks go in a message's content); the message types are {_ROLE_NAMES}"
        )
    extra = set(item) - _DICT_KEYS
    if extra:
        raise ValueError(
            f"{where}: item {position} is a message dict with unsupported keys {sorted(map(str, extra))}; "
            f"the keys are {sorted(_DICT_KEYS)}"
        )
    role = _dict_role(item, position, where)
    if "content" not in item:
        raise ValueError(f"{where}: item {position} is a message dict ({role!r}) without 'content'")
    fields = {key: item[key] for key in ("name", "id", "tool_call_id") if key in item}
    message = _from_role(role, item["content"], fields, position, where)
    more = {
        key: item[key]
        for key in ("tool_calls", "status", "additional_kwargs", "response_metadata")
        if key in item
    }
    for key in more:
        kind = _TYPE_FIELDS.get(key)
        if kind is not None and not isinstance(message, kind):
            raise ValueError(f"{where}: item {position}: a {role!r} message has no {key!r}")
    if not more:
        return message
    try:
        return attrs.evolve(message, **more)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{where}: item {position} ({role!r}): bad message field: {error!r}") from None


def _from_role(role: str, content: object, fields: dict[str, Any], position: int, where: str) -> BaseMessage:
    if not isinstance(content, (str, list)):
        raise TypeError(
            f"{where}: item {position} ({role!r}) has content that is a {_describe(content)}; "
            "content is a str or a list of content blocks"
        )
    try:
        return message_from_role(role, content, **fields)
    except (ValueError, TypeError) as error:
        raise type(error)(f"{where}: item {position}: {error}") from None


def coerce_to_messages(value: object, *, where: str = "input") -> list[BaseMessage]:
    """Turn what users pass to a chat model into a list of messages.

    Accepted: a string (one human message), a message, a prompt value, or a list or tuple
    of messages, ``(role, content)`` tuples and message dicts. A dict names its role with
    ``"role"`` (``{"role": "user", "content": "hi"}``) or, as langchain-core's serialised
    messages do, ``"type"`` (``{"type": "human", "content": "hi"}``), and may also carry
    ``name``, ``id``, ``additional_kwargs``, ``response_metadata``, ``tool_calls`` (an AI
    message's: ``{"name", "args", "id"}`` dicts) and, for ``"tool"``, ``tool_call_id`` and
    ``status``.

    Args:
        value: The value to convert.
        where: What the value is, for error messages (for example ``"ChatAnthropic input"``).

    Returns:
        A new list of messages.

    Raises:
        TypeError: If the value, or an item of it, is none of the accepted forms; the
            message names the item's position and type.
        ValueError: If an item names an unknown role, is a tool message without a
            ``tool_call_id``, or is a message dict with an unknown key, no ``content``,
            ``role`` and ``type`` that disagree, or a field its role does not have.
    """
    if isinstance(value, str):
        return [HumanMessage(value)]
    if isinstance(value, BaseMessage):
        return [value]
    from ._prompt_values import PromptValue  # _prompt_values imports this module

    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, (list, tuple)):
        return [_coerce_item(item, position, where, value) for position, item in enumerate(value)]
    raise TypeError(
        f"{where}: cannot make chat messages from a {_describe(value)}; pass a string, a message, "
        f"a prompt value, or a list of items that are each {_ITEM_FORMS}"
    )
