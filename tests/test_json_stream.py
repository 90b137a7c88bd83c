"""The incremental JSON parser and the comma-separated list splitter."""

from __future__ import annotations

import itertools
import json
import pickle
import re
import sys
from collections.abc import Iterable
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes import JsonOutputParser, ScriptedChatModel
from nodes._exceptions import OutputParserException
from nodes._json_stream import MAX_DEPTH, IncrementalJsonParser, IncrementalListSplitter

_NUMBER_PREFIX = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _dump(value: Any) -> str:
    # Strict equality: json.dumps tells 1, 1.0 and True apart where == does not.
    return json.dumps(value)


def _stream(pieces: Iterable[str]) -> tuple[IncrementalJsonParser, list[Any]]:
    parser = IncrementalJsonParser()
    snapshots = [parser.value for piece in pieces if parser.feed(piece)]
    return parser, snapshots


def _number_value_dump(text: str) -> str:
    return _dump(float(text) if any(c in text for c in ".eE") else int(text))


def _number_prefixes(document: str) -> dict[str, set[str]]:
    """For each number written in ``document``: its value, and the values of its valid prefixes."""
    prefixes: dict[str, set[str]] = {}
    for token in re.findall(r"-?[0-9][-+.eE0-9]*", document):
        if _NUMBER_PREFIX.fullmatch(token):
            shown = prefixes.setdefault(_number_value_dump(token), set())
            for end in range(1, len(token) + 1):
                if _NUMBER_PREFIX.fullmatch(token[:end]):
                    shown.add(_number_value_dump(token[:end]))
    return prefixes


def _assert_tree_prefix(partial: Any, final: Any, numbers: dict[str, set[str]]) -> None:
    """``partial`` is ``final`` cut short along its last branch, as a snapshot must be.

    ``numbers`` maps each number in the document to the values its partial text may show.
    """
    if isinstance(final, dict):
        assert isinstance(partial, dict)
        keys = list(partial)
        assert keys == list(final)[: len(keys)]
        for key in keys[:-1]:
            assert _dump(partial[key]) == _dump(final[key])
        if keys:
            _assert_tree_prefix(partial[keys[-1]], final[keys[-1]], numbers)
    elif isinstance(final, list):
        assert isinstance(partial, list)
        assert len(partial) <= len(final)
        for index in range(len(partial) - 1):
            assert _dump(partial[index]) == _dump(final[index])
        if partial:
            _assert_tree_prefix(partial[-1], final[len(partial) - 1], numbers)
    elif isinstance(final, str):
        assert isinstance(partial, str)
        assert final.startswith(partial)
    elif isinstance(final, bool) or final is None:
        # Literals are only shown once complete.
        assert partial is final
    else:
        assert type(partial) in (int, float)
        assert _dump(partial) in numbers[_dump(final)]


def _check_stream(text: str, cuts: Iterable[int], expected: Any) -> list[Any]:
    """Feed ``text`` cut at ``cuts`` and check every snapshot and the final value."""
    bounds = [0, *sorted(set(cuts)), len(text)]
    pieces = [text[start:end] for start, end in itertools.pairwise(bounds)]
    numbers = _number_prefixes(text)
    parser = IncrementalJsonParser()
    snapshots: list[Any] = []
    dumped: list[str] = []
    fed = ""
    for piece in pieces:
        changed = parser.feed(piece)
        fed += piece
        if changed:
            snapshot = parser.value
            assert not dumped or _dump(snapshot) != dumped[-1]
            snapshots.append(snapshot)
            dumped.append(_dump(snapshot))
            _assert_tree_prefix(snapshot, expected, numbers)
        # Cutting the text elsewhere must not change what the parser shows.
        whole = IncrementalJsonParser()
        whole.feed(fed)
        assert whole.has_value == parser.has_value
        if whole.has_value:
            assert _dump(whole.value) == _dump(parser.value)
    final = parser.finish()
    assert _dump(final) == _dump(expected)
    # Snapshots handed out earlier were never modified afterwards.
    assert [_dump(snapshot) for snapshot in snapshots] == dumped
    return snapshots


