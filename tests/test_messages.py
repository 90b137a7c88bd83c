"""Messages, chunk addition, tool-call parsing, coercion and prompt values."""

from __future__ import annotations

import functools
import itertools
import json
import operator
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine._chunks import concat_chunks
from nodes._messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
    UsageMetadata,
    coerce_to_messages,
    message_from_role,
)
from nodes._prompt_values import ChatPromptValue, PromptValue, StringPromptValue

# -- strategies -------------------------------------------------------------------------

# Small sampled pools keep generation cheap; the merge rules care about which kinds of
# values meet on which index, not about the strings themselves.
_words = st.sampled_from(["", "a", "b ", '{"', "}"])
_indexes = st.sampled_from([None, 0, 1])

_blocks = st.one_of(
    st.builds(lambda text: {"type": "text", "text": text}, _words),
    st.builds(
        lambda text, index: {"type": "text", "text": text, "index": index}, _words, st.sampled_from([0, 1])
    ),
    st.sampled_from(
        [
            {"type": "tool_use", "id": "t1", "name": "f", "input": {}, "index": 0},
            {"type": "tool_use", "id": "t2", "name": "g", "input": {}, "index": 1},
            {"type": "tool_use", "input": None, "index": 0},
            {"type": "tool_use", "input": {"x": 1}, "index": 1},
            {"type": "tool_use", "input": "[", "index": 0},
            {"type": "image", "source": {"type": "url", "url": "u"}},
        ]
    ),
    st.builds(
        lambda fragment, index: {"type": "input_json_delta", "partial_json": fragment, "index": index},
        _words,
        st.sampled_from([0, 1]),
    ),
)
_contents = st.one_of(_words, st.lists(st.one_of(_blocks, _words), max_size=3))

_tool_call_chunks = st.sampled_from(
    [
        ToolCallChunk(name=name, args=args, id=ident, index=index)
        for name in (None, "add")
        for args in (None, "", "{", '"a": 1', "}")
        for ident in (None, "c1")
        for index in (None, 0, 1)
    ]
)

# Values of one type per key (two types on one key do not add up: test_metadata_type_clash...),
# under the rules that are associative: strings, dicts, lists, None, equal scalars.
_metadata = st.sampled_from(
    [
        {},
        {"a": "x"},
        {"a": None, "m": {"c": 1}},
        {"m": {"d": "x", "c": None}, "a": "y"},
        {"m": {"c": 1}, "model_provider": "anthropic", "n": 2.5},
        {"l": [{"index": 0, "text": "p"}, "q"], "n": 2.5},
        {"l": [{"index": 0, "text": "r"}], "model_provider": "anthropic"},
    ]
)
_usages = st.sampled_from([None, UsageMetadata(1, 2), UsageMetadata(3, 0, 5), UsageMetadata(0, 7)])

_chunks = st.builds(
    AIMessageChunk,
    _contents,
    additional_kwargs=_metadata,
    response_metadata=_metadata,
    name=st.sampled_from([None, "n1", "n2"]),
    id=st.sampled_from([None, "m1", "m2", "lc_run--1", "lc_run--2", "lc_3", ""]),
    usage_metadata=_usages,
    tool_call_chunks=st.lists(_tool_call_chunks, max_size=3),
    chunk_position=st.sampled_from([None, "last"]),
)


def _left_fold(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    return functools.reduce(operator.add, chunks)


def _grouped(chunks: list[AIMessageChunk], data: st.DataObject) -> AIMessageChunk:
    if len(chunks) == 1:
        return chunks[0]
    split = data.draw(st.integers(1, len(chunks) - 1))
    return _grouped(chunks[:split], data) + _grouped(chunks[split:], data)


def _assert_same(left: AIMessageChunk, right: AIMessageChunk) -> None:
    assert left == right
    # Key order inside merged blocks and metadata shows in reprs; it must not depend on grouping.
    assert repr(left) == repr(right)


# -- chunk addition laws ----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(_chunks, min_size=1, max_size=7), data=st.data())
def test_chunk_sum_is_independent_of_grouping(chunks: list[AIMessageChunk], data: st.DataObject) -> None:
    """Adding chunks in any grouping, or in bulk, gives the left fold."""
    expected = _left_fold(chunks)
    _assert_same(_grouped(chunks, data), expected)
    _assert_same(AIMessageChunk.concat_chunks(chunks), expected)
    _assert_same(sum(chunks[1:], chunks[0]), expected)


# Chunks as a model streams them: text (or blocks) and the reply's id, nothing else. A
# block of only such chunks is added up by a quicker path than one holding other fields.
_text_only_chunks = st.one_of(
    st.builds(AIMessageChunk.from_text, _words, st.sampled_from([None, "m1", "lc_run--1", ""])),
    st.builds(
        lambda content, id: AIMessageChunk(content=content, id=id), _contents, st.sampled_from([None, "m2"])
    ),
)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.one_of(_text_only_chunks, _text_only_chunks, _chunks), min_size=1, max_size=12))
def test_text_only_chunks_add_up_like_any_others(chunks: list[AIMessageChunk]) -> None:
    """Blocks of text-only chunks, alone or mixed with chunks carrying every field, sum to
    the left fold, in bulk and through a long stream's blocks."""
    expected = _left_fold(chunks)
    _assert_same(AIMessageChunk.concat_chunks(chunks), expected)
    repeated = chunks * 30  # more than one block of the engine's running sum
    long_sum = concat_chunks(repeated)
    assert isinstance(long_sum, AIMessageChunk)
    _assert_same(long_sum, _left_fold(repeated))


