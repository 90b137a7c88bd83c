"""Tools as langchain-core users call them: a ToolCall in, a ToolMessage out; errors for the model.

The expected values marked "langchain-core" were read from langchain-core 1.8.3 run on
the same tool definitions (its behaviour, recorded here; none of its code).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
from collections.abc import AsyncIterator
from typing import Any, Literal, TypedDict

import anthropic  # noqa: F401  # the SDK's first import is slow: done here, not under a test's time guard
import anyio
import attrs
import pytest
from anthropic_server import AnthropicServer, ToolUseStream

from engine.testing import check_event_order
from nodes import (
    AIMessage,
    ChatAnthropic,
    ScriptedChatModel,
    Tool,
    ToolArgumentError,
    ToolCall,
    ToolException,
    ToolLoop,
    ToolMessage,
    UnsupportedSchemaError,
    tool,
)

GUARD = 10.0  # seconds; bounds a run that should end at once, never paces a test


@tool
def add(a: int, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


def call(name: str, args: dict[str, Any], id: str | None = "call_1") -> dict[str, Any]:
    """A tool call as LangChain spells it, a dict."""
    return {"name": name, "args": args, "id": id, "type": "tool_call"}


# -- a tool call in, a ToolMessage out ------------------------------------------------


async def test_a_tool_call_dict_gets_a_tool_message_with_its_id_and_the_tool_name() -> None:
    """ainvoke(tool call dict) answers with ToolMessage(content, tool_call_id, name)."""
    answer = await add.ainvoke(call("add", {"a": 1}))
    assert answer == ToolMessage("3", tool_call_id="call_1", name="add")


async def test_a_tool_call_from_an_ai_message_is_answered_too() -> None:
    """A ToolCall value (AIMessage.tool_calls) is a tool call; its "type" is "tool_call"."""
    parsed = ToolCall(name="add", args={"a": 4, "b": 1}, id="toolu_7")
    assert parsed["type"] == "tool_call"
    assert await add.ainvoke(parsed) == ToolMessage("5", tool_call_id="toolu_7", name="add")


async def test_output_becomes_content_as_langchain_core_makes_it() -> None:
    """Strings and content blocks stay; other values become JSON (non-ASCII kept); a ToolMessage passes."""

    @tool
    def echo(value: Any) -> Any:
        """Echo."""
        return value

    own = ToolMessage("mine", tool_call_id="other")
    opaque = object()
    cases: list[tuple[Any, Any]] = [
        ("text", "text"),
        ({"x": "y", "ü": 1}, '{"x": "y", "ü": 1}'),  # langchain-core
        (None, "null"),  # langchain-core
        ([{"type": "text", "text": "y"}], [{"type": "text", "text": "y"}]),  # langchain-core
        (["y", "y"], '["y", "y"]'),  # content blocks are dicts here: a list of strings is JSON
        (opaque, str(opaque)),  # not JSON: str()
    ]
    for value, content in cases:
        answer = await echo.ainvoke(call("echo", {"value": value}))
        assert answer.content == content
    assert await echo.ainvoke(call("echo", {"value": own})) is own  # langchain-core


async def test_a_call_without_an_id_gets_the_output_itself() -> None:
    """A tool call whose id is None is answered with the plain output, as in langchain-core."""
    assert await add.ainvoke(call("add", {"a": 1}, id=None)) == 3


def test_invoke_batch_and_stream_answer_calls_too() -> None:
    """invoke, batch and stream take tool calls as ainvoke does."""
    assert add.invoke(call("add", {"a": 1})) == ToolMessage("3", tool_call_id="call_1", name="add")
    answers = add.batch([call("add", {"a": 1}, "x1"), call("add", {"a": 5}, "x2")])
    assert answers == [  # langchain-core
        ToolMessage("3", tool_call_id="x1", name="add"),
        ToolMessage("7", tool_call_id="x2", name="add"),
    ]
    assert list(add.stream(call("add", {"a": 1}))) == [ToolMessage("3", tool_call_id="call_1", name="add")]


async def test_abatch_and_astream_answer_calls() -> None:
    """abatch answers each call in order; astream yields the one ToolMessage."""
    answers = await add.abatch([call("add", {"a": 1}, "x1"), call("add", {"a": 5}, "x2")])
    assert [answer.tool_call_id for answer in answers] == ["x1", "x2"]
    assert [chunk async for chunk in add.astream(call("add", {"a": 0}))] == [
        ToolMessage("2", tool_call_id="call_1", name="add")
    ]


async def test_a_streaming_tool_answers_a_call_with_its_chunks_added_up() -> None:
    """A generator tool given a call sends one ToolMessage holding its whole output."""

    @tool
    async def spell(word: str) -> AsyncIterator[str]:
        """Spell a word."""
        for letter in word:
            yield letter + "."

    assert await spell.ainvoke(call("spell", {"word": "abc"})) == ToolMessage(
        "a.b.c.", tool_call_id="call_1", name="spell"
    )


async def test_events_of_a_call_show_the_call_in_and_the_message_out() -> None:
    """on_tool_start carries the call as input, on_tool_end the ToolMessage (as langchain-core)."""
    request = call("add", {"a": 1})
    events = [event async for event in add.astream_events(request)]
    check_event_order(events)
    assert [(e["event"], e["name"]) for e in events] == [("on_tool_start", "add"), ("on_tool_end", "add")]
    assert events[0]["data"]["input"] == request
    assert events[-1]["data"]["output"] == ToolMessage("3", tool_call_id="call_1", name="add")


async def test_a_call_of_another_tool_or_a_malformed_call_is_refused() -> None:
    """A call naming another tool, or a tool-call dict without dict args, is a ToolArgumentError."""
    forgiving = tool(handle_tool_error=True)(add.func)
    with pytest.raises(ToolArgumentError, match="was given a call of the tool 'mul'"):
        await forgiving.ainvoke(call("mul", {"a": 1}))
    with pytest.raises(ToolArgumentError, match="needs a 'name'"):
        await add.ainvoke({"name": "add", "args": "a=1", "id": "c", "type": "tool_call"})


async def test_a_dict_without_the_tool_call_type_is_arguments() -> None:
    """Only a dict whose "type" is "tool_call" is a call; others are arguments, as in langchain-core."""
    with pytest.raises(ToolArgumentError, match="unknown argument"):
        await add.ainvoke({"name": "add", "args": {"a": 1}, "id": "q"})


# -- errors returned to the model -----------------------------------------------------


def failing(error: Exception, **flags: Any) -> Any:
    """A tool that raises ``error``, made with ``flags``."""

    @tool(**flags)
    def fail(x: str) -> str:
        """Fail."""
        raise error

    return fail


async def test_handle_tool_error_answers_with_an_error_tool_message() -> None:
    """True gives the error's text (a ToolException's message alone), status "error"."""
    cases = [
        (ToolException("boom y"), "boom y"),  # langchain-core
        (ToolException(), "Tool execution error"),  # langchain-core
        (ValueError("vboom"), "ValueError: vboom"),  # langchain-core raises this one
    ]
    for error, content in cases:
        answer = await failing(error, handle_tool_error=True).ainvoke(call("fail", {"x": "y"}))
        assert answer == ToolMessage(content, tool_call_id="call_1", name="fail", status="error")


async def test_handle_tool_error_takes_a_text_or_a_function() -> None:
    """A string is the answer; a function of the exception returns it."""
    fixed = failing(ToolException("a"), handle_tool_error="sorry")
    assert (await fixed.ainvoke(call("fail", {"x": "y"}))).content == "sorry"  # langchain-core
    computed = failing(ToolException("a"), handle_tool_error=lambda e: f"cb:{e!r}")
    assert (await computed.ainvoke(call("fail", {"x": "y"}))).content == "cb:ToolException('a')"


async def test_without_the_flag_the_error_is_raised() -> None:
    """By default a tool's error propagates as itself."""
    with pytest.raises(ToolException, match="boom"):
        await failing(ToolException("boom")).ainvoke(call("fail", {"x": "y"}))


