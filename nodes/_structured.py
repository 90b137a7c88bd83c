"""Structured output that streams: ``model.with_structured_output(schema)``.

``with_structured_output`` returns ``bound_model | StructuredOutputParser(...)``, a
sequence of two steps (so events name the model and the parser, as langchain-core's do):

* ``method="json_schema"``: the model is bound with ``output_config={"format":
  {"type": "json_schema", "schema": ...}}`` (Claude's native structured output: the reply
  is a text block holding the JSON), and the parser reads the reply's text.
* ``method="function_calling"``: the model is bound with the schema as its only tool and
  ``tool_choice={"type": "tool", "name": ...}`` (through ``bind_tools``, or ``bind`` for a
  model without it), and the parser reads that call's argument fragments.

Either way each fragment goes once through an :class:`IncrementalJsonParser`, so a long
object costs time linear in its length, not in the number of partials. While the JSON
arrives the parser yields *partial snapshots*: plain JSON values (dicts for object
schemas, whatever the schema's type), each the best valid value for the text so far, and
each extending the one before (strings grow, members and items are added; a number may
gain digits). The last chunk is the *final value*: the whole document checked against
the schema and converted to its type (a dataclass, attrs or pydantic instance; a dict
for a ``TypedDict`` or a dict schema). The snapshot of the complete document is not
yielded before it, so the final value appears once, as the last chunk; ``ainvoke``
returns it.

Partial snapshots are read-only: consecutive ones share their completed members (lists,
dicts) by identity, which is what keeps a partial's cost flat; one independent of the
others would copy the whole document each time. The final value shares nothing with
them: it is built from the parser's own tree, which no snapshot holds a part of, and
checked against the schema as it is returned, so a consumer that changes a partial can
neither change the final value nor slip something past the schema.

``include_raw=True`` yields ``AddableDict`` chunks instead: ``{"raw": chunk}`` for every
model chunk (with ``"parsed": snapshot`` beside it when the snapshot changed), then
``{"parsed": value, "parsing_error": None}``, or ``{"parsed": None, "parsing_error":
error}`` when the output did not parse or fit (the error is returned, not raised, as in
langchain-core). They add up to ``{"raw": <the model's whole reply>, "parsed": ...,
"parsing_error": ...}``; ``"raw"`` is the summed ``AIMessageChunk`` (its
``to_message()`` is the ``AIMessage``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar, Final, Literal

import attrs

from engine import Accumulation, AddableDict, Runnable, RunnableSequence, Step, TransformNode

from ._exceptions import OutputParserException
from ._json_stream import MAX_DEPTH, IncrementalJsonParser, check_max_depth
from ._messages import AIMessage, AIMessageChunk
from ._parsers import chunk_text
from ._schema import Schema, to_schema, valid_tool_name

__all__ = ("METHODS", "StructuredOutputMethod", "StructuredOutputParser", "structured_output")

StructuredOutputMethod = Literal["json_schema", "function_calling"]

#: The methods ``with_structured_output`` knows.
METHODS: Final = ("json_schema", "function_calling")

# Keys whose values are snapshots, not deltas: the newest one stands when chunks add up.
_SNAPSHOT_KEYS: Final = frozenset({"parsed", "parsing_error"})

# Stop reasons that explain a reply cut short or missing (response_metadata["stop_reason"]).
_STOPS: Final = {
    "max_tokens": "the reply hit max_tokens before the JSON was complete; raise max_tokens",
    "refusal": "the model refused to answer",
    "model_context_window_exceeded": "the reply filled the model's context window",
    "pause_turn": "the model paused its turn before answering",
}


class _TextSource:
    """Feeds the reply's text to the JSON parser (method ``json_schema``)."""

    __slots__ = ("metadata", "owner", "parser")

    def __init__(self, parser: IncrementalJsonParser, owner: str) -> None:
        self.parser = parser
        self.owner = owner
        self.metadata: Mapping[str, Any] = {}

    def feed(self, chunk: Any) -> bool:
        if type(chunk) is AIMessageChunk:
            if chunk.response_metadata:
                self.metadata = chunk.response_metadata
            content = chunk.content
            text = content if type(content) is str else chunk.text
        else:
            text = chunk_text(chunk, self.owner)
        return self.parser.feed(text) if text else False

    def finish(self) -> Any:
        return self.parser.finish()


