"""The actor runtime: streaming, backpressure, cancellation and errors, on both backends."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from engine import RunnableGenerator, RunnableLambda, RunnableParallel, RunnablePassthrough
from engine.testing import CountingSource, GatedSource, Probe


async def _upper(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    async for chunk in chunks:
        yield chunk.upper()


async def test_first_chunk_arrives_before_source_produces_third() -> None:
    """The consumer receives chunk 0 while the source is still held before chunk 2."""
    source: GatedSource[str] = GatedSource(["a", "b", "c", "d"])
    chain = source | _upper | Probe()
    async with chain.astream(None) as chunks:
        source.release(1)
        first = await chunks.__anext__()
        assert first == "A"
        assert source.produced == 1
        source.release_all()
        rest = [c async for c in chunks]
    assert rest == ["B", "C", "D"]


async def test_stalled_consumer_bounds_how_far_the_source_runs_ahead() -> None:
    """With a consumer that stops reading, a 10,000-item source stays within the edges' capacity."""
    source = CountingSource(10_000)
    chain = source | Probe("one") | Probe("two")
    async with chain.astream(None, {"capacity": 4}) as chunks:
        assert await chunks.__anext__() == 0
        await anyio.wait_all_tasks_blocked()
        stats = chunks.statistics()
        capacity_sum = sum(s.capacity for s in stats)
        actors = 3
        assert source.produced <= capacity_sum + actors + 1
        assert all(s.peak <= s.capacity for s in stats)
        assert stats[0].waiting_senders == 1  # the last actor is blocked on the full output
        assert stats[0].buffered >= stats[0].capacity // 2
        assert source.produced < 10_000


async def test_a_busy_run_gives_way_to_other_tasks() -> None:
    """With room everywhere (nothing ever has to wait), the run's tasks and its consumer
    still let other tasks in at least every 64 edge operations (a few dozen chunks)."""
    source = CountingSource(20_000)
    chain = source | Probe("one") | Probe("two")
    received = 0
    gaps: list[int] = []
    async with anyio.create_task_group() as tg:

        async def ticker() -> None:
            last = 0
            while True:
                await anyio.lowlevel.checkpoint()
                gaps.append(received - last)
                last = received

        tg.start_soon(ticker)
        async with chain.astream(None, {"capacity": 100_000}) as chunks:
            async for _ in chunks:
                received += 1
        tg.cancel_scope.cancel()
    assert received == 20_000
    assert len(gaps) > 20_000 // 128
    # Between two turns of the ticker the consumer ran at most twice (once before it in
    # one round of the scheduler, once after it in the next), 64 chunks each time.
    assert max(gaps) <= 128


@pytest.mark.trio
async def test_ctrl_c_reaches_the_consumer_not_the_runs_own_tasks() -> None:
    """On trio the run's tasks are KeyboardInterrupt-protected (Ctrl-C is delivered to the
    consumer's task, which then cancels the run the ordinary way); the consumer is not."""
    import trio

    seen: list[bool] = []

    async def probe(value: int) -> int:
        seen.append(trio.lowlevel.currently_ki_protected())
        return value

    async def gen_probe(chunks: AsyncIterator[int]) -> AsyncIterator[int]:
        async for chunk in chunks:
            seen.append(trio.lowlevel.currently_ki_protected())
            yield chunk

    chain = RunnableLambda(probe) | gen_probe
    async with chain.astream(1) as chunks:
        assert [c async for c in chunks] == [1]
    assert [c async for c in chain.astream(2)] == [2]
    assert seen == [True, True, True, True]
    assert not trio.lowlevel.currently_ki_protected()


async def test_leaving_the_block_early_finishes_every_actor() -> None:
    """Leaving ``async with astream`` early returns only after every actor's cleanup ran."""
    source: GatedSource[int] = GatedSource(range(100))
    probes = [Probe("p1"), Probe("p2")]
    chain = source | probes[0] | probes[1]
    source.release(5)
    async with chain.astream(None) as chunks:
        async for chunk in chunks:
            if chunk == 2:
                break
    assert source.finished == 1
    assert all(p.finished == 1 for p in probes)
    assert source.cancelled == 1


