"""``engine.view``: the run model built from events, its text, and the view that watches a bus.

The model is fed made-up events with made-up times (no terminal, no run); the view's
text is checked whole for runs under trio's ``MockClock``, where every time is exact.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import AsyncGenerator
from functools import partial
from typing import Any, ClassVar

import anyio
import attrs
import pytest
import trio
from trio.testing import MockClock

from engine import EventBus, ExponentialJitterParams, RunCancelled, event_name
from engine.view import RunModel, StepState, render_text, watch
from nodes import (
    AIMessageChunk,
    BaseChatModel,
    BaseMessage,
    ChatPromptTemplate,
    ScriptedChatModel,
    ScriptedReply,
    StrOutputParser,
    UsageMetadata,
)

# -- the model, from made-up events ---------------------------------------------------


def _event(
    kind: str | None,
    phase: str,
    name: str,
    run_id: str,
    parents: tuple[str, ...] = (),
    data: Any = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "event": event_name(kind, phase),
        "name": name,
        "run_id": run_id,
        "parent_ids": list(parents),
        "tags": [],
        "metadata": metadata or {},
        "data": {} if data is None else data,
    }


def _chain_model() -> RunModel:
    model = RunModel()
    model.apply(_event("chain", "start", "seq", "r"), 10.0)
    model.apply(_event("chat_model", "start", "model", "m", ("r",)), 10.0)
    return model


def test_a_started_step_waits_until_its_first_chunk_then_streams() -> None:
    """A step is waiting from its start event and streaming from its first chunk."""
    model = _chain_model()
    step = model.steps["m"]
    assert step.state is StepState.WAITING and step.time_to_first_chunk is None
    model.apply(_event("chat_model", "stream", "model", "m", ("r",), {"chunk": "a"}), 10.5)
    assert step.state is StepState.STREAMING
    assert step.chunks == 1 and step.time_to_first_chunk == 0.5
    assert step.duration(now=12.0) == 2.0


def test_end_error_and_cancellation_set_the_final_state() -> None:
    """An end event is done, an error failed (with its first line), RunCancelled cancelled."""
    model = RunModel()
    model.apply(_event("chain", "start", "a", "a"), 0.0)
    model.apply(_event("chain", "start", "b", "b"), 0.0)
    model.apply(_event("chain", "start", "c", "c"), 0.0)
    model.apply(_event("chain", "end", "a", "a"), 1.0)
    model.apply(_event("chain", "error", "b", "b", data={"error": ValueError("bad input\ndetails")}), 2.0)
    model.apply(_event("chain", "error", "c", "c", data={"error": RunCancelled("c was cancelled")}), 3.0)
    a, b, c = (model.steps[k] for k in "abc")
    assert (a.state, a.ended, a.error) == (StepState.DONE, 1.0, None)
    assert (b.state, b.ended, b.error) == (StepState.FAILED, 2.0, "ValueError: bad input")
    assert (c.state, c.ended, c.error) == (StepState.CANCELLED, 3.0, None)
    assert all(s.state.finished for s in (a, b, c))


def test_tokens_add_up_over_chunks_and_a_parent_shows_its_childrens() -> None:
    """Chunks' usage_metadata adds up on the step; a step without its own shows its children's sum."""
    model = _chain_model()
    model.apply(_event("chat_model", "start", "model2", "m2", ("r",)), 10.0)
    for run_id, usage in (
        ("m", {"input_tokens": 7}),
        ("m", {"output_tokens": 3}),
        ("m2", {"output_tokens": 2}),
    ):
        chunk = type("Chunk", (), {"usage_metadata": UsageMetadata(**usage)})()
        model.apply(_event("chat_model", "stream", "model", run_id, ("r",), {"chunk": chunk}), 11.0)
    assert (model.steps["m"].input_tokens, model.steps["m"].output_tokens) == (7, 3)
    assert model.tokens("m") == (7, 3)
    assert model.tokens("r") == (7, 5)
    model.apply(_event("chain", "stream", "seq", "r", data={"chunk": "text"}), 11.0)
    assert model.steps["r"].input_tokens is None  # a string chunk reports nothing


def test_a_step_hangs_under_its_nearest_seen_ancestor() -> None:
    """A filtered-out parent is skipped: the step hangs under the nearest ancestor seen."""
    model = RunModel()
    model.apply(_event("chain", "start", "root", "r"), 0.0)
    model.apply(_event("parser", "start", "leaf", "leaf", ("r", "hidden")), 0.0)
    model.apply(_event("parser", "start", "orphan", "o", ("elsewhere",)), 0.0)
    assert model.steps["leaf"].parent_id == "r" and model.steps["leaf"].depth == 1
    assert model.steps["r"].children == ["leaf"]
    assert model.roots == ["r", "o"] and model.steps["o"].number == 2


def test_a_step_whose_start_was_lost_appears_at_its_first_event() -> None:
    """Any event of an unknown step makes its record; a drop marker adds to the lost count."""
    model = RunModel()
    model.apply({**_event(None, "dropped", "EventBus", ""), "data": {"dropped": 4}}, 1.0)
    model.apply(_event("chat_model", "stream", "model", "m", data={"chunk": "x"}), 2.0)
    assert model.dropped == 4
    step = model.steps["m"]
    assert (step.name, step.kind, step.started, step.state) == (
        "model",
        "chat_model",
        2.0,
        StepState.STREAMING,
    )


def test_a_step_whose_end_was_lost_takes_its_parents_outcome() -> None:
    """When a parent ends, a child still open (its end lost) closes as done, or cancelled
    under a failed parent; its own late end still counts."""
    model = _chain_model()
    model.apply(_event("chain", "end", "seq", "r"), 12.0)
    assert model.steps["m"].state is StepState.DONE and model.steps["m"].ended == 12.0
    model.apply(_event("chat_model", "error", "model", "m", ("r",), {"error": KeyError("k")}), 12.0)
    assert model.steps["m"].state is StepState.FAILED
    failed = _chain_model()
    failed.apply(_event("chain", "error", "seq", "r", data={"error": ValueError("v")}), 12.0)
    assert failed.steps["m"].state is StepState.CANCELLED


def test_progress_counts_top_level_runs_by_state() -> None:
    """progress() counts runs done, failed, cancelled, streaming, waiting and not started."""
    model = RunModel(total=6)
    for run_id in "abcde":
        model.apply(_event("chain", "start", run_id, run_id), 0.0)
    model.apply(_event("chain", "end", "a", "a"), 1.0)
    model.apply(_event("chain", "error", "b", "b", data={"error": ValueError()}), 1.0)
    model.apply(_event("chain", "error", "c", "c", data={"error": RunCancelled()}), 1.0)
    model.apply(_event("chain", "stream", "d", "d", data={"chunk": 1}), 1.0)
    progress = model.progress()
    assert (progress.total, progress.done, progress.failed, progress.cancelled) == (6, 1, 1, 1)
    assert (progress.streaming, progress.waiting, progress.not_started, progress.finished) == (1, 1, 1, 3)
    assert "batch: 1 of 6 done, 1 failed, 1 cancelled, 2 running, 1 queued  [#x/>. ]" in render_text(
        model, 1.0
    )


def test_chunk_times_are_kept_only_when_asked() -> None:
    """keep_chunk_times=True records each chunk's time; by default nothing per chunk is kept."""
    for keep, expected in ((True, [1.0, 2.5]), (False, None)):
        model = RunModel(keep_chunk_times=keep)
        model.apply(_event("chain", "start", "a", "a"), 0.0)
        model.apply(_event("chain", "stream", "a", "a", data={"chunk": 1}), 1.0)
        model.apply(_event("chain", "stream", "a", "a", data={"chunk": 2}), 2.5)
        assert model.steps["a"].chunk_times == expected


