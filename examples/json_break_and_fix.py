"""A broken/fixed pair from the guide: a plain function breaks streaming, a generator fixes it.

Broken: ``model | JsonOutputParser() | _extract_country_names``. A plain function needs
finalized input, so it aggregates everything upstream and ``astream`` yields one value:
``['France', 'Spain', 'Japan']|``.

Fixed: ``model | JsonOutputParser() | _extract_country_names_streaming``. An async
generator over the input stream is a transform: it yields each name as it appears,
``France|Sp|Spain|Japan|`` (``Sp`` is the JSON auto-completion showing a partial name,
as in the guide).

Run: python examples/json_break_and_fix.py   (offline; Claude when ANTHROPIC_API_KEY is set)
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guide_data import COUNTRIES_PROMPT, COUNTRIES_TOKENS, GUIDE_MODEL_NAME
from _models import pick_model

from nodes import JsonOutputParser


# A function that operates on finalized inputs
# rather than on an input_stream
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


async def _extract_country_names_streaming(input_stream: AsyncIterator[Any]) -> AsyncIterator[str]:
    """A function that operates on input streams."""
    country_names_so_far = set()

    async for input in input_stream:
        if not isinstance(input, dict):
            continue

        if "countries" not in input:
            continue

        countries = input["countries"]

        if not isinstance(countries, list):
            continue

        for country in countries:
            name = country.get("name")
            if not name:
                continue
            if name not in country_names_so_far:
                yield name
                country_names_so_far.add(name)


async def main() -> None:
    model = pick_model([COUNTRIES_TOKENS], name=GUIDE_MODEL_NAME)

    # Broken: the plain function waits for the finished JSON, so one value comes out.
    chain = model | JsonOutputParser() | _extract_country_names
    async for text in chain.astream(COUNTRIES_PROMPT):
        print(text, end="|", flush=True)
    print()

    # Fixed: the generator works on the parser's stream of snapshots.
    chain = model | JsonOutputParser() | _extract_country_names_streaming
    async for text in chain.astream(COUNTRIES_PROMPT):
        print(text, end="|", flush=True)
    print()


if __name__ == "__main__":
    anyio.run(main, backend="trio")