@settings(max_examples=100, deadline=None)
@given(a=_chunks, b=_chunks, c=_chunks)
def test_chunk_addition_is_associative(a: AIMessageChunk, b: AIMessageChunk, c: AIMessageChunk) -> None:
    """(a + b) + c equals a + (b + c)."""
    _assert_same((a + b) + c, a + (b + c))


# One key, every kind of value it may hold: where values of different kinds meet is where
# a merge rule is most easily order-dependent.
_mixed_values: st.SearchStrategy[object] = st.one_of(
    st.none(), st.just({}), st.sampled_from(["", "p", "q"]), st.just({"x": 1}), st.just(7)
)
_same_key_chunks = st.builds(
    lambda block_value, meta_value: AIMessageChunk(
        content=[{"type": "tool_use", "index": 0, "input": block_value, "id": block_value}],
        response_metadata={"k": meta_value, "n": {"k": meta_value}},
    ),
    _mixed_values,
    _mixed_values,
)


def _sum_or_error(add: Any) -> AIMessageChunk | type[TypeError]:
    try:
        return add()  # type: ignore[no-any-return]
    except TypeError:
        return TypeError


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(_same_key_chunks, min_size=1, max_size=6), data=st.data())
def test_mixed_value_kinds_merge_independently_of_grouping(
    chunks: list[AIMessageChunk], data: st.DataObject
) -> None:
    """Block fragments and metadata holding strings, dicts, ints and None on one key merge (or
    refuse to: two types on a key) in any grouping alike."""
    expected = _sum_or_error(lambda: _left_fold(chunks))
    grouped = _sum_or_error(lambda: _grouped(chunks, data))
    bulk = _sum_or_error(lambda: AIMessageChunk.concat_chunks(chunks))
    if expected is TypeError:
        assert grouped is TypeError and bulk is TypeError
    else:
        assert isinstance(grouped, AIMessageChunk) and isinstance(bulk, AIMessageChunk)
        assert isinstance(expected, AIMessageChunk)
        _assert_same(grouped, expected)
        _assert_same(bulk, expected)


_unindexed_contents = st.one_of(
    _words,
    st.lists(
        st.one_of(
            st.builds(lambda text: {"type": "text", "text": text}, _words),
            st.just({"type": "image", "source": {}}),
        ),
        max_size=3,
    ),
)


@settings(max_examples=100, deadline=None)
@given(contents=st.lists(_unindexed_contents, min_size=2, max_size=6))
def test_sum_text_is_the_chunks_texts_joined(contents: list[Any]) -> None:
    """The sum's text is every chunk's text joined, when no block has an index."""
    chunks = [AIMessageChunk(content) for content in contents]
    total = AIMessageChunk.concat_chunks(chunks)
    assert total.text == "".join(chunk.text for chunk in chunks)


@settings(max_examples=100, deadline=None)
@given(usages=st.lists(_usages, min_size=1, max_size=6))
def test_usage_adds_up(usages: list[UsageMetadata | None]) -> None:
    """The sum's usage is the sum of the chunks' usage (None when none report any)."""
    chunks = [AIMessageChunk("", usage_metadata=usage) for usage in usages]
    reported = [usage for usage in usages if usage is not None]
    total = AIMessageChunk.concat_chunks(chunks).usage_metadata
    if not reported:
        assert total is None
    else:
        assert total == sum(reported)
        assert total == UsageMetadata(
            sum(u.input_tokens for u in reported),
            sum(u.output_tokens for u in reported),
            sum(u.total_tokens for u in reported),
        )


def test_guide_example_sums_and_reprs() -> None:
    """The streaming guide's five chunks add up to ' Hello! My name is' with LangChain's repr."""
    chunks = [AIMessageChunk(content=text) for text in [" Hello", "!", " My", " name", " is"]]
    total = chunks[0] + chunks[1] + chunks[2] + chunks[3] + chunks[4]
    assert total == AIMessageChunk(content=" Hello! My name is")
    assert repr(total) == "AIMessageChunk(content=' Hello! My name is')"
    assert sum(chunks[1:], chunks[0]) == total
    assert AIMessageChunk.concat_chunks(chunks) == total
    assert concat_chunks(chunks) == total


