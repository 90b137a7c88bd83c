"""Users' own nodes, written the documented way: each public hook overridden, then run.

The hooks are listed in ARCHITECTURE.md ("Extension points"): ``TransformNode.transform_stream``,
``AggregateNode.compute``, ``BaseChatModel.stream_chunks``, ``BaseRetriever.get_relevant_documents``,
``Runnable.output_accumulation``, ``Runnable.start_event_input`` and
``LeafNode.reads_current_step``. Every test runs on trio and on asyncio.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import nullcontext
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import attrs

from engine import (
    Accumulation,
    AggregateNode,
    EventBus,
    Runnable,
    RunnableGenerator,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
    Step,
    TransformNode,
    adispatch_custom_event,
)
from nodes import (
    AIMessageChunk,
    BaseChatModel,
    BaseMessage,
    BaseRetriever,
    ChatPromptTemplate,
    Document,
    StrOutputParser,
)


async def collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


# -- a user's transform node ------------------------------------------------------------------------


@attrs.frozen(eq=False)
class Shout(TransformNode[str, str]):
    """Upper-cases each chunk as it arrives, announcing each one as a custom event."""

    kind: ClassVar[str] = "shouter"

    async def transform_stream(self, chunks: AsyncIterator[str], step: Step) -> AsyncIterator[str]:
        async for chunk in chunks:
            await adispatch_custom_event("shouting", chunk)
            yield chunk.upper()


@attrs.frozen(eq=False)
class RunningText(TransformNode[str, str]):
    """Emits the whole text so far after each chunk: snapshots, so the output is the last."""

    output_accumulation: ClassVar[Accumulation] = "last"
    reads_current_step: ClassVar[bool] = False

    async def transform_stream(self, chunks: AsyncIterator[str], step: Step) -> AsyncIterator[str]:
        text = ""
        async for chunk in chunks:
            text += chunk
            yield text


@attrs.frozen(eq=False)
class MaybeSnapshots(TransformNode[str, str]):
    """Like ``RunningText`` when ``snapshots`` is set, else passes chunks on (a property)."""

    snapshots: bool

    @property
    def output_accumulation(self) -> Accumulation:
        return "last" if self.snapshots else "add"

    async def transform_stream(self, chunks: AsyncIterator[str], step: Step) -> AsyncIterator[str]:
        text = ""
        async for chunk in chunks:
            text += chunk
            yield text if self.snapshots else chunk


async def _words(texts: AsyncIterator[str]) -> AsyncIterator[str]:
    async for text in texts:
        for word in text.split(" "):
            yield word + " "


async def test_a_transform_node_streams_each_chunk_as_it_arrives() -> None:
    """A TransformNode's ``transform_stream`` sees the input chunks and its output streams."""
    chain = RunnableGenerator[str, str](_words) | Shout()
    assert await collect(chain.astream("a b c")) == ["A ", "B ", "C "]
    assert await chain.ainvoke("a b c") == "A B C "


async def test_a_transform_node_has_its_kind_and_runs_as_its_own_step() -> None:
    """The node's ``kind`` names its events; its custom events carry its own run id."""
    events = await collect((_words | Shout()).astream_events("a b", version="v2"))
    names = [e["event"] for e in events]
    assert "on_shouter_start" in names and "on_shouter_end" in names
    start = next(e for e in events if e["event"] == "on_shouter_start")
    custom = [(e["data"], e["run_id"]) for e in events if e["event"] == "on_custom_event"]
    assert custom == [("a ", start["run_id"]), ("b ", start["run_id"])]


async def test_output_accumulation_as_a_class_attribute_is_honoured() -> None:
    """A class-attribute ``output_accumulation = "last"`` makes the output the last snapshot,
    for ``ainvoke``, for the step downstream that aggregates it, and for its end event."""
    node = RunningText()
    assert await collect((_words | node).astream("a b c")) == ["a ", "a b ", "a b c "]
    assert await (_words | node).ainvoke("a b c") == "a b c "
    assert await (_words | node | RunnableLambda(len)).ainvoke("a b c") == len("a b c ")
    chains: list[Runnable[str, Any]] = [_words | node, RunnableGenerator[str, str](_words) | {"text": node}]
    for chain in chains:
        events = await collect(chain.astream_events("a b", version="v2"))
        end = next(e for e in events if e["event"] == "on_chain_end" and e["name"] == "RunningText")
        assert end["data"]["output"] == "a b "


async def test_output_accumulation_as_a_property_depends_on_the_instance() -> None:
    """A property ``output_accumulation`` is read per instance, and composites report their
    last step's."""
    assert await (_words | MaybeSnapshots(snapshots=True)).ainvoke("a b") == "a b "
    assert await (_words | MaybeSnapshots(snapshots=False)).ainvoke("a b") == "a b "
    assert (_words | MaybeSnapshots(snapshots=True)).output_accumulation == "last"
    assert MaybeSnapshots(snapshots=True).with_config(run_name="m").output_accumulation == "last"
    assert (MaybeSnapshots(snapshots=True) | RunnablePassthrough()).output_accumulation == "add"


# -- a user's aggregate node ------------------------------------------------------------------------


