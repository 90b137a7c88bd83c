"""The guide's "Using stream events / Chat model" section: a model's lifecycle events.

Collects ``model.astream_events("hello", version="v1")`` and prints the first three
events (the start, then one stream event per token) and the last two (the last token,
then the end with the whole reply). rillet's events also carry ``parent_ids``; the data
are the guide's: the start shows the raw input, the end only the output (inside a chain,
a model's start and end show the messages it received, as the guide's chain example does).

Run: python examples/events_chat_model.py   (offline; Claude when ANTHROPIC_API_KEY is set)
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _display import show_events
from _guide_data import GUIDE_MODEL_NAME, HELLO_SHORT_TOKENS
from _models import pick_model

from engine import StreamEvent


async def main() -> None:
    model = pick_model([HELLO_SHORT_TOKENS], name=GUIDE_MODEL_NAME)

    events: list[StreamEvent] = []
    async for event in model.astream_events("hello", version="v1"):
        events.append(event)

    show_events(events[:3])
    print()
    show_events(events[-2:])


if __name__ == "__main__":
    anyio.run(main, backend="trio")
