"""The service example: a chain's tokens as server-sent events over a real HTTP connection.

The example's app is served on 127.0.0.1 (uvicorn on asyncio, hypercorn on trio) and read
by a client over a loopback socket; a client that disconnects must stop the run at once,
and the resumable route must give a client that comes back the rest of its run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
from _sse_helpers import GatedChatModel, Message, SSEResponse, open_sse, serving

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from _guide_data import JOKE_TOKENS
from service import create_app

from engine.testing import Probe
from nodes import BaseChatModel, ChatPromptTemplate, ScriptedChatModel, StrOutputParser


def joke_chain(model: BaseChatModel, *more: Any) -> Any:
    prompt = ChatPromptTemplate.from_template("tell me a joke about {topic}")
    return prompt.pipe(model, StrOutputParser(), *more)


async def read(response: SSEResponse, count: int, model: GatedChatModel) -> list[Message]:
    """``count`` messages, one token released before each."""
    received = []
    for _ in range(count):
        model.release(1)
        message = await response.read_message()
        assert message is not None
        received.append(message)
    return received


async def test_client_receives_every_token_as_an_event() -> None:
    """GET /joke streams the chain's tokens, one server-sent event each, in order, then `end`."""
    model = ScriptedChatModel(replies=[JOKE_TOKENS])
    async with (
        serving(create_app(joke_chain(model))) as url,
        open_sse(url, "/joke", {"topic": "parrot"}) as response,
    ):
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        messages = await response.read_all()
    assert [m.data for m in messages[:-1]] == JOKE_TOKENS and messages[-1].event == "end"
    assert len(model.received) == 1 and model.received[0][0].text == "tell me a joke about parrot"


async def test_client_disconnect_cancels_the_run_and_closes_the_model_stream() -> None:
    """A client leaving after two tokens cancels every actor and closes the model's stream."""
    model = GatedChatModel()
    probe: Probe[str] = Probe()
    async with serving(create_app(joke_chain(model, probe))) as url:
        async with open_sse(url, "/joke", {"topic": "parrot"}) as response:
            received = await read(response, 2, model)
        # The connection is closed now; the server notices and the response cancels the run.
        with anyio.fail_after(10):  # a hang guard, not a timing assertion
            await model.closed.wait()
        await anyio.wait_all_tasks_blocked()
        assert probe.running == 0 and probe.cancelled == 1
        model.release(100)  # were the run still alive, the model would go on now
        await anyio.wait_all_tasks_blocked()
    assert [m.data for m in received] == [" t1", " t2"]
    assert model.calls == 1 and model.produced == 2
    assert isinstance(model.exit, anyio.get_cancelled_exc_class())
    assert probe.seen == [" t1", " t2"]


async def test_the_resumable_route_gives_a_returning_client_the_rest_and_delete_cancels() -> None:
    """/resumable/joke: a client that drops and comes back with Last-Event-ID gets the next tokens
    once; DELETE /runs/<id> cancels the run, and the client hears it."""
    model = GatedChatModel()
    async with serving(create_app(joke_chain(model))) as url:
        async with open_sse(url, "/resumable/joke", {"topic": "parrot"}) as response:
            first = await read(response, 3, model)  # run, t1, t2
        run_id = json.loads(first[0].data)["run_id"]
        assert [m.data for m in first[1:]] == [" t1", " t2"] and not model.closed.is_set()
        headers = {"Last-Event-ID": first[-1].id or ""}
        async with open_sse(url, "/resumable/joke", {"topic": "parrot"}, headers) as response:
            again = await read(response, 3, model)  # run, t3, t4
            host, port = url.removeprefix("http://").split(":")
            async with await anyio.connect_tcp(host, int(port)) as raw:
                await raw.send(f"DELETE /runs/{run_id} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                assert (await raw.receive()).startswith(b"HTTP/1.1 200")
            with anyio.fail_after(10):
                rest = await response.read_all()
    assert [m.data for m in again[1:]] == [" t3", " t4"]
    assert rest[-1].event == "error" and json.loads(rest[-1].data)["error"] == "RunCancelled"
    assert model.calls == 1 and isinstance(model.exit, anyio.get_cancelled_exc_class())