@attrs.frozen(eq=False)
class WordCount(AggregateNode[str, dict[str, int]]):
    """Counts the words of its whole input, and shows the input's length in its start event."""

    def start_event_input(self, value: Any) -> Any:
        return {"characters": len(value)} if isinstance(value, str) else value

    async def compute(self, value: str, step: Step) -> AsyncIterator[dict[str, int]]:
        step.set_input({"characters": len(value)})
        yield {"words": len(value.split())}


async def test_an_aggregate_node_computes_on_its_whole_input() -> None:
    """``compute`` gets the upstream chunks added up, once, after upstream is done."""
    assert await (_words | WordCount()).ainvoke("one two three") == {"words": 3}
    assert await collect((_words | WordCount()).astream("a b")) == [{"words": 2}]


async def test_an_aggregate_nodes_events_show_its_event_input() -> None:
    """``start_event_input`` shapes the start event's input; ``step.set_input`` the end's."""
    # Inside a sequence (at the root of the stream the start shows the raw input).
    events = await collect((WordCount() | RunnablePassthrough()).astream_events("one two", version="v2"))
    start = events[1]
    end = next(e for e in events if e["event"] == "on_chain_end" and e["name"] == "WordCount")
    assert start["event"] == "on_chain_start" and start["data"]["input"] == {"characters": 7}
    assert end["data"] == {"input": {"characters": 7}, "output": {"words": 2}}


# -- a user's chat model ----------------------------------------------------------------------------


@attrs.define(eq=False)
class EchoModel(BaseChatModel):
    """Echoes the last message word by word, recording the task its stream runs and ends in."""

    reads_current_step: ClassVar[bool] = False

    body_tasks: list[int] = attrs.field(factory=list)
    closed_in: list[int] = attrs.field(factory=list)
    delivered: list[str] = attrs.field(factory=list)

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        self.body_tasks.append(anyio.get_current_task().id)
        try:
            for word in messages[-1].text.split(" "):
                self.delivered.append(word)
                yield AIMessageChunk.from_text(word + " ")
        finally:
            self.closed_in.append(anyio.get_current_task().id)


async def test_a_chat_model_streams_its_chunks_through_a_chain() -> None:
    """``stream_chunks`` gets the input as messages; its chunks stream through a parser."""
    model = EchoModel()
    chain = ChatPromptTemplate.from_messages([("human", "say {x}")]) | model | StrOutputParser()
    assert await collect(chain.astream({"x": "hi there"})) == ["say ", "hi ", "there "]
    assert await model.ainvoke("a b") == AIMessageChunk.from_text("a b ").to_message()


async def test_a_chat_models_events_are_chat_model_events_with_messages() -> None:
    """A BaseChatModel subclass's events are ``on_chat_model_*`` with ``{"messages": ...}`` input."""
    events = await collect(EchoModel().astream_events("a b", version="v2"))
    assert [e["event"] for e in events] == [
        "on_chat_model_start",
        "on_chat_model_stream",
        "on_chat_model_stream",
        "on_chat_model_end",
    ]
    assert events[0]["data"] == {"input": "a b"}  # the root of the stream: the raw input
    inner = await collect((EchoModel() | StrOutputParser()).astream_events("a b", version="v2"))
    assert inner[1]["event"] == "on_chat_model_start"
    assert [m.text for m in inner[1]["data"]["input"]["messages"][0]] == ["a b"]


async def test_a_chat_models_stream_is_closed_in_its_own_task_when_the_consumer_leaves() -> None:
    """The engine closes the generator ``stream_chunks`` returned, in the task that ran it,
    when the consumer leaves after one chunk (unobserved, and observed: fused with its parser)."""
    for observed in (False, True):
        model = EchoModel()
        chain = model | StrOutputParser()
        bus = EventBus()
        with anyio.fail_after(10):
            listener = bus.subscribe(overflow="drop") if observed else nullcontext()
            async with listener, chain.astream(" ".join(["w"] * 100), {"bus": bus}) as chunks:
                async for _ in chunks:
                    break
        assert len(model.closed_in) == 1
        assert model.closed_in == model.body_tasks
        assert len(model.delivered) < 100


# -- a user's retriever ----------------------------------------------------------------------------


@attrs.frozen(eq=False)
class KeywordRetriever(BaseRetriever):
    """Returns the documents containing the query (a plain method: runs in a worker thread)."""

    texts: tuple[str, ...]

    def get_relevant_documents(self, query: str) -> list[Document]:
        return [Document(t) for t in self.texts if query in t]


@attrs.frozen(eq=False)
class AsyncKeywordRetriever(BaseRetriever):
    """The same, as an ``async def`` (runs in the step's own task)."""

    texts: tuple[str, ...]

    async def get_relevant_documents(self, query: str) -> list[Document]:
        await anyio.lowlevel.checkpoint()
        return [Document(t) for t in self.texts if query in t]


async def test_a_retriever_answers_with_get_relevant_documents() -> None:
    """``get_relevant_documents`` (sync or async) answers the whole query, as one chunk."""
    for retriever in (KeywordRetriever(("cats", "dogs", "cats and dogs")), AsyncKeywordRetriever(("cats",))):
        docs = await retriever.ainvoke("cats")
        assert [d.page_content for d in docs] == [t for t in retriever.texts if "cats" in t]
        events = await collect(RunnableParallel(docs=retriever).astream_events("cats", version="v2"))
        assert events[1]["event"] == "on_retriever_start"
        assert events[1]["data"]["input"] == {"query": "cats"}
