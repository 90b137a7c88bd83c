"""``bind(**kwargs)``: call arguments bound to the runnables that accept them (both backends).

``bind`` returns a copy of the runnable that uses the arguments on every call; the
chat models accept their call arguments, anything else is refused at bind time with a
``TypeError`` naming the argument.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import anyio
import attrs
import pytest
from anthropic_server import AnthropicServer, TextStream

from engine import AggregateNode, Runnable, RunnableBranch, RunnableLambda, Step
from engine.testing import check_event_order
from nodes import (
    AIMessage,
    ChatAnthropic,
    ChatPromptTemplate,
    HumanMessage,
    ScriptedChatModel,
    StrOutputParser,
    tool,
)

MODEL = "claude-test-model"  # not in the SDK's DEPRECATED_MODELS (its warning is an error here)
HANG_GUARD = 5.0  # seconds: bounds a wait that should end at once, never paces a test
#: A model call's hang guard: the first one imports the SDK (seconds on a busy machine).
MODEL_GUARD = 60.0


def chat(server: AnthropicServer, **options: Any) -> ChatAnthropic:
    return ChatAnthropic(model=MODEL, api_key="test-key", base_url=server.base_url, max_retries=0, **options)


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"sunny in {city}"


# -- ChatAnthropic: the request body ---------------------------------------------------


async def test_bound_arguments_reach_the_request_body_field_by_field(server: AnthropicServer) -> None:
    """stop becomes stop_sequences; max_tokens, temperature, tools and tool_choice are sent as bound."""
    model = chat(server)
    bound = model.bind(
        stop=["END", "\n\nHuman:"],
        max_tokens=77,
        temperature=0.25,
        tools=[get_weather],
        tool_choice="get_weather",
    )
    with anyio.fail_after(MODEL_GUARD):
        await bound.ainvoke("hi")
        await model.ainvoke("plain")
    sent, plain = server.requests
    body = sent.body
    assert body["stop_sequences"] == ["END", "\n\nHuman:"]
    assert body["max_tokens"] == 77
    assert body["temperature"] == 0.25
    assert body["tools"] == [get_weather.to_anthropic()]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["model"] == MODEL
    # The model bind was called on is unchanged.
    assert plain.body == {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "plain"}],
        "stream": True,
    }


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("auto", {"type": "auto"}),
        ("any", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}, None),
    ],
)
async def test_tool_choice_modes_and_dicts_are_sent_as_the_api_takes_them(
    server: AnthropicServer, choice: Any, sent: Any
) -> None:
    """A mode string becomes {"type": mode}; a dict is sent as given."""
    with anyio.fail_after(MODEL_GUARD):
        await chat(server).bind(tools=[get_weather], tool_choice=choice).ainvoke("hi")
    assert server.requests[0].body["tool_choice"] == (sent if sent is not None else choice)


async def test_a_later_bind_overrides_an_earlier_one_and_with_config_passes_it_through(
    server: AnthropicServer,
) -> None:
    """bind after bind replaces the argument; bind on a with_config binding binds the model and keeps the config."""
    model = chat(server).bind(stop=["a"]).with_config(run_name="writer").bind(stop=["b"], max_tokens=5)
    assert model.get_name() == "writer"
    server.script(TextStream(["x"]))
    with anyio.fail_after(MODEL_GUARD):
        events = [
            event
            async for event in (ChatPromptTemplate.from_template("{q}") | model).astream_events({"q": "?"})
        ]
    check_event_order(events)
    writer = [e["event"] for e in events if e["name"] == "writer"]
    assert writer[0] == "on_chat_model_start" and writer[-1] == "on_chat_model_end"
    assert server.requests[0].body["stop_sequences"] == ["b"]
    assert server.requests[0].body["max_tokens"] == 5


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"max_tokens": 0}, ValueError, "max_tokens"),
        ({"temperature": 3.0}, ValueError, "temperature must be between 0 and 1"),
        ({"stop": "END"}, TypeError, "stop must be a list of strings"),
        ({"tool_choice": 3}, TypeError, "tool_choice must be"),
        ({"tools": [42]}, TypeError, "bind_tools takes a Tool"),
    ],
)
def test_a_bad_value_is_refused_at_bind_time_with_a_note(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    """A value the model's constructor would refuse is refused by bind, noted with the argument."""
    with pytest.raises(error, match=message) as caught:
        ChatAnthropic(model=MODEL).bind(**arguments)
    assert any(f"binding {next(iter(arguments))} to ChatAnthropic" in note for note in caught.value.__notes__)


