"""Serving an app over loopback on the test's backend, and reading server-sent events.

On asyncio the app is served by uvicorn, on trio by hypercorn's trio worker: the two
servers the SSE helper must work under. The client speaks HTTP/1.1 over a loopback socket.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any
from urllib.parse import urlencode

import anyio
import anyio.abc
import attrs
import sniffio
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from nodes import AIMessageChunk, BaseChatModel, BaseMessage

Endpoint = Callable[[Request], Any]
Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]


def make_app(framework: str, routes: Mapping[str, Endpoint], lifespan: Lifespan | None = None) -> Any:
    """A Starlette or FastAPI app with these GET routes (and ``lifespan``)."""
    if framework == "starlette":
        return Starlette(
            routes=[Route(path, endpoint) for path, endpoint in routes.items()], lifespan=lifespan
        )
    app = FastAPI(lifespan=lifespan)
    for path, endpoint in routes.items():
        app.add_api_route(path, endpoint, methods=["GET"])
    return app


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port (uvicorn on asyncio, hypercorn on trio); yield its URL."""
    if sniffio.current_async_library() == "trio":
        async with _hypercorn(app) as url:
            yield url
    else:
        async with _uvicorn(app) as url:
            yield url


@asynccontextmanager
async def _uvicorn(app: Any) -> AsyncIterator[str]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", ws="none", http="h11", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as tg:
            # Connections wait in the backlog until the lifespan started and the server accepts.
            tg.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
    finally:
        sock.close()


@asynccontextmanager
async def _hypercorn(app: Any) -> AsyncIterator[str]:
    import hypercorn.trio
    from hypercorn.config import Config

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.errorlog = None
    config.accesslog = None
    config.graceful_timeout = 1.0
    shutdown = anyio.Event()
    async with anyio.create_task_group() as tg:
        binds = await tg.start(partial(hypercorn.trio.serve, app, config, shutdown_trigger=shutdown.wait))
        try:
            yield str(binds[0])
        finally:
            shutdown.set()


@attrs.frozen
class Message:
    """One server-sent event as a browser's EventSource dispatches it."""

    event: str
    data: str
    id: str | None


class SSEResponse:
    """A streamed HTTP/1.1 response read straight off a loopback socket, message by message.

    httpx reads a body through a chain of async generators; closing the outer one mid-way
    leaves the inner ones to the garbage collector, which trio reports as a
    ``ResourceWarning``. This reader holds no generator: closing the socket ends it.
    """

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._raw = b""
        self._body = b""
        self._eof = False
        self._chunked = False
        self._chunk_left = 0
        self.status = 0
        self.headers: dict[str, str] = {}

    async def _receive(self) -> bool:
        if self._eof:
            return False
        try:
            self._raw += await self._stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._eof = True
            return False
        return True

    async def read_head(self) -> None:
        while b"\r\n\r\n" not in self._raw:
            if not await self._receive():
                raise ConnectionError("the server closed the connection before its response head")
        head, self._raw = self._raw.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"

    def _decode(self) -> bool:
        """Move what is complete from the raw bytes to the body; False at the last chunk."""
        if not self._chunked:
            self._body += self._raw
            self._raw = b""
            return True
        while self._raw:
            if self._chunk_left:
                taken = self._raw[: self._chunk_left]
                self._body += taken
                self._raw = self._raw[len(taken) :]
                self._chunk_left -= len(taken)
                continue
            if self._raw.startswith(b"\r\n"):
                self._raw = self._raw[2:]
                continue
            if b"\r\n" not in self._raw:
                return True
            size, self._raw = self._raw.split(b"\r\n", 1)
            self._chunk_left = int(size.split(b";")[0], 16)
            if self._chunk_left == 0:
                return False
        return True

    async def _line(self) -> str | None:
        """The next line of the body (CR, LF or CRLF ended), or None at its end."""
        while True:
            more = self._decode()
            match = re.search(rb"\r\n|\r|\n", self._body)
            if match is not None and not (match.group() == b"\r" and match.end() == len(self._body) and more):
                line, self._body = self._body[: match.start()], self._body[match.end() :]
                return line.decode()
            if not more or not await self._receive():
                return None

    async def read_message(self) -> Message | None:
        """The next message, or None when the response ended."""
        event, data, message_id = "message", [], None
        while (line := await self._line()) is not None:
            if not line:
                if data or event != "message":
                    return Message(event, "\n".join(data), message_id)
                event, data, message_id = "message", [], None
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
            elif field == "id":
                message_id = value
        return None

    async def read_all(self) -> list[Message]:
        """Every message until the response ends."""
        messages = []
        while (message := await self.read_message()) is not None:
            messages.append(message)
        return messages

    async def read_text(self) -> str:
        """The whole body as text (for a refusal: its length is given, the connection stays open)."""
        length = int(self.headers.get("content-length", "0"))
        while len(self._raw) < length and await self._receive():
            pass
        return self._raw[:length].decode()


@asynccontextmanager
async def open_sse(
    url: str, path: str, params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
) -> AsyncIterator[SSEResponse]:
    """GET ``path`` on ``url`` over a new loopback connection; leaving closes the connection."""
    host, port = url.removeprefix("http://").split(":")
    target = path + (f"?{urlencode(params)}" if params else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        response = SSEResponse(stream)
        await response.read_head()
        yield response


class GatedChatModel(BaseChatModel):
    """A chat model that streams one token each time the test releases one (a slow producer),
    ``total`` tokens in all (endless by default)."""

    def __init__(self, total: int | None = None) -> None:
        self.total = total
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
            while self.total is None or self.produced < self.total:
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


class FastChatModel(BaseChatModel):
    """An endless chat model that streams tokens as fast as it is read (never waits itself)."""

    def __init__(self) -> None:
        self.produced = 0
        self.exit: BaseException | None = None
        self.closed = anyio.Event()

    def get_name(self) -> str:
        return "FastChatModel"

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncIterator[AIMessageChunk]:
        try:
            while True:
                self.produced += 1
                yield AIMessageChunk(content=f" t{self.produced}")
        except BaseException as exc:
            self.exit = exc
            raise
        finally:
            self.closed.set()
