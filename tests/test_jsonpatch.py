"""JSON Patch operations between snapshots, and applying them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes._json_stream import IncrementalJsonParser
from nodes._jsonpatch import JsonPatchError, apply_patch, json_patch_ops


def _dump(value: Any) -> str:
    return json.dumps(value)


def _snapshots(text: str, step: int) -> list[Any]:
    parser = IncrementalJsonParser()
    return [parser.value for start in range(0, len(text), step) if parser.feed(text[start : start + step])]


_DOCUMENT = json.dumps(
    {
        "countries": [
            {"name": "France", "population": 67391582, "eu": True, "tags": ["wine", "cheese"]},
            {"name": "Spain", "population": 47351567, "eu": True, "capital": {"name": "Madrid"}},
        ],
        "source/~note": None,
    },
    indent=2,
)


def test_patches_between_snapshots_rebuild_every_snapshot() -> None:
    """Applying the ops between consecutive snapshots, in place, reproduces each snapshot in turn."""
    snapshots = _snapshots(_DOCUMENT, 3)
    state: Any = None
    previous: Any = None
    for snapshot in snapshots:
        state = apply_patch(state, json_patch_ops(previous, snapshot), in_place=True)
        assert _dump(state) == _dump(snapshot)
        previous = snapshot
    assert state == json.loads(_DOCUMENT)


def test_patching_never_touches_the_snapshots() -> None:
    """Keeping a document patched in place leaves the snapshots the ops came from as they were."""
    snapshots = _snapshots(_DOCUMENT, 2)
    dumped = [_dump(snapshot) for snapshot in snapshots]
    state: Any = None
    previous: Any = None
    for snapshot in snapshots:
        state = apply_patch(state, json_patch_ops(previous, snapshot), in_place=True)
        previous = snapshot
    assert [_dump(snapshot) for snapshot in snapshots] == dumped


def test_growing_string_is_one_replace_of_the_leaf() -> None:
    """A string that grew is a single replace at its own path."""
    old = {"countries": [{"name": "Fr"}]}
    new = {"countries": [{"name": "France"}]}
    assert json_patch_ops(old, new) == [{"op": "replace", "path": "/countries/0/name", "value": "France"}]


def test_new_items_and_keys_are_adds() -> None:
    """New array items get an add at their index and new members an add at their key."""
    first = {"name": "France", "population": 67391582}
    old = {"countries": [first]}
    new = {"countries": [first, {}], "total": 1}
    assert json_patch_ops(old, new) == [
        {"op": "add", "path": "/countries/1", "value": {}},
        {"op": "add", "path": "/total", "value": 1},
    ]
    assert json_patch_ops([1], [1, 2, 3]) == [
        {"op": "add", "path": "/1", "value": 2},
        {"op": "add", "path": "/2", "value": 3},
    ]


def test_removals_come_from_the_end() -> None:
    """A shorter array loses its last items highest index first; a missing member is removed."""
    assert json_patch_ops([1, 2, 3], [1]) == [{"op": "remove", "path": "/2"}, {"op": "remove", "path": "/1"}]
    assert json_patch_ops({"a": 1, "b": 2}, {"b": 2}) == [{"op": "remove", "path": "/a"}]
    assert apply_patch([1, 2, 3], json_patch_ops([1, 2, 3], [1])) == [1]


def test_keys_are_escaped_as_json_pointers() -> None:
    """'~' and '/' in keys become '~0' and '~1' in paths, and apply back to the same keys."""
    old: dict[str, Any] = {"a/b": {}}
    new = {"a/b": {"c~d": 1}, "~1": 2}
    ops = json_patch_ops(old, new)
    assert ops == [
        {"op": "add", "path": "/a~1b/c~0d", "value": 1},
        {"op": "add", "path": "/~01", "value": 2},
    ]
    assert apply_patch(old, ops) == new


def test_type_changes_are_replaces() -> None:
    """1, 1.0 and True are different JSON values, as are a list and a dict."""
    assert json_patch_ops([1], [1.0]) == [{"op": "replace", "path": "/0", "value": 1.0}]
    assert json_patch_ops([1], [True]) == [{"op": "replace", "path": "/0", "value": True}]
    assert json_patch_ops({"a": []}, {"a": {}}) == [{"op": "replace", "path": "/a", "value": {}}]
    assert json_patch_ops(None, {}) == [{"op": "replace", "path": "", "value": {}}]


def test_equal_values_need_no_ops() -> None:
    """Equal or identical values give no operations."""
    shared = {"a": [1, {"b": "c"}]}
    assert json_patch_ops(shared, shared) == []
    assert json_patch_ops({"a": [1, {"b": "c"}]}, {"a": [1, {"b": "c"}]}) == []


def test_path_prefix_is_prepended() -> None:
    """The path argument places the diff inside a larger document."""
    assert json_patch_ops({"a": "x"}, {"a": "xy"}, path="/logs/parser/final_output") == [
        {"op": "replace", "path": "/logs/parser/final_output/a", "value": "xy"}
    ]


def test_apply_copies_the_document_unless_in_place() -> None:
    """By default the input document is left alone; in_place modifies and returns it."""
    document = {"a": [1]}
    patched = apply_patch(document, [{"op": "add", "path": "/a/-", "value": 2}])
    assert patched == {"a": [1, 2]}
    assert document == {"a": [1]}
    same = apply_patch(document, [{"op": "add", "path": "/a/0", "value": 0}], in_place=True)
    assert same is document
    assert document == {"a": [0, 1]}


def test_apply_copies_operation_values() -> None:
    """Values are copied into the document, so later ops do not modify the op's own objects."""
    value: dict[str, Any] = {"items": []}
    ops: list[dict[str, Any]] = [
        {"op": "add", "path": "/x", "value": value},
        {"op": "add", "path": "/x/items/0", "value": 1},
    ]
    assert apply_patch({}, ops) == {"x": {"items": [1]}}
    assert value == {"items": []}