def test_chunk_is_not_equal_to_message() -> None:
    """An AIMessageChunk never equals an AIMessage with the same content."""
    chunk: BaseMessage = AIMessageChunk(content="x")
    assert chunk != AIMessage(content="x")
    assert AIMessage(content="x") == AIMessage("x")


def test_adding_a_non_chunk_is_a_type_error() -> None:
    """Chunks only add to chunks."""
    with pytest.raises(TypeError):
        AIMessageChunk(content="x") + AIMessage(content="y")
    with pytest.raises(TypeError):
        AIMessageChunk(content="x") + "y"


def test_string_and_block_content_merge_into_blocks() -> None:
    """A string next to a block list becomes a text block joined with neighbouring plain text."""
    left = AIMessageChunk(content="Hi ")
    right = AIMessageChunk(content=[{"type": "text", "text": "there"}, {"type": "image", "source": {}}])
    assert (left + right).content == [{"type": "text", "text": "Hi there"}, {"type": "image", "source": {}}]
    assert (right + AIMessageChunk(content="")).content == right.content


def test_indexed_blocks_merge_their_fragments() -> None:
    """Blocks with the same index merge: text and partial_json concatenate, other keys keep the first."""
    chunks = [
        AIMessageChunk(content=[{"type": "text", "text": "Let me ", "index": 0}]),
        AIMessageChunk(content=[{"type": "text", "text": "add.", "index": 0}]),
        AIMessageChunk(
            content=[{"type": "tool_use", "id": "toolu_1", "name": "add", "input": {}, "index": 1}]
        ),
        AIMessageChunk(content=[{"type": "input_json_delta", "partial_json": '{"a": ', "index": 1}]),
        AIMessageChunk(content=[{"type": "input_json_delta", "partial_json": "1}", "index": 1}]),
    ]
    total = AIMessageChunk.concat_chunks(chunks)
    assert total.content == [
        {"type": "text", "text": "Let me add.", "index": 0},
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "add",
            "input": {},
            "index": 1,
            "partial_json": '{"a": 1}',
        },
    ]
    assert total.text == "Let me add."


def test_ids_names_and_metadata_merge() -> None:
    """The first id and name stand; later metadata keys win, nested dicts merge, None never wins."""
    first = AIMessageChunk(
        content="",
        id="msg_1",
        response_metadata={"model": "m", "stop_reason": None, "usage": {"in": 1}},
    )
    second = AIMessageChunk(
        content="",
        id="msg_2",
        name="bot",
        response_metadata={"stop_reason": "end_turn", "usage": {"out": 2}, "model": None},
    )
    total = first + second
    assert total.id == "msg_1"
    assert total.name == "bot"
    assert total.response_metadata == {"model": "m", "stop_reason": "end_turn", "usage": {"in": 1, "out": 2}}


def test_concat_chunks_of_ten_thousand_chunks_equals_left_fold() -> None:
    """Bulk concatenation of 10,000 one-word chunks (and of 2,000 block and tool-arg chunks) equals the left fold."""
    text_chunks = [AIMessageChunk(content=f" w{i}") for i in range(10_000)]
    assert AIMessageChunk.concat_chunks(text_chunks) == _left_fold(text_chunks)
    assert AIMessageChunk.concat_chunks(text_chunks).content == "".join(f" w{i}" for i in range(10_000))

    block_chunks = [
        AIMessageChunk(
            content=[{"type": "text", "text": f" w{i}", "index": 0}],
            tool_call_chunks=[ToolCallChunk(args=f"{i},", index=0)],
            usage_metadata=UsageMetadata(0, 1),
        )
        for i in range(2_000)
    ]
    bulk = AIMessageChunk.concat_chunks(block_chunks)
    assert bulk == _left_fold(block_chunks)
    assert bulk.usage_metadata == UsageMetadata(0, 2_000)


def test_concat_chunks_rejects_empty_and_foreign_input() -> None:
    """concat_chunks needs at least one chunk, and only chunks."""
    with pytest.raises(ValueError):
        AIMessageChunk.concat_chunks([])
    with pytest.raises(TypeError, match="item 1"):
        AIMessageChunk.concat_chunks([AIMessageChunk(content="a"), AIMessage(content="b")])  # type: ignore[list-item]
    one = AIMessageChunk(content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    assert AIMessageChunk.concat_chunks([one]) is one


# -- tool calls -------------------------------------------------------------------------


_ARGS = {"a": 3, "b": [1, 2], "text": 'say "hi"'}


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(0, len(json.dumps(_ARGS))), max_size=6), data=st.data())
def test_tool_calls_parse_from_fragments_split_anywhere(cuts: list[int], data: st.DataObject) -> None:
    """Argument fragments split at any points parse to the same tool call, whatever the grouping."""
    raw = json.dumps(_ARGS)
    points = [0, *sorted(cuts), len(raw)]
    pieces = [raw[start:end] for start, end in itertools.pairwise(points)]
    chunks = [AIMessageChunk(content="", tool_call_chunks=[ToolCallChunk(name="mul", id="call_1", index=0)])]
    chunks += [AIMessageChunk(content="", tool_call_chunks=[ToolCallChunk(args=p, index=0)]) for p in pieces]
    for total in (_left_fold(chunks), _grouped(chunks, data), AIMessageChunk.concat_chunks(chunks)):
        assert total.tool_call_chunks == [ToolCallChunk(name="mul", args=raw, id="call_1", index=0)]
        assert total.tool_calls == [ToolCall(name="mul", args=_ARGS, id="call_1")]
        assert total.invalid_tool_calls == []


