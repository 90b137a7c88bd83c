"""``RayRunnable`` composed: inside a chain (streamed and batched), under ``with_retry``,
and refused inside another ``RayRunnable``.

One local Ray per session (the ``ray_session`` fixture); every async test runs with the
driver on trio and on asyncio. Remote work is held at a probe's gate (``tests/_ray_probe.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

import anyio
import pytest

pytest.importorskip("ray")

import ray
from _ray_probe import Probe, gated_stream

from engine import CompositionError, RunnableGenerator, RunnableLambda
from engine.ray import RayRunnable
from engine.testing import check_event_order
from nodes import ChatPromptTemplate, InMemoryRetriever, ScriptedChatModel, StrOutputParser

pytestmark = [pytest.mark.usefixtures("ray_session")]

HANG_GUARD = 60  # seconds: a test that would otherwise wait for ever fails instead

TEXTS = ["harrison worked at kensho", "bears like to eat honey"]
REPLY = "Harrison worked at Kensho."


async def fetch(ref: Any) -> Any:
    """``ray.get`` from a test, in a thread (the test's own reads, not the engine's)."""
    return await anyio.to_thread.run_sync(functools.partial(ray.get, ref, timeout=60), abandon_on_cancel=True)


def as_prompt_input(docs: list[Any]) -> dict[str, str]:
    return {"context": " / ".join(d.page_content for d in docs)}


def answer_chain() -> Any:
    """What runs on Ray: the retrieved documents into a prompt, into a scripted model."""
    prompt = ChatPromptTemplate.from_template("Answer from: {context}")
    return RunnableLambda(as_prompt_input) | prompt | ScriptedChatModel(replies=[REPLY])


def rag(middle: Any) -> Any:
    return InMemoryRetriever.from_texts(TEXTS, k=1) | middle | StrOutputParser()


async def shout(chunks: Any) -> Any:
    async for chunk in chunks:
        yield chunk.upper()


def double(x: int) -> int:
    return x * 2


def flaky_double(probe: Any) -> Any:
    """A step whose first call (counted by the probe, over every actor) fails."""

    async def flaky_double(x: int) -> int:
        if await probe.tick.remote() == 1:
            raise ValueError("the first call fails")
        return x * 2

    return RunnableLambda(flaky_double)


def flaky_words(probe: Any) -> Any:
    """A stream whose first call fails before its first chunk; later calls stream 3 words."""

    async def flaky_words(x: str) -> Any:
        if await probe.tick.remote() == 1:
            raise ValueError("the first call fails")
        for i in range(3):
            yield f"{x}{i} "

    return RunnableLambda(flaky_words)


@pytest.fixture(scope="module")
def shared_probe(ray_session: Any) -> Any:
    handle = Probe.remote()
    yield handle
    ray.kill(handle)


@pytest.fixture
def probe(shared_probe: Any) -> Any:
    """The module's probe, reset (counters zero, gate closed) for this test."""
    ray.get(shared_probe.reset.remote())
    return shared_probe


@pytest.fixture(scope="module")
def remotes(shared_probe: Any) -> Any:
    """The module's RayRunnables, made once (actors take a process each) and reused."""
    made = {
        "answer": RayRunnable(answer_chain(), num_actors=1),
        "gated stream": RayRunnable(gated_stream(shared_probe, 2, 4), num_actors=1),
        "flaky": RayRunnable(flaky_double(shared_probe), num_actors=1),
        "flaky words": RayRunnable(flaky_words(shared_probe), num_actors=1),
    }
    yield made
    for remote in made.values():
        remote.shutdown()


async def test_a_ray_step_between_a_retriever_and_a_parser_streams_like_the_local_chain(
    remotes: dict[str, Any],
) -> None:
    """``retriever | RayRunnable(chain) | parser`` streams the same chunks as the chain run locally, token by token."""
    async with rag(remotes["answer"]).astream("where did harrison work?") as chunks:
        got = [chunk async for chunk in chunks]
    async with rag(answer_chain()).astream("where did harrison work?") as chunks:
        want = [chunk async for chunk in chunks]
    assert got == want and len(got) > 1 and "".join(got) == REPLY


async def test_a_ray_step_between_a_retriever_and_a_parser_batches(remotes: dict[str, Any]) -> None:
    """``abatch`` of ``retriever | RayRunnable(chain) | parser`` gives each input's answer in order."""
    chain = rag(remotes["answer"])
    assert await chain.abatch(["harrison?", "bears?", "kensho?"], max_concurrency=2) == [REPLY] * 3
    assert await chain.ainvoke("harrison?") == REPLY


async def test_a_ray_step_mid_chain_hands_on_each_chunk_as_it_comes(
    probe: Any, remotes: dict[str, Any]
) -> None:
    """In ``astream`` of ``a | RayRunnable(b) | c``, c gets b's first chunks while b is still held on its worker."""
    chain = RunnableLambda(str.strip) | remotes["gated stream"] | RunnableGenerator(shout)
    with anyio.fail_after(HANG_GUARD):
        async with chain.astream(" s ") as chunks:
            first = [await chunks.__anext__(), await chunks.__anext__()]
            # The remote run waits at the gate before its third chunk: the first two went through.
            assert (await fetch(probe.read.remote()))["in_flight"] == 1
            await fetch(probe.open_gate.remote())
            rest = [chunk async for chunk in chunks]
    assert first == ["S0 ", "S1 "] and rest == ["S2 ", "S3 "]


