"""ChatAnthropic inside the five-step chain, against the loopback Messages API server.

The chain is ``{"a": source, "b": passthrough} | prompt | ChatAnthropic | parser |
generator | probe``. Two kinds of test:

* the server failing every way ANTHROPIC-SDK-NOTES.md lists (429/529 before the stream,
  with and without retries, a hang-up before the response, an ``event: error`` at the
  first, a middle and the last token, a connection cut with FIN or RST, a body without
  ``message_stop``): the caller gets the right exception after every chunk made before
  it, every step ends, and no connection is left open;
* the run stopped at a sample of its wait points (every way, every consumer style, as in
  test_reliability_cancellation): besides the usual checks, the model's HTTP stream was
  closed: every request finished and the server has no connection left.

Network I/O makes the number of wait points vary a little from run to run, so a sample
point past a run's end simply lets that run complete (and is checked as such).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import anyio
import anyio.to_thread
import pytest
from _reliability_harness import Lifecycle, Monitor, lifecycle_generator, settle, tally
from _reliability_stops import COMBINATIONS, sweep
from anthropic_server import AnthropicServer, ErrorReply, HangUp, Reply, TextStream

from engine import EventBus, RunCancelled, RunnableLambda, RunnablePassthrough
from engine.testing import GatedSource, Probe, check_event_order, cleanup_guard
from nodes import ChatAnthropic, ModelStreamError, StrOutputParser

MODEL = "claude-test-model"  # not in the SDK's DEPRECATED_MODELS (its warning would be an error)
HANG_GUARD = 5.0  # seconds; only bounds a wait on the server's threads that should end at once
TOKENS = ["t1", " t2", " t3", " t4", " t5"]
DEFAULT_SAMPLE = 2


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    """A loopback Messages API server for one test, streaming TOKENS by default."""
    with AnthropicServer(default_reply=TextStream(TOKENS)) as running:
        yield running


class AnthropicPipeline:
    """The five-step chain with ChatAnthropic as its model."""

    def __init__(self, server: AnthropicServer, *, max_retries: int = 0) -> None:
        self.server = server
        self.source: GatedSource[str] = GatedSource(["x", "y"])
        self.source.release_all()
        self.prompt_life = Lifecycle("prompt")
        self.model = ChatAnthropic(
            model=MODEL, api_key="test-key", base_url=server.base_url, max_retries=max_retries
        )
        self.shout, self.shout_life = lifecycle_generator("shout", str.upper)
        self.probe: Probe[str] = Probe("last")
        self.expected = [*(token.upper() for token in TOKENS), ""]  # the last chunk carries usage only

        async def prompt(values: dict[str, str]) -> str:
            with self.prompt_life.running():
                return f"{values['a']}/{values['b']}"

        self.chain = (
            {"a": self.source, "b": RunnablePassthrough()}
            | RunnableLambda(prompt)
            | self.model
            | StrOutputParser()
            | self.shout
            | self.probe
        )

    def assert_cleaned_up(self) -> None:
        assert self.source.running == 0 and self.probe.running == 0
        self.prompt_life.assert_cleaned_up_in_run()
        self.shout_life.assert_cleaned_up_in_run()

    async def after_run(self, stopped: bool) -> None:
        """The model's HTTP stream is closed: each request finished, no connection is open."""
        await assert_http_closed(self.server)


async def assert_http_closed(server: AnthropicServer) -> None:
    for record in server.requests:
        assert await anyio.to_thread.run_sync(record.finished.wait, HANG_GUARD), "a response never finished"
        assert record.outcome != "server_stopped"
    assert await anyio.to_thread.run_sync(server.wait_until_no_connections, HANG_GUARD), (
        f"{server.open_connections} connection(s) left open"
    )
    assert server.errors == []


# -- the server failing ------------------------------------------------------------------------