def test_an_unknown_argument_is_refused_naming_it_and_what_is_accepted() -> None:
    """An argument the model does not take is a TypeError naming it and listing the accepted ones."""
    with pytest.raises(
        TypeError, match=r"ChatAnthropic does not accept call argument\(s\) 'top_k', 'seed'"
    ) as caught:
        ChatAnthropic(model=MODEL).bind(stop=["x"], top_k=5, seed=1)
    assert "it accepts 'stop', 'max_tokens', 'temperature', 'tools', 'tool_choice'" in str(caught.value)


# -- ScriptedChatModel: stop ------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        (["."], ["Hello", " world"]),
        (["ld. B"], ["Hello", " wor"]),  # the sequence spans tokens: the token it starts in is cut
        (["Bye", " world"], ["Hello"]),  # the earliest of several wins
        (["zzz"], ["Hello", " world.", " Bye"]),  # never occurs: the whole reply
        (["Hello"], [""]),  # at the start: one empty chunk, as an API's empty reply
    ],
)
async def test_a_bound_stop_ends_the_scripted_reply_before_the_sequence(
    stop: list[str], expected: list[str]
) -> None:
    """The scripted reply streams up to, not including, the first stop sequence."""
    model = ScriptedChatModel(["Hello world. Bye"])
    bound = model.bind(stop=stop)
    with anyio.fail_after(HANG_GUARD):
        async with bound.astream("hi") as chunks:
            assert [chunk.content async for chunk in chunks] == expected
    assert bound.received_arguments == [{"stop": stop}]
    assert model.stop is None and model.calls == 0


async def test_a_stopped_scripted_model_streams_through_a_chain_and_records_each_call() -> None:
    """In prompt | model.bind(stop) | parser the reply is cut; each call records the arguments it got."""
    model = ScriptedChatModel(["one two. three", "four. five"])
    bound = model.bind(stop=["."])
    chain = ChatPromptTemplate.from_template("{q}") | bound | StrOutputParser()
    with anyio.fail_after(HANG_GUARD):
        assert await chain.ainvoke({"q": "a"}) == "one two"
        assert await chain.ainvoke({"q": "b"}) == "four"
    assert bound.calls == 2 and bound.received_arguments == [{"stop": ["."]}] * 2
    assert bound.received[1] == [HumanMessage("b")]
    # bind made a copy: the model it was called on was never called.
    assert model.calls == 0 and model.received_arguments == []
    assert ScriptedChatModel(["x"], stop=["y"]).stop == ("y",)


@pytest.mark.parametrize(
    ("stop", "error", "message"),
    [
        ("x", TypeError, "list of strings"),
        ([""], ValueError, "must not be empty"),
        ([3], TypeError, "list of strings"),
    ],
)
def test_a_bad_scripted_stop_is_refused(stop: Any, error: type[Exception], message: str) -> None:
    """A string, an empty sequence or a non-string is refused at bind time and at construction."""
    with pytest.raises(error, match=message):
        ScriptedChatModel(["x"]).bind(stop=stop)
    with pytest.raises(error, match=message):
        ScriptedChatModel(["x"], stop=stop)


def test_scripted_model_refuses_other_arguments() -> None:
    """The scripted model takes stop, tools, tool_choice and output_config; anything else is refused naming it."""
    with pytest.raises(TypeError, match=r"ScriptedChatModel does not accept call argument\(s\) 'max_tokens'"):
        ScriptedChatModel(["x"]).bind(max_tokens=3)


