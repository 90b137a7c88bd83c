"""engine.sse: a run as server-sent events, over loopback, with Starlette and with FastAPI,
served by uvicorn on asyncio and by hypercorn's trio worker on trio.

Every test that talks HTTP runs on both backends (the ``anyio_backend`` fixture picks the
server) and both frameworks.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from _sse_helpers import FastChatModel, GatedChatModel, Message, SSEResponse, make_app, open_sse, serving
from starlette.requests import Request
from starlette.responses import Response

from engine import ConfigError, Runnable
from engine.sse import EventSourceResponse, EventsView, RunRegistry, error_data, sse_message, to_json
from engine.testing import Probe
from nodes import (
    AIMessageChunk,
    BaseChatModel,
    ChatPromptTemplate,
    ScriptedChatModel,
    ScriptedReply,
    StrOutputParser,
)

FRAMEWORKS = pytest.mark.parametrize("framework", ["starlette", "fastapi"])
TOKENS = [" Why", " did", " the", " parrot", "\ntalk?"]
GUIDE_KEYS = ["event", "name", "run_id", "parent_ids", "tags", "metadata", "data"]


def joke_chain(model: BaseChatModel, *more: Any) -> Runnable[Any, Any]:
    prompt = ChatPromptTemplate.from_template("tell me a joke about {topic}")
    return prompt.pipe(model, StrOutputParser(), *more)


def topic(request: Request) -> dict[str, str]:
    return {"topic": request.query_params.get("topic", "parrot")}


def served_app(framework: str, chain: Runnable[Any, Any], view: EventsView | None = None) -> Any:
    """An app whose GET /joke streams ``chain`` for each connection."""

    async def joke(request: Request) -> Response:
        return EventSourceResponse(chain, topic(request), events=view)

    return make_app(framework, {"/joke": joke})


def registry_app(framework: str, registry: RunRegistry, chain: Runnable[Any, Any], **options: Any) -> Any:
    """An app whose GET /joke streams runs of ``chain`` that ``registry`` holds (entered in the lifespan)."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with registry:
            yield

    async def joke(request: Request) -> Response:
        return registry.response(request, chain, topic(request), **options)

    return make_app(framework, {"/joke": joke}, lifespan=lifespan)


async def get_messages(
    url: str, headers: dict[str, str] | None = None, topic: str = "parrot"
) -> list[Message]:
    """Every message of one GET /joke (checked to be a 200 event stream)."""
    async with open_sse(url, "/joke", {"topic": topic}, headers) as response:
        assert response.status == 200, await response.read_text()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        return await response.read_all()


async def read_until(response: SSEResponse, count: int, model: GatedChatModel | None = None) -> list[Message]:
    """Read ``count`` messages; with a gated ``model``, release one token before each."""
    received: list[Message] = []
    while len(received) < count:
        if model is not None:
            model.release(1)
        message = await response.read_message()
        assert message is not None, f"the stream ended after {received}"
        received.append(message)
    return received


# -- one run per connection ---------------------------------------------------------------


@FRAMEWORKS
async def test_each_output_chunk_is_one_message_then_the_end(framework: str) -> None:
    """GET streams the chain's tokens, one message each (line breaks kept), then an `end` message."""
    model = ScriptedChatModel(replies=[TOKENS])
    async with serving(served_app(framework, joke_chain(model))) as url:
        messages = await get_messages(url)
    assert messages == [*(Message("message", t, None) for t in TOKENS), Message("end", "", None)]
    assert model.received[0][0].text == "tell me a joke about parrot"


@FRAMEWORKS
async def test_an_events_view_streams_the_filtered_events_as_json_in_the_guide_shape(framework: str) -> None:
    """EventsView(include_types=["chat_model"]) streams the model's start, stream and end events as JSON."""
    model = ScriptedChatModel(replies=[TOKENS])
    app = served_app(framework, joke_chain(model), EventsView(include_types=["chat_model"]))
    async with serving(app) as url:
        messages = await get_messages(url)
    assert messages[-1] == Message("end", "", None)
    events = [json.loads(m.data) for m in messages[:-1]]
    assert all(list(e) == GUIDE_KEYS for e in events)
    assert [e["event"] for e in events] == [
        "on_chat_model_start",
        *["on_chat_model_stream"] * len(TOKENS),
        "on_chat_model_end",
    ]
    assert [e["data"]["chunk"]["content"] for e in events[1:-1]] == TOKENS
    assert len(events[0]["parent_ids"]) == 1  # v2: the sequence above it


