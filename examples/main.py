"""rillet in one screen: stream a chain's tokens, then watch the same chain run, alone and
in a batch.

Run: python examples/main.py [--trace run.json]
(offline; uses Claude instead when ANTHROPIC_API_KEY is set). In a terminal with rich
installed (pip install 'rillet[view]') the view is redrawn in place; piped, it prints a
line per step as it ends, then the tree. --trace writes the single run as a trace file
to open at https://ui.perfetto.dev or in chrome://tracing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _models import pick_model

from engine.view import watch
from nodes import ChatPromptTemplate, ScriptedReply, StrOutputParser

JOKE = (
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
)
TOPICS = ["parrot", "cat", "robot", "octopus"]


async def main(trace: str | None) -> None:
    prompt = ChatPromptTemplate.from_template("tell me a joke about {topic}")
    reply = ScriptedReply(content=JOKE, usage={"input_tokens": 14, "output_tokens": len(JOKE)})
    model = pick_model([reply], delay=0.015)
    chain = prompt | model | StrOutputParser()

    print("== astream: tokens as they arrive ==")
    async with chain.astream({"topic": "parrot"}) as chunks:
        async for chunk in chunks:
            print(chunk, end="|", flush=True)
    print("\n")

    print("== watch: the same chain, step by step ==")
    async with watch(trace=trace) as view:
        await chain.ainvoke({"topic": "parrot"}, config=view.config)
    if trace is not None:
        print(f"trace written to {trace}: open it at https://ui.perfetto.dev")
    print()

    print(f"== watch: abatch over {len(TOPICS)} topics, 2 at a time ==")
    async with watch(total=len(TOPICS)) as view:
        await chain.abatch([{"topic": t} for t in TOPICS], config=view.config, max_concurrency=2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", metavar="FILE", help="write the watched run as a Perfetto trace")
    args = parser.parse_args()
    anyio.run(main, args.trace, backend="trio")
