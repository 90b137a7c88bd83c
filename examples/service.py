"""rillet inside an async web service: a chain's tokens as server-sent events.

``GET /joke?topic=parrot`` streams ``prompt | model | StrOutputParser()`` to the client,
one SSE message per token (``data: <token>``, a multi-line token as several ``data:``
lines, as the SSE format requires). The response generator owns the run with
``async with chain.astream(...) as chunks``: when the client disconnects, Starlette
cancels the response task, which is waiting inside that block, so leaving the block
cancels every actor of the run, the model's stream included, and returns only when they
have all finished. Nothing goes on generating tokens for nobody.

One care point: a generator that holds ``async with chain.astream(...)`` open across its
``yield`` must be closed by the task that iterates it (the block's task group belongs to
that task). Starlette does not close its body iterator when ``send`` fails (an ASGI 2.4
server reports a disconnect that way), which would leave the generator to the garbage
collector, in another task. ``EventStreamResponse`` closes it in place.

Run: python examples/service.py --port 8000
     curl -N 'http://127.0.0.1:8000/joke?topic=parrot'
(offline with a scripted model; Claude when ANTHROPIC_API_KEY is set.)

``create_app(chain)`` builds the app around any chain, which is how the tests drive it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guide_data import JOKE_TOKENS
from _models import pick_model
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from starlette.types import Send

from engine import Runnable
from nodes import ChatPromptTemplate, StrOutputParser


def build_chain(delay: float = 0.05) -> Runnable[Any, str]:
    """The guide's joke chain; the scripted model waits ``delay`` seconds per token."""
    prompt = ChatPromptTemplate.from_template("tell me a joke about {topic}")
    return prompt | pick_model([JOKE_TOKENS], delay=delay) | StrOutputParser()


def sse_message(data: str) -> str:
    """One server-sent event carrying ``data`` (each line of it as a ``data:`` field)."""
    return "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response that closes its generator in the task that ran it."""

    media_type = "text/event-stream"

    async def stream_response(self, send: Send) -> None:
        async with aclosing(self.body_iterator):  # type: ignore[type-var]
            await super().stream_response(send)


async def joke_events(chain: Runnable[Any, str], topic: str) -> AsyncIterator[str]:
    """The response body: one server-sent event per token of ``chain`` on ``topic``."""
    # The block owns the run: a disconnect cancels this task in here, which stops it.
    async with chain.astream({"topic": topic}) as chunks:
        async for chunk in chunks:
            yield sse_message(chunk)


def create_app(chain: Runnable[Any, str] | None = None) -> Starlette:
    """A Starlette app whose ``GET /joke?topic=...`` streams ``chain``'s tokens as SSE."""
    joke_chain = chain if chain is not None else build_chain()

    async def joke(request: Request) -> EventStreamResponse:
        topic = request.query_params.get("topic", "parrot")
        return EventStreamResponse(joke_events(joke_chain, topic), headers={"Cache-Control": "no-cache"})

    return Starlette(routes=[Route("/joke", joke)])


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
