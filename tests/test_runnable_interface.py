"""The rest of the Runnable interface (issue 17), on both backends.

Config injected into functions, generators and tools; the async variants of
``RunnableLambda``/``RunnableGenerator``; ``@chain`` on generators; ``RunnablePassthrough(func)``;
``pick``/``assign``/``map``; ``batch_as_completed``; the ``run_id`` and ``configurable``
config keys with ``configurable_fields``/``configurable_alternatives``; ``with_listeners``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from engine import (
    CompositionError,
    ConfigError,
    ConfigurableField,
    Run,
    RunCancelled,
    Runnable,
    RunnableConfig,
    RunnableEach,
    RunnableGenerator,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
    RunnablePick,
    Step,
    chain,
)
from engine.testing import check_event_order
from nodes import (
    AIMessage,
    ChatPromptTemplate,
    JsonOutputParser,
    ScriptedChatModel,
    StrOutputParser,
    ToolArgumentError,
    tool,
)

GUARD = 10.0  # seconds: bounds a wait that should end at once, never paces a test


async def events_of(runnable: Runnable[Any, Any], value: Any, config: Any = None, **kw: Any) -> list[Any]:
    with anyio.fail_after(GUARD):
        return [e async for e in runnable.astream_events(value, config, **kw)]


def shape(events: list[Any]) -> list[tuple[str, str]]:
    return [(e["event"], e["name"]) for e in events]


# -- config injected into the user's code ------------------------------------------------


async def test_async_function_gets_the_steps_config() -> None:
    """A function declaring ``config`` gets tags, metadata, run name, root run id and configurable."""
    seen: list[RunnableConfig] = []

    async def look(x: int, config: RunnableConfig) -> int:
        seen.append(config)
        return x

    run_id = uuid.uuid4()
    config = {"tags": ["t"], "metadata": {"m": 1}, "configurable": {"k": "v"}, "run_id": run_id}
    assert await RunnableLambda(look).ainvoke(3, config) == 3
    (got,) = seen
    assert got["tags"] == ["t"]
    assert got["metadata"] == {"m": 1}
    assert got["run_name"] == "look"
    assert got["run_id"] == str(run_id)
    assert got["configurable"] == {"k": "v"}
    assert isinstance(got["callbacks"], Step)
    assert got["recursion_limit"] == 25


async def test_sync_function_and_chain_get_config_in_their_thread() -> None:
    """A sync function (in its worker thread) and a ``@chain`` function get the config too."""

    def sync_look(x: int, config: RunnableConfig) -> list[str]:
        return config["tags"]

    @chain
    async def chained(x: int, config: RunnableConfig) -> str:
        return config["run_name"]

    assert await RunnableLambda(sync_look).ainvoke(1, {"tags": ["a"]}) == ["a"]
    assert await chained.ainvoke(1, {"run_name": "named"}) == "named"


async def test_generators_get_config() -> None:
    """Async and sync ``RunnableGenerator`` functions that declare ``config`` get it."""

    async def agen(chunks: AsyncIterator[str], config: RunnableConfig) -> AsyncIterator[str]:
        async for chunk in chunks:
            yield chunk + config["configurable"]["suffix"]

    def sgen(chunks: Iterator[str], config: RunnableConfig) -> Iterator[str]:
        for chunk in chunks:
            yield chunk + config["configurable"]["suffix"]

    for generator in (RunnableGenerator(agen), RunnableGenerator(sgen)):
        assert await generator.ainvoke("a", {"configurable": {"suffix": "!"}}) == "a!"


async def test_config_passed_on_nests_as_if_nothing_were_passed() -> None:
    """Passing a step's config to a nested call nests it under the step with its own name and id."""
    inner = RunnableLambda(lambda x: x + 1, name="inner")

    async def outer(x: int, config: RunnableConfig) -> int:
        result: int = await inner.ainvoke(x, config)
        return result

    run_id = str(uuid.uuid4())
    events = await events_of(RunnableLambda(outer), 1, {"run_name": "top", "run_id": run_id, "tags": ["t"]})
    check_event_order(events)
    assert shape(events) == [
        ("on_chain_start", "top"),
        ("on_chain_start", "inner"),
        ("on_chain_end", "inner"),  # an invoked run streams only a model's tokens, as in langchain-core
        ("on_chain_stream", "top"),
        ("on_chain_end", "top"),
    ]
    top, nested = events[0], events[1]
    assert top["run_id"] == run_id
    assert nested["run_id"] != run_id
    assert nested["parent_ids"] == [run_id]
    assert nested["tags"] == ["t"]