async def test_a_handled_error_of_plain_arguments_is_the_text() -> None:
    """Called with plain arguments, a handled error's text is the output (as langchain-core)."""
    assert await failing(ToolException("boom y"), handle_tool_error=True).ainvoke({"x": "y"}) == "boom y"


async def test_errors_of_sync_and_async_tools_alike() -> None:
    """The flag covers a function run in a worker thread and an async one."""

    @tool(handle_tool_error=True)
    async def later(x: str) -> str:
        """Fail later."""
        await anyio.lowlevel.checkpoint()
        raise KeyError(x)

    answer = await later.ainvoke(call("later", {"x": "k"}))
    assert (answer.content, answer.status) == ("KeyError: 'k'", "error")
    assert (
        await failing(OSError("disk"), handle_tool_error=True).ainvoke(call("fail", {"x": ""}))
    ).content == ("OSError: disk")


async def test_argument_errors_follow_handle_tool_error_unless_told_apart() -> None:
    """Bad arguments are answered naming the argument, by either flag; False raises."""
    validating = tool(handle_tool_error=True)(add.func)
    answer = await validating.ainvoke(call("add", {"a": "one"}))
    assert answer.status == "error"
    assert answer.content == "tool 'add': argument 'a': expected an integer, got the string 'one'"
    only_validation = tool(handle_validation_error="bad input")(add.func)
    assert (await only_validation.ainvoke(call("add", {"b": 1}))).content == "bad input"
    strict = tool(handle_tool_error=True, handle_validation_error=False)(add.func)
    with pytest.raises(ToolArgumentError, match="missing the required argument 'a'"):
        await strict.ainvoke(call("add", {"b": 1}))
    assert await only_validation.ainvoke({"b": 1}) == "bad input"


