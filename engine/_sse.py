"""The implementation of :mod:`engine.sse` (the public module re-exports its names)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

import anyio
import anyio.abc
import attrs
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from ._bus import EventFilter, EventFilterArgs
from ._events import EventPhase, StampedEvent, phase_of, without_stamps
from ._replay import ReplayLog, ReplayReader, validate_replay_capacity
from ._run import RunStream
from ._runnable import Config, Runnable

__all__ = (
    "EventSourceResponse",
    "EventsView",
    "RunRegistry",
    "ServedRun",
    "error_data",
    "sse_message",
    "to_json",
)

_LOG = logging.getLogger("rillet")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_BATCH = 256


def sse_message(data: str, *, event: str | None = None, id: str | None = None) -> str:
    """One server-sent event: optional ``event:`` and ``id:`` lines, then ``data``, each of
    its lines (split at CR, LF or CRLF, as the format reads them) one ``data:`` field.

    Raises:
        ValueError: If ``event`` or ``id`` holds a line break (or ``id`` a NUL).
    """
    head = ""
    if event is not None:
        if _LINE_BREAK.search(event):
            raise ValueError(f"an SSE event type cannot hold a line break: {event!r}")
        head += f"event: {event}\n"
    if id is not None:
        if _LINE_BREAK.search(id) or "\0" in id:
            raise ValueError(f"an SSE id cannot hold a line break or NUL: {id!r}")
        head += f"id: {id}\n"
    return head + "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data)) + "\n"


def _jsonable(value: Any) -> Any:
    # What json cannot write by itself: rillet's messages (attrs classes), errors, sets.
    if attrs.has(type(value)):
        return attrs.asdict(value, recurse=False)
    if isinstance(value, BaseException):
        return error_data(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return model_dump()
    return str(value)


def to_json(value: Any) -> str:
    """``value`` as JSON: attrs classes as their fields, errors as :func:`error_data`,
    anything else json cannot write as its ``str``."""
    return json.dumps(value, default=_jsonable, ensure_ascii=False)


def _chunk_text(chunk: Any) -> str:
    return chunk if isinstance(chunk, str) else to_json(chunk)


def error_data(error: BaseException) -> dict[str, str]:
    """What an ``error`` message says by default: the error's type name and message."""
    return {"error": type(error).__name__, "message": str(error)}


def _names(value: Iterable[str] | None) -> Any:
    if value is None or isinstance(value, str):
        return value  # a string is refused by the filter's own check, with its message
    try:
        return tuple(value)
    except TypeError:
        raise TypeError(f"an EventsView filter must be a list of strings, got {value!r}") from None


@attrs.frozen
class EventsView:
    """Stream a run's ``astream_events`` (JSON, one event per message) instead of its output.

    The filters and ``version`` are ``astream_events``' own, checked when the view is made.

    Raises:
        TypeError: If a filter is a string or holds something that is not a string.
        ValueError: For an unknown step type or version.
    """

    include_names: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    include_types: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    include_tags: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    exclude_names: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    exclude_types: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    exclude_tags: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    version: Literal["v1", "v2"] = "v2"

    def __attrs_post_init__(self) -> None:
        if self.version not in ("v1", "v2"):
            raise ValueError(f"unknown astream_events version {self.version!r}; use 'v1' or 'v2'")
        EventFilter.of(self.filters())

    def filters(self) -> EventFilterArgs:
        """The filters, as the engine takes them."""
        return EventFilterArgs(
            self.include_names,
            self.include_types,
            self.include_tags,
            self.exclude_names,
            self.exclude_types,
            self.exclude_tags,
        )

    def arguments(self) -> dict[str, Any]:
        """The filters as ``astream_events`` keyword arguments."""
        return {field.name: getattr(self, field.name) for field in attrs.fields(EventsView)}


_ErrorData = Callable[[BaseException], Any]


class _ClientGone(Exception):
    """The client went away: sending failed, or the server said it disconnected."""


