"""``with_structured_output``: partial snapshots while the JSON arrives, then the checked,
typed value; both methods, offline (scripted models) and against the loopback Messages API.

Every async test runs on trio and asyncio. Offline, ``ScriptedChatModel`` scripts replies
that are JSON text (``method="json_schema"``) or tool calls; ``Fragments`` (a model node
written here with the public ``stream_chunks`` hook) streams exactly the chunks a test
gives, so a tool call's arguments can arrive in pieces and a reply can carry a stop
reason. Against the loopback server, request bodies are compared whole.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, ClassVar, NotRequired, TypedDict

import anyio
import attrs
import pytest
from anthropic_server import (
    AnthropicServer,
    MessageStream,
    TextBlock,
    TextStream,
    ThinkingBlock,
    ToolUseStream,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import RunnableSequence
from nodes import (
    AIMessage,
    AIMessageChunk,
    BaseChatModel,
    BaseMessage,
    ChatAnthropic,
    JsonOutputParser,
    OutputParserException,
    SchemaValidationError,
    ScriptedChatModel,
    ToolCall,
    ToolCallChunk,
    UnsupportedSchemaError,
    apply_patch,
)

GUARD = 10.0  # seconds; bounds a run that should end at once, never paces a test
MODEL = "claude-test-model"


@dataclasses.dataclass
class Person:
    """Someone to write to."""

    name: str
    age: int
    hobbies: list[str]


class Movie(TypedDict):
    title: str
    year: NotRequired[int]


PERSON = {"name": "Ann Smith", "age": 31, "hobbies": ["chess", "rowing"]}
PERSON_JSON = json.dumps(PERSON)
PERSON_SCHEMA = {
    "type": "object",
    "description": "Someone to write to.",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "hobbies": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "hobbies"],
    "additionalProperties": False,
}
PERSON_FORMAT = {"type": "json_schema", "schema": PERSON_SCHEMA}
PERSON_TOOL = {
    "name": "Person",
    "description": "Someone to write to.",
    "input_schema": {key: value for key, value in PERSON_SCHEMA.items() if key != "description"},
}


def pieces(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def collect(runnable: Any, value: Any = "hi") -> list[Any]:
    with anyio.fail_after(GUARD):
        async with runnable.astream(value) as chunks:
            return [chunk async for chunk in chunks]


def is_partial(partial: Any, final: Any) -> bool:
    """Whether ``partial`` is a snapshot ``final`` can grow from: completed members equal, the
    last one (the member being written) itself partial; a string a prefix; a number any."""
    if partial == final and type(partial) is type(final):
        return True
    if isinstance(partial, dict) and isinstance(final, dict):
        keys = list(partial)
        if keys != list(final)[: len(keys)]:
            return False
        done = all(partial[key] == final[key] for key in keys[:-1])
        return done and (not keys or is_partial(partial[keys[-1]], final[keys[-1]]))
    if isinstance(partial, list) and isinstance(final, list):
        if not partial:
            return True
        if len(partial) > len(final) or partial[:-1] != final[: len(partial) - 1]:
            return False
        return is_partial(partial[-1], final[len(partial) - 1])
    if isinstance(partial, str) and isinstance(final, str):
        return final.startswith(partial)
    numbers = (int, float)
    return isinstance(partial, numbers) and isinstance(final, numbers) and not isinstance(partial, bool)


def check_snapshots(chunks: list[Any], final_json: Any) -> None:
    """Each snapshot extends the one before and leads to the final JSON value."""
    for earlier, later in itertools.pairwise(chunks):
        assert is_partial(earlier, later), (earlier, later)
    for snapshot in chunks:
        assert is_partial(snapshot, final_json), (snapshot, final_json)


@attrs.define(eq=False, repr=False)
class Fragments(BaseChatModel):
    """A model node that streams exactly ``chunks``; it records what it was bound with."""

    call_arguments: ClassVar[Mapping[str, str]] = {
        "tools": "tools",
        "tool_choice": "tool_choice",
        "output_config": "output_config",
    }

    chunks: Sequence[AIMessageChunk]
    tools: tuple[Any, ...] = ()
    tool_choice: Any = None
    output_config: Any = None

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None) -> Fragments:
        return self.bind(tools=tuple(tools), tool_choice=tool_choice)

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        for chunk in self.chunks:
            yield chunk


def tool_call(
    name: str, fragments: Sequence[str], *, stop_reason: str = "tool_use", index: int = 0
) -> list[AIMessageChunk]:
    """The chunks of a streamed tool call: name and id, the argument fragments, the stop."""
    start = AIMessageChunk(
        content="", tool_call_chunks=[ToolCallChunk(name=name, id=f"toolu_{index}", args="", index=index)]
    )
    parts = [
        AIMessageChunk(content="", tool_call_chunks=[ToolCallChunk(args=f, index=index)]) for f in fragments
    ]
    stop = AIMessageChunk(content="", response_metadata={"stop_reason": stop_reason})
    return [start, *parts, stop]


# -- json_schema: the reply's text -------------------------------------------------------------


async def test_json_schema_streams_partial_snapshots_then_the_typed_value() -> None:
    """Snapshots grow with the text; the last chunk is the dataclass instance, the document's snapshot not repeated."""
    model = ScriptedChatModel([pieces(PERSON_JSON)])
    structured = model.with_structured_output(Person)
    chunks = await collect(structured)
    assert chunks[-1] == Person("Ann Smith", 31, ["chess", "rowing"])
    partials = chunks[:-1]
    assert partials[0] == {} and {"name": "An"} in partials and {"name": "Ann Smith", "age": 31} in partials
    assert all(isinstance(chunk, dict) for chunk in partials) and PERSON not in partials
    check_snapshots(partials, PERSON)
    assert structured.steps[0].received_arguments == [{"output_config": {"format": PERSON_FORMAT}}]


