"""The guide's "Working with input streams" section: streaming JSON as it is generated.

``JsonOutputParser`` works on the input stream: after each model chunk it emits the
best valid JSON for the text so far (auto-completing open strings, lists and objects),
so the countries document grows snapshot by snapshot.

Run: python examples/json_streaming.py   (offline; Claude when ANTHROPIC_API_KEY is set)
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guide_data import COUNTRIES_PROMPT, COUNTRIES_TOKENS, GUIDE_MODEL_NAME
from _models import pick_model

from nodes import JsonOutputParser


async def main() -> None:
    model = pick_model([COUNTRIES_TOKENS], name=GUIDE_MODEL_NAME)
    chain = model | JsonOutputParser()

    async for text in chain.astream(COUNTRIES_PROMPT):
        print(text, flush=True)


if __name__ == "__main__":
    anyio.run(main, backend="trio")