def test_tool_call_chunks_merge_by_index() -> None:
    """Fragments merge per index; fragments without an index are appended as they are."""
    a = AIMessageChunk(
        content="",
        tool_call_chunks=[
            ToolCallChunk(name="add", id="c0", args='{"x":', index=0),
            ToolCallChunk(args="{}"),
        ],
    )
    b = AIMessageChunk(
        content="",
        tool_call_chunks=[ToolCallChunk(name="mul", id="c1", index=1), ToolCallChunk(args=" 1}", index=0)],
    )
    total = a + b
    assert total.tool_call_chunks == [
        ToolCallChunk(name="add", args='{"x": 1}', id="c0", index=0),
        ToolCallChunk(args="{}"),
        ToolCallChunk(name="mul", id="c1", index=1),
    ]
    assert total.tool_calls == [ToolCall("add", {"x": 1}, "c0"), ToolCall("mul", {}, "c1")]
    assert total.invalid_tool_calls == [
        InvalidToolCall(name=None, args="{}", id=None, error="the tool call has no name")
    ]


def test_invalid_json_arguments_become_invalid_tool_calls() -> None:
    """Arguments that are not a JSON object go to invalid_tool_calls with the reason."""
    chunk = AIMessageChunk(
        content="",
        tool_call_chunks=[
            ToolCallChunk(name="f", args='{"a": ', id="c1", index=0),
            ToolCallChunk(name="g", args="[1]", id="c2", index=1),
            ToolCallChunk(name="h", args="  ", id="c3", index=2),
        ],
    )
    assert chunk.tool_calls == [ToolCall(name="h", args={}, id="c3")]
    bad_json, not_object = chunk.invalid_tool_calls
    assert (bad_json.name, bad_json.args, bad_json.id) == ("f", '{"a": ', "c1")
    assert bad_json.error is not None
    assert "not valid JSON" in bad_json.error
    assert not_object.error == "the arguments are a JSON list, not an object"
    message = chunk.to_message()
    assert message.tool_calls == chunk.tool_calls
    assert message.invalid_tool_calls == chunk.invalid_tool_calls


def test_to_message_keeps_everything() -> None:
    """to_message gives an AIMessage with the chunk's content, ids, metadata, usage and parsed calls."""
    chunk = AIMessageChunk(
        content=[{"type": "text", "text": "hi"}],
        id="msg_1",
        name="bot",
        response_metadata={"stop_reason": "tool_use"},
        usage_metadata=UsageMetadata(3, 4),
        tool_call_chunks=[ToolCallChunk(name="f", args='{"q": 1}', id="c1", index=0)],
    )
    assert chunk.to_message() == AIMessage(
        content=[{"type": "text", "text": "hi"}],
        id="msg_1",
        name="bot",
        response_metadata={"stop_reason": "tool_use"},
        usage_metadata=UsageMetadata(3, 4, 7),
        tool_calls=[ToolCall(name="f", args={"q": 1}, id="c1")],
    )


def test_tool_values_read_like_langchain_dicts() -> None:
    """Tool calls, chunks and usage support LangChain's subscript access."""
    chunk = ToolCallChunk(name="f", args="{", id="c", index=0)
    assert chunk["args"] == "{"
    assert chunk.get("index") == 0
    assert chunk.get("type", "none") == "none"
    with pytest.raises(KeyError):
        chunk["nope"]
    assert ToolCall("f", {"a": 1})["args"] == {"a": 1}
    assert UsageMetadata(1, 2)["total_tokens"] == 3


def test_dict_tool_calls_and_usage_are_converted() -> None:
    """LangChain-style dicts for tool calls and usage become the attrs values."""
    message = AIMessage(
        content="",
        tool_calls=[{"name": "f", "args": {"a": 1}, "id": "c1", "type": "tool_call"}],
        usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
    )
    assert message.tool_calls == [ToolCall("f", {"a": 1}, "c1")]
    assert message.usage_metadata == UsageMetadata(1, 2, 3)


# -- messages ---------------------------------------------------------------------------


