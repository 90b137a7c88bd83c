"""Hosting a run: who owns its task group, and how its results reach the consumer.

A run's actors live in one task group opened by a *host* coroutine. The host catches
whatever the run raises and hands it to the consumer after the last chunk, so a failure
never cancels the consumer's own code mid-way and the consumer always sees every chunk
and event published before the failure, then the failure itself.

Two owners for the host, one host:

* ``async with chain.astream(x) as chunks`` (structured): the host is a child of a task
  group opened in the consumer's task. Leaving the block cancels it and returns only
  after every actor finished.
* bare ``async for chunk in chain.astream(x)``: the host is started outside the
  consumer's stack (a trio system task, or a task on the asyncio loop), so no cancel
  scope is ever entered in one task and left in another (PEP 789). The consumer's
  iterator only receives. Closing it, or losing the last reference to it (which in
  CPython happens when nothing refers to the iterator any more), cancels the host, whose
  task group then unwinds in its own task.

A cancel may come from any thread (the cyclic garbage collector runs ``__del__`` in
whichever thread it happens to run in): it is handed to the run's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, TypeVar

import anyio
import anyio.abc
import sniffio

from ._bus import EventFilterArgs
from ._edge import NOTHING, EdgeStatistics, Nothing
from ._errors import collapse_errors, is_cancellation
from ._signal import guard_against_keyboard_interrupt, keyboard_interrupt_safe

if TYPE_CHECKING:
    from ._plan import RunPlan
    from ._replay import ReplayLog

T = TypeVar("T")

__all__ = ("RunSource", "RunStream", "StreamState")

_LOG = logging.getLogger("rillet")

# Tasks started on an asyncio loop must be referenced until they finish, or the loop
# may collect them mid-run.
_ASYNCIO_HOSTS: set[asyncio.Task[None]] = set()


class RunSource(Protocol[T]):
    """What a consumer receives from: a run's output edge or an event subscription."""

    async def receive(self) -> T: ...

    async def __anext__(self) -> T: ...

    def receive_available(self, limit: int) -> list[T]: ...

    def close_receiver(self) -> None: ...


class StreamState(enum.Enum):
    """Where a :class:`RunStream` is in its life."""

    #: Made, not started: nothing runs and nothing is held yet.
    NEW = "not started"
    #: Started by ``async with``: the block owns the run.
    STRUCTURED = "running in its async with block"
    #: Started by iterating it bare: the run is hosted outside the consumer's stack.
    DETACHED = "running (bare iteration)"
    #: Closed by ``aclose()``: iterating it raises ``anyio.ClosedResourceError``.
    CLOSED = "closed"


