"""The edge as a channel, and every receive as a cancel point (issue 12, defect 11).

The channel tests follow what trio tests of its own memory channels (close while blocked,
many senders, cancellation at each wait, FIFO service, rendezvous, statistics). They run on
both backends; nothing sleeps: tasks are ordered with ``wait_all_tasks_blocked``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from engine import Edge, EdgeStatistics, RunnableGenerator
from engine.testing import assert_run_cleaned_up, observe_wait_points

HANG_GUARD = 10  # seconds of real time; only bounds a regression


async def _numbers(_: AsyncIterator[Any]) -> AsyncIterator[int]:
    for i in range(100):
        yield i


class Canceller:
    """Another task that cancels a scope when asked, while the asking task is shielded.

    The asking task is then ready to run, not waiting, when its scope is cancelled: the
    cancellation is pending, and nothing delivers it until the task's next checkpoint.
    """

    def __init__(self) -> None:
        self._scope: anyio.CancelScope | None = None
        self._asked = anyio.Event()
        self._done = anyio.Event()

    async def serve(self) -> None:
        await self._asked.wait()
        assert self._scope is not None
        self._scope.cancel()
        self._done.set()

    async def cancel(self, scope: anyio.CancelScope) -> None:
        self._scope = scope
        with anyio.CancelScope(shield=True):
            self._asked.set()
            await self._done.wait()


async def _cancel(scope: anyio.CancelScope, who: str, canceller: Canceller) -> None:
    if who == "another task":
        await canceller.cancel(scope)
    else:
        scope.cancel()


# -- defect 11: every receive is a cancel point ---------------------------------------------


@pytest.mark.parametrize("who", ["another task", "itself"])
@pytest.mark.parametrize("form", ["bare", "with", "next_batch"])
async def test_a_cancelled_consumer_gets_no_more_buffered_chunks(form: str, who: str) -> None:
    """A consumer whose scope is cancelled (buffer full) gets Cancelled at its very next receive."""
    after_cancel: list[Any] = []
    canceller = Canceller()
    async with anyio.create_task_group() as helpers:
        helpers.start_soon(canceller.serve)
        with anyio.fail_after(HANG_GUARD), anyio.CancelScope() as scope:
            stream = RunnableGenerator(_numbers).astream(None, {"capacity": 16})
            async with contextlib.AsyncExitStack() as stack:
                if form == "with":
                    await stack.enter_async_context(stream)
                first = await stream.__anext__()
                await anyio.wait_all_tasks_blocked()
                output = stream.statistics()[0]
                assert output.buffered >= 15 and output.waiting_senders == 1  # full: the source waits
                await _cancel(scope, who, canceller)
                if form == "next_batch":
                    after_cancel.extend(await stream.next_batch())
                async for chunk in stream:
                    after_cancel.append(chunk)
        assert first == 0
        assert scope.cancelled_caught
        assert after_cancel == []
        helpers.cancel_scope.cancel()
    await stream.aclose()
    await assert_run_cleaned_up()


@pytest.mark.parametrize("who", ["another task", "itself"])
async def test_a_cancelled_generator_step_reads_no_more_of_its_input(who: str) -> None:
    """A generator step whose run is cancelled (inbox full) gets Cancelled at its next read."""
    seen_after_cancel: list[int] = []
    canceller = Canceller()
    scope = anyio.CancelScope()

    async def step(numbers: AsyncIterator[int]) -> AsyncIterator[int]:
        cancelled = False
        async for number in numbers:
            if cancelled:
                seen_after_cancel.append(number)
            elif number == 1:
                await anyio.wait_all_tasks_blocked()  # the source fills this step's inbox
                await _cancel(scope, who, canceller)
                cancelled = True
            yield number

    chain = RunnableGenerator(_numbers) | RunnableGenerator(step)
    async with anyio.create_task_group() as helpers:
        helpers.start_soon(canceller.serve)
        with anyio.fail_after(HANG_GUARD), scope:
            async with chain.astream(None, {"capacity": 16}) as chunks:
                async for _ in chunks:
                    pass
        assert scope.cancelled_caught
        assert seen_after_cancel == []
        helpers.cancel_scope.cancel()
    await assert_run_cleaned_up()


@pytest.mark.parametrize("who", ["another task", "itself"])
async def test_a_cancelled_generator_step_does_not_read_past_its_constant_input(who: str) -> None:
    """A root generator step cancelled after its one input value is cancelled at its next read."""
    read_to_the_end: list[bool] = []
    canceller = Canceller()
    scope = anyio.CancelScope()

    async def step(values: AsyncIterator[str]) -> AsyncIterator[str]:
        async for value in values:
            yield value
            await _cancel(scope, who, canceller)
        read_to_the_end.append(True)

    async with anyio.create_task_group() as helpers:
        helpers.start_soon(canceller.serve)
        with anyio.fail_after(HANG_GUARD), scope:
            async with RunnableGenerator(step).astream("x") as chunks:
                async for _ in chunks:
                    pass
        assert scope.cancelled_caught
        assert read_to_the_end == []
        helpers.cancel_scope.cancel()
    await assert_run_cleaned_up()


@pytest.mark.parametrize("how", ["receive", "__anext__", "poll", "receive_available"])
async def test_every_receive_of_a_ready_item_in_a_cancelled_scope_is_a_cancel_point(how: str) -> None:
    """With items ready, a receive in a cancelled scope raises (poll: gives nothing) and takes none."""
    edge: Edge[int] = Edge(4)
    for i in range(3):
        await edge.send(i)
    assert await edge.receive() == 0  # the receiving task is known to the edge
    with anyio.CancelScope() as scope:
        scope.cancel()
        if how == "poll":
            edge.poll()  # gives NOTHING: the item stays (checked below)
        elif how == "receive_available":
            assert edge.receive_available(10) == []
        elif how == "receive":
            await edge.receive()
        else:
            await edge.__anext__()
        await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert edge.statistics().buffered == 2
    assert [await edge.receive(), await edge.receive()] == [1, 2]


# -- the edge as a channel (what trio tests of its own memory channels) ---------------------


def test_a_bad_capacity_is_refused_with_a_message_naming_it() -> None:
    """A negative or non-int capacity raises an error that names the capacity."""
    with pytest.raises(ValueError, match="capacity must be >= 0, got -1"):
        Edge(-1)
    with pytest.raises(TypeError, match="capacity must be an int, got float"):
        Edge(1.5)  # type: ignore[arg-type]


async def test_after_close_sends_fail_and_receives_drain_then_end() -> None:
    """After every sender closed, send raises ClosedResourceError; receive drains, then EndOfStream, again and again."""
    edge: Edge[int] = Edge(4)
    await edge.send(1)
    await edge.send(2)
    edge.close()
    with pytest.raises(anyio.ClosedResourceError):
        await edge.send(3)
    with pytest.raises(anyio.ClosedResourceError):
        edge.add_sender()
    assert await edge.receive() == 1
    assert [item async for item in edge] == [2]
    for _ in range(2):
        with pytest.raises(anyio.EndOfStream):
            await edge.receive()
    assert edge.exhausted
    assert [item async for item in edge] == []


@pytest.mark.parametrize("close", ["close", "close_all"])
async def test_closing_while_a_sender_is_blocked_still_delivers_its_item_before_the_end(close: str) -> None:
    """Senders blocked when the producers' ends are closed still get their items through, then the end."""
    edge: Edge[str] = Edge(1, senders=3)
    await edge.send("first")
    async with anyio.create_task_group() as tg:
        tg.start_soon(edge.send, "blocked 1")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(edge.send, "blocked 2")
        await anyio.wait_all_tasks_blocked()
        assert edge.statistics().waiting_senders == 2
        if close == "close":
            for _ in range(3):
                edge.close()
        else:
            edge.close_all()
        assert edge.statistics().open_senders == 0
        assert not edge.exhausted
        got = [item async for item in edge]
    assert got == ["first", "blocked 1", "blocked 2"]
    assert edge.statistics().waiting_senders == 0