def test_reprs_show_content_and_non_default_fields() -> None:
    """Reprs show content always and other fields only when set, like LangChain's."""
    assert repr(HumanMessage(content="hi")) == "HumanMessage(content='hi')"
    assert repr(SystemMessage("be brief")) == "SystemMessage(content='be brief')"
    assert repr(AIMessageChunk(content="")) == "AIMessageChunk(content='')"
    assert repr(AIMessage(content="x", tool_calls=[ToolCall("f", {"a": 1}, "c1")])) == (
        "AIMessage(content='x', tool_calls=[ToolCall(name='f', args={'a': 1}, id='c1')])"
    )
    assert repr(ToolMessage("42", tool_call_id="c1")) == "ToolMessage(content='42', tool_call_id='c1')"
    assert repr(AIMessage("x", id="m", usage_metadata=UsageMetadata(1, 2))) == (
        "AIMessage(content='x', id='m', usage_metadata=UsageMetadata(input_tokens=1, output_tokens=2, total_tokens=3))"
    )


def test_message_types_and_text() -> None:
    """Each message has its role type; text joins text blocks and skips the rest."""
    assert [m.type for m in (SystemMessage(""), HumanMessage(""), AIMessage(""), AIMessageChunk(""))] == [
        "system",
        "human",
        "ai",
        "ai",
    ]
    assert ToolMessage("", tool_call_id="c").type == "tool"
    content: list[dict[str, Any]] = [
        {"type": "text", "text": "a"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        {"type": "text", "text": "b", "index": 2},
    ]
    assert AIMessage(content).text == "ab"
    assert HumanMessage("plain").text == "plain"


def test_messages_validate_their_fields() -> None:
    """Bad content, a bad status and the abstract base are refused."""
    with pytest.raises(TypeError, match=r"HumanMessage\.content"):
        HumanMessage(5)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"HumanMessage\.content: item 1 is a int 7; a content item is a str or a block"
    ):
        HumanMessage([{"type": "text", "text": "a"}, 7])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        ToolMessage("x", tool_call_id="c", status="broken")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a concrete message type"):
        BaseMessage("x")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        HumanMessage("x").content = "y"  # type: ignore[misc]


# -- coercion ---------------------------------------------------------------------------


def test_coerce_accepts_the_usual_forms() -> None:
    """Strings, messages, prompt values, tuples and role dicts become messages."""
    ai = AIMessage("yo")
    assert coerce_to_messages("hi") == [HumanMessage("hi")]
    assert coerce_to_messages(ai) == [ai]
    assert coerce_to_messages(StringPromptValue("hi")) == [HumanMessage("hi")]
    assert coerce_to_messages(
        [
            ("system", "be brief"),
            ("user", "hi"),
            ("assistant", "yo"),
            ("human", [{"type": "text", "text": "x"}]),
            {"role": "ai", "content": "ok", "id": "m1"},
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
            ai,
        ]
    ) == [
        SystemMessage("be brief"),
        HumanMessage("hi"),
        AIMessage("yo"),
        HumanMessage([{"type": "text", "text": "x"}]),
        AIMessage("ok", id="m1"),
        ToolMessage("42", tool_call_id="c1"),
        ai,
    ]
    assert coerce_to_messages((HumanMessage("a"), ("ai", "b"))) == [HumanMessage("a"), AIMessage("b")]


def test_coerce_errors_name_the_problem() -> None:
    """Errors name where, the item's position and its type."""
    with pytest.raises(TypeError, match=r"model input: item 1 is a int 5; expected a message"):
        coerce_to_messages([("human", "hi"), 5], where="model input")
    with pytest.raises(TypeError, match=r"input: cannot make chat messages from a int 3"):
        coerce_to_messages(3)
    with pytest.raises(TypeError, match=r"for one message write a list of tuples: \[\('human', 'hi'\)\]"):
        coerce_to_messages(("human", "hi"))
    with pytest.raises(ValueError, match=r"input: item 0: unknown message role 'robot'"):
        coerce_to_messages([("robot", "hi")])
    with pytest.raises(ValueError, match=r"item 0: a 'tool' message needs the id"):
        coerce_to_messages([("tool", "42")])
    with pytest.raises(TypeError, match=r"item 0 \('human'\) has content that is a int 5"):
        coerce_to_messages([("human", 5)])
    with pytest.raises(ValueError, match=r"unsupported keys \['extra'\]"):
        coerce_to_messages([{"role": "human", "content": "x", "extra": 1}])
    with pytest.raises(TypeError, match=r"item 0 is a dict"):
        coerce_to_messages([{"content": "x"}])


def test_message_from_role_maps_roles_and_refuses_unknown_ones() -> None:
    """Roles map to message classes; an unknown role names itself and the allowed ones."""
    assert message_from_role("user", "hi") == HumanMessage("hi")
    assert message_from_role("assistant", "yo", name="bot") == AIMessage("yo", name="bot")
    assert message_from_role("system", "s") == SystemMessage("s")
    assert message_from_role("tool", "r", tool_call_id="c") == ToolMessage("r", tool_call_id="c")
    with pytest.raises(ValueError, match=r"unknown message role 'bot'; the roles are 'system', 'human'"):
        message_from_role("bot", "x")
    with pytest.raises(ValueError, match="only a 'tool' message"):
        message_from_role("human", "x", tool_call_id="c")


