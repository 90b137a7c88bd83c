"""The completion-model base (BaseLLM) and ScriptedLLM, alone, in chains, and beside langchain-core's."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models import FakeListLLM
from langchain_core.messages import AIMessage as LcAIMessage
from langchain_core.messages import HumanMessage as LcHumanMessage
from langchain_core.messages import SystemMessage as LcSystemMessage
from langchain_core.messages import ToolMessage as LcToolMessage
from langchain_core.prompt_values import ChatPromptValue as LcChatPromptValue

from nodes import (
    AIMessage,
    BaseLLM,
    ChatPromptValue,
    HumanMessage,
    PromptTemplate,
    ScriptedLLM,
    StrOutputParser,
    SystemMessage,
    ToolMessage,
)


async def collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


# -- ScriptedLLM -----------------------------------------------------------------------


async def test_ainvoke_gives_the_text_and_astream_its_word_tokens() -> None:
    """A string response streams as word tokens (whitespace in front) that join into ainvoke's text."""
    llm = ScriptedLLM(["Hello human!"])
    assert await llm.ainvoke("hi") == "Hello human!"
    assert await collect(llm.astream("hi")) == ["Hello", " human!"]


async def test_a_list_response_streams_exactly_its_chunks() -> None:
    """A list of strings streams as those chunks; list(text) streams characters as FakeStreamingListLLM."""
    llm = ScriptedLLM([["He", "llo"], list("abc")])
    assert await collect(llm.astream("x")) == ["He", "llo"]
    assert await collect(llm.astream("x")) == ["a", "b", "c"]


def _lc_answers(responses: list[str], calls: int) -> list[str]:
    llm = FakeListLLM(responses=responses)
    return [llm.invoke("q") for _ in range(calls)]


async def test_responses_cycle_as_langchain_cores_fake_list_llm() -> None:
    """Call after call, ScriptedLLM answers what FakeListLLM answers: the list in turn, then again."""
    responses = ["one", "two", "three"]
    llm = ScriptedLLM(responses)
    ours = [await llm.ainvoke("q") for _ in range(7)]
    theirs = await anyio.to_thread.run_sync(_lc_answers, responses, 7)
    assert ours == theirs == [*responses, *responses, "one"]
    assert llm.calls == 7 and llm.received == ["q"] * 7


def test_invoke_and_batch_run_synchronously() -> None:
    """invoke and batch work outside an event loop, each call taking the next response."""
    llm = ScriptedLLM(["a", "b"])
    assert llm.invoke("x") == "a"
    assert llm.batch(["x", "y", "z"]) == ["b", "a", "b"]


async def test_abatch_gives_one_text_per_input() -> None:
    """abatch returns one completion per input, in input order."""
    llm = ScriptedLLM(["same answer"])
    assert await llm.abatch(["p", "q"]) == ["same answer", "same answer"]
    assert sorted(llm.received) == ["p", "q"]


async def test_stop_cuts_the_response_before_the_first_stop_sequence() -> None:
    """stop (given or bound) ends the completion before the sequence; bind gives a fresh copy."""
    llm = ScriptedLLM(["alpha beta gamma"])
    bound = llm.bind(stop=[" gamma", "zzz"])
    assert await bound.ainvoke("x") == "alpha beta"
    assert await ScriptedLLM(["alpha beta"], stop=["ta"]).ainvoke("x") == "alpha be"
    assert llm.calls == 0


async def test_an_empty_response_is_the_empty_string() -> None:
    """An empty response streams one empty chunk, so ainvoke returns "" (as FakeListLLM)."""
    llm = ScriptedLLM([""])
    assert await collect(llm.astream("x")) == [""]
    assert await llm.ainvoke("x") == ""


