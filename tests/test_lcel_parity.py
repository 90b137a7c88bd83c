"""rillet against langchain-core, side by side: ``astream_events`` v1 and v2 and ``astream_log``.

The same chains run on both (``tests/_lcel_parity.py``), with scripted models streaming
the same chunks. Events are compared in full (names, kinds, order where it is defined,
which of ``input``/``output`` each event's data holds and in which order, the values,
tags, metadata keys, parent relations); only ids and times are normalised. Where rillet
differs on purpose the scenario names the difference (ARCHITECTURE.md, "Differences from
langchain-core"), and only named differences are undone, so a new one fails here.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import attrs
import pytest
from _lcel_parity import (
    DIFFERENCES,
    LOG_SCENARIOS,
    SCENARIOS,
    Scenario,
    by_owner,
    comparable_events,
    comparable_log,
    lc_events,
    lc_log,
    per_run,
    plain,
    plain_state,
    reverse_word,
    rillet_events,
    rillet_log,
    undo,
    untraced,
    without_langsmith,
)

from engine import AggregateNode, EventBus, RunnablePassthrough, Step
from nodes import ScriptedChatModel, StrOutputParser, tool

ARCHITECTURE = Path(__file__).resolve().parents[1] / "ARCHITECTURE.md"

CASES = [(s, v) for s in SCENARIOS for v in s.versions]


async def _both(scenario: Scenario, version: str) -> tuple[Any, Any, Any, Any]:
    lc, lc_error = await anyio.to_thread.run_sync(lc_events, scenario.name, scenario.input, version)
    ri, ri_error = await rillet_events(scenario.name, scenario.input, version)
    return comparable_events(lc, version), comparable_events(ri, version), lc_error, ri_error


def _same(scenario: Scenario, lc: Any, ri: Any) -> bool:
    if scenario.ordered:
        return bool(lc == ri)
    return bool(per_run(lc) == per_run(ri))


@pytest.mark.parametrize(("scenario", "version"), CASES, ids=[f"{s.name}-{v}" for s, v in CASES])
async def test_events_match_langchain_core_but_for_named_differences(
    scenario: Scenario, version: str
) -> None:
    """A chain's astream_events equal langchain-core's once the scenario's named differences are undone."""
    lc, ri, lc_error, ri_error = await _both(scenario, version)
    assert plain(ri_error) == plain(lc_error)
    lc, ri = undo(scenario.expected.get(version, ()), lc, ri)
    if scenario.ordered:
        assert ri == lc
    else:
        assert per_run(ri) == per_run(lc)


EXPECTED = [(s, v, name) for s, v in CASES for name in s.expected.get(v, ())]


@pytest.mark.parametrize(
    ("scenario", "version", "name"), EXPECTED, ids=[f"{s.name}-{v}-{n}" for s, v, n in EXPECTED]
)
async def test_each_named_difference_is_real(scenario: Scenario, version: str, name: str) -> None:
    """Undoing all but one of a scenario's named differences leaves the two sides unequal."""
    lc, ri, _, _ = await _both(scenario, version)
    others = tuple(n for n in scenario.expected[version] if n != name)
    assert not _same(scenario, *undo(others, lc, ri))