_COUNTRIES = {
    "countries": [
        {"name": "France", "population": 67391582},
        {"name": "Spain", "population": 47351567},
        {"name": "Japan", "population": 125584838},
    ]
}

# As a chat model tokenizes the indented document.
_COUNTRY_TOKENS = [
    "{\n", " ", ' "', "countries", '":', " [\n",
    "   ", " {\n", "     ", ' "', "name", '":', ' "', "France", '",\n',
    "     ", ' "', "population", '":', " ", "67", "39", "15", "82", "\n", "   ", " },\n",
    "   ", " {\n", "     ", ' "', "name", '":', ' "', "Sp", "ain", '",\n',
    "     ", ' "', "population", '":', " ", "473", "51", "567", "\n", "   ", " },\n",
    "   ", " {\n", "     ", ' "', "name", '":', ' "', "Japan", '",\n',
    "     ", ' "', "population", '":', " ", "125", "584", "838", "\n", "   ", " }\n",
    " ", " ]\n", "}",
]  # fmt: skip


def test_countries_stream_matches_the_guide() -> None:
    """The guide's countries document streams as the exact sequence of growing snapshots."""
    assert "".join(_COUNTRY_TOKENS) == json.dumps(_COUNTRIES, indent=2)
    france = {"name": "France", "population": 67391582}
    spain = {"name": "Spain", "population": 47351567}
    expected = [
        {},
        {"countries": []},
        {"countries": [{}]},
        {"countries": [{"name": ""}]},
        {"countries": [{"name": "France"}]},
        {"countries": [{"name": "France", "population": 67}]},
        {"countries": [{"name": "France", "population": 6739}]},
        {"countries": [{"name": "France", "population": 673915}]},
        {"countries": [france]},
        {"countries": [france, {}]},
        {"countries": [france, {"name": ""}]},
        {"countries": [france, {"name": "Sp"}]},
        {"countries": [france, {"name": "Spain"}]},
        {"countries": [france, {"name": "Spain", "population": 473}]},
        {"countries": [france, {"name": "Spain", "population": 47351}]},
        {"countries": [france, spain]},
        {"countries": [france, spain, {}]},
        {"countries": [france, spain, {"name": ""}]},
        {"countries": [france, spain, {"name": "Japan"}]},
        {"countries": [france, spain, {"name": "Japan", "population": 125}]},
        {"countries": [france, spain, {"name": "Japan", "population": 125584}]},
        _COUNTRIES,
    ]
    parser, snapshots = _stream(_COUNTRY_TOKENS)
    assert snapshots == expected
    assert parser.finish() == _COUNTRIES


def test_snapshots_share_completed_subtrees_and_stay_unchanged() -> None:
    """Later snapshots reuse completed members by identity and never alter earlier snapshots."""
    _, snapshots = _stream(_COUNTRY_TOKENS)
    first_complete = next(
        i for i, s in enumerate(snapshots) if s == {"countries": [_COUNTRIES["countries"][0]]}
    )
    france = snapshots[first_complete + 1]["countries"][0]
    for later in snapshots[first_complete + 1 :]:
        assert later["countries"][0] is france
    assert snapshots[0] == {}
    assert snapshots[1] == {"countries": []}
    assert snapshots[2] == {"countries": [{}]}
    assert len({id(snapshot) for snapshot in snapshots}) == len(snapshots)


def _containers(value: Any) -> list[Any]:
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict | list):
            found.append(item)
            stack.extend(item.values() if isinstance(item, dict) else item)
    return found