async def test_ainvoke_returns_the_typed_value_and_a_typeddict_or_dict_schema_gives_a_dict() -> None:
    """ainvoke gives the final value: an instance for a class, a dict for a TypedDict or a JSON schema."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    with anyio.fail_after(GUARD):
        person = await ScriptedChatModel([PERSON_JSON]).with_structured_output(Person).ainvoke("hi")
        movie = await ScriptedChatModel(['{"title": "Up"}']).with_structured_output(Movie).ainvoke("hi")
        plain = await ScriptedChatModel(['{"n": 2}']).with_structured_output(schema).ainvoke("hi")
    assert (person, movie, plain) == (Person(**PERSON), {"title": "Up"}, {"n": 2})  # type: ignore[arg-type]


async def test_a_reply_that_does_not_fit_raises_naming_the_field_after_its_partials() -> None:
    """The partial snapshots were delivered; then a SchemaValidationError names the path, with the text."""
    text = '{"name": "Ann", "age": "old", "hobbies": []}'
    structured = ScriptedChatModel([pieces(text)]).with_structured_output(Person)
    seen: list[Any] = []
    with pytest.raises(SchemaValidationError) as caught, anyio.fail_after(GUARD):
        async with structured.astream("hi") as chunks:
            async for chunk in chunks:
                seen.append(chunk)
    assert seen and all(isinstance(chunk, dict) for chunk in seen) and seen[-1]["age"] == "old"
    assert caught.value.path == ("age",) and caught.value.text == text
    assert "does not fit Person: at age, expected an integer, got the string 'old'" in str(caught.value)


async def test_a_reply_cut_by_max_tokens_says_so() -> None:
    """A truncated document fails at the end, with a note naming stop_reason='max_tokens'."""
    chunks = [AIMessageChunk(content=text) for text in pieces(PERSON_JSON[:20])]
    chunks.append(AIMessageChunk(content="", response_metadata={"stop_reason": "max_tokens"}))
    structured = Fragments(chunks).with_structured_output(Person, method="json_schema")
    with pytest.raises(OutputParserException) as caught, anyio.fail_after(GUARD):
        await structured.ainvoke("hi")
    assert "ended inside a JSON document" in str(caught.value)
    assert caught.value.__notes__ == [
        "stop_reason='max_tokens': the reply hit max_tokens before the JSON was complete; raise max_tokens"
    ]


# -- function_calling: the forced tool call's arguments -------------------------------------------


async def test_function_calling_forces_the_tool_and_streams_its_argument_fragments() -> None:
    """The schema is the only tool, tool_choice names it, and each argument fragment grows the snapshot."""
    model = Fragments(tool_call("Person", pieces(PERSON_JSON, 3)))
    structured = model.with_structured_output(Person, method="function_calling")
    bound = structured.steps[0]
    assert isinstance(bound, Fragments)
    assert bound.tools == (PERSON_TOOL,) and bound.tool_choice == {"type": "tool", "name": "Person"}
    chunks = await collect(structured)
    assert chunks[-1] == Person(**PERSON)  # type: ignore[arg-type]
    assert len(chunks) > 10
    check_snapshots(chunks[:-1], PERSON)


async def test_function_calling_reads_only_the_first_call_of_its_tool() -> None:
    """Text, other tools' calls and a second call of the tool are not read."""
    other = tool_call("lookup", ['{"q": "x"}'], index=1)[:2]
    first = tool_call("Person", pieces(PERSON_JSON, 7), index=2)[:-1]
    second = tool_call("Person", ['{"name": "Bob", "age": 1, "hobbies": []}'], index=3)
    chunks = [AIMessageChunk(content="Sure."), *other, *first, *second]
    structured = Fragments(chunks).with_structured_output(Person, method="function_calling")
    with anyio.fail_after(GUARD):
        assert await structured.ainvoke("hi") == Person(**PERSON)  # type: ignore[arg-type]