FAILURES: dict[str, tuple[list[Reply], int, type[BaseException] | None, int, list[str]]] = {
    # name: (replies, max_retries, expected exception, chunks before it, request outcomes)
    "429-no-retry": (
        [ErrorReply(429, "rate_limit_error", retry_after=0.001)],
        0,
        anthropic.RateLimitError,
        0,
        ["error_status"],
    ),
    "529-no-retry": (
        [ErrorReply(529, "overloaded_error", retry_after=0.001)],
        0,
        anthropic.OverloadedError,
        0,
        ["error_status"],
    ),
    "529-retries-run-out": (
        [ErrorReply(529, "overloaded_error", retry_after=0.001)] * 3,
        2,
        anthropic.OverloadedError,
        0,
        ["error_status"] * 3,
    ),
    "429-then-streams": (
        [ErrorReply(429, "rate_limit_error", retry_after=0.001), TextStream(TOKENS)],
        2,
        None,
        6,
        ["error_status", "complete"],
    ),
    "hang-up": ([HangUp()], 0, anthropic.APIConnectionError, 0, ["dropped"]),
    "error-event-first": ([TextStream(TOKENS, error_after=0)], 2, ModelStreamError, 0, ["error_event"]),
    "error-event-middle": ([TextStream(TOKENS, error_after=2)], 2, ModelStreamError, 2, ["error_event"]),
    "error-event-last": ([TextStream(TOKENS, error_after=5)], 2, ModelStreamError, 5, ["error_event"]),
    "dropped-fin": (
        [TextStream(TOKENS, drop_after=3, drop_mode="close")],
        2,
        ModelStreamError,
        3,
        ["dropped"],
    ),
    "dropped-rst": ([], 2, ModelStreamError, 3, ["dropped"]),  # scripted in the test: held until read
    "no-message-stop": ([TextStream(TOKENS, omit_message_stop=True)], 2, ModelStreamError, 5, ["complete"]),
}


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_the_model_server_failing_every_way_in_a_full_chain(
    server: AnthropicServer, failure: str
) -> None:
    """Each server failure reaches the caller as the right error after the earlier chunks; all ends, all closes."""
    replies, max_retries, expected_error, chunks_before, outcomes = FAILURES[failure]
    cut = threading.Event()
    if failure == "dropped-rst":
        # A RST may discard data the client has not read: cut only once three chunks are through.
        replies = [TextStream(TOKENS, drop_after=3, drop_mode="reset", hold_before={3: cut})]
    server.script_many(replies)
    pipe = AnthropicPipeline(server, max_retries=max_retries)
    bus = EventBus()
    got: list[str] = []
    error: BaseException | None = None
    async with cleanup_guard(), Monitor(bus, capacity=8) as monitor:
        try:
            async with pipe.chain.astream("q", {"bus": bus, "capacity": 1}) as chunks:
                async for chunk in chunks:
                    got.append(chunk)
                    if len(got) == 3:
                        cut.set()
        except Exception as exc:
            error = exc
        await settle()
        pipe.assert_cleaned_up()
    await assert_http_closed(server)
    if expected_error is None:
        assert error is None
        assert got == pipe.expected
    else:
        assert type(error) is expected_error, f"got {error!r}"
        # Every chunk made before the failure reached the consumer, in order.
        assert [c for c in got if c] == [t.upper() for t in TOKENS[:chunks_before]]
        errors = {e["name"]: e["data"]["error"] for e in monitor.events if e["event"].endswith("_error")}
        assert errors["ChatAnthropic"] is error and errors["RunnableSequence"] is error
        assert all(e is error or isinstance(e, RunCancelled) for e in errors.values())
    assert [r.outcome for r in server.requests] == outcomes
    assert monitor.started_steps() == monitor.ended_steps()
    tally("faults injected")