def test_the_final_value_shares_no_list_or_dict_with_any_snapshot() -> None:
    """finish() returns containers no snapshot holds, so changing a snapshot cannot change the final value."""
    parser, snapshots = _stream(_COUNTRY_TOKENS)
    assert parser.is_complete and snapshots[-1] == _COUNTRIES
    for snapshot in snapshots:
        for container in _containers(snapshot):
            if isinstance(container, list):
                container.append("changed")
            else:
                container["changed"] = True
    final = parser.finish()
    assert final == _COUNTRIES and parser.result is final
    shown = {id(container) for snapshot in snapshots for container in _containers(snapshot)}
    assert not shown & {id(container) for container in _containers(final)}


def test_feed_reports_only_visible_changes() -> None:
    """feed returns False for pieces that change nothing visible: keys, colons, whitespace, closers."""
    parser = IncrementalJsonParser()
    assert not parser.has_value
    before = parser.value
    assert before is None
    results = [parser.feed(piece) for piece in ['{"na', 'me"', " : ", '"x', '"', " }", "\n"]]
    assert results == [True, False, False, True, False, False, False]
    assert parser.value == {"name": "x"}
    assert parser.is_complete


def test_partial_keys_are_hidden_and_partial_strings_shown() -> None:
    """An open key or a key without a started value is hidden; a started value string is shown."""
    parser = IncrementalJsonParser()
    parser.feed('{"na')
    assert parser.value == {}
    parser.feed('me":')
    assert parser.value == {}
    parser.feed(' "Fr')
    assert parser.value == {"name": "Fr"}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("[-", []),
        ("[1", [1]),
        ("[1.", [1]),
        ("[1.5", [1.5]),
        ("[1e", [1]),
        ("[1e+", [1]),
        ("[1.5e+3", [1500.0]),
        ("[-0", [0]),
        ('{"a": -', {}),
        ('{"a": 12', {"a": 12}),
    ],
)
def test_partial_number_shows_its_longest_valid_prefix(text: str, shown: Any) -> None:
    """A partial number shows its longest valid prefix, and is omitted while it has none."""
    parser = IncrementalJsonParser()
    parser.feed(text)
    assert _dump(parser.value) == _dump(shown)


def test_number_growth_reports_changes_only_when_the_shown_number_changes() -> None:
    """'1' -> '1.' shows nothing new; '1.5' does, and so does the exponent once it has digits."""
    parser = IncrementalJsonParser()
    assert [parser.feed(p) for p in ["[1", ".", "5", "e", "+", "2", "]"]] == [
        True, False, True, False, False, True, False,
    ]  # fmt: skip
    assert parser.finish() == [150.0]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("[t", []),
        ("[tr", []),
        ('{"a": nul', {}),
        ('{"a": f', {}),
        ("[1, true", [1, True]),
        ('{"a": null', {"a": None}),
    ],
)
def test_partial_literals_are_omitted_until_complete(text: str, shown: Any) -> None:
    """true/false/null appear, with their key or slot, only once their last letter arrives."""
    parser = IncrementalJsonParser()
    parser.feed(text)
    assert _dump(parser.value) == _dump(shown)


def test_dangling_escapes_are_held_back() -> None:
    """A partial string stops before an escape cut off by the end of a piece until it completes."""
    parser = IncrementalJsonParser()
    parser.feed('{"a": "ab\\')
    assert parser.value == {"a": "ab"}
    assert parser.feed("n") is True
    assert parser.value == {"a": "ab\n"}
    assert parser.feed("c\\u00") is True
    assert parser.value == {"a": "ab\nc"}
    assert parser.feed("e") is False
    assert parser.feed('9"}') is True
    assert parser.finish() == {"a": "ab\nc\u00e9"}


def test_surrogate_pair_split_across_pieces_is_one_character() -> None:
    """A \\ud83d\\ude00 pair cut anywhere decodes to one astral character, never a lone half."""
    text = '["x\\ud83d\\ude00y"]'
    for cut in range(len(text) + 1):
        parser = IncrementalJsonParser()
        parser.feed(text[:cut])
        if parser.has_value and parser.value:
            assert "\ud83d" not in parser.value[0]
        parser.feed(text[cut:])
        assert parser.finish() == ["x\U0001f600y"]


