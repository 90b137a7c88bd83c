"""The guide's "LLMs and chat models" section: a model streams its reply token by token.

Prints the tokens separated by ``|``, the first chunk, and the sum of the first five
chunks (message chunks are additive).

Run: python examples/model_streaming.py   (offline; Claude when ANTHROPIC_API_KEY is set)
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guide_data import GUIDE_MODEL_NAME, HELLO_PROMPT, HELLO_TOKENS
from _models import pick_model

from nodes import AIMessageChunk


async def main() -> None:
    model = pick_model([HELLO_TOKENS], name=GUIDE_MODEL_NAME)

    chunks: list[AIMessageChunk] = []
    async for chunk in model.astream(HELLO_PROMPT):
        chunks.append(chunk)
        print(chunk.content, end="|", flush=True)
    print("\n")

    # chunks[0]
    print(repr(chunks[0]))
    print()

    # Message chunks add up to the reply so far.
    print(repr(chunks[0] + chunks[1] + chunks[2] + chunks[3] + chunks[4]))


if __name__ == "__main__":
    anyio.run(main, backend="trio")