class _Channel:
    """The response body's sending side: one ``send`` per batch of messages."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.gone = False

    async def write(self, text: str) -> None:
        if self.gone:
            raise _ClientGone
        try:
            await self._send({"type": "http.response.body", "body": text.encode(), "more_body": True})
        except OSError:
            # An ASGI 2.4 server reports a disconnect by failing the send.
            self.gone = True
            raise _ClientGone from None


async def _watch_disconnect(receive: Receive, channel: _Channel, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            channel.gone = True
            scope.cancel()
            return


async def _serve(
    send: Send, receive: Receive, start: dict[str, Any], body: Callable[[_Channel], Awaitable[None]]
) -> None:
    """Send ``start``, run ``body`` beside a disconnect watcher, end the response.

    A disconnect (seen by the watcher, or by a failed send) cancels ``body`` where it is:
    inside its own ``async with`` blocks, in this task.
    """
    await send(start)
    channel = _Channel(send)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(_watch_disconnect, receive, channel, task_group.cancel_scope)
        with contextlib.suppress(_ClientGone):
            await body(channel)
        task_group.cancel_scope.cancel()
    if not channel.gone:
        with contextlib.suppress(OSError):  # gone just now: nothing more to say
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _start_message(status: int, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": headers}


def _with_defaults(headers: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(_HEADERS)
    for key, value in (headers or {}).items():
        merged[key.lower()] = value
    return merged


def _check_runnable(runnable: object) -> None:
    if not isinstance(runnable, Runnable):
        raise TypeError(f"expected a Runnable to serve (a chain), got {type(runnable).__name__} {runnable!r}")


def _check_view(events: object) -> None:
    if events is not None and not isinstance(events, EventsView):
        raise TypeError(f"events= takes an EventsView(...) (or None for the output), got {events!r}")


class EventSourceResponse(Response):
    """A ``text/event-stream`` response that runs a chain for this connection.

    Return it from a Starlette or FastAPI endpoint::

        async def joke(request):
            return EventSourceResponse(chain, {"topic": request.query_params["topic"]})

    Each output chunk is one message (a ``str`` as it is, anything else as JSON), or with
    ``events=EventsView(...)`` each event of the filtered ``astream_events`` view is one
    JSON message. The run ends with an ``end`` message, or an ``error`` message (what
    ``on_error`` makes of the error, :func:`error_data` by default; the error is logged
    on the ``rillet`` logger). A client that disconnects cancels the run at once (the
    response waits for every step to finish); the response then returns quietly.

    Args:
        runnable: What to run.
        input: Its input.
        config: Its config (checked now: a bad one raises here, before any response).
        events: Stream this view of the run's events instead of its output.
        on_error: Turns a run's error into the ``error`` message's data (JSON).
        status_code: The response status (200).
        headers: More headers (``Cache-Control: no-cache`` and ``X-Accel-Buffering: no``
            are set unless given).

    Raises:
        TypeError: If ``runnable`` is not a Runnable or ``events`` not an EventsView.
        ConfigError: For a bad ``config``.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        runnable: Runnable[Any, Any],
        input: Any,
        config: Config = None,
        *,
        events: EventsView | None = None,
        on_error: _ErrorData = error_data,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        _check_runnable(runnable)
        _check_view(events)
        self._events = events
        self._on_error = on_error
        # Made (and checked) now; nothing runs until the response is sent.
        self._stream: RunStream[Any] = (
            runnable.astream(input, config)
            if events is None
            else runnable.astream_events(input, config, **events.arguments())
        )
        self.status_code = status_code
        self.background = None
        self.init_headers(_with_defaults(headers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _serve(send, receive, _start_message(self.status_code, self.raw_headers), self._body)

    async def _body(self, channel: _Channel) -> None:
        encode = _chunk_text if self._events is None else to_json
        try:
            async with self._stream as items:
                while batch := await items.next_batch(_BATCH):
                    await channel.write("".join(sse_message(encode(item)) for item in batch))
        except _ClientGone:
            raise
        except Exception as error:
            _LOG.error("a run served as server-sent events failed: %r", error, exc_info=error)
            await channel.write(sse_message(to_json(self._on_error(error)), event="error"))
            return
        await channel.write(sse_message("", event="end"))


# -- resumable mode ----------------------------------------------------------------------


class ServedRun:
    """A run that :class:`RunRegistry` hosts: it outlives the connections that read it.

    Attributes:
        run_id: The run's id (the root step's), the first half of every message id.
        log: The replay log its messages are read from.
        key: The stream it belongs to (the path and query of the request that started it).
        error: The run's error, once it failed.
    """

    def __init__(self, run_id: str, log: ReplayLog, key: str, events: EventsView | None) -> None:
        self.run_id = run_id
        self.log = log
        self.key = key
        self.events = events
        self.error: Exception | None = None
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        self._cancelled = False

    @property
    def finished(self) -> bool:
        """Whether the run ended (finished, failed or cancelled)."""
        return self._done.is_set()

    @property
    def cancelled(self) -> bool:
        """Whether the run ended because it was cancelled (by :meth:`cancel`, or by leaving
        the registry)."""
        return self._cancelled

    def cancel(self) -> None:
        """Stop the run (its readers then get an ``error`` message saying so)."""
        self._scope.cancel()

    async def wait(self) -> None:
        """Wait until the run ended."""
        await self._done.wait()

    def __repr__(self) -> str:
        state = "running" if not self.finished else "cancelled" if self.cancelled else "finished"
        return f"<ServedRun {self.run_id[:8]} {state}>"


def _stream_key(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


class RunRegistry:
    """Runs that outlive their connections (resumable mode), by run id.

    Enter it for the life of the app (its task group owns the runs; leaving it cancels
    those still going), e.g. in a Starlette or FastAPI lifespan::

        runs = RunRegistry(replay=1024)

        @asynccontextmanager
        async def lifespan(app):
            async with runs:
                yield

        async def joke(request):
            return runs.response(request, chain, {"topic": request.query_params["topic"]})

    A request without ``Last-Event-ID`` starts a run and streams it from its start. Each
    message's id is ``<run id>:<seq>``; a browser that lost its connection reconnects to
    the same URL with the last id it got and receives the rest of that run. The answers
    to a ``Last-Event-ID``:

    =============================================  ==========================================
    ``<run id>:<seq>`` of a run this registry      200: the messages after ``seq``; if the
    holds, sent by the URL that started it         log no longer holds some, an
                                                   ``events_lost`` message names them first
    ``<run id>:end`` (the run's end was sent)      204: nothing more (a browser stops)
    not ``<run id>:<seq>``, ``seq`` not a number,  400, saying what is wrong
    or past the run's newest event
    a run this registry does not hold (finished    404
    and forgotten, or another server's)
    a run started by another URL                   409
    =============================================  ==========================================

    Args:
        replay: Events each run's replay log keeps (>= 1): how far behind a client may
            fall and still get every message.
        keep: Finished runs kept for clients to come back to (the oldest are forgotten).

    Raises:
        TypeError, ValueError: For a ``replay`` that is not an int >= 1, or a bad ``keep``.
    """

    def __init__(self, *, replay: int = 1024, keep: int = 64) -> None:
        self.replay = validate_replay_capacity(replay)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep must be an int >= 0 (finished runs kept), got {keep!r}")
        self.keep = keep
        self._runs: dict[str, ServedRun] = {}
        self._finished: list[str] = []
        self._task_group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> RunRegistry:
        if self._task_group is not None:
            raise RuntimeError("this RunRegistry is already entered")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        task_group.cancel_scope.cancel()
        self._task_group = None
        return await task_group.__aexit__(*exc_info)

    def get(self, run_id: str) -> ServedRun | None:
        """The run with this id, if the registry holds it."""
        return self._runs.get(run_id)

    def cancel(self, run_id: str) -> bool:
        """Cancel the run with this id; ``False`` if it is not held or already ended."""
        served = self._runs.get(run_id)
        if served is None or served.finished:
            return False
        served.cancel()
        return True

    def start(
        self,
        runnable: Runnable[Any, Any],
        input: Any,
        config: Config = None,
        *,
        events: EventsView | None = None,
        key: str = "",
    ) -> ServedRun:
        """Start a run the registry owns, recorded for readers from its start.

        Raises:
            RuntimeError: If the registry is not entered.
            TypeError, ConfigError: For a bad runnable, view or config.
        """
        _check_runnable(runnable)
        _check_view(events)
        task_group = self._task_group
        if task_group is None:
            raise RuntimeError(
                "RunRegistry.start() needs the registry entered (`async with registry:`, in the "
                "app's lifespan): the registry's task group owns the runs"
            )
        stream = runnable.astream(input, config)
        if events is None:
            log = stream.replay_log(self.replay, root_only=True)
        else:
            log = stream.replay_log(self.replay, **_filter_arguments(events))
        served = ServedRun(stream.run_id, log, key, events)
        self._runs[served.run_id] = served
        task_group.start_soon(self._host, served, stream, name=f"rillet served run {served.run_id[:8]}")
        return served

    async def _host(self, served: ServedRun, stream: RunStream[Any]) -> None:
        ended = False
        try:
            with served._scope:
                async with stream as chunks:
                    # The log has what readers need; the output itself is not kept.
                    while await chunks.next_batch(1024):
                        pass
                ended = True
        except Exception as error:
            ended = True
            served.error = error
            _LOG.error("a run served as server-sent events failed: %r", error, exc_info=error)
        finally:
            served._cancelled = not ended
            served._done.set()
            self._retire(served)

    def _retire(self, served: ServedRun) -> None:
        self._finished.append(served.run_id)
        while len(self._finished) > self.keep:
            self._runs.pop(self._finished.pop(0), None)

    def response(
        self,
        request: Request,
        runnable: Runnable[Any, Any],
        input: Any,
        config: Config = None,
        *,
        events: EventsView | None = None,
        on_error: _ErrorData = error_data,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Start a run and stream it, or, for a request with ``Last-Event-ID``, stream the
        rest of the run it names (the table in the class docstring lists every answer).

        Raises:
            RuntimeError: If the registry is not entered.
            TypeError, ConfigError: For a bad runnable, view or config.
        """
        key = _stream_key(request)
        last_event_id = request.headers.get("last-event-id", "")
        if not last_event_id:
            served = self.start(runnable, input, config, events=events, key=key)
            return _ReplayResponse(served, 0, on_error, headers)
        return self._resume(last_event_id, key, on_error, headers)

    def _resume(
        self, last_event_id: str, key: str, on_error: _ErrorData, headers: Mapping[str, str] | None
    ) -> Response:
        run_id, _, position = last_event_id.rpartition(":")
        if not run_id or not (position == "end" or (position.isascii() and position.isdigit())):
            return _refuse(
                400,
                f"Last-Event-ID {last_event_id!r} is not '<run id>:<event number>' "
                "(the id of a message this server sent)",
            )
        served = self._runs.get(run_id)
        if served is None:
            return _refuse(
                404,
                f"Last-Event-ID names run {run_id}, which this server does not hold (it finished "
                "and was forgotten, or another server started it); start a new run",
            )
        if served.key != key:
            return _refuse(
                409,
                f"Last-Event-ID names run {run_id}, which streams {served.key}, not {key}",
            )
        if position == "end":
            return Response(status_code=204)
        after = int(position)
        if after > served.log.newest:
            return _refuse(
                400,
                f"Last-Event-ID names event {after} of run {run_id}, which has made events "
                f"up to {served.log.newest} so far",
            )
        return _ReplayResponse(served, after, on_error, headers)


def _filter_arguments(events: EventsView) -> dict[str, Any]:
    arguments = events.arguments()
    arguments.pop("version")
    return arguments


def _refuse(status: int, message: str) -> Response:
    return PlainTextResponse(message, status_code=status)


class _ReplayResponse(Response):
    """The messages of a :class:`ServedRun` after ``after``: a disconnect detaches."""

    media_type = "text/event-stream"

    def __init__(
        self, served: ServedRun, after: int, on_error: _ErrorData, headers: Mapping[str, str] | None
    ) -> None:
        self._served = served
        self._after = after
        self._on_error = on_error
        self.status_code = 200
        self.background = None
        self.init_headers(_with_defaults(headers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _serve(send, receive, _start_message(200, self.raw_headers), self._body)

    async def _body(self, channel: _Channel) -> None:
        served = self._served
        run_id = served.run_id
        hello = to_json({"run_id": run_id, "after": self._after})
        await channel.write(sse_message(hello, event="run", id=f"{run_id}:{self._after}"))
        reader = served.log.read(self._after)
        while batch := await _next_events(reader):
            await channel.write("".join(self._message(event) for event in batch))
        await served.wait()
        end = f"{run_id}:end"
        if served.error is not None:
            await channel.write(sse_message(to_json(self._on_error(served.error)), event="error", id=end))
        elif served.cancelled:
            cancelled = {"error": "RunCancelled", "message": f"run {run_id} was cancelled"}
            await channel.write(sse_message(to_json(cancelled), event="error", id=end))
        else:
            await channel.write(sse_message("", event="end", id=end))

    def _message(self, event: StampedEvent) -> str:
        event_id = f"{self._served.run_id}:{event['seq']}"
        phase = phase_of(event)
        if phase is EventPhase.LOST:
            return sse_message(to_json(event["data"]), event="events_lost", id=event_id)
        view = self._served.events
        if view is not None:
            shaped = without_stamps(event)
            if view.version == "v1":
                shaped["parent_ids"] = []  # as astream_events v1 shows them
            return sse_message(to_json(shaped), id=event_id)
        if phase is EventPhase.STREAM:
            return sse_message(_chunk_text(event["data"]["chunk"]), id=event_id)
        return ""  # the root's start and end: the stream's own end says how it went


async def _next_events(reader: ReplayReader) -> list[StampedEvent]:
    """The events ready now, or, when none is, the next one to come ([] at the end)."""
    batch = reader.available(_BATCH)
    if batch:
        await anyio.lowlevel.checkpoint()
        return batch
    try:
        return [await reader.__anext__()]
    except StopAsyncIteration:
        return []