@pytest.mark.parametrize("total", [-1, 1.5, True, "3"])
def test_a_bad_total_is_refused(total: Any) -> None:
    """A total that is not an int >= 0 is refused when the model is made."""
    with pytest.raises(ValueError, match="total must be"):
        RunModel(total=total)


def test_rows_past_max_rows_hide_finished_runs_first() -> None:
    """With max_rows, finished runs that succeeded are left out (oldest first), then the last rows."""
    model = RunModel(total=5)
    for run_id in "abcde":
        model.apply(_event("chain", "start", run_id, run_id), 0.0)
    for run_id in "abc":
        model.apply(_event("chain", "end", run_id, run_id), 1.0)
    model.apply(_event("parser", "start", "p", "dp", ("d",)), 0.0)
    text = render_text(model, 2.0, max_rows=4).splitlines()
    assert [line.split("  ")[0].rstrip() for line in text[2:]] == [
        "... 3 finished runs not shown",
        "#4 d",
        "└─ p",
        "#5 e",
    ]
    assert render_text(model, 2.0, max_rows=3).splitlines()[-1].startswith("... 2 more rows")


# -- the view of real runs, under the mock clock ------------------------------------------

PARROT = ("Why", " did", " the", " parrot", " talk?")


def _retried_chain() -> Any:
    """prompt | model.with_retry() | parser, whose first attempt stalls 2 s then times out."""
    model = ScriptedChatModel(
        replies=[
            ScriptedReply(content=("Why",), error=TimeoutError("slow start"), stall=2.0),
            ScriptedReply(content=PARROT, usage={"input_tokens": 9, "output_tokens": 5}),
        ],
        delay=0.25,
    )
    retried = model.with_retry(exponential_jitter_params=ExponentialJitterParams(initial=0.5, jitter=0))
    return ChatPromptTemplate.from_template("a joke about {topic}") | retried | StrOutputParser()