async def test_function_calling_with_a_scripted_tool_call_and_no_call_at_all() -> None:
    """A scripted AIMessage with the call gives the value; a reply without it fails naming the tool."""
    call = AIMessage("", tool_calls=[ToolCall(name="Person", args=PERSON, id="toolu_1")])
    model = ScriptedChatModel([call, "I'd rather not."])
    structured = model.with_structured_output(Person, method="function_calling")
    with anyio.fail_after(GUARD):
        assert await structured.ainvoke("hi") == Person(**PERSON)  # type: ignore[arg-type]
        with pytest.raises(OutputParserException, match="The model's reply has no call of the tool 'Person'"):
            await structured.ainvoke("hi")
    assert structured.steps[0].received_arguments[0] == {
        "tools": [PERSON_TOOL],
        "tool_choice": {"type": "tool", "name": "Person"},
    }


async def test_a_call_without_argument_fragments_has_empty_arguments() -> None:
    """A tool call that streams no fragment is {} (fits a schema with no required field)."""
    schema = {"title": "Nothing", "type": "object", "properties": {"a": {"type": "integer"}}}
    structured = Fragments(tool_call("Nothing", [])).with_structured_output(schema, method="function_calling")
    with anyio.fail_after(GUARD):
        assert await structured.ainvoke("hi") == {}


# -- include_raw ------------------------------------------------------------------------------------


async def test_include_raw_streams_each_model_chunk_with_the_snapshots_and_ends_with_parsed() -> None:
    """{"raw": chunk} per model chunk (with "parsed" when it changed), then parsed and parsing_error; they add up."""
    model = ScriptedChatModel([pieces(PERSON_JSON, 8)])
    structured = model.with_structured_output(Person, include_raw=True)
    chunks = await collect(structured)
    raws = [chunk["raw"] for chunk in chunks[:-1]]
    assert "".join(raw.content for raw in raws) == PERSON_JSON
    assert all(set(chunk) in ({"raw"}, {"raw", "parsed"}) for chunk in chunks[:-1])
    assert chunks[0]["parsed"] == {} and chunks[1]["parsed"] == {"name": "Ann Sm"}
    assert chunks[-1] == {"parsed": Person(**PERSON), "parsing_error": None}  # type: ignore[arg-type]
    with anyio.fail_after(GUARD):
        whole = await structured.ainvoke("hi")
    assert set(whole) == {"raw", "parsed", "parsing_error"}
    assert whole["raw"].content == PERSON_JSON and whole["parsed"] == Person(**PERSON)  # type: ignore[arg-type]
    assert whole["parsing_error"] is None