def test_every_named_difference_is_listed_in_architecture() -> None:
    """ARCHITECTURE.md's 'Differences from langchain-core' names every difference the comparison allows."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Differences from langchain-core", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\* \*\*`([a-z0-9-]+)`\*\*", section, flags=re.MULTILINE))
    assert listed == set(DIFFERENCES)
    used = {name for s in (*SCENARIOS, *LOG_SCENARIOS) for names in s.expected.values() for name in names}
    assert used == set(DIFFERENCES)


LOGS = list(LOG_SCENARIOS)


@pytest.mark.parametrize("scenario", LOGS, ids=[s.name for s in LOGS])
async def test_astream_log_patches_match_langchain_core(scenario: Scenario) -> None:
    """astream_log's patches (state shape, entries, final_output by diff) equal langchain-core's."""
    expected = scenario.expected.get("log", ())
    lc = await anyio.to_thread.run_sync(lc_log, scenario.name, scenario.input, True)
    ri = await rillet_log(scenario.name, scenario.input, True)
    lc_ops, ri_ops = comparable_log(lc, expected, "lc"), comparable_log(ri, expected, "ri")
    if scenario.ordered:
        assert ri_ops == lc_ops
    else:
        assert by_owner(ri_ops) == by_owner(lc_ops)


@pytest.mark.parametrize("scenario", LOGS, ids=[s.name for s in LOGS])
async def test_astream_log_final_state_matches_langchain_core(scenario: Scenario) -> None:
    """astream_log(diff=False)'s last state equals langchain-core's (tracer-shaped outputs aside)."""
    lc = await anyio.to_thread.run_sync(lc_log, scenario.name, scenario.input, False)
    ri = await rillet_log(scenario.name, scenario.input, False)
    lc_state, ri_state = plain_state(lc[-1].state), plain_state(ri[-1].state)
    expected = scenario.expected.get("log", ())
    for entry in lc_state["logs"].values():
        if "tracer-outputs" in expected:
            entry["final_output"] = untraced(entry["final_output"])
        if "langsmith-metadata" in expected:
            entry["metadata"] = without_langsmith(entry["metadata"])
    if not scenario.ordered:
        for state in (lc_state, ri_state):
            state["streamed_output"] = sorted(map(repr, state["streamed_output"]))
    assert list(ri_state) == list(lc_state)
    assert ri_state == lc_state


# -- rillet's own side of the shapes ------------------------------------------------------


async def test_a_run_only_bus_subscribers_see_keeps_every_input_and_chunk() -> None:
    """Native events (no astream_events): a tool's chunk is a stream event, every start and end shows its input."""
    bus = EventBus()
    reverse = tool(reverse_word)
    async with bus.subscribe(capacity=100) as events:
        assert await reverse.ainvoke({"word": "abc"}, {"bus": bus}) == "cba"
        seen = events.receive_available(100)
    assert [(e["event"], e["data"]) for e in seen] == [
        ("on_tool_start", {"input": {"word": "abc"}}),
        ("on_tool_stream", {"chunk": "cba"}),
        ("on_tool_end", {"input": {"word": "abc"}, "output": "cba"}),
    ]


@attrs.frozen
class Shout(AggregateNode[str, str]):
    """A node that says how its events look: one value, no input on its start."""

    publishes_chunks: ClassVar[bool] = False
    input_at_start: ClassVar[bool] = False

    async def compute(self, value: str, step: Step) -> AsyncIterator[str]:
        yield value.upper()


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_a_node_says_whether_its_start_shows_input_and_it_streams(version: str) -> None:
    """input_at_start=False: no input on its start inside a chain; publishes_chunks=False: no stream
    events (v1: only at the root of the stream)."""
    inside = [e async for e in (Shout() | RunnablePassthrough()).astream_events("hi", version=version)]
    shout = [(e["event"], e["data"]) for e in inside if e["name"] == "Shout"]
    end_data = {"input": "hi", "output": "HI"}
    assert shout == [("on_chain_start", {}), ("on_chain_end", end_data)]
    assert list(shout[1][1]) == (["output", "input"] if version == "v2" else ["input", "output"])
    alone = [(e["event"], e["data"]) for e in await _collect(Shout().astream_events("hi", version=version))]
    streamed = [("on_chain_stream", {"chunk": "HI"})] if version == "v1" else []
    assert alone == [("on_chain_start", {"input": "hi"}), *streamed, ("on_chain_end", {"output": "HI"})]


async def _collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


@pytest.mark.parametrize(
    ("filters", "logged"),
    [
        ({"include_types": ["llm"]}, ["model"]),
        ({"include_types": ["chat_model"]}, ["model"]),
        ({"exclude_types": ["llm"]}, ["StrOutputParser"]),
        ({"exclude_types": ["chat_model"]}, ["StrOutputParser"]),
    ],
)
async def test_astream_log_type_filters_name_a_chat_model_as_llm_or_by_kind(
    filters: dict[str, list[str]], logged: list[str]
) -> None:
    """astream_log's type filters take a chat model's run type ("llm", as langchain-core) or its kind."""
    chain = ScriptedChatModel([["a", "b"]], name="model") | StrOutputParser()
    state: Any = None
    async for log in chain.astream_log("hi", diff=False, **filters):
        state = log.state
    assert list(state["logs"]) == logged
    if "model" in logged:
        assert state["logs"]["model"]["type"] == "llm"
        assert state["logs"]["model"]["streamed_output_str"] == ["a", "b"]
