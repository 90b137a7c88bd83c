"""Lifecycle events: the guide's examples, filters, nesting, the bus and its policies."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio
import attrs
import pytest
from _guide import COUNTRIES_PROMPT, COUNTRIES_TOKENS, HELLO_TOKENS

from engine import (
    EventBus,
    RunCancelled,
    RunnableGenerator,
    RunnableLambda,
    RunnablePassthrough,
    adispatch_custom_event,
    chain,
    current_step,
)
from engine.testing import GatedSource, check_event_order
from nodes import (
    AIMessageChunk,
    BaseChatModel,
    BaseMessage,
    ChatPromptTemplate,
    InMemoryRetriever,
    JsonOutputParser,
    ScriptedChatModel,
    StrOutputParser,
    tool,
)


async def collect(stream: Any) -> list[dict[str, Any]]:
    events = [event async for event in stream]
    check_event_order(events)
    return events


def names(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["event"], e["name"]) for e in events]


async def test_chat_model_events_like_the_guide() -> None:
    """A model alone: start with the raw input, one stream event per token, end with the sum only."""
    model = ScriptedChatModel(replies=[HELLO_TOKENS], name="ChatAnthropic")
    events = await collect(model.astream_events("hello", version="v1"))
    assert names(events[:2]) == [
        ("on_chat_model_start", "ChatAnthropic"),
        ("on_chat_model_stream", "ChatAnthropic"),
    ]
    assert events[0]["data"] == {"input": "hello"}
    assert events[0]["tags"] == [] and events[0]["metadata"] == {} and events[0]["parent_ids"] == []
    # Each chunk carries the reply's id (langchain-core's "lc_run-" and the run id); the last is marked.
    reply_id = f"lc_run--{events[0]['run_id']}"
    assert events[1]["data"] == {"chunk": AIMessageChunk(content=" Hello", id=reply_id)}
    assert repr(events[1]["data"]["chunk"]) == f"AIMessageChunk(content=' Hello', id={reply_id!r})"
    assert [e["event"] for e in events[1:-1]] == ["on_chat_model_stream"] * len(HELLO_TOKENS)
    assert events[-2]["data"]["chunk"].chunk_position == "last"
    end = events[-1]
    assert end["event"] == "on_chat_model_end"
    assert end["data"] == {
        "output": AIMessageChunk(content="".join(HELLO_TOKENS), id=reply_id, chunk_position="last")
    }
    assert len({e["run_id"] for e in events}) == 1


async def test_model_and_json_parser_events_order() -> None:
    """Three starts, then model and parser chunks interleaved in pipeline order, then ends."""
    model = ScriptedChatModel(replies=[COUNTRIES_TOKENS])
    chain_ = model | JsonOutputParser()
    events = await collect(chain_.astream_events(COUNTRIES_PROMPT, version="v2"))
    assert names(events[:3]) == [
        ("on_chain_start", "RunnableSequence"),
        ("on_chat_model_start", "ScriptedChatModel"),
        ("on_parser_start", "JsonOutputParser"),
    ]
    assert events[0]["data"] == {"input": COUNTRIES_PROMPT}
    assert events[1]["tags"] == ["seq:step:1"] and events[2]["tags"] == ["seq:step:2"]
    assert events[2]["data"] == {}
    root = events[0]["run_id"]
    assert events[1]["parent_ids"] == [root] and events[2]["parent_ids"] == [root]
    assert names(events[-3:]) == [
        ("on_chat_model_end", "ScriptedChatModel"),
        ("on_parser_end", "JsonOutputParser"),
        ("on_chain_end", "RunnableSequence"),
    ]
    # The parser's first snapshot comes right after the model chunk that completed it.
    kinds = [e["event"] for e in events]
    first_parser = kinds.index("on_parser_stream")
    assert events[first_parser - 1]["event"] == "on_chat_model_stream"
    assert events[first_parser - 1]["data"]["chunk"].content == "\n{"
    assert events[first_parser]["data"]["chunk"] == {}
    # Each parser snapshot is followed by the sequence's stream event for the same chunk.
    assert events[first_parser + 1]["event"] == "on_chain_stream"
    assert events[-1]["data"]["output"]["countries"][2]["name"] == "Japan"


async def test_filters_by_name_type_and_tag() -> None:
    """include_names, include_types and include_tags keep only the matching steps."""
    model = ScriptedChatModel(replies=[COUNTRIES_TOKENS])
    chain_ = model.with_config({"run_name": "model"}) | JsonOutputParser().with_config(
        {"run_name": "my_parser"}
    )
    by_name = await collect(
        chain_.astream_events(COUNTRIES_PROMPT, version="v1", include_names=["my_parser"])
    )
    assert {e["name"] for e in by_name} == {"my_parser"}
    assert by_name[0] == {**by_name[0], "event": "on_parser_start", "tags": ["seq:step:2"], "data": {}}
    by_type = await collect(
        chain_.astream_events(COUNTRIES_PROMPT, version="v1", include_types=["chat_model"])
    )
    assert {(e["name"], e["event"][:13]) for e in by_type} == {("model", "on_chat_model")}
    tagged = (model | JsonOutputParser()).with_config({"tags": ["my_chain"]})
    by_tag = await collect(tagged.astream_events(COUNTRIES_PROMPT, version="v1", include_tags=["my_chain"]))
    assert names(by_tag[:3]) == [
        ("on_chain_start", "RunnableSequence"),
        ("on_chat_model_start", "ScriptedChatModel"),
        ("on_parser_start", "JsonOutputParser"),
    ]
    assert by_tag[0]["tags"] == ["my_chain"]
    assert by_tag[1]["tags"] == ["seq:step:1", "my_chain"]
    assert by_tag[2]["tags"] == ["seq:step:2", "my_chain"]


async def test_exclude_filters_remove_after_includes() -> None:
    """Excludes remove events that the includes kept."""
    model = ScriptedChatModel(replies=[HELLO_TOKENS])
    chain_ = (model | StrOutputParser()).with_config(tags=["t"])
    events = await collect(chain_.astream_events("x", include_tags=["t"], exclude_types=["chain"]))
    assert {e["event"].split("_")[1] for e in events} == {"chat", "parser"}
    with pytest.raises(ValueError, match="unknown step type 'model'"):
        chain_.astream_events("x", include_types=["model"])


async def test_non_streaming_function_still_streams_events() -> None:
    """A function on finalized input breaks astream, yet the model and parser events stream live."""

    def extract(inputs: Any) -> list[str]:
        return [c.get("name") for c in inputs["countries"]]

    model = ScriptedChatModel(replies=[COUNTRIES_TOKENS])
    chain_ = model | JsonOutputParser() | extract
    assert [c async for c in chain_.astream(COUNTRIES_PROMPT)] == [["France", "Spain", "Japan"]]
    events = await collect(chain_.astream_events(COUNTRIES_PROMPT))
    kinds = [e["event"] for e in events]
    assert kinds.count("on_chat_model_stream") == len(COUNTRIES_TOKENS)
    assert kinds.count("on_parser_stream") > 10
    assert kinds.index("on_parser_stream") < kinds.index("on_chat_model_end")


async def test_tool_propagates_nested_runs_without_callbacks() -> None:
    """The guide's bad_tool: a runnable invoked inside a sync tool nests under it."""
    reverse_word = RunnableLambda(lambda word: word[::-1], func_name="reverse_word")

    @tool
    def bad_tool(word: str) -> str:
        """Custom tool that doesn't propagate callbacks."""
        return reverse_word.invoke(word)

    # reverse_word is invoked: no stream event of its own (as the guide prints).
    nested = [
        ("on_tool_start", "bad_tool"),
        ("on_chain_start", "reverse_word"),
        ("on_chain_end", "reverse_word"),
    ]
    events = await collect(bad_tool.astream_events("hello"))
    # v2: a plain tool's one value is on its end event, with no stream event.
    assert names(events) == [*nested, ("on_tool_end", "bad_tool")]
    assert events[0]["data"] == {"input": "hello"}
    assert events[1]["parent_ids"] == [events[0]["run_id"]]
    assert events[2]["data"] == {"output": "olleh", "input": "hello"}
    assert events[-1]["data"] == {"output": "olleh"}
    # v1 (the guide's): the root's output is streamed too.
    events = await collect(bad_tool.astream_events("hello", version="v1"))
    assert names(events) == [*nested, ("on_tool_stream", "bad_tool"), ("on_tool_end", "bad_tool")]