async def test_include_raw_returns_a_parsing_error_instead_of_raising() -> None:
    """A reply that does not fit gives parsed None and the error, and the raw reply."""
    bad = '{"name": "Ann", "age": "x", "hobbies": []}'
    structured = ScriptedChatModel([bad]).with_structured_output(Person, include_raw=True)
    with anyio.fail_after(GUARD):
        whole = await structured.ainvoke("hi")
    assert whole["raw"].content == bad and whole["parsed"] is None
    assert isinstance(whole["parsing_error"], SchemaValidationError) and whole["parsing_error"].path == (
        "age",
    )


async def test_include_raw_holds_back_a_preamble_until_content_for_retries() -> None:
    """A raw chunk without content (a message start) does not pass the commit point: a retry stays possible."""
    structured = Fragments([]).with_structured_output(Person, include_raw=True)
    parser = structured.steps[-1]
    assert not parser.carries_content({"raw": AIMessageChunk(content="", id="msg_1")})
    assert parser.carries_content({"raw": AIMessageChunk(content="{")})
    assert parser.carries_content({"parsed": None, "parsing_error": None})


# -- bad input, before any call ---------------------------------------------------------------------


@dataclasses.dataclass
class Counts:
    counts: dict[str, int]


@attrs.define(eq=False, repr=False)
class Bare(BaseChatModel):
    """A model node with no bindable tools or output_config."""

    calls: int = 0

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        self.calls += 1
        yield AIMessageChunk(content="{}")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"include_raw": "yes"},
            TypeError,
            r"with_structured_output\(\): include_raw must be True or False, got 'yes'",
        ),
        (
            {"method": "json_mode"},
            ValueError,
            r"method must be one of 'json_schema', 'function_calling', got 'json_mode'",
        ),
        ({"schema": int}, UnsupportedSchemaError, "a schema must be a JSON-schema dict, a dataclass"),
        ({"schema": Counts}, UnsupportedSchemaError, r"method='json_schema'.*an object with free keys"),
        (
            {"schema": {"type": "object"}, "method": "function_calling"},
            UnsupportedSchemaError,
            "needs a name",
        ),
    ],
)
def test_bad_arguments_are_refused_at_once_before_any_call(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """A wrong include_raw, an unknown method, a schema the method cannot use: refused, the model never called."""
    model = ScriptedChatModel(["{}"])
    arguments: dict[str, Any] = {"schema": Person, **kwargs}
    with pytest.raises(error, match=message):
        model.with_structured_output(**arguments)
    assert model.calls == 0


def test_a_model_that_cannot_be_bound_for_the_method_is_refused_naming_the_other_method() -> None:
    """No output_config: use function_calling; no bind_tools: use json_schema."""
    with pytest.raises(TypeError, match=r"Bare does not take; use method='function_calling'"):
        Bare().with_structured_output(Person, method="json_schema")
    with pytest.raises(
        TypeError,
        match=r"needs a model with bind_tools\(\) \(or that binds tools and tool_choice\), which Bare is not",
    ):
        Bare().with_structured_output(Person)  # the base's default: function_calling
    assert Bare.default_structured_output_method == "function_calling"
    assert ScriptedChatModel.default_structured_output_method == "json_schema"
    assert ChatAnthropic.default_structured_output_method == "json_schema"


async def test_counts_schema_works_as_a_tool() -> None:
    """A dict[str, X] field, refused as Claude's output format, works with function_calling."""
    call = AIMessage("", tool_calls=[ToolCall(name="Counts", args={"counts": {"a": 1}}, id="t")])
    structured = ScriptedChatModel([call]).with_structured_output(Counts, method="function_calling")
    with anyio.fail_after(GUARD):
        assert await structured.ainvoke("hi") == Counts({"a": 1})


# -- events and composition ---------------------------------------------------------------------------


async def test_events_name_the_model_and_the_parser_and_the_end_carries_the_value() -> None:
    """A sequence of the bound model and StructuredOutputParser: chat-model events, then the parser's."""
    structured = ScriptedChatModel([pieces(PERSON_JSON)]).with_structured_output(Person)
    assert isinstance(structured, RunnableSequence)
    with anyio.fail_after(GUARD):
        events = [event async for event in structured.astream_events("hi")]
    names = [(event["event"], event["name"]) for event in events]
    assert names[:3] == [
        ("on_chain_start", "RunnableSequence"),
        ("on_chat_model_start", "ScriptedChatModel"),
        ("on_parser_start", "StructuredOutputParser"),
    ]
    parser_end = next(event for event in events if event["event"] == "on_parser_end")
    assert parser_end["data"]["output"] == Person(**PERSON)  # type: ignore[arg-type]
    assert events[-1]["data"]["output"] == Person(**PERSON)  # type: ignore[arg-type]


async def test_json_output_parser_with_a_schema_streams_partials_then_the_checked_value() -> None:
    """JsonOutputParser(pydantic_object=...) validates and converts the final value; diff patches still add up."""
    chain = ScriptedChatModel([pieces(PERSON_JSON), '{"title": 3}']) | JsonOutputParser(
        pydantic_object=Person
    )
    chunks = await collect(chain)
    assert chunks[-1] == Person(**PERSON) and PERSON not in chunks  # type: ignore[arg-type]
    check_snapshots(chunks[:-1], PERSON)
    with pytest.raises(SchemaValidationError, match="at title, expected a string, got the integer 3"):
        await (ScriptedChatModel(['{"title": 3}']) | JsonOutputParser(pydantic_object=Movie)).ainvoke("hi")
    patches = ScriptedChatModel([pieces('{"title": "Up", "year": 2009}')]) | JsonOutputParser(
        diff=True, pydantic_object=Movie
    )
    with anyio.fail_after(GUARD):
        ops = await patches.ainvoke("hi")
    assert ops[0] == {"op": "replace", "path": "", "value": {}}
    assert apply_patch(None, ops) == {"title": "Up", "year": 2009}


# -- partials are read-only; the final value is the model's ---------------------------------------


@dataclasses.dataclass
class Tagged:
    tags: list[str]
    name: str


TAGGED_SCHEMA = {
    "title": "Tagged",
    "type": "object",
    "properties": {"tags": {"type": "array", "items": {"type": "string"}}, "name": {"type": "string"}},
    "required": ["tags", "name"],
    "additionalProperties": False,
}
TAGGED_PIECES = ['{"tags": ["a", ', '"b"], "na', 'me": "x', 'y"}']


@attrs.define(eq=False, repr=False)
class Paced(Fragments):
    """Fragments that yields each chunk only once every other task waits, so the consumer has
    read and changed every chunk before the next one is parsed."""

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        for chunk in self.chunks:
            await anyio.wait_all_tasks_blocked()
            yield chunk


def vandalize(value: Any) -> None:
    """What a careless consumer does to a chunk: every list gets a 7, every dict a key "zz"."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            item.append(7)
        elif isinstance(item, dict):
            stack.extend(item.values())
            item["zz"] = 7


async def vandalized(runnable: Any, key: str | None = None) -> list[Any]:
    """Each chunk (or its ``key``) as it arrived, then changed in place before the next one is read."""
    seen: list[Any] = []
    with anyio.fail_after(GUARD):
        async with runnable.astream("hi") as chunks:
            async for chunk in chunks:
                part = chunk if key is None else chunk.get(key)
                seen.append(copy.deepcopy(part))
                vandalize(part)
    return seen


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
@pytest.mark.parametrize("schema", [Tagged, TAGGED_SCHEMA], ids=["dataclass", "dict"])
async def test_changing_partials_never_reaches_the_final_value(schema: Any, method: str) -> None:
    """A consumer that changes each partial in place changes neither the final value nor what the schema checks."""
    text = [AIMessageChunk(content=piece) for piece in TAGGED_PIECES]
    model = Paced(tool_call("Tagged", TAGGED_PIECES) if method == "function_calling" else text)
    structured = model.with_structured_output(schema, method=method)
    seen = await vandalized(structured)
    expected = {"tags": ["a", "b"], "name": "xy"}
    assert seen[:2] == [{"tags": ["a"]}, {"tags": ["a", "b"]}]
    assert seen[-1] == (Tagged(**expected) if schema is Tagged else expected)  # type: ignore[arg-type]
    raw = model.with_structured_output(schema, method=method, include_raw=True)
    parsed = [part for part in await vandalized(raw, "parsed") if part is not None]
    assert parsed[-1] == (Tagged(**expected) if schema is Tagged else expected)  # type: ignore[arg-type]


@pytest.mark.parametrize("schema", [None, TAGGED_SCHEMA], ids=["no schema", "dict schema"])
async def test_json_output_parser_partials_do_not_reach_its_last_chunk(schema: Any) -> None:
    """JsonOutputParser's last chunk (its ainvoke value) is the document as written, whatever was done to the partials."""
    chain = Paced([AIMessageChunk(content=piece) for piece in TAGGED_PIECES]) | JsonOutputParser(
        pydantic_object=schema
    )
    seen = await vandalized(chain)
    assert seen[:2] == [{"tags": ["a"]}, {"tags": ["a", "b"]}]
    assert seen[-1] == {"tags": ["a", "b"], "name": "xy"}


# -- the property ----------------------------------------------------------------------------------

_word = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
_record = st.fixed_dictionaries(
    {
        "name": _word,
        "age": st.integers(min_value=-(10**12), max_value=10**12),
        "score": st.floats(allow_nan=False, allow_infinity=False),
        "tags": st.lists(_word, max_size=4),
        "nested": st.lists(st.fixed_dictionaries({"k": _word, "v": st.none() | st.booleans()}), max_size=3),
    }
)
RECORD_SCHEMA = {
    "title": "Record",
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "nested": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"k": {"type": "string"}, "v": {"type": ["boolean", "null"]}},
                "required": ["k", "v"],
            },
        },
    },
    "required": ["name", "age", "score", "tags", "nested"],
}
SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}