# -- prompt values ----------------------------------------------------------------------


def test_prompt_values_render_as_strings_and_messages() -> None:
    """String and chat prompt values convert both ways with LangChain's role prefixes."""
    text = StringPromptValue("tell me a joke")
    assert text.to_string() == "tell me a joke"
    assert text.to_messages() == [HumanMessage("tell me a joke")]
    chat = ChatPromptValue(
        [
            SystemMessage("be brief"),
            HumanMessage("hi"),
            AIMessage([{"type": "text", "text": "yo"}]),
            ToolMessage("42", tool_call_id="c"),
        ]
    )
    assert chat.to_string() == "System: be brief\nHuman: hi\nAI: yo\nTool: 42"
    assert chat.to_messages() == chat.messages
    assert chat.to_messages() is not chat.messages
    assert isinstance(chat, PromptValue)


def test_prompt_value_reprs_and_validation() -> None:
    """Prompt values have attrs reprs and refuse non-messages."""
    assert repr(StringPromptValue("x")) == "StringPromptValue(text='x')"
    assert (
        repr(ChatPromptValue((HumanMessage("hi"),)))
        == "ChatPromptValue(messages=[HumanMessage(content='hi')])"
    )
    assert ChatPromptValue((HumanMessage("hi"),)) == ChatPromptValue([HumanMessage("hi")])
    with pytest.raises(TypeError, match="item 0 is a str"):
        ChatPromptValue(["hi"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must be messages"):
        ChatPromptValue("hi")  # type: ignore[arg-type]


def test_from_text_equals_the_checked_constructor() -> None:
    """The fast text-chunk constructor builds exactly what the checked one does."""
    import attrs

    from nodes import AIMessageChunk

    fast = AIMessageChunk.from_text(" hi")
    slow = AIMessageChunk(content=" hi")
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert AIMessageChunk.from_text("x", "msg_1") == AIMessageChunk(content="x", id="msg_1")
    assert [f.name for f in attrs.fields(AIMessageChunk)] == [
        "content",
        "additional_kwargs",
        "response_metadata",
        "name",
        "id",
        "usage_metadata",
        "tool_call_chunks",
        "chunk_position",
    ]


# -- side by side with langchain-core ----------------------------------------------------------

# Pairs of metadata dicts covering every rule of langchain-core's merge_dicts: strings join
# (equal ids stay one), ints add (equal ones stay, index/created/timestamp: the later),
# dicts and lists merge, None gives way, and differing types, bools and floats raise.
_MERGE_CASES = [
    ({"a": "x"}, {"a": "y"}),
    ({"a": ""}, {"a": "y"}),
    ({"id": "m1"}, {"id": "m1"}),
    ({"model_provider": "anthropic"}, {"model_provider": "anthropic"}),
    ({"output_version": "v0"}, {"output_version": "v1"}),
    ({"index": "lc_1"}, {"index": "lc_2"}),
    ({"a": 1}, {"a": 1}),
    ({"a": 1}, {"a": 2}),
    ({"index": 1}, {"index": 2}),
    ({"created": 5}, {"created": 9}),
    ({"a": 1.5}, {"a": 1.5}),
    ({"a": 1.5}, {"a": 2.5}),
    ({"a": True}, {"a": True}),
    ({"a": True}, {"a": False}),
    ({"a": None}, {"a": 2}),
    ({"a": 2}, {"a": None}),
    ({"a": "x"}, {"a": 1}),
    ({"a": {"b": 1}}, {"a": 1}),
    ({"a": {"b": 1, "c": "p"}}, {"a": {"b": 2, "c": "q", "d": None}}),
    ({"a": [1]}, {"a": [2]}),
    ({"a": [{"index": 0, "type": "t", "x": "a"}]}, {"a": [{"index": 0, "type": "t", "x": "b"}]}),
    ({"a": [{"index": 0, "id": "p"}]}, {"a": [{"index": 0, "id": "q"}]}),
    ({"a": (1,)}, {"a": (2,)}),
    ({}, {"a": {"b": "c"}}),
]


def _merged(add: Any) -> Any:
    try:
        return add()
    except TypeError:
        return TypeError


@pytest.mark.parametrize(("left", "right"), _MERGE_CASES)
def test_metadata_merges_as_langchain_cores_merge_dicts(left: dict[str, Any], right: dict[str, Any]) -> None:
    """additional_kwargs and response_metadata of a chunk sum equal langchain-core's (or both raise TypeError)."""
    from langchain_core.messages import AIMessageChunk as LcChunk

    theirs = _merged(
        lambda: LcChunk(content="", additional_kwargs=left) + LcChunk(content="", additional_kwargs=right)
    )
    ours = _merged(
        lambda: AIMessageChunk("", additional_kwargs=left) + AIMessageChunk("", additional_kwargs=right)
    )
    if theirs is TypeError:
        assert ours is TypeError
    else:
        assert ours.additional_kwargs == theirs.additional_kwargs
    theirs_meta = _merged(
        lambda: LcChunk(content="", response_metadata=left) + LcChunk(content="", response_metadata=right)
    )
    ours_meta = _merged(
        lambda: AIMessageChunk("", response_metadata=left) + AIMessageChunk("", response_metadata=right)
    )
    assert (ours_meta is TypeError) == (theirs_meta is TypeError)
    if theirs_meta is not TypeError:
        assert ours_meta.response_metadata == theirs_meta.response_metadata


_lc_values = st.sampled_from(
    [None, "a", "b", 1, 2, {"k": "v"}, {"k": 3}, [1], [{"index": 0, "t": "x"}], 1.5, True]
)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.dictionaries(st.sampled_from(["a", "id", "index"]), _lc_values, max_size=2), max_size=5
    )
)
def test_metadata_left_fold_matches_langchain_core(values: list[dict[str, Any]]) -> None:
    """Summing chunks left to right gives langchain-core's metadata whatever the values (or both raise)."""
    import copy

    from langchain_core.messages import AIMessageChunk as LcChunk

    lc_chunks = [LcChunk(content="", response_metadata=copy.deepcopy(v)) for v in values] or [
        LcChunk(content="")
    ]
    ri_chunks = [AIMessageChunk("", response_metadata=copy.deepcopy(v)) for v in values] or [
        AIMessageChunk("")
    ]
    theirs = _merged(lambda: functools.reduce(operator.add, lc_chunks))
    ours = _merged(lambda: functools.reduce(operator.add, ri_chunks))
    bulk = _merged(lambda: AIMessageChunk.concat_chunks(ri_chunks))
    if theirs is TypeError:
        assert ours is TypeError and bulk is TypeError
    else:
        assert ours.response_metadata == theirs.response_metadata == bulk.response_metadata


