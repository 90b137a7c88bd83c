"""The event shape and names: ``StreamEvent``, ``event_name``, ``phase_of`` and ``kind_of``."""

from __future__ import annotations

import pathlib
import re
from typing import Any, get_type_hints

import pytest
from _guide import HELLO_TOKENS
from hypothesis import given
from hypothesis import strategies as st

from engine import (
    EventBus,
    EventPhase,
    RunnableLambda,
    StreamEvent,
    adispatch_custom_event,
    event_name,
    kind_of,
    phase_of,
)
from engine.testing import EventOrderError, check_event_order
from nodes import ChatPromptTemplate, ScriptedChatModel, StrOutputParser

#: The keys of every event, in the order the guide prints them.
GUIDE_KEYS = ["event", "name", "run_id", "parent_ids", "tags", "metadata", "data"]
KINDS = ["chat_model", "llm", "chain", "tool", "retriever", "prompt", "parser"]
LIFECYCLE = [EventPhase.START, EventPhase.STREAM, EventPhase.END, EventPhase.ERROR]


@pytest.mark.parametrize("phase", LIFECYCLE)
@pytest.mark.parametrize("kind", [*KINDS, "shouter", "my_end", "x_"])
def test_lifecycle_names_round_trip(kind: str, phase: EventPhase) -> None:
    """event_name builds on_<kind>_<phase>, and phase_of/kind_of read both back."""
    name = event_name(kind, phase)
    assert name == f"on_{kind}_{phase.value}"
    assert phase_of(name) is phase and kind_of(name) == kind
    event = {"event": name}
    assert phase_of(event) is phase and kind_of(event) == kind


@given(kind=st.text(min_size=1), phase=st.sampled_from(LIFECYCLE))
def test_any_kind_round_trips(kind: str, phase: EventPhase) -> None:
    """Any non-empty kind, underscores and all, comes back from the name it makes."""
    name = event_name(kind, phase)
    assert (kind_of(name), phase_of(name)) == (kind, phase)


@pytest.mark.parametrize(
    ("phase", "name"),
    [(EventPhase.CUSTOM, "on_custom_event"), (EventPhase.DROPPED, "on_events_dropped")],
)
def test_fixed_names_round_trip(phase: EventPhase, name: str) -> None:
    """Custom events and drop markers have fixed names that say no kind."""
    assert event_name(None, phase) == event_name("chain", phase) == name
    assert phase_of(name) is phase and kind_of(name) is None


def test_phases_are_the_names_last_word() -> None:
    """A phase compares equal to its word, so code written against strings keeps working."""
    assert EventPhase.STREAM == "stream" and f"{EventPhase.END}" == "end"
    assert event_name("chain", "end") == "on_chain_end"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("on_chain_finish", "'on_chain_finish' is not an event name"),
        ("chain_start", "'chain_start' is not an event name"),
        ("on__start", "'on__start' is not an event name"),
        ("on_start", "'on_start' is not an event name"),
        ({"event": 3}, "must be its name"),
        ({"name": "x"}, "must be its name"),
    ],
)
def test_phase_of_refuses_what_is_not_an_event_name(bad: Any, message: str) -> None:
    """phase_of and kind_of raise ValueError naming a name they cannot read."""
    with pytest.raises(ValueError, match=re.escape(message)):
        phase_of(bad)
    with pytest.raises(ValueError, match=re.escape(message)):
        kind_of(bad)


def test_event_name_refuses_a_bad_phase_or_a_missing_kind() -> None:
    """event_name raises ValueError for an unknown phase and for a lifecycle phase without a kind."""
    with pytest.raises(ValueError, match="unknown event phase 'finish'"):
        event_name("chain", "finish")
    with pytest.raises(ValueError, match="needs a step kind"):
        event_name("", EventPhase.START)
    with pytest.raises(ValueError, match="needs a step kind"):
        event_name(None, EventPhase.END)


def test_check_event_order_names_an_unreadable_event() -> None:
    """check_event_order reports an event whose name is not an event name."""
    with pytest.raises(EventOrderError, match="event 0: 'on_chain_finish' is not an event name"):
        check_event_order([{"event": "on_chain_finish", "run_id": "r"}])


