"""Output parsers: transform steps that turn model chunks into text, JSON or lists.

Each parser works on the input stream and emits as soon as it has something new:
``StrOutputParser`` one text chunk per model chunk; ``JsonOutputParser`` a snapshot of
the best valid JSON value each time the value changes (or JSON-patch operations with
``diff=True``); ``CommaSeparatedListOutputParser`` each item once it is complete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import attrs

from engine import Accumulation, Step, TransformNode

from ._json_stream import MAX_DEPTH, IncrementalJsonParser, IncrementalListSplitter, check_max_depth
from ._jsonpatch import json_patch_ops
from ._messages import AIMessageChunk, BaseMessage
from ._prompt_values import PromptValue
from ._schema import Schema, to_schema

__all__ = ("CommaSeparatedListOutputParser", "JsonOutputParser", "StrOutputParser", "chunk_text")


def chunk_text(chunk: Any, owner: str) -> str:
    """The text of a model chunk (a message, a string or a prompt value).

    Raises:
        TypeError: Naming ``owner`` and what it got instead.
    """
    if isinstance(chunk, str):
        return chunk
    if isinstance(chunk, BaseMessage):
        return chunk.text
    if isinstance(chunk, PromptValue):
        return chunk.to_string()
    raise TypeError(f"{owner} needs text or message chunks, got {type(chunk).__name__}: {chunk!r}")


@attrs.frozen(eq=False, repr=False)
class StrOutputParser(TransformNode[Any, str]):
    """Each model chunk's text, passed on at once (no buffering)."""

    kind: ClassVar[str] = "parser"
    reads_current_step: ClassVar[bool] = False

    async def transform_stream(self, chunks: AsyncIterator[Any], step: Step) -> AsyncIterator[str]:
        owner = self.get_name()
        async for chunk in chunks:
            # A model's text chunk is by far the most common input: read it directly.
            if type(chunk) is AIMessageChunk and type(chunk.content) is str:
                yield chunk.content
            else:
                yield chunk_text(chunk, owner)

    def __repr__(self) -> str:
        return "StrOutputParser()"


def _plain_instructions() -> str:
    return (
        "Answer with one JSON value and nothing else: no text before or after it, and no "
        "Markdown code fence around it."
    )


