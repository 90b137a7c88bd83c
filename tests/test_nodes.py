"""The node library: prompts, parsers, the scripted model, retrievers and tools."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import trio
from _guide import COUNTRIES_FINAL, COUNTRIES_PROMPT, COUNTRIES_SNAPSHOTS_START, COUNTRIES_TOKENS

from engine import RunnablePassthrough
from engine.testing import GatedSource, check_event_order
from nodes import (
    AIMessage,
    AIMessageChunk,
    ChatPromptTemplate,
    ChatPromptValue,
    CommaSeparatedListOutputParser,
    Document,
    HumanMessage,
    InMemoryRetriever,
    JsonOutputParser,
    MessagesPlaceholder,
    OutputParserException,
    PromptTemplate,
    PromptVariableError,
    ScriptedChatModel,
    StringPromptValue,
    StrOutputParser,
    SystemMessage,
    ToolArgumentError,
    apply_patch,
    split_tokens,
    tool,
)

# -- prompts -------------------------------------------------------------------------------


async def test_chat_prompt_from_template_formats_a_human_message() -> None:
    """from_template makes one human message; extra variables are ignored."""
    prompt = ChatPromptTemplate.from_template("tell me a joke about {topic}")
    assert prompt.input_variables == ["topic"]
    value = await prompt.ainvoke({"topic": "parrot", "unused": 1})
    assert value == ChatPromptValue([HumanMessage(content="tell me a joke about parrot")])


async def test_missing_variable_names_the_variable_and_template() -> None:
    """A missing variable raises PromptVariableError naming it and the template."""
    prompt = ChatPromptTemplate.from_template("{context} and {question}")
    with pytest.raises(PromptVariableError, match=r"'question'.*\{context\} and \{question\}"):
        await prompt.ainvoke({"context": "c"})


def test_from_messages_with_system_and_placeholder() -> None:
    """from_messages supports roles, fixed messages and a history placeholder."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are {persona}."), ("placeholder", "{history}"), ("human", "{question}")]
    )
    messages = prompt.format_messages(
        persona="terse", question="why?", history=[("human", "hi"), ("ai", "hello")]
    )
    assert [m.type for m in messages] == ["system", "human", "ai", "human"]
    assert messages[0] == SystemMessage(content="You are terse.")
    without_history = prompt.format_messages(persona="p", question="q")
    assert len(without_history) == 2
    required = ChatPromptTemplate.from_messages([MessagesPlaceholder("history"), ("human", "{q}")])
    assert required.input_variables == ["history", "q"]
    with pytest.raises(PromptVariableError, match="history"):
        required.format_messages(q="x")


def test_bad_templates_are_rejected_at_construction() -> None:
    """Unknown roles, unbalanced braces and odd placeholders fail when the prompt is built."""
    with pytest.raises(ValueError, match="robot"):
        ChatPromptTemplate.from_messages([("robot", "hi")])
    with pytest.raises(ValueError, match="invalid prompt template"):
        PromptTemplate.from_template("unbalanced {")
    with pytest.raises(ValueError, match="placeholder"):
        PromptTemplate.from_template("{0}")
    with pytest.raises(TypeError, match="entry 0"):
        ChatPromptTemplate.from_messages([42])


async def test_string_prompt_and_single_variable_shortcut() -> None:
    """A one-variable template accepts a bare value, as the retrieval chain relies on."""
    prompt = PromptTemplate.from_template("Q: {question}")
    assert await prompt.ainvoke("why") == StringPromptValue("Q: why")
    assert prompt.format(question="x") == "Q: x"
    with pytest.raises(TypeError, match="needs a dict"):
        await PromptTemplate.from_template("{a}{b}").ainvoke("x")


# -- the scripted model ------------------------------------------------------------------------


def test_split_tokens_keeps_text_exactly() -> None:
    """Word tokens carry their leading whitespace and join back to the text."""
    assert split_tokens(" Hello! My  name") == [" Hello!", " My", "  name"]
    assert "".join(split_tokens("a\nb  c ")) == "a\nb  c "


async def test_scripted_model_streams_tokens_and_cycles_replies() -> None:
    """Each call takes the next reply; list replies stream exactly those tokens."""
    model = ScriptedChatModel(replies=[["Hel", "lo"], "one two"])
    chunks = [c async for c in model.astream("hi")]
    reply_id = chunks[0].id
    assert reply_id is not None and reply_id.startswith("lc_run--")
    assert chunks == [
        AIMessageChunk(content="Hel", id=reply_id),
        AIMessageChunk(content="lo", id=reply_id, chunk_position="last"),
    ]
    message = await model.ainvoke([("human", "x")])
    assert message == AIMessage(content="one two", id=message.id) and message.id != reply_id
    assert [c.content async for c in model.astream(StringPromptValue("p"))] == ["Hel", "lo"]
    assert model.received[0] == [HumanMessage(content="hi")]
    assert model.calls == 3


