"""The service example: a chain's tokens as server-sent events over a real HTTP connection.

uvicorn serves the app in-process on 127.0.0.1 (asyncio only, by nature) and a real httpx
client reads the stream; a client that disconnects must stop the run at once.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from _guide_data import JOKE_TOKENS
from service import EventStreamResponse, create_app, joke_events, sse_message
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect

from engine.testing import Probe
from nodes import (
    AIMessageChunk,
    BaseChatModel,
    BaseMessage,
    ChatPromptTemplate,
    ScriptedChatModel,
    StrOutputParser,
)


@pytest.fixture
def anyio_backend() -> str:
    # uvicorn serves on asyncio only, so these tests run on that backend alone.
    return "asyncio"


class GatedChatModel(BaseChatModel):
    """An endless chat model that streams one token each time the test releases one."""

    def __init__(self) -> None:
        self.calls = 0
        self.produced = 0
        self.allowed = 0
        self.exit: BaseException | None = None
        self.closed = anyio.Event()
        self._wakeup: anyio.Event | None = None

    def get_name(self) -> str:
        return "GatedChatModel"

    def release(self, count: int = 1) -> None:
        self.allowed += count
        if self._wakeup is not None:
            self._wakeup.set()

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncIterator[AIMessageChunk]:
        self.calls += 1
        try:
            while True:
                while self.produced >= self.allowed:
                    self._wakeup = anyio.Event()
                    await self._wakeup.wait()
                self.produced += 1
                yield AIMessageChunk(content=f" t{self.produced}")
        except BaseException as exc:
            self.exit = exc
            raise
        finally:
            self.closed.set()


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until the server accepts them
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", ws="none", http="h11", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
    finally:
        sock.close()


async def sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The data of each server-sent event in ``response``, as it arrives."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line:
            field, _, value = line.partition(":")
            if field == "data":
                lines.append(value.removeprefix(" "))
        elif lines:
            yield "\n".join(lines)
            lines = []


def joke_chain(model: BaseChatModel, *more: Any) -> Any:
    prompt = ChatPromptTemplate.from_template("tell me a joke about {topic}")
    return prompt.pipe(model, StrOutputParser(), *more)


def test_sse_message_splits_lines_into_data_fields() -> None:
    """A token with newlines becomes one event of several data lines."""
    assert sse_message(" Here") == "data:  Here\n\n"
    assert sse_message("\n\nWhat") == "data: \ndata: \ndata: What\n\n"


async def test_client_receives_every_token_as_an_event() -> None:
    """GET /joke streams the chain's tokens, one server-sent event each, in order."""
    model = ScriptedChatModel(replies=[JOKE_TOKENS])
    async with (
        serving(create_app(joke_chain(model))) as url,
        httpx.AsyncClient(base_url=url) as client,
        client.stream("GET", "/joke", params={"topic": "parrot"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        tokens = [data async for data in sse_data(response)]
    assert tokens == JOKE_TOKENS
    assert len(model.received) == 1 and model.received[0][0].text == "tell me a joke about parrot"


async def test_client_disconnect_cancels_the_run_and_closes_the_model_stream() -> None:
    """A client leaving after two tokens cancels every actor and closes the model's stream."""
    model = GatedChatModel()
    probe: Probe[str] = Probe()
    app = create_app(joke_chain(model, probe))
    received: list[str] = []
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        async with client.stream("GET", "/joke", params={"topic": "parrot"}) as response:
            model.release(1)
            async with aclosing(sse_data(response)) as events:
                async for data in events:
                    received.append(data)
                    if len(received) == 2:
                        break
                    model.release(1)
        # The connection is closed now; the server notices and cancels the response task.
        with anyio.fail_after(10):  # a hang guard, not a timing assertion
            await model.closed.wait()
        await anyio.wait_all_tasks_blocked()
        assert probe.running == 0 and probe.cancelled == 1
        model.release(100)  # were the run still alive, the model would go on now
        await anyio.wait_all_tasks_blocked()
    assert received == [" t1", " t2"]
    assert model.calls == 1
    assert model.produced == 2
    assert isinstance(model.exit, anyio.get_cancelled_exc_class())
    assert probe.seen == [" t1", " t2"]


async def test_a_failing_send_closes_the_run_before_the_response_returns() -> None:
    """When send raises (an ASGI 2.4 disconnect), the response closes its generator and the run in place."""
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

    response = EventStreamResponse(joke_events(joke_chain(model), "parrot"))
    with pytest.raises(ClientDisconnect):
        await response({"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}}, receive, send)
    assert model.closed.is_set()
    produced = model.produced
    model.release(1000)
    await anyio.wait_all_tasks_blocked()
    assert model.produced == produced and model.calls == 1
    assert [m.get("body") for m in sent[1:]] == [b"data:  t1\n\n", b"data:  t2\n\n"]