@attrs.frozen(eq=False, repr=False)
class JsonOutputParser(TransformNode[Any, Any]):
    """The JSON document in the model's text, streamed as it grows.

    For each new piece of text it emits the best valid value for the text so far (open
    strings, arrays and objects closed), only when that value changed. Parsing is
    incremental: the text is scanned once, whatever its length. Prose and a
    ```` ```json ```` fence around the document are skipped.

    With a schema (``pydantic_object=``), the partial values are emitted as above while
    the document is incomplete, and the last chunk is the whole document checked against
    the schema and converted to its type (a dataclass, attrs or pydantic instance; a dict
    for a ``TypedDict`` or a JSON-schema dict). *Where we chose differently from
    langchain-core:* its ``JsonOutputParser`` uses ``pydantic_object`` only for
    :meth:`get_format_instructions` and returns the dict unchecked.

    Partial values share their completed members with one another (that keeps parsing
    linear), so treat them as read-only and copy one before changing it. The last chunk,
    the value ``ainvoke`` returns, is the parser's final value, which shares nothing with
    them: changing a partial value never changes it (see ``IncrementalJsonParser``).
    One exception, to keep the guide's output: when the document's last pieces change
    nothing visible (closing brackets), no further chunk comes, and the last snapshot is
    the value (changing an earlier partial may then show in it). langchain-core parses
    the whole text again for every chunk, so its chunks share nothing; with a schema
    (``pydantic_object``) the last chunk is always the checked, independent value.

    Args:
        diff: Emit lists of JSON-patch operations (from the previous value to the new
            one) instead of whole values.
        max_depth: How deeply arrays and objects may nest (128 by default; see
            ``IncrementalJsonParser``). The parser does not recurse at any depth, but
            ``==``, ``repr``, ``json.dumps`` and ``astream_log`` on the value do.
        pydantic_object: A schema for the final value (the name is langchain-core's, so
            code ports; any kind ``with_structured_output`` takes): a JSON-schema dict, a
            dataclass, an attrs class, a ``TypedDict``, or a pydantic model if pydantic is
            installed. Also what :meth:`get_format_instructions` describes.

    Raises:
        OutputParserException: At the end of the stream, when the text held no
            complete JSON document, or nested deeper than ``max_depth`` (carrying the
            text); ``SchemaValidationError`` (a subclass) when the value does not fit
            ``pydantic_object``, naming the field.
        ValueError: At construction, if ``max_depth`` is not a positive int, or ``diff``
            is asked with a schema whose values are class instances (patches are for
            JSON values).
        UnsupportedSchemaError: At construction, for a schema with no converter here.
    """

    kind: ClassVar[str] = "parser"
    reads_current_step: ClassVar[bool] = False
    diff: bool = False
    max_depth: int = attrs.field(default=MAX_DEPTH, validator=lambda _, __, value: check_max_depth(value))
    pydantic_object: Any = None
    _schema: Schema | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.pydantic_object is None:
            return
        schema = to_schema(self.pydantic_object, where="JsonOutputParser(pydantic_object=...)")
        if self.diff and schema.is_typed:
            raise ValueError(
                f"JsonOutputParser(diff=True) emits JSON patches, which cannot build a {schema.kind} "
                f"({schema.name}); use diff=False, or a TypedDict or JSON-schema dict"
            )
        object.__setattr__(self, "_schema", schema)

    @property
    def output_accumulation(self) -> Accumulation:
        # Snapshots: the last one is the value. Patches: they add up (lists concatenate).
        return "add" if self.diff else "last"

    def get_format_instructions(self) -> str:
        """Words for a prompt that ask for the JSON this parser reads (for models without tools).

        With a schema they include its JSON schema; without, they ask for one JSON value.
        """
        if self._schema is None:
            return _plain_instructions()
        return self._schema.format_instructions()

    def transform_stream(self, chunks: AsyncIterator[Any], step: Step) -> AsyncIterator[Any]:
        if self._schema is not None:
            return self._validated(chunks, self._schema)
        return self._values(chunks)

    async def _values(self, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        owner = self.get_name()
        parser = IncrementalJsonParser(self.max_depth)
        previous: Any = None
        emitted = done = False
        async for chunk in chunks:
            changed = parser.feed(chunk_text(chunk, owner))
            if done or not parser.has_value:
                continue
            if parser.is_complete:
                done = True
                if not changed:
                    # The last pieces only closed the document: nothing new to show, so
                    # no chunk (the guide's output); the last snapshot stands as the value.
                    continue
                # The complete document is the final value itself, not a snapshot that
                # shares members with the ones before it (which a consumer may change).
                value = parser.result
            elif changed:
                value = parser.value
            else:
                continue
            if not self.diff:
                yield value
            elif not emitted:
                yield [{"op": "replace", "path": "", "value": value}]
            elif ops := json_patch_ops(previous, value):
                yield ops
            previous, emitted = value, True
        final = parser.finish()
        if not emitted:
            yield [{"op": "replace", "path": "", "value": final}] if self.diff else final
        elif final is not previous:
            # Completed by finish() (a top-level number): emitted when it differs.
            # ``json_patch_ops`` finds that without recursion (``!=`` recurses per level).
            ops = json_patch_ops(previous, final)
            if ops:
                yield ops if self.diff else final

    async def _validated(self, chunks: AsyncIterator[Any], schema: Schema) -> AsyncIterator[Any]:
        # As _values, but the complete document is not emitted as a partial value: the
        # checked final value stands for it, always as the last chunk.
        owner = self.get_name()
        parser = IncrementalJsonParser(self.max_depth)
        previous: Any = None
        emitted = False
        async for chunk in chunks:
            if parser.feed(chunk_text(chunk, owner)) and parser.has_value and not parser.is_complete:
                value = parser.value
                if self.diff:
                    yield (
                        json_patch_ops(previous, value)
                        if emitted
                        else [{"op": "replace", "path": "", "value": value}]
                    )
                else:
                    yield value
                previous, emitted = value, True
        final = schema.convert(parser.finish(), text=parser.text)
        if not self.diff:
            yield final
        elif not emitted:
            yield [{"op": "replace", "path": "", "value": final}]
        elif ops := json_patch_ops(previous, final):
            yield ops

    def __repr__(self) -> str:
        options = [f"diff={self.diff}"] if self.diff else []
        if self.max_depth != MAX_DEPTH:
            options.append(f"max_depth={self.max_depth}")
        if self._schema is not None:
            options.append(f"pydantic_object={self._schema.name or self._schema.kind}")
        return f"JsonOutputParser({', '.join(options)})"


@attrs.frozen(eq=False, repr=False)
class CommaSeparatedListOutputParser(TransformNode[Any, list[str]]):
    """Items of a comma-separated list, each emitted (as a one-item list) once complete."""

    kind: ClassVar[str] = "parser"
    reads_current_step: ClassVar[bool] = False

    async def transform_stream(self, chunks: AsyncIterator[Any], step: Step) -> AsyncIterator[list[str]]:
        owner = self.get_name()
        splitter = IncrementalListSplitter()
        async for chunk in chunks:
            for item in splitter.feed(chunk_text(chunk, owner)):
                yield [item]
        for item in splitter.finish():
            yield [item]

    def __repr__(self) -> str:
        return "CommaSeparatedListOutputParser()"