@pytest.mark.parametrize(
    ("document", "op"),
    [
        ({}, {"op": "move", "from": "/a", "path": "/b"}),
        ({}, {"op": "add", "value": 1}),
        ({}, {"op": "add", "path": "/a"}),
        ({}, {"op": "add", "path": "a", "value": 1}),
        ({}, {"op": "replace", "path": "/a", "value": 1}),
        ({}, {"op": "remove", "path": "/a"}),
        ({}, {"op": "remove", "path": ""}),
        ({}, {"op": "add", "path": "/a/b", "value": 1}),
        ([], {"op": "add", "path": "/1", "value": 1}),
        ([1], {"op": "replace", "path": "/1", "value": 1}),
        ([1], {"op": "remove", "path": "/-"}),
        ([1], {"op": "add", "path": "/01", "value": 1}),
        ({"a": 1}, {"op": "add", "path": "/a/b", "value": 1}),
    ],
)
def test_bad_operations_raise(document: Any, op: dict[str, Any]) -> None:
    """Malformed or unsupported operations and missing locations raise JsonPatchError."""
    with pytest.raises(JsonPatchError):
        apply_patch(document, [op])


def test_deep_documents_need_no_recursion() -> None:
    """Diffing and patching far beyond the recursion limit works."""
    depth = 5_000
    old: Any = []
    new: Any = ["leaf"]
    for _ in range(depth):
        old, new = [old], [new]
    ops = json_patch_ops(old, new)
    assert ops == [{"op": "add", "path": "/0" * depth + "/0", "value": "leaf"}]
    patched = apply_patch(old, ops)
    for _ in range(depth):
        patched = patched[0]
    assert patched == ["leaf"]
    assert apply_patch(None, [{"op": "replace", "path": "", "value": new}]) is not new


_text = st.text(alphabet=st.sampled_from("ab~/é\U0001f600 "), max_size=4)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2, allow_nan=False) | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(old=_json_values, new=_json_values)
def test_any_two_values_round_trip(old: Any, new: Any) -> None:
    """Applying json_patch_ops(old, new) to old gives new (up to key order), and leaves old unchanged."""
    before = _dump(old)
    # JSON Patch cannot order an object's members: an added key goes last.
    patched = apply_patch(old, json_patch_ops(old, new))
    assert json.dumps(patched, sort_keys=True) == json.dumps(new, sort_keys=True)
    assert _dump(old) == before


@settings(max_examples=100, deadline=None)
@given(value=_json_values, step=st.integers(min_value=1, max_value=7))
def test_streamed_snapshots_round_trip(value: Any, step: int) -> None:
    """Patches between the parser's snapshots of any document rebuild the final value."""
    text = json.dumps({"v": value})
    state: Any = None
    previous: Any = None
    for snapshot in _snapshots(text, step):
        state = apply_patch(state, json_patch_ops(previous, snapshot), in_place=True)
        previous = snapshot
    assert _dump(state) == text