async def test_tool_gets_callbacks_and_config_outside_its_arguments() -> None:
    """The guide's ``correct_tool(word, callbacks)`` works; injected parameters are no arguments."""
    reverse_word = RunnableLambda(lambda word: word[::-1], name="reverse_word")

    @tool
    def correct_tool(word: str, callbacks: Any) -> str:
        """A tool that correctly propagates callbacks."""
        result: str = reverse_word.invoke(word, {"callbacks": callbacks})
        return result

    @tool
    async def tagged(word: str, config: RunnableConfig) -> list[str]:
        """Reads its tags."""
        return config["tags"]

    assert correct_tool.args_schema["properties"] == {"word": {"type": "string"}}
    assert correct_tool.args_schema["required"] == ["word"]
    assert list(tagged.args) == ["word"]
    events = await events_of(correct_tool, "hello", version="v1")
    assert shape(events) == [
        ("on_tool_start", "correct_tool"),
        ("on_chain_start", "reverse_word"),
        ("on_chain_end", "reverse_word"),
        ("on_tool_stream", "correct_tool"),
        ("on_tool_end", "correct_tool"),
    ]
    assert events[-1]["data"]["output"] == "olleh"
    assert await tagged.ainvoke({"word": "x"}, {"tags": ["mine"]}) == ["mine"]
    with pytest.raises(ToolArgumentError, match="unknown argument"):
        await tagged.ainvoke({"word": "x", "config": {}})


async def test_callback_handlers_are_refused() -> None:
    """``callbacks`` holding handlers is refused at once, saying what to use instead; none is fine."""
    with pytest.raises(ConfigError, match="no callback handlers"):
        await RunnableLambda(lambda x: x).ainvoke(1, {"callbacks": [object()]})
    assert await RunnableLambda(lambda x: x).ainvoke(1, {"callbacks": []}) == 1


# -- RunnableLambda / RunnableGenerator / @chain forms ---------------------------------------


async def test_lambda_with_sync_and_async_variants() -> None:
    """``RunnableLambda(f, af)`` is named after ``f`` and runs ``af`` (the second is no name)."""

    def plus_one(x: int) -> int:
        return x + 1

    async def plus_two(x: int) -> int:
        return x + 2

    both = RunnableLambda(plus_one, plus_two)
    assert both.get_name() == "plus_one"
    assert await both.ainvoke(1) == 3
    assert await RunnableLambda(plus_one, afunc=plus_two, name="n").ainvoke(1) == 3
    assert RunnableLambda(plus_one, plus_two, "n").get_name() == "n"
    events = await events_of(both, 1)
    assert {e["name"] for e in events} == {"plus_one"}


def test_lambda_variants_are_checked_at_construction() -> None:
    """A sync afunc, an async func with an afunc, or two different names are refused."""

    def f(x: int) -> int:
        return x

    async def af(x: int) -> int:
        return x

    with pytest.raises(CompositionError, match="afunc must be an async"):
        RunnableLambda(f, f)
    with pytest.raises(CompositionError, match="async func"):
        RunnableLambda(af, af)
    with pytest.raises(CompositionError, match="two names"):
        RunnableLambda(f, name="a", func_name="b")
    with pytest.raises(CompositionError, match="non-empty string"):
        RunnableLambda(f, None, 3)  # type: ignore[call-overload]


