"""ChatAnthropic's tool_choice and output_config, sent to the loopback Messages API (both backends).

Request bodies are compared whole, so a field sent by mistake fails as surely as a
missing one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypedDict

import anyio
import pytest
from anthropic_server import AnthropicServer

from nodes import ChatAnthropic, tool

MODEL = "claude-test-model"
GUARD = 10.0  # seconds; bounds a call that should end at once, never paces a test
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def chat(server: AnthropicServer, **options: Any) -> ChatAnthropic:
    return ChatAnthropic(model=MODEL, api_key="test-key", base_url=server.base_url, max_retries=0, **options)


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"sunny in {city}"


LOOKUP = {"name": "lookup", "description": "Look a word up.", "input_schema": {"type": "object"}}


def body(tools: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """The whole request body of a one-message call with ``tools`` and ``fields``."""
    sent: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    if tools:
        sent["tools"] = tools
    return {**sent, **fields}


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("auto", {"type": "auto"}),
        ("any", {"type": "any"}),
        ("none", {"type": "none"}),
        ("lookup", {"type": "tool", "name": "lookup"}),
        ({"type": "tool", "name": "lookup"}, {"type": "tool", "name": "lookup"}),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
    ],
)
async def test_bind_tools_sends_the_tool_choice_as_the_api_takes_it(
    server: AnthropicServer, choice: Any, sent: dict[str, Any]
) -> None:
    """bind_tools(tools, tool_choice=...) sends the tools and the choice: a mode, a name or the API's dict."""
    model = chat(server).bind_tools([get_weather, LOOKUP], tool_choice=choice)
    with anyio.fail_after(GUARD):
        await model.ainvoke("hi")
    assert server.requests[0].body == body([get_weather.to_anthropic(), LOOKUP], tool_choice=sent)


async def test_bind_tool_choice_after_bind_tools_and_parallel_tool_calls(server: AnthropicServer) -> None:
    """bind(tool_choice=...) works on a model with tools; parallel_tool_calls=False disables parallel use."""
    with anyio.fail_after(GUARD):
        await chat(server).bind_tools([LOOKUP]).bind(tool_choice="any").ainvoke("hi")
        await chat(server).bind_tools([LOOKUP], parallel_tool_calls=False).ainvoke("hi")
        await chat(server).bind_tools([LOOKUP], tool_choice="lookup", parallel_tool_calls=False).ainvoke("hi")
        # A later bind_tools without a choice keeps the one bound before.
        await chat(server).bind_tools([LOOKUP], tool_choice="any").bind_tools([LOOKUP, LOOKUP]).ainvoke("hi")
    any_choice, auto_single, named_single, kept = server.requests
    assert any_choice.body == body([LOOKUP], tool_choice={"type": "any"})
    assert auto_single.body == body([LOOKUP], tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert named_single.body == body(
        [LOOKUP], tool_choice={"type": "tool", "name": "lookup", "disable_parallel_tool_use": True}
    )
    assert kept.body == body([LOOKUP, LOOKUP], tool_choice={"type": "any"})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m: m.bind_tools([LOOKUP], tool_choice="nope"), "names the tool 'nope', which is not bound"),
        (
            lambda m: m.bind_tools([LOOKUP], tool_choice={"type": "tool", "name": "nope"}),
            "names the tool 'nope'",
        ),
        (
            lambda m: (
                m.bind_tools([LOOKUP], tool_choice="any").bind_tools([get_weather]).bind(tool_choice="x")
            ),
            "'x'",
        ),
        (lambda m: m.bind_tools([LOOKUP], tool_choice={"type": "tool"}), "needs the tool's 'name'"),
        (lambda m: m.bind_tools([LOOKUP], tool_choice={"type": "sometimes"}), "unknown type 'sometimes'"),
        (lambda m: m.bind_tools([LOOKUP], tool_choice="none", parallel_tool_calls=False), "'none'"),
        (lambda m: m.bind_tools([LOOKUP], tool_choice=""), "must not be empty"),
    ],
)
def test_a_tool_choice_the_tools_cannot_satisfy_is_refused_when_bound(make: Any, message: str) -> None:
    """A choice naming an unbound tool, or malformed, is a ValueError at bind time."""
    with pytest.raises(ValueError, match=message):
        make(ChatAnthropic(model=MODEL))


