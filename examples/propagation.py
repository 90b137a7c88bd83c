"""The guide's "Callback propagation" section: runnables invoked inside tools and functions.

In the guide, ``bad_tool`` calls ``reverse_word.invoke(word)`` without passing
``callbacks``, so ``reverse_word``'s events are lost, and a ``correct_tool`` has to thread
``callbacks`` through by hand. In rillet each step's run context travels in a context
variable, so the very same ``bad_tool`` shows ``reverse_word``'s events nested under the
tool (with ``version="v2"`` their ``parent_ids`` hold the tool's run id): no
``callbacks`` argument needed. The guide's ``correct_tool`` runs too, as written: the
tool gets its ``callbacks`` (not one of its arguments), and passing them on is harmless.

Then ``reverse_and_double``, which awaits ``reverse_word`` inside, as a
``RunnableLambda`` and with the ``@chain`` decorator: the nested events appear there too,
as in the guide.

Run: python examples/propagation.py   (offline; no model needed)
"""

from __future__ import annotations

import anyio

from engine import RunnableLambda, chain
from nodes import tool


def reverse_word(word: str) -> str:
    return word[::-1]


reverse_word = RunnableLambda(reverse_word)


@tool
def bad_tool(word: str) -> str:
    """Custom tool that doesn't propagate callbacks."""
    return reverse_word.invoke(word)


@tool
def correct_tool(word: str, callbacks):
    """A tool that correctly propagates callbacks."""
    return reverse_word.invoke(word, {"callbacks": callbacks})


async def with_runnable_lambda() -> None:
    async def reverse_and_double(word: str) -> str:
        return await reverse_word.ainvoke(word) * 2

    reverse_and_double = RunnableLambda(reverse_and_double)

    await reverse_and_double.ainvoke("1234")

    async for event in reverse_and_double.astream_events("1234", version="v1"):
        print(event)


async def with_chain_decorator() -> None:
    @chain
    async def reverse_and_double(word: str) -> str:
        return await reverse_word.ainvoke(word) * 2

    await reverse_and_double.ainvoke("1234")

    async for event in reverse_and_double.astream_events("1234", version="v1"):
        print(event)


async def main() -> None:
    async for event in bad_tool.astream_events("hello", version="v1"):
        print(event)
    print()
    async for event in correct_tool.astream_events("hello", version="v1"):
        print(event)
    print()
    await with_runnable_lambda()
    print()
    await with_chain_decorator()


if __name__ == "__main__":
    anyio.run(main, backend="trio")
