"""The streaming guide's data, shared by tests: the prompts and the scripted replies."""

from __future__ import annotations

COUNTRIES_PROMPT = (
    "output a list of the countries france, spain and japan and their populations in JSON "
    'format. Use a dict with an outer key of "countries" which contains a list of countries. '
    "Each country should have the key `name` and `population`"
)

# Tokens shaped like the guide's model output, so the parser's snapshots match its listing.
COUNTRIES_TOKENS = [
    " Here", " is", " the", " JSON", " with", " the", " requested", " countries", " and",
    " their", " populations", ":", "\n\n```", "json", "\n{", "\n ", ' "', "countries", '":',
    " [", "\n   ", " {", "\n     ", ' "', "name", '":', ' "', "France", '",', "\n     ", ' "',
    "population", '":', " 67", "39", "15", "82", "\n   ", " },", "\n   ", " {", "\n     ",
    ' "', "name", '":', ' "', "Sp", "ain", '",', "\n     ", ' "', "population", '":', " 46",
    "75", "47", "78", "\n   ", " },", "\n   ", " {", "\n     ", ' "', "name", '":', ' "',
    "Japan", '",', "\n     ", ' "', "population", '":', " 12", "647", "64", "61", "\n   ",
    " }", "\n  ]", "\n}", "\n```",
]

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

HELLO_TOKENS = [" Hello", "!", " My", " name", " is", " Claude", "."]