class _ToolSource:
    """Feeds the argument fragments of the first call of one tool to the JSON parser
    (method ``function_calling``); other calls and the text are not read."""

    __slots__ = ("done", "fed", "found", "index", "metadata", "name", "owner", "parser")

    def __init__(self, parser: IncrementalJsonParser, name: str, owner: str) -> None:
        self.parser = parser
        self.name = name
        self.owner = owner
        self.metadata: Mapping[str, Any] = {}
        self.found = self.done = self.fed = False
        self.index: int | None = None

    def feed(self, chunk: Any) -> bool:
        if type(chunk) is not AIMessageChunk:
            return self._feed_other(chunk)
        if chunk.response_metadata:
            self.metadata = chunk.response_metadata
        changed = False
        for call in chunk.tool_call_chunks:
            if self.done:
                break
            if not self.found:
                if call.name != self.name:
                    continue
                self.found, self.index = True, call.index
                # Without an index a fragment is a call of its own: the whole call is here.
                self.done = call.index is None
            elif call.index != self.index:
                continue
            if call.args:
                self.fed = True
                changed = self.parser.feed(call.args) or changed
        return changed

    def _feed_other(self, chunk: Any) -> bool:
        if isinstance(chunk, AIMessage):
            import json

            for call in chunk.tool_calls:
                if call.name == self.name and not self.found:
                    self.found = self.done = self.fed = True
                    return self.parser.feed(json.dumps(call.args))
            return False
        raise TypeError(
            f"{self.owner} reads the tool call {self.name!r} of a chat model's reply, so it needs "
            f"AIMessageChunk input, got {type(chunk).__name__}: {chunk!r}"
        )

    def finish(self) -> Any:
        if not self.found:
            raise OutputParserException(
                f"The model's reply has no call of the tool {self.name!r} that carries the structured output",
                text=self.parser.text,
            )
        if not self.fed:
            return {}  # a call without argument fragments has empty arguments
        return self.parser.finish()


def _note_stop(error: BaseException, metadata: Mapping[str, Any]) -> None:
    reason = metadata.get("stop_reason")
    if reason in _STOPS:
        error.add_note(f"stop_reason={reason!r}: {_STOPS[reason]}")


def _parser_schema(value: Any) -> Schema:
    return to_schema(value, where="StructuredOutputParser")


def _check_tool_name(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"tool_name must be a non-empty string or None, got {value!r}")


