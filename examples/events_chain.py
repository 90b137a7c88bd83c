"""The guide's "Using stream events / Chain" section: events of ``model | JsonOutputParser()``.

First the three start events (the chain, the model, the parser). Then the model's and
the parser's stream events as they happen, printed as "Chat model chunk:" and "Parser
chunk:" lines and truncated after 30 events, as in the guide. In rillet a parser chunk
is published right after the model chunk that completed it.

Run: python examples/events_chain.py   (offline; Claude when ANTHROPIC_API_KEY is set)
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _display import show_events
from _guide_data import COUNTRIES_PROMPT, COUNTRIES_TOKENS, GUIDE_MODEL_NAME
from _models import pick_model

from nodes import JsonOutputParser


async def main() -> None:
    model = pick_model([COUNTRIES_TOKENS], name=GUIDE_MODEL_NAME)
    chain = model | JsonOutputParser()

    events = [event async for event in chain.astream_events(COUNTRIES_PROMPT, version="v1")]
    show_events(events[:3])
    print()

    num_events = 0
    async for event in chain.astream_events(COUNTRIES_PROMPT, version="v1"):
        kind = event["event"]
        if kind == "on_chat_model_stream":
            print(f"Chat model chunk: {event['data']['chunk'].content!r}", flush=True)
        if kind == "on_parser_stream":
            print(f"Parser chunk: {event['data']['chunk']}", flush=True)
        num_events += 1
        if num_events > 30:
            # Truncate the output
            print("...")
            break


if __name__ == "__main__":
    anyio.run(main, backend="trio")