def test_chat_model_sync_invoke_returns_the_whole_message() -> None:
    """invoke on a chat model returns one AIMessage, like ainvoke."""
    message = ScriptedChatModel(replies=["a b"]).invoke("x")
    assert message == AIMessage(content="a b", id=message.id)
    assert ScriptedChatModel(replies=[AIMessage("a b", id="m1")]).invoke("x") == AIMessage(
        content="a b", id="m1"
    )


async def test_scripted_model_rejects_bad_input_clearly() -> None:
    """A non-message input raises TypeError naming the model."""
    with pytest.raises(TypeError, match="ScriptedChatModel"):
        await ScriptedChatModel(replies=["x"]).ainvoke(12345)
    with pytest.raises(ValueError, match="non-empty"):
        ScriptedChatModel(replies=[])


@pytest.mark.trio
async def test_scripted_model_delay_is_instant_under_the_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A per-token delay advances virtual time only."""
    model = ScriptedChatModel(replies=[["a", "b", "c"]], delay=10.0)
    start = trio.current_time()
    assert [c.content async for c in model.astream("x")] == ["a", "b", "c"]
    assert trio.current_time() - start == pytest.approx(30.0)


# -- parsers -----------------------------------------------------------------------------------


async def test_str_parser_passes_each_chunk_through_at_once() -> None:
    """StrOutputParser emits a chunk's text before the next model chunk exists."""
    source: GatedSource[AIMessageChunk] = GatedSource([AIMessageChunk(content=t) for t in ["a", "b", "c"]])
    async with (source | StrOutputParser()).astream(None) as chunks:
        source.release(1)
        assert await chunks.__anext__() == "a"
        assert source.produced == 1
        source.release_all()
        assert [c async for c in chunks] == ["b", "c"]


async def test_json_parser_on_the_guides_countries_stream() -> None:
    """The JSON parser emits the guide's growing snapshots and ends on the whole document."""
    chain = ScriptedChatModel(replies=[COUNTRIES_TOKENS]) | JsonOutputParser()
    snapshots = [s async for s in chain.astream(COUNTRIES_PROMPT)]
    assert snapshots[: len(COUNTRIES_SNAPSHOTS_START)] == COUNTRIES_SNAPSHOTS_START
    assert snapshots[-1] == COUNTRIES_FINAL
    assert all(a != b for a, b in itertools.pairwise(snapshots))
    assert await chain.ainvoke(COUNTRIES_PROMPT) == COUNTRIES_FINAL


async def test_json_parser_diff_mode_emits_patches() -> None:
    """diff=True emits JSON-patch operations that rebuild the final value."""
    chain = ScriptedChatModel(replies=[COUNTRIES_TOKENS]) | JsonOutputParser(diff=True)
    document: Any = None
    async for ops in chain.astream("x"):
        document = apply_patch(document, ops)
    assert document == COUNTRIES_FINAL


async def test_json_parser_raises_with_the_text_on_non_json() -> None:
    """Text with no JSON document raises OutputParserException carrying the text."""
    chain = ScriptedChatModel(replies=["I cannot do that."]) | JsonOutputParser()
    with pytest.raises(OutputParserException) as info:
        await chain.ainvoke("x")
    assert info.value.text == "I cannot do that."


async def test_json_parser_accepts_plain_strings_and_top_level_arrays() -> None:
    """A string input works, and a top-level array aggregates to its last snapshot."""
    assert await JsonOutputParser().ainvoke('["a", "b"]') == ["a", "b"]
    chain = ScriptedChatModel(replies=[["[1,", " 2,", " 3]"]]) | JsonOutputParser()
    assert await chain.ainvoke("x") == [1, 2, 3]


async def test_comma_separated_list_emits_each_item_when_complete() -> None:
    """Each list item is emitted once the comma after it arrives."""
    chain = ScriptedChatModel(replies=[["red", ", gre", "en,", " blue"]]) | CommaSeparatedListOutputParser()
    assert [c async for c in chain.astream("x")] == [["red"], ["green"], ["blue"]]
    assert await chain.ainvoke("x") == ["red", "green", "blue"]


async def test_parser_rejects_non_text_chunks() -> None:
    """A parser given something that is not text names itself and the type."""
    with pytest.raises(TypeError, match="StrOutputParser needs text"):
        await StrOutputParser().ainvoke(42)


# -- retrievers --------------------------------------------------------------------------------