async def test_generator_with_sync_and_async_variants() -> None:
    """``RunnableGenerator(gen, agen)`` is named after ``gen`` and runs ``agen``."""

    def upper(chunks: Iterator[str]) -> Iterator[str]:
        for chunk in chunks:
            yield chunk.upper()

    async def lower(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for chunk in chunks:
            yield chunk.lower()

    both = RunnableGenerator(upper, lower)
    assert both.get_name() == "upper"
    assert await both.ainvoke("AbC") == "abc"
    assert RunnableGenerator(upper, name="n").get_name() == "n"
    with pytest.raises(CompositionError, match="atransform must be an async generator"):
        RunnableGenerator(upper, upper)


async def test_chain_on_async_generator_gets_the_value_and_streams() -> None:
    """``@chain`` on an async generator gets the input value; its events carry only values."""
    received: list[Any] = []

    @chain
    async def shout(text: str) -> AsyncIterator[str]:
        received.append(text)
        for letter in text:
            yield letter.upper()

    assert await shout.ainvoke("abc") == "ABC"
    with anyio.fail_after(GUARD):
        assert [c async for c in shout.astream("ab")] == ["A", "B"]
    events = await events_of(shout, "ab")
    assert [(e["event"], e["data"]) for e in events] == [
        ("on_chain_start", {"input": "ab"}),
        ("on_chain_stream", {"chunk": "A"}),
        ("on_chain_stream", {"chunk": "B"}),
        ("on_chain_end", {"output": "AB"}),  # v2: the stream's root ends with its output only
    ]
    assert received == ["abc", "ab", "ab"]


async def test_lambda_and_chain_on_sync_generator_get_the_value() -> None:
    """A sync generator function as ``@chain``/``RunnableLambda`` gets the value and streams."""

    @chain
    def twice(text: str) -> Iterator[str]:
        yield text
        yield text

    with anyio.fail_after(GUARD):
        assert [c async for c in twice.astream("a")] == ["a", "a"]
    assert await (RunnableLambda(lambda x: x + "b") | twice).ainvoke("a") == "abab"


# -- RunnablePassthrough(func) ------------------------------------------------------------


async def test_passthrough_calls_its_function_with_the_whole_input() -> None:
    """Chunks pass through as they come; the function then gets the whole input."""
    seen: list[Any] = []

    async def letters(_: Any) -> AsyncIterator[str]:
        for letter in "abc":
            yield letter

    watched = RunnableGenerator(letters) | RunnablePassthrough(seen.append)
    with anyio.fail_after(GUARD):
        assert [c async for c in watched.astream(None)] == ["a", "b", "c"]
    assert seen == ["abc"]

    async def remember(value: Any, config: RunnableConfig) -> None:
        seen.append((value, config["tags"]))

    assert await RunnablePassthrough(afunc=remember).ainvoke(5, {"tags": ["x"]}) == 5
    assert seen[-1] == (5, ["x"])
    assert await RunnablePassthrough(remember).ainvoke(6) == 6
    assert seen[-1] == (6, [])


async def test_passthrough_function_not_called_without_input_chunks() -> None:
    """An input stream with no chunk passes nothing on and calls nothing."""
    seen: list[Any] = []

    async def nothing(_: Any) -> AsyncIterator[str]:
        return
        yield  # an async generator that yields nothing

    assert await (RunnableGenerator(nothing) | RunnablePassthrough(seen.append)).ainvoke(None) is None
    assert seen == []


def test_passthrough_function_checked_at_construction() -> None:
    """A non-callable func or a sync afunc is refused."""
    with pytest.raises(CompositionError, match="callable"):
        RunnablePassthrough(5)  # type: ignore[arg-type]
    with pytest.raises(CompositionError, match="async function"):
        RunnablePassthrough(afunc=print)


async def test_passthrough_function_error_fails_the_step() -> None:
    """What the function raises is the step's error."""

    def fail(value: Any) -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await RunnablePassthrough(fail).ainvoke(1)


# -- pick, assign, map ------------------------------------------------------------------------


async def test_pick_one_key_and_several_streams_each_chunk() -> None:
    """``pick("a")`` gives a's value, ``pick([...])`` a dict; both pass chunks on as they come."""
    parallel = RunnableParallel(a=lambda x: x, b=lambda x: x + 1, c=lambda x: 0)
    assert await parallel.pick("a").ainvoke(1) == 1
    assert await parallel.pick(["a", "b"]).ainvoke(1) == {"a": 1, "b": 2}
    with anyio.fail_after(GUARD):
        chunks = [c async for c in parallel.pick(["a", "b"]).astream(1)]
    assert sorted(map(dict, chunks), key=str) == [{"a": 1}, {"b": 2}]
    assert await parallel.pick("zz").ainvoke(1) is None
    assert await parallel.pick(["zz"]).ainvoke(1) is None
    assert parallel.pick(["a", "b"]).last.get_name() == "RunnablePick<a,b>"


async def test_pick_refuses_a_non_dict_input_and_bad_keys() -> None:
    """A non-dict input fails the run; a bad key fails at construction."""
    with pytest.raises(TypeError, match="needs a dict input"):
        await RunnableLambda(lambda x: 5).pick("a").ainvoke(1)
    with pytest.raises(CompositionError):
        RunnableLambda(lambda x: x).pick([])
    with pytest.raises(CompositionError):
        RunnablePick(["a", 1])  # type: ignore[list-item]


async def test_pick_from_snapshots_adds_up_right() -> None:
    """Picking from a JSON parser's snapshots gives the final value, with or without ``.pick``."""

    async def text(_: Any) -> AsyncIterator[str]:
        for piece in ['{"a": "hel', 'lo", "b"', ": 2}"]:
            yield piece

    parsed = RunnableGenerator(text) | JsonOutputParser()
    picked = parsed.pick("a")
    assert picked.output_accumulation == "last"
    assert await picked.ainvoke(None) == "hello"
    assert await (parsed | RunnablePick("a")).ainvoke(None) == "hello"
    assert await (parsed | RunnablePick(["a", "b"])).ainvoke(None) == {"a": "hello", "b": 2}


async def test_assign_on_any_runnable() -> None:
    """``runnable.assign(k=...)`` adds keys computed from its dict output."""
    made = RunnableLambda(lambda x: {"a": x}).assign(b=lambda d: d["a"] + 1)
    assert await made.ainvoke(1) == {"a": 1, "b": 2}
    with pytest.raises(CompositionError):
        RunnableLambda(lambda x: x).assign()


async def test_map_runs_each_item_nested_under_its_step() -> None:
    """``map()`` gives the list of outputs; each item is a run nested under the map's step."""
    double = RunnableLambda(lambda x: x * 2, name="double")
    mapped = double.map()
    assert isinstance(mapped, RunnableEach)
    assert mapped.get_name() == "RunnableEach<double>"
    assert await mapped.ainvoke([1, 2, 3]) == [2, 4, 6]
    events = await events_of(mapped, [1, 2])
    check_event_order(events)
    root = events[0]["run_id"]
    items = [e for e in events if e["name"] == "double" and e["event"] == "on_chain_end"]
    assert sorted(e["data"]["output"] for e in items) == [2, 4]
    assert all(e["parent_ids"] == [root] for e in items)
    with pytest.raises(TypeError, match="needs a list input"):
        await mapped.ainvoke(3)  # type: ignore[arg-type]


# -- batch_as_completed -----------------------------------------------------------------------


def gated(gates: list[anyio.Event], fail: int | None = None) -> RunnableLambda[int, int]:
    async def wait_for_gate(index: int) -> int:
        await gates[index].wait()
        if index == fail:
            raise ValueError(f"item {index}")
        return index * 10

    return RunnableLambda(wait_for_gate)


async def test_abatch_as_completed_yields_in_completion_order() -> None:
    """Each ``(index, output)`` comes out as its input finishes, whatever the input order."""
    gates = [anyio.Event() for _ in range(3)]
    with anyio.fail_after(GUARD):
        async with gated(gates).abatch_as_completed([0, 1, 2]) as pairs:
            got = []
            for index in (2, 0, 1):
                gates[index].set()
                got.append(await pairs.__anext__())
            assert [p async for p in pairs] == []
    assert got == [(2, 20), (0, 0), (1, 10)]


async def test_abatch_as_completed_with_and_without_return_exceptions() -> None:
    """A failure is a pair with ``return_exceptions``; without, it is raised after the pairs before it."""
    gates = [anyio.Event() for _ in range(3)]
    for gate in gates:
        gate.set()
    with anyio.fail_after(GUARD):
        pairs = [p async for p in gated(gates, fail=1).abatch_as_completed([0, 1, 2], return_exceptions=True)]
    assert sorted(pairs, key=lambda p: p[0])[0] == (0, 0)
    failed = dict(pairs)[1]
    assert isinstance(failed, ValueError)

    gates = [anyio.Event() for _ in range(3)]
    seen: list[Any] = []
    with anyio.fail_after(GUARD), pytest.raises(ValueError, match="item 1"):
        async with gated(gates, fail=1).abatch_as_completed([0, 1, 2]) as stream:
            gates[0].set()
            seen.append(await stream.__anext__())
            gates[1].set()
            async for pair in stream:
                seen.append(pair)
    assert seen == [(0, 0)]


async def test_abatch_as_completed_respects_max_concurrency() -> None:
    """With one slot, inputs run (and finish) one after another."""
    order: list[int] = []

    async def note(x: int) -> int:
        order.append(x)
        await anyio.lowlevel.checkpoint()
        return x

    with anyio.fail_after(GUARD):
        pairs = [p async for p in RunnableLambda(note).abatch_as_completed([5, 6, 7], max_concurrency=1)]
        assert pairs == [(0, 5), (1, 6), (2, 7)]
        by_config = [
            p async for p in RunnableLambda(note).abatch_as_completed([1, 2], {"max_concurrency": 1})
        ]
    assert by_config == [(0, 1), (1, 2)]
    with anyio.fail_after(GUARD):
        assert [p async for p in RunnableLambda(note).abatch_as_completed([])] == []


async def test_leaving_abatch_as_completed_early_cancels_the_rest() -> None:
    """Leaving the block cancels the inputs still running."""
    gates = [anyio.Event() for _ in range(2)]
    cancelled: list[int] = []

    async def wait(index: int) -> int:
        try:
            await gates[index].wait()
        except anyio.get_cancelled_exc_class():
            cancelled.append(index)
            raise
        return index

    with anyio.fail_after(GUARD):
        async with RunnableLambda(wait).abatch_as_completed([0, 1]) as pairs:
            gates[0].set()
            assert await pairs.__anext__() == (0, 0)
    assert cancelled == [1]


def test_batch_as_completed_from_sync_code() -> None:
    """The synchronous form yields every pair."""
    pairs = list(RunnableLambda(lambda x: x * 2).batch_as_completed([1, 2, 3]))
    assert sorted(pairs) == [(0, 2), (1, 4), (2, 6)]


# -- run_id ---------------------------------------------------------------------------------


async def test_run_id_names_the_root_run() -> None:
    """The root's events carry the config's ``run_id`` (a UUID or its string)."""
    run_id = uuid.uuid4()
    events = await events_of(RunnableLambda(lambda x: x) | RunnableLambda(lambda x: x), 1, {"run_id": run_id})
    root = [e for e in events if not e["parent_ids"]]
    assert {e["run_id"] for e in root} == {str(run_id)}
    assert all(e["parent_ids"][0] == str(run_id) for e in events if e["parent_ids"])


async def test_run_id_is_checked_and_per_call() -> None:
    """A bad run id and a bound one are refused; one config's run id goes to a batch's first input."""
    with pytest.raises(ConfigError, match="run_id"):
        await RunnableLambda(lambda x: x).ainvoke(1, {"run_id": 5})
    with pytest.raises(ConfigError, match="belongs to one call"):
        RunnableLambda(lambda x: x).with_config(run_id="x")
    seen: list[str] = []

    async def look(x: int, config: RunnableConfig) -> int:
        seen.append(config["run_id"])
        return x

    with pytest.warns(UserWarning, match="only the first input"):
        await RunnableLambda(look).abatch([1, 2], {"run_id": "the-id"}, max_concurrency=1)
    assert seen[0] == "the-id" and seen[1] != "the-id"


# -- configurable ---------------------------------------------------------------------------


async def test_configurable_fields_set_per_call_and_bound() -> None:
    """A configurable field takes the call's value, else a binding's, else stays as it is."""
    model = ScriptedChatModel(["default reply"]).configurable_fields(
        replies=ConfigurableField(id="replies", name="Replies", description="what it says")
    )
    chained = model | StrOutputParser()
    assert await chained.ainvoke("x") == "default reply"
    assert await chained.ainvoke("x", {"configurable": {"replies": ["per call"]}}) == "per call"
    bound = chained.with_config(configurable={"replies": ["bound"]})
    assert await bound.ainvoke("x") == "bound"
    assert await bound.ainvoke("x", {"configurable": {"replies": ["call wins"]}}) == "call wins"
    assert await chained.ainvoke("x", {"configurable": {"unrelated": 1}}) == "default reply"


def test_configurable_fields_checked_at_construction() -> None:
    """A field the runnable does not have is refused at once, naming the ones it has."""
    with pytest.raises(ValueError, match=r"no field 'nope'.*replies"):
        ScriptedChatModel(["x"]).configurable_fields(nope=ConfigurableField(id="n"))
    with pytest.raises(TypeError, match="ConfigurableField"):
        ScriptedChatModel(["x"]).configurable_fields(replies="r")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty string"):
        ConfigurableField(id="")


async def test_configurable_field_value_refused_fails_the_run_naming_it() -> None:
    """A value the field refuses fails the run, noted with the configurable id."""
    model = ScriptedChatModel(["x"]).configurable_fields(delay=ConfigurableField(id="model_delay"))
    with pytest.raises(ValueError, match="delay must be >= 0") as caught:
        await model.ainvoke("x", {"configurable": {"model_delay": -1.0}})
    assert any("model_delay" in note for note in caught.value.__notes__)


async def test_configurable_alternatives_switch_a_model_and_a_prompt() -> None:
    """The configurable id picks an alternative per call; the default key and no value pick the default."""
    prompt = ChatPromptTemplate.from_template("Tell a joke about {topic}").configurable_alternatives(
        ConfigurableField(id="prompt"),
        default_key="joke",
        poem=ChatPromptTemplate.from_template("A poem on {topic}"),
    )
    model = ScriptedChatModel(["from a"], name="a").configurable_alternatives(
        ConfigurableField(id="llm"), b=ScriptedChatModel(["from b"], name="b")
    )
    assert await (prompt | model | StrOutputParser()).ainvoke({"topic": "x"}) == "from a"
    config = {"configurable": {"llm": "b", "prompt": "poem"}}
    assert await (model | StrOutputParser()).ainvoke("x", config) == "from b"
    assert (await prompt.ainvoke({"topic": "cats"}, config)).to_string() == "Human: A poem on cats"
    assert (await prompt.ainvoke({"topic": "cats"}, {"configurable": {"prompt": "joke"}})).to_string() == (
        "Human: Tell a joke about cats"
    )
    with pytest.raises(ValueError, match=r"unknown alternative 'c'.*'default', 'b'"):
        await model.ainvoke("x", {"configurable": {"llm": "c"}})


async def test_chosen_alternative_streams_and_publishes_as_itself() -> None:
    """The chain with the chosen alternative streams and publishes exactly as the chain built with it."""
    # A reply with its own id, so that both runs' chunks are equal (else each has its run's id).
    other = ScriptedChatModel([AIMessage("two words", id="msg_other")], name="other")
    switched = ScriptedChatModel(["x"], name="first").configurable_alternatives(
        ConfigurableField(id="llm"), other=other
    )
    config = {"configurable": {"llm": "other"}}
    prompt = ChatPromptTemplate.from_template("{q}")
    with anyio.fail_after(GUARD):
        direct_chunks = [c async for c in (prompt | other | StrOutputParser()).astream({"q": "?"})]
        chosen_chunks = [c async for c in (prompt | switched | StrOutputParser()).astream({"q": "?"}, config)]
    assert chosen_chunks == direct_chunks == ["two", " words"]
    direct = await events_of(prompt | other | StrOutputParser(), {"q": "?"})
    chosen = await events_of(prompt | switched | StrOutputParser(), {"q": "?"}, config)
    assert shape(chosen) == shape(direct)
    assert [e["data"] for e in chosen if e["event"].endswith("_stream")] == [
        e["data"] for e in direct if e["event"].endswith("_stream")
    ]


def test_configurable_alternatives_checked_at_construction() -> None:
    """The default key among the alternatives, no alternative, or a mismatched sum is refused."""
    model = ScriptedChatModel(["x"])
    with pytest.raises(ValueError, match="default_key"):
        model.configurable_alternatives(ConfigurableField(id="llm"), default=ScriptedChatModel(["y"]))
    with pytest.raises(ValueError, match="at least one"):
        model.configurable_alternatives(ConfigurableField(id="llm"))
    with pytest.raises(CompositionError, match="adds its output up"):
        RunnableLambda(lambda x: x).configurable_alternatives(
            ConfigurableField(id="k"), json=JsonOutputParser()
        )
    with pytest.raises(CompositionError, match="runnable or a function"):
        model.configurable_alternatives(ConfigurableField(id="llm"), b=3)  # type: ignore[arg-type]


async def test_lazy_alternative_and_prefixed_keys() -> None:
    """A function alternative is made when chosen; ``prefix_keys`` sets its fields under a prefix."""
    made: list[str] = []

    def make() -> ScriptedChatModel:
        made.append("b")
        return ScriptedChatModel(["lazy"])

    lazy = ScriptedChatModel(["eager"]).configurable_alternatives(ConfigurableField(id="llm"), b=make)
    assert await (lazy | StrOutputParser()).ainvoke("x") == "eager"
    assert made == []
    assert await (lazy | StrOutputParser()).ainvoke("x", {"configurable": {"llm": "b"}}) == "lazy"
    assert made == ["b"]
    prefixed = ScriptedChatModel(["one"]).configurable_alternatives(
        ConfigurableField(id="llm"),
        prefix_keys=True,
        b=ScriptedChatModel(["two"]).configurable_fields(replies=ConfigurableField(id="r")),
    )
    config = {"configurable": {"llm": "b", "llm==b/r": ["three"]}}
    assert await (prefixed | StrOutputParser()).ainvoke("x", config) == "three"


async def test_configurable_values_reach_runs_started_inside() -> None:
    """A run started inside a step sees the outer call's configurable values."""
    model = ScriptedChatModel(["default"]).configurable_fields(replies=ConfigurableField(id="r"))

    async def ask(question: str) -> str:
        reply: str = await (model | StrOutputParser()).ainvoke(question)
        return reply

    assert await RunnableLambda(ask).ainvoke("q", {"configurable": {"r": ["inner"]}}) == "inner"


# -- with_listeners ---------------------------------------------------------------------------


async def test_listeners_get_runs_and_change_nothing() -> None:
    """on_start/on_end get a Run; output and events are those of the runnable alone."""
    runs: list[tuple[str, Run]] = []
    double = RunnableLambda(lambda x: x * 2, name="double")
    listened = double.with_listeners(
        on_start=lambda run: runs.append(("start", run)), on_end=lambda run: runs.append(("end", run))
    )
    assert listened.get_name() == "double"
    assert await listened.ainvoke(4, {"tags": ["t"]}) == 8
    (start_tag, start), (end_tag, end) = runs
    assert (start_tag, end_tag) == ("start", "end")
    assert start.id == end.id and start.name == "double" and start.run_type == "chain"
    assert start.inputs == {"input": 4} and start.outputs is None and start.end_time is None
    assert end.outputs == {"output": 8} and end.error is None
    assert end.end_time is not None and end.end_time >= end.start_time
    assert end.tags == ["t"] and end.parent_run_id is None
    plain = await events_of(double, 4)
    with_listeners = await events_of(listened, 4)
    assert [(e["event"], e["name"], e["data"]) for e in with_listeners] == [
        (e["event"], e["name"], e["data"]) for e in plain
    ]


async def test_error_listener_and_async_listeners() -> None:
    """An async on_error runs though the failure cancels the run; the error is raised unchanged."""
    runs: list[Run] = []

    async def on_error(run: Run) -> None:
        await anyio.lowlevel.checkpoint()
        runs.append(run)

    async def on_end(run: Run, config: RunnableConfig) -> None:
        await anyio.lowlevel.checkpoint()
        runs.append(run)
        assert config["run_name"] == run.name

    def fail(x: int) -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await RunnableLambda(fail).with_listeners(on_error=on_error).ainvoke(1)
    assert isinstance(runs[0].error, ValueError) and runs[0].inputs == {"input": 1}
    assert await RunnableLambda(lambda x: x).with_alisteners(on_end=on_end).ainvoke(2) == 2
    assert runs[1].outputs == {"output": 2}


async def test_cancelled_step_reports_to_on_error() -> None:
    """A step cancelled with its run gets on_error with a RunCancelled."""
    runs: list[Run] = []
    started = anyio.Event()

    async def hang(x: int) -> int:
        started.set()
        await anyio.sleep_forever()
        return x

    listened = RunnableLambda(hang).with_listeners(on_error=runs.append)
    with anyio.fail_after(GUARD):
        async with listened.astream(1):
            await started.wait()
    assert len(runs) == 1 and isinstance(runs[0].error, RunCancelled)


async def test_listener_that_raises_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A listener's exception is logged; the run's result stays the same."""

    def broken(run: Run) -> None:
        raise RuntimeError("listener broke")

    with caplog.at_level(logging.ERROR, logger="rillet"):
        assert (
            await RunnableLambda(lambda x: x + 1).with_listeners(on_start=broken, on_end=broken).ainvoke(1)
            == 2
        )
    assert sum("listener" in record.getMessage() for record in caplog.records) == 2


async def test_listener_on_a_step_inside_a_chain() -> None:
    """A listened step after another starts without its input and ends with it."""
    runs: list[Run] = []
    inner = RunnableLambda(lambda x: x + 1, name="inner").with_listeners(
        on_start=runs.append, on_end=runs.append
    )
    assert await (RunnableLambda(lambda x: x * 10) | inner).ainvoke(1) == 11
    start, end = runs
    assert start.inputs == {"input": ""}
    assert end.inputs == {"input": 10} and end.outputs == {"output": 11}
    assert end.parent_run_id is not None


def test_listener_must_be_callable() -> None:
    """A listener that is not a function is refused at construction."""
    with pytest.raises(CompositionError, match="on_end"):
        RunnableLambda(lambda x: x).with_listeners(on_end=3)  # type: ignore[arg-type]
