"""The streaming guide's data for tests: the examples' scripted replies, and what they parse to."""

from __future__ import annotations

import sys
from pathlib import Path

# The scripted replies are the examples' own, so tests and examples cannot drift apart.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from _guide_data import COUNTRIES_PROMPT, COUNTRIES_TOKENS, HELLO_TOKENS

__all__ = (
    "COUNTRIES_FINAL",
    "COUNTRIES_PROMPT",
    "COUNTRIES_SNAPSHOTS_START",
    "COUNTRIES_TOKENS",
    "HELLO_TOKENS",
)

COUNTRIES_SNAPSHOTS_START = [
    {},
    {"countries": []},
    {"countries": [{}]},
    {"countries": [{"name": ""}]},
    {"countries": [{"name": "France"}]},
    {"countries": [{"name": "France", "population": 67}]},
    {"countries": [{"name": "France", "population": 6739}]},
    {"countries": [{"name": "France", "population": 673915}]},
    {"countries": [{"name": "France", "population": 67391582}]},
    {"countries": [{"name": "France", "population": 67391582}, {}]},
    {"countries": [{"name": "France", "population": 67391582}, {"name": ""}]},
    {"countries": [{"name": "France", "population": 67391582}, {"name": "Sp"}]},
    {"countries": [{"name": "France", "population": 67391582}, {"name": "Spain"}]},
]

COUNTRIES_FINAL = {
    "countries": [
        {"name": "France", "population": 67391582},
        {"name": "Spain", "population": 46754778},
        {"name": "Japan", "population": 126476461},
    ]
}