@FRAMEWORKS
async def test_a_failing_run_ends_with_an_error_message_not_a_torn_connection(framework: str) -> None:
    """A model failing after two tokens: what got through, an `error` message naming the error, a clean end."""
    model = ScriptedChatModel(
        replies=[ScriptedReply(TOKENS, error=ValueError("the model broke"), error_after=2)]
    )
    async with serving(served_app(framework, joke_chain(model))) as url:
        messages = await get_messages(url)
    # The failure stops the steps after the model: they may not have passed its last tokens on.
    assert [m.data for m in messages[:-1]] == TOKENS[: len(messages) - 1] and len(messages) <= 3
    assert messages[-1] == Message(
        "error", to_json({"error": "ValueError", "message": "the model broke"}), None
    )


@FRAMEWORKS
@pytest.mark.parametrize("producer", ["slow", "fast"])
async def test_a_disconnect_mid_stream_cancels_the_run_and_the_model_call(
    framework: str, producer: str
) -> None:
    """A client leaving after two messages stops the run at once: the model's generator is closed
    (its finally runs) with the cancellation, whether it was waiting or producing as fast as it could."""
    model: GatedChatModel | FastChatModel = GatedChatModel() if producer == "slow" else FastChatModel()
    probe: Probe[str] = Probe()
    async with serving(served_app(framework, joke_chain(model, probe))) as url:
        async with open_sse(url, "/joke", {"topic": "parrot"}) as response:
            received = await read_until(response, 2, model if isinstance(model, GatedChatModel) else None)
        # The connection is closed: the server sees the disconnect and the response stops the run.
        with anyio.fail_after(10):  # a hang guard, not a timing assertion
            await model.closed.wait()
        await anyio.wait_all_tasks_blocked()
        produced = model.produced
        if isinstance(model, GatedChatModel):
            model.release(100)  # were the run alive, the model would go on now
        await anyio.wait_all_tasks_blocked()
        assert model.produced == produced and probe.running == 0
    assert [m.data for m in received] == [" t1", " t2"]
    if producer == "slow":
        assert isinstance(model.exit, anyio.get_cancelled_exc_class())
    else:
        # Suspended at its yield, a generator is closed there: GeneratorExit, not a cancellation.
        assert isinstance(model.exit, anyio.get_cancelled_exc_class() | GeneratorExit)


