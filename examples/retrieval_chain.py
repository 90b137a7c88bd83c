"""The guide's "Non-streaming components" section: a retriever, and a chain that still streams.

A retriever does not stream: ``retriever.stream(q)`` yields one chunk, the list of
documents. A chain built around it streams again after its last non-streaming step:
the model's tokens arrive one by one. This example uses the synchronous API, as the
guide does (``stream`` runs on a background event loop; no ``async`` needed).

The guide uses a FAISS vector store with OpenAI embeddings; rillet's
``InMemoryRetriever`` ranks the texts with BM25 instead (offline, no embeddings).

Run: python examples/retrieval_chain.py   (offline; Claude when ANTHROPIC_API_KEY is set)
"""

from __future__ import annotations

import sys
from pathlib import Path
from pprint import pprint

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guide_data import GUIDE_MODEL_NAME, RETRIEVAL_TEMPLATE, RETRIEVAL_TEXTS, RETRIEVAL_TOKENS
from _models import pick_model

from engine import RunnablePassthrough
from nodes import ChatPromptTemplate, InMemoryRetriever, StrOutputParser


def main() -> None:
    model = pick_model([RETRIEVAL_TOKENS], name=GUIDE_MODEL_NAME)
    prompt = ChatPromptTemplate.from_template(RETRIEVAL_TEMPLATE)
    retriever = InMemoryRetriever.from_texts(RETRIEVAL_TEXTS)

    chunks = [chunk for chunk in retriever.stream("where did harrison work?")]
    pprint(chunks)
    print()

    retrieval_chain = (
        {
            "context": retriever.with_config(run_name="Docs"),
            "question": RunnablePassthrough(),
        }
        | prompt
        | model
        | StrOutputParser()
    )

    for chunk in retrieval_chain.stream(
        "Where did harrison work? Write 3 made up sentences about this place."
    ):
        print(chunk, end="|", flush=True)
    print()


if __name__ == "__main__":
    main()
