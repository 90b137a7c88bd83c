"""How streamed chunks add up to a value.

A step's output (for ``invoke``, for an aggregate step's input, for an end event) is its
chunks added together, and :class:`ChunkSum` is the one thing that adds them, chunk by
chunk as they arrive. Strings and lists are joined in one pass; a type may offer a
linear-time ``concat_chunks`` classmethod (message chunks do) instead of pairwise ``+``;
a parallel step's ``AddableDict`` chunks add up key by key; where ``+`` is not defined
the last chunk stands, and a stream marked as snapshots (``"last"``) is always its last
chunk, the only one kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain, repeat
from operator import is_
from typing import Any, TypeVar

from ._edge import Accumulation

T = TypeVar("T")

__all__ = ("AddableDict", "ChunkSum", "add_chunks", "concat_chunks")


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


def concat_chunks(chunks: Iterable[T], accumulation: Accumulation = "add") -> T | None:
    """Add ``chunks`` together into one value (``None`` when there are none).

    The same sum as a :class:`ChunkSum` fed every chunk.

    Args:
        chunks: The chunks, in stream order.
        accumulation: ``"last"`` when each chunk is a snapshot of the whole value.
    """
    total = ChunkSum(accumulation)
    total.extend(chunks)
    return total.total()  # type: ignore[no-any-return]


def _concat(chunks: list[Any]) -> tuple[Any, bool]:
    """``(sum, True)`` for a non-empty block of chunks, or ``(last chunk, False)`` where
    ``+`` is not defined between two of them."""
    first = chunks[0]
    if len(chunks) == 1:
        return first, True
    kind = type(first)
    # Whether every chunk is of the first one's type, checked in C (a generator would
    # cost a Python step per chunk, which is most of what adding up a block costs).
    same_kind = all(map(is_, map(type, chunks), repeat(kind)))
    if kind is str or kind is list:
        if same_kind:
            # One pass, where pairwise + would copy the growing value once per chunk.
            return ("".join(chunks) if kind is str else list(chain.from_iterable(chunks))), True
    else:
        bulk = getattr(kind, "concat_chunks", None)
        if bulk is not None and same_kind:
            return bulk(chunks), True
    value = first
    for chunk in chunks[1:]:
        try:
            value = value + chunk
        except TypeError:
            return chunks[-1], False
    return value, True


#: Chunks added into one block at a time (and blocks into one larger block). Small
#: enough that the chunks waiting in a block (message chunks are objects the garbage
#: collector tracks) rarely outlive a young collection: with 256, observing a stream of
#: message chunks cost a quarter more instructions per token, mostly the collector's
#: (``python -m benchmarks.instructions --only every_step_subscriber``).
BLOCK = 64

# How a ChunkSum holds what it has seen (decided by its accumulation and first chunk).
_UNDECIDED = 0  # no chunk carried yet
_LAST = 1  # snapshots, or chunks that cannot be added: only the last one is kept
_BLOCKS = 2  # added in blocks of BLOCK chunks, blocks of blocks, ...
_KEYS = 3  # AddableDict chunks: one ChunkSum per key


class ChunkSum:
    """The running sum of a stream of chunks, in memory close to the size of the sum.

    Every place that needs a stream's total uses one: ``ainvoke`` (so ``invoke`` and
    ``abatch``), an aggregate step reading its input, a step's end event, the running
    output of ``astream_log``. Chunks are taken one by one (or a batch at a time), so a
    long stream never sits in memory as one object per chunk:

    * a stream of snapshots (``"last"``) keeps only its last chunk; so does a stream
      whose chunks turn out not to add up (``+`` raises ``TypeError``);
    * a parallel step's ``AddableDict`` chunks are summed key by key, each key's values
      as a stream of their own (a snapshot key keeping only its last value);
    * anything else is added every ``BLOCK`` chunks into one block, and every ``BLOCK``
      blocks into one larger block (strings and lists in one pass, a type's own
      ``concat_chunks`` where it has one): each chunk is copied once per level, so
      ``O(n log n)`` work.

    The per-chunk path is a list append: append to ``recent`` and call :meth:`carry`
    once it holds ``limit`` chunks (the event path inlines exactly that).
    """

    __slots__ = (
        "_keys",
        "_mode",
        "_snapshot_keys",
        "_tail",
        "_upper",
        "accumulation",
        "limit",
        "recent",
        "tolerant",
    )

    def __init__(self, accumulation: Accumulation = "add", *, tolerant: bool = False) -> None:
        self.accumulation: Accumulation = accumulation
        #: Whether a ``+`` that raises anything (not only ``TypeError``) makes the sum
        #: its last chunk instead of raising. An end event's log is tolerant: observing
        #: a run must never change its outcome, and an unobserved stream never adds up.
        self.tolerant = tolerant
        #: Chunks not carried yet.
        self.recent: list[Any] = []
        self._mode = _LAST if accumulation == "last" else _UNDECIDED
        #: How many chunks ``recent`` may hold before :meth:`carry` must be called.
        self.limit = 2 if accumulation == "last" else 1
        self._upper: list[list[Any]] = []
        self._keys: dict[Any, ChunkSum] = {}
        self._snapshot_keys: frozenset[Any] = frozenset()
        # The newest chunk already carried (the sum, should adding fail at the end).
        self._tail: Any = None

    def append(self, chunk: Any) -> None:
        """Add ``chunk``."""
        recent = self.recent
        recent.append(chunk)
        if len(recent) >= self.limit:
            self.carry()

    def extend(self, chunks: Iterable[Any]) -> None:
        """Add ``chunks``, in order."""
        recent = self.recent
        recent.extend(chunks)
        if len(recent) >= self.limit:
            self.carry()

    def carry(self) -> None:
        """Fold ``recent`` into the sum (called when it holds ``limit`` chunks)."""
        if not self.tolerant:
            self._carry()
            return
        last = self.recent[-1] if self.recent else self._tail
        try:
            self._carry()
        except Exception:
            self._keep_only(last)

    def _carry(self) -> None:
        recent = self.recent
        if not recent:
            return
        mode = self._mode
        if mode == _LAST:
            del recent[:-1]
        elif mode == _BLOCKS:
            if len(recent) >= BLOCK:
                self._carry_block()
        elif mode == _KEYS:
            self._carry_keys()
        elif isinstance(recent[0], AddableDict):
            self._mode, self.limit = _KEYS, 1
            self._carry_keys()
        else:
            self._mode, self.limit = _BLOCKS, BLOCK
            if len(recent) >= BLOCK:
                self._carry_block()

    def _carry_block(self) -> None:
        recent = self.recent
        tail = recent[-1]
        block, added = _concat(recent)
        if not added:
            self._keep_only(tail)
            return
        recent.clear()
        self._tail = tail
        for level in self._upper:
            level.append(block)
            if len(level) < BLOCK:
                return
            block, added = _concat(level)
            if not added:
                self._keep_only(tail)
                return
            level.clear()
        self._upper.append([block])

    def _carry_keys(self) -> None:
        recent = self.recent
        parts = self._keys
        snapshot_keys = self._snapshot_keys
        for chunk in recent:
            if not isinstance(chunk, dict):
                self._keep_only(recent[-1])
                return
            marked = getattr(chunk, "snapshot_keys", None)
            if marked and not marked <= snapshot_keys:
                snapshot_keys = self._snapshot_keys = snapshot_keys | marked
            for key, value in chunk.items():
                part = parts.get(key)
                if key in snapshot_keys:
                    if part is None or part._mode != _LAST:
                        part = parts[key] = ChunkSum("last")
                elif part is None:
                    part = parts[key] = ChunkSum()
                part.append(value)
        recent.clear()

    def _keep_only(self, last: Any) -> None:
        """From now on the sum is the last chunk: ``+`` is not defined for this stream."""
        self._mode, self.limit = _LAST, 2
        self._upper.clear()
        self._keys.clear()
        self.recent[:] = [last]

    def __bool__(self) -> bool:
        return bool(self.recent) or any(self._upper) or bool(self._keys)

    def total(self) -> Any:
        """The sum of every chunk so far (``None`` when there is none)."""
        if not self.tolerant:
            return self._total()
        last = self.recent[-1] if self.recent else self._tail
        try:
            return self._total()
        except Exception:
            self._keep_only(last)
            return last

    def _total(self) -> Any:
        if self._mode == _UNDECIDED or self._mode == _KEYS:
            self.carry()
        mode = self._mode
        recent = self.recent
        if mode == _LAST:
            return recent[-1] if recent else None
        if mode == _KEYS:
            totals = {key: part.total() for key, part in self._keys.items()}
            return AddableDict(totals, snapshot_keys=self._snapshot_keys)
        ordered = [block for level in reversed(self._upper) for block in level]
        ordered.extend(recent)
        if not ordered:
            return None
        value, added = _concat(ordered)
        if not added:
            self._keep_only(recent[-1] if recent else self._tail)
            return self.recent[0]
        # Keep the sum as the one block, so asking again (or after a few more
        # chunks) does not add everything up again.
        if recent:
            self._tail = recent[-1]
        recent.clear()
        self._upper = [[value]]
        return value
