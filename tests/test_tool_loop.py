"""ToolLoop: a model, the tools it calls (each as soon as its arguments are complete), again.

Offline with scripted models, on trio and asyncio. ``StepModel`` streams exactly the
chunks a test gives and can wait for a test's event before a chunk, so a test can hold
the model in the middle of a message and look at what the loop has done meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any, ClassVar, Self

import anthropic  # noqa: F401  (imported at collection: its first import takes seconds, inside GUARD)
import anyio
import attrs
import pytest
from anthropic_server import (
    AnthropicServer,
    ErrorReply,
    MessageStream,
    TextBlock,
    TextStream,
    ToolUse,
    ToolUseBlock,
    ToolUseStream,
)

from engine import RunnableLambda
from engine.testing import assert_run_cleaned_up, check_event_order, cleanup_guard
from nodes import (
    AIMessage,
    AIMessageChunk,
    BaseChatModel,
    BaseMessage,
    ChatAnthropic,
    HumanMessage,
    ScriptedChatModel,
    ToolCall,
    ToolCallChunk,
    ToolException,
    ToolLoop,
    ToolLoopError,
    ToolLoopLimitError,
    ToolMessage,
    tool,
)

GUARD = 10.0  # seconds; bounds a wait that must end, never paces a test


def call_chunks(index: int, name: str, id: str | None, args: dict[str, Any] | str) -> list[AIMessageChunk]:
    """A tool call as a model streams it: name and id first, then the JSON arguments in two pieces."""
    raw = args if isinstance(args, str) else json.dumps(args)
    half = len(raw) // 2
    return [
        AIMessageChunk(content="", tool_call_chunks=[ToolCallChunk(name=name, id=id, args="", index=index)]),
        AIMessageChunk(content="", tool_call_chunks=[ToolCallChunk(args=raw[:half], index=index)]),
        AIMessageChunk(content="", tool_call_chunks=[ToolCallChunk(args=raw[half:], index=index)]),
    ]


def text_chunks(text: str) -> list[AIMessageChunk]:
    return [AIMessageChunk(content=word) for word in text.split("|")]


@attrs.define(eq=False)
class StepModel(BaseChatModel):
    """Streams ``replies[n]`` on call n (raising an exception found there); waits for
    ``gates[(n, i)]`` before item i of call n. Takes ``tools`` as a call argument and
    records them in place (not on a copy), so the test's handle sees the loop's calls."""

    call_arguments: ClassVar[Mapping[str, str]] = {"tools": "tools"}

    replies: list[list[AIMessageChunk | Exception]]
    gates: dict[tuple[int, int], anyio.Event] = attrs.field(factory=dict)
    calls: int = 0
    produced: int = 0
    received: list[list[BaseMessage]] = attrs.field(factory=list)
    stopped_early: int = 0
    tools: list[str] = attrs.field(factory=list)

    def with_call_arguments(self, arguments: Mapping[str, Any]) -> Self:
        self.tools = [item.tool_name for item in arguments["tools"]]
        return self

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        number = self.calls
        self.calls += 1
        self.received.append(messages)
        finished = False
        try:
            for position, chunk in enumerate(self.replies[number]):
                gate = self.gates.get((number, position))
                if gate is not None:
                    await gate.wait()
                if isinstance(chunk, Exception):
                    raise chunk
                self.produced += 1
                yield chunk
            finished = True
        finally:
            if not finished:
                self.stopped_early += 1


@tool
async def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def local_time(city: str) -> str:
    """The time in a city."""
    return f"noon in {city}"


def two_calls_then(answer: str) -> ScriptedChatModel:
    calls = [
        ToolCall(name="weather", args={"city": "Paris"}, id="c1"),
        ToolCall(name="local_time", args={"city": "Paris"}, id="c2"),
    ]
    # Replies with ids, so that transcripts of different runs compare equal (a reply without
    # one would carry its run's id).
    return ScriptedChatModel(
        [AIMessage("Let me check.", tool_calls=calls, id="msg_1"), AIMessage(answer, id="msg_2")]
    )


# -- what it does ---------------------------------------------------------------------


async def test_the_loop_streams_every_turn_the_answers_between_and_the_transcript_last() -> None:
    """astream yields turn 1's chunks, both ToolMessages, turn 2's chunks, then the transcript."""
    loop = ToolLoop(two_calls_then("Sunny at noon."), [weather, local_time])
    *chunks, transcript = [chunk async for chunk in loop.astream("Weather in Paris?")]
    answers = [chunk for chunk in chunks if isinstance(chunk, ToolMessage)]
    assert sorted(answers, key=lambda answer: answer.tool_call_id) == [
        ToolMessage("sunny in Paris", tool_call_id="c1", name="weather"),
        ToolMessage("noon in Paris", tool_call_id="c2", name="local_time"),
    ]
    first = chunks.index(answers[0])
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks[:first])
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks[first + 2 :])
    assert "".join(chunk.text for chunk in chunks[first + 2 :]) == "Sunny at noon."
    assert isinstance(transcript, list) and transcript[-1] == AIMessage("Sunny at noon.", id="msg_2")


async def test_ainvoke_returns_the_transcript_and_the_model_sees_the_answers() -> None:
    """ainvoke gives [AIMessage, answers in call order, AIMessage]; turn 2's input is the whole conversation."""
    loop = ToolLoop(two_calls_then("Sunny at noon."), [weather, local_time])
    # The loop's model is the scripted model with the loop's tools bound (a copy).
    model = loop.model
    assert isinstance(model, ScriptedChatModel)
    transcript = await loop.ainvoke([("system", "Be brief."), ("human", "Weather in Paris?")])
    assert [type(message).__name__ for message in transcript] == [
        "AIMessage",
        "ToolMessage",
        "ToolMessage",
        "AIMessage",
    ]
    first = transcript[0]
    assert isinstance(first, AIMessage) and first.text == "Let me check."
    assert [call.id for call in first.tool_calls] == ["c1", "c2"]
    assert [answer.tool_call_id for answer in transcript[1:3]] == ["c1", "c2"]
    assert transcript[-1] == AIMessage("Sunny at noon.", id="msg_2")
    assert model.received[1] == [*model.received[0], *transcript[:3]]
    assert len(model.received[1]) == 5
    offered = [weather.to_anthropic(), local_time.to_anthropic()]
    assert [arguments["tools"] for arguments in model.received_arguments] == [offered, offered]


