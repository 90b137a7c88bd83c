"""Show values the way the guide's notebook cells display them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def show_events(events: Sequence[Mapping[str, Any]]) -> None:
    """Print a list of event dicts one key a line, long strings unbroken, as the guide shows them."""
    blocks = [
        "{" + ",\n  ".join(f"{key!r}: {value!r}" for key, value in event.items()) + "}" for event in events
    ]
    print("[" + ",\n ".join(blocks) + "]")
