"""``astream_log``: the run's state as a stream of JSON-patch operations.

The guide names ``astream_log`` beside ``astream_events`` (a way to stream intermediate
steps and the final output). This example runs the retrieval chain with
``include_names=["Docs"]``: the first patch sets up the state, the retriever's run
appears under ``/logs/Docs``, and each token adds to ``/streamed_output`` and
``/final_output``. With ``diff=False`` each item is the whole state so far; the last
one is printed.

Run: python examples/astream_log.py   (offline; Claude when ANTHROPIC_API_KEY is set)
"""

from __future__ import annotations

import sys
from pathlib import Path
from pprint import pprint
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guide_data import GUIDE_MODEL_NAME, RETRIEVAL_TEMPLATE, RETRIEVAL_TEXTS
from _models import pick_model

from engine import RunnablePassthrough
from nodes import ChatPromptTemplate, InMemoryRetriever, StrOutputParser

ANSWER = [" Harrison", " worked", " at", " Ken", "sh", "o", "."]


async def main() -> None:
    model = pick_model([ANSWER], name=GUIDE_MODEL_NAME)
    retriever = InMemoryRetriever.from_texts(RETRIEVAL_TEXTS)
    prompt = ChatPromptTemplate.from_template(RETRIEVAL_TEMPLATE)
    retrieval_chain = (
        {
            "context": retriever.with_config(run_name="Docs"),
            "question": RunnablePassthrough(),
        }
        | prompt
        | model
        | StrOutputParser()
    )

    async for patch in retrieval_chain.astream_log("where did harrison work?", include_names=["Docs"]):
        print("-" * 40)
        print(patch)
    print()

    state: Any = None
    async for log in retrieval_chain.astream_log(
        "where did harrison work?", include_names=["Docs"], diff=False
    ):
        state = log.state
    pprint(state, sort_dicts=False)


if __name__ == "__main__":
    anyio.run(main, backend="trio")