async def test_a_handler_that_returns_no_text_is_an_error() -> None:
    """An error handler returning something other than a string raises TypeError."""
    broken = failing(ValueError("x"), handle_tool_error=lambda e: 42)
    with pytest.raises(TypeError, match="must return the text"):
        await broken.ainvoke(call("fail", {"x": "y"}))


def test_a_bad_flag_is_refused_when_the_tool_is_made() -> None:
    """A flag that is no bool, text or function is a TypeError at construction."""
    with pytest.raises(TypeError, match="handle_tool_error must be"):
        tool(handle_tool_error=3)(add.func)
    with pytest.raises(TypeError, match="handle_validation_error must be"):
        tool(handle_validation_error=[1])(add.func)


# -- the schema, as langchain-core shows it -------------------------------------------


def test_args_show_each_argument_with_its_title_as_langchain_core() -> None:
    """Tool.args and get_input_jsonschema() equal langchain-core's for the same function."""

    @tool
    def f(
        first_name: str,
        tags: list[str],
        maybe: int | None = None,
        mode: Literal["a", "b"] = "a",
        anything=None,
        u: int | str = 1,
    ) -> str:
        """Do f.

        More text."""
        return ""

    # langchain-core's output for this signature:
    assert f.args == {
        "first_name": {"title": "First Name", "type": "string"},
        "tags": {"items": {"type": "string"}, "title": "Tags", "type": "array"},
        "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "title": "Maybe"},
        "mode": {"default": "a", "enum": ["a", "b"], "title": "Mode", "type": "string"},
        "anything": {"default": None, "title": "Anything"},
        "u": {"anyOf": [{"type": "integer"}, {"type": "string"}], "default": 1, "title": "U"},
    }
    assert f.get_input_jsonschema() == {
        "description": "Do f.\n\nMore text.",
        "properties": f.args,
        "required": ["first_name", "tags"],
        "title": "f",
        "type": "object",
    }
    assert add.get_input_jsonschema() == {  # langchain-core
        "description": "Add two numbers.",
        "properties": {
            "a": {"title": "A", "type": "integer"},
            "b": {"default": 2, "title": "B", "type": "integer"},
        },
        "required": ["a"],
        "title": "add",
        "type": "object",
    }


