"""Bounded channels between actors.

An :class:`Edge` joins one producing actor (or several, for a fan-in) to one consuming
actor. It is a small deque-based memory channel rather than an anyio memory object
stream for three reasons, all measured or needed by tests: its fast paths never raise
(``WouldBlock`` costs a microsecond per item), it keeps the peak occupancy that
backpressure tests assert on, and waiting senders are served strictly first in, first
out, which the event bus relies on for causal order.

Every ``send``/``receive`` that does not have to wait still counts towards a checkpoint
once every ``CHECKPOINT_EVERY`` operations (counted per run, see :class:`Pace`), so a
busy pipeline stays fair without paying a trip through the scheduler for every chunk.
Every receive is a cancel point all the same: it hands out a ready item only while no
cancellation is pending for the receiving task (:class:`~engine._signal.TaskWatch`), and
checkpoints first otherwise.

The send side has one append (:meth:`Edge.put_nowait`) and one tick (:meth:`Pace.tick`),
written out only in :meth:`Edge.send_from`, the loop every actor's output goes through.
The receive side has one fast path, :meth:`Edge.poll`, written out in ``__anext__``
(each generator step's ``async for`` over its input): a call there costs about 500
instructions per chunk and step, more than the fast path itself.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Final, Generic, Literal, TypeVar

import anyio
import attrs

from ._signal import NOT_WATCHED, Signal, TaskWatch, cancel_pending, checkpoint, watch_current_task

if TYPE_CHECKING:
    from ._chunks import ChunkSum

T = TypeVar("T")

#: How a stream of chunks aggregates: ``"add"`` sums them with ``+`` (falling back to the
#: last chunk where ``+`` is not defined); ``"last"`` means every chunk is a snapshot of
#: the whole value so far, so the last one stands.
Accumulation = Literal["add", "last"]

#: Edge operations a task may do without waiting before it checkpoints anyway: 64
#: chunks for a source or a consumer, 32 for an actor that receives and sends each one.
CHECKPOINT_EVERY = 64


class Nothing(enum.Enum):
    """The type of :data:`NOTHING` (an enum, so that type checkers narrow on it)."""

    NOTHING = "NOTHING"


#: What :meth:`Edge.poll` returns when no item is ready (items may be ``None``).
NOTHING: Final = Nothing.NOTHING

__all__ = (
    "CHECKPOINT_EVERY",
    "NOTHING",
    "Accumulation",
    "ConstantInbox",
    "Edge",
    "EdgeStatistics",
    "Nothing",
    "Pace",
    "validate_capacity",
)


def validate_capacity(capacity: object, *, what: str = "capacity") -> int:
    """Return ``capacity`` if it is a usable channel size, else raise ``ValueError``."""
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"{what} must be an int, got {type(capacity).__name__} {capacity!r}")
    if capacity < 0:
        raise ValueError(f"{what} must be >= 0, got {capacity}")
    return capacity


@attrs.frozen
class EdgeStatistics:
    """A snapshot of one edge, for tests and monitors.

    Attributes:
        name: What the edge connects, for messages.
        capacity: How many items the edge buffers before a sender waits.
        buffered: Items in the buffer now.
        peak: The most items the buffer ever held.
        sent: Items accepted so far.
        waiting_senders: Senders blocked because the buffer is full.
        waiting_receivers: Receivers blocked because the buffer is empty.
        open_senders: Producers that have not closed their end yet.
        receiver_closed: Whether the consuming side was closed.
    """

    name: str
    capacity: int
    buffered: int
    peak: int
    sent: int
    waiting_senders: int
    waiting_receivers: int
    open_senders: int
    receiver_closed: bool


class Pace:
    """Counts the edge operations done since a task of one run last gave way.

    Only one task of an event loop runs at a time, and a run lives on one loop, so one
    counter shared by all the edges of a run (reset whenever one of its tasks waits or
    checkpoints) counts what the running task did since it last let others in. A task
    that receives and sends (a middle actor) then checkpoints once per
    ``CHECKPOINT_EVERY`` operations in all, not once per edge.
    """

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops = 0

    def tick(self) -> bool:
        """Count one operation; return whether a checkpoint is due (the count restarts)."""
        self.ops += 1
        if self.ops >= CHECKPOINT_EVERY:
            self.ops = 0
            return True
        return False


class _SendWaiter:
    __slots__ = ("delivered", "event", "item")

    def __init__(self, item: object) -> None:
        self.item = item
        self.event = Signal()
        self.delivered = False


class Edge(Generic[T]):
    """A bounded, single-consumer memory channel between actors.

    Every receive is a cancel point: an item is handed out without a trip through the
    scheduler only while no cancellation is pending for the receiving task (see
    :class:`~engine._signal.TaskWatch`); otherwise the receive takes its checkpoint first.

    Args:
        capacity: Items buffered before ``send`` waits (``0`` is a rendezvous).
        senders: How many producers must ``close()`` before the consumer sees the end.
        name: A label used in ``statistics()`` and error messages.
        accumulation: How the stream aggregates (see :data:`Accumulation`).

    Raises:
        ValueError: If ``capacity`` is negative.
    """

    __slots__ = (
        "_buffer",
        "_capacity",
        "_on_receiver_closed",
        "_open_senders",
        "_pace",
        "_peak",
        "_receive_waiter",
        "_receiver_closed",
        "_send_waiters",
        "_sent",
        "_watch",
        "accumulation",
        "name",
    )

    def __init__(
        self,
        capacity: int,
        *,
        senders: int = 1,
        name: str = "edge",
        accumulation: Accumulation = "add",
        pace: Pace | None = None,
    ) -> None:
        self._capacity = validate_capacity(capacity)
        self._buffer: deque[T] = deque()
        self._send_waiters: deque[_SendWaiter] = deque()
        self._receive_waiter: Signal | None = None
        self._open_senders = senders
        self._receiver_closed = False
        self._peak = 0
        self._sent = 0
        self._pace = pace if pace is not None else Pace()
        self._on_receiver_closed: list[Callable[[], None]] = []
        # The receiving task's watch, remade whenever a receive waits or checkpoints.
        self._watch: TaskWatch = NOT_WATCHED
        self.name = name
        self.accumulation: Accumulation = accumulation

    # -- producer side -------------------------------------------------------------

    def add_sender(self) -> None:
        """Register one more producer; each must call :meth:`close` when done."""
        if self._open_senders == 0:
            raise anyio.ClosedResourceError(f"{self.name}: every sender already closed")
        self._open_senders += 1

    async def send(self, item: T) -> None:
        """Put ``item`` in the buffer, waiting while it is full.

        Raises:
            anyio.ClosedResourceError: Every sender already closed the edge.
            anyio.BrokenResourceError: The consumer closed its side.
        """
        if self._receiver_closed:
            raise anyio.BrokenResourceError(f"{self.name}: the receiving side is closed")
        if self._open_senders == 0:
            raise anyio.ClosedResourceError(f"{self.name}: send after close")
        consumer_waits = self._receive_waiter is not None
        if self.put_nowait(item):
            if consumer_waits and self._sent == 1:
                # The stream's first item: let the consumer have it now rather than after
                # this producer has filled the buffer (time to first chunk).
                self._pace.ops = 0
                await checkpoint()
            elif self._pace.tick():
                await checkpoint()
            return
        await self.send_waiting(item)

    async def send_waiting(self, item: T, on_delivered: Callable[[], None] | None = None) -> None:
        """Queue ``item`` behind the full buffer and wait until the consumer takes it in.

        ``on_delivered`` runs once the item is in, even when a cancellation arrives in
        the same instant (on asyncio the wake-up and the cancellation can race): the
        caller then raises the cancellation yet still knows the item went through.
        """
        self._pace.ops = 0
        waiter_entry = _SendWaiter(item)
        self._send_waiters.append(waiter_entry)
        receive_waiter = self._receive_waiter
        if receive_waiter is not None:
            # A rendezvous edge: the receiver takes the item from the waiter queue.
            self._receive_waiter = None
            receive_waiter.set()
        try:
            await waiter_entry.event.wait()
        except BaseException:
            if not waiter_entry.delivered and not self._receiver_closed:
                # (close_receiver already took every waiter out of the queue)
                self._send_waiters.remove(waiter_entry)
            elif on_delivered is not None:
                on_delivered()
            raise
        if not waiter_entry.delivered:
            raise anyio.BrokenResourceError(f"{self.name}: the receiving side is closed")
        if on_delivered is not None:
            on_delivered()

    async def send_from(self, chunks: AsyncIterator[T], record: ChunkSum | None = None) -> None:
        """Send everything ``chunks`` yields (an actor's whole output, in one loop).

        The same as ``await send(c)`` for each chunk (a test holds them equal), with
        :meth:`put_nowait` and :meth:`Pace.tick` written out in the loop: this is the one
        per-chunk path that pays no call per chunk while there is room.

        Args:
            chunks: What to send.
            record: A running sum each chunk is added to before it is sent (an observed
                step's output log, when recording is all its events need per chunk):
                ``ChunkSum.append`` written out, so observing costs no call per chunk.
        """
        buffer = self._buffer
        capacity = self._capacity
        waiters = self._send_waiters
        pace = self._pace
        async for item in chunks:
            if record is not None:
                recent = record.recent
                recent.append(item)
                if len(recent) >= record.limit:
                    record.carry()
            if len(buffer) < capacity and not waiters and not self._receiver_closed and self._open_senders:
                buffer.append(item)
                self._sent += 1
                if len(buffer) > self._peak:
                    self._peak = len(buffer)
                waiter = self._receive_waiter
                if waiter is not None:
                    self._receive_waiter = None
                    waiter.set()
                    if self._sent == 1:
                        # The first item goes to the consumer at once (time to first chunk).
                        pace.ops = 0
                        await checkpoint()
                        continue
                pace.ops += 1
                if pace.ops >= CHECKPOINT_EVERY:
                    pace.ops = 0
                    await checkpoint()
            else:
                await self.send(item)

    def put_nowait(self, item: T, past_capacity: bool = False) -> bool:
        """Put ``item`` if there is room and nobody is queued ahead; else return False.

        With ``past_capacity``, put it in any case (for the few items that must never
        wait). This is the edge's one append (``send`` and ``force_put`` go through it;
        ``send_from`` writes it out), and runs once per published event.
        """
        buffer = self._buffer
        if not past_capacity and (len(buffer) >= self._capacity or self._send_waiters):
            return False
        buffer.append(item)
        self._sent += 1
        if len(buffer) > self._peak:
            self._peak = len(buffer)
        waiter = self._receive_waiter
        if waiter is not None:
            self._receive_waiter = None
            waiter.set()
        return True

    def force_put(self, item: T) -> None:
        """Put ``item`` even past capacity (for the few items that must never wait)."""
        self.put_nowait(item, past_capacity=True)

    def close(self) -> None:
        """Close one producer's end; the consumer sees the end once all have closed."""
        if self._open_senders == 0:
            return
        self._open_senders -= 1
        if self._open_senders == 0:
            waiter = self._receive_waiter
            if waiter is not None:
                self._receive_waiter = None
                waiter.set()

    def close_all(self) -> None:
        """Close every producer's end at once (the run's host does this when it exits)."""
        self._open_senders = 1
        self.close()

    # -- consumer side -------------------------------------------------------------

    def poll(self) -> T | Nothing:
        """The next item if one is ready, no checkpoint is due and no cancellation is
        pending for the receiving task; else :data:`NOTHING`.

        The receive fast path: a consumer calls it directly (a plain call instead of a
        coroutine per item), and on :data:`NOTHING` awaits :meth:`receive`, which waits,
        or takes the checkpoint that is due (delivering the pending cancellation) before
        the item.
        """
        buffer = self._buffer
        pace = self._pace
        if buffer and pace.ops < CHECKPOINT_EVERY:
            # TaskWatch.cancel_pending(), read inline: a call would cost more than the reads.
            watch = self._watch
            state = watch.anyio_state
            if state is None:
                try:
                    if watch.trio_task._cancel_status.effectively_cancelled:
                        return NOTHING
                except AttributeError:  # the status is None: the task finished, remake the watch
                    return NOTHING
            elif (
                state.cancel_scope is not watch.innermost
                or watch.scope0._cancel_called
                or watch.scope1._cancel_called
                or watch.scope2._cancel_called
            ):
                return NOTHING
            pace.ops += 1
            item = buffer.popleft()
            if self._send_waiters and len(buffer) <= self._capacity >> 1:
                self._admit_waiters()
            return item
        return NOTHING

    async def receive(self) -> T:
        """Take the next item, waiting while the buffer is empty (a cancel point).

        Raises:
            anyio.EndOfStream: Every sender closed and the buffer is drained.
            anyio.ClosedResourceError: This side was closed.
            anyio.BusyResourceError: Another task is already waiting to receive.
        """
        item = self.poll()
        if item is NOTHING:
            item = await self._receive_slowly()
        return item

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        # poll() written out: this runs once per chunk in every generator step.
        buffer = self._buffer
        pace = self._pace
        if buffer and pace.ops < CHECKPOINT_EVERY:
            watch = self._watch
            state = watch.anyio_state
            if state is None:
                try:
                    pending = watch.trio_task._cancel_status.effectively_cancelled
                except AttributeError:
                    pending = True
            else:
                pending = (
                    state.cancel_scope is not watch.innermost
                    or watch.scope0._cancel_called
                    or watch.scope1._cancel_called
                    or watch.scope2._cancel_called
                )
            if not pending:
                pace.ops += 1
                item = buffer.popleft()
                if self._send_waiters and len(buffer) <= self._capacity >> 1:
                    self._admit_waiters()
                return item
        try:
            return await self._receive_slowly()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def _receive_slowly(self) -> T:
        # What poll() could not do: wait for an item, or give way first (a checkpoint is
        # due, or a cancellation is pending, or the receiving task is not known yet).
        self._watch = watch = watch_current_task(self._watch)
        while True:
            if self._buffer or self._send_waiters:
                pace = self._pace
                if pace.ops >= CHECKPOINT_EVERY or watch.cancel_pending():
                    pace.ops = 0
                    await checkpoint()
                    if not (self._buffer or self._send_waiters):
                        continue  # closed or taken while we gave way
                pace.ops += 1
                return self._take()
            if self._receiver_closed:
                raise anyio.ClosedResourceError(f"{self.name}: receive after close")
            if self._open_senders == 0:
                await checkpoint()
                raise anyio.EndOfStream
            if self._receive_waiter is not None:
                raise anyio.BusyResourceError("receiving from")
            self._pace.ops = 0
            event = self._receive_waiter = Signal()
            try:
                await event.wait()
            finally:
                if self._receive_waiter is event:
                    self._receive_waiter = None

    def _take(self) -> T:
        buffer = self._buffer
        if buffer:
            item = buffer.popleft()
            if self._send_waiters and len(buffer) <= self._capacity >> 1:
                self._admit_waiters()
            return item
        entry = self._send_waiters.popleft()
        self._sent += 1
        entry.delivered = True
        entry.event.set()
        return entry.item  # type: ignore[return-value]

    def _admit_waiters(self) -> None:
        # Blocked senders are let in once the buffer is half empty, not slot by slot: a
        # slow consumer then wakes its producer once per half buffer instead of per chunk.
        buffer = self._buffer
        waiters = self._send_waiters
        while waiters and len(buffer) < self._capacity:
            entry = waiters.popleft()
            buffer.append(entry.item)  # type: ignore[arg-type]
            self._sent += 1
            entry.delivered = True
            entry.event.set()
        if len(buffer) > self._peak:
            self._peak = len(buffer)

    def receive_available(self, limit: int) -> list[T]:
        """Take up to ``limit`` items that are ready now, without waiting.

        Nothing while a cancellation is pending for the calling task: its next awaited
        receive delivers it.
        """
        out: list[T] = []
        if cancel_pending():
            return out
        while len(out) < limit and (self._buffer or self._send_waiters):
            out.append(self._take())
        return out

    def close_receiver(self) -> None:
        """Close the consuming side; blocked and later senders get ``BrokenResourceError``,
        a blocked receiver gets ``anyio.ClosedResourceError``, and the callbacks given to
        :meth:`on_receiver_closed` run (once)."""
        if self._receiver_closed:
            return
        self._receiver_closed = True
        self._buffer.clear()
        while self._send_waiters:
            self._send_waiters.popleft().event.set()
        waiter = self._receive_waiter
        if waiter is not None:
            self._receive_waiter = None
            waiter.set()
        hooks, self._on_receiver_closed = self._on_receiver_closed, []
        for hook in hooks:
            hook()

    def on_receiver_closed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the consuming side is closed (how a producer learns that
        nobody will read what it makes: a step that stopped reading its input stops its
        upstream this way). Called at once if it is closed already."""
        if self._receiver_closed:
            callback()
        else:
            self._on_receiver_closed.append(callback)

    @property
    def receiver_closed(self) -> bool:
        """Whether the consuming side was closed."""
        return self._receiver_closed

    @property
    def exhausted(self) -> bool:
        """Whether every sender closed and nothing is left to receive."""
        return self._open_senders == 0 and not self._buffer and not self._send_waiters

    def statistics(self) -> EdgeStatistics:
        """Return a frozen snapshot of the edge's state."""
        return EdgeStatistics(
            name=self.name,
            capacity=self._capacity,
            buffered=len(self._buffer),
            peak=self._peak,
            sent=self._sent,
            waiting_senders=len(self._send_waiters),
            waiting_receivers=0 if self._receive_waiter is None else 1,
            open_senders=self._open_senders,
            receiver_closed=self._receiver_closed,
        )

    def __repr__(self) -> str:
        return f"<Edge {self.name!r} {len(self._buffer)}/{self._capacity}>"


class ConstantInbox(Generic[T]):
    """An inbox that already holds its whole input: one value, then the end.

    A run's root and the branches of a parallel step fed by one get this instead of an
    edge, which is also how a step knows its input at start.
    """

    __slots__ = ("_done", "accumulation", "name", "value")

    def __init__(self, value: T, *, name: str = "input") -> None:
        self.value = value
        self._done = False
        self.name = name
        self.accumulation: Accumulation = "add"

    def fresh(self) -> ConstantInbox[T]:
        """Another inbox with the same value, for another consumer."""
        return ConstantInbox(self.value, name=self.name)

    async def receive(self) -> T:
        await checkpoint()
        if self._done:
            raise anyio.EndOfStream
        self._done = True
        return self.value

    def close_receiver(self) -> None:
        self._done = True

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
