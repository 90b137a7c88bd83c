"""The guide's "Non-streaming components" events section: events stream even when astream can't.

``model | JsonOutputParser() | _extract_country_names`` ends in a function on finalized
input, so ``astream`` yields one final value. ``astream_events`` still shows the model's
and the parser's chunks live (truncated after 30 events, as in the guide). As in
``events_chain.py``, each parser chunk follows the model chunk that completed it.

Run: python examples/events_non_streaming.py   (offline; Claude when ANTHROPIC_API_KEY is set)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guide_data import COUNTRIES_PROMPT, COUNTRIES_TOKENS, GUIDE_MODEL_NAME
from _models import pick_model

from nodes import JsonOutputParser


# Function that does not support streaming.
# It operates on the finalizes inputs rather than
# operating on the input stream.
def _extract_country_names(inputs: Any) -> Any:
    """A function that does not operates on input streams and breaks streaming."""
    if not isinstance(inputs, dict):
        return ""

    if "countries" not in inputs:
        return ""

    countries = inputs["countries"]

    if not isinstance(countries, list):
        return ""

    country_names = [country.get("name") for country in countries if isinstance(country, dict)]
    return country_names


async def main() -> None:
    model = pick_model([COUNTRIES_TOKENS], name=GUIDE_MODEL_NAME)
    chain = model | JsonOutputParser() | _extract_country_names

    async for chunk in chain.astream(COUNTRIES_PROMPT):
        print(chunk, flush=True)
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