async def test_a_model_failure_reported_through_astream_events(server: AnthropicServer) -> None:
    """With astream_events the consumer sees the chunks, the error events up to the root, then the error."""
    server.script(TextStream(TOKENS, error_after=2, error_type="overloaded_error"))
    pipe = AnthropicPipeline(server)
    events: list[dict[str, Any]] = []
    async with cleanup_guard():
        with pytest.raises(ModelStreamError) as info:
            async with pipe.chain.astream_events("q", {"capacity": 1}) as stream:
                async for event in stream:
                    events.append(event)
        await settle()
    await assert_http_closed(server)
    check_event_order(events, complete=True)
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_chain_stream" and not e["parent_ids"]]
    assert streamed == [t.upper() for t in TOKENS[:2]]
    assert events[-1]["event"] == "on_chain_error" and events[-1]["data"]["error"] is info.value
    assert info.value.error_type == "overloaded_error"


# -- stopping the run at its wait points -------------------------------------------------------


@pytest.mark.parametrize(("style", "way"), COMBINATIONS)
async def test_stopping_a_chat_anthropic_run_at_sampled_wait_points_closes_its_stream(
    server: AnthropicServer, style: str, way: str
) -> None:
    """Stopped at sampled wait points, a run with ChatAnthropic cleans up and closes its HTTP stream."""
    total, stopped = await sweep(lambda: AnthropicPipeline(server), style, way, DEFAULT_SAMPLE, exact=False)
    assert total > 20
    assert stopped >= 1


@pytest.mark.slow
@pytest.mark.parametrize(("style", "way"), COMBINATIONS)
async def test_stopping_a_chat_anthropic_run_at_every_wait_point_closes_its_stream(
    server: AnthropicServer, style: str, way: str
) -> None:
    """Stopped at every wait point, a run with ChatAnthropic cleans up and closes its HTTP stream."""
    total, stopped = await sweep(lambda: AnthropicPipeline(server), style, way, None, exact=False)
    assert stopped >= total * 0.8, f"only {stopped} of {total} points were reached"


async def test_a_stopped_stream_shows_up_as_client_gone_on_the_server(server: AnthropicServer) -> None:
    """Breaking off while the server holds the rest of the reply: the server sees the client go away."""
    never = threading.Event()
    server.script(TextStream(TOKENS, hold_before={2: never}))
    pipe = AnthropicPipeline(server)
    async with cleanup_guard():
        async with pipe.chain.astream("q", {"capacity": 1}) as chunks:
            async for _ in chunks:
                break
        await settle()
        pipe.assert_cleaned_up()
    record = server.requests[0]
    assert await anyio.to_thread.run_sync(record.client_gone.wait, HANG_GUARD)
    assert record.outcome == "client_gone" and record.deltas_sent <= 2
    await assert_http_closed(server)


async def test_malformed_tool_arguments_from_the_model_are_an_invalid_tool_call(
    server: AnthropicServer,
) -> None:
    """Tool-call JSON cut short by the model becomes an invalid tool call naming the JSON error."""
    from anthropic_server import ToolUseStream

    from nodes import ToolArgumentError, tool

    @tool
    def get_weather(city: str) -> str:
        """Get the weather in a city."""
        return f"sunny in {city}"

    server.script(ToolUseStream("get_weather", "toolu_1", ['{"city": ', '"Par'], text_before=["Checking"]))
    model = ChatAnthropic(model=MODEL, api_key="test-key", base_url=server.base_url, max_retries=0)
    async with cleanup_guard():
        message = await model.bind_tools([get_weather]).ainvoke("weather in Paris?")
    assert message.tool_calls == []
    [invalid] = message.invalid_tool_calls
    assert (invalid.name, invalid.id, invalid.args) == ("get_weather", "toolu_1", '{"city": "Par')
    assert "not valid JSON" in str(invalid.error) and "Unterminated string" in str(invalid.error)
    # Handing the raw arguments to the tool anyway fails at the tool, naming them.
    with pytest.raises(
        ToolArgumentError, match="argument 'city': expected a string, got an object with keys 'raw'"
    ):
        await get_weather.ainvoke({"city": {"raw": invalid.args}})
    await assert_http_closed(server)
    tally("faults injected")
