"""The examples: each script runs offline and prints what the streaming guide prints.

Every script is started at once in its own subprocess (without ANTHROPIC_API_KEY, from a
directory outside the repository), and each test checks one script's output.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HANG_GUARD = 60.0  # seconds; a script still running then is killed (it should take ~2 s)

SCRIPTS: dict[str, list[str]] = {
    "main": ["main.py", "--trace", "main-trace.json"],
    "model_streaming": ["model_streaming.py"],
    "chain_streaming": ["chain_streaming.py"],
    "json_streaming": ["json_streaming.py"],
    "json_break_and_fix": ["json_break_and_fix.py"],
    "retrieval_chain": ["retrieval_chain.py"],
    "events_chat_model": ["events_chat_model.py"],
    "events_chain": ["events_chain.py"],
    "events_filtering": ["events_filtering.py"],
    "events_non_streaming": ["events_non_streaming.py"],
    "propagation": ["propagation.py"],
    "astream_log": ["astream_log.py"],
    "structured_concurrency": ["structured_concurrency.py"],
    "ctrl_c": ["structured_concurrency.py", "--deadline", "60"],
    "service_help": ["service.py", "--help"],
    "resilience": ["resilience.py"],
    "tool_loop": ["tool_loop.py"],
}


class Ran:
    """One finished script: its exit code and what it printed."""

    def __init__(self, returncode: int, stdout: str, stderr: str, cwd: Path) -> None:
        self.returncode = returncode
        self.cwd = cwd
        self.stdout = stdout
        self.stderr = stderr
        self.lines = stdout.splitlines()


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Ran]]:
    cwd = tmp_path_factory.mktemp("elsewhere")
    processes = {name: _start(args, cwd) for name, args in SCRIPTS.items()}
    guards = [threading.Timer(HANG_GUARD, p.kill) for p in processes.values()]
    for guard in guards:
        guard.start()
    try:
        # Ctrl-C once the runs are under way: wait for the first progress line, then SIGINT.
        ctrl_c = processes["ctrl_c"]
        assert ctrl_c.stdout is not None
        first = ctrl_c.stdout.readline()
        ctrl_c.send_signal(signal.SIGINT)
        results: dict[str, Ran] = {}
        for name, process in processes.items():
            stdout, stderr = process.communicate()
            if name == "ctrl_c":
                stdout = first + stdout
            results[name] = Ran(process.returncode, stdout, stderr, cwd)
        yield results
    finally:
        for guard in guards:
            guard.cancel()
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


def ok(ran: dict[str, Ran], name: str) -> Ran:
    result = ran[name]
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result


# Each chunk of a model reply carries the reply's run id (and the last its chunk_position),
# which the guide's printouts leave out: the comparisons drop them after checking their form.
_REPLY_ID = re.compile(r", id='lc_run--[0-9a-f-]{36}'(, chunk_position='last')?")


def without_ids(lines: list[str]) -> list[str]:
    return [_REPLY_ID.sub("", line) for line in lines]


def test_model_streaming_prints_tokens_first_chunk_and_sum(ran: dict[str, Ran]) -> None:
    """The model's tokens with |, chunks[0], and the first five chunks added up (each with the reply id)."""
    out = ok(ran, "model_streaming")
    assert out.lines[0] == (
        " Hello|!| My| name| is| Claude|.| I|'m| an| AI| assistant| created| by| An|throp|ic| to| be|"
        " helpful|,| harmless|,| and| honest|.||"
    )
    assert sum(bool(_REPLY_ID.search(line)) for line in out.lines) == 2
    assert "AIMessageChunk(content=' Hello')" in without_ids(out.lines)
    assert "AIMessageChunk(content=' Hello! My name is')" in without_ids(out.lines)


def test_chain_streaming_prints_the_parrot_joke(ran: dict[str, Ran]) -> None:
    """prompt | model | parser streams the guide's joke token by token."""
    out = ok(ran, "chain_streaming")
    assert out.stdout == (
        " Here|'s| a| silly| joke| about| a| par|rot|:|\n\nWhat| kind| of| teacher| gives| good| advice|?|"
        " An| ap|-|parent| (|app|arent|)| one|!||\n"
    )


def test_json_streaming_prints_growing_snapshots(ran: dict[str, Ran]) -> None:
    """The JSON parser's snapshots grow from {} to the whole countries document."""
    out = ok(ran, "json_streaming")
    assert out.lines[:5] == [
        "{}",
        "{'countries': []}",
        "{'countries': [{}]}",
        "{'countries': [{'name': ''}]}",
        "{'countries': [{'name': 'France'}]}",
    ]
    assert "{'countries': [{'name': 'France', 'population': 67391582}, {'name': 'Sp'}]}" in out.lines
    assert out.lines[-1] == (
        "{'countries': [{'name': 'France', 'population': 67391582}, {'name': 'Spain', 'population': 46754778},"
        " {'name': 'Japan', 'population': 126476461}]}"
    )
    assert len(out.lines) == 24