FINISHED_RUN = """\
step                                 state   chunks  tokens  first   time
RunnableSequence                     done         6     9/5  2.75s  4.00s
├─ ChatPromptTemplate                done         1       -    0ms    0ms
├─ RunnableRetry                     done         6     9/5  2.75s  4.00s
│  ├─ ScriptedChatModel (attempt 1)  failed       0       -      -  2.00s  TimeoutError: slow start
│  └─ ScriptedChatModel (attempt 2)  done         6     9/5  250ms  1.50s
└─ StrOutputParser                   done         6       -  2.75s  4.00s"""

FINISHED_LINES = """\
done         ChatPromptTemplate  1 chunk  first 0ms  time 0ms
failed         ScriptedChatModel (attempt 1)  0 chunks  first -  time 2.00s  TimeoutError: slow start
done           ScriptedChatModel (attempt 2)  6 chunks  9/5 tokens  first 250ms  time 1.50s
done         RunnableRetry  6 chunks  9/5 tokens  first 2.75s  time 4.00s
done         StrOutputParser  6 chunks  first 2.75s  time 4.00s
done       RunnableSequence  6 chunks  9/5 tokens  first 2.75s  time 4.00s
"""


@pytest.mark.trio
async def test_the_text_of_a_finished_run_is_exact(autojump_clock: MockClock) -> None:
    """A finished run's text: the tree, each step's state, chunks, tokens, first chunk and time."""
    out = io.StringIO()
    with trio.fail_after(60):
        async with watch(display="lines", out=out) as view:
            assert (
                await _retried_chain().ainvoke({"topic": "parrots"}, config=view.config)
                == "Why did the parrot talk?"
            )
    assert view.display == "lines"
    assert view.text() == FINISHED_RUN
    assert out.getvalue() == FINISHED_LINES + FINISHED_RUN + "\n"


async def test_a_failed_run_shows_where_it_failed_and_its_error_leaves_as_itself() -> None:
    """The block's error comes out as itself (not in a group); the view shows the failed steps."""
    model = ScriptedChatModel(
        replies=[ScriptedReply(content=PARROT, error=ValueError("boom"), error_after=2)]
    )
    chain = ChatPromptTemplate.from_template("{topic}") | model | StrOutputParser()
    out = io.StringIO()
    with anyio.fail_after(10), pytest.raises(ValueError, match="boom"):
        async with watch(display="lines", out=out) as view:
            await chain.ainvoke({"topic": "parrots"}, config=view.config)
    states = {s.name: (s.state, s.chunks) for s in view.model.steps.values()}
    assert states == {
        "RunnableSequence": (StepState.FAILED, 2),
        "ChatPromptTemplate": (StepState.DONE, 1),
        "ScriptedChatModel": (StepState.FAILED, 2),
        "StrOutputParser": (StepState.FAILED, 2),
    }
    assert out.getvalue().splitlines()[-2].startswith("├─ ScriptedChatModel   failed       2")
    assert out.getvalue().splitlines()[-2].endswith("ValueError: boom")


async def test_an_interrupt_in_the_block_leaves_as_itself() -> None:
    """A KeyboardInterrupt raised in the block is not wrapped in an exception group."""
    out = io.StringIO()
    with anyio.fail_after(10), pytest.raises(KeyboardInterrupt):
        async with watch(display="lines", out=out):
            raise KeyboardInterrupt
    assert out.getvalue() == "(no run seen yet)\n"


