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
  CPython happens at the ``break``), cancels the host, whose task group then unwinds in
  its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.abc
import sniffio

from ._edge import NOTHING, Edge, EdgeStatistics, Nothing
from ._errors import collapse_errors, is_cancellation
from ._signal import guard_against_keyboard_interrupt, keyboard_interrupt_safe

T = TypeVar("T")

__all__ = ("RunSource", "RunStream")

_LOG = logging.getLogger("rillet")

# Tasks started on an asyncio loop must be referenced until they finish, or the loop
# may collect them mid-run.
_ASYNCIO_HOSTS: set[asyncio.Task[None]] = set()


class RunSource(Protocol[T]):
    """What a consumer receives from: a run's output edge or an event subscription."""

    async def receive(self) -> T: ...

    async def __anext__(self) -> T: ...

    def receive_available(self, limit: int) -> list[T]: ...


class _Run(Generic[T]):
    """The state of one hosted run, shared by its host and its consumer's iterator."""

    def __init__(
        self,
        launch: Callable[[anyio.abc.TaskGroup], Awaitable[None]],
        source: RunSource[T],
        finish_source: Callable[[], None],
    ) -> None:
        self.launch = launch
        self.source = source
        self.finish_source = finish_source
        self.cancel_scope: anyio.CancelScope | None = None
        self.cancel_requested = False
        self.done: anyio.Event | None = None
        self.error: BaseException | None = None
        self.error_delivered = False
        self.orphaned = False

    def prepare(self) -> None:
        self.done = anyio.Event()

    @keyboard_interrupt_safe
    async def host(self) -> None:
        """Run the task group; keep its failure for the consumer instead of raising it."""
        assert self.done is not None
        try:
            with anyio.CancelScope() as scope:
                self.cancel_scope = scope
                if self.cancel_requested:
                    scope.cancel()
                try:
                    async with anyio.create_task_group() as task_group:
                        await self.launch(task_group)
                except BaseException as exc:  # handed to the consumer below
                    collapsed = collapse_errors(exc)
                    if is_cancellation(collapsed) or (
                        isinstance(collapsed, BaseExceptionGroup)
                        and all(is_cancellation(e) for e in collapsed.exceptions)
                    ):
                        raise
                    self.error = collapsed
        finally:
            self.finish_source()
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
        """Log an error nobody is left to receive (its consumer broke off and went away)."""
        error = self.error
        if error is not None and not self.error_delivered:
            self.error_delivered = True
            _LOG.error(
                "a rillet run failed after its consumer had stopped reading: %r",
                error,
                exc_info=(type(error), error, error.__traceback__),
            )

    def cancel(self) -> None:
        """Ask the host to stop (safe from ``__del__`` and from any task of the loop)."""
        self.cancel_requested = True
        scope = self.cancel_scope
        if scope is not None and not (self.done is not None and self.done.is_set()):
            scope.cancel()

    async def next_batch(self, limit: int) -> list[T]:
        """At least one item (or ``[]`` at the end), plus whatever else is ready."""
        items = self.source.receive_available(limit)
        if items:
            return items
        try:
            first = await self.source.receive()
        except anyio.EndOfStream:
            pass
        else:
            return [first, *self.source.receive_available(limit - 1)]
        # At the end: the run's error, if any, raised outside the except block so that
        # it keeps its own __context__.
        assert self.done is not None
        await self.done.wait()
        self.raise_error()
        return []

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
      have finished.
    * ``async for c in chain.astream(x): ...`` — as in the guide. Breaking off the loop
      cancels the run at once.

    An exception raised by any step reaches the consumer after the chunks produced before
    it, as itself (or as an ``ExceptionGroup`` when several steps failed at once).
    """

    def __init__(
        self,
        launch: Callable[[anyio.abc.TaskGroup], Awaitable[None]],
        source: RunSource[T],
        finish_source: Callable[[], None],
        edges: Sequence[Edge[Any]] = (),
    ) -> None:
        self._run: _Run[T] = _Run(launch, source, finish_source)
        self._edges = edges
        self._task_group: anyio.abc.TaskGroup | None = None
        self._mode: str | None = None
        # The source's non-blocking take, once the run started (the per-item fast path).
        self._poll: Callable[[], T | Nothing] | None = None

    # -- structured ---------------------------------------------------------------------

    async def __aenter__(self) -> RunStream[T]:
        if self._mode is not None:
            raise RuntimeError("this stream was already started; call astream() again")
        self._mode = "structured"
        guard_against_keyboard_interrupt()
        run = self._run
        run.prepare()
        self._poll = getattr(run.source, "poll", None)
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
        if run.done is not None and not run.done.is_set():
            run.cancel()
        error: BaseException | None = None
        try:
            suppress = await task_group.__aexit__(exc_type, exc, tb)
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
        return suppress

    # -- iteration ----------------------------------------------------------------------

    def __aiter__(self) -> RunStream[T]:
        return self

    async def __anext__(self) -> T:
        poll = self._poll
        if poll is not None:
            item = poll()
            if item is not NOTHING:
                return item
        run = self._run
        if self._mode is None:
            self._start_detached()
        try:
            return await run.source.__anext__()
        except StopAsyncIteration:
            pass
        except BaseException:
            # The consumer was cancelled or the run failed: either way the run stops now.
            run.cancel()
            raise
        assert run.done is not None
        await run.done.wait()
        run.raise_error()
        raise StopAsyncIteration

    async def next_batch(self, limit: int = 256) -> list[T]:
        """The next chunks that are ready (at least one; ``[]`` at the end)."""
        run = self._run
        if self._mode is None:
            self._start_detached()
        try:
            return await run.next_batch(limit)
        except BaseException:
            run.cancel()
            raise

    def _start_detached(self) -> None:
        self._mode = "detached"
        guard_against_keyboard_interrupt()
        run = self._run
        run.prepare()
        self._poll = getattr(run.source, "poll", None)
        library = sniffio.current_async_library()
        context = contextvars.copy_context()
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

    async def aclose(self) -> None:
        """Stop the run (if it is still going) and wait until its tasks have finished.

        Raises:
            Exception: What a step raised (say, in its cleanup) that was not yet delivered.
        """
        run = self._run
        if self._mode in ("detached", "structured"):
            run.cancel()
            assert run.done is not None
            with anyio.CancelScope(shield=True):
                await run.done.wait()
            if self._mode == "detached":
                run.raise_error()
        elif self._mode is None:
            self._mode = "closed"
            await anyio.lowlevel.checkpoint()

    def __del__(self) -> None:
        if self._mode == "detached":
            run = self._run
            run.orphaned = True
            # Collected after its event loop closed: the run ended with the loop.
            with contextlib.suppress(RuntimeError):
                run.cancel()
            if run.done is not None and run.done.is_set():
                run.report_orphaned_error()

    def statistics(self) -> list[EdgeStatistics]:
        """A snapshot of every edge of the run (its output edge first)."""
        return [edge.statistics() for edge in self._edges]

    async def collect(self) -> list[T]:
        """Every remaining item, as a list."""
        return [item async for item in self]

    def __repr__(self) -> str:
        return f"<RunStream {self._mode or 'not started'}>"
