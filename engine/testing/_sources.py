"""Sources, probes and sinks whose progress a test controls and inspects."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
import attrs

from .._actors import TransformNode
from .._edge import EdgeStatistics
from .._step import Step

T = TypeVar("T")

__all__ = ("CountingSource", "GatedSource", "Probe", "ProbeRecord", "RecordingSink")


class _Lifecycle:
    """What a test wants to know about one actor: did it start, finish, get cancelled.

    ``cancelled`` counts the runs stopped before they finished: cancelled while waiting
    (for a release, for input), or closed while suspended at a ``yield``, which is where
    a step waits while its outbox is full (its actor then closes the generator, which
    raises ``GeneratorExit`` there rather than a cancellation).
    """

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.cancelled = 0

    def _enter(self) -> None:
        self.started += 1

    def _exit(self, exc: BaseException | None) -> None:
        self.finished += 1
        if isinstance(exc, GeneratorExit) or (
            exc is not None and isinstance(exc, anyio.get_cancelled_exc_class())
        ):
            self.cancelled += 1

    @property
    def running(self) -> int:
        """How many runs of this node have started and not finished."""
        return self.started - self.finished


class GatedSource(TransformNode[Any, T], _Lifecycle, Generic[T]):
    """A source that ignores its input and yields ``items`` only as the test releases them.

    ``release(n)`` lets ``n`` more items out; ``produced`` counts what was yielded. Its
    ``finished``/``cancelled`` counters show that its cleanup ran.
    """

    def __init__(self, items: Iterable[T]) -> None:
        _Lifecycle.__init__(self)
        self.items = list(items)
        self.produced = 0
        self._allowed = 0
        self._wakeup: anyio.Event | None = None

    def get_name(self) -> str:
        return "GatedSource"

    def release(self, count: int = 1) -> None:
        """Let ``count`` more items out."""
        self._allowed += count
        if self._wakeup is not None:
            self._wakeup.set()

    def release_all(self) -> None:
        """Let every remaining item out."""
        self.release(len(self.items))

    async def transform_stream(self, chunks: AsyncIterator[Any], step: Step) -> AsyncIterator[T]:
        self._enter()
        error: BaseException | None = None
        try:
            async for _ in chunks:
                pass
            for item in self.items:
                while self.produced >= self._allowed:
                    self._wakeup = anyio.Event()
                    await self._wakeup.wait()
                self.produced += 1
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._exit(error)


class CountingSource(TransformNode[Any, int], _Lifecycle):
    """A source that ignores its input and yields ``0 .. count-1`` as fast as it may."""

    def __init__(self, count: int) -> None:
        _Lifecycle.__init__(self)
        self.count = count
        self.produced = 0

    def get_name(self) -> str:
        return "CountingSource"

    async def transform_stream(self, chunks: AsyncIterator[Any], step: Step) -> AsyncIterator[int]:
        self._enter()
        error: BaseException | None = None
        try:
            async for _ in chunks:
                pass
            for index in range(self.count):
                self.produced += 1
                yield index
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._exit(error)


@attrs.frozen
class ProbeRecord(Generic[T]):
    """What a probe saw of one chunk.

    Attributes:
        chunk: The chunk.
        entered: When the probe received it (``anyio.current_time()``, so mock-clock time
            under trio's ``MockClock``).
        left: When the next step accepted it.
        ahead: How many chunks upstream had already produced past this one and buffered
            in the probe's inbox when it arrived (``None`` when the inbox is no edge).
    """

    chunk: T
    entered: float
    left: float
    ahead: int | None


class Probe(TransformNode[T, T], _Lifecycle, Generic[T]):
    """A pass-through step that records what it saw, when, and whether its cleanup ran."""

    def __init__(self, name: str = "Probe") -> None:
        _Lifecycle.__init__(self)
        self._name = name
        self.seen: list[T] = []
        self.records: list[ProbeRecord[T]] = []

    def get_name(self) -> str:
        return self._name

    @property
    def max_ahead(self) -> int:
        """The furthest upstream ever ran ahead of this probe."""
        return max((r.ahead or 0 for r in self.records), default=0)

    async def transform_stream(self, chunks: AsyncIterator[T], step: Step) -> AsyncIterator[T]:
        self._enter()
        error: BaseException | None = None
        statistics = getattr(chunks, "statistics", None)
        try:
            async for chunk in chunks:
                entered = anyio.current_time()
                ahead = statistics().buffered if statistics is not None else None
                self.seen.append(chunk)
                yield chunk
                self.records.append(ProbeRecord(chunk, entered, anyio.current_time(), ahead))
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._exit(error)


class RecordingSink(Generic[T]):
    """Reads a run's stream, keeping every chunk and the edges' statistics after each."""

    def __init__(self) -> None:
        self.chunks: list[T] = []
        self.statistics: list[list[EdgeStatistics]] = []

    async def read(self, stream: Any, limit: int | None = None) -> list[T]:
        """Read ``limit`` chunks (all when ``None``) from ``stream`` (a ``RunStream``)."""
        while limit is None or len(self.chunks) < limit:
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                break
            self.chunks.append(chunk)
            self.statistics.append(stream.statistics())
        return self.chunks