def test_a_type_clash_in_metadata_names_the_key() -> None:
    """Adding chunks whose metadata holds a str and an int on one key raises TypeError naming the path."""
    left = AIMessageChunk("", response_metadata={"usage": {"tier": "standard"}})
    right = AIMessageChunk("", response_metadata={"usage": {"tier": 2}})
    with pytest.raises(
        TypeError, match=r"response_metadata\['usage'\]\['tier'\] is of type str in one chunk"
    ):
        left + right
    with pytest.raises(TypeError, match=r"additional_kwargs\['x'\] holds two different values of type float"):
        AIMessageChunk("", additional_kwargs={"x": 0.5}) + AIMessageChunk("", additional_kwargs={"x": 0.25})


@pytest.mark.parametrize(
    "ids",
    [
        ["lc_run--1", "msg_1"],
        ["msg_1", "lc_run--1"],
        ["lc_2", "lc_run--1", "msg_1"],
        ["lc_2", "lc_run--1"],
        ["lc_2", "lc_3"],
        ["run-x", "msg_1"],
        ["msg_2", "msg_1"],
        [None, "", "lc_run--1"],
        [None, None],
    ],
)
def test_the_sums_id_is_ranked_as_langchain_core_ranks_it(ids: list[str | None]) -> None:
    """A provider id beats a run id (lc_run-...), which beats another lc_ id; first of a rank wins."""
    from langchain_core.messages import AIMessageChunk as LcChunk

    theirs = functools.reduce(operator.add, [LcChunk(content="", id=i) for i in ids]).id
    chunks = [AIMessageChunk("", id=i) for i in ids]
    assert functools.reduce(operator.add, chunks).id == theirs
    assert AIMessageChunk.concat_chunks(chunks).id == theirs


def test_the_last_chunk_marks_the_sum_and_the_message_drops_the_mark() -> None:
    """chunk_position='last' on any chunk marks the sum (as langchain-core's); to_message() has no such field."""
    from langchain_core.messages import AIMessageChunk as LcChunk

    first, last = AIMessageChunk("a", id="m"), AIMessageChunk("b", id="m", chunk_position="last")
    assert (first + last).chunk_position == "last" == (last + first).chunk_position
    assert (first + first).chunk_position is None
    assert (LcChunk(content="a") + LcChunk(content="b", chunk_position="last")).chunk_position == "last"
    assert (first + last).to_message() == AIMessage("ab", id="m")
    assert repr(last) == "AIMessageChunk(content='b', id='m', chunk_position='last')"
    with pytest.raises(ValueError):
        AIMessageChunk("x", chunk_position="first")  # type: ignore[arg-type]