async def test_a_send_that_fails_stops_the_run_and_the_response_returns_quietly() -> None:
    """When send raises (an ASGI 2.4 server's disconnect), the run is stopped in place and the response returns."""
    model = GatedChatModel()
    model.release(1000)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(sent) == 3:
            raise OSError("the client went away")

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    response = EventSourceResponse(joke_chain(model), {"topic": "parrot"})
    with anyio.fail_after(10):
        await response({"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}}, receive, send)
    assert model.closed.is_set()
    produced = model.produced
    model.release(1000)
    await anyio.wait_all_tasks_blocked()
    assert model.produced == produced and model.calls == 1
    assert sent[0]["type"] == "http.response.start" and sent[1]["body"].startswith(b"data:  t1\n\n")


def test_bad_arguments_are_refused_when_the_response_is_made() -> None:
    """A non-runnable, a bad events view or a bad config raise at construction, before any response."""
    chain = joke_chain(ScriptedChatModel(replies=[TOKENS]))
    with pytest.raises(TypeError, match="expected a Runnable to serve"):
        EventSourceResponse(lambda x: x, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape("events= takes an EventsView(...)")):
        EventSourceResponse(chain, {}, events={"include_types": ["chat_model"]})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown key"):
        EventSourceResponse(chain, {}, {"nope": 1})


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"include_types": ["nope"]}, ValueError, "unknown step type 'nope'"),
        (
            {"include_names": "model"},
            TypeError,
            "include_names must be a list of strings, not the string 'model'",
        ),
        ({"exclude_tags": [3]}, TypeError, "exclude_tags must hold strings, got 3"),
        ({"exclude_names": 3}, TypeError, "an EventsView filter must be a list of strings, got 3"),
        ({"version": "v3"}, ValueError, "unknown astream_events version 'v3'"),
    ],
)
def test_a_bad_events_view_is_refused_when_made(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    """EventsView checks its filters and version at once, with astream_events' messages."""
    with pytest.raises(error, match=re.escape(message)):
        EventsView(**arguments)


def test_sse_message_writes_each_line_as_a_data_field() -> None:
    """CR, LF and CRLF each split a data line; event and id lines come first; line breaks there are refused."""
    assert sse_message(" Here") == "data:  Here\n\n"
    assert sse_message("a\r\nb\rc\nd") == "data: a\ndata: b\ndata: c\ndata: d\n\n"
    assert sse_message("", event="end", id="r:end") == "event: end\nid: r:end\ndata: \n\n"
    with pytest.raises(ValueError, match="cannot hold a line break"):
        sse_message("x", event="a\nb")
    with pytest.raises(ValueError, match="NUL"):
        sse_message("x", id="a\0b")


def test_to_json_writes_messages_errors_and_what_json_cannot() -> None:
    """to_json writes an attrs message as its fields, an error as error_data, other objects as str."""
    chunk = json.loads(to_json(AIMessageChunk(content="hi")))
    assert chunk["content"] == "hi" and chunk["tool_call_chunks"] == []
    assert json.loads(to_json({"e": KeyError("k"), "o": uuid.UUID(int=0)})) == {
        "e": error_data(KeyError("k")),
        "o": "00000000-0000-0000-0000-000000000000",
    }


# -- resumable mode -----------------------------------------------------------------------


@FRAMEWORKS
async def test_a_reconnecting_client_gets_the_rest_of_the_same_run(framework: str) -> None:
    """Resumable mode: a disconnect detaches (the model goes on); reconnecting with the last id
    yields every later token once, then `end`; reconnecting after `end` gets 204."""
    model = GatedChatModel(total=5)
    registry = RunRegistry(replay=100)
    async with serving(registry_app(framework, registry, joke_chain(model))) as url:
        async with open_sse(url, "/joke", {"topic": "parrot"}) as response:
            first = await read_until(response, 3, model)  # run, t1, t2
        run = json.loads(first[0].data)
        assert first[0] == Message("run", first[0].data, f"{run['run_id']}:0") and run["after"] == 0
        assert [m.data for m in first[1:]] == [" t1", " t2"]
        await anyio.wait_all_tasks_blocked()
        assert not model.closed.is_set() and registry.get(run["run_id"]) is not None
        model.release(3)  # the run finishes while nobody is connected
        with anyio.fail_after(10):
            await registry.get(run["run_id"]).wait()  # type: ignore[union-attr]
        last_id = first[-1].id
        assert last_id is not None
        rest = await get_messages(url, {"Last-Event-ID": last_id})
        assert rest[0].event == "run" and json.loads(rest[0].data)["after"] == int(last_id.split(":")[1])
        assert [m.data for m in rest[1:-1]] == [" t3", " t4", " t5"]
        assert rest[-1] == Message("end", "", f"{run['run_id']}:end")
        ids = [int(m.id.split(":")[1]) for m in [*first[1:], *rest[1:-1]] if m.id]
        assert ids == sorted(set(ids))
        async with open_sse(url, "/joke", {"topic": "parrot"}, {"Last-Event-ID": rest[-1].id or ""}) as done:
            assert done.status == 204
    assert model.calls == 1 and model.exit is None


@FRAMEWORKS
async def test_a_resumable_events_view_resumes_the_json_events(framework: str) -> None:
    """Resumable mode with an EventsView: the events come as JSON with `<run>:<seq>` ids, and resume after any of them."""
    model = ScriptedChatModel(replies=[TOKENS])
    registry = RunRegistry(replay=100)
    app = registry_app(
        framework, registry, joke_chain(model), events=EventsView(include_types=["chat_model"])
    )
    async with serving(app) as url:
        whole = await get_messages(url)
        events = [json.loads(m.data) for m in whole[1:-1]]
        assert all(list(e) == GUIDE_KEYS for e in events)
        assert events[0]["event"] == "on_chat_model_start" and whole[0].event == "run"
        rest = await get_messages(url, {"Last-Event-ID": whole[3].id or ""})
    assert rest[1:] == whole[4:]


async def test_cancel_stops_a_detached_run_and_its_readers_hear_it() -> None:
    """registry.cancel(run_id) cancels the run (the model sees it); a connected client gets an `error` message."""
    model = GatedChatModel()
    registry = RunRegistry(replay=100)
    async with (
        serving(registry_app("starlette", registry, joke_chain(model))) as url,
        open_sse(url, "/joke", {"topic": "parrot"}) as response,
    ):
        model.release(1)
        received = await read_until(response, 2)
        run_id = json.loads(received[0].data)["run_id"]
        assert registry.cancel(run_id)
        with anyio.fail_after(10):
            await model.closed.wait()
            received += await response.read_all()
    assert isinstance(model.exit, anyio.get_cancelled_exc_class())
    assert received[-1].event == "error" and json.loads(received[-1].data)["error"] == "RunCancelled"
    assert received[-1].id == f"{run_id}:end"
    assert registry.get(run_id).cancelled  # type: ignore[union-attr]
    assert not registry.cancel(run_id) and not registry.cancel("no-such-run")


@FRAMEWORKS
async def test_a_client_that_comes_back_too_late_gets_an_events_lost_message(framework: str) -> None:
    """A Last-Event-ID older than the replay log: `events_lost` names the gap, then what the log holds."""
    model = ScriptedChatModel(replies=[[f" t{i}" for i in range(1, 9)]])
    registry = RunRegistry(replay=3)
    async with serving(registry_app(framework, registry, joke_chain(model))) as url:
        async with open_sse(url, "/joke", {"topic": "parrot"}) as response:
            first = await read_until(response, 1)  # the `run` message only
        run_id = json.loads(first[0].data)["run_id"]
        with anyio.fail_after(10):
            await registry.get(run_id).wait()  # type: ignore[union-attr]
        rest = await get_messages(url, {"Last-Event-ID": f"{run_id}:1"})
    lost = rest[1]
    assert lost.event == "events_lost"
    gap = json.loads(lost.data)
    assert gap["from"] == 2 and lost.id == f"{run_id}:{gap['to']}"
    # The log held the last 3 events: t7, t8 and the run's end event (which sends no message).
    assert [m.data for m in rest[2:-1]] == [" t7", " t8"] and rest[-1].event == "end"


@FRAMEWORKS
async def test_a_bad_last_event_id_gets_a_clear_refusal(framework: str) -> None:
    """Not a number: 400; an unknown run: 404; a run of another URL: 409; past the run's newest event: 400."""
    model = ScriptedChatModel(replies=[TOKENS])
    registry = RunRegistry(replay=100)
    async with serving(registry_app(framework, registry, joke_chain(model))) as url:
        whole = await get_messages(url)
        run_id = json.loads(whole[0].data)["run_id"]

        async def refusal(last_event_id: str, topic: str = "parrot") -> tuple[int, str]:
            async with open_sse(url, "/joke", {"topic": topic}, {"Last-Event-ID": last_event_id}) as reply:
                return reply.status, await reply.read_text()

        status, text = await refusal("seven")
        assert status == 400 and "Last-Event-ID 'seven' is not '<run id>:<event number>'" in text
        status, text = await refusal(f"{run_id}:3x")
        assert status == 400 and "is not '<run id>:<event number>'" in text
        unknown = str(uuid.uuid4())
        status, text = await refusal(f"{unknown}:3")
        assert status == 404 and f"names run {unknown}, which this server does not hold" in text
        status, text = await refusal(f"{run_id}:3", topic="duck")
        assert status == 409 and "which streams /joke?topic=parrot, not /joke?topic=duck" in text
        status, text = await refusal(f"{run_id}:999")
        assert status == 400 and f"names event 999 of run {run_id}, which has made events up to" in text
    assert model.received and len(model.received) == 1  # no refusal started a run


async def test_a_registry_refuses_a_zero_replay_and_runs_outside_its_block() -> None:
    """RunRegistry(replay=0) and a bad keep raise at once; start() before entering it raises RuntimeError."""
    with pytest.raises(ValueError, match=re.escape("a replay log's capacity must be >= 1")):
        RunRegistry(replay=0)
    with pytest.raises(ValueError, match="keep must be an int >= 0"):
        RunRegistry(keep=-1)
    registry = RunRegistry()
    with pytest.raises(RuntimeError, match="needs the registry entered"):
        registry.start(joke_chain(ScriptedChatModel(replies=[TOKENS])), {"topic": "x"})


async def test_the_registry_forgets_the_oldest_finished_runs_beyond_keep() -> None:
    """With keep=2, a third finished run makes the registry forget the first (a resume then gets 404)."""
    chain = joke_chain(ScriptedChatModel(replies=[TOKENS]))
    async with RunRegistry(keep=2) as registry:
        runs = []
        with anyio.fail_after(10):
            for n in range(3):
                runs.append(registry.start(chain, {"topic": str(n)}))
                await runs[-1].wait()
        assert [registry.get(run.run_id) is not None for run in runs] == [False, True, True]


async def test_leaving_the_registry_cancels_the_runs_it_holds() -> None:
    """Leaving `async with registry` cancels a run still going (its model sees the cancellation)."""
    model = GatedChatModel()
    with anyio.fail_after(10):
        async with RunRegistry() as registry:
            run = registry.start(joke_chain(model), {"topic": "x"})
            await anyio.wait_all_tasks_blocked()
        assert model.closed.is_set() and run.cancelled
    assert isinstance(model.exit, anyio.get_cancelled_exc_class())