def test_invoke_and_a_string_input() -> None:
    """The sync API and a plain string work as for any runnable."""
    loop = ToolLoop(two_calls_then("Done."), [weather, local_time])
    transcript = loop.invoke("Weather?")
    assert transcript[-1].text == "Done."


async def test_a_reply_without_tool_calls_ends_the_loop_at_once() -> None:
    """One turn, no tool run: the transcript is that one message."""
    loop = ToolLoop(ScriptedChatModel(["No tools needed."]), [weather])
    transcript = await loop.ainvoke("hi")
    assert transcript == [AIMessage("No tools needed.", id=transcript[0].id)]
    assert transcript[0].id is not None and transcript[0].id.startswith("lc_run--")
    assert isinstance(loop.model, ScriptedChatModel) and loop.model.calls == 1


async def test_a_tool_starts_before_the_message_has_ended() -> None:
    """Call 1 runs and its answer streams out while the model still streams call 2's arguments."""
    gate = anyio.Event()
    ran: list[str] = []

    @tool
    async def lookup(city: str) -> str:
        """Look a city up."""
        ran.append(city)
        return city.upper()

    first, second = (
        call_chunks(0, "lookup", "c1", {"city": "Oslo"}),
        call_chunks(1, "lookup", "c2", {"city": "Rome"}),
    )
    # The model stops after call 2's first argument piece until the test opens the gate.
    model = StepModel([[*first, *second], text_chunks("done")], gates={(0, 5): gate})
    loop = ToolLoop(model, [lookup])
    seen: list[Any] = []
    answered = anyio.Event()

    async def consume() -> None:
        async for chunk in loop.astream("go"):
            seen.append(chunk)
            if isinstance(chunk, ToolMessage):
                answered.set()

    async with cleanup_guard():
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(consume)
                await answered.wait()
                # The model is held mid-message (5 of 6 chunks), call 2 is incomplete.
                assert (model.produced, ran) == (5, ["Oslo"])
                assert ToolMessage("OSLO", tool_call_id="c1", name="lookup") in seen
                gate.set()
    assert ran == ["Oslo", "Rome"]
    assert model.received[1][-1] == ToolMessage("ROME", tool_call_id="c2", name="lookup")