def test_lone_surrogate_escapes_decode_as_json_loads_does() -> None:
    """Lone or mismatched surrogate escapes are kept as lone surrogates, like json.loads."""
    text = '["\\ud83d", "\\ude00", "\\ud83dA", "\\ud83d\\u0041", "\\ud83d\\ud83d\\ude00", "\\ud83d\\n"]'
    expected = json.loads(text)
    for cut in range(len(text) + 1):
        _check_stream(text, [cut], expected)


_ESCAPE_DOCUMENTS = [
    '{"s": "a\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00 end", "n": -12.5e+3,'
    ' "m": [0, -0, 1E-2, 3.25, -7, 10e5, true, false, null], "u": "\\u20AC\\u0041"}',
    json.dumps({"k\u00e9y": ["\U0001f600 \u2603", "tab\there", {"q": '"}]{[,:'}], "z": 1.5e-7}),
    json.dumps({"k\u00e9y": ["\U0001f600 \u2603", "tab\there", {"q": '"}]{[,:'}]}, ensure_ascii=False),
    ' \n [ { } , [ ] , "" , { "a" : [ [ ] ] } , -0.0 , 0 ] \n',
]


@pytest.mark.parametrize("text", _ESCAPE_DOCUMENTS)
def test_split_at_every_position(text: str) -> None:
    """Cut at every position, a document with escapes and numbers parses to json.loads' value."""
    expected = json.loads(text)
    for cut in range(len(text) + 1):
        _check_stream(text, [cut], expected)


def test_one_character_at_a_time() -> None:
    """Fed one character per piece, every document parses with valid growing snapshots."""
    for text in _ESCAPE_DOCUMENTS:
        _check_stream(text, range(len(text)), json.loads(text))


def test_split_at_every_pair_of_positions() -> None:
    """Cut in three at every pair of positions, a short escaped document parses correctly."""
    text = '{"a": "\\ud83d\\ude00\\u00e9\\"", "b": [-1.5e+2, true]}'
    expected = json.loads(text)
    for first in range(len(text) + 1):
        for second in range(first, len(text) + 1):
            _check_stream(text, [first, second], expected)


def test_brackets_inside_strings_are_text() -> None:
    """Braces, brackets, commas and colons inside strings do not affect structure."""
    text = '{"a": "}]{[,:", "b": ["]", "}"]}'
    _, snapshots = _stream(text)
    assert snapshots[-1] == json.loads(text)


_text = st.text(
    alphabet=st.characters() | st.sampled_from('"\\/\b\f\n\r\t\x00\x1f~{}[],:\U0001f600\U0010ffff'),
    max_size=10,
)
_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json_values = st.recursive(
    _scalar,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=15,
)
_dump_options = st.sampled_from(
    [
        {},
        {"ensure_ascii": False},
        {"indent": 2},
        {"indent": 2, "ensure_ascii": False},
        {"separators": (",", ":")},
    ]
)


@settings(max_examples=200, deadline=None)
@given(value=_json_values, options=_dump_options, data=st.data())
def test_random_documents_split_anywhere(value: Any, options: dict[str, Any], data: st.DataObject) -> None:
    """Any JSON document cut at random points parses to json.loads' value via valid prefix snapshots."""
    text = json.dumps(value, **options)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=8))
    snapshots = _check_stream(text, cuts, json.loads(text))
    for snapshot in snapshots:
        json.dumps(snapshot)


@settings(max_examples=50, deadline=None)
@given(value=st.dictionaries(_text, _json_values, max_size=3), data=st.data())
def test_random_documents_in_a_fence_after_prose(value: dict[str, Any], data: st.DataObject) -> None:
    """Prose and a ```json fence around a document are skipped wherever the text is cut."""
    text = f"Sure! Here is the JSON you asked for:\n\n```json\n{json.dumps(value, indent=2)}\n```\nAnything else?"
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=8))
    _check_stream(text, cuts, value)