def test_more_annotations_in_pydantic_spelling() -> None:
    """Literals, dicts, bare lists, tuples and None are spelled as pydantic spells them."""

    @tool
    def g(
        a: Literal["x"],
        b: Literal[1, "a"],
        c: dict[str, int],
        d: list,
        e: dict,
        h: list[int] | None,
        i: None = None,
        j: tuple[int, ...] = (),
    ) -> str:
        """G."""
        return ""

    schema = g.args_schema["properties"]
    assert schema == {  # langchain-core's, without the titles
        "a": {"const": "x", "type": "string"},
        "b": {"enum": [1, "a"]},
        "c": {"additionalProperties": {"type": "integer"}, "type": "object"},
        "d": {"items": {}, "type": "array"},
        "e": {"additionalProperties": True, "type": "object"},
        "h": {"anyOf": [{"items": {"type": "integer"}, "type": "array"}, {"type": "null"}]},
        "i": {"default": None, "type": "null"},
        "j": {"default": [], "items": {"type": "integer"}, "type": "array"},
    }
    assert g.tool_call_schema == g.args_schema
    assert {"a", "b", "c", "d", "e", "h"} == set(g.args_schema["required"])


# -- typed arguments: the schema sent, the value built ----------------------------------


class Loc(TypedDict):
    lat: float
    lon: float


@dataclasses.dataclass
class DLoc:
    lat: float


@attrs.frozen
class ALoc:
    lat: float


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class TreeNode:
    name: str
    children: list[TreeNode]


def typed(annotation: Any, name: str = "f") -> Tool:
    """A tool whose one argument ``x`` has ``annotation``; it answers with the repr of what it got."""

    def f(x: Any) -> str:
        """F."""
        return repr(x)

    f.__annotations__ = {"x": annotation, "return": str}
    return tool(name=name)(f)


_LAT = {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]}


@pytest.mark.parametrize(
    ("annotation", "schema", "sent", "built"),
    [
        (
            Loc,
            {
                "type": "object",
                "title": "Loc",
                "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                "required": ["lat", "lon"],
                "additionalProperties": False,
            },
            {"lat": 1, "lon": 2.5},
            "{'lat': 1.0, 'lon': 2.5}",  # langchain-core
        ),
        (DLoc, {**_LAT, "title": "DLoc", "additionalProperties": False}, {"lat": 1}, "DLoc(lat=1.0)"),
        (ALoc, {**_LAT, "title": "ALoc", "additionalProperties": False}, {"lat": 1}, "ALoc(lat=1.0)"),
        (
            tuple[int, int],
            {  # langchain-core
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "integer"}],
                "minItems": 2,
                "maxItems": 2,
            },
            [1, 2],
            "(1, 2)",  # langchain-core
        ),
        (
            list[DLoc],
            {"type": "array", "items": {**_LAT, "title": "DLoc", "additionalProperties": False}},
            [{"lat": 1}],
            "[DLoc(lat=1.0)]",  # langchain-core
        ),
        (Color, {"enum": ["red", "blue"], "type": "string"}, "red", "<Color.RED: 'red'>"),  # langchain-core
        (float, {"type": "number"}, 1, "1.0"),  # langchain-core
        (int, {"type": "integer"}, 3.0, "3"),  # langchain-core
        (dict[str, Any], {"type": "object", "additionalProperties": True}, {"a": [1]}, "{'a': [1]}"),
    ],
    ids=["TypedDict", "dataclass", "attrs", "tuple", "list of dataclass", "enum", "float", "int", "dict"],
)
async def test_a_typed_argument_is_sent_with_its_schema_and_built_from_the_json(
    annotation: Any, schema: dict[str, Any], sent: Any, built: str
) -> None:
    """The argument's schema comes from the schema converter; the JSON a call brings is checked and built into the type."""
    f = typed(annotation)
    assert f.args_schema == {"type": "object", "properties": {"x": schema}, "required": ["x"]}
    assert f.to_anthropic()["input_schema"] == f.args_schema
    answer = await f.ainvoke(ToolCall(name="f", args={"x": sent}, id="call_1"))
    assert answer == ToolMessage(built, tool_call_id="call_1", name="f")