def test_json_break_and_fix_pair(ran: dict[str, Ran]) -> None:
    """A plain function yields one final value; the generator streams the names."""
    out = ok(ran, "json_break_and_fix")
    assert out.lines == ["['France', 'Spain', 'Japan']|", "France|Sp|Spain|Japan|"]


def test_retrieval_chain_streams_after_the_retriever(ran: dict[str, Ran]) -> None:
    """The retriever yields one chunk of two documents; the chain streams the answer."""
    out = ok(ran, "retrieval_chain")
    assert out.lines[:2] == [
        "[[Document(page_content='harrison worked at kensho'),",
        "  Document(page_content='harrison likes spicy food')]]",
    ]
    assert out.lines[-1].startswith(" Based| on| the| given| context|,|")
    assert out.lines[-1].endswith("| I| can| only| state| that| Harrison| worked| at| Ken|sh|o|.||")


def test_events_chat_model_first_and_last_events(ran: dict[str, Ran]) -> None:
    """events[:3] are the start and two tokens; events[-2:] the empty token and the end."""
    out = ok(ran, "events_chat_model")
    lines = without_ids(out.lines)
    assert lines[0] == "[{'event': 'on_chat_model_start',"
    assert "  'data': {'chunk': AIMessageChunk(content=' Hello')}}," in lines
    assert "  'data': {'chunk': AIMessageChunk(content='!')}}]" in lines
    assert "  'data': {'chunk': AIMessageChunk(content='')}}," in lines
    assert " {'event': 'on_chat_model_end'," in lines
    assert lines[-1].endswith("'output': AIMessageChunk(content=' Hello!')}}]")
    assert "  'name': 'ChatAnthropic'," in out.lines


def test_events_chain_three_starts_then_live_chunks(ran: dict[str, Ran]) -> None:
    """The chain, model and parser start; then model and parser chunks interleave, cut after 30 events."""
    out = ok(ran, "events_chain")
    starts = [line for line in out.lines if "'event': 'on_" in line]
    assert starts == [
        "[{'event': 'on_chain_start',",
        " {'event': 'on_chat_model_start',",
        " {'event': 'on_parser_start',",
    ]
    chunks = out.lines[out.lines.index("Chat model chunk: ' Here'") :]
    assert chunks[:3] == ["Chat model chunk: ' Here'", "Chat model chunk: ' is'", "Chat model chunk: ' the'"]
    assert chunks[chunks.index("Parser chunk: {}") - 1] == "Chat model chunk: '\\n{'"
    assert "Parser chunk: {'countries': []}" in chunks
    assert chunks[-1] == "..."
    assert len(chunks) == 26


def _events(lines: list[str]) -> list[dict[str, Any]]:
    return [ast.literal_eval(line) for line in lines if line.startswith("{'event'")]


def _sections(stdout: str) -> list[list[str]]:
    return [block.splitlines() for block in stdout.strip().split("\n\n")]


def test_events_filtering_by_name_type_and_tags(ran: dict[str, Ran]) -> None:
    """Each filter keeps only its steps; each listing stops after 11 events with '...'."""
    out = ok(ran, "events_filtering")
    by_name, by_type, by_tags = _sections(out.stdout)
    for section in (by_name, by_type, by_tags):
        assert len(section) == 12 and section[-1] == "..."
    assert all("'name': 'my_parser'" in line for line in by_name[:-1])
    assert by_name[0].startswith("{'event': 'on_parser_start', 'name': 'my_parser'")
    assert (
        "'data': {'chunk': {'countries': [{'name': 'France', 'population': 67391582}, {}]}}}" in by_name[-2]
    )
    assert all("'event': 'on_chat_model_" in line and "'name': 'model'" in line for line in by_type[:-1])
    assert without_ids(by_type)[-2].endswith("'data': {'chunk': AIMessageChunk(content=' their')}}")
    assert by_tags[0].startswith("{'event': 'on_chain_start', 'name': 'RunnableSequence'")
    assert "'tags': ['my_chain']" in by_tags[0]
    assert "'tags': ['seq:step:1', 'my_chain']" in by_tags[1]
    assert "'tags': ['seq:step:2', 'my_chain']" in by_tags[2]