async def test_close_receiver_breaks_blocked_and_later_senders() -> None:
    """close_receiver wakes every blocked sender with BrokenResourceError; later sends and receives fail too."""
    edge: Edge[int] = Edge(1)
    await edge.send(0)
    broken: list[int] = []

    async def send(item: int) -> None:
        try:
            await edge.send(item)
        except anyio.BrokenResourceError:
            broken.append(item)

    async with anyio.create_task_group() as tg:
        for item in (1, 2, 3):
            tg.start_soon(send, item)
        await anyio.wait_all_tasks_blocked()
        assert edge.statistics().waiting_senders == 3
        edge.close_receiver()
    assert sorted(broken) == [1, 2, 3]
    stats = edge.statistics()
    assert (stats.waiting_senders, stats.buffered, stats.receiver_closed) == (0, 0, True)
    with pytest.raises(anyio.BrokenResourceError):
        await edge.send(4)
    with pytest.raises(anyio.ClosedResourceError):
        await edge.receive()


@pytest.mark.parametrize("capacity", [0, 1, 3])
async def test_many_senders_fan_in_and_the_end_comes_after_the_last_close(capacity: int) -> None:
    """Items of every sender arrive in each sender's order; the consumer sees the end only once all closed."""
    senders = 4
    edge: Edge[tuple[int, int]] = Edge(capacity)
    for _ in range(senders - 1):
        edge.add_sender()
    last_may_close = anyio.Event()
    got: list[tuple[int, int]] = []

    async def produce(sender: int) -> None:
        for index in range(5):
            await edge.send((sender, index))
        if sender == senders - 1:
            await last_may_close.wait()
        edge.close()

    async def consume() -> None:
        async for item in edge:
            got.append(item)

    async with anyio.create_task_group() as tg:
        for sender in range(senders):
            tg.start_soon(produce, sender)
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        stats = edge.statistics()
        assert (stats.open_senders, stats.waiting_receivers) == (1, 1)  # still waiting for the last
        assert len(got) == senders * 5
        last_may_close.set()
    assert sorted(got) == [(sender, index) for sender in range(senders) for index in range(5)]
    for sender in range(senders):
        assert [index for who, index in got if who == sender] == list(range(5))