async def test_a_pydantic_model_argument_is_validated_by_pydantic() -> None:
    """A pydantic model argument is sent with its own schema ($defs at the top) and built by model_validate."""
    pydantic = pytest.importorskip("pydantic")

    class City(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        name: str

    class Trip(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        stops: list[City]  # type: ignore[valid-type]

    trip = typed(Trip, name="trip")
    own = Trip.model_json_schema()
    assert trip.args_schema["properties"]["x"] == {key: value for key, value in own.items() if key != "$defs"}
    assert trip.args_schema["$defs"] == Trip.model_json_schema()["$defs"]
    assert trip.args_schema["properties"]["x"]["properties"]["stops"]["items"] == {"$ref": "#/$defs/City"}
    answer = await trip.ainvoke(ToolCall(name="trip", args={"x": {"stops": [{"name": "Oslo"}]}}, id="c"))
    assert answer.content == "Trip(stops=[City(name='Oslo')])"
    with pytest.raises(ToolArgumentError) as caught:
        await trip.ainvoke({"x": {"stops": [{"name": 3}]}})
    assert str(caught.value) == (
        "tool 'trip': argument 'x.stops[0].name': expected a value pydantic accepts, "
        "got the integer 3 (Input should be a valid string)"
    )


def test_a_recursive_class_argument_is_referenced_through_defs() -> None:
    """A class that contains itself goes to $defs at the top of the input schema, referenced by $ref."""
    tree = typed(TreeNode)
    assert tree.args_schema["properties"]["x"] == {"$ref": "#/$defs/TreeNode"}
    assert tree.args_schema["$defs"] == {
        "TreeNode": {
            "type": "object",
            "title": "TreeNode",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/TreeNode"}},
            },
            "required": ["name", "children"],
            "additionalProperties": False,
        }
    }
    built = tree.invoke({"x": {"name": "a", "children": [{"name": "b", "children": []}]}})
    assert built == repr(TreeNode("a", [TreeNode("b", [])]))


@pytest.mark.parametrize(
    ("annotation", "sent", "message"),
    [
        (Loc, {"lon": 1}, "argument 'x': expected the required field 'lat', got an object with keys 'lon'"),
        (
            Loc,
            {"lat": 1, "lon": 2, "alt": 3},
            "argument 'x': expected only the fields 'lat', 'lon', got the field 'alt'",
        ),
        (
            list[DLoc],
            [{"lat": 1}, {"lat": "n"}],
            "argument 'x[1].lat': expected a number, got the string 'n'",
        ),
        (tuple[int, int], [1], "argument 'x': expected an array of exactly 2 items, got an array of 1 item"),
        (tuple[int, int], [1, "2"], "argument 'x[1]': expected an integer, got the string '2'"),
        (Color, "green", "argument 'x': expected one of \"red\", \"blue\", got the string 'green'"),
        (DLoc, [1.0], "argument 'x': expected an object (DLoc), got an array of 1 item"),
    ],
)
async def test_an_argument_that_does_not_fit_is_named_with_the_tool_and_its_path(
    annotation: Any, sent: Any, message: str
) -> None:
    """A value that does not fit raises ToolArgumentError naming the tool and the path inside the argument."""
    f = typed(annotation)
    with pytest.raises(ToolArgumentError) as caught:
        await f.ainvoke(ToolCall(name="f", args={"x": sent}, id="call_1"))
    assert str(caught.value) == f"tool 'f': {message}"
    answer = await tool(handle_validation_error=True)(f.func).ainvoke(call("f", {"x": sent}))
    assert (answer.status, answer.content) == ("error", f"tool 'f': {message}")


async def test_python_callers_may_pass_values_already_built() -> None:
    """An instance, a tuple or an enum member from Python code is taken as it is."""
    location = DLoc(2.0)
    assert await typed(DLoc).ainvoke({"x": location}) == repr(location)
    assert await typed(tuple[int, int]).ainvoke({"x": (1, 2)}) == "(1, 2)"
    assert await typed(Color).ainvoke({"x": Color.BLUE}) == "<Color.BLUE: 'blue'>"
    assert await typed(set[str]).ainvoke({"x": {"a"}}) == "{'a'}"


def test_defaults_are_written_as_json_or_left_out() -> None:
    """An enum default is its value, a tuple's a list; a default with no JSON form is left out of the schema."""

    @tool
    def paint(color: Color = Color.RED, at: DLoc = DLoc(0.0), size: tuple[int, int] = (1, 2)) -> str:  # noqa: B008
        """Paint."""
        return ""

    properties = paint.args_schema["properties"]
    assert properties["color"]["default"] == "red" and properties["size"]["default"] == [1, 2]
    assert "default" not in properties["at"] and paint.args_schema["required"] == []
    json.dumps(paint.to_anthropic())


def test_an_argument_type_without_a_schema_is_refused_when_the_tool_is_made() -> None:
    """A type with no JSON schema, or an annotation that does not resolve, fails at @tool naming the tool and argument."""
    with pytest.raises(
        UnsupportedSchemaError, match=r"^tool 'f': argument 'x' has the type datetime.datetime"
    ):
        typed(datetime.datetime)
    with pytest.raises(UnsupportedSchemaError, match=r"^tool 'f': argument 'x'\[\] has the type bytes"):
        typed(dict[str, bytes])

    def g(x: Missing) -> str:  # type: ignore[name-defined]  # noqa: F821  # on purpose: it does not resolve
        """G."""
        return ""

    with pytest.raises(
        UnsupportedSchemaError, match=r"^tool 'g': the argument annotations do not resolve \(NameError"
    ):
        tool(g)


async def test_a_tool_loop_calls_a_typeddict_tool_with_what_the_model_sent() -> None:
    """In a ToolLoop, a model's call of a tool taking a TypedDict reaches the function as that dict."""
    where = typed(Loc, name="where")
    model = ScriptedChatModel(
        [AIMessage("", tool_calls=[ToolCall(name="where", args={"x": {"lat": 1, "lon": 2}}, id="t1")]), "ok"]
    )
    with anyio.fail_after(GUARD):
        messages = await ToolLoop(model, [where]).ainvoke("where?")
    answers = [message for message in messages if isinstance(message, ToolMessage)]
    assert answers == [ToolMessage("{'lat': 1.0, 'lon': 2.0}", tool_call_id="t1", name="where")]


async def test_claude_gets_the_class_schema_and_its_call_builds_the_value(server: AnthropicServer) -> None:
    """Against the loopback API: the request's tools carry the argument's object schema; the streamed call builds it."""
    where = typed(DLoc, name="where")
    server.script(ToolUseStream("where", "toolu_1", ['{"x": {"la', 't": 4}}']))
    model = ChatAnthropic(
        model="claude-test-model", api_key="test-key", base_url=server.base_url, max_retries=0
    ).bind_tools([where])
    with anyio.fail_after(GUARD):
        message = await model.ainvoke("where?")
        answer = await where.ainvoke(message.tool_calls[0])
    assert server.requests[0].body["tools"] == [
        {
            "name": "where",
            "description": "F.",
            "input_schema": {
                "type": "object",
                "properties": {"x": {**_LAT, "title": "DLoc", "additionalProperties": False}},
                "required": ["x"],
            },
        }
    ]
    assert answer == ToolMessage("DLoc(lat=4.0)", tool_call_id="toolu_1", name="where")