def _check_bool(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be True or False, got {value!r}")


@attrs.frozen(eq=False, repr=False)
class StructuredOutputParser(TransformNode[Any, Any]):
    """Partial snapshots of a model's structured reply as it streams, then its final value.

    Made by ``with_structured_output`` (see the module docstring for what it yields).

    Args:
        schema: What the final value must fit (anything :func:`to_schema` takes).
        tool_name: Read the arguments of the first call of this tool; ``None`` reads the text.
        include_raw: Yield ``{"raw": ..., "parsed": ..., "parsing_error": ...}`` chunks.
        max_depth: The JSON parser's nesting limit.

    Raises:
        OutputParserException: At the end of the stream (unless ``include_raw``), when the
            reply held no complete JSON document or no call of the tool;
            ``SchemaValidationError`` (a subclass) when the value does not fit the schema.
    """

    kind: ClassVar[str] = "parser"
    reads_current_step: ClassVar[bool] = False

    schema: Schema = attrs.field(converter=_parser_schema)
    tool_name: str | None = attrs.field(default=None, validator=_check_tool_name)
    include_raw: bool = attrs.field(default=False, validator=_check_bool)
    max_depth: int = attrs.field(default=MAX_DEPTH, validator=lambda _, __, value: check_max_depth(value))

    def get_name(self) -> str:
        return "StructuredOutputParser"

    @property
    def output_accumulation(self) -> Accumulation:
        # Snapshots: the last one is the value. With the raw reply: dicts that add key by key.
        return "add" if self.include_raw else "last"

    def carries_content(self, chunk: Any) -> bool:
        """A raw chunk carries content when the model's chunk does (an id-only one does not)."""
        if not self.include_raw or not isinstance(chunk, dict) or "raw" not in chunk or "parsed" in chunk:
            return True
        raw = chunk["raw"]
        return not isinstance(raw, AIMessageChunk) or bool(raw.content or raw.tool_call_chunks)

    def _source(self) -> _TextSource | _ToolSource:
        parser = IncrementalJsonParser(self.max_depth)
        if self.tool_name is None:
            return _TextSource(parser, self.get_name())
        return _ToolSource(parser, self.tool_name, self.get_name())

    def _final(self, source: _TextSource | _ToolSource) -> Any:
        try:
            return self.schema.convert(source.finish(), text=source.parser.text)
        except OutputParserException as error:
            _note_stop(error, source.metadata)
            raise

    def transform_stream(self, chunks: AsyncIterator[Any], step: Step) -> AsyncIterator[Any]:
        if self.include_raw:
            return self._with_raw(chunks)
        return self._snapshots(chunks)

    async def _snapshots(self, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        source = self._source()
        parser = source.parser
        feed = source.feed
        async for chunk in chunks:
            # The complete document's snapshot is skipped: the final value stands for it.
            if feed(chunk) and parser.has_value and not parser.is_complete:
                yield parser.value
        yield self._final(source)

    async def _with_raw(self, chunks: AsyncIterator[Any]) -> AsyncIterator[AddableDict]:
        source = self._source()
        parser = source.parser
        async for chunk in chunks:
            if source.feed(chunk) and parser.has_value and not parser.is_complete:
                yield AddableDict(raw=chunk, parsed=parser.value, snapshot_keys=_SNAPSHOT_KEYS)
            else:
                yield AddableDict(raw=chunk, snapshot_keys=_SNAPSHOT_KEYS)
        try:
            final = self._final(source)
        except OutputParserException as error:
            yield AddableDict(parsed=None, parsing_error=error, snapshot_keys=_SNAPSHOT_KEYS)
        else:
            yield AddableDict(parsed=final, parsing_error=None, snapshot_keys=_SNAPSHOT_KEYS)

    def __repr__(self) -> str:
        shown = [f"schema={self.schema.name or self.schema.kind}"]
        if self.tool_name is not None:
            shown.append(f"tool_name={self.tool_name!r}")
        if self.include_raw:
            shown.append("include_raw=True")
        return f"StructuredOutputParser({', '.join(shown)})"


def _with_output_format(model: Any, output_format: dict[str, Any], where: str) -> Any:
    existing = getattr(model, "output_config", None)
    # Keep what else the model's output_config says (an effort level, say).
    config = (
        {**existing, "format": output_format} if isinstance(existing, Mapping) else {"format": output_format}
    )
    try:
        return model.bind(output_config=config)
    except TypeError as exc:
        raise TypeError(
            f"{where}: method='json_schema' binds output_config (Claude's native structured "
            f"output), which {model.get_name()} does not take; use method='function_calling'"
        ) from exc


def _with_forced_tool(model: Any, tool: dict[str, Any], where: str) -> Any:
    choice = {"type": "tool", "name": tool["name"]}
    bind_tools = getattr(model, "bind_tools", None)
    if bind_tools is not None:
        try:
            return bind_tools([tool], tool_choice=choice)
        except ValueError as exc:
            # The model refuses to be forced to call the tool (with thinking on, Claude
            # does): say what this method needs and what to use instead.
            raise ValueError(
                f"{where}: method='function_calling' forces a call of the tool {tool['name']!r}, "
                f"which {model.get_name()} refuses ({exc}); use method='json_schema' (Claude's "
                "native structured output, which forces no tool call)"
            ) from exc
    try:
        # A model without bind_tools that takes the call arguments (the scripted model).
        return model.bind(tools=[tool], tool_choice=choice)
    except TypeError as exc:
        raise TypeError(
            f"{where}: method='function_calling' needs a model with bind_tools() (or that binds "
            f"tools and tool_choice), which {model.get_name()} is not; use method='json_schema'"
        ) from exc


def structured_output(
    model: Runnable[Any, Any],
    schema: Any,
    *,
    method: str | None,
    include_raw: Any,
    default_method: str,
) -> RunnableSequence[Any, Any]:
    """``model.with_structured_output(schema, ...)`` (see ``BaseChatModel``).

    Raises:
        UnsupportedSchemaError: For a schema (or a part of one) it cannot use with ``method``.
        TypeError: For an ``include_raw`` that is not a bool, or a model that cannot be
            bound for ``method``.
        ValueError: For an unknown ``method``.
    """
    where = f"{model.get_name()}.with_structured_output()"
    if not isinstance(include_raw, bool):
        raise TypeError(f"{where}: include_raw must be True or False, got {include_raw!r}")
    chosen = default_method if method is None else method
    if chosen not in METHODS:
        raise ValueError(f"{where}: method must be one of {', '.join(map(repr, METHODS))}, got {chosen!r}")
    converted = to_schema(schema, where=where)
    if chosen == "json_schema":
        output_format = converted.claude_format(f"{where} with method='json_schema'")
        bound = _with_output_format(model, output_format, where)
        tool_name = None
    else:
        tool = converted.tool(f"{where} with method='function_calling'")
        # Named after the schema's class or title ("Person Info"), which nobody calls it
        # by: made a name the API takes rather than refused.
        tool = {**tool, "name": valid_tool_name(tool["name"])}
        bound = _with_forced_tool(model, tool, where)
        tool_name = tool["name"]
    parser = StructuredOutputParser(converted, tool_name=tool_name, include_raw=include_raw)
    return RunnableSequence.of(bound, parser)