async def test_a_cancelled_block_still_reads_the_runs_last_events() -> None:
    """Cancelling the block cancels the run; the view shows its steps cancelled, not streaming."""
    model = ScriptedChatModel(replies=[ScriptedReply(content=PARROT, stall=3600, stall_before=2)])
    chain = ChatPromptTemplate.from_template("{topic}") | model | StrOutputParser()
    out = io.StringIO()
    with anyio.fail_after(10):
        with anyio.CancelScope() as scope:
            async with (
                watch(display="lines", out=out) as view,
                chain.astream({"topic": "parrots"}, config=view.config) as chunks,
            ):
                async for chunk in chunks:
                    if chunk == " did":
                        scope.cancel()
        assert scope.cancelled_caught
    states = {s.name: s.state for s in view.model.steps.values()}
    assert states["RunnableSequence"] is StepState.CANCELLED
    assert states["ScriptedChatModel"] is StepState.CANCELLED
    assert out.getvalue().splitlines()[-4].startswith("RunnableSequence       cancelled")


@attrs.define(eq=False)
class SlowModel(BaseChatModel):
    """Streams PARROT, one token a second; fails after its first token when asked for "bad"."""

    reads_current_step: ClassVar[bool] = False

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        for index, token in enumerate(PARROT):
            await anyio.sleep(1.0)
            if index == 1 and messages[-1].text == "bad":
                raise ValueError("no")
            yield AIMessageChunk.from_text(token)


def _strip(line: str) -> tuple[str, str]:
    # Runs that start at the same instant are numbered in the order the scheduler ran them
    # (trio shuffles ties): the marks are compared as a multiset.
    header, _, marks = line.partition("  [")
    return header, "".join(sorted(marks.rstrip("]")))


@pytest.mark.trio
async def test_a_batch_shows_its_progress(autojump_clock: MockClock) -> None:
    """abatch under the view: N of M done, failed, running and queued counts and one mark per
    input, live and at the end; a log line per finished input, in the order they finished."""
    chain = ChatPromptTemplate.from_template("{topic}") | SlowModel()
    out = io.StringIO()
    seen: list[tuple[str, str]] = []
    topics = ["good", "bad", "good", "good", "bad"]
    with trio.fail_after(60):
        async with watch(total=5, display="lines", out=out) as view, anyio.create_task_group() as group:
            inputs = [{"topic": topic} for topic in topics]
            group.start_soon(
                partial(chain.abatch, inputs, view.config, max_concurrency=2, return_exceptions=True)
            )
            for wait in (2.5, 5.0):
                await anyio.sleep(wait)
                seen.append(_strip(view.text(anyio.current_time()).splitlines()[0]))
    # t=2.5: the first streams, the second failed at 2, the third (from 2) waits for its
    # first token; t=7.5: the first done at 5, the third at 7, the fourth (from 5)
    # streams, the fifth (from 7) waits.
    assert seen == [
        ("batch: 0 of 5 done, 1 failed, 2 running, 2 queued", "  .>x"),
        ("batch: 2 of 5 done, 1 failed, 2 running", "##.>x"),
    ]
    lines = [re.sub(r"#\d ", "", line) for line in out.getvalue().splitlines()]
    assert lines[:5] == [
        "failed     [1/5] RunnableSequence  1 chunk  first 1.00s  time 2.00s  ValueError: no",
        "done       [2/5] RunnableSequence  5 chunks  first 1.00s  time 5.00s",
        "done       [3/5] RunnableSequence  5 chunks  first 1.00s  time 5.00s",
        "failed     [4/5] RunnableSequence  1 chunk  first 1.00s  time 2.00s  ValueError: no",
        "done       [5/5] RunnableSequence  5 chunks  first 1.00s  time 5.00s",
    ]
    assert _strip(lines[5]) == ("batch: 3 of 5 done, 2 failed, 0 running", "###xx")
    assert sorted(lines[7:]) == sorted(
        ["RunnableSequence  done         5       -  1.00s  5.00s"] * 3
        + ["RunnableSequence  failed       1       -  1.00s  2.00s  ValueError: no"] * 2
    )