def test_bad_arguments_are_refused() -> None:
    """No responses, one bare string, a non-string response, a bad delay or stop: clear errors."""
    with pytest.raises(ValueError, match="non-empty list of responses"):
        ScriptedLLM([])
    with pytest.raises(TypeError, match="not one string"):
        ScriptedLLM("hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="response 1 must be a string or a list of string chunks, got a int"):
        ScriptedLLM(["ok", 5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="delay"):
        ScriptedLLM(["ok"], delay=-1)
    with pytest.raises(TypeError, match="stop must be a list of strings"):
        ScriptedLLM(["ok"], stop="x")  # type: ignore[arg-type]


# -- input ------------------------------------------------------------------------------


class _Prompts(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def on_llm_start(self, serialized: Any, prompts: list[str], **kwargs: Any) -> None:
        self.prompts.extend(prompts)


def _lc_prompt(value: Any) -> str:
    handler = _Prompts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        asyncio.run(FakeListLLM(responses=["x"]).ainvoke(value, config={"callbacks": [handler]}))
    return handler.prompts[0]


async def test_messages_become_the_prompt_string_langchain_core_makes() -> None:
    """Messages (objects, tuples, dicts or a prompt value) become one 'Role: text' line each, as langchain-core's."""
    lc_messages = [
        LcSystemMessage("be brief"),
        LcHumanMessage("hi"),
        LcAIMessage("yo"),
        LcToolMessage("42", tool_call_id="c1"),
        LcHumanMessage(["a", {"type": "text", "text": "b"}]),
    ]
    ours = [
        SystemMessage("be brief"),
        HumanMessage("hi"),
        AIMessage("yo"),
        ToolMessage("42", tool_call_id="c1"),
        HumanMessage(["a", {"type": "text", "text": "b"}]),
    ]
    theirs = await anyio.to_thread.run_sync(_lc_prompt, LcChatPromptValue(messages=lc_messages))
    assert theirs == "System: be brief\nHuman: hi\nAI: yo\nTool: 42\nHuman: ab"
    llm = ScriptedLLM(["ok"])
    await llm.ainvoke(ours)
    await llm.ainvoke(ChatPromptValue(ours))
    await llm.ainvoke(
        [("system", "be brief"), {"role": "user", "content": "hi"}, {"type": "ai", "content": "yo"}]
    )
    assert llm.received[:2] == [theirs, theirs]
    assert llm.received[2] == "System: be brief\nHuman: hi\nAI: yo"


async def test_a_string_prompt_value_is_its_text() -> None:
    """A prompt template's value reaches the model as its text, and the end event's input is {"prompts": [...]}."""
    llm = ScriptedLLM(["ok"])
    chain = PromptTemplate.from_template("say {word}") | llm
    events = await collect(chain.astream_events({"word": "hi"}, version="v2"))
    assert llm.received == ["say hi"]
    end = next(e for e in events if e["event"] == "on_llm_end")
    assert end["data"] == {"output": "ok", "input": {"prompts": ["say hi"]}}


async def test_bad_input_is_a_type_error_naming_the_model() -> None:
    """An input that is no prompt fails with a TypeError naming the model and the value's type."""
    llm = ScriptedLLM(["ok"], name="writer")
    with pytest.raises(TypeError, match=r"the input of writer: a completion model takes .* got a int 5"):
        await llm.ainvoke(5)
    with pytest.raises(TypeError, match="the input of writer"):
        await llm.ainvoke({"topic": "x"})
    assert llm.calls == 0


# -- events and composition ---------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_events_are_the_guides_llm_rows(version: str) -> None:
    """Alone: on_llm_start with the input, one on_llm_stream per str chunk, on_llm_end with the text."""
    llm = ScriptedLLM(["Hello human!"], name="model")
    events = await collect(llm.astream_events("hello", version=version))
    assert [(e["event"], e["name"], e["data"]) for e in events] == [
        ("on_llm_start", "model", {"input": "hello"}),
        ("on_llm_stream", "model", {"chunk": "Hello"}),
        ("on_llm_stream", "model", {"chunk": " human!"}),
        ("on_llm_end", "model", {"output": "Hello human!"}),
    ]
    assert len({e["run_id"] for e in events}) == 1


async def test_prompt_llm_parser_streams_the_tokens_through() -> None:
    """prompt | llm | StrOutputParser() streams the completion's chunks and ainvoke gives the text."""
    chain = (
        PromptTemplate.from_template("tell me about {topic}")
        | ScriptedLLM(["Parrots talk."])
        | StrOutputParser()
    )
    assert await collect(chain.astream({"topic": "parrots"})) == ["Parrots", " talk."]
    assert await chain.ainvoke({"topic": "parrots"}) == "Parrots talk."


async def test_include_types_llm_selects_the_completion_model() -> None:
    """astream_events(include_types=["llm"]) keeps only the completion model's events."""
    chain = PromptTemplate.from_template("{q}") | ScriptedLLM(["a b"], name="m") | StrOutputParser()
    events = await collect(chain.astream_events({"q": "x"}, version="v2", include_types=["llm"]))
    assert {e["name"] for e in events} == {"m"}
    assert [e["data"]["chunk"] for e in events if e["event"] == "on_llm_stream"] == ["a", " b"]


# -- a BaseLLM subclass -----------------------------------------------------------------


class Echo(BaseLLM):
    """Streams the prompt back upper-cased, a letter at a time, and records its stream's close."""

    def __init__(self) -> None:
        self.closed: list[str] = []

    async def stream_text(self, prompt: str) -> AsyncGenerator[str, None]:
        try:
            for letter in prompt.upper():
                yield letter
        finally:
            self.closed.append(prompt)


async def test_a_subclass_implements_only_stream_text() -> None:
    """A BaseLLM subclass writes stream_text; the base gives it the prompt string and closes its stream."""
    echo = Echo()
    assert await echo.ainvoke([HumanMessage("hi")]) == "HUMAN: HI"
    assert await collect(echo.astream("ab")) == ["A", "B"]
    assert echo.closed == ["Human: hi", "ab"]
    events = await collect(echo.astream_events("ok", version="v2"))
    assert [e["event"] for e in events] == ["on_llm_start", "on_llm_stream", "on_llm_stream", "on_llm_end"]
    assert events[0]["name"] == "Echo"


async def test_a_stopped_consumer_closes_the_models_stream() -> None:
    """When the consumer stops early, the engine closes the subclass's generator (its finally runs)."""
    echo = Echo()
    stream = echo.astream("abcdef")
    async for letter in stream:
        assert letter == "A"
        break
    await stream.aclose()
    assert echo.closed == ["abcdef"]