def test_events_non_streaming_still_shows_model_and_parser_chunks(ran: dict[str, Ran]) -> None:
    """astream gives one final list; astream_events shows the model and parser chunks live."""
    out = ok(ran, "events_non_streaming")
    final, live = _sections(out.stdout)
    assert final == ["['France', 'Spain', 'Japan']"]
    assert live[0] == "Chat model chunk: ' Here'"
    assert "Parser chunk: {}" in live and "Parser chunk: {'countries': [{}]}" in live
    assert live[-1] == "..."


def test_propagation_nests_events_without_callbacks(ran: dict[str, Ran]) -> None:
    """bad_tool and the guide's correct_tool show reverse_word's events; so do the RunnableLambda
    and @chain versions (each event with the data the guide prints: the invoked reverse_word
    has no stream event)."""
    out = ok(ran, "propagation")
    bad_tool, correct_tool, as_lambda, as_chain = (_events(section) for section in _sections(out.stdout))
    for events, name in ((bad_tool, "bad_tool"), (correct_tool, "correct_tool")):
        assert [(e["event"], e["name"], e["data"]) for e in events] == [
            ("on_tool_start", name, {"input": "hello"}),
            ("on_chain_start", "reverse_word", {"input": "hello"}),
            ("on_chain_end", "reverse_word", {"input": "hello", "output": "olleh"}),
            ("on_tool_stream", name, {"chunk": "olleh"}),
            ("on_tool_end", name, {"output": "olleh"}),
        ]
    for events in (as_lambda, as_chain):
        assert [(e["event"], e["name"], e["data"]) for e in events] == [
            ("on_chain_start", "reverse_and_double", {"input": "1234"}),
            ("on_chain_start", "reverse_word", {"input": "1234"}),
            ("on_chain_end", "reverse_word", {"input": "1234", "output": "4321"}),
            ("on_chain_stream", "reverse_and_double", {"chunk": "43214321"}),
            ("on_chain_end", "reverse_and_double", {"output": "43214321"}),
        ]


def test_astream_log_patches_and_final_state(ran: dict[str, Ran]) -> None:
    """The patches set up the state, log the Docs retriever, stream tokens; the final state adds up."""
    out = ok(ran, "astream_log")
    patches = [line for line in out.lines if line.startswith("RunLogPatch(")]
    assert patches[0].startswith("RunLogPatch({'op': 'replace', 'path': '', 'value': {'id': ")
    assert patches[1].startswith("RunLogPatch({'op': 'add', 'path': '/logs/Docs', 'value': ")
    assert "RunLogPatch({'op': 'add', 'path': '/streamed_output/-', 'value': ' Harrison'}, " in out.stdout
    assert " 'final_output': ' Harrison worked at Kensho.'," in out.lines
    assert " 'streamed_output': [' Harrison', ' worked', ' at', ' Ken', 'sh', 'o', '.']," in out.lines


def test_structured_concurrency_deadline_cancels_the_slow_run(ran: dict[str, Ran]) -> None:
    """The deadline cancels the long-winded run; the summary lists every run and the finished jokes."""
    out = ok(ran, "structured_concurrency")
    summary = out.lines[out.lines.index("== summary ==") :]
    assert "stopped: deadline reached" in summary
    states = {line.split()[0]: line.split()[1] for line in summary if "root run" in line}
    assert set(states) == {"parrot", "cat", "robot", "octopus"}
    assert states["octopus"] == "cancelled"  # it needs more than twice the deadline
    assert set(states.values()) <= {"done", "cancelled"}
    for topic, state in states.items():
        assert any(line.startswith(f"{topic}: Why") for line in summary) == (state == "done")
    assert any("octopus" in line and line.endswith("cancelled") for line in out.lines)


def test_structured_concurrency_ctrl_c_cancels_everything(ran: dict[str, Ran]) -> None:
    """SIGINT cancels every run, prints the summary and exits with 130."""
    result = ran["ctrl_c"]
    assert result.returncode == 130, result.stderr
    assert result.stderr == ""
    summary = result.lines[result.lines.index("== summary ==") :]
    assert "stopped: interrupted (Ctrl-C)" in summary
    states = [line.split()[1] for line in summary if "root run" in line]
    assert "cancelled" in states and "running" not in states


