"""The chains under test, built the same way on rillet and on langchain-core.

Engine-only chains are made of the same three async generator functions on both sides
(``source`` turns an input ``n`` into ``n`` chunks, ``increment`` adds one to each chunk,
``endless`` never stops), so the only difference measured is the engine.

The ``prompt | model | parser`` chains need rillet's ``nodes`` package, which may not
exist yet: :func:`nodes_status` says why a scenario must skip. On the langchain side the
model is ``FakeListChatModel``: in langchain-core 1.x it is the fake chat model with a
native async ``_astream`` (one ``AIMessageChunk`` per character of its reply, no delay
unless asked), whereas ``GenericFakeChatModel`` only has a synchronous ``_stream`` that
``astream`` drives through a worker thread, one thread hop per chunk, which would
measure the thread pool instead of the engine.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import AsyncIterator
from typing import Any

import anyio

__all__ = (
    "ASYNCGEN_CLOSE_ERRORS",
    "NODE_NAMES",
    "PROMPT_INPUT",
    "PROMPT_TEMPLATE",
    "endless",
    "increment",
    "langchain_chain",
    "langchain_endless_chain",
    "langchain_missing",
    "langchain_prompt_chain",
    "nodes_status",
    "quiet_asyncgen_close_errors",
    "rillet_chain",
    "rillet_endless_chain",
    "rillet_prompt_chain",
    "rillet_retry_prompt_chain",
    "source",
)

NODE_NAMES = ("ChatPromptTemplate", "ScriptedChatModel", "StrOutputParser")
PROMPT_TEMPLATE = "tell me a joke about {topic}"
PROMPT_INPUT: dict[str, str] = {"topic": "parrots"}


# -- the step functions (shared by both engines) ------------------------------------------


async def source(inputs: AsyncIterator[int]) -> AsyncIterator[int]:
    """For each input ``n``, yield ``0 .. n-1``."""
    async for count in inputs:
        for index in range(count):
            yield index


async def increment(inputs: AsyncIterator[int]) -> AsyncIterator[int]:
    """Yield every input chunk plus one."""
    async for value in inputs:
        yield value + 1


async def endless(inputs: AsyncIterator[Any]) -> AsyncIterator[int]:
    """Ignore the input and yield 0, 1, 2... forever (for cancellation)."""
    async for _ in inputs:
        index = 0
        while True:
            yield index
            index += 1


# -- rillet -----------------------------------------------------------------------------


def rillet_chain(steps: int = 3) -> Any:
    """``source | increment | ...`` with ``steps`` steps in all (one actor each)."""
    from engine import RunnableGenerator

    first: Any = RunnableGenerator(source)
    if steps == 1:
        return first
    return first.pipe(*([increment] * (steps - 1)))


def rillet_endless_chain(steps: int) -> Any:
    """``endless | increment | ...`` with ``steps`` steps in all."""
    from engine import RunnableGenerator

    first: Any = RunnableGenerator(endless)
    if steps == 1:
        return first
    return first.pipe(*([increment] * (steps - 1)))


def nodes_status() -> str | None:
    """``None`` when ``nodes`` has what the prompt|model|parser scenarios need, else why not."""
    try:
        import nodes
    except Exception as exc:  # any failure to import means "not there yet"
        return f"nodes not available yet (import nodes failed: {type(exc).__name__}: {exc})"
    missing = [name for name in NODE_NAMES if not hasattr(nodes, name)]
    if missing:
        return f"nodes not available yet (nodes lacks {', '.join(missing)})"
    return None


def _rillet_prompt_chain_for(
    reply: str | list[str], *, retry: bool = False, idle: float | None = None
) -> Any:
    nodes: Any = importlib.import_module("nodes")  # typed Any: its names may not exist yet
    prompt = nodes.ChatPromptTemplate.from_template(PROMPT_TEMPLATE)
    model = nodes.ScriptedChatModel(replies=[reply])
    if retry:
        model = model.with_retry()
    if idle is not None:
        model = model.with_timeout(idle=idle)
    return prompt | model | nodes.StrOutputParser()


@functools.cache
def _takes_token_lists() -> bool:
    """Whether ``ScriptedChatModel`` accepts a reply as a list of tokens (streamed as is)."""
    nodes: Any = importlib.import_module("nodes")
    try:
        nodes.ScriptedChatModel(replies=[["x", "x"]])
    except (TypeError, ValueError):
        return False
    return True


@functools.cache
def _words_per_chunk() -> float:
    """How many words of a ``"w w w ..."`` reply make one streamed chunk.

    Only used when replies must be strings: the tokenizer is then calibrated once by
    streaming a probe reply through the whole chain and counting the chunks.
    """
    probe_words = 512

    async def count() -> int:
        chunks = 0
        async for _ in _rillet_prompt_chain_for("w " * probe_words).astream(PROMPT_INPUT):
            chunks += 1
        return chunks

    chunks = anyio.run(count, backend="trio")
    return probe_words / max(chunks, 1)


def rillet_prompt_chain(tokens: int) -> Any:
    """``prompt | ScriptedChatModel | StrOutputParser`` whose reply streams ``tokens`` chunks.

    The reply is ``tokens`` one-character tokens ``"x"`` (as langchain-core's fake model
    streams ``"x" * tokens``), or a calibrated string where lists are not accepted.
    """
    if _takes_token_lists():
        return _rillet_prompt_chain_for(["x"] * tokens)
    words = max(1, round(tokens * _words_per_chunk()))
    return _rillet_prompt_chain_for("w " * words)


def rillet_retry_timeout_prompt_chain(tokens: int) -> Any:
    """``prompt | ScriptedChatModel.with_retry().with_timeout(idle=30) | StrOutputParser``,
    ``tokens`` chunks (the chain of issue 13's benchmark target; nothing fails or stalls)."""
    return _rillet_prompt_chain_for(["x"] * tokens, retry=True, idle=30.0)


def rillet_retry_prompt_chain(tokens: int) -> Any:
    """``prompt | ScriptedChatModel.with_retry() | StrOutputParser``, ``tokens`` chunks
    (the model never fails: what the wrapper costs a healthy stream)."""
    return _rillet_prompt_chain_for(["x"] * tokens, retry=True)


# -- langchain-core ---------------------------------------------------------------------


def langchain_missing() -> str | None:
    """``None`` when langchain-core is installed, else why the reference is skipped."""
    try:
        import langchain_core  # noqa: F401
    except ImportError:
        return "langchain-core is not installed (pip install 'rillet[bench]')"
    return None


def langchain_chain(steps: int = 3) -> Any:
    """langchain-core's ``RunnableGenerator(source) | increment | ...``."""
    from langchain_core.runnables import RunnableGenerator

    chain: Any = RunnableGenerator(source)
    for _ in range(steps - 1):
        chain = chain | RunnableGenerator(increment)
    return chain


def langchain_endless_chain(steps: int) -> Any:
    """langchain-core's ``RunnableGenerator(endless) | increment | ...``."""
    from langchain_core.runnables import RunnableGenerator

    chain: Any = RunnableGenerator(endless)
    for _ in range(steps - 1):
        chain = chain | RunnableGenerator(increment)
    return chain


def langchain_prompt_chain(tokens: int) -> Any:
    """``ChatPromptTemplate | FakeListChatModel | StrOutputParser``, ``tokens`` chunks."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_template(PROMPT_TEMPLATE)
    model = FakeListChatModel(responses=["x" * tokens])
    return prompt | model | StrOutputParser()


#: Messages of async generators that failed to close on a langchain-core run's loop (see
#: :func:`quiet_asyncgen_close_errors`), kept so that the report can count them.
ASYNCGEN_CLOSE_ERRORS: list[str] = []


def quiet_asyncgen_close_errors() -> None:
    """Count, instead of printing, "error during closing of asynchronous generator" reports.

    langchain-core's ``astream`` chains async generators; closing one early (``aclose()``
    after the first chunks) makes its inner generators fail to close ("aclose(): asynchronous
    generator is already running"), which asyncio reports through the loop's exception
    handler. Call this at the start of a langchain-core measurement (on asyncio).
    """
    import asyncio

    loop = asyncio.get_running_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "asynchronous generator" in message:
            ASYNCGEN_CLOSE_ERRORS.append(f"{message}: {context.get('exception')!r}")
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