@pytest.mark.trio
async def test_the_transcript_holds_when_an_answer_streams_out_mid_message(autojump_clock: Any) -> None:
    """An answer that streams out before its turn's message ended still lands after that message."""
    model = two_calls_then("Sunny at noon.")
    model.delay = 1.0  # virtual seconds per chunk: the instant tools answer between two chunks
    loop = ToolLoop(model, [weather, local_time])
    chunks = [chunk async for chunk in loop.astream("Weather?")]
    first_answer = next(i for i, chunk in enumerate(chunks) if isinstance(chunk, ToolMessage))
    assert chunks[first_answer + 1].tool_call_chunks  # call 2's arguments came after call 1's answer
    transcript = await loop.ainvoke("Weather?")
    assert [type(message).__name__ for message in transcript] == [
        "AIMessage",
        "ToolMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert [call.id for call in transcript[0].tool_calls] == ["c1", "c2"]


async def test_the_calls_of_one_turn_run_concurrently() -> None:
    """Two tools that each wait for the other to start both finish (they would deadlock in turn)."""
    a_started, b_started = anyio.Event(), anyio.Event()

    @tool
    async def a(x: int) -> str:
        """A."""
        a_started.set()
        await b_started.wait()
        return "a"

    @tool
    async def b(x: int) -> str:
        """B."""
        b_started.set()
        await a_started.wait()
        return "b"

    model = StepModel(
        [[*call_chunks(0, "a", "c1", {"x": 1}), *call_chunks(1, "b", "c2", {"x": 2})], text_chunks("ok")]
    )
    with anyio.fail_after(GUARD):
        transcript = await ToolLoop(model, [a, b]).ainvoke("go")
    assert [message.text for message in transcript] == ["", "a", "b", "ok"]


# -- failures -------------------------------------------------------------------------


async def test_a_failing_tool_ends_the_loop_with_its_error_and_stops_the_rest() -> None:
    """By default a tool's exception is raised as itself (noted); the turn's model call and other tool stop."""
    gate = anyio.Event()
    slow_cancelled = anyio.Event()

    @tool
    async def slow(x: int) -> str:
        """Slow."""
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            slow_cancelled.set()
            raise
        return "never"

    @tool
    async def broken(x: int) -> str:
        """Broken."""
        raise ValueError("the disk is full")

    third = call_chunks(2, "slow", "c3", {"x": 3})
    reply = [*call_chunks(0, "slow", "c1", {"x": 1}), *call_chunks(1, "broken", "c2", {"x": 2}), *third]
    # Call 3's start completes call 2; the model then waits, so the failure has a model call to cancel.
    model = StepModel([reply], gates={(0, 7): gate})
    async with cleanup_guard():
        with anyio.fail_after(GUARD), pytest.raises(ValueError, match="the disk is full") as caught:
            await ToolLoop(model, [slow, broken]).ainvoke("go")
    assert "raised by the call 'c2' of 'broken' in turn 1 of ToolLoop" in caught.value.__notes__
    assert slow_cancelled.is_set()
    assert model.stopped_early == 1 and not gate.is_set()


async def test_handle_tool_errors_reports_the_failure_to_the_model() -> None:
    """With handle_tool_errors=True the error becomes an error ToolMessage and the loop goes on."""

    @tool
    def broken(x: int) -> str:
        """Broken."""
        raise ValueError("the disk is full")

    model = StepModel([call_chunks(0, "broken", "c1", {"x": 1}), text_chunks("Sorry.")])
    transcript = await ToolLoop(model, [broken], handle_tool_errors=True).ainvoke("go")
    error = ToolMessage("ValueError: the disk is full", tool_call_id="c1", name="broken", status="error")
    assert transcript[1] == error
    assert model.received[1][-1] == error
    assert transcript[-1].text == "Sorry."


async def test_a_tool_that_handles_its_own_errors_is_answered_so_anyway() -> None:
    """A tool's own handle_tool_error answers even when the loop raises errors."""

    @tool(handle_tool_error="try another city")
    def picky(city: str) -> str:
        """Picky."""
        raise LookupError(city)

    model = StepModel([call_chunks(0, "picky", "c1", {"city": "X"}), text_chunks("ok")])
    transcript = await ToolLoop(model, [picky]).ainvoke("go")
    assert transcript[1] == ToolMessage("try another city", tool_call_id="c1", name="picky", status="error")


async def test_unknown_tools_and_bad_arguments_raise_or_go_back_to_the_model() -> None:
    """A call of a missing tool, unparsable or unfitting arguments: ToolLoopError, or an answer with the reason."""
    reply = [
        *call_chunks(0, "nope", "c1", {"x": 1}),
        *call_chunks(1, "weather", "c2", '{"city": '),
        *call_chunks(2, "weather", "c3", {"town": "Oslo"}),
    ]
    model = StepModel([reply, text_chunks("ok")])
    transcript = await ToolLoop(model, [weather], handle_tool_errors=True).ainvoke("go")
    answers = transcript[1:4]
    assert all(answer.status == "error" for answer in answers)
    assert answers[0].content == "there is no tool named 'nope'; the tools are 'weather'"
    assert str(answers[1].content).startswith(
        "the call of 'weather' is invalid: the arguments are not valid JSON"
    )
    assert answers[2].content == "tool 'weather' got unknown argument(s) 'town'; it takes ['city']"

    with pytest.raises(ToolLoopError, match="there is no tool named 'nope'"):
        await ToolLoop(StepModel([reply[:3]]), [weather]).ainvoke("go")


async def test_a_call_without_an_id_is_an_error_even_when_errors_are_reported() -> None:
    """Without an id no answer can be paired with the call: ToolLoopError."""
    model = StepModel([call_chunks(0, "weather", None, {"city": "Oslo"})])
    with pytest.raises(ToolLoopError, match="has no id"):
        await ToolLoop(model, [weather], handle_tool_errors=True).ainvoke("go")


async def test_max_turns_ends_with_an_error_carrying_the_conversation() -> None:
    """A model that calls tools in its last allowed turn: ToolLoopLimitError; that turn's calls never run."""
    runs: list[str] = []

    @tool
    def again(n: int) -> str:
        """Again."""
        runs.append(f"run {n}")
        return "more"

    replies = [call_chunks(0, "again", f"c{turn}", {"n": turn}) for turn in range(3)]
    model = StepModel(replies)
    with pytest.raises(ToolLoopLimitError, match="reached max_turns=3") as caught:
        await ToolLoop(model, [again], max_turns=3).ainvoke("go")
    assert model.calls == 3
    assert runs == ["run 0", "run 1"]
    error = caught.value
    assert error.max_turns == 3 and len(error.messages) == 5
    last = error.messages[-1]
    assert isinstance(last, AIMessage) and last.tool_calls[0].id == "c2"
    again_error = pickle.loads(pickle.dumps(error))
    assert (str(again_error), again_error.messages) == (str(error), error.messages)


async def test_a_model_error_mid_turn_cancels_the_running_tools() -> None:
    """The model fails after call 1 started: the loop raises the model's error, the tool is cancelled."""
    started, cancelled = anyio.Event(), anyio.Event()

    @tool
    async def slow(x: int) -> str:
        """Slow."""
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return "never"

    # Call 2's start completes call 1; once call 1's tool runs, the model fails.
    reply = [
        *call_chunks(0, "slow", "c1", {"x": 1}),
        *call_chunks(1, "slow", "c2", {"x": 2})[:1],
        RuntimeError("overloaded"),
    ]
    model = StepModel([reply], gates={(0, 4): started})
    async with cleanup_guard():
        with anyio.fail_after(GUARD), pytest.raises(RuntimeError, match="overloaded"):
            await ToolLoop(model, [slow]).ainvoke("go")
    assert cancelled.is_set()


async def test_cancelling_the_loop_while_a_tool_runs_stops_the_tool_and_the_model() -> None:
    """Leaving the stream cancels the running tool (it sees the cancellation) and the model call at once."""
    gate = anyio.Event()
    started, cancelled = anyio.Event(), anyio.Event()

    @tool
    async def slow(x: int) -> str:
        """Slow."""
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return "never"

    reply = [*call_chunks(0, "slow", "c1", {"x": 1}), *call_chunks(1, "slow", "c2", {"x": 2})]
    model = StepModel([reply], gates={(0, 4): gate})
    loop = ToolLoop(model, [slow])
    async with cleanup_guard():
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tasks:

                async def consume() -> None:
                    async for _ in loop.astream("go"):
                        pass

                tasks.start_soon(consume)
                await started.wait()
                tasks.cancel_scope.cancel()
    assert cancelled.is_set()
    assert model.stopped_early == 1 and not gate.is_set()


async def cancel_while_held(
    loop: ToolLoop, started: threading.Event, release: threading.Event, order: list[str]
) -> None:
    """Cancel ``loop``'s run once ``started`` is set, append "settled" when every task is
    blocked after the cancel, then set ``release``; "loop returned" is appended when the
    cancelled run has returned."""
    async with cleanup_guard():
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tasks:
                scope = anyio.CancelScope()

                async def run() -> None:
                    with scope:
                        await loop.ainvoke("go")
                    order.append("loop returned")

                tasks.start_soon(run)
                await anyio.to_thread.run_sync(started.wait, GUARD)
                scope.cancel()
                # As far as the cancellation can go without the thread: a loop that did
                # not wait for its tool would have returned by now.
                await anyio.wait_all_tasks_blocked()
                order.append("settled")
                release.set()


async def test_cancelling_the_loop_waits_for_a_running_sync_tool_to_return() -> None:
    """A sync tool's thread cannot be interrupted: the cancelled loop returns only after the tool has returned."""
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    @tool
    def blocking(x: int) -> str:
        """Blocks until released."""
        started.set()
        release.wait(GUARD)
        order.append("tool returned")
        return "done"

    gate = anyio.Event()
    reply = [*call_chunks(0, "blocking", "c1", {"x": 1}), *call_chunks(1, "blocking", "c2", {"x": 2})]
    model = StepModel([reply], gates={(0, 4): gate})
    await cancel_while_held(ToolLoop(model, [blocking]), started, release, order)
    assert order == ["settled", "tool returned", "loop returned"]
    assert model.stopped_early == 1 and not gate.is_set()


async def test_cancelling_the_loop_stops_a_sync_generator_tool_after_its_current_chunk() -> None:
    """A sync generator tool finishes the chunk it is making, makes no more, and is closed in its thread."""
    started, release = threading.Event(), threading.Event()
    made: list[str] = []

    @tool
    def chunks(x: int) -> Iterator[str]:
        """Yields until released, then more."""
        try:
            made.append("a")
            yield "a"
            started.set()
            release.wait(GUARD)
            made.append("b")
            yield "b"
            made.append("c")
            yield "c"
        finally:
            made.append("closed")

    gate = anyio.Event()
    reply = [*call_chunks(0, "chunks", "c1", {"x": 1}), *call_chunks(1, "chunks", "c2", {"x": 2})]
    model = StepModel([reply], gates={(0, 4): gate})
    await cancel_while_held(ToolLoop(model, [chunks]), started, release, made)
    assert made == ["a", "settled", "b", "closed", "loop returned"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_asyncio_task_cancel_while_a_tool_runs_stays_pending(anyio_backend: str) -> None:
    """task.cancel() landing in a loop whose tool runs: the tool is cancelled, the caller's cancelling() is 1."""
    started, cancelled = anyio.Event(), anyio.Event()

    @tool
    async def slow(x: int) -> str:
        """Slow."""
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return "never"

    model = StepModel([[*call_chunks(0, "slow", "c1", {"x": 1}), *call_chunks(1, "slow", "c2", {"x": 2})]])
    seen: list[int] = []

    async def caller() -> None:
        try:
            await ToolLoop(model, [slow]).ainvoke("go")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            seen.append(task.cancelling())
            raise

    task = asyncio.get_running_loop().create_task(caller())
    with anyio.fail_after(GUARD):
        await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [1] and cancelled.is_set()
    await assert_run_cleaned_up()


# -- backpressure, events, construction -----------------------------------------------


async def test_a_slow_consumer_holds_the_model_back_in_every_turn() -> None:
    """Nothing is buffered without bound: while the consumer waits, the model stops, in turn 1 and turn 2."""
    words = 300
    long = "|".join(f"w{i} " for i in range(words))
    turn_1 = [*text_chunks(long), *call_chunks(1, "weather", "c1", {"city": "Oslo"})]
    model = StepModel([turn_1, text_chunks(long)])
    loop = ToolLoop(model, [weather])
    async with loop.astream("go") as chunks:
        with anyio.fail_after(GUARD):
            seen = [await chunks.__anext__()]
            await anyio.wait_all_tasks_blocked()
            ahead_in_turn_1 = model.produced - len(seen)
            # Read up to the answer, then the first chunk of turn 2, and wait again.
            while not isinstance(seen[-1], ToolMessage):
                seen.append(await chunks.__anext__())
            seen.append(await chunks.__anext__())
            await anyio.wait_all_tasks_blocked()
            ahead_in_turn_2 = model.produced - len(turn_1) - 1
            seen.extend([chunk async for chunk in chunks])
    assert ahead_in_turn_1 < 40  # two bounded edges, not 300 words
    assert ahead_in_turn_2 < 40
    assert len(seen) == len(turn_1) + 1 + words + 1  # and the transcript


async def test_events_nest_every_model_call_and_tool_call_under_the_loop() -> None:
    """astream_events: the loop's run parents each model and tool run (with its turn); order checks out."""
    loop = ToolLoop(two_calls_then("Sunny at noon."), [weather, local_time])
    events = [event async for event in loop.astream_events("Weather?")]
    check_event_order(events)
    root = events[0]
    assert (root["event"], root["name"]) == ("on_chain_start", "ToolLoop")
    inner = [e for e in events if e["event"] in ("on_tool_start", "on_tool_end", "on_chat_model_start")]
    assert [(e["event"], e["name"], e["metadata"]["turn"]) for e in inner if e["event"] != "on_tool_end"] == [
        ("on_chat_model_start", "ScriptedChatModel", 1),
        ("on_tool_start", "weather", 1),
        ("on_tool_start", "local_time", 1),
        ("on_chat_model_start", "ScriptedChatModel", 2),
    ]
    assert all(e["parent_ids"] == [root["run_id"]] for e in inner)
    assert sorted(e["data"]["output"].content for e in events if e["event"] == "on_tool_end") == [
        "noon in Paris",
        "sunny in Paris",
    ]
    end = events[-1]
    assert (end["event"], end["name"]) == ("on_chain_end", "ToolLoop")
    assert end["data"]["output"] == await ToolLoop(
        two_calls_then("Sunny at noon."), [weather, local_time]
    ).ainvoke("Weather?")


async def test_in_a_chain_it_streams_the_same_and_sums_to_the_transcript() -> None:
    """In a chain (or retried) the loop streams as alone, and ainvoke gives the transcript."""
    prompt = RunnableLambda(lambda city: [HumanMessage(f"Weather in {city}?")])
    alone = ToolLoop(two_calls_then("Sunny."), [weather, local_time])
    expected = [chunk async for chunk in alone.astream("Weather in Paris?")]
    chained = prompt | ToolLoop(two_calls_then("Sunny."), [weather, local_time])
    assert sorted(map(repr, [chunk async for chunk in chained.astream("Paris")])) == sorted(
        map(repr, expected)
    )
    assert await chained.ainvoke("Paris") == expected[-1]
    retried = ToolLoop(two_calls_then("Sunny."), [weather, local_time]).with_retry()
    assert await retried.ainvoke("Weather in Paris?") == expected[-1]


async def test_bad_input_fails_before_the_model_is_called() -> None:
    """Input that is not messages is a TypeError naming the loop; the model never runs."""
    model = ScriptedChatModel(["x"])
    with pytest.raises(TypeError, match="the input of ToolLoop"):
        await ToolLoop(model, [weather]).ainvoke(42)
    assert model.calls == 0


def test_construction_checks_its_arguments() -> None:
    """No tools, two tools of one name, max_turns < 1, a model that is no runnable, a bad flag: clear errors."""
    model = ScriptedChatModel(["x"])
    with pytest.raises(ValueError, match="at least one tool"):
        ToolLoop(model, [])
    with pytest.raises(ValueError, match="two tools have the name 'weather'"):
        ToolLoop(model, [weather, weather])
    with pytest.raises(ValueError, match="max_turns must be an int >= 1"):
        ToolLoop(model, [weather], max_turns=0)
    with pytest.raises(TypeError, match="must be a chat model"):
        ToolLoop("claude", [weather])
    with pytest.raises(TypeError, match="handle_tool_errors must be"):
        ToolLoop(model, [weather], handle_tool_errors=3)
    with pytest.raises(TypeError, match="a list of tools"):
        ToolLoop(model, weather)


def test_plain_functions_become_tools() -> None:
    """A function in the tool list is made a tool with @tool."""

    def shout(word: str) -> str:
        """Shout."""
        return word.upper()

    model = StepModel([call_chunks(0, "shout", "c1", {"word": "hi"}), text_chunks("ok")])
    transcript = ToolLoop(model, [shout]).invoke("go")
    assert transcript[1] == ToolMessage("HI", tool_call_id="c1", name="shout")


# -- against the Messages API (loopback server, the real SDK) -------------------------

MODEL = "claude-test-model"


@tool
def get_time(city: str) -> str:
    """Get the local time in a city."""
    return f"noon in {city}"


def claude(server: AnthropicServer) -> ChatAnthropic:
    return ChatAnthropic(model=MODEL, api_key="test-key", base_url=server.base_url, max_retries=0)


async def test_with_claude_a_tool_runs_while_the_next_tool_use_block_streams(
    server: AnthropicServer,
) -> None:
    """Claude's first tool_use runs while the server still holds the second; turn 2's request carries both results."""
    held = threading.Event()
    weather_ran = anyio.Event()
    fragments = ['{"city": ', '"Paris"}']

    @tool
    async def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        weather_ran.set()
        return f"sunny in {city}"

    # Points: text deltas 0-1, get_weather's fragments 2-3, get_time's 4-5; held before 5.
    server.script(
        ToolUseStream(
            "get_weather",
            "toolu_1",
            fragments,
            text_before=["Let me ", "check."],
            more=[ToolUse("get_time", "toolu_2", fragments)],
            hold_before={5: held},
        )
    )
    server.script(TextStream(["Sunny ", "at noon."]))
    loop = ToolLoop(claude(server), [get_weather, get_time])
    seen: list[Any] = []

    async def consume() -> None:
        async for chunk in loop.astream("Weather and time in Paris?"):
            seen.append(chunk)

    async with cleanup_guard():
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(consume)
                await weather_ran.wait()
                # get_weather ran at its block's end (content_block_stop), maybe before
                # get_time's first fragment went out; the server holds get_time's last
                # fragment, so the message is not over.
                assert server.requests[0].deltas_sent in (4, 5)
                held.set()
    assert "".join(chunk.text for chunk in seen if isinstance(chunk, AIMessageChunk)) == (
        "Let me check.Sunny at noon."
    )
    first, second = (request.body for request in server.requests)
    tools = [get_weather.to_anthropic(), get_time.to_anthropic()]
    assert first["tools"] == tools and second["tools"] == tools  # bound by the loop
    assert first["messages"] == [{"role": "user", "content": "Weather and time in Paris?"}]
    assert second["messages"] == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny in Paris"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "noon in Paris"},
            ],
        },
    ]