def test_list_content_takes_strings_and_blocks_and_text_joins_them_as_langchain_core() -> None:
    """Content items may be strings or blocks; .text joins strings and text blocks as langchain-core's .text."""
    from langchain_core.messages import HumanMessage as LcHuman

    content: list[Any] = ["a", {"type": "text", "text": "b"}, {"type": "image", "url": "u"}, "", "c"]
    assert HumanMessage(content).text == LcHuman(content=content).text == "abc"
    total = AIMessageChunk(["x ", {"type": "text", "text": "y"}]) + AIMessageChunk("z")
    assert total.content == [{"type": "text", "text": "x yz"}]
    assert total.text == "x yz"


async def test_every_chunk_of_a_scripted_reply_carries_its_run_id_and_the_last_is_marked() -> None:
    """ScriptedChatModel: each chunk's id is 'lc_run--<run id>' (langchain-core's form); only the last is marked."""
    from nodes import ScriptedChatModel

    events = [e async for e in ScriptedChatModel([["a", " b", " c"]]).astream_events("hi", version="v2")]
    chunks = [e["data"]["chunk"] for e in events if e["event"] == "on_chat_model_stream"]
    assert {chunk.id for chunk in chunks} == {f"lc_run--{events[0]['run_id']}"}
    assert [chunk.chunk_position for chunk in chunks] == [None, None, "last"]
    total = AIMessageChunk.concat_chunks(chunks)
    assert (total.content, total.id, total.chunk_position) == ("a b c", chunks[0].id, "last")


async def test_a_scripted_tool_call_reply_sums_to_parsed_calls_with_the_replys_id() -> None:
    """An AIMessage reply's id goes on every chunk; the summed chunks parse into its tool calls."""
    from nodes import ScriptedChatModel

    message = AIMessage("Looking.", id="msg_9", tool_calls=[ToolCall(name="f", args={"x": [1, 2]}, id="c1")])
    chunks = [chunk async for chunk in ScriptedChatModel([message]).astream("hi")]
    assert {chunk.id for chunk in chunks} == {"msg_9"}
    assert [chunk.chunk_position for chunk in chunks][-1] == "last"
    total = AIMessageChunk.concat_chunks(chunks)
    assert total.tool_calls == message.tool_calls and total.to_message() == message


_LC_DICTS = [
    {"role": "user", "content": "hi"},
    {"type": "human", "content": "hi"},
    {"role": "assistant", "content": "x"},
    {"type": "ai", "content": "x", "tool_calls": [{"name": "f", "args": {"a": 1}, "id": "1"}]},
    {"type": "system", "content": ["a", {"type": "text", "text": "b"}]},
    {"role": "tool", "content": "r", "tool_call_id": "1"},
    {"type": "tool", "content": "r", "tool_call_id": "1", "status": "error"},
    {"role": "user", "content": "hi", "name": "bob", "id": "m1"},
    {"role": "user", "content": "hi", "type": "human"},
]


@pytest.mark.parametrize("item", _LC_DICTS)
def test_message_dicts_coerce_as_langchain_cores(item: dict[str, Any]) -> None:
    """A message dict (role or type key) becomes the message langchain-core's convert_to_messages makes."""
    from langchain_core.messages import convert_to_messages

    (theirs,) = convert_to_messages([item])
    (ours,) = coerce_to_messages([item])
    assert ours.type == theirs.type
    assert ours.content == theirs.content and ours.name == theirs.name and ours.id == theirs.id
    if isinstance(ours, AIMessage):
        assert [(c.name, c.args, c.id) for c in ours.tool_calls] == [
            (c["name"], c["args"], c["id"]) for c in theirs.tool_calls
        ]
    if isinstance(ours, ToolMessage):
        assert (ours.tool_call_id, ours.status) == (theirs.tool_call_id, theirs.status)


@pytest.mark.parametrize(
    ("item", "error", "match"),
    [
        ({"content": "x"}, TypeError, "item 0 is a dict"),
        ({"role": "user"}, ValueError, r"item 0 is a message dict \('user'\) without 'content'"),
        ({"role": "wizard", "content": "x"}, ValueError, "unknown message role 'wizard'"),
        (
            {"role": "human", "content": "x", "type": "ai"},
            ValueError,
            "'role' 'human' and 'type' 'ai' disagree",
        ),
        ({"type": "text", "text": "hi"}, ValueError, "dict of type 'text', which is no message type"),
        (
            {"role": "user", "content": "x", "tool_calls": []},
            ValueError,
            "a 'user' message has no 'tool_calls'",
        ),
        ({"role": "user", "content": "x", "extra": 1}, ValueError, r"unsupported keys \['extra'\]"),
        ({"role": "user", "content": 5}, TypeError, "content that is a int"),
        ({"type": 3, "content": "x"}, TypeError, "role that is a int"),
    ],
)
def test_bad_message_dicts_name_the_problem(item: dict[str, Any], error: type[Exception], match: str) -> None:
    """A dict that is no message fails with the item's position and what is wrong with it."""
    with pytest.raises(error, match=match):
        coerce_to_messages([item])
