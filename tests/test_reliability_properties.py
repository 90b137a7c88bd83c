"""Property-based: random chain shapes against a plain sequential reference evaluation.

Chains are drawn from sequences, parallel steps, async generators over the input stream,
sync and async functions (aggregates), passthrough and assign, typed so that every step
gets the kind of value it needs: text (``S``) or a dict of texts (``D``). The reference
(``evaluate``) computes each step's whole output from its whole input, one step after the
other. Generators map each chunk with a per-character function, so that mapping the
chunks and adding them up gives the same text as mapping the whole text: whatever the
chunking, the engine must then agree with the reference. For every drawn chain and
input, on both backends, ``ainvoke``, the chunks of ``astream`` added up and the root's
end event of ``astream_events`` equal the reference, and the event stream passes
``check_event_order``.

Assign keys are always new here; what assign does to an existing key is tested on its own
(``test_assign_overwrites_an_existing_key``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from _reliability_harness import tally
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import (
    AddableDict,
    Runnable,
    RunnableGenerator,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
    RunnableSequence,
)
from engine.testing import check_event_order

ALPHABET = "abcxyz"
TEXTS = st.text(alphabet=ALPHABET, min_size=1, max_size=6)
INPUT_KEYS = ["a", "b", "c"]

# Aggregates see the whole text: any function will do (each keeps the text non-empty).
FUNCTIONS: dict[str, Callable[[str], str]] = {
    "exclaim": lambda s: s + "!",
    "reverse": lambda s: s[::-1],
    "wrap": lambda s: f"<{s}>",
    "length": lambda s: f"{s}#{len(s)}",
}
# Generators see chunks: per-character maps, so that the chunking cannot matter.
CHAR_MAPS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "double": lambda s: "".join(ch * 2 for ch in s),
    "rotate": lambda s: s.translate(str.maketrans("abcxyz!<>#", "bcxyza?()%")),
    "identity": lambda s: s,
}


def join_dict(values: dict[str, str]) -> str:
    """A dict of texts as one text, keys in order."""
    return ";".join(f"{key}={values[key]}" for key in sorted(values))


# -- the chains, as trees: (kind, ...) ---------------------------------------------------------


def s_to_s(depth: int) -> st.SearchStrategy[Any]:
    """A text-to-text step."""
    leaves = st.one_of(
        st.tuples(st.just("lambda"), st.sampled_from(sorted(FUNCTIONS)), st.booleans()),
        st.tuples(st.just("gen"), st.sampled_from(sorted(CHAR_MAPS)), st.booleans()),
        st.just(("pass",)),
    )
    if depth == 0:
        return leaves
    inner = s_to_s(depth - 1)
    return st.one_of(
        leaves,
        st.lists(inner, min_size=2, max_size=3).map(lambda steps: ("seq", steps)),
        st.dictionaries(st.sampled_from(["p", "q", "r"]), inner, min_size=1, max_size=3).map(
            lambda branches: ("seq", [("par", branches), ("join",)])
        ),
    )


@st.composite
def d_to_s(draw: st.DrawFn) -> Any:
    """A dict-to-text step: join the dict, then maybe more text steps."""
    tail = draw(st.lists(s_to_s(1), max_size=2))
    return ("seq", [("join",), *tail])


@st.composite
def stage(
    draw: st.DrawFn, kind: str, keys: frozenset[str], fresh: list[int]
) -> tuple[Any, str, frozenset[str]]:
    """One stage accepting ``kind`` (with these dict ``keys``): (tree, out kind, out keys)."""
    if kind == "S":
        if draw(st.booleans()):
            return draw(s_to_s(2)), "S", frozenset()
        branches = draw(st.dictionaries(st.sampled_from(["p", "q", "r"]), s_to_s(1), min_size=1, max_size=3))
        return ("par", branches), "D", frozenset(branches)
    choice = draw(st.sampled_from(["assign", "pass", "dgen", "join"]))
    if choice == "assign":
        new: dict[str, Any] = {}
        for _ in range(draw(st.integers(1, 2))):
            fresh[0] += 1
            new[f"k{fresh[0]}"] = draw(d_to_s())
        return ("assign", new), "D", keys | frozenset(new)
    if choice == "pass":
        return ("pass",), "D", keys
    if choice == "dgen":
        return ("dgen", draw(st.sampled_from(sorted(CHAR_MAPS)))), "D", keys
    return draw(d_to_s()), "S", frozenset()


@st.composite
def pipelines(draw: st.DrawFn) -> tuple[Any, Any]:
    """An input and a chain (a sequence of typed stages) that can take it."""
    if draw(st.booleans()):
        kind, keys = "S", frozenset[str]()
        value: Any = draw(TEXTS)
    else:
        value = draw(st.dictionaries(st.sampled_from(INPUT_KEYS), TEXTS, min_size=1, max_size=3))
        kind, keys = "D", frozenset(value)
    fresh = [0]
    stages = []
    for _ in range(draw(st.integers(1, 4))):
        tree, kind, keys = draw(stage(kind, keys, fresh))
        stages.append(tree)
    return value, ("seq", stages)


# -- building the runnable, and the reference ----------------------------------------------------


def _lambda(name: str, is_async: bool) -> Runnable[Any, Any]:
    func = FUNCTIONS[name]
    if is_async:

        async def call_async(value: str) -> str:
            return func(value)

        call_async.__name__ = name
        return RunnableLambda(call_async)

    def call(value: str) -> str:
        return func(value)

    call.__name__ = name
    return RunnableLambda(call)


def _generator(name: str, split: bool) -> Runnable[Any, Any]:
    mapping = CHAR_MAPS[name]

    async def each_chunk(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for chunk in chunks:
            if split:
                # More chunks than came in: one per character.
                for char in chunk:
                    yield mapping(char)
            else:
                yield mapping(chunk)

    each_chunk.__name__ = f"{name}_{'split' if split else 'each'}"
    return RunnableGenerator(each_chunk)


def _dict_generator(name: str) -> Runnable[Any, Any]:
    mapping = CHAR_MAPS[name]

    async def each_chunk(chunks: AsyncIterator[dict[str, str]]) -> AsyncIterator[AddableDict]:
        async for chunk in chunks:
            yield AddableDict({key: mapping(value) for key, value in chunk.items()})

    each_chunk.__name__ = f"{name}_values"
    return RunnableGenerator(each_chunk)


def build(tree: Any) -> Runnable[Any, Any]:
    """The runnable a tree describes."""
    kind = tree[0]
    if kind == "lambda":
        return _lambda(tree[1], tree[2])
    if kind == "gen":
        return _generator(tree[1], tree[2])
    if kind == "pass":
        return RunnablePassthrough()
    if kind == "seq":
        return RunnableSequence.of(*(build(step) for step in tree[1]))
    if kind == "par":
        return RunnableParallel({key: build(branch) for key, branch in tree[1].items()})
    if kind == "assign":
        return RunnablePassthrough.assign(**{key: build(branch) for key, branch in tree[1].items()})
    if kind == "dgen":
        return _dict_generator(tree[1])
    if kind == "join":
        return RunnableLambda(join_dict)
    raise AssertionError(kind)


def evaluate(tree: Any, value: Any) -> Any:
    """The reference: each step's whole output from its whole input, one after the other."""
    kind = tree[0]
    if kind == "lambda":
        return FUNCTIONS[tree[1]](value)
    if kind == "gen":
        return CHAR_MAPS[tree[1]](value)
    if kind == "pass":
        return value
    if kind == "seq":
        for step in tree[1]:
            value = evaluate(step, value)
        return value
    if kind == "par":
        return {key: evaluate(branch, value) for key, branch in tree[1].items()}
    if kind == "assign":
        return {**value, **{key: evaluate(branch, value) for key, branch in tree[1].items()}}
    if kind == "dgen":
        return {key: CHAR_MAPS[tree[1]](text) for key, text in value.items()}
    if kind == "join":
        return join_dict(value)
    raise AssertionError(kind)


