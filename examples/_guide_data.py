"""The streaming guide's prompts and scripted replies, shaped like the guide's outputs.

Each token list is what the guide's model streamed in that section, so the offline
examples print what the guide prints. A trailing ``""`` is the empty last chunk the
guide's model sent (it shows as the final ``||`` in the guide's listings).
"""

from __future__ import annotations

HELLO_PROMPT = "hello. tell me something about yourself"

HELLO_TOKENS = [
    " Hello", "!", " My", " name", " is", " Claude", ".", " I", "'m", " an", " AI", " assistant",
    " created", " by", " An", "throp", "ic", " to", " be", " helpful", ",", " harmless", ",", " and",
    " honest", ".", "",
]

# The guide's astream_events("hello") call got a shorter reply.
HELLO_SHORT_TOKENS = [" Hello", "!", ""]

JOKE_TOKENS = [
    " Here", "'s", " a", " silly", " joke", " about", " a", " par", "rot", ":", "\n\nWhat", " kind",
    " of", " teacher", " gives", " good", " advice", "?", " An", " ap", "-", "parent", " (", "app",
    "arent", ")", " one", "!", "",
]

COUNTRIES_PROMPT = (
    "output a list of the countries france, spain and japan and their populations in JSON "
    'format. Use a dict with an outer key of "countries" which contains a list of countries. '
    "Each country should have the key `name` and `population`"
)

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

RETRIEVAL_TEMPLATE = """Answer the question based only on the following context:
{context}

Question: {question}
"""

RETRIEVAL_TEXTS = ["harrison worked at kensho", "harrison likes spicy food"]

RETRIEVAL_QUESTION = "Where did harrison work? Write 3 made up sentences about this place."

RETRIEVAL_TOKENS = [
    " Based", " on", " the", " given", " context", ",", " the", " only", " information", " provided",
    " about", " where", " Harrison", " worked", " is", " that", " he", " worked", " at", " Ken", "sh",
    "o", ".", " Since", " there", " are", " no", " other", " details", " provided", " about", " Ken",
    "sh", "o", ",", " I", " do", " not", " have", " enough", " information", " to", " write", " 3",
    " additional", " made", " up", " sentences", " about", " this", " place", ".", " I", " can",
    " only", " state", " that", " Harrison", " worked", " at", " Ken", "sh", "o", ".", "",
]

# The name the guide's events carry for its model; the scripted stand-in uses it too.
GUIDE_MODEL_NAME = "ChatAnthropic"
