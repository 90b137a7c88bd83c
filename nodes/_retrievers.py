"""Documents and retrievers: non-streaming steps that answer a query with documents.

A retriever aggregates its query, then emits exactly one chunk: the list of documents.
``InMemoryRetriever`` ranks by Okapi BM25 over a small tokenizer, so the guide's
retrieval chain runs offline with a real relevance order.
"""

from __future__ import annotations

import inspect
import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from engine import Accumulation, AggregateNode, Step, run_in_worker_thread

__all__ = ("BaseRetriever", "Document", "InMemoryRetriever", "bm25_scores", "tokenize")


@attrs.frozen(repr=False)
class Document:
    """A piece of text with metadata."""

    page_content: str
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    id: str | None = None

    def __repr__(self) -> str:
        extra = f", metadata={dict(self.metadata)!r}" if self.metadata else ""
        return f"Document(page_content={self.page_content!r}{extra})"


class BaseRetriever(AggregateNode[str, list[Document]]):
    """The base of retrievers: the whole query in, one list of documents out.

    Subclasses implement :meth:`get_relevant_documents` (langchain-core's
    ``_get_relevant_documents``). Its output is one chunk, the whole list
    (``output_accumulation`` is ``"last"``).
    """

    kind: ClassVar[str] = "retriever"
    output_accumulation: ClassVar[Accumulation] = "last"

    def get_relevant_documents(self, query: str) -> Any:
        """The documents for ``query``, best first: a sequence of :class:`Document`.

        Define it as a plain method (the engine runs it in a worker thread, so it may
        block) or as an ``async def`` (run in the step's own task; it must not block).
        The engine calls it once per run of the step, with the whole query string
        (another input fails the step with ``TypeError`` before it is called).
        """
        raise NotImplementedError

    def start_event_input(self, value: Any) -> Any:
        return {"query": value}

    async def compute(self, value: str, step: Step) -> AsyncIterator[list[Document]]:
        if not isinstance(value, str):
            raise TypeError(f"{self.get_name()} needs a query string, got {type(value).__name__}: {value!r}")
        step.set_input({"query": value})
        retrieve = self.get_relevant_documents
        if inspect.iscoroutinefunction(retrieve):
            documents = await retrieve(value)
        else:
            documents = await run_in_worker_thread(step, retrieve, value)
        yield list(documents)


_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens, with a light plural/verb suffix strip so that
    ``works``/``worked``/``work`` meet."""
    tokens = []
    for word in _WORD.findall(text.lower()):
        for suffix in ("ing", "ed", "es", "s"):
            if len(word) > len(suffix) + 2 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        tokens.append(word)
    return tokens


def bm25_scores(
    query: Sequence[str], documents: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75
) -> list[float]:
    """Okapi BM25 score of each tokenized document for the tokenized ``query``."""
    count = len(documents)
    if count == 0:
        return []
    average = sum(len(d) for d in documents) / count or 1.0
    frequencies = [Counter(d) for d in documents]
    containing = Counter(term for d in documents for term in set(d))
    scores = []
    for doc, tf in zip(documents, frequencies, strict=True):
        score = 0.0
        for term in set(query):
            n = containing.get(term, 0)
            if not n:
                continue
            idf = math.log(1 + (count - n + 0.5) / (n + 0.5))
            f = tf.get(term, 0)
            score += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(doc) / average))
        scores.append(score)
    return scores


@attrs.frozen(eq=False, repr=False)
class InMemoryRetriever(BaseRetriever):
    """Ranks in-memory documents by BM25 and returns the ``k`` best.

    Documents that share no term with the query still come after those that do (so a
    small corpus always answers, as a vector store would), in their original order.
    """

    documents: tuple[Document, ...]
    k: int = 4
    _tokens: tuple[tuple[str, ...], ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        object.__setattr__(self, "_tokens", tuple(tuple(tokenize(d.page_content)) for d in self.documents))

    @classmethod
    def from_texts(
        cls, texts: Sequence[str], metadatas: Sequence[Mapping[str, Any]] | None = None, *, k: int = 4
    ) -> InMemoryRetriever:
        """A retriever over ``texts`` (with optional per-text metadata)."""
        if isinstance(texts, str):
            raise TypeError("from_texts needs a list of strings, not one string")
        metas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        if len(metas) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(metas)} metadatas")
        return cls(tuple(Document(t, m) for t, m in zip(texts, metas, strict=True)), k=k)

    def as_retriever(self, **kwargs: Any) -> InMemoryRetriever:
        """This retriever (``k=`` changes how many documents it returns)."""
        return attrs.evolve(self, **kwargs) if kwargs else self

    def get_relevant_documents(self, query: str) -> list[Document]:
        scores = bm25_scores(tokenize(query), self._tokens)
        order = sorted(range(len(self.documents)), key=lambda i: (-scores[i], i))
        return [self.documents[i] for i in order[: self.k]]

    def __repr__(self) -> str:
        return f"InMemoryRetriever({len(self.documents)} documents, k={self.k})"
