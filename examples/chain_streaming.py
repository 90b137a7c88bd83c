"""The guide's "Chains" section: ``prompt | model | StrOutputParser()`` streams tokens.

The parser is a transform: it passes each model chunk's text on at once, so the chain
streams as the model does. Prints the parrot joke with ``|`` between tokens.

Run: python examples/chain_streaming.py   (offline; Claude when ANTHROPIC_API_KEY is set)
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guide_data import GUIDE_MODEL_NAME, JOKE_TOKENS
from _models import pick_model

from nodes import ChatPromptTemplate, StrOutputParser


async def main() -> None:
    model = pick_model([JOKE_TOKENS], name=GUIDE_MODEL_NAME)
    prompt = ChatPromptTemplate.from_template("tell me a joke about {topic}")
    parser = StrOutputParser()
    chain = prompt | model | parser

    async for chunk in chain.astream({"topic": "parrot"}):
        print(chunk, end="|", flush=True)
    print()


if __name__ == "__main__":
    anyio.run(main, backend="trio")
