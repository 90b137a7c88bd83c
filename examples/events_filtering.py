"""The guide's "Filtering events" section: by name, by type and by tags.

* by name: the model and parser are renamed with ``with_config({"run_name": ...})`` and
  only ``my_parser``'s events are kept;
* by type: only ``chat_model`` events;
* by tags: the chain is tagged ``my_chain``; its children inherit the tag.

Each listing is truncated after 10 events, as in the guide.

Run: python examples/events_filtering.py   (offline; Claude when ANTHROPIC_API_KEY is set)
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

    # By name
    chain = model.with_config({"run_name": "model"}) | JsonOutputParser().with_config(
        {"run_name": "my_parser"}
    )

    max_events = 0
    async for event in chain.astream_events(
        COUNTRIES_PROMPT,
        version="v1",
        include_names=["my_parser"],
    ):
        print(event)
        max_events += 1
        if max_events > 10:
            # Truncate output
            print("...")
            break
    print()

    # By type
    chain = model.with_config({"run_name": "model"}) | JsonOutputParser().with_config(
        {"run_name": "my_parser"}
    )

    max_events = 0
    async for event in chain.astream_events(
        COUNTRIES_PROMPT,
        version="v1",
        include_types=["chat_model"],
    ):
        print(event)
        max_events += 1
        if max_events > 10:
            # Truncate output
            print("...")
            break
    print()

    # By tags
    chain = (model | JsonOutputParser()).with_config({"tags": ["my_chain"]})

    max_events = 0
    async for event in chain.astream_events(
        COUNTRIES_PROMPT,
        version="v1",
        include_tags=["my_chain"],
    ):
        print(event)
        max_events += 1
        if max_events > 10:
            # Truncate output
            print("...")
            break


if __name__ == "__main__":
    anyio.run(main, backend="trio")
