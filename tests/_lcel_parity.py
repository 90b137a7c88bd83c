"""The same chains on rillet and on langchain-core, and their events made comparable.

Each :class:`Scenario` builds one chain twice, once from rillet's classes and once from
langchain-core's, with scripted models that stream the same chunks. The runners collect
``astream_events`` (v1 or v2) and ``astream_log`` on each side; langchain-core runs on
its own asyncio loop in a worker thread, so the tests run on trio and asyncio alike.

Events become :class:`Seen` records: a run is named by its *path* (its ancestors' and
its own name and tags, which both sides share) instead of its run id, values become
plain structures (a message as its class and content, a prompt value as its messages,
a document as its text), and metadata as its keys. Only what must differ (ids, times)
is normalised away here. Everything else that differs is a named, expected difference
(:data:`DIFFERENCES`, each listed in ARCHITECTURE.md under "Differences from
langchain-core"): a scenario names the ones it shows, and the comparison undoes only
those, so a new, unlisted difference fails the test.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import attrs
from langchain_core.callbacks import adispatch_custom_event as lc_adispatch_custom_event
from langchain_core.documents import Document as LcDocument
from langchain_core.language_models import LLM as LcLLM
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import JsonOutputParser as LcJsonOutputParser
from langchain_core.output_parsers import StrOutputParser as LcStrOutputParser
from langchain_core.outputs import GenerationChunk
from langchain_core.prompts import ChatPromptTemplate as LcChatPromptTemplate
from langchain_core.prompts import PromptTemplate as LcPromptTemplate
from langchain_core.retrievers import BaseRetriever as LcBaseRetriever
from langchain_core.runnables import RunnableGenerator as LcRunnableGenerator
from langchain_core.runnables import RunnableLambda as LcRunnableLambda
from langchain_core.runnables import RunnableParallel as LcRunnableParallel
from langchain_core.runnables import RunnablePassthrough as LcRunnablePassthrough
from langchain_core.tools import tool as lc_tool

from engine import (
    RunnableGenerator,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
    adispatch_custom_event,
)
from nodes import (
    BaseRetriever,
    ChatPromptTemplate,
    Document,
    JsonOutputParser,
    PromptTemplate,
    ScriptedChatModel,
    ScriptedLLM,
    StrOutputParser,
    tool,
)

__all__ = (
    "DIFFERENCES",
    "LOG_SCENARIOS",
    "SCENARIOS",
    "Scenario",
    "Seen",
    "comparable_events",
    "comparable_log",
    "lc_events",
    "lc_log",
    "rillet_events",
    "rillet_log",
    "reverse_word",
    "untraced",
    "without_langsmith",
)

#: The scripted reply: langchain-core's fake model splits its text at whitespace, so
#: rillet's scripted model streams exactly these tokens.
TEXT = "hello there world"
TOKENS = re.split(r"(\s)", TEXT)
JSON_TEXT = '{"a": 1, "b": [1, 2]}'
JSON_TOKENS = re.split(r"(\s)", JSON_TEXT)
MODEL_NAME = "GenericFakeChatModel"


# -- the chains, on each side ---------------------------------------------------------


def _lc_model(text: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(content=text)]))


def _ri_model(tokens: list[str]) -> ScriptedChatModel:
    return ScriptedChatModel([tokens], name=MODEL_NAME)


LLM_NAME = "TokenLLM"


class TokenLLM(LcLLM):
    """langchain-core's side of a streaming completion model: ``text`` split at whitespace,
    one ``GenerationChunk`` per piece, each reported to the run's callbacks as a real
    streaming LLM does (langchain-core's own fake LLMs stream without reporting)."""

    text: str

    @property
    def _llm_type(self) -> str:
        return "token"

    def _call(self, prompt: str, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> str:
        return self.text

    async def _astream(
        self, prompt: str, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        for piece in re.split(r"(\s)", self.text):
            chunk = GenerationChunk(text=piece)
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk


class KeywordRetriever(LcBaseRetriever):
    """langchain-core's side: every text that holds the query."""

    texts: list[str]

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[LcDocument]:
        return [LcDocument(page_content=t) for t in self.texts if query in t]


@attrs.frozen
class RilletKeywordRetriever(BaseRetriever):
    """rillet's side of :class:`KeywordRetriever` (same name in the events)."""

    texts: tuple[str, ...]

    def get_name(self) -> str:
        return "KeywordRetriever"

    def get_relevant_documents(self, query: str) -> list[Document]:
        return [Document(t) for t in self.texts if query in t]


TEXTS = ["harrison worked at kensho", "bears like honey"]


def reverse_word(word: str) -> str:
    """Reverse a word."""
    return word[::-1]


def _spell(word: str) -> Iterator[str]:
    """Spell a word."""
    yield from word


def _join_docs(documents: list[Any]) -> str:
    return "\n".join(d.page_content for d in documents)


def _spelled(word: str) -> str:
    """Spell a word."""
    return "".join(_spell(word))


def _boom(value: Any) -> Any:
    raise ValueError("boom")


async def _lc_upper(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    async for chunk in chunks:
        yield chunk.upper()


async def _ri_upper(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    async for chunk in chunks:
        yield chunk.upper()


async def _lc_ask(question: str) -> str:
    chain = _lc_model(TEXT) | LcStrOutputParser()
    return str(await chain.ainvoke(question))


async def _ri_ask(question: str) -> str:
    chain = _ri_model(TOKENS) | StrOutputParser()
    return str(await chain.ainvoke(question))


async def _lc_report(value: int) -> int:
    await lc_adispatch_custom_event("progress", {"at": value})
    return value + 1


async def _ri_report(value: int) -> int:
    await adispatch_custom_event("progress", {"at": value})
    return value + 1


def _lc_chains() -> dict[str, Callable[[], Any]]:
    prompt = LcChatPromptTemplate.from_template("tell me about {topic}")
    rag_prompt = LcChatPromptTemplate.from_template("{context} {question}")
    reverse = lc_tool(reverse_word)
    return {
        "prompt_model_parser": lambda: prompt | _lc_model(TEXT) | LcStrOutputParser(),
        "chat_model_root": lambda: _lc_model(TEXT),
        "llm_root": lambda: TokenLLM(text=TEXT, name=LLM_NAME),
        "prompt_llm_parser": lambda: (
            LcPromptTemplate.from_template("tell me about {topic}")
            | TokenLLM(text=TEXT, name=LLM_NAME)
            | LcStrOutputParser()
        ),
        "parallel": lambda: LcRunnableParallel(
            a=LcRunnableLambda(lambda x: x + 1), b=LcRunnablePassthrough()
        ),
        "tool": lambda: reverse,
        "generator_tool": lambda: lc_tool(_spelled),
        "retriever": lambda: KeywordRetriever(texts=TEXTS),
        "retrieval_chain": lambda: (
            {"context": KeywordRetriever(texts=TEXTS) | _join_docs, "question": LcRunnablePassthrough()}
            | rag_prompt
            | _lc_model(TEXT)
            | LcStrOutputParser()
        ),
        "lambda": lambda: LcRunnableLambda(lambda x: x * 2),
        "nested_sequences": lambda: (
            LcRunnableLambda(lambda x: x + 1)
            | (
                LcRunnableLambda(lambda x: x * 2)
                | LcRunnableGenerator(_lc_upper_numbers, name="upper_numbers")
            )
        ),
        "nested_run": lambda: LcRunnableLambda(
            lambda x: LcRunnableLambda(lambda y: y + 1).with_config(run_name="inner").invoke(x)
        ).with_config(run_name="outer"),
        "tool_in_chain": lambda: LcRunnableLambda(lambda x: {"word": x}) | reverse,
        "model_invoked_inside": lambda: LcRunnableLambda(_lc_ask).with_config(run_name="ask"),
        "tagged": lambda: (
            LcRunnableLambda(lambda x: x + 1).with_config(tags=["inner"], metadata={"k": 2})
            | LcRunnableLambda(str)
        ).with_config(tags=["outer"], metadata={"m": 1}),
        "assign": lambda: LcRunnablePassthrough.assign(double=lambda d: d["x"] * 2),
        "generator": lambda: LcRunnableLambda(lambda x: x) | LcRunnableGenerator(_lc_upper, name="upper"),
        "parser_root": lambda: LcStrOutputParser(),
        "custom_event": lambda: LcRunnableLambda(_lc_report).with_config(run_name="report"),
        "error": lambda: LcRunnableLambda(lambda x: x) | LcRunnableLambda(_boom),
        "json_snapshots": lambda: _lc_model(JSON_TEXT) | LcJsonOutputParser(),
        "list_stream": lambda: LcRunnableLambda(lambda x: x) | LcRunnableGenerator(_lc_lists, name="lists"),
        "dict_chunks": lambda: LcRunnableLambda(lambda x: x) | LcRunnableGenerator(_lc_dicts, name="dicts"),
    }


def _ri_chains() -> dict[str, Callable[[], Any]]:
    prompt = ChatPromptTemplate.from_template("tell me about {topic}")
    rag_prompt = ChatPromptTemplate.from_template("{context} {question}")
    reverse = tool(reverse_word)
    return {
        "prompt_model_parser": lambda: prompt | _ri_model(TOKENS) | StrOutputParser(),
        "chat_model_root": lambda: _ri_model(TOKENS),
        "llm_root": lambda: ScriptedLLM([TOKENS], name=LLM_NAME),
        "prompt_llm_parser": lambda: (
            PromptTemplate.from_template("tell me about {topic}")
            | ScriptedLLM([TOKENS], name=LLM_NAME)
            | StrOutputParser()
        ),
        "parallel": lambda: RunnableParallel(a=RunnableLambda(lambda x: x + 1), b=RunnablePassthrough()),
        "tool": lambda: reverse,
        "generator_tool": lambda: tool(name="_spelled")(_spell),
        "retriever": lambda: RilletKeywordRetriever(tuple(TEXTS)),
        "retrieval_chain": lambda: (
            {"context": RilletKeywordRetriever(tuple(TEXTS)) | _join_docs, "question": RunnablePassthrough()}
            | rag_prompt
            | _ri_model(TOKENS)
            | StrOutputParser()
        ),
        "lambda": lambda: RunnableLambda(lambda x: x * 2),
        "nested_sequences": lambda: (
            RunnableLambda(lambda x: x + 1)
            | (
                RunnableLambda(lambda x: x * 2)
                | RunnableGenerator(_ri_upper_numbers, func_name="upper_numbers")
            )
        ),
        "nested_run": lambda: RunnableLambda(
            lambda x: RunnableLambda(lambda y: y + 1).with_config(run_name="inner").invoke(x)
        ).with_config(run_name="outer"),
        "tool_in_chain": lambda: RunnableLambda(lambda x: {"word": x}) | reverse,
        "model_invoked_inside": lambda: RunnableLambda(_ri_ask).with_config(run_name="ask"),
        "tagged": lambda: (
            RunnableLambda(lambda x: x + 1).with_config(tags=["inner"], metadata={"k": 2})
            | RunnableLambda(str)
        ).with_config(tags=["outer"], metadata={"m": 1}),
        "assign": lambda: RunnablePassthrough.assign(double=lambda d: d["x"] * 2),
        "generator": lambda: RunnableLambda(lambda x: x) | RunnableGenerator(_ri_upper, func_name="upper"),
        "parser_root": lambda: StrOutputParser(),
        "custom_event": lambda: RunnableLambda(_ri_report).with_config(run_name="report"),
        "error": lambda: RunnableLambda(lambda x: x) | RunnableLambda(_boom),
        "json_snapshots": lambda: _ri_model(JSON_TOKENS) | JsonOutputParser(),
        "list_stream": lambda: RunnableLambda(lambda x: x) | RunnableGenerator(_ri_lists, func_name="lists"),
        "dict_chunks": lambda: RunnableLambda(lambda x: x) | RunnableGenerator(_ri_dicts, func_name="dicts"),
    }


async def _lc_upper_numbers(chunks: AsyncIterator[int]) -> AsyncIterator[int]:
    async for chunk in chunks:
        yield chunk - 1


async def _ri_upper_numbers(chunks: AsyncIterator[int]) -> AsyncIterator[int]:
    async for chunk in chunks:
        yield chunk - 1


async def _lc_lists(chunks: AsyncIterator[int]) -> AsyncIterator[list[int]]:
    async for chunk in chunks:
        yield [chunk]
        yield [chunk + 1]


async def _ri_lists(chunks: AsyncIterator[int]) -> AsyncIterator[list[int]]:
    async for chunk in chunks:
        yield [chunk]
        yield [chunk + 1]


async def _lc_dicts(chunks: AsyncIterator[int]) -> AsyncIterator[dict[str, int]]:
    async for chunk in chunks:
        yield {"a": chunk, "c": 2}
        yield {"b": chunk}


async def _ri_dicts(chunks: AsyncIterator[int]) -> AsyncIterator[dict[str, int]]:
    async for chunk in chunks:
        yield {"a": chunk, "c": 2}
        yield {"b": chunk}


@attrs.frozen
class Scenario:
    """One chain, its input, and the named differences it shows per version.

    Attributes:
        name: The chain's key in both builders.
        input: What both sides are given.
        expected: For ``"v1"``/``"v2"``/``"log"``, the names of :data:`DIFFERENCES` the
            comparison undoes.
        ordered: Whether the events' global order is defined (no concurrent steps);
            otherwise each run's own events are compared in order.
        versions: The ``astream_events`` versions compared.
    """

    name: str
    input: Any
    expected: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    ordered: bool = True
    versions: tuple[str, ...] = ("v1", "v2")


SCENARIOS = (
    Scenario(
        "prompt_model_parser",
        {"topic": "x"},
        {
            "v1": ("starts-at-launch", "tracer-outputs", "langsmith-metadata"),
            "v2": ("starts-at-launch", "langsmith-metadata"),
        },
    ),
    Scenario("chat_model_root", "hi", {"v2": ("langsmith-metadata",)}),
    Scenario("llm_root", "hi", {"v2": ("langsmith-metadata", "llm-text")}),
    Scenario(
        "prompt_llm_parser",
        {"topic": "x"},
        {
            "v1": ("starts-at-launch", "tracer-outputs", "langsmith-metadata"),
            "v2": ("starts-at-launch", "langsmith-metadata", "llm-text"),
        },
    ),
    Scenario("parallel", 1, ordered=False),
    Scenario("tool", {"word": "abc"}),
    Scenario("generator_tool", {"word": "abc"}, {"v2": ("generator-tools-stream",)}, versions=("v2",)),
    Scenario("retriever", "bears", {"v2": ("langsmith-metadata",)}),
    Scenario(
        "retrieval_chain",
        "harrison",
        {
            "v1": ("starts-at-launch", "tracer-outputs", "langsmith-metadata"),
            "v2": ("starts-at-launch", "langsmith-metadata"),
        },
        ordered=False,
    ),
    Scenario("lambda", 3),
    Scenario("nested_sequences", 3, {"v1": ("starts-at-launch",), "v2": ("starts-at-launch",)}),
    Scenario("nested_run", 1),
    Scenario(
        "model_invoked_inside",
        "hi",
        {
            "v1": ("starts-at-launch", "tracer-outputs", "invoked-runs-stream", "langsmith-metadata"),
            "v2": ("starts-at-launch", "invoked-runs-stream", "langsmith-metadata"),
        },
    ),
    Scenario(
        "tool_in_chain",
        "abc",
        {"v1": ("starts-at-launch", "ends-after-output"), "v2": ("starts-at-launch", "ends-after-output")},
    ),
    Scenario("generator", "ab", {"v1": ("starts-at-launch",), "v2": ("starts-at-launch",)}),
    Scenario("parser_root", "abc", {"v2": ("parser-streams-at-root",)}),
    Scenario("custom_event", 1),
    Scenario("tagged", 1, {"v1": ("starts-at-launch",), "v2": ("starts-at-launch",)}),
    Scenario("assign", {"x": 2}, ordered=False),
    Scenario("error", 1, {"v2": ("starts-at-launch", "error-events")}, versions=("v2",)),
)

LOG_SCENARIOS = (
    Scenario(
        "prompt_model_parser",
        {"topic": "x"},
        {"log": ("starts-at-launch", "tracer-outputs", "langsmith-metadata")},
    ),
    Scenario("chat_model_root", "hi"),
    Scenario("llm_root", "hi"),
    Scenario(
        "prompt_llm_parser",
        {"topic": "x"},
        {"log": ("starts-at-launch", "tracer-outputs", "langsmith-metadata")},
    ),
    Scenario("parallel", 1, {"log": ("starts-at-launch", "tracer-outputs")}, ordered=False),
    Scenario("tool", {"word": "abc"}),
    Scenario("json_snapshots", "x", {"log": ("starts-at-launch", "tracer-outputs", "langsmith-metadata")}),
    Scenario("list_stream", 1, {"log": ("starts-at-launch", "tracer-outputs")}),
    Scenario("dict_chunks", 1, {"log": ("starts-at-launch", "tracer-outputs")}),
)


# -- running ----------------------------------------------------------------------------


def _lc_run(coroutine: Any) -> Any:
    """Run a coroutine of langchain-core's on a loop of its own (call it in a worker thread)."""
    with warnings.catch_warnings():
        # v1 and astream_log are deprecated there; this side only says what it does.
        warnings.simplefilter("ignore")
        return asyncio.run(coroutine)


def lc_events(name: str, value: Any, version: str) -> tuple[list[dict[str, Any]], BaseException | None]:
    """langchain-core's events for scenario ``name`` (and the error it raised, if any)."""

    async def collect() -> tuple[list[dict[str, Any]], BaseException | None]:
        events: list[dict[str, Any]] = []
        try:
            async for event in _lc_chains()[name]().astream_events(value, version=version):
                events.append(event)
        except Exception as exc:
            return events, exc
        return events, None

    result: tuple[list[dict[str, Any]], BaseException | None] = _lc_run(collect())
    return result


async def rillet_events(
    name: str, value: Any, version: str
) -> tuple[list[dict[str, Any]], BaseException | None]:
    """rillet's events for scenario ``name`` (and the error it raised, if any)."""
    events: list[dict[str, Any]] = []
    try:
        async for event in _ri_chains()[name]().astream_events(value, version=version):
            events.append(dict(event))
    except Exception as exc:
        return events, exc
    return events, None


def lc_log(name: str, value: Any, diff: bool) -> list[Any]:
    """langchain-core's ``astream_log`` items for scenario ``name``."""

    async def collect() -> list[Any]:
        return [item async for item in _lc_chains()[name]().astream_log(value, diff=diff)]

    result: list[Any] = _lc_run(collect())
    return result


async def rillet_log(name: str, value: Any, diff: bool) -> list[Any]:
    """rillet's ``astream_log`` items for scenario ``name``."""
    return [item async for item in _ri_chains()[name]().astream_log(value, diff=diff)]


# -- making events comparable ------------------------------------------------------------


def plain(value: Any) -> Any:
    """A value as a plain structure both sides can be compared in."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if hasattr(value, "page_content"):
        return ("Document", value.page_content)
    if hasattr(value, "messages") and not isinstance(value, type):
        return ("PromptValue", [plain(m) for m in value.messages])
    if hasattr(value, "to_string") and isinstance(getattr(value, "text", None), str):
        return ("StringPromptValue", value.text)
    if hasattr(value, "content") and hasattr(value, "type"):
        return (type(value).__name__, plain(value.content))
    if isinstance(value, BaseException):
        return (type(value).__name__, str(value))
    return value


@attrs.frozen
class Seen:
    """One event as the comparison sees it."""

    event: str
    run: tuple[Any, ...]
    parent: tuple[Any, ...] | None
    tags: tuple[str, ...]
    metadata: tuple[str, ...]
    data: tuple[tuple[str, Any], ...]

    def with_data(self, data: dict[str, Any]) -> Seen:
        return attrs.evolve(self, data=tuple(data.items()))


def comparable_events(events: list[dict[str, Any]], version: str) -> list[Seen]:
    """``events`` with run ids replaced by run paths and values made plain."""
    paths: dict[str, tuple[Any, ...]] = {}
    parents: dict[str, str | None] = {}
    seen: list[Seen] = []
    for event in events:
        run_id = event["run_id"]
        if run_id not in paths:
            parent_id = _parent_of(event, version)
            parents[run_id] = parent_id
            base = paths.get(parent_id, ()) if parent_id is not None else ()
            paths[run_id] = (*base, (event["name"], tuple(event["tags"])))
        parent = parents[run_id]
        name = event["event"]
        run = paths[run_id]
        if name == "on_custom_event":
            run = (*run, "custom", event["name"])
        seen.append(
            Seen(
                event=name,
                run=run,
                parent=paths.get(parent) if parent is not None else None,
                tags=tuple(event["tags"]),
                metadata=tuple(sorted(event["metadata"])),
                data=tuple((key, plain(value)) for key, value in _data(event).items()),
            )
        )
    return seen


def _data(event: dict[str, Any]) -> dict[str, Any]:
    data = event["data"]
    return data if isinstance(data, dict) else {"value": data}


def _parent_of(event: dict[str, Any], version: str) -> str | None:
    # v1 events carry no parent ids (on either side): v1 runs are named by themselves.
    if version == "v2" and event["parent_ids"]:
        return str(event["parent_ids"][-1])
    return None


def per_run(seen: list[Seen]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Each run's own events: what is defined under concurrency. Its start and end in
    place, its stream events as a multiset (a parallel step's chunks come in the order
    its branches make them, on either side)."""
    runs: dict[tuple[Any, ...], list[Seen]] = {}
    for item in seen:
        runs.setdefault(item.run, []).append(item)
    return {
        run: (items[0], sorted(map(repr, items[1:-1])), items[-1]) if len(items) > 1 else (items[0],)
        for run, items in runs.items()
    }


# -- the named differences ------------------------------------------------------------------

Pair = tuple[list[Seen], list[Seen]]


def _starts_at_launch(lc: list[Seen], ri: list[Seen]) -> Pair:
    """rillet publishes a run's start events at launch, in graph order, before its actors
    run, so a step whose input is not known then starts with ``{}``; langchain-core
    starts each step when its input arrives."""
    blank = {item.run for item in ri if item.event.endswith("_start") and not item.data}
    starts: list[Seen] = []
    rest: list[Seen] = []
    begun = False
    for item in lc:
        if item.event.endswith("_start"):
            # Started after the run got going: its input came from upstream.
            starts.append(item.with_data({}) if begun and item.run in blank else item)
        else:
            begun = True
            rest.append(item)
    return starts + rest, ri


_LANGSMITH = re.compile(r"^(ls_|lc_)")


def _langsmith_metadata(lc: list[Seen], ri: list[Seen]) -> Pair:
    """langchain-core adds LangSmith's tracing keys (``ls_provider``, ``ls_model_type``,
    ``ls_retriever_name``...) to a model's and a retriever's metadata; rillet adds none."""
    return [attrs.evolve(i, metadata=tuple(k for k in i.metadata if not _LANGSMITH.match(k))) for i in lc], ri


def without_langsmith(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata without LangSmith's keys (see ``langsmith-metadata``)."""
    return {key: value for key, value in metadata.items() if not _LANGSMITH.match(key)}


def untraced(value: Any) -> Any:
    """A tracer's record of an output as the output itself."""
    if isinstance(value, dict):
        if value.get("type") == "LLMResult":
            generation = value["generations"][0][0]
            # A chat model's generation holds its message; a completion model's, its text.
            return generation["message"] if "message" in generation else generation["text"]
        if set(value) == {"documents"}:
            return value["documents"]
        if set(value) == {"output"}:
            return value["output"]
    return value


def _tracer_outputs(lc: list[Seen], ri: list[Seen]) -> Pair:
    """langchain-core's v1 (and ``astream_log``'s entries) show a model's output as an
    ``LLMResult`` record and a retriever's as ``{"documents": [...]}`` (a chain's as
    ``{"output": ...}`` in the log): its tracer's records. rillet shows the output itself,
    as v2 does."""
    changed = [i.with_data({k: untraced(v) if k == "output" else v for k, v in i.data}) for i in lc]
    return changed, ri


def _parser_streams_at_root(lc: list[Seen], ri: list[Seen]) -> Pair:
    """A parser at the root of a v2 stream publishes its chunks in rillet (it is a
    transform wherever it is); langchain-core's parser streams only inside a chain."""
    return lc, [i for i in ri if not (i.event == "on_parser_stream" and i.parent is None)]


def _error_events(lc: list[Seen], ri: list[Seen]) -> Pair:
    """rillet ends every started step with its end or error event (``on_<kind>_error``,
    up to the root) before the stream raises; langchain-core raises without them."""
    return lc, [i for i in ri if not i.event.endswith("_error")]


def _ends_after_output(lc: list[Seen], ri: list[Seen]) -> Pair:
    """A step's end is published when its actor has handed its last chunk on, so the
    chain's stream event for that chunk comes first; langchain-core ends an invoked
    step (a tool, a retriever) before its output reaches the chain."""
    moved = list(lc)
    index = 0
    while index < len(moved):
        item = moved[index]
        after = index + 1
        if item.event.endswith("_end"):
            while after < len(moved) and _streams_for(moved[after], item):
                after += 1
            if after > index + 1:
                moved.insert(after - 1, moved.pop(index))
                continue
        index += 1
    return moved, ri


def _streams_for(other: Seen, ended: Seen) -> bool:
    """Whether ``other`` is an enclosing run's stream event (v1 says no ancestry: any
    chain's stream event there)."""
    if not other.event.endswith("_stream"):
        return False
    if ended.parent is None and len(ended.run) == 1:
        return other.event == "on_chain_stream"
    return ended.run[: len(other.run)] == other.run


def _as_chunks(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "AIMessage":
        return ("AIMessageChunk", value[1])
    if isinstance(value, dict):
        return {key: _as_chunks(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_chunks(item) for item in value]
    return value


def _invoked_runs_stream(lc: list[Seen], ri: list[Seen]) -> Pair:
    """A run invoked inside a step is a stream of actors like any other: a model hands
    the next step (and its end event) its summed ``AIMessageChunk``; langchain-core's
    ``invoke`` runs the steps one after another and passes the ``AIMessage``."""
    return [i.with_data({k: _as_chunks(v) for k, v in i.data}) for i in lc], ri


def _llm_result_text(value: Any) -> Any:
    if isinstance(value, dict) and set(value) >= {"generations", "llm_output"}:
        generations = value["generations"]
        if len(generations) == 1 and len(generations[0]) == 1 and "message" not in generations[0][0]:
            return generations[0][0]["text"]
    return value


def _llm_text(event: str, key: str, value: Any) -> Any:
    if event == "on_llm_end" and key == "output":
        return _llm_result_text(value)
    if event == "on_llm_stream" and key == "chunk" and isinstance(getattr(value, "text", None), str):
        return value.text
    return value


def _llm_text_values(lc: list[Seen], ri: list[Seen]) -> Pair:
    """A completion model's events carry text in v2 as in v1: each ``on_llm_stream`` chunk
    is the ``str`` and the end's ``output`` the chunks joined (the value ``ainvoke``
    returns). langchain-core's v2 shows its ``LLMResult`` record (``{"generations":
    [[{"text": ...}]], "llm_output": ...}``) as the output, and a ``GenerationChunk`` as
    the chunk inside a chain (the ``str`` at the root of the stream)."""
    return [i.with_data({k: _llm_text(i.event, k, v) for k, v in i.data}) for i in lc], ri


def _generator_tools_stream(lc: list[Seen], ri: list[Seen]) -> Pair:
    """A generator tool streams its chunks (``on_tool_stream`` each, v2 included): rillet
    adds generator tools; langchain-core's tools return one value."""
    return lc, [i for i in ri if i.event != "on_tool_stream"]


#: Every difference rillet keeps on purpose, by name (ARCHITECTURE.md lists each).
DIFFERENCES: dict[str, Callable[[list[Seen], list[Seen]], Pair]] = {
    "starts-at-launch": _starts_at_launch,
    "langsmith-metadata": _langsmith_metadata,
    "tracer-outputs": _tracer_outputs,
    "parser-streams-at-root": _parser_streams_at_root,
    "error-events": _error_events,
    "generator-tools-stream": _generator_tools_stream,
    "ends-after-output": _ends_after_output,
    "invoked-runs-stream": _invoked_runs_stream,
    "llm-text": _llm_text_values,
}


def undo(names: tuple[str, ...], lc: list[Seen], ri: list[Seen]) -> Pair:
    """Both sides with the named differences undone."""
    for name in names:
        lc, ri = DIFFERENCES[name](lc, ri)
    return lc, ri


# -- astream_log ------------------------------------------------------------------------------

_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


def comparable_log(patches: list[Any], expected: tuple[str, ...], side: str) -> list[list[Any]]:
    """``astream_log`` patches (diff=True) as lists of plain operations: ids and times
    normalised (times checked to be ISO strings first), named differences undone on
    langchain-core's side."""
    result: list[list[Any]] = []
    for patch in patches:
        ops = []
        for op in patch.ops:
            ops.append(_plain_op(op, expected if side == "lc" else ()))
        result.append(ops)
    if side == "lc" and "starts-at-launch" in expected:
        # Entries are added at launch in rillet: the patches that add them come first.
        adds = [ops for ops in result[1:] if _adds_entry(ops)]
        result = [result[0], *adds, *(ops for ops in result[1:] if not _adds_entry(ops))]
    return result


def by_owner(patches: list[list[Any]]) -> dict[str, Any]:
    """Each log entry's operations in order, and the root's chunks as a multiset: what
    is defined when steps run concurrently."""
    owners: dict[str, Any] = {"": []}
    for ops in patches[1:]:
        for op in ops:
            path = op[1]
            if path.startswith("/logs/"):
                owners.setdefault(path.split("/")[2], []).append(op)
            elif path == "/streamed_output/-":
                owners[""].append(repr(op))
    owners[""].sort()
    return {"state": patches[0], **owners}


def _adds_entry(ops: list[Any]) -> bool:
    return (
        len(ops) == 1 and ops[0][0] == "add" and ops[0][1].count("/") == 2 and ops[0][1].startswith("/logs/")
    )


def _plain_op(op: dict[str, Any], expected: tuple[str, ...]) -> tuple[Any, ...]:
    path = op["path"]
    value = op.get("value")
    if path.endswith(("start_time", "end_time")):
        assert isinstance(value, str) and _ISO_TIME.match(value), value
        value = "<time>"
    elif path == "":
        value = {**value, "id": "<id>"}
    elif path.startswith("/logs/") and path.count("/") == 2:
        assert isinstance(value["start_time"], str) and _ISO_TIME.match(value["start_time"])
        value = {**value, "id": "<id>", "start_time": "<time>"}
        if "langsmith-metadata" in expected:
            value["metadata"] = without_langsmith(value["metadata"])
    elif path.endswith("/final_output") and path.startswith("/logs/") and "tracer-outputs" in expected:
        value = untraced(value)
    return (op["op"], path, plain(value))


def plain_state(state: Any) -> Any:
    """A final ``astream_log`` state with ids and times normalised."""
    state = plain(state)
    state["id"] = "<id>"
    for entry in state["logs"].values():
        entry.update(id="<id>", start_time="<time>", end_time="<time>")
    return state