async def test_with_claude_a_tool_starts_when_its_block_ends(server: AnthropicServer) -> None:
    """The tool runs on Claude's content_block_stop, while the server still holds the message's end."""
    held = threading.Event()
    weather_ran = anyio.Event()

    @tool
    async def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        weather_ran.set()
        return f"sunny in {city}"

    blocks = [TextBlock(["Checking."]), ToolUseBlock("get_weather", "toolu_1", ['{"city": ', '"Paris"}'])]
    server.script(MessageStream(blocks, stop_reason="tool_use", hold_after_stop={1: held}))
    server.script(TextStream(["Sunny."]))
    loop = ToolLoop(claude(server), [get_weather])
    seen: list[Any] = []

    async def consume() -> None:
        async for chunk in loop.astream("Weather in Paris?"):
            seen.append(chunk)

    async with cleanup_guard():
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(consume)
                await weather_ran.wait()
                # Held after the block's content_block_stop: no message_delta, no message_stop yet.
                assert server.requests[0].outcome is None
                held.set()
    assert seen[-1][1] == ToolMessage("sunny in Paris", tool_call_id="toolu_1", name="get_weather")
    assert server.requests[1].body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny in Paris"}],
        },
    ]


async def test_an_end_marker_completes_the_open_call_at_once() -> None:
    """A fragment with only the open call's index runs that call before the model's next chunk."""
    gate = anyio.Event()
    ran = anyio.Event()

    @tool
    async def lookup(word: str) -> str:
        """Look up."""
        ran.set()
        return word.upper()

    reply = [
        *call_chunks(0, "lookup", "c1", {"word": "a"}),
        AIMessageChunk(content="", tool_call_chunks=[ToolCallChunk(index=0)]),
        *text_chunks("done"),
    ]
    model = StepModel([reply, text_chunks("ok")], gates={(0, 4): gate})
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tasks:

            async def run() -> None:
                transcript = await ToolLoop(model, [lookup]).ainvoke("go")
                assert transcript[1] == ToolMessage("A", tool_call_id="c1", name="lookup")

            tasks.start_soon(run)
            await ran.wait()  # before the model's chunk 4, held at the gate
            assert model.produced == 4
            gate.set()


