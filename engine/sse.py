"""Serving a run as server-sent events, on Starlette or FastAPI, on trio or asyncio.

Needs the optional ``service`` extra (``pip install 'rillet[service]'``: Starlette).

Two ways to serve, both an ASGI response an endpoint returns:

* :class:`EventSourceResponse` ``(chain, input)``: the response runs the chain for this
  connection. A client that disconnects cancels the run at once, the model's call
  included.
* :class:`RunRegistry` ``.response(request, chain, input)`` (resumable mode): the run
  belongs to the registry, not to the connection. Every message has an ``id:`` line; a
  browser that reconnects sends the last one back (``Last-Event-ID``) and gets the rest of
  the same run. A disconnect detaches; :meth:`RunRegistry.cancel` stops a run.

Either streams the run's output chunks (a ``str`` chunk as it is, anything else as JSON)
or, given an :class:`EventsView`, its ``astream_events`` events (JSON, one per message).
The messages:

* ``data: ...``: a chunk or an event (``event:`` unset, so ``onmessage`` gets it);
* ``event: error``: the run failed (``{"error": type name, "message": str(error)}``),
  instead of a torn connection; the stream then ends;
* ``event: end``: the run finished; the stream ends. A client should close its
  ``EventSource`` here, or it reconnects;
* ``event: run`` (resumable mode, first): ``{"run_id": ..., "after": ...}``, so a client
  can cancel the run before its first chunk;
* ``event: events_lost`` (resumable mode): ``{"from": a, "to": b}``, the sequence numbers
  of events the replay log no longer held when this client came back for them.

**Why a response and not a generator.** The run is owned by the task that serves the
request: ``async with chain.astream(...)`` is entered and left in that one task, and the
messages are awaited sends, never a ``yield``. A generator holding that block open across
its ``yield`` (the README's form inside a plain ``StreamingResponse``) is closed, when the
client leaves, by another task or by the garbage collector; on trio that corrupts the
cancel scope stack (PEP 789). A task beside the sender waits for the server's
``http.disconnect`` and cancels the response's scope, so a disconnect stops a run whose
model is silent too, not only one that is sending.
"""

from ._sse import EventSourceResponse as EventSourceResponse
from ._sse import EventsView as EventsView
from ._sse import RunRegistry as RunRegistry
from ._sse import ServedRun as ServedRun
from ._sse import error_data as error_data
from ._sse import sse_message as sse_message
from ._sse import to_json as to_json

__all__ = (
    "EventSourceResponse",
    "EventsView",
    "RunRegistry",
    "ServedRun",
    "error_data",
    "sse_message",
    "to_json",
)