def test_main_example_streams_then_watches_the_run_and_a_batch(ran: dict[str, Ran]) -> None:
    """main.py prints the joke's tokens, then (not a terminal) a line per step and the run's
    tree, writes its trace, then the batch's progress and one row per input."""
    out = ok(ran, "main")
    assert out.lines[0] == "== astream: tokens as they arrive =="
    watched = out.lines[out.lines.index("== watch: the same chain, step by step ==") + 1 :]
    assert [line.split()[:2] for line in watched[:4]] == [
        ["done", "ChatPromptTemplate"],
        ["done", "ScriptedChatModel"],
        ["done", "StrOutputParser"],
        ["done", "RunnableSequence"],
    ]
    tree = watched[4:9]
    assert tree[0].split() == ["step", "state", "chunks", "tokens", "first", "time"]
    assert [row.split()[:4] for row in tree[1:]] == [
        ["RunnableSequence", "done", "30", "14/29"],
        ["├─", "ChatPromptTemplate", "done", "1"],
        ["├─", "ScriptedChatModel", "done", "30"],
        ["└─", "StrOutputParser", "done", "30"],
    ]
    assert watched[9] == "trace written to main-trace.json: open it at https://ui.perfetto.dev"
    trace = json.loads((out.cwd / "main-trace.json").read_text(encoding="utf-8"))
    assert len([e for e in trace["traceEvents"] if e["ph"] == "X"]) == 4
    batch = out.lines[out.lines.index("== watch: abatch over 4 topics, 2 at a time ==") + 1 :]
    assert "batch: 4 of 4 done, 0 failed, 0 running  [####]" in batch
    assert [line.split()[:3] for line in batch[-4:]] == [
        [f"#{n}", "RunnableSequence", "done"] for n in range(1, 5)
    ]


def test_service_example_parses_its_arguments(ran: dict[str, Ran]) -> None:
    """service.py imports cleanly and describes its --port option."""
    out = ok(ran, "service_help")
    assert "--port" in out.stdout


def test_resilience_example_retries_before_the_commit_point_only(ran: dict[str, Ran]) -> None:
    """resilience.py: a 529 and a mid-stream error retried, no retry after two tokens, a
    stall stopped by idle and retried, a fallback, each attempt in the events, and every attempt's usage."""
    out = ok(ran, "resilience")
    lines = [line.strip() for line in out.lines]
    assert lines[1:3] == ["Why| did| the| parrot| talk?", "the model was called 2 times"]
    assert lines[4] == "|Because| it| could."
    assert lines[6].startswith("It| was  -> ModelStreamError:")
    assert "RunnableRetry had delivered 2 chunks" in lines[6]
    assert lines[7] == "the model was called 1 time"
    assert lines[9:11] == ["A| parrot,| mid-sentence.", "the model was called 2 times"]  # idle, retried
    assert lines[12] == "A| parrot| walks| into| a| bar.|"
    assert [line for line in lines if line.startswith(("on_chat_model_start", "on_chat_model_error"))] == [
        "on_chat_model_start claude-primary (attempt 1)",
        "on_chat_model_error claude-primary (attempt 1): ModelStreamError",
        "on_chat_model_start claude-primary (attempt 2)",
        "on_chat_model_error claude-primary (attempt 2): ModelStreamError",
        "on_chat_model_start claude-backup (attempt 2)",
    ]
    assert lines[-1] == "total: UsageMetadata(input_tokens=36, output_tokens=7, total_tokens=43)"


def test_tool_loop_example_streams_tokens_tool_answers_and_nested_events(ran: dict[str, Ran]) -> None:
    """tool_loop.py: both turns' text and both answers stream; every call is nested under the
    loop with its turn; the transcript is ask, two answers, answer."""
    out = ok(ran, "tool_loop")
    lines = [line.strip() for line in out.lines]
    assert lines[1] == "Let me look that up."
    assert "[get_weather answered: sunny, 24 C in Lisbon]" in lines
    assert "[get_time answered: 14:05 in Lisbon]" in lines
    assert "It is sunny and 24 C in Lisbon, and the local time is 14:05." in lines
    nested = [line for line in lines if line.startswith(("on_tool_start", "on_chat_model_start"))]
    assert sorted(nested) == [
        "on_chat_model_start claude (turn 1, under the loop: True)",
        "on_chat_model_start claude (turn 2, under the loop: True)",
        "on_tool_start get_time (turn 1, under the loop: True)",
        "on_tool_start get_weather (turn 1, under the loop: True)",
    ]
    assert lines[lines.index("on_chain_start ToolLoop") + 1].startswith("on_chat_model_start claude (turn 1")
    assert lines[-5:] == [
        "3. ainvoke: the transcript",
        "AIMessage: 'Let me look that up.' calls ['get_weather', 'get_time']",
        "ToolMessage: 'sunny, 24 C in Lisbon'",
        "ToolMessage: '14:05 in Lisbon'",
        "AIMessage: 'It is sunny and 24 C in Lisbon, and the local time is 14:05.'",
    ]