class _Run(Generic[T]):
    """The state of one hosted run, shared by its host and its consumer's iterator."""

    def __init__(self, plan: RunPlan[T]) -> None:
        self.plan = plan
        self.source: RunSource[T] | None = None
        self.cancel_scope: anyio.CancelScope | None = None
        self.cancel_requested = False
        self.done: anyio.Event | None = None
        self.error: BaseException | None = None
        self.error_delivered = False
        self.orphaned = False
        # The run's loop: a cancel from another thread is handed to it.
        self.loop_thread: int | None = None
        self.call_soon_threadsafe: Callable[[Callable[[], None]], object] | None = None

    def start(self) -> RunSource[T]:
        """Make what the run needs on its loop (called once, in the consumer's task)."""
        self.done = anyio.Event()
        self.cancel_scope = anyio.CancelScope()
        if self.cancel_requested:
            self.cancel_scope.cancel()
        self.loop_thread = threading.get_ident()
        if sniffio.current_async_library() == "trio":
            import trio

            self.call_soon_threadsafe = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            self.call_soon_threadsafe = asyncio.get_running_loop().call_soon_threadsafe
        source = self.source = self.plan.open_source()
        return source

    @keyboard_interrupt_safe
    async def host(self) -> None:
        """Run the task group; keep its failure for the consumer instead of raising it."""
        assert self.done is not None and self.cancel_scope is not None
        try:
            with self.cancel_scope as scope:
                try:
                    async with anyio.create_task_group() as task_group:
                        await self.plan.launch(task_group)
                except BaseException as exc:  # handed to the consumer below
                    collapsed = collapse_errors(exc)
                    if is_cancellation(collapsed) or (
                        isinstance(collapsed, BaseExceptionGroup)
                        and all(is_cancellation(e) for e in collapsed.exceptions)
                    ):
                        raise
                    self.error = collapsed
                finally:
                    _settle_uncancellations_here(scope)
        finally:
            self.plan.finish()
            self.done.set()

    async def host_detached(self) -> None:
        """The host as a task nobody awaits: nothing may escape it."""
        try:
            await self.host()
        except BaseException as exc:
            if not is_cancellation(exc) and self.error is None:
                self.error = exc
        if self.orphaned:
            self.report_orphaned_error()

    def report_orphaned_error(self) -> None:
        """Log an error nobody is left to receive (its consumer went away without it)."""
        error = self.error
        if error is not None and not self.error_delivered:
            self.error_delivered = True
            _LOG.error(
                "a rillet run failed and its stream was dropped before the error was read: %r",
                error,
                exc_info=(type(error), error, error.__traceback__),
            )

    @property
    def finished(self) -> bool:
        return self.done is not None and self.done.is_set()

    def cancel(self) -> None:
        """Ask the host to stop: safe from ``__del__``, from any task and from any thread."""
        self.cancel_requested = True
        schedule = self.call_soon_threadsafe
        if schedule is not None and threading.get_ident() != self.loop_thread:
            # A cancel scope may only be touched on its own loop's thread; a closed loop
            # means the run ended with it.
            with contextlib.suppress(RuntimeError):
                schedule(self._cancel_here)
            return
        self._cancel_here()

    def _cancel_here(self) -> None:
        scope = self.cancel_scope
        if scope is not None and not self.finished:
            scope.cancel()

    async def next_batch(self, limit: int) -> list[T]:
        """At least one item (or ``[]`` at the end), plus whatever else is ready."""
        source = self.source
        assert source is not None
        items = source.receive_available(limit)
        if items:
            return items
        try:
            first = await source.receive()
        except anyio.EndOfStream:
            pass
        else:
            return [first, *source.receive_available(limit - 1)]
        await self.wait_done()
        return []

    async def wait_done(self) -> None:
        """Wait for the host to finish, then raise the run's error (outside any except
        block, so that it keeps its own ``__context__``)."""
        assert self.done is not None
        await self.done.wait()
        self.raise_error()

    def raise_error(self) -> None:
        error = self.error
        if error is not None and not self.error_delivered:
            self.error_delivered = True
            raise error