async def test_retriever_ranks_by_relevance_and_does_not_stream() -> None:
    """BM25 ranks the matching document first; stream yields one chunk, the list."""
    retriever = InMemoryRetriever.from_texts(
        ["harrison likes spicy food", "harrison worked at kensho", "bears eat honey"], k=2
    )
    chunks = [c async for c in retriever.astream("where did harrison work?")]
    assert len(chunks) == 1
    assert [d.page_content for d in chunks[0]] == ["harrison worked at kensho", "harrison likes spicy food"]
    assert repr(chunks[0][0]) == "Document(page_content='harrison worked at kensho')"
    assert Document("x", {"a": 1}).metadata == {"a": 1}


async def test_retrieval_chain_streams_after_the_retriever() -> None:
    """The guide's retrieval chain streams the model's tokens after the non-streaming steps."""
    retriever = InMemoryRetriever.from_texts(["harrison worked at kensho", "harrison likes spicy food"])
    prompt = ChatPromptTemplate.from_template(
        "Answer the question based only on the following context:\n{context}\n\nQuestion: {question}\n"
    )
    model = ScriptedChatModel(replies=[[" Harrison", " worked", " at", " Ken", "sh", "o", "."]])
    chain = (
        {"context": retriever.with_config(run_name="Docs"), "question": RunnablePassthrough()}
        | prompt
        | model
        | StrOutputParser()
    )
    tokens = [c async for c in chain.astream("Where did harrison work?")]
    assert tokens == [" Harrison", " worked", " at", " Ken", "sh", "o", "."]
    sent = model.received[0][0].text
    assert "harrison worked at kensho" in sent and "Question: Where did harrison work?" in sent


# -- tools -------------------------------------------------------------------------------------


def test_tool_schema_from_signature_and_docstring() -> None:
    """@tool takes the name, the docstring and a JSON schema of the arguments."""

    @tool
    def search(query: str, limit: int = 3, exact: bool | None = None) -> list[str]:
        """Search the web."""
        return []

    assert search.name == "search"
    assert search.description == "Search the web."
    assert search.args_schema == {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer", "default": 3},
            "exact": {"anyOf": [{"type": "boolean"}, {"type": "null"}], "default": None},
        },
        "required": ["query"],
    }
    assert search.to_anthropic()["input_schema"] == search.args_schema


async def test_tool_invocation_forms_and_errors() -> None:
    """Tools take a dict or one value; bad arguments name the argument."""

    @tool
    async def add(a: int, b: int = 1) -> int:
        """Add."""
        return a + b

    @tool
    def shout(word: str) -> str:
        """Shout."""
        return word.upper()

    assert await add.ainvoke({"a": 2, "b": 3}) == 5
    assert await shout.ainvoke("hi") == "HI"
    assert await shout.ainvoke({"word": "x"}) == "X"
    with pytest.raises(ToolArgumentError, match="missing the required argument 'a'"):
        await add.ainvoke({"b": 1})
    with pytest.raises(ToolArgumentError, match="unknown argument"):
        await add.ainvoke({"a": 1, "c": 2})
    with pytest.raises(ToolArgumentError, match="argument 'a': expected an integer, got the string 'one'"):
        await add.ainvoke({"a": "one"})
    with pytest.raises(ToolArgumentError, match="call it with a dict"):
        await add.ainvoke(5)


async def test_streaming_tool_emits_tool_stream_events() -> None:
    """A generator tool streams its chunks as on_tool_stream events."""

    @tool
    async def count(n: int) -> AsyncIterator[int]:
        """Count."""
        for i in range(n):
            yield i

    @tool
    def count_sync(n: int) -> Any:
        """Count in a thread."""
        yield from range(n)

    for counter in (count, count_sync):
        events = [e async for e in counter.astream_events({"n": 3})]
        check_event_order(events)
        assert [e["data"]["chunk"] for e in events if e["event"] == "on_tool_stream"] == [0, 1, 2]
        assert events[-1]["data"]["output"] == 3  # chunks add up


async def test_message_inputs_of_every_form() -> None:
    """A model accepts a string, messages, (role, text) pairs and a prompt value."""
    model = ScriptedChatModel(replies=["ok"])
    for value in (
        "hi",
        [HumanMessage(content="hi")],
        [("human", "hi")],
        ChatPromptValue([HumanMessage(content="hi")]),
    ):
        await model.ainvoke(value)
    assert all(received == [HumanMessage(content="hi")] for received in model.received)
    assert json.dumps(await JsonOutputParser().ainvoke('{"a": 1}')) == '{"a": 1}'
    await anyio.lowlevel.checkpoint()