@pytest.mark.parametrize("style", ["lambda", "chain"])
async def test_lambda_and_chain_propagate_nested_runs(style: str) -> None:
    """reverse_and_double as a RunnableLambda or @chain shows reverse_word nested inside, as the guide prints."""
    reverse_word = RunnableLambda(lambda word: word[::-1], func_name="reverse_word")

    async def reverse_and_double(word: str) -> str:
        return await reverse_word.ainvoke(word) * 2

    runnable = RunnableLambda(reverse_and_double) if style == "lambda" else chain(reverse_and_double)
    assert await runnable.ainvoke("1234") == "43214321"
    events = await collect(runnable.astream_events("1234", version="v1"))
    # reverse_word is invoked: its start and end, no stream event (the guide's output).
    assert names(events) == [
        ("on_chain_start", "reverse_and_double"),
        ("on_chain_start", "reverse_word"),
        ("on_chain_end", "reverse_word"),
        ("on_chain_stream", "reverse_and_double"),
        ("on_chain_end", "reverse_and_double"),
    ]
    assert events[1]["data"] == {"input": "1234"}
    assert events[2]["data"] == {"input": "1234", "output": "4321"}
    assert events[3]["data"] == {"chunk": "43214321"}
    assert events[4]["data"] == {"output": "43214321"}