async def test_with_claude_a_reported_error_goes_back_as_is_error(server: AnthropicServer) -> None:
    """A failing tool's error ToolMessage is sent as a tool_result with is_error; events nest under the loop."""

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        raise ToolException(f"no station in {city}")

    server.script(ToolUseStream("get_weather", "toolu_1", ['{"city": "Atlantis"}']))
    server.script(TextStream(["No ", "data."]))
    loop = ToolLoop(claude(server), [get_weather], handle_tool_errors=True)
    events = [event async for event in loop.astream_events("Weather in Atlantis?")]
    check_event_order(events)
    root = events[0]["run_id"]
    starts = [
        (e["event"], e["name"]) for e in events if e["event"].endswith("_start") and e["run_id"] != root
    ]
    assert starts == [
        ("on_chat_model_start", "ChatAnthropic"),
        ("on_tool_start", "get_weather"),
        ("on_chat_model_start", "ChatAnthropic"),
    ]
    assert all(e["parent_ids"] == [root] for e in events if e["run_id"] != root)
    assert server.requests[1].body["messages"][-1] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": "no station in Atlantis",
                "is_error": True,
            }
        ],
    }
    assert events[-1]["data"]["output"][-1].text == "No data."


# -- the tools the model is offered -----------------------------------------------------