async def test_lost_events_are_counted_and_said() -> None:
    """A view whose buffer overflows (overflow="drop") says how many events it lost."""
    chain = (
        ChatPromptTemplate.from_template("{topic}") | ScriptedChatModel(replies=[PARROT]) | StrOutputParser()
    )
    with anyio.fail_after(10):
        async with watch(display="none", capacity=1) as view:
            await chain.ainvoke({"topic": "parrots"}, config=view.config)
    dropped = view.statistics().dropped
    assert dropped > 0 and view.model.dropped == dropped
    assert view.text().endswith(f"(the view lost {dropped} events: its buffer was full)")
    assert all(step.state is StepState.DONE for step in view.model.steps.values())


async def test_a_view_watches_a_bus_it_is_given() -> None:
    """watch(bus) subscribes to that bus, and unsubscribes when the block ends."""
    bus = EventBus()
    chain = ChatPromptTemplate.from_template("{topic}") | ScriptedChatModel(replies=["hi"])
    with anyio.fail_after(10):
        async with watch(bus, display="none") as view:
            assert view.bus is bus and view.config == {"bus": bus} and bus.subscriber_count == 1
            await chain.ainvoke({"topic": "parrots"}, config={"bus": bus})
    assert bus.subscriber_count == 0 and view.statistics().closed
    assert [view.model.steps[r].name for r in view.model.roots] == ["RunnableSequence"]


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, as a tty would."""

    def isatty(self) -> bool:
        return True


@pytest.mark.trio
async def test_in_a_terminal_the_view_is_redrawn_in_place(autojump_clock: MockClock) -> None:
    """In a terminal (display="auto") rich redraws the view in place: each frame moves the
    cursor back up over the last, and the last frame stays."""
    chain = ChatPromptTemplate.from_template("{topic}") | ScriptedChatModel(replies=[PARROT], delay=0.5)
    out = _Terminal()
    with trio.fail_after(60):
        async with watch(out=out, width=80, refresh_per_second=4) as view:
            await chain.ainvoke({"topic": "parrots"}, config=view.config)
    assert view.display == "live"
    text = out.getvalue()
    frames = text.count("\x1b[2K\x1b[1A")  # erase the line, cursor up: drawing over the last frame
    assert frames >= 8  # ~2.5 s at 4 frames a second, each over the frame before (4 lines and more)
    assert "streaming" in text
    last = text.rsplit("\x1b[2K", 1)[-1]
    assert "done" in last and "streaming" not in last


async def test_not_a_terminal_falls_back_to_plain_lines() -> None:
    """display="auto" on a pipe or file prints plain lines, with no escape sequence."""
    chain = ChatPromptTemplate.from_template("{topic}") | ScriptedChatModel(replies=["hi"])
    out = io.StringIO()
    with anyio.fail_after(10):
        async with watch(out=out) as view:
            await chain.ainvoke({"topic": "parrots"}, config=view.config)
    assert view.display == "lines"
    assert "\x1b" not in out.getvalue()
    assert out.getvalue().endswith(view.text() + "\n")


async def test_live_without_rich_is_refused_and_auto_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without rich, display="live" raises ImportError naming the extra; "auto" prints lines."""
    monkeypatch.setitem(sys.modules, "rich.console", None)
    with pytest.raises(ImportError, match=r"rillet\[view\]"):
        async with watch(display="live", out=_Terminal()):
            pass
    async with watch(out=_Terminal()) as view:
        assert view.display == "lines"


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"display": "fancy"}, "unknown display 'fancy'"),
        ({"refresh_per_second": 0}, "refresh_per_second must be a number > 0"),
        ({"max_rows": 1}, "max_rows must be an int >= 2"),
        ({"width": True}, "width must be an int >= 2"),
        ({"total": -2}, "total must be"),
        ({"capacity": 0}, "capacity must be >= 1"),
        ({"overflow": "wait"}, "unknown overflow policy"),
        ({"trace": "/no/such/directory/run.json"}, "there is no directory '/no/such/directory'"),
    ],
)
async def test_bad_arguments_are_refused_before_anything_is_watched(
    arguments: dict[str, Any], match: str
) -> None:
    """Each bad argument raises an error naming it, and leaves no subscriber behind."""
    bus = EventBus()
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        async with watch(bus, **arguments):
            pass
    assert bus.subscriber_count == 0