async def test_events_of_a_ray_step_mid_chain_nest_and_order(remotes: dict[str, Any]) -> None:
    """``astream_events`` of ``retriever | RayRunnable(chain) | parser`` passes check_event_order, the model's tokens included."""
    events = [e async for e in rag(remotes["answer"]).astream_events("harrison?", version="v2")]
    check_event_order(events)
    ray_step = next(e for e in events if e["name"] == "RayRunnable" and e["event"] == "on_chain_start")
    tokens = [e for e in events if e["event"] == "on_chat_model_stream"]
    assert tokens and all(ray_step["run_id"] in e["parent_ids"] for e in tokens)
    assert "".join(e["data"]["chunk"].content for e in tokens) == REPLY
    assert events[-1]["data"]["output"] == REPLY


async def test_with_retry_around_a_ray_step_retries_a_remote_failure(
    probe: Any, remotes: dict[str, Any]
) -> None:
    """``RayRunnable(step).with_retry(...)`` tries a failed remote call again (the error arrives as its own type)."""
    retried = remotes["flaky"].with_retry(
        retry_if_exception_type=(ValueError,), wait_exponential_jitter=False
    )
    assert await retried.ainvoke(21) == 42
    assert (await fetch(probe.read.remote()))["ticks"] == 2


async def test_with_retry_around_a_ray_stream_gives_each_chunk_once(
    probe: Any, remotes: dict[str, Any]
) -> None:
    """A remote stream that failed before its first chunk is retried by ``with_retry``; the consumer sees each chunk once."""
    retried = remotes["flaky words"].with_retry(
        retry_if_exception_type=(ValueError,), stop_after_attempt=2, wait_exponential_jitter=False
    )
    async with retried.astream("r") as chunks:
        got = [chunk async for chunk in chunks]
    assert got == ["r0 ", "r1 ", "r2 "]
    assert (await fetch(probe.read.remote()))["ticks"] == 2


async def test_with_retry_gives_up_with_the_remote_error(probe: Any, remotes: dict[str, Any]) -> None:
    """With one attempt, ``with_retry`` around a RayRunnable raises the remote step's own ValueError."""
    once = remotes["flaky"].with_retry(retry_if_exception_type=(ValueError,), stop_after_attempt=1)
    with pytest.raises(ValueError, match="the first call fails"):
        await once.ainvoke(1)


@pytest.mark.parametrize(
    "shape",
    ["direct", "in a sequence", "under with_retry", "in a parallel step", "with a config", "in a closure"],
)
def test_a_ray_runnable_inside_another_is_refused_at_construction(shape: str) -> None:
    """A RayRunnable holding another RayRunnable (anywhere in its chain) fails at once, saying how to compose them."""
    inner = RayRunnable(RunnableLambda(double))

    def calls_inner(x: int) -> int:
        return int(inner.invoke(x))

    bound = {
        "direct": inner,
        "in a sequence": RunnableLambda(double) | inner,
        "under with_retry": inner.with_retry(),
        "in a parallel step": RunnableLambda(double) | {"a": inner, "b": RunnableLambda(double)},
        "with a config": inner.with_config(tags=["x"]),
        "in a closure": RunnableLambda(calls_inner),
    }[shape]
    with pytest.raises(
        CompositionError, match=r"cannot run inside another one.*RayRunnable\(a\) \| RayRunnable\(b\)"
    ):
        RayRunnable(bound)


class _UnreachableStore(Mapping[str, Any]):
    """A mapping whose reads fail (a remote store that is down): nothing may read it."""

    def __getitem__(self, key: str) -> Any:
        raise ConnectionError("store unreachable")

    def __iter__(self) -> Iterator[str]:
        raise ConnectionError("store unreachable")

    def __len__(self) -> int:
        return 1


def test_data_a_function_captured_is_not_walked_for_nested_ray_steps() -> None:
    """The nesting check looks at runnables and functions in a closure, never at captured
    data: a mapping whose reads fail is left alone, and construction succeeds."""
    store = _UnreachableStore()
    table = [[i] for i in range(1000)]

    def lookup(x: int) -> int:
        return x + len(store) + len(table)

    RayRunnable(RunnableLambda(lookup))  # neither raises nor reads the store


def test_side_by_side_ray_steps_are_accepted() -> None:
    """Two RayRunnables one after the other in a chain are fine (only nesting is refused)."""
    chain = RayRunnable(RunnableLambda(double), num_actors=1) | RayRunnable(
        RunnableLambda(double), num_actors=1
    )
    assert chain.invoke(3) == 12
    for step in chain.steps:
        step.shutdown()


def make_and_run_a_ray_runnable(x: int) -> int:
    return int(RayRunnable(RunnableLambda(double)).invoke(x))


async def test_a_ray_runnable_made_on_a_worker_is_refused_there() -> None:
    """A RayRunnable made and run inside a remote step's code fails with CompositionError, raised on the driver."""
    outer = RayRunnable(RunnableLambda(make_and_run_a_ray_runnable), num_actors=1)
    try:
        with pytest.raises(CompositionError, match="run on a worker of another RayRunnable"):
            await outer.ainvoke(1)
    finally:
        outer.shutdown()