async def test_nested_runs_inherit_tags_and_metadata() -> None:
    """A nested run carries its caller's tags and metadata and is under its run id."""
    inner = RunnableLambda(lambda x: x + 1, func_name="inner")

    async def outer(x: int) -> int:
        return await inner.ainvoke(x)

    runnable = RunnableLambda(outer).with_config(tags=["outer-tag"], metadata={"user": "u1"})
    events = await collect(runnable.astream_events(1))
    inner_start = next(e for e in events if e["name"] == "inner")
    assert "outer-tag" in inner_start["tags"]
    assert inner_start["metadata"] == {"user": "u1"}


async def test_parallel_branch_tags_and_names() -> None:
    """Parallel branches carry map:key tags and the step is named after its keys."""
    retriever = InMemoryRetriever.from_texts(["harrison worked at kensho", "harrison likes spicy food"])
    step = {"context": retriever.with_config(run_name="Docs"), "question": RunnablePassthrough()}
    chain_ = step | ChatPromptTemplate.from_template("{context} {question}")
    events = await collect(chain_.astream_events("where did harrison work?"))
    starts = {e["name"]: e for e in events if e["event"].endswith("_start")}
    assert "RunnableParallel<context,question>" in starts
    assert starts["Docs"]["tags"] == ["map:key:context"]
    assert starts["Docs"]["event"] == "on_retriever_start"
    assert starts["Docs"]["data"] == {"input": {"query": "where did harrison work?"}}
    docs_end = next(e for e in events if e["event"] == "on_retriever_end")
    assert docs_end["data"]["output"][0].page_content == "harrison worked at kensho"
    prompt_end = next(e for e in events if e["event"] == "on_prompt_end")
    assert set(prompt_end["data"]["input"]) == {"context", "question"}


async def test_error_events_up_to_the_root_then_the_exception() -> None:
    """A failing step ends with error events up to the root, then its exception is raised."""

    def fail(value: Any) -> Any:
        raise KeyError("missing")

    model = ScriptedChatModel(replies=[HELLO_TOKENS])
    chain_ = model | StrOutputParser() | fail
    events: list[dict[str, Any]] = []
    with pytest.raises(KeyError, match="missing"):
        async for event in chain_.astream_events("x"):
            events.append(event)
    check_event_order(events)
    assert names(events[-2:]) == [("on_chain_error", "fail"), ("on_chain_error", "RunnableSequence")]
    assert isinstance(events[-1]["data"]["error"], KeyError)


@pytest.mark.parametrize("kind", ["chat_model", "parser", "prompt", "retriever", "tool", "chain"])
async def test_every_kind_has_an_error_event(kind: str) -> None:
    """Each step kind publishes on_<kind>_error when it fails on bad input."""

    @tool
    def needs_int(x: int) -> int:
        """A tool."""
        return x

    failing = {
        "chat_model": (ScriptedChatModel(replies=["x"]), 12345),
        "parser": (JsonOutputParser(), "not json at all"),
        "prompt": (ChatPromptTemplate.from_template("{a} {b}"), {"a": 1}),
        "retriever": (InMemoryRetriever.from_texts(["a"]), 3),
        "tool": (needs_int, "nope"),
        "chain": (RunnableLambda(lambda x: 1 / x), 0),
    }
    runnable, bad_input = failing[kind]
    events: list[dict[str, Any]] = []
    with pytest.raises(Exception) as info:
        async for event in runnable.astream_events(bad_input):
            events.append(event)
    check_event_order(events)
    assert events[-1]["event"] == f"on_{kind}_error"
    assert events[-1]["data"]["error"] is info.value