# -- runnables that take no call arguments ---------------------------------------------


def test_bind_on_a_plain_function_step_is_refused_naming_the_argument() -> None:
    """A lambda step takes no call arguments: TypeError naming the step and the argument."""

    def shout(text: str) -> str:
        return text.upper()

    with pytest.raises(TypeError, match=r"shout does not accept call argument\(s\) 'stop': it accepts none"):
        RunnableLambda(shout).bind(stop=["x"])


def test_bind_on_a_chain_is_refused_with_where_to_bind() -> None:
    """bind binds to the runnable itself: a chain refuses, saying to bind the step that takes them."""
    chain = ChatPromptTemplate.from_template("{q}") | ScriptedChatModel(["x"])
    with pytest.raises(
        TypeError, match=r"RunnableSequence does not accept .*prompt \| model\.bind\(stop=\[\.\.\.\]\)"
    ):
        chain.bind(stop=["x"])
    with pytest.raises(TypeError, match=r"RunnableBranch does not accept call argument\(s\) 'stop'"):
        RunnableBranch((lambda v: True, ScriptedChatModel(["x"])), ScriptedChatModel(["y"])).bind(stop=["x"])


def test_bind_without_arguments_returns_the_runnable_itself() -> None:
    """bind() with nothing to bind changes nothing (so it is accepted everywhere)."""
    step = RunnableLambda(str)
    assert step.bind() is step


# -- the hook ---------------------------------------------------------------------------


@attrs.frozen(eq=False)
class Repeat(AggregateNode[str, str]):
    """A node that declares the call argument it takes."""

    call_arguments: ClassVar[dict[str, str]] = {"times": "times"}

    times: int = attrs.field(default=1, validator=attrs.validators.ge(1))

    async def compute(self, value: str, step: Step) -> Any:
        for _ in range(self.times):
            yield value


@attrs.frozen(eq=False)
class Tagged(AggregateNode[str, str]):
    """A node that overrides the hook to take any argument."""

    extra: tuple[tuple[str, Any], ...] = ()

    def with_call_arguments(self, arguments: Any) -> Tagged:
        return attrs.evolve(self, extra=(*self.extra, *sorted(arguments.items())))

    async def compute(self, value: str, step: Step) -> Any:
        yield f"{value} {dict(self.extra)}"


async def test_a_users_node_takes_call_arguments_by_declaring_them_or_overriding_the_hook() -> None:
    """call_arguments maps an argument to a field (validated at bind); with_call_arguments may be overridden."""
    with anyio.fail_after(HANG_GUARD):
        assert await Repeat().bind(times=3).ainvoke("ab") == "ababab"
        assert await Tagged().bind(b=2, a=1).ainvoke("x") == "x {'a': 1, 'b': 2}"
    with pytest.raises(ValueError, match="times"):
        Repeat().bind(times=0)
    with pytest.raises(
        TypeError, match=r"Repeat does not accept call argument\(s\) 'twice': it accepts 'times'"
    ):
        Repeat().bind(twice=True)


def test_the_bind_hooks_are_documented_on_runnable() -> None:
    """call_arguments (a #: documented class attribute) and with_call_arguments (a docstring) are public hooks."""
    assert inspect.getdoc(Runnable.with_call_arguments) and inspect.getdoc(Runnable.bind)
    lines = inspect.getsource(Runnable).splitlines()
    at = next(n for n, line in enumerate(lines) if line.strip().startswith("call_arguments:"))
    assert lines[at - 1].strip().startswith("#:")
    assert Runnable.call_arguments == {}


async def test_a_bound_model_still_returns_an_ai_message() -> None:
    """A bound chat model is still a chat model: ainvoke gives the whole reply as an AIMessage."""
    with anyio.fail_after(HANG_GUARD):
        reply = await ScriptedChatModel(["a b. c"]).bind(stop=["."]).ainvoke("hi")
    assert isinstance(reply, AIMessage) and reply.content == "a b"