@pytest.mark.parametrize("position", [0, 1, 2, 3, 4, 5])
async def test_bare_loop_break_at_every_position_cleans_up(
    position: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Breaking a bare ``async for`` at any position cancels the run with nothing logged."""
    source: GatedSource[int] = GatedSource(range(5))
    probe: Probe[int] = Probe()
    chain = source | probe
    source.release_all()
    seen = []
    async for chunk in chain.astream(None):
        if len(seen) == position:
            break
        seen.append(chunk)
    assert seen == list(range(min(position, 5)))
    await anyio.wait_all_tasks_blocked()
    assert source.finished == 1
    assert probe.finished == 1
    assert source.running == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_bare_loop_closed_explicitly_waits_for_actors() -> None:
    """``aclose()`` on a bare stream returns after every actor finished."""
    source: GatedSource[int] = GatedSource(range(10))
    source.release(3)
    stream = (source | Probe()).astream(None)
    assert await stream.__anext__() == 0
    await stream.aclose()
    assert source.finished == 1


async def test_outer_cancel_scope_cancels_the_run() -> None:
    """Cancelling an enclosing scope cancels every actor before the scope exits."""
    source: GatedSource[int] = GatedSource(range(10))
    probe: Probe[int] = Probe()
    source.release(3)
    with anyio.CancelScope() as scope:
        async with (source | probe).astream(None) as chunks:
            async for chunk in chunks:
                if chunk == 2:
                    scope.cancel()
    assert scope.cancelled_caught
    assert source.finished == 1 and source.cancelled == 1
    assert probe.finished == 1


async def test_timeout_cancels_a_stuck_run() -> None:
    """A timeout around a run whose source is stuck raises TimeoutError after cleanup."""
    source: GatedSource[int] = GatedSource(range(10))
    probe: Probe[int] = Probe()
    source.release(2)
    got = []
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.05):
            async with (source | probe).astream(None) as chunks:
                async for chunk in chunks:
                    got.append(chunk)
    assert got == [0, 1]
    assert source.finished == 1 and probe.finished == 1


async def test_timeout_around_bare_loop_cancels_the_run() -> None:
    """A timeout around a bare loop stops the hosted run too."""
    source: GatedSource[int] = GatedSource(range(10))
    source.release(1)
    with anyio.move_on_after(0.05):
        async for _ in (source | Probe()).astream(None):
            pass
    await anyio.wait_all_tasks_blocked()
    assert source.finished == 1


class Boom(Exception):
    pass


async def test_failing_lambda_raises_the_original_exception() -> None:
    """A lambda's exception reaches the caller as itself, not wrapped in a group."""

    def explode(value: Any) -> Any:
        raise Boom(f"bad value {value}")

    chain = RunnablePassthrough() | explode
    with pytest.raises(Boom, match="bad value 3"):
        await chain.ainvoke(3)


async def test_failing_generator_keeps_earlier_chunks_then_raises() -> None:
    """Chunks produced before a generator fails are delivered, then its exception."""

    async def fail_at_third(chunks: AsyncIterator[Any]) -> AsyncIterator[int]:
        async for _ in chunks:
            yield 1
            yield 2
            raise Boom("third")

    got = []
    with pytest.raises(Boom, match="third"):
        async with RunnableGenerator(fail_at_third).astream(None) as chunks:
            async for chunk in chunks:
                got.append(chunk)
    assert got == [1, 2]


async def test_failing_branch_cancels_its_siblings() -> None:
    """One branch raising cancels the other branches and reaches the caller."""
    stuck: GatedSource[int] = GatedSource([1])

    async def fail(value: Any) -> Any:
        await anyio.wait_all_tasks_blocked()
        raise Boom("branch")

    chain = RunnableParallel(stuck=stuck, failing=fail)
    with pytest.raises(Boom):
        await chain.ainvoke("x")
    assert stuck.cancelled == 1


async def test_two_concurrent_failures_arrive_as_a_group() -> None:
    """Two branches failing at once give an ExceptionGroup holding both errors."""
    barrier = threading.Barrier(2, timeout=10)

    def fail_a(value: Any) -> Any:
        barrier.wait()
        raise Boom("a")

    def fail_b(value: Any) -> Any:
        barrier.wait()
        raise ValueError("b")

    with pytest.raises(ExceptionGroup) as info:
        await RunnableParallel(a=fail_a, b=fail_b).ainvoke(1)
    messages = sorted(str(e) for e in info.value.exceptions)
    assert messages == ["a", "b"]


async def test_function_on_final_input_breaks_streaming_and_generator_restores_it() -> None:
    """A plain function yields one final chunk; a generator over the input stream streams."""

    async def words(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for text in chunks:
            for word in text.split():
                yield word

    def join(text: str) -> str:
        return f"<{text}>"

    async def each(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for word in chunks:
            yield f"<{word}>"

    source = RunnableGenerator(words)
    assert [c async for c in (source | join).astream("a b c")] == ["<abc>"]
    assert [c async for c in (source | each).astream("a b c")] == ["<a>", "<b>", "<c>"]


async def test_parallel_step_in_front_of_a_streaming_tail() -> None:
    """A dict step feeds a prompt-like function, and the tail after it streams."""

    async def tokens(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for text in chunks:
            for char in text:
                yield char

    chain = (
        {"context": lambda q: f"ctx({q})", "question": RunnablePassthrough()}
        | RunnableLambda(lambda d: f"{d['context']}|{d['question']}")
        | tokens
    )
    assert [c async for c in chain.astream("q")] == list("ctx(q)|q")


async def test_parallel_step_streams_one_key_chunks_that_add_up() -> None:
    """A parallel step emits one-key chunks per branch output; invoke merges them."""

    async def two(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for text in chunks:
            yield text
            yield text

    chain = RunnableParallel(echo=two, same=RunnablePassthrough())
    chunks = [c async for c in chain.astream("x")]
    assert sorted(map(sorted, (c.keys() for c in chunks))) == [["echo"], ["echo"], ["same"]]
    assert await chain.ainvoke("x") == {"echo": "xx", "same": "x"}


async def test_passthrough_and_assign() -> None:
    """``assign`` keeps the input's keys and adds computed ones."""
    chain = RunnablePassthrough.assign(total=lambda d: d["a"] + d["b"], doubled=lambda d: d["a"] * 2)
    assert await chain.ainvoke({"a": 1, "b": 2}) == {"a": 1, "b": 2, "total": 3, "doubled": 2}
    with pytest.raises(TypeError, match="needs a dict input"):
        await chain.ainvoke(5)  # type: ignore[arg-type]


async def test_nested_chain_functions_call_other_runnables() -> None:
    """A ``@chain`` function may call other runnables, sync or async, nested in its run."""
    from engine import chain

    reverse = RunnableLambda(lambda word: word[::-1])

    @chain
    async def reverse_and_double(word: str) -> str:
        return await reverse.ainvoke(word) * 2

    @chain
    def shout(word: str) -> str:
        return reverse_and_double.invoke(word).upper()

    assert await reverse_and_double.ainvoke("ab") == "baba"
    assert await shout.ainvoke("ab") == "BABA"
    assert reverse_and_double.get_name() == "reverse_and_double"


async def test_batch_respects_max_concurrency() -> None:
    """``abatch(max_concurrency=2)`` never has three inputs running at once."""
    active = 0
    peak = 0

    async def work(value: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        active -= 1
        return value * 10

    results = await RunnableLambda(work).abatch(list(range(7)), max_concurrency=2)
    assert results == [v * 10 for v in range(7)]
    assert peak == 2


async def test_nested_batches_share_one_limiter_without_deadlock() -> None:
    """A batch inside a batch item shares the outer limit and still completes."""
    active = 0
    peak = 0

    async def leaf(value: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        active -= 1
        return value

    inner = RunnableLambda(leaf)

    async def outer(value: int) -> list[int]:
        return await inner.abatch([value, value + 1, value + 2])

    results = await RunnableLambda(outer).abatch([0, 10, 20], max_concurrency=2)
    assert results == [[0, 1, 2], [10, 11, 12], [20, 21, 22]]
    assert peak <= 2


async def test_batch_return_exceptions() -> None:
    """``return_exceptions=True`` puts each failure in its slot instead of raising."""

    def check(value: int) -> int:
        if value == 1:
            raise Boom("one")
        return value

    results = await RunnableLambda(check).abatch([0, 1, 2], return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], Boom)


def test_sync_api_from_plain_code() -> None:
    """``invoke``, ``stream`` and ``batch`` work from synchronous code."""
    chain = RunnableGenerator(_upper) | (lambda text: f"[{text}]")
    assert chain.invoke("ab") == "[AB]"
    assert list((RunnablePassthrough() | _upper).stream("xy")) == ["XY"]
    assert chain.batch(["a", "b"]) == ["[A]", "[B]"]


async def test_sync_api_from_inside_a_running_loop_thread() -> None:
    """A synchronous call made on an event loop's own thread blocks it but completes."""
    chain = RunnablePassthrough() | _upper
    assert chain.invoke("loop") == "LOOP"
    assert list(chain.stream("s")) == ["S"]


async def test_sync_api_from_a_worker_thread() -> None:
    """A synchronous call from a worker thread runs back on the caller's loop."""
    chain = RunnablePassthrough() | _upper
    result = await anyio.to_thread.run_sync(chain.invoke, "thread")
    assert result == "THREAD"


def test_early_exit_from_sync_stream_cancels_the_run() -> None:
    """Closing a synchronous stream early cancels the run's actors."""
    source: GatedSource[int] = GatedSource(range(100))
    source.release(10)
    stream = (source | Probe()).stream(None)
    assert next(stream) == 0
    stream.close()
    assert source.finished == 1


async def test_atransform_streams_an_input_stream() -> None:
    """atransform feeds an async input stream through the chain chunk by chunk."""

    async def inputs() -> AsyncIterator[str]:
        for text in ["a", "b", "c"]:
            yield text

    assert [c async for c in (RunnablePassthrough() | _upper).atransform(inputs())] == ["A", "B", "C"]
    assert list((RunnablePassthrough() | _upper).transform(iter(["x", "y"]))) == ["X", "Y"]


def test_sync_api_from_a_plain_thread_while_a_loop_runs_elsewhere() -> None:
    """A thread that is not the loop's calls invoke while another thread runs a loop."""
    results: list[str] = []
    chain = RunnablePassthrough() | _upper

    async def loop_main() -> None:
        thread = threading.Thread(target=lambda: results.append(chain.invoke("t")))
        thread.start()
        await anyio.to_thread.run_sync(thread.join)

    anyio.run(loop_main)
    assert results == ["T"]


async def test_probe_records_how_far_upstream_runs_ahead() -> None:
    """A probe behind a fast source sees at most its inbox's capacity buffered ahead."""
    from engine.testing import assert_run_cleaned_up

    probe: Probe[int] = Probe()
    chain = CountingSource(200) | probe
    assert await chain.ainvoke(None, {"capacity": 8}) == sum(range(200))  # int chunks add up
    assert len(probe.records) == 200
    assert 0 < probe.max_ahead <= 8
    assert all(r.left >= r.entered for r in probe.records)
    await assert_run_cleaned_up()


async def test_cleanup_guard_sees_a_clean_run_and_a_leftover() -> None:
    """cleanup_guard passes after a finished run and flags a run still hosted."""
    from engine.testing import RunLeftovers, cleanup_guard

    async with cleanup_guard():
        await (RunnablePassthrough() | _upper).ainvoke("x")
    source: GatedSource[int] = GatedSource(range(3))
    stream = (source | Probe()).astream(None)
    with pytest.raises(RunLeftovers, match="rillet"):
        async with cleanup_guard(settle=0.0):
            source.release(1)
            await stream.__anext__()
    await stream.aclose()


async def test_a_steps_error_keeps_its_own_cause() -> None:
    """The caller gets the step's exception with its __cause__ intact."""

    def fail(value: Any) -> Any:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise Boom("outer") from exc

    with pytest.raises(Boom) as info:
        async with (RunnablePassthrough() | fail).astream(1) as chunks:
            async for _ in chunks:
                pass
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(Boom) as info:
        await RunnableLambda(fail).abatch([1])
    assert isinstance(info.value.__cause__, KeyError)


async def test_with_config_max_concurrency_limits_batch() -> None:
    """``with_config(max_concurrency=1)`` makes abatch run one input at a time."""
    active = 0
    peak = 0

    async def work(value: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await anyio.lowlevel.checkpoint()
        active -= 1
        return value

    bound = RunnableLambda(work).with_config(max_concurrency=1)
    assert await bound.abatch([1, 2, 3]) == [1, 2, 3]
    assert peak == 1


async def test_a_slow_consumer_wakes_its_producer_once_per_half_buffer() -> None:
    """Blocked senders are admitted when the buffer is half empty, in FIFO order."""
    from engine import Edge

    edge: Edge[int] = Edge(8)
    sent: list[int] = []

    async def produce() -> None:
        for i in range(40):
            await edge.send(i)
            sent.append(i)
        edge.close()

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        await anyio.wait_all_tasks_blocked()
        assert len(sent) == 8 and edge.statistics().waiting_senders == 1
        got = [await edge.receive() for _ in range(3)]
        await anyio.wait_all_tasks_blocked()
        assert len(sent) == 8  # 5 still buffered: more than half, the producer stays parked
        got.append(await edge.receive())
        await anyio.wait_all_tasks_blocked()
        assert len(sent) == 12  # at half, the producer was let in and refilled the buffer
        got.extend([item async for item in edge])
    assert got == list(range(40))


def test_chunk_sum_adds_long_streams_blockwise() -> None:
    """ChunkSum gives the same sum as adding every chunk, through several block levels."""
    from engine._chunks import ChunkSum

    log = ChunkSum()
    tokens = [f"t{i} " for i in range(70_000)]
    for token in tokens:
        log.append(token)
    assert log.total() == "".join(tokens)
    snapshots = ChunkSum("last")
    for value in range(1000):
        snapshots.append([value])
    assert snapshots.total() == [999]
    assert ChunkSum().total() is None