class RunStream(Generic[T]):
    """The chunks (or events) of one run, as returned by ``astream``/``astream_events``.

    Use it either way:

    * ``async with chain.astream(x) as chunks: async for c in chunks: ...`` — the block
      owns every task of the run; leaving it early cancels them and returns once all
      have finished. Do not hold it open across a ``yield`` of a generator: its task
      group belongs to the task that entered it, and a generator may be closed from
      another task (PEP 789); there, use ``async with aclosing(chain.astream(x))``.
    * ``async for c in chain.astream(x): ...`` — as in the guide. The run is cancelled
      when the stream is closed (``aclose()``, ``contextlib.aclosing``), when the
      consumer is cancelled while it waits for a chunk, or when the last reference to
      the stream goes (in CPython, right after the loop is left if nothing else refers
      to it; later under another interpreter or while a reference is kept).

    An exception raised by any step reaches the consumer after the chunks produced before
    it, as itself (or as an ``ExceptionGroup`` when several steps failed at once).

    A stream is bound to its run and its event loop: it cannot be pickled or copied.
    """

    def __init__(self, plan: RunPlan[T]) -> None:
        self._run: _Run[T] = _Run(plan)
        self._plan = plan
        self._task_group: anyio.abc.TaskGroup | None = None
        self._state = StreamState.NEW
        # The source's non-blocking take, once the run started (the per-item fast path).
        self._poll: Callable[[], T | Nothing] | None = None

    @property
    def state(self) -> StreamState:
        """Where the stream is in its life."""
        return self._state

    @property
    def run_id(self) -> str:
        """The run id of the run's root step (its events' ``run_id``), known before it starts."""
        return self._plan.run_id

    def replay_log(
        self,
        capacity: int,
        *,
        root_only: bool = False,
        include_names: Iterable[str] | None = None,
        include_types: Iterable[str] | None = None,
        include_tags: Iterable[str] | None = None,
        exclude_names: Iterable[str] | None = None,
        exclude_types: Iterable[str] | None = None,
        exclude_tags: Iterable[str] | None = None,
    ) -> ReplayLog:
        """Keep the newest ``capacity`` events of this run for readers that come and go.

        The log records the run's events (stamped with ``seq`` and ``time``) from its
        start; ``log.read(after=seq)`` reads them from any point, waiting for more, and
        ends when the run has ended. A full log lets go of its oldest event (the run
        never waits for it); a reader that had not read it gets an ``on_events_lost``
        marker naming the gap. ``root_only`` records the run's own events only (its
        start, its output chunks as stream events, its end); the filters choose steps as
        ``astream_events``' do. Call it before the run starts; the run publishes to its
        config's bus, or to a private one.

        Raises:
            RuntimeError: If the run already started.
            TypeError, ValueError: For a capacity that is not an int >= 1, or a bad filter.
        """
        if self._state is not StreamState.NEW:
            raise RuntimeError(
                "replay_log() must be called before the run starts (it records it from its start)"
            )
        filters = EventFilterArgs(
            include_names, include_types, include_tags, exclude_names, exclude_types, exclude_tags
        )
        return self._plan.replay_log(capacity, filters, root_only=root_only)

    def _ensure_started(self, state: StreamState) -> _Run[T]:
        """Start the run in ``state`` (structured or detached), once.

        Raises:
            anyio.ClosedResourceError: The stream was closed.
            RuntimeError: ``async with`` on a stream that already started.
        """
        run = self._run
        if self._state is StreamState.NEW:
            self._state = state
            guard_against_keyboard_interrupt()
            source = run.start()
            self._poll = getattr(source, "poll", None)
            if state is StreamState.DETACHED:
                _host_detached(run)
            return run
        if self._state is StreamState.CLOSED:
            _raise_closed()
        if state is StreamState.STRUCTURED:
            raise RuntimeError("this stream was already started; call astream() again")
        return run

    # -- structured ---------------------------------------------------------------------

    async def __aenter__(self) -> RunStream[T]:
        run = self._ensure_started(StreamState.STRUCTURED)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(run.host, name="rillet run host")
        return self

    @keyboard_interrupt_safe
    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        run = self._run
        run.cancel()
        error: BaseException | None = None
        try:
            # The body's exception is not passed on: the task group must not cancel its
            # own scope (the host was cancelled above, through its own scope). On asyncio,
            # a task group that cancels itself while its parent scope is cancelled too
            # (the caller was cancelled) hands the caller's task one un-cancellation too
            # many, and the caller's ``task.cancelling()`` drops to 0.
            await task_group.__aexit__(None, None, None)
        except BaseException as raised:
            error = collapse_errors(raised)
            if error is raised:
                raise
        if error is not None:
            if run.error is not None and not run.error_delivered and run.error is not error:
                error.add_note(f"the run failed too: {run.error!r}")
            # Raised outside the except block so that the error keeps its own chain.
            raise error
        if exc is None:
            # The body finished without raising: a failure it did not read is still owed.
            run.raise_error()
            # Leaving the block is a cancel point, as any async operation is (the host's
            # scope is shielded, so the task group's exit may not have been one).
            await anyio.lowlevel.checkpoint_if_cancelled()
        return None

    # -- iteration ----------------------------------------------------------------------

    def __aiter__(self) -> RunStream[T]:
        return self

    async def __anext__(self) -> T:
        poll = self._poll
        if poll is not None:
            item = poll()
            if item is not NOTHING:
                return item
        run = self._ensure_started(StreamState.DETACHED)
        source = run.source
        assert source is not None
        try:
            return await source.__anext__()
        except StopAsyncIteration:
            pass
        except BaseException:
            # The consumer was cancelled or the run failed: either way the run stops now.
            run.cancel()
            raise
        if self._state is StreamState.CLOSED:
            _raise_closed()
        await run.wait_done()
        raise StopAsyncIteration

    async def next_batch(self, limit: int = 256) -> list[T]:
        """The next chunks that are ready (at least one; ``[]`` at the end)."""
        run = self._ensure_started(StreamState.DETACHED)
        try:
            return await run.next_batch(limit)
        except BaseException:
            run.cancel()
            raise

    # -- stopping -----------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the run to stop, without waiting (safe from any task or thread).

        The consumer then reads what was already delivered and the end of the stream;
        use :meth:`aclose` to stop and wait.
        """
        self._run.cancel()

    @property
    def finished(self) -> bool:
        """Whether the run's tasks have all finished."""
        return self._run.finished

    async def wait_finished(self) -> None:
        """Wait until the run's tasks have all finished (without cancelling it)."""
        done = self._run.done
        if done is not None:
            await done.wait()
        else:
            await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Stop the run (if it is still going) and wait until its tasks have finished.

        A consumer still iterating the stream (in another task, or later) gets
        ``anyio.ClosedResourceError``.

        Raises:
            Exception: What a step raised (say, in its cleanup) that was not yet delivered.
        """
        state = self._state
        self._state = StreamState.CLOSED
        run = self._run
        if state is StreamState.NEW or run.source is None:
            for log in self._plan.logs:
                log.end()  # a run that never starts records nothing more
            await anyio.lowlevel.checkpoint()
            return
        run.source.close_receiver()
        run.cancel()
        assert run.done is not None
        with anyio.CancelScope(shield=True):
            await run.done.wait()
        if state is StreamState.DETACHED:
            run.raise_error()

    def __del__(self) -> None:
        if self._state in (StreamState.DETACHED, StreamState.CLOSED):
            run = self._run
            run.orphaned = True
            run.cancel()
            if run.finished:
                run.report_orphaned_error()

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a RunStream cannot be pickled or copied: it is bound to its running tasks and "
            "event loop; pickle the runnable and its input instead"
        )

    def statistics(self) -> list[EdgeStatistics]:
        """A snapshot of every edge of the run (its output edge first, unless the stream
        reads events: an event stream's output goes nowhere)."""
        plan = self._plan
        edges = plan.edges if plan.events is None else plan.edges[1:]
        return [edge.statistics() for edge in edges]

    async def collect(self) -> list[T]:
        """Every remaining item, as a list."""
        return [item async for item in self]

    def __repr__(self) -> str:
        return f"<RunStream {self._state.value}>"


def _settle_uncancellations_here(scope: anyio.CancelScope) -> None:
    """Un-cancel the host's task for the cancellations its own scope delivered to it,
    so that none are handed up to the consumer's task (asyncio only).

    anyio on asyncio counts the ``Task.cancel()`` calls a cancel scope makes on its own
    task and undoes them when the scope exits, but a scope that exits while its parent
    scope is cancelled too hands its count up to the parent, even when the parent
    belongs to another task: here the consumer's task group. The consumer's task was
    then un-cancelled once too often and a ``task.cancel()`` that landed inside
    ``ainvoke``/``async with astream`` was swallowed (``task.cancelling()`` 0, not 1).
    Settling the count in the host's own task, just before its scope exits, keeps the
    consumer's bookkeeping its own. The count is an anyio internal: if it is not there
    (trio, or another anyio), there is nothing to settle.
    """
    pending = getattr(scope, "_pending_uncancellations", None)
    if not pending:
        return
    task = asyncio.current_task()
    if task is None:
        return
    for _ in range(pending):
        task.uncancel()
    scope._pending_uncancellations = 0  # type: ignore[attr-defined]


def _raise_closed() -> NoReturn:
    raise anyio.ClosedResourceError("this stream was closed (aclose()); start a new run with astream()")


def _host_detached(run: _Run[Any]) -> None:
    """Start ``run``'s host outside the consumer's stack."""
    context = contextvars.copy_context()
    library = sniffio.current_async_library()
    if library == "trio":
        import trio

        trio.lowlevel.spawn_system_task(run.host_detached, name="rillet run host", context=context)
    elif library == "asyncio":
        task = asyncio.get_running_loop().create_task(
            run.host_detached(), name="rillet run host", context=context
        )
        _ASYNCIO_HOSTS.add(task)
        task.add_done_callback(_ASYNCIO_HOSTS.discard)
    else:  # pragma: no cover - anyio knows only these two
        raise RuntimeError(f"rillet cannot host a run on {library!r}")