def test_prose_and_fence_are_skipped() -> None:
    """Text before the document and a ```json fence around it are not part of the value."""
    text = 'Here you go:\n```json\n{"a": [1, 2]}\n```\nHope this helps! {"b": 2}'
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    parser, snapshots = _stream(pieces)
    assert snapshots[0] == {}
    assert snapshots[-1] == {"a": [1, 2]}
    assert parser.finish() == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```\n[1]\n```", [1]),
        ('```json\n"abc"\n```', "abc"),
        ('  "abc" and then some', "abc"),
        ("```json\n42\n```", 42),
        ("-12.5e+3", -12500.0),
        ("true", True),
        ("null\n", None),
        ('1. First item {"a": 1}', {"a": 1}),
        ("the answer: [true]", [True]),
        ("2024-05-01 report: {}", {}),
        ("``not a fence [3]", [3]),
    ],
)
def test_where_the_document_starts(text: str, expected: Any) -> None:
    """Top-level scalars count only at the start; anything else is prose up to the first { or [."""
    for cut in range(len(text) + 1):
        parser = IncrementalJsonParser()
        parser.feed(text[:cut])
        parser.feed(text[cut:])
        assert _dump(parser.finish()) == _dump(expected)


def test_top_level_number_is_shown_only_when_complete() -> None:
    """A top-level number has no value until a non-number character or the end of the stream."""
    parser = IncrementalJsonParser()
    assert parser.feed("12") is False
    assert not parser.has_value
    assert parser.finish() == 12
    assert parser.value == 12
    ended = IncrementalJsonParser()
    ended.feed("12")
    assert ended.feed(" ") is True
    assert ended.value == 12


def test_text_after_the_document_is_ignored() -> None:
    """Once the top-level value is complete, further pieces change nothing."""
    parser = IncrementalJsonParser()
    assert parser.feed('{"a": 1}') is True
    assert parser.feed("\n``` and {more} [stuff") is False
    assert parser.value == {"a": 1}
    assert parser.finish() == {"a": 1}


def test_deep_nesting_needs_no_recursion() -> None:
    """Nesting far beyond the recursion limit parses with snapshots and a final value, when allowed."""
    depth = 20_000
    parser = IncrementalJsonParser(max_depth=depth + 1)
    parser.feed("[" * depth)
    snapshot = parser.value
    parser.feed('{"k": "v"}')
    parser.feed("]" * depth)
    result = parser.finish()
    node = result
    for _ in range(depth - 1):
        assert len(node) == 1
        node = node[0]
    assert node == [{"k": "v"}]
    for _ in range(depth - 1):
        snapshot = snapshot[0]
    assert snapshot == []


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_nesting_up_to_the_default_limit_parses() -> None:
    """A document nested exactly MAX_DEPTH (128) levels deep parses."""
    parser = IncrementalJsonParser()
    parser.feed(_deep(MAX_DEPTH))
    node = parser.finish()
    for _ in range(MAX_DEPTH - 1):
        node = node[0]
    assert node == []


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 6_000])
def test_nesting_past_the_limit_raises_naming_depth_and_limit(depth: int) -> None:
    """Whole input nested past max_depth: feed stops quietly, finish raises OutputParserException."""
    parser = IncrementalJsonParser()
    assert parser.feed(_deep(depth)) is True
    snapshot = parser.value
    for _ in range(MAX_DEPTH - 1):
        snapshot = snapshot[0]
    assert snapshot == []  # what was parsed before the error stops at the limit
    message = f"nesting depth {MAX_DEPTH + 1} exceeds the limit of {MAX_DEPTH} levels (max_depth)"
    with pytest.raises(OutputParserException, match=re.escape(message)) as caught:
        parser.finish()
    assert caught.value.text == _deep(depth)