def _cut(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(min(cut, len(text)) for cut in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points) if b > a]


@pytest.mark.anyio
@settings(max_examples=40, **SETTINGS)
@given(
    record=_record, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30), tool=st.booleans()
)
async def test_every_partial_is_prefix_consistent_and_the_last_chunk_is_the_value(
    record: dict[str, Any], cuts: list[int], tool: bool
) -> None:
    """Cut the JSON anywhere, as text or as tool-argument fragments: each snapshot extends the last, and ends at the value."""
    text = json.dumps(record, ensure_ascii=False)
    fragments = _cut(text, cuts)
    if tool:
        model: BaseChatModel = Fragments(tool_call("Record", fragments))
    else:
        model = ScriptedChatModel([fragments])
    structured = model.with_structured_output(
        RECORD_SCHEMA, method="function_calling" if tool else "json_schema"
    )
    chunks = await collect(structured)
    assert chunks[-1] == json.loads(text)
    check_snapshots(chunks[:-1], json.loads(text))


# -- ChatAnthropic against the loopback server ----------------------------------------------------


def chat(server: AnthropicServer, **options: Any) -> ChatAnthropic:
    return ChatAnthropic(model=MODEL, api_key="test-key", base_url=server.base_url, max_retries=0, **options)


def body(**fields: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        **fields,
    }