async def test_custom_events_from_inside_a_step() -> None:
    """dispatch_custom_event publishes on_custom_event with the step's run id."""

    async def work(x: int) -> int:
        await adispatch_custom_event("progress", {"done": 50})
        return x

    events = await collect(RunnableLambda(work).astream_events(1))
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert custom == [{**custom[0], "name": "progress", "data": {"done": 50}}]
    assert custom[0]["run_id"] == events[0]["run_id"]


@attrs.define(eq=False)
class _ReportingModel(BaseChatModel):
    """A user's own chat model: it reports progress from inside its stream."""

    def get_name(self) -> str:
        return "ReportingModel"

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        for token in ["a", "b"]:
            await adispatch_custom_event("token", token)
            yield AIMessageChunk.from_text(token)


async def test_custom_events_from_a_fused_stage_name_that_stage() -> None:
    """A model fused with its parser into one actor still runs its own code as its step:
    its custom events carry the model's run id, not the parser's."""

    async def upper(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for chunk in chunks:
            await adispatch_custom_event("seen", chunk)
            yield chunk.upper()

    events = await collect((_ReportingModel() | StrOutputParser() | upper).astream_events("go"))
    run_ids = {e["name"]: e["run_id"] for e in events if e["event"].endswith("_start")}
    custom = [(e["name"], e["data"], e["run_id"]) for e in events if e["event"] == "on_custom_event"]
    assert custom == [
        ("token", "a", run_ids["ReportingModel"]),
        ("seen", "a", run_ids["upper"]),
        ("token", "b", run_ids["ReportingModel"]),
        ("seen", "b", run_ids["upper"]),
    ]


async def test_end_events_of_fused_stages_carry_whole_inputs_and_outputs() -> None:
    """Fused stages share one log of the chunks between them; every end event still
    carries its own step's whole input and output."""
    model = ScriptedChatModel(replies=[[f"t{i} " for i in range(600)]])
    text = "".join(f"t{i} " for i in range(600))
    events = await collect((model | StrOutputParser() | RunnableGenerator(_shout)).astream_events("go"))
    ends = {e["name"]: e["data"] for e in events if e["event"].endswith("_end")}
    assert ends["ScriptedChatModel"]["output"].content == text
    assert ends["StrOutputParser"]["input"].content == text
    assert ends["StrOutputParser"]["output"] == text
    assert ends["_shout"] == {"input": text, "output": text.upper()}
    assert ends["RunnableSequence"] == {"output": text.upper()}  # the root of the stream


async def _shout(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    async for chunk in chunks:
        yield chunk.upper()


async def test_several_subscribers_and_a_drop_subscriber_that_never_reads() -> None:
    """A never-reading "drop" subscriber loses events but neither blocks the run nor others."""
    bus = EventBus()
    model = ScriptedChatModel(replies=[[f" t{i}" for i in range(300)]])
    chain_ = model | StrOutputParser()
    async with bus.subscribe(capacity=4, overflow="drop") as stuck, bus.subscribe(capacity=8) as monitor:
        seen: list[dict[str, Any]] = []

        async def watch() -> None:
            async for event in monitor:
                seen.append(event)
                if event["event"] == "on_chain_end" and not event["parent_ids"]:
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            events = await collect(chain_.astream_events("go", config={"bus": bus}))
        dropped = stuck.statistics().dropped
        assert dropped > 0
        # Past the limit: the three steps' ends, each perhaps after a marker of the drops before it.
        assert stuck.statistics().buffered <= 4 + 2 * 3
        lagged = stuck.receive_available(100)
        markers = [e for e in lagged if e["event"] == "on_events_dropped"]
        kept = [e for e in lagged if e["event"] != "on_events_dropped"]
        assert markers and sum(m["data"]["dropped"] for m in markers) == dropped
        assert len(kept) + dropped == len(events)
        # Every step whose start the stuck subscriber got, it also saw end, the run last.
        started = {e["run_id"] for e in kept if e["event"].endswith("_start")}
        ended = {e["run_id"] for e in kept if e["event"].endswith(("_end", "_error"))}
        assert started and started == ended
        assert kept[-1]["event"] == "on_chain_end" and not kept[-1]["parent_ids"]
    check_event_order(seen)
    assert [e["event"] for e in seen] == [e["event"] for e in events]


async def test_a_cancelled_receive_leaves_the_drop_marker_to_be_read() -> None:
    """Reading exactly what is buffered, then a receive cancelled where it would report
    the gap, loses nothing: the marker, with the whole count, is there for the next read."""
    bus = EventBus()
    source: GatedSource[int] = GatedSource(range(20))
    source.release(10)
    async with (
        bus.subscribe(capacity=1, overflow="drop") as lossy,
        (source | RunnablePassthrough()).astream(None, {"bus": bus}) as chunks,
    ):
        for _ in range(10):
            await chunks.__anext__()
        await anyio.wait_all_tasks_blocked()  # mid-run: no end yet to carry a marker
        dropped = lossy.statistics().dropped
        assert dropped > 0
        buffered = lossy.statistics().buffered
        kept = lossy.receive_available(buffered)  # what the buffer held: the gap comes next
        assert len(kept) == buffered and all(e["event"] != "on_events_dropped" for e in kept)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await lossy.receive()  # cancelled at its cancel point, before taking anything
        assert scope.cancelled_caught
        (marker,) = lossy.receive_available(1)
        assert marker["event"] == "on_events_dropped" and marker["data"]["dropped"] == dropped
        source.release_all()


async def test_blocking_subscriber_slows_the_pipeline() -> None:
    """A full "block" subscriber holds the producing actor until it reads."""
    bus = EventBus()
    source: GatedSource[int] = GatedSource(range(50))
    source.release_all()
    async with (
        bus.subscribe(capacity=2, overflow="block") as slow,
        (source | StrOutputParser()).astream(None, {"bus": bus}) as chunks,
    ):
        await anyio.wait_all_tasks_blocked()
        assert source.produced < 10
        assert slow.statistics().waiting_publishers == 1
        assert chunks.statistics()[0].sent == 0


async def test_no_subscriber_builds_no_event() -> None:
    """With no subscriber (or none matching) no step of a run builds an event."""
    runs: list[Any] = []

    async def note_run(text: str) -> str:
        step = current_step()
        assert step is not None
        runs.append(step.scope)  # shared by the run's steps; counts those that built an event
        return text

    chain_ = ScriptedChatModel(replies=[HELLO_TOKENS]) | StrOutputParser() | RunnableLambda(note_run)
    expected = "".join(HELLO_TOKENS)
    assert await chain_.ainvoke("x") == expected
    bus = EventBus()
    assert await chain_.ainvoke("x", {"bus": bus}) == expected
    async with bus.subscribe(include_names=["nothing-has-this-name"]) as sub:
        assert await chain_.ainvoke("x", {"bus": bus}) == expected
        assert sub.statistics().delivered == 0
    assert [run.steps_with_events for run in runs] == [0, 0, 0]
    # The count counts: a subscriber of the model only, then one of every step.
    async with bus.subscribe(include_types=["chat_model"]):
        assert await chain_.ainvoke("x", {"bus": bus}) == expected
    async with bus.subscribe():
        assert await chain_.ainvoke("x", {"bus": bus}) == expected
    assert [run.steps_with_events for run in runs[3:]] == [1, 4]


async def test_cancelling_an_event_consumer_stops_the_run() -> None:
    """Breaking out of astream_events cancels the run's actors."""
    source: GatedSource[int] = GatedSource(range(100))
    source.release(5)
    async with (source | RunnablePassthrough()).astream_events(None) as events:
        async for event in events:
            if event["event"] == "on_chain_stream":
                break
    assert source.finished == 1 and source.cancelled == 1


async def test_cancelled_run_reports_error_events_to_a_monitor() -> None:
    """A monitor sees every step of a cancelled run end with a RunCancelled error."""
    bus = EventBus()
    source: GatedSource[int] = GatedSource(range(100))
    source.release(3)
    async with bus.subscribe(capacity=100) as monitor:
        async with (source | RunnablePassthrough()).astream(None, {"bus": bus}) as chunks:
            async for _ in chunks:
                break
        events = monitor.receive_available(1000)
    check_event_order(events)
    errors = [e for e in events if e["event"].endswith("_error")]
    assert len(errors) == 3
    assert all(isinstance(e["data"]["error"], RunCancelled) for e in errors)


async def test_astream_log_patches_and_states() -> None:
    """astream_log streams JSON-patch ops whose sum is the final state; diff=False gives states."""
    chain_ = ScriptedChatModel(replies=[HELLO_TOKENS]) | StrOutputParser()
    patches = [p async for p in chain_.astream_log("x")]
    assert patches[0].ops[0]["op"] == "replace"
    total = patches[0]
    for patch in patches[1:]:
        total = total + patch
    state = total.state  # type: ignore[attr-defined]
    assert state["final_output"] == "".join(HELLO_TOKENS)
    assert state["streamed_output"] == HELLO_TOKENS
    assert set(state["logs"]) == {"ScriptedChatModel", "StrOutputParser"}
    assert state["logs"]["StrOutputParser"]["final_output"] == "".join(HELLO_TOKENS)
    logs = [log async for log in chain_.astream_log("x", diff=False, include_types=["parser"])]
    assert logs[-1].state["final_output"] == "".join(HELLO_TOKENS)  # type: ignore[attr-defined]
    assert set(logs[-1].state["logs"]) == {"StrOutputParser"}  # type: ignore[attr-defined]


async def test_unknown_version_is_rejected_at_once() -> None:
    """astream_events with an unknown version raises before anything runs."""
    with pytest.raises(ValueError, match="unknown astream_events version 'v3'"):
        StrOutputParser().astream_events("x", version="v3")


async def test_generator_output_end_event_carries_input_and_output() -> None:
    """A transform's input is unknown at start, so it appears on its end event."""

    async def upper(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for chunk in chunks:
            yield chunk.upper()

    chain_ = ScriptedChatModel(replies=[["a", "b"]]) | StrOutputParser() | RunnableGenerator(upper)
    events = await collect(chain_.astream_events("x"))
    upper_start = next(e for e in events if e["name"] == "upper" and e["event"] == "on_chain_start")
    upper_end = next(e for e in events if e["name"] == "upper" and e["event"] == "on_chain_end")
    assert upper_start["data"] == {}
    assert upper_end["data"] == {"input": "ab", "output": "AB"}


@pytest.mark.parametrize("call", ["invoke", "ainvoke", "stream", "astream", "batch", "abatch"])
async def test_every_call_form_nests_under_the_caller(call: str) -> None:
    """Runnables called inside a generator step, by any API, are nested under it."""
    inner = RunnableLambda(lambda x: x * 2, func_name="inner")

    async def outer(chunks: AsyncIterator[int]) -> AsyncIterator[Any]:
        async for x in chunks:
            if call == "ainvoke":
                yield await inner.ainvoke(x)
            elif call == "astream":
                async for y in inner.astream(x):
                    yield y
            elif call == "abatch":
                yield await inner.abatch([x, x])
            else:
                # The synchronous forms, from a worker thread, join the caller's run.
                def sync_call(value: int) -> Any:
                    if call == "invoke":
                        return inner.invoke(value)
                    if call == "stream":
                        return list(inner.stream(value))
                    return inner.batch([value, value])

                yield await anyio.to_thread.run_sync(sync_call, x)

    runnable = RunnableGenerator(outer).with_config(tags=["outer"])
    events = await collect(runnable.astream_events(3))
    root = events[0]["run_id"]
    inner_starts = [e for e in events if e["name"] == "inner" and e["event"] == "on_chain_start"]
    assert inner_starts
    assert all(e["parent_ids"] == [root] for e in inner_starts)
    assert all("outer" in e["tags"] for e in inner_starts)


async def test_nested_astream_events_sees_only_its_own_run() -> None:
    """astream_events called inside a step reports that nested run only."""
    inner = RunnableLambda(lambda x: x + 1, func_name="inner")
    seen: list[list[str]] = []

    async def outer(x: int) -> int:
        events = [e async for e in inner.astream_events(x)]
        seen.append([e["name"] for e in events])
        return x

    async for _ in RunnableLambda(outer).astream_events(1):
        pass
    assert seen == [["inner", "inner", "inner"]]


async def test_nested_call_in_a_fused_first_stage_nests_under_that_stage() -> None:
    """In an observed sequence, a runnable called by the first stage is its child."""
    inner = RunnableLambda(lambda x: x, func_name="inner")

    async def first(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for chunk in chunks:
            yield await inner.ainvoke(chunk)

    async def second(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for chunk in chunks:
            yield chunk

    events = await collect((RunnableGenerator(first) | second).astream_events("a"))
    first_id = next(e["run_id"] for e in events if e["name"] == "first")
    inner_start = next(e for e in events if e["name"] == "inner")
    assert inner_start["parent_ids"][-1] == first_id