async def test_a_forced_tool_without_tools_fails_before_any_request(server: AnthropicServer) -> None:
    """bind(tool_choice=NAME) with no tools bound fails at call time, and nothing is sent."""
    for choice in ("lookup", "any"):
        with pytest.raises(ValueError, match="no tools are bound"):
            with anyio.fail_after(GUARD):
                await chat(server).bind(tool_choice=choice).ainvoke("hi")
    assert server.requests == []


async def test_output_config_format_and_effort_are_sent_merged(server: AnthropicServer) -> None:
    """bind(output_config={format}) sends the format; with effort= (or an effort bound before) both go."""
    form = {"type": "json_schema", "schema": SCHEMA}
    with anyio.fail_after(GUARD):
        await chat(server).bind(output_config={"format": form}).ainvoke("hi")
        await chat(server, effort="low").bind(output_config={"format": form}).ainvoke("hi")
        await chat(server, output_config={"effort": "max"}).bind(output_config={"format": form}).ainvoke("hi")
        await chat(server).bind(effort="high").ainvoke("hi")
        # Binding a key to None removes it.
        await (
            chat(server, output_config={"effort": "max", "format": form})
            .bind(output_config={"format": None})
            .ainvoke("hi")
        )
    sent = [request.body for request in server.requests]
    assert sent == [
        body([], output_config={"format": form}),
        body([], output_config={"format": form, "effort": "low"}),
        body([], output_config={"effort": "max", "format": form}),
        body([], output_config={"effort": "high"}),
        body([], output_config={"effort": "max"}),
    ]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"effort": "extreme"}, ValueError, "effort must be one of 'low', 'medium', 'high', 'xhigh', 'max'"),
        ({"output_config": {"effort": "huge"}}, ValueError, "effort must be one of"),
        ({"output_config": "json"}, TypeError, "output_config must be a dict"),
        ({"output_config": {"format": "json"}}, TypeError, "format must be a dict with a 'type'"),
        ({"output_config": {"format": {"type": "json_schema"}}}, ValueError, "needs a 'schema' dict"),
        ({"effort": "low", "output_config": {"effort": "high"}}, ValueError, "disagree"),
    ],
)
def test_a_bad_output_config_or_effort_is_refused_at_construction(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """An unknown effort level, a malformed format or two different efforts fail when the model is built."""
    with pytest.raises(error, match=message):
        ChatAnthropic(model=MODEL, **options)
    with pytest.raises(error, match=message):
        ChatAnthropic(model=MODEL).bind(**options)


def test_repr_shows_the_options_that_are_set() -> None:
    """The repr names the tool choice, output_config and effort when set."""
    model = ChatAnthropic(model=MODEL, effort="low").bind_tools([LOOKUP], tool_choice="lookup")
    assert repr(model) == (
        "ChatAnthropic(model='claude-test-model', max_tokens=1024, tools=['lookup'], "
        "tool_choice={'type': 'tool', 'name': 'lookup'}, effort='low')"
    )


# -- what bind_tools takes -------------------------------------------------------------


def lookup_word(word: str, strict: bool = False) -> str:
    """Look a word up."""
    return word


@dataclasses.dataclass
class Forecast:
    """Get the forecast for a city."""

    city: str
    days: int


class Alarm(TypedDict):
    """Set an alarm."""

    hour: int


async def test_bind_tools_converts_functions_schema_classes_and_openai_dicts(server: AnthropicServer) -> None:
    """A function, a dataclass, a TypedDict and OpenAI's function dicts are sent as the API's tools."""
    openai = {
        "type": "function",
        "function": {"name": "find", "description": "Find.", "parameters": {"type": "object"}},
    }
    bare = {"name": "bare", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}
    with anyio.fail_after(GUARD):
        await chat(server).bind_tools([lookup_word, Forecast, Alarm, openai, bare]).ainvoke("hi")
    assert server.requests[0].body["tools"] == [
        {
            "name": "lookup_word",
            "description": "Look a word up.",
            "input_schema": {
                "type": "object",
                "properties": {"word": {"type": "string"}, "strict": {"type": "boolean", "default": False}},
                "required": ["word"],
            },
        },
        {
            "name": "Forecast",
            "description": "Get the forecast for a city.",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
                "additionalProperties": False,
            },
        },
        {
            "name": "Alarm",
            "description": "Set an alarm.",
            "input_schema": {
                "type": "object",
                "properties": {"hour": {"type": "integer"}},
                "required": ["hour"],
                "additionalProperties": False,
            },
        },
        {"name": "find", "description": "Find.", "input_schema": {"type": "object"}},
        {"name": "bare", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}},
    ]


