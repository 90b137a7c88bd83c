"""EventBus.subscribe(stream_events=...): all of a step's stream events, its first only, or none."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

from engine import EventBus, StampedEvent
from engine.testing import check_event_order
from nodes import AIMessageChunk, ChatPromptTemplate, ScriptedChatModel, StrOutputParser

PARROT = "Why did the parrot talk?"


def chain() -> Any:
    return (
        ChatPromptTemplate.from_template("tell me about {topic}")
        | ScriptedChatModel(replies=[PARROT])
        | StrOutputParser()
    )


def streams(events: list[StampedEvent]) -> dict[str, list[Any]]:
    by_step: dict[str, list[Any]] = {}
    for event in events:
        if event["event"].endswith("_stream"):
            by_step.setdefault(event["name"], []).append(event["data"]["chunk"])
    return by_step


async def test_first_takes_each_steps_first_chunk_and_all_every_chunk_on_one_run() -> None:
    """On one run, an "all" subscriber gets every chunk, a "first" one each step's first, "none" none."""
    bus = EventBus()
    with anyio.fail_after(10):
        async with (
            bus.subscribe(capacity=1000) as everything,
            bus.subscribe(capacity=1000, stream_events="first") as first,
            bus.subscribe(capacity=1000, stream_events="none") as none,
        ):
            assert await chain().ainvoke({"topic": "parrots"}, {"bus": bus}) == PARROT
            all_events: list[StampedEvent] = everything.receive_available(1000)  # type: ignore[assignment]
            first_events: list[StampedEvent] = first.receive_available(1000)  # type: ignore[assignment]
            none_events: list[StampedEvent] = none.receive_available(1000)  # type: ignore[assignment]
    every = streams(all_events)
    assert len(every["ScriptedChatModel"]) > 1
    assert streams(first_events) == {name: chunks[:1] for name, chunks in every.items()}
    assert streams(none_events) == {}
    # Starts, ends and their data are the same for all three; only stream events differ.
    lifecycle = [e for e in all_events if not e["event"].endswith("_stream")]
    for events in (first_events, none_events):
        check_event_order(events)
        assert [e for e in events if not e["event"].endswith("_stream")] == lifecycle
    assert first.statistics().stream_events == "first" and everything.statistics().stream_events == "all"


async def test_astream_events_keeps_every_chunk_beside_a_first_only_subscriber() -> None:
    """astream_events (the guide's shape) yields the same events with a "first" bus subscriber on the run."""
    plain = [e async for e in chain().astream_events({"topic": "parrots"}, version="v2")]
    bus = EventBus()
    with anyio.fail_after(10):
        async with bus.subscribe(capacity=1000, stream_events="first") as first:
            seen = [e async for e in chain().astream_events({"topic": "parrots"}, {"bus": bus}, version="v2")]
            taken: list[StampedEvent] = first.receive_available(1000)  # type: ignore[assignment]

    def shape(events: list[Any]) -> list[tuple[str, str, Any]]:
        # A model chunk's id names its run (lc_run--<run id>), which differs between runs.
        return [(e["event"], e["name"], without_id(e["data"].get("chunk"))) for e in events]

    assert shape(seen) == shape(plain)
    assert all("seq" not in e for e in seen)
    assert sum(1 for e in taken if e["event"].endswith("_stream")) == len(streams(taken)) > 0
    assert taken[0]["event"] == "on_chain_start" and taken[0]["seq"] == 1


async def test_a_replay_log_keeps_every_chunk_beside_a_first_only_subscriber() -> None:
    """A replay log of the run still gets every stream event when a "first" subscriber shares the bus."""
    bus = EventBus()
    with anyio.fail_after(10):
        async with bus.subscribe(capacity=1000, stream_events="first"):
            stream = chain().astream({"topic": "parrots"}, {"bus": bus})
            log = stream.replay_log(1000)
            chunks = [chunk async for chunk in stream]
            events = log.read().available(1000)
    assert streams(events)["StrOutputParser"] == chunks


@pytest.mark.parametrize("value", ["some", "", None, True])
def test_an_unknown_stream_events_value_is_refused(value: Any) -> None:
    """stream_events must be "all", "first" or "none"; anything else is refused, naming it."""
    with pytest.raises(ValueError, match="stream_events"):
        EventBus().subscribe(stream_events=value)


def without_id(chunk: Any) -> Any:
    """The chunk as compared across runs: a message chunk's run-named id taken off."""
    if isinstance(chunk, AIMessageChunk):
        return (chunk.content, chunk.chunk_position)
    return chunk


LONG_REPLY = " ".join(f"w{i}" for i in range(300))  # several blocks of the engine's running sums


def long_chain() -> Any:
    return (
        ChatPromptTemplate.from_template("tell me about {topic}")
        | ScriptedChatModel(replies=[LONG_REPLY])
        | StrOutputParser()
    )


def end_outputs(events: list[StampedEvent]) -> dict[str, Any]:
    """Each step's end output; a reply without its id (named after its run)."""
    outputs = {e["name"]: e["data"]["output"] for e in events if e["event"].endswith("_end")}
    reply = outputs["ScriptedChatModel"]
    assert isinstance(reply, AIMessageChunk) and reply.id
    outputs["ScriptedChatModel"] = attrs.evolve(reply, id=None)
    return outputs


@pytest.mark.parametrize("stream_events", ["first", "none"])
@pytest.mark.parametrize("how", ["astream", "ainvoke"])
async def test_steps_that_publish_no_later_chunk_still_end_with_their_whole_output(
    stream_events: Any, how: str
) -> None:
    """With only "first"/"none" subscribers, each step's end event carries its whole long
    output (as an "all" subscriber sees it), and the consumer gets every chunk."""
    bus = EventBus()
    with anyio.fail_after(10):
        async with bus.subscribe(capacity=10_000) as everything:
            assert await long_chain().ainvoke({"topic": "w"}, {"bus": bus}) == LONG_REPLY
            expected = end_outputs(everything.receive_available(10_000))  # type: ignore[arg-type]
        async with bus.subscribe(capacity=10_000, stream_events=stream_events) as partial:
            if how == "astream":
                got = [c async for c in long_chain().astream({"topic": "w"}, {"bus": bus})]
                assert len(got) > 200 and "".join(got) == LONG_REPLY
            else:
                assert await long_chain().ainvoke({"topic": "w"}, {"bus": bus}) == LONG_REPLY
            events: list[StampedEvent] = partial.receive_available(10_000)  # type: ignore[assignment]
    check_event_order(events)
    outputs = end_outputs(events)
    assert outputs["ScriptedChatModel"] == AIMessageChunk(content=LONG_REPLY, chunk_position="last")
    assert outputs == expected