@pytest.mark.parametrize("capacity", [0, 1, 4])
async def test_a_blocked_sender_cancelled_leaves_no_item_and_no_waiter_behind(capacity: int) -> None:
    """A sender cancelled while blocked leaves neither its item nor itself in the edge."""
    edge: Edge[str] = Edge(capacity)
    kept = [f"kept {i}" for i in range(capacity)]
    for item in kept:
        await edge.send(item)
    scope = anyio.CancelScope()

    async def send_then_be_cancelled() -> None:
        with scope:
            await edge.send("cancelled")

    async with anyio.create_task_group() as tg:
        tg.start_soon(send_then_be_cancelled)
        await anyio.wait_all_tasks_blocked()
        assert edge.statistics().waiting_senders == 1
        scope.cancel()
    assert scope.cancelled_caught
    stats = edge.statistics()
    assert (stats.waiting_senders, stats.buffered, stats.sent) == (0, capacity, capacity)
    edge.close()
    assert [item async for item in edge] == kept


async def test_a_blocked_receiver_cancelled_leaves_no_waiter_and_takes_nothing() -> None:
    """A receiver cancelled while waiting leaves the edge free for the next receiver and takes no item."""
    edge: Edge[int] = Edge(1)
    scope = anyio.CancelScope()

    async def receive_then_be_cancelled() -> None:
        with scope:
            await edge.receive()

    async with anyio.create_task_group() as tg:
        tg.start_soon(receive_then_be_cancelled)
        await anyio.wait_all_tasks_blocked()
        assert edge.statistics().waiting_receivers == 1
        scope.cancel()
    assert scope.cancelled_caught
    assert edge.statistics().waiting_receivers == 0
    await edge.send(1)
    assert await edge.receive() == 1


async def test_a_sender_let_in_and_cancelled_in_the_same_instant_delivers_its_item_once() -> None:
    """A blocked sender admitted by the consumer and cancelled before it runs again: its item arrives exactly once."""
    edge: Edge[str] = Edge(2)
    await edge.send("a")
    await edge.send("b")
    scope = anyio.CancelScope()

    async def send() -> None:
        with scope:
            await edge.send("c")

    async with anyio.create_task_group() as tg:
        tg.start_soon(send)
        await anyio.wait_all_tasks_blocked()
        assert await edge.receive() == "a"  # half empty: the sender is let in
        scope.cancel()  # before the sender ran again
    assert edge.statistics().waiting_senders == 0
    edge.close()
    assert [item async for item in edge] == ["b", "c"]


async def test_blocked_senders_are_served_first_in_first_out() -> None:
    """Senders blocked on a full edge get in in the order they blocked, and nobody jumps the queue."""
    edge: Edge[str] = Edge(2)
    await edge.send("a")
    await edge.send("b")
    async with anyio.create_task_group() as tg:
        for item in "cdef":
            tg.start_soon(edge.send, item)
            await anyio.wait_all_tasks_blocked()
        assert edge.statistics().waiting_senders == 4
        assert await edge.receive() == "a"  # one free slot: still more than half full
        assert not edge.put_nowait("late")  # the free slot is not for a newcomer
        got = ["a", *[await edge.receive() for _ in range(5)]]
    assert got == ["a", "b", "c", "d", "e", "f"]


async def test_a_rendezvous_edge_hands_each_item_over_directly() -> None:
    """With capacity 0, a send completes only once a receiver took the item, and nothing is buffered."""
    edge: Edge[int] = Edge(0)
    sent: list[int] = []
    got: list[int] = []

    async def send(item: int) -> None:
        await edge.send(item)
        sent.append(item)

    async def receive() -> None:
        got.append(await edge.receive())

    async with anyio.create_task_group() as tg:
        tg.start_soon(send, 1)
        await anyio.wait_all_tasks_blocked()
        assert sent == [] and edge.statistics().waiting_senders == 1
        assert await edge.receive() == 1
        await anyio.wait_all_tasks_blocked()
        assert sent == [1]
        tg.start_soon(receive)  # the other way round: the receiver waits first
        await anyio.wait_all_tasks_blocked()
        assert edge.statistics().waiting_receivers == 1
        await edge.send(2)
    assert got == [2]
    stats = edge.statistics()
    assert (stats.peak, stats.sent, stats.buffered) == (0, 2, 0)


