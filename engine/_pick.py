"""``.pick(keys)`` and ``.map()``: a dict's keys picked as it streams, a runnable over a list.

:class:`RunnablePick` is a transform step: each dict chunk that has a picked key yields
at once (the value of one key, or a dict of the picked keys), so picking from a
parallel step streams as the parallel step does. :class:`RunnableEach` is an aggregate
step: it runs its runnable on every item of the finalized list as a batch of runs
nested under its step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from ._actors import AggregateNode, TransformNode
from ._chunks import AddableDict
from ._compose import RunnableBinding, RunnableParallel, RunnableSequence
from ._edge import Accumulation
from ._errors import CompositionError
from ._runnable import Runnable
from ._step import Step

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("RunnableEach", "RunnablePick", "picked_accumulation")


def _keys(keys: object) -> str | tuple[str, ...]:
    if isinstance(keys, str):
        return keys
    if isinstance(keys, Sequence) and keys and all(isinstance(k, str) for k in keys):
        return tuple(keys)
    raise CompositionError(f"pick() needs a key or a non-empty list of keys (strings), got {keys!r}")


def picked_accumulation(source: Runnable[Any, Any], keys: str | Sequence[str]) -> Accumulation:
    """How the values picked from ``source``'s output by ``keys`` add up.

    Picking from snapshots gives snapshots (``"last"``). One key of a parallel step (at
    the end of ``source``) gives that branch's chunks, which add up as the branch's do.
    A dict of several keys keeps each key's own way of adding up, so it adds (``"add"``).
    """
    if source.output_accumulation == "last":
        return "last"
    if not isinstance(keys, str):
        return "add"
    last: Runnable[Any, Any] = source
    while True:
        if isinstance(last, RunnableSequence):
            last = last.last
        elif isinstance(last, RunnableBinding):
            last = last.bound
        else:
            break
    if isinstance(last, RunnableParallel) and keys in last.branches:
        return last.branches[keys].output_accumulation
    return "add"


@attrs.frozen(eq=False, repr=False, init=False)
class RunnablePick(TransformNode[Mapping[str, Any], Any]):
    """Picks keys from a dict input, chunk by chunk (what ``runnable.pick(keys)`` ends with).

    ``RunnablePick("a")`` gives the value of key ``"a"``; ``RunnablePick(["a", "b"])`` a
    dict of those keys. A chunk with none of the keys yields nothing, so an input
    without them gives ``None`` (as in langchain-core).

    ``accumulation`` is how the picked chunks add up: ``runnable.pick()`` works it out
    from the runnable (:func:`picked_accumulation`). When the input turns out to be
    snapshots although the picked chunks were to add up (a bare ``RunnablePick("a")``
    after a JSON parser), the step yields only the last picked value, once, at the end,
    so the sum stays right.

    Raises:
        CompositionError: For a key that is not a string, or an empty list of keys.
        TypeError: In the run, for an input chunk that is not a dict.
    """

    keys: str | tuple[str, ...]
    accumulation: Accumulation

    def __init__(self, keys: str | Sequence[str], *, accumulation: Accumulation = "add") -> None:
        if accumulation not in ("add", "last"):
            raise CompositionError(f"accumulation must be 'add' or 'last', got {accumulation!r}")
        self.__attrs_init__(_keys(keys), accumulation)

    @property
    def output_accumulation(self) -> Accumulation:
        return self.accumulation

    def get_name(self) -> str:
        keys = self.keys
        return f"RunnablePick<{keys if isinstance(keys, str) else ','.join(keys)}>"

    def transform_stream(self, chunks: AsyncIterator[Mapping[str, Any]], step: Step) -> AsyncIterator[Any]:
        snapshots_in = getattr(chunks, "accumulation", "add") == "last"
        if snapshots_in and self.accumulation == "add":
            return self._last_only(chunks)
        return self._each(chunks)

    def _pick(self, chunk: object) -> tuple[bool, Any]:
        """``(True, picked)`` for a chunk with a picked key, else ``(False, None)``."""
        if not isinstance(chunk, Mapping):
            raise TypeError(f"{self.get_name()} needs a dict input, got {type(chunk).__name__}: {chunk!r}")
        keys = self.keys
        if isinstance(keys, str):
            return (True, chunk[keys]) if keys in chunk else (False, None)
        picked = {key: chunk[key] for key in keys if key in chunk}
        if not picked:
            return False, None
        snapshot_keys: frozenset[str] = getattr(chunk, "snapshot_keys", frozenset())
        return True, AddableDict(picked, snapshot_keys=snapshot_keys.intersection(picked))

    async def _each(self, chunks: AsyncIterator[Mapping[str, Any]]) -> AsyncIterator[Any]:
        keys = self.keys
        adds = self.accumulation == "add"
        last: tuple[bool, Any] = (False, None)
        async for chunk in chunks:
            found, value = self._pick(chunk)
            if not found:
                continue
            if adds and isinstance(keys, str) and keys in getattr(chunk, "snapshot_keys", ()):
                # A snapshot key picked into a stream that adds up: hold it to the end.
                last = (True, value)
                continue
            yield value
        if last[0]:
            yield last[1]

    async def _last_only(self, chunks: AsyncIterator[Mapping[str, Any]]) -> AsyncIterator[Any]:
        last: tuple[bool, Any] = (False, None)
        async for chunk in chunks:
            found, value = self._pick(chunk)
            if found:
                last = (True, value)
        if last[0]:
            yield last[1]

    def __repr__(self) -> str:
        return f"RunnablePick({self.keys!r})"


@attrs.frozen(eq=False, repr=False)
class RunnableEach(AggregateNode[Sequence[In], list[Out]]):
    """Runs ``bound`` on every item of a list input (what ``runnable.map()`` returns).

    The items run concurrently, as ``bound.abatch(items)`` would, each a run nested under
    this step (so their events are its children); the output is the list of their
    outputs, in input order, as one chunk. A failing item fails the step (the others are
    cancelled).

    Raises:
        TypeError: In the run, for an input that is not a list or tuple.
    """

    bound: Runnable[In, Out]

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.bound, Runnable):
            raise CompositionError(f"RunnableEach needs a runnable, got {type(self.bound).__name__}")

    def get_name(self) -> str:
        return f"RunnableEach<{self.bound.get_name()}>"

    async def compute(self, value: Sequence[In], step: Step) -> AsyncIterator[list[Out]]:
        if not isinstance(value, list | tuple):
            raise TypeError(f"{step.name} needs a list input, got {type(value).__name__}: {value!r}")
        yield await self.bound.abatch(value)

    def __repr__(self) -> str:
        return f"{self.bound!r}.map()"