async def test_claude_json_schema_sends_output_config_and_streams_the_text_as_snapshots(
    server: AnthropicServer,
) -> None:
    """The body carries output_config.format (and no tools); the text deltas stream as snapshots, then the value."""
    server.script(TextStream(pieces(PERSON_JSON, 5)))
    structured = chat(server, effort="high").with_structured_output(Person)
    chunks = await collect(structured)
    assert server.requests[0].body == body(output_config={"effort": "high", "format": PERSON_FORMAT})
    assert chunks[-1] == Person(**PERSON)  # type: ignore[arg-type]
    assert len(chunks) > 8
    check_snapshots(chunks[:-1], PERSON)


async def test_claude_function_calling_forces_the_tool_and_streams_its_input_json_deltas(
    server: AnthropicServer,
) -> None:
    """The body carries the schema as the only tool and tool_choice naming it; input_json_delta fragments stream."""
    server.script(ToolUseStream("Person", "toolu_01", pieces(PERSON_JSON, 6)))
    structured = chat(server).with_structured_output(Person, method="function_calling")
    chunks = await collect(structured)
    assert server.requests[0].body == body(
        tools=[PERSON_TOOL], tool_choice={"type": "tool", "name": "Person"}
    )
    assert chunks[-1] == Person(**PERSON)  # type: ignore[arg-type]
    check_snapshots(chunks[:-1], PERSON)
    assert len(chunks) > 6


