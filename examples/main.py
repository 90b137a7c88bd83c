"""rillet in one screen: stream a chain's tokens, then watch the same chain's events live.

Run: python examples/main.py   (offline; uses Claude instead when ANTHROPIC_API_KEY is set)
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _models import pick_model

from engine import EventPhase, phase_of
from nodes import ChatPromptTemplate, StrOutputParser

JOKE = [
    " Here",
    "'s",
    " a",
    " silly",
    " joke",
    " about",
    " a",
    " par",
    "rot",
    ":",
    "\n\n",
    "What",
    " kind",
    " of",
    " teacher",
    " gives",
    " good",
    " advice",
    "?",
    " An",
    " ap",
    "-",
    "parent",
    " (",
    "app",
    "arent",
    ")",
    " one",
    "!",
]


async def main() -> None:
    prompt = ChatPromptTemplate.from_template("tell me a joke about {topic}")
    model = pick_model([JOKE], delay=0.02)
    chain = prompt | model | StrOutputParser()

    print("== astream: tokens as they arrive ==")
    async with chain.astream({"topic": "parrot"}) as chunks:
        async for chunk in chunks:
            print(chunk, end="|", flush=True)
    print("\n")

    print("== astream_events: what happens inside ==")
    counts: dict[str, int] = {}
    async with chain.astream_events({"topic": "parrot"}, version="v2") as events:
        async for event in events:
            kind = event["event"]
            counts[kind] = counts.get(kind, 0) + 1
            depth = len(event["parent_ids"])
            if phase_of(event) is EventPhase.STREAM:
                chunk = event["data"]["chunk"]
                text = getattr(chunk, "content", chunk)
                print(f"{'  ' * depth}{event['name']:>18} ~ {text!r}")
            else:
                print(f"{'  ' * depth}{event['name']:>18} {kind}")
    print("\nevents seen:", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    anyio.run(main, backend="trio")
