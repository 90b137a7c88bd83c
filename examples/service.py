"""rillet inside an async web service: a chain's tokens as server-sent events.

``GET /joke?topic=parrot`` streams ``prompt | model | StrOutputParser()`` to the client,
one SSE message per token, then an ``end`` message, with ``engine.sse``'s
``EventSourceResponse``: the response runs the chain in the task that serves the request
(never across a ``yield``), so a client that disconnects cancels the run at once, the
model's stream included. Nothing goes on generating tokens for nobody.

``GET /resumable/joke?topic=parrot`` serves the same chain in resumable mode: the run
belongs to a ``RunRegistry`` (entered in the app's lifespan), each message has an
``id: <run id>:<n>`` line, and a client that reconnects with ``Last-Event-ID`` gets the
rest of the same run (a browser's ``EventSource`` does this by itself). A disconnect
leaves the run going; ``DELETE /runs/<run id>`` cancels it.

Run: python examples/service.py --port 8000            (uvicorn, asyncio)
     python examples/service.py --port 8000 --trio     (hypercorn's trio worker)
     curl -N 'http://127.0.0.1:8000/joke?topic=parrot'
     curl -N 'http://127.0.0.1:8000/resumable/joke?topic=parrot'
     curl -N -H 'Last-Event-ID: <an id it printed>' 'http://127.0.0.1:8000/resumable/joke?topic=parrot'
     curl -X DELETE 'http://127.0.0.1:8000/runs/<run id>'
(offline with a scripted model; Claude when ANTHROPIC_API_KEY is set.)

``create_app(chain)`` builds the app around any chain, which is how the tests drive it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guide_data import JOKE_TOKENS
from _models import pick_model
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from engine import Runnable
from engine.sse import EventSourceResponse, RunRegistry
from nodes import ChatPromptTemplate, StrOutputParser


def build_chain(delay: float = 0.05) -> Runnable[Any, str]:
    """The guide's joke chain; the scripted model waits ``delay`` seconds per token."""
    prompt = ChatPromptTemplate.from_template("tell me a joke about {topic}")
    return prompt | pick_model([JOKE_TOKENS], delay=delay) | StrOutputParser()


def create_app(chain: Runnable[Any, str] | None = None, *, replay: int = 1024) -> Starlette:
    """A Starlette app streaming ``chain``'s tokens as SSE: per connection at ``GET /joke``,
    resumable at ``GET /resumable/joke`` (runs cancelled with ``DELETE /runs/{run_id}``)."""
    joke_chain = chain if chain is not None else build_chain()
    runs = RunRegistry(replay=replay)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with runs:  # the registry's task group owns the resumable runs
            yield

    async def joke(request: Request) -> Response:
        topic = request.query_params.get("topic", "parrot")
        return EventSourceResponse(joke_chain, {"topic": topic})

    async def resumable_joke(request: Request) -> Response:
        topic = request.query_params.get("topic", "parrot")
        return runs.response(request, joke_chain, {"topic": topic})

    async def cancel(request: Request) -> Response:
        cancelled = runs.cancel(request.path_params["run_id"])
        return PlainTextResponse(
            "cancelled\n" if cancelled else "no such run going\n", 200 if cancelled else 404
        )

    routes = [
        Route("/joke", joke),
        Route("/resumable/joke", resumable_joke),
        Route("/runs/{run_id}", cancel, methods=["DELETE"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--trio", action="store_true", help="serve with hypercorn on trio (default: uvicorn)")
    args = parser.parse_args(argv)
    if args.trio:
        import hypercorn.trio
        import trio
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"{args.host}:{args.port}"]
        trio.run(hypercorn.trio.serve, create_app(), config)
    else:
        import uvicorn

        uvicorn.run(create_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