@tool
def get_date(city: str) -> str:
    """Get the date in a city."""
    return f"Monday in {city}"


async def test_the_loop_binds_its_tools_inside_the_engine_wrappers(server: AnthropicServer) -> None:
    """A model wrapped in with_config/with_timeout/with_retry/with_fallbacks gets the tools, each fallback too."""
    server.script(ErrorReply(500, "api_error"))  # the primary fails, the fallback answers
    server.script(TextStream(["It is noon."]))
    primary = (
        claude(server).with_config(run_name="primary").with_timeout(total=60).with_retry(stop_after_attempt=1)
    )
    loop = ToolLoop(primary.with_fallbacks([claude(server)]), [get_time, get_date])
    with anyio.fail_after(GUARD):
        transcript = await loop.ainvoke("Time in Paris?")
    assert [message.text for message in transcript] == ["It is noon."]
    tools = [get_time.to_anthropic(), get_date.to_anthropic()]
    assert [request.body.get("tools") for request in server.requests] == [tools, tools]


async def test_the_loop_keeps_a_model_that_offers_the_same_tools(server: AnthropicServer) -> None:
    """The user's own binding of the same tools (in any order) stays, with its tool choice."""
    server.script(TextStream(["Noon."]))
    model = claude(server).bind_tools([get_date, get_time], parallel_tool_calls=False).with_retry()
    with anyio.fail_after(GUARD):
        await ToolLoop(model, [get_time, get_date]).ainvoke("Time?")
    sent = server.requests[0].body
    assert sent["tools"] == [get_date.to_anthropic(), get_time.to_anthropic()]
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_a_model_offering_other_tools_is_refused_naming_both() -> None:
    """A model bound to other tools than the loop's (wrapped or not) fails at construction, naming both lists."""
    model = ChatAnthropic(model=MODEL).bind_tools([get_time])
    for given in (model, model.with_retry(), model.with_fallbacks([ChatAnthropic(model=MODEL)])):
        with pytest.raises(ValueError, match=r"already offers the tools \['get_time'\]") as caught:
            ToolLoop(given, [get_time, get_date])
        assert "the loop's tools are ['get_time', 'get_date']" in str(caught.value)


def test_a_model_that_cannot_take_tools_is_refused() -> None:
    """A runnable with neither bind_tools nor a tools call argument (a function, a chain) fails at construction."""
    function = RunnableLambda(lambda messages: AIMessage("hi"))
    chain = RunnableLambda(lambda messages: messages) | ChatAnthropic(model=MODEL)
    for model in (function, function.with_retry(), chain):
        with pytest.raises(TypeError, match="cannot offer its tools to its model"):
            ToolLoop(model, [get_time])


def test_a_model_without_bind_tools_gets_the_tools_as_a_call_argument() -> None:
    """A model that takes tools only through bind(tools=...) is offered the loop's tools that way."""
    model = StepModel([text_chunks("ok")])
    ToolLoop(model.with_retry(), [get_time, get_date])
    assert model.tools == ["get_time", "get_date"]