def add_up(chunks: list[Any]) -> Any:
    """Text chunks joined; dict chunks merged key by key (texts joined)."""
    assert chunks, "no chunk at all"
    if all(isinstance(chunk, str) for chunk in chunks):
        return "".join(chunks)
    merged: dict[str, str] = {}
    for chunk in chunks:
        assert isinstance(chunk, dict), f"mixed chunks: {chunks!r}"
        for key, text in chunk.items():
            merged[key] = merged.get(key, "") + text
    return merged


async def check_pipeline(value: Any, tree: Any) -> None:
    """ainvoke, astream and astream_events agree with the reference; events are in order."""
    expected = evaluate(tree, value)
    chain = build(tree)
    assert await chain.ainvoke(value) == expected
    async with chain.astream(value, {"capacity": 1}) as stream:
        chunks = [chunk async for chunk in stream]
    assert add_up(chunks) == expected
    async with chain.astream_events(value) as stream:
        events = [event async for event in stream]
    check_event_order(events, complete=True)
    root_end = events[-1]
    assert root_end["event"] == "on_chain_end" and not root_end["parent_ids"]
    assert root_end["data"]["output"] == expected
    root_chunks = [
        e["data"]["chunk"] for e in events if e["event"] == "on_chain_stream" and not e["parent_ids"]
    ]
    assert add_up(root_chunks) == expected
    tally("property examples (chain and input drawn)")
    tally("runs", 3)
    tally("events checked (order, completeness)", len(events))


SETTINGS = {
    "deadline": None,
    "derandomize": True,  # the same examples every run
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}


@pytest.mark.anyio
@settings(max_examples=40, **SETTINGS)
@given(pipelines())
async def test_random_chains_agree_with_the_sequential_reference(case: tuple[Any, Any]) -> None:
    """40 drawn chains: every way of running them gives the reference output, with ordered events."""
    value, tree = case
    await check_pipeline(value, tree)


@pytest.mark.slow
@pytest.mark.anyio
@settings(max_examples=400, **SETTINGS)
@given(pipelines())
async def test_many_random_chains_agree_with_the_sequential_reference(case: tuple[Any, Any]) -> None:
    """400 drawn chains: every way of running them gives the reference output, with ordered events."""
    value, tree = case
    await check_pipeline(value, tree)


# Found by this suite: assign added the computed value to the input's value for the same
# key ("old" + "new") instead of replacing it (fixed in 5dd4d29).
async def test_assign_overwrites_an_existing_key() -> None:
    """assign(a=...) on an input that has ``a`` replaces it, as in LangChain."""
    chain = RunnablePassthrough.assign(a=lambda values: "new")
    assert await chain.ainvoke({"a": "old", "b": "kept"}) == {"a": "new", "b": "kept"}