def test_nesting_limit_counts_objects_and_arrays_in_streamed_pieces() -> None:
    """Streamed one character at a time, objects and arrays count towards max_depth alike."""
    parser = IncrementalJsonParser(max_depth=3)
    for char in '{"a": [{"b": 1}]}':
        parser.feed(char)
    assert parser.finish() == {"a": [{"b": 1}]}
    parser = IncrementalJsonParser(max_depth=3)
    for char in '{"a": [{"b": [1]}]}':
        parser.feed(char)
    with pytest.raises(OutputParserException, match="nesting depth 4 exceeds the limit of 3 levels"):
        parser.finish()


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "3", None])
def test_max_depth_must_be_a_positive_int(bad: Any) -> None:
    """A bad max_depth is refused at once, by the parser and by JsonOutputParser."""
    with pytest.raises(ValueError, match="max_depth must be a positive int"):
        IncrementalJsonParser(max_depth=bad)
    with pytest.raises(ValueError, match="max_depth must be a positive int"):
        JsonOutputParser(max_depth=bad)


def _deep_chain(depth: int, **options: Any) -> Any:
    text = _deep(depth)
    tokens = [text[i : i + 7] for i in range(0, len(text), 7)]
    return ScriptedChatModel(replies=[tokens]) | JsonOutputParser(**options)


@pytest.mark.parametrize("diff", [False, True])
async def test_streamed_deep_document_raises_output_parser_exception(diff: bool) -> None:
    """A streamed document nested 6,000 deep ends in OutputParserException, not RecursionError."""
    with pytest.raises(OutputParserException, match="nesting depth 129 exceeds the limit of 128"):
        await _deep_chain(6_000, diff=diff).ainvoke("go")
    chunks: list[Any] = []
    with pytest.raises(OutputParserException, match="nesting depth 129 exceeds the limit of 128"):
        async with _deep_chain(6_000, diff=diff).astream("go") as stream:
            async for chunk in stream:
                chunks.append(chunk)
    assert chunks  # the snapshots up to the limit came first


async def test_whole_deep_document_raises_output_parser_exception() -> None:
    """A deep document given whole to JsonOutputParser raises OutputParserException, not RecursionError."""
    with pytest.raises(OutputParserException, match="nesting depth 129 exceeds the limit of 128"):
        await JsonOutputParser().ainvoke(_deep(6_000))


async def test_a_raised_limit_parses_deep_documents_without_recursion() -> None:
    """With max_depth raised, a document nested 6,000 deep streams and collects without recursing."""
    value = await _deep_chain(6_000, max_depth=6_000).ainvoke("go")
    depth = 1
    while value:
        value = value[0]
        depth += 1
    assert depth == 6_000
    assert repr(JsonOutputParser(max_depth=6_000)) == "JsonOutputParser(max_depth=6000)"


@pytest.mark.parametrize("text", ["2024-05-01", "- none", "the end", "```json\n```"])
def test_prose_that_starts_like_a_scalar_is_not_json(text: str) -> None:
    """Text that only began like a top-level number or literal has no JSON value."""
    parser = IncrementalJsonParser()
    parser.feed(text)
    with pytest.raises(OutputParserException, match="No JSON value"):
        parser.finish()


def test_no_json_raises_with_the_text() -> None:
    """Text with no JSON value fails at finish with a clear message and the whole text."""
    parser = IncrementalJsonParser()
    for piece in ["I'm sorry, ", "I cannot help with that."]:
        assert parser.feed(piece) is False
    with pytest.raises(OutputParserException, match="No JSON value") as info:
        parser.finish()
    assert info.value.text == "I'm sorry, I cannot help with that."
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "text", ['{"a": [1, 2', '{"a": "unfinished', '["x", tru', "[1.", '{"a"', "[[]", "-", "1e+", "nul"]
)
def test_truncated_document_raises(text: str) -> None:
    """A stream that ends inside the JSON document is an error, not a partial answer."""
    parser = IncrementalJsonParser()
    parser.feed(text)
    with pytest.raises(OutputParserException, match="ended inside a JSON document") as info:
        parser.finish()
    assert info.value.text == text