async def test_claude_function_calling_makes_a_title_a_tool_name_the_api_takes(
    server: AnthropicServer,
) -> None:
    """A title such as "Person Info" names the forced tool Person_Info (the API's pattern); its call is read."""
    schema = {"title": "Person Info: v2", **PERSON_SCHEMA}
    server.script(ToolUseStream("Person_Info__v2", "toolu_01", pieces(PERSON_JSON, 6)))
    structured = chat(server).with_structured_output(schema, method="function_calling")
    chunks = await collect(structured)
    sent = server.requests[0].body
    assert [tool["name"] for tool in sent["tools"]] == ["Person_Info__v2"]
    assert sent["tool_choice"] == {"type": "tool", "name": "Person_Info__v2"}
    assert chunks[-1] == PERSON


async def test_claude_thinking_is_not_read_as_the_json_and_stays_in_the_raw_reply(
    server: AnthropicServer,
) -> None:
    """With thinking on, only the text block feeds the parser; braces in the thinking do not."""
    thinking = ThinkingBlock(["Shape: {name", "} and [age] ", "{"], signature="sig_1")
    server.script(MessageStream([thinking, TextBlock(pieces(PERSON_JSON, 5))]))
    config = {"type": "enabled", "budget_tokens": 1024}
    structured = chat(server, max_tokens=4096, thinking=config).with_structured_output(
        Person, include_raw=True
    )
    chunks = await collect(structured)
    assert server.requests[0].body == body(
        max_tokens=4096, thinking=config, output_config={"format": PERSON_FORMAT}
    )
    snapshots = [chunk["parsed"] for chunk in chunks[:-1] if "parsed" in chunk]
    assert snapshots[0] == {} and chunks[-1] == {"parsed": Person(**PERSON), "parsing_error": None}  # type: ignore[arg-type]
    check_snapshots(snapshots, PERSON)
    raw = AIMessageChunk.concat_chunks([chunk["raw"] for chunk in chunks[:-1]])
    assert raw.text == PERSON_JSON
    assert raw.content[0] == {
        "type": "thinking",
        "thinking": "Shape: {name} and [age] {",
        "signature": "sig_1",
        "index": 0,
    }


async def test_claude_include_raw_carries_the_reply_with_its_stop_reason(server: AnthropicServer) -> None:
    """include_raw: the raw reply is Claude's message (id, stop_reason, usage) beside the parsed value."""
    server.script(TextStream(pieces('{"title": "Up", "year": 2009}')))
    with anyio.fail_after(GUARD):
        whole = await chat(server).with_structured_output(Movie, include_raw=True).ainvoke("hi")
    assert whole["parsed"] == {"title": "Up", "year": 2009} and whole["parsing_error"] is None
    raw = whole["raw"]
    assert raw.id == "msg_test_0001" and raw.response_metadata["stop_reason"] == "end_turn"
    assert raw.usage_metadata is not None and raw.usage_metadata.input_tokens == 12


async def test_claude_max_tokens_stop_is_named_in_the_parse_error(server: AnthropicServer) -> None:
    """A reply cut by max_tokens fails with a note saying so, before nothing else was sent."""
    server.script(TextStream(pieces(PERSON_JSON[:25]), stop_reason="max_tokens"))
    with pytest.raises(OutputParserException) as caught, anyio.fail_after(GUARD):
        await chat(server, max_tokens=10).with_structured_output(Person).ainvoke("hi")
    assert caught.value.__notes__[0].startswith("stop_reason='max_tokens'")
    assert len(server.requests) == 1


def test_claude_refuses_bad_input_before_any_request(server: AnthropicServer) -> None:
    """A schema Claude's output format cannot express is refused at with_structured_output time."""
    with pytest.raises(UnsupportedSchemaError, match="free keys"):
        chat(server).with_structured_output(Counts)
    assert server.requests == []
