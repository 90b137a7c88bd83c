"""What a runnable wrapping another one answers on its behalf.

A retry, a rate limit, listeners, a config binding and a Ray pool each wrap one
runnable, ``bound``, and their output is ``bound``'s, chunk for chunk. So how that
output adds up, which of its chunks carry content (the commit point) and the batch limit
bound to it are ``bound``'s too: :class:`BoundWrapper` says so once.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ._edge import Accumulation
from ._runnable import Runnable

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("BoundWrapper",)


class BoundWrapper(Runnable[In, Out]):
    """A runnable whose output is the output of the runnable it wraps, ``bound``.

    Subclasses are frozen attrs classes that declare the ``bound`` field; put this class
    before a node kind in the bases (``class RunnableRetry(BoundWrapper[In, Out],
    HostingNode[In, Out])``) so that its answers win.
    """

    bound: Runnable[In, Out]

    @property
    def output_accumulation(self) -> Accumulation:
        return self.bound.output_accumulation

    def carries_content(self, chunk: Any) -> bool:
        return self.bound.carries_content(chunk)

    def _max_concurrency(self) -> int | None:
        return self.bound._max_concurrency()