@pytest.mark.parametrize(
    "text",
    [
        '{"a" 1}',
        "[1,]",
        '{"a": 1,}',
        "[01]",
        "[1.e3]",
        '["\\x"]',
        '["\\u12g4"]',
        "[nul]",
        "{'a': 1}",
        "[1 2]",
    ],
)
def test_syntax_errors_raise_at_finish_with_the_text(text: str) -> None:
    """Malformed JSON stops the parser, keeps the last snapshot, and fails at finish."""
    parser = IncrementalJsonParser()
    parser.feed(text)
    before = parser.value
    assert parser.feed(" more") is False
    assert parser.value is before
    with pytest.raises(OutputParserException, match="Invalid JSON") as info:
        parser.finish()
    assert info.value.text == text + " more"
    assert "at character" in str(info.value)


def test_exception_pickles_with_its_text() -> None:
    """OutputParserException survives pickling with its message and text."""
    error = OutputParserException("bad output", text="the text")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, OutputParserException)
    assert str(copy) == "bad output"
    assert copy.text == "the text"


def test_feed_after_finish_is_refused() -> None:
    """A finished parser refuses more text."""
    parser = IncrementalJsonParser()
    parser.feed("[]")
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed("[]")


def _records_document(count: int) -> str:
    records = [
        {"id": i, "name": f"item {i}", "score": i * 1.25, "ok": i % 2 == 0, "note": None, "tags": ["a", "b"]}
        for i in range(count)
    ]
    return json.dumps({"results": records}, indent=2)


def _python_lines_executed(text: str) -> int:
    events = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal events
        events += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        parser = IncrementalJsonParser()
        for start in range(0, len(text), 4):
            if parser.feed(text[start : start + 4]):
                _ = parser.value
        parser.finish()
    finally:
        sys.settrace(previous)
    return events


def test_python_work_grows_linearly_with_the_document() -> None:
    """Counted in executed Python lines (not time), eight times the text costs about eight times the work."""
    small = _records_document(20)
    large = _records_document(160)
    ratio = _python_lines_executed(large) / _python_lines_executed(small)
    size_ratio = len(large) / len(small)
    assert ratio < size_ratio * 1.1


def test_list_splitter_emits_items_as_soon_as_complete() -> None:
    """Each item comes out with the piece holding the comma after it; the last at finish."""
    splitter = IncrementalListSplitter()
    assert splitter.feed("vanilla") == []
    assert splitter.feed(", choc") == ["vanilla"]
    assert splitter.feed("olate, mi") == ["chocolate"]
    assert splitter.feed("nt,straw,berry ") == ["mint", "straw"]
    assert splitter.feed("") == []
    assert splitter.finish() == ["berry"]


def test_list_splitter_drops_empty_items() -> None:
    """Blank items between commas and a trailing comma produce nothing."""
    splitter = IncrementalListSplitter()
    assert splitter.feed(" a, ,b,, ") == ["a", "b"]
    assert splitter.feed("c,") == ["c"]
    assert splitter.finish() == []


@settings(max_examples=100, deadline=None)
@given(
    items=st.lists(st.text(alphabet="abc xyz-", min_size=1).map(str.strip).filter(bool), max_size=8),
    data=st.data(),
)
def test_list_splitter_any_split(items: list[str], data: st.DataObject) -> None:
    """However the text is cut, the splitter yields exactly the list's items in order."""
    text = ", ".join(items)
    cuts = sorted(set(data.draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=6))))
    bounds = [0, *cuts, len(text)]
    splitter = IncrementalListSplitter()
    seen: list[str] = []
    for start, end in itertools.pairwise(bounds):
        seen.extend(splitter.feed(text[start:end]))
    seen.extend(splitter.finish())
    assert seen == items