def test_stream_event_declares_the_guide_keys() -> None:
    """StreamEvent's keys are exactly the guide's, all required, in the guide's order."""
    assert list(get_type_hints(StreamEvent)) == GUIDE_KEYS
    assert StreamEvent.__required_keys__ == frozenset(GUIDE_KEYS)


async def _every_event(version: str) -> list[StreamEvent]:
    """All the events of one run that has every phase: lifecycle, custom, error."""

    async def report(text: str) -> str:
        await adispatch_custom_event("progress", {"text": text})
        return text

    def fail(text: str) -> str:
        raise KeyError(text)

    chain_ = (
        ChatPromptTemplate.from_template("say {x}")
        | ScriptedChatModel(replies=[HELLO_TOKENS])
        | StrOutputParser()
        | RunnableLambda(report)
        | RunnableLambda(fail)
    ).with_config(tags=["t"], metadata={"m": 1})
    events: list[StreamEvent] = []
    with pytest.raises(KeyError):
        async for event in chain_.astream_events({"x": "hi"}, version=version):
            events.append(event)
    check_event_order(events)
    return events


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_astream_events_keep_exactly_the_guide_keys(version: str) -> None:
    """astream_events v1 and v2 yield plain dicts with the guide's keys, in its order, every phase."""
    events = await _every_event(version)
    # Custom events are v2's only, as in langchain-core.
    custom = {EventPhase.CUSTOM} if version == "v2" else set()
    assert {phase_of(e) for e in events} == {*LIFECYCLE, *custom}
    for event in events:
        assert type(event) is dict
        assert list(event) == GUIDE_KEYS
        assert isinstance(event["event"], str) and isinstance(event["run_id"], str)
        assert isinstance(event["parent_ids"], list) and isinstance(event["tags"], list)
        assert isinstance(event["metadata"], dict)
        assert "t" in event["tags"] and event["metadata"] == {"m": 1}
    children = [e for e in events if e["run_id"] != events[0]["run_id"]]
    if version == "v1":
        assert all(e["parent_ids"] == [] for e in events)
    else:
        assert all(e["parent_ids"] == [events[0]["run_id"]] for e in children)


async def test_every_event_a_run_publishes_reads_back() -> None:
    """The kind and phase read from each published name are the step's kind and the event's phase."""
    events = await _every_event("v2")
    kinds = {e["name"]: kind_of(e) for e in events if phase_of(e) is EventPhase.START}
    assert kinds == {
        "RunnableSequence": "chain",
        "ChatPromptTemplate": "prompt",
        "ScriptedChatModel": "chat_model",
        "StrOutputParser": "parser",
        "report": "chain",
        "fail": "chain",
    }
    custom = [e for e in events if phase_of(e) is EventPhase.CUSTOM]
    assert [(e["name"], e["data"]) for e in custom] == [("progress", {"text": "".join(HELLO_TOKENS)})]
    errors = [e["name"] for e in events if phase_of(e) is EventPhase.ERROR]
    assert errors == ["fail", "RunnableSequence"]


async def test_a_drop_marker_reads_back_and_keeps_the_guide_keys() -> None:
    """A drop subscriber's on_events_dropped marker is a DROPPED event with the guide's keys."""
    bus = EventBus()
    chain_ = ScriptedChatModel(replies=[[f" t{i}" for i in range(20)]]) | StrOutputParser()
    async with bus.subscribe(capacity=2, overflow="drop") as stuck:
        await chain_.ainvoke("go", {"bus": bus})
        lagged = stuck.receive_available(100)
    markers = [e for e in lagged if phase_of(e) is EventPhase.DROPPED]
    assert markers and all(list(m) == GUIDE_KEYS and kind_of(m) is None for m in markers)
    assert sum(m["data"]["dropped"] for m in markers) == stuck.statistics().dropped > 0


def test_event_names_are_built_and_read_in_one_place() -> None:
    """No engine or nodes module but engine/_events.py formats or slices an event name."""
    root = pathlib.Path(__file__).resolve().parent.parent
    pattern = re.compile(r"""f["']on_|["']on_custom_event["']|["']on_events_dropped["']|rsplit\(["']_""")
    offenders = [
        str(path.relative_to(root))
        for package in ("engine", "nodes")
        for path in (root / package).rglob("*.py")
        if path.name != "_events.py" and pattern.search(path.read_text())
    ]
    assert offenders == []