async def test_a_second_receiver_is_refused_with_busy_resource_error() -> None:
    """While one task waits to receive, another's receive raises BusyResourceError; the first gets the item."""
    edge: Edge[int] = Edge(1)
    got: list[int] = []

    async def receive() -> None:
        got.append(await edge.receive())

    async with anyio.create_task_group() as tg:
        tg.start_soon(receive)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.BusyResourceError):
            await edge.receive()
        await edge.send(7)
    assert got == [7]


async def _items(count: int) -> AsyncIterator[int]:
    for item in range(count):
        yield item


def _without_name(stats: EdgeStatistics) -> tuple[int, ...]:
    return (stats.buffered, stats.peak, stats.sent, stats.waiting_senders, stats.waiting_receivers)


@pytest.mark.parametrize("takes", [(1,), (5, 0, 3), (40,)])
@pytest.mark.parametrize("capacity", [0, 1, 4, 16])
async def test_send_and_send_from_leave_equal_statistics(capacity: int, takes: tuple[int, ...]) -> None:
    """For the same items and consumer, send and send_from leave equal statistics and give way as often."""

    async def run(produce: Callable[[Edge[int]], Any]) -> tuple[list[Any], dict[str, int]]:
        edge: Edge[int] = Edge(capacity)
        snapshots: list[Any] = []
        waits: dict[str, int] = {}

        def count(kind: str) -> None:
            waits[kind] = waits.get(kind, 0) + 1

        async def producer() -> None:
            await produce(edge)
            edge.close()

        with observe_wait_points(count):
            async with anyio.create_task_group() as tg:
                tg.start_soon(producer)
                round_ = 0
                while not edge.exhausted:
                    await anyio.wait_all_tasks_blocked()
                    snapshots.append(_without_name(edge.statistics()))
                    for _ in range(takes[round_ % len(takes)]):
                        try:
                            snapshots.append(await edge.receive())
                        except anyio.EndOfStream:
                            break
                    round_ += 1
        snapshots.append(_without_name(edge.statistics()))
        return snapshots, waits

    async def one_by_one(edge: Edge[int]) -> None:
        for item in range(150):
            await edge.send(item)

    async def all_at_once(edge: Edge[int]) -> None:
        await edge.send_from(_items(150))

    with anyio.fail_after(HANG_GUARD):
        assert await run(all_at_once) == await run(one_by_one)


# -- the engine's wait points, as tests see them ----------------------------------------------


class StopHere(Exception):
    """Raised by a wait-point callback, to show where it runs."""


async def test_observe_wait_points_sees_the_edges_checkpoints_and_waits() -> None:
    """Blocking on an edge is an engine "wait", giving way every few dozen items a "checkpoint"."""
    edge: Edge[int] = Edge(2)
    kinds: list[str] = []
    with observe_wait_points(kinds.append):
        async with anyio.create_task_group() as tg:
            tg.start_soon(edge.receive)
            await anyio.wait_all_tasks_blocked()
            assert kinds == ["wait"]  # the receiver blocked on the empty edge
            await edge.send(1)  # the stream's first item is handed over at once
            assert kinds == ["wait", "checkpoint"]
    kinds.clear()
    await edge.send(2)
    assert kinds == []  # outside the block nothing is seen
    roomy: Edge[int] = Edge(200)
    with observe_wait_points(kinds.append):
        await roomy.send_from(_items(130))
        assert kinds == ["checkpoint"] * 2  # a task gives way once per 64 edge operations
        assert [await roomy.receive() for _ in range(130)] == list(range(130))
    assert kinds == ["checkpoint"] * 4


async def test_a_wait_point_callback_acts_right_at_that_wait() -> None:
    """What the callback raises comes out of the engine wait it was called at; nothing is left waiting."""
    edge: Edge[int] = Edge(1)
    outer: list[str] = []

    def stop(kind: str) -> None:
        raise StopHere(kind)

    with observe_wait_points(outer.append), observe_wait_points(stop), pytest.raises(StopHere, match="wait"):
        await edge.receive()
    assert outer == []  # the inner callback raised before the outer one ran
    assert edge.statistics().waiting_receivers == 0
    await edge.send(1)
    assert await edge.receive() == 1
