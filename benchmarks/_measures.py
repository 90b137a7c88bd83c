"""Measurement bodies shared by the scenarios: one repetition each, timed inside the loop.

``make_chain`` is called before the clock starts (building a chain is description, not
running), so stateful models get a fresh instance per repetition on both sides.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from ._harness import Sample

__all__ = ("Form", "stream_measure")

#: How the consumer reads: rillet's bare ``async for`` (the guide's form), rillet's
#: ``async with chain.astream(x) as s`` (the structured form), or langchain's
#: ``async for`` over its async generator.
Form = Literal["bare", "with", "langchain"]


def stream_measure(
    make_chain: Callable[[], Any],
    value: Any,
    *,
    form: Form = "bare",
    events: bool = False,
) -> Callable[[], Awaitable[Sample]]:
    """Time one full ``astream`` (or ``astream_events(version="v2")``) of a fresh chain.

    The figures are ``seconds`` (from the ``astream`` call to the end of the stream) and
    ``items`` (chunks, or events, received).
    """

    def open_stream(chain: Any) -> Any:
        if events:
            return chain.astream_events(value, version="v2")
        return chain.astream(value)

    async def measure() -> Sample:
        chain = make_chain()
        count = 0
        started = time.perf_counter()
        if form == "with":
            async with open_stream(chain) as stream:
                async for _ in stream:
                    count += 1
        else:
            async for _ in open_stream(chain):
                count += 1
        return {"seconds": time.perf_counter() - started, "items": count}

    return measure
