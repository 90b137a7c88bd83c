"""How streamed chunks add up to a value.

A step's output (for ``invoke``, for an aggregate step's input, for an end event) is its
chunks added together. Strings are joined in one pass; a type may offer a linear-time
``concat_chunks`` classmethod (message chunks do) instead of pairwise ``+``; where ``+``
is not defined the last chunk stands, and a stream marked as snapshots (``"last"``) is
always its last chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from ._edge import Accumulation

T = TypeVar("T")

__all__ = ("AddableDict", "ChunkLog", "add_chunks", "concat_chunks")


class AddableDict(dict[str, Any]):
    """A dict whose ``+`` merges keys, adding the values of keys present in both.

    A parallel step emits one-key ``AddableDict`` chunks as each branch produces output;
    adding them gives the step's whole output. Keys listed in ``snapshot_keys`` hold
    snapshots (a JSON parser's growing values), so the right-hand value replaces the
    left-hand one instead of being added to it.
    """

    __slots__ = ("snapshot_keys",)

    def __init__(self, *args: Any, snapshot_keys: frozenset[str] = frozenset(), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.snapshot_keys = snapshot_keys

    def __add__(self, other: object) -> AddableDict:
        if not isinstance(other, dict):
            return NotImplemented
        snapshot_keys = self.snapshot_keys | getattr(other, "snapshot_keys", frozenset())
        merged = AddableDict(self, snapshot_keys=snapshot_keys)
        for key, value in other.items():
            if key in merged and key not in snapshot_keys:
                merged[key] = add_chunks(merged[key], value)
            else:
                merged[key] = value
        return merged

    def __radd__(self, other: object) -> AddableDict:
        if not isinstance(other, dict):
            return NotImplemented
        return AddableDict(other) + self


def add_chunks(left: Any, right: Any) -> Any:
    """``left + right``, or ``right`` where the two cannot be added."""
    if left is None:
        return right
    try:
        return left + right
    except TypeError:
        return right


def concat_chunks(chunks: Sequence[T], accumulation: Accumulation = "add") -> T | None:
    """Add ``chunks`` together into one value (``None`` when there are none).

    Args:
        chunks: The chunks, in stream order.
        accumulation: ``"last"`` when each chunk is a snapshot of the whole value.
    """
    if not chunks:
        return None
    last = chunks[-1]
    if len(chunks) == 1 or accumulation == "last":
        return last
    first = chunks[0]
    kind = type(first)
    if kind is str and all(type(c) is str for c in chunks):
        return "".join(chunks)  # type: ignore[arg-type,return-value]
    bulk = getattr(kind, "concat_chunks", None)
    if bulk is not None and all(type(c) is kind for c in chunks):
        return bulk(chunks)  # type: ignore[no-any-return]
    value: Any = first
    for chunk in chunks[1:]:
        try:
            value = value + chunk
        except TypeError:
            return last
    return value  # type: ignore[no-any-return]


BLOCK = 256


class ChunkLog:
    """Remembers a stream's chunks for its sum, in memory proportional to the sum.

    An end event carries the sum of a step's chunks, so a step someone listens to must
    remember them; kept one object per chunk, a long stream of small tokens would cost
    far more than its text. Every ``BLOCK`` chunks are added into one block, and every
    ``BLOCK`` blocks into one larger block, so each chunk is copied once per level:
    ``O(n log n)`` work, and memory close to the size of the sum itself.

    ``recent`` is the newest level; the event path appends to it directly (one list
    append per chunk) and calls :meth:`carry` once it holds ``BLOCK`` chunks.
    """

    __slots__ = ("_upper", "accumulation", "recent")

    def __init__(self, accumulation: Accumulation = "add") -> None:
        self.recent: list[Any] = []
        self._upper: list[list[Any]] = []
        self.accumulation: Accumulation = accumulation

    def append(self, chunk: Any) -> None:
        """Remember ``chunk``."""
        recent = self.recent
        recent.append(chunk)
        if len(recent) >= BLOCK:
            self.carry()

    def carry(self) -> None:
        """Fold full levels into the level above (called when ``recent`` is full)."""
        if self.accumulation == "last":
            self.recent = self.recent[-1:]
            return
        last = self.recent[-1]
        try:
            block = concat_chunks(self.recent)
            self.recent = []
            for level in self._upper:
                level.append(block)
                if len(level) < BLOCK:
                    return
                block = concat_chunks(level)
                level.clear()
            self._upper.append([block])
        except Exception:
            # The chunks' ``+`` raised: remembering them must never change the run's
            # outcome (an unobserved stream never adds them up), so the log keeps the
            # last chunk only, as for chunks that cannot be added at all.
            self.accumulation = "last"
            self._upper = []
            self.recent = [last]

    def __bool__(self) -> bool:
        return bool(self.recent) or any(self._upper)

    def total(self) -> Any:
        """The sum of every chunk remembered (``None`` when there is none)."""
        ordered = [chunk for level in reversed(self._upper) for chunk in level]
        ordered.extend(self.recent)
        try:
            return concat_chunks(ordered, self.accumulation)
        except Exception:
            return ordered[-1]