async def test_bind_tools_converts_a_pydantic_model(server: AnthropicServer) -> None:
    """A pydantic model (pydantic installed) is sent as a tool named after it, with its schema."""
    pydantic = pytest.importorskip("pydantic")

    class GetWeather(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        """Get the weather."""

        city: str

    with anyio.fail_after(GUARD):
        await chat(server).bind_tools([GetWeather], tool_choice="GetWeather").ainvoke("hi")
    sent = server.requests[0].body
    assert sent["tools"] == [
        {
            "name": "GetWeather",
            "description": "Get the weather.",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"title": "City", "type": "string"}},
                "required": ["city"],
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "GetWeather"}


async def test_a_server_tool_dict_is_sent_as_given(server: AnthropicServer) -> None:
    """A dict of one of the API's server tools (a type other than custom) needs no input_schema."""
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    with anyio.fail_after(GUARD):
        await chat(server).bind_tools([search]).ainvoke("hi")
    assert server.requests[0].body["tools"] == [search]


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ({"name": "no_schema"}, ValueError, "has no 'input_schema'"),
        ({"name": "x", "input_schema": "object"}, TypeError, "input_schema that is not a dict"),
        ({"type": "function"}, TypeError, "needs a 'function' dict"),
        ({"name": "get weather", "input_schema": {"type": "object"}}, ValueError, "'get weather'"),
        (
            {"type": "function", "function": {"name": "a.b", "parameters": {"type": "object"}}},
            ValueError,
            r"must match \[a-zA-Z0-9_-\]\{1,64\}",
        ),
        (tool(name="get weather")(lookup_word), ValueError, "has the name 'get weather'"),
        ({"name": "x" * 65, "input_schema": {"type": "object"}}, ValueError, "1 to 64 characters"),
        (42, TypeError, "bind_tools takes a Tool"),
        (int, TypeError, "cannot read a schema from the class int"),
    ],
)
async def test_a_tool_the_api_would_refuse_fails_when_bound(
    server: AnthropicServer, given: Any, error: type[Exception], message: str
) -> None:
    """No input schema, a name outside the API's pattern, or no tool at all: refused at bind time."""
    with pytest.raises(error, match=message):
        chat(server).bind_tools([given])
    with pytest.raises(error, match=message):
        chat(server, tools=[given])
    with pytest.raises(error, match=message):
        chat(server).bind(tools=[given])
    assert server.requests == []


def test_bind_tools_wants_a_list() -> None:
    """A single tool instead of a list is a TypeError naming what came."""
    with pytest.raises(TypeError, match="tools must be a list of tools"):
        ChatAnthropic(model=MODEL).bind_tools(get_weather)  # type: ignore[arg-type]
