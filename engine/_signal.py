"""The cheapest blocking primitives per backend: a one-shot wake-up, and a checkpoint.

An edge blocks a task only when its buffer is empty (receiver) or full (sender), but in
a busy pipeline that still happens thousands of times a second, and a busy actor
checkpoints every few dozen chunks. ``anyio.Event`` and ``anyio.lowlevel.checkpoint``
look the backend up through sniffio on every call and build extra objects; these park
the task directly (a bare future on asyncio, ``wait_task_rescheduled`` on trio) and
tell the backends apart by the flag trio sets while it runs (sniffio's own first test).
Both honour cancellation like any checkpoint. anyio runs only on asyncio and trio, so
"not trio" means asyncio.

Two more backend-specific concerns of the runtime live here: telling cheaply whether a
cancellation is pending for a task (:func:`watch_current_task`: an edge that hands out a
ready item without a trip through the scheduler asks it first, so that every receive is
a cancel point), and protecting the run's own tasks on trio from ``KeyboardInterrupt``
(see :func:`guard_against_keyboard_interrupt`).

Every wait of the engine (:func:`checkpoint` and :meth:`Signal.wait`) first calls the
wait-point hook, if one is set (:func:`set_wait_point_hook`): tests use it (through
``engine.testing.observe_wait_points``) to count the engine's wait points and to act at
one of them. Unset, it costs one global read per wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sniffio import thread_local as _sniffio_thread

if TYPE_CHECKING:
    import trio

__all__ = (
    "NOT_WATCHED",
    "Signal",
    "TaskWatch",
    "WaitPointHook",
    "cancel_pending",
    "checkpoint",
    "guard_against_keyboard_interrupt",
    "keyboard_interrupt_safe",
    "running_trio",
    "set_wait_point_hook",
    "watch_current_task",
)

_trio: Any = None
_F = TypeVar("_F", bound=Callable[..., Any])


def _trio_module() -> Any:
    # Imported on first use: an asyncio-only program never loads trio.
    global _trio
    if _trio is None:
        import trio

        _trio = trio
    return _trio


_KI_SAFE: list[Callable[..., Any]] = []
_ki_marked = False


def keyboard_interrupt_safe(func: _F) -> _F:
    """Register ``func`` to run with trio's KeyboardInterrupt protection (see below)."""
    _KI_SAFE.append(func)
    return func


def guard_against_keyboard_interrupt() -> None:
    """On trio, mark the registered functions' frames as KeyboardInterrupt-protected.

    trio raises ``KeyboardInterrupt`` at whatever bytecode the main thread is running,
    unless that code is protected; then it delivers it to the main task at a checkpoint.
    Landing inside the engine's own bookkeeping (between publishing a step's start and
    starting its actor, say) could leave a step that never ends. With the run's tasks
    protected, Ctrl-C reaches the consumer's task instead, and the run is cancelled the
    ordinary way (every started step ends with its error event). Called when a run
    starts; marks once, and imports trio only when a run is on trio.
    """
    global _ki_marked
    if _ki_marked or _sniffio_thread.name != "trio":
        return
    protect = (_trio or _trio_module()).lowlevel.enable_ki_protection
    for func in _KI_SAFE:
        protect(func)
    _ki_marked = True


def running_trio() -> bool:
    """Whether this thread is running trio (else, under anyio, asyncio)."""
    return _sniffio_thread.name == "trio"


#: What the wait-point hook is given: ``"checkpoint"`` (a :func:`checkpoint`) or
#: ``"wait"`` (a :meth:`Signal.wait`).
WaitPointHook = Callable[[str], None]

_wait_point_hook: WaitPointHook | None = None


def set_wait_point_hook(hook: WaitPointHook | None) -> WaitPointHook | None:
    """Call ``hook`` at every engine wait, before it waits; return the hook it replaces.

    The hook runs synchronously in the waiting task, so a cancellation it requests (or an
    exception it raises) is delivered right at that wait. ``None`` removes it. For tests:
    ``engine.testing.observe_wait_points`` sets and restores it.
    """
    global _wait_point_hook
    previous, _wait_point_hook = _wait_point_hook, hook
    return previous


async def checkpoint() -> None:
    """Let other tasks run and deliver a pending cancellation (``anyio.lowlevel.checkpoint``)."""
    if _wait_point_hook is not None:
        _wait_point_hook("checkpoint")
    if _sniffio_thread.name == "trio":
        await (_trio or _trio_module()).lowlevel.checkpoint()
    else:
        await asyncio.sleep(0)


class Signal:
    """Wakes one task once. ``set()`` before ``wait()`` makes the wait return at once."""

    __slots__ = ("_flag", "_parked")

    def __init__(self) -> None:
        self._flag = False
        self._parked: Any = None

    def is_set(self) -> bool:
        """Whether ``set()`` was called."""
        return self._flag

    def set(self) -> None:
        """Wake the waiting task (if any); later waits return at once."""
        if self._flag:
            return
        self._flag = True
        parked = self._parked
        if parked is None:
            return
        self._parked = None
        if isinstance(parked, asyncio.Future):
            if not parked.done():
                parked.set_result(None)
        else:
            _trio.lowlevel.reschedule(parked)

    async def wait(self) -> None:
        """Block until ``set()`` (a checkpoint: it may raise the backend's cancellation)."""
        if _wait_point_hook is not None:
            _wait_point_hook("wait")
        if _sniffio_thread.name == "trio":
            trio_ = _trio or _trio_module()
            if self._flag:
                await trio_.lowlevel.checkpoint()
                return
            self._parked = trio_.lowlevel.current_task()
            await trio_.lowlevel.wait_task_rescheduled(self._abort)
            return
        if self._flag:
            await asyncio.sleep(0)
            return
        future = self._parked = asyncio.get_running_loop().create_future()
        try:
            await future
        finally:
            if self._parked is future:
                self._parked = None

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        # Called by trio, synchronously, when the wait is cancelled: forget the task so
        # that a later set() does not reschedule a task that is no longer parked.
        self._parked = None
        return _trio.lowlevel.Abort.SUCCEEDED  # type: ignore[no-any-return]


# -- is a cancellation pending? ------------------------------------------------------------
#
# An edge hands out a ready item with a plain call and passes through the scheduler only
# once every few dozen items; yet a consumer whose scope was cancelled must not get one
# more item. A cancellation can be pending without having been delivered: on trio, for a
# task that was already rescheduled when its scope was cancelled (or that cancelled its own
# scope); on asyncio under anyio, for a task that was running or ready to run when its
# scope was cancelled (anyio calls ``Task.cancel()`` only on a task that waits). So every
# receive reads the receiving task's watch, and checkpoints first when it says so.
#
# Cost per call, counted with callgrind (a Python call alone is ~500 instructions here):
# trio's public ``current_effective_deadline() == -inf`` ~16,000 (it walks the deadlines
# up the scope chain), anyio's ~13,000; finding the current task ~1,000 (trio) and ~1,500
# (asyncio). So a watch is made once per receiving task (an edge remakes it whenever a
# receive has to wait or checkpoint, which is also when a new task starts reading: until
# then, a stream handed to another task mid-way is checked against the task that had it),
# and the edge reads its fields inline. Three such reads per chunk (benchmarks/RESULTS.md,
# chain3) cost +5% instructions on trio and +8% on asyncio; as a method call, +11% and +25%.


class _NeverCancelled:
    """Reads like an anyio cancel scope that is not cancelled (pads a short chain)."""

    def __init__(self) -> None:
        # Instance attributes, not class ones, here and below: Python reads those faster.
        self._cancel_called = False


class _AskTheWatch:
    """Stands in a watch's inline scopes where they cannot tell it all (a chain longer than
    three scopes; a task anyio has no state for yet): reading ``_cancel_called`` asks the
    watch's :meth:`TaskWatch.cancel_pending`, a call paid only by such tasks."""

    def __init__(self, watch: TaskWatch) -> None:
        self._watch = watch

    @property
    def _cancel_called(self) -> bool:
        return self._watch.cancel_pending()


class _RestOfChain:
    """Stands in a watch's last inline scope for a chain longer than three scopes (an
    actor's task scope, its run's task group and host scopes are three; a nested run's
    actor or a caller's own scopes make more): reading ``_cancel_called``
    reads the rest of the chain, already cut at its first shielded scope, without
    walking it again from the innermost scope."""

    __slots__ = ("_scopes",)

    def __init__(self, scopes: tuple[Any, ...]) -> None:
        self._scopes = scopes

    @property
    def _cancel_called(self) -> bool:
        for scope in self._scopes:  # noqa: SIM110 - per chunk: any() builds a generator
            if scope._cancel_called:
                return True
        return False


class _StateOf:
    """Reads like anyio's state of a task whose innermost scope is ``cancel_scope``."""

    def __init__(self, cancel_scope: object) -> None:
        self.cancel_scope = cancel_scope


_NEVER_CANCELLED: Any = _NeverCancelled()
# A task not watched yet: its "innermost scope" is never the watch's, so it reads as pending.
_NOT_WATCHED_STATE: Any = _StateOf(object())
# A task anyio has no state for (yet: it makes one when the task first enters a scope).
_NO_STATE: Any = _StateOf(None)
# A task on a backend whose internals are not as expected.
_NEVER_PENDING: Any = _StateOf(None)


class TaskWatch:
    """A few fields that tell whether a cancellation is pending for one task.

    Made by :func:`watch_current_task` for the task that calls it. The edge's receive fast
    path reads the fields inline (a method call would cost more than the reads):

    * on trio (``anyio_state`` is ``None``), ``trio_task._cancel_status.effectively_cancelled``,
      the flag trio's own ``checkpoint()`` tests, which trio keeps up to date as scopes are
      cancelled;
    * on asyncio, anyio's state of the task: its ``cancel_scope`` is the task's innermost
      scope, and while that is still ``innermost``, the scopes that can cancel the task are
      the chain up to the first shielded one, read as ``scope0``, ``scope1``, ``scope2``
      (padded with a scope that is never cancelled). One of them with ``_cancel_called``
      set is a cancellation anyio has not delivered yet. Once the task entered or left a
      scope, the watch reads as pending until it is remade.

    :meth:`cancel_pending` is the same test, for everything else. Where a backend's
    internals are not as expected, the watch never reads as pending: a cancellation then
    waits for the next amortised checkpoint, as it did before watches.

    Attributes:
        task: The task watched (trio's or asyncio's); ``None`` for :data:`NOT_WATCHED`.
    """

    __slots__ = ("anyio_state", "innermost", "scope0", "scope1", "scope2", "task", "trio_task")

    def __init__(self, task: Any = None) -> None:
        # As made here, the watch of a task not known yet: it reads as pending.
        self.task = task
        self.trio_task: Any = None
        self.anyio_state: Any = _NOT_WATCHED_STATE
        self.innermost: Any = None
        self.scope0: Any = _NEVER_CANCELLED
        self.scope1: Any = _NEVER_CANCELLED
        self.scope2: Any = _NEVER_CANCELLED

    def cancel_pending(self) -> bool:
        """Whether the task's next checkpoint would raise its backend's cancellation."""
        state = self.anyio_state
        if state is None:
            # None once the task finished: the watch is stale, so read as pending (the
            # caller then remakes it for the task that is receiving now).
            status = self.trio_task._cancel_status
            return status is None or status.effectively_cancelled
        task = self.task
        if task is None:
            return True
        if state is _NEVER_PENDING:
            return False
        if getattr(task, "_must_cancel", False):
            return True  # the task called cancel() on itself: due at its next suspension
        if state is _NO_STATE:
            state = _anyio_state(task)
            if state is None:
                return False
        elif state.cancel_scope is not self.innermost:
            return True
        scope = state.cancel_scope
        while scope is not None:
            if scope._cancel_called:
                return True
            if scope._shield:
                return False
            scope = scope._parent_scope
        return False


#: The watch of an edge nobody received from yet. It reads as pending, so the first
#: receive takes the slow path, which makes the receiving task's watch.
NOT_WATCHED: Final = TaskWatch()


def _trio_watch(task: Any) -> TaskWatch:
    watch = TaskWatch(task)
    if hasattr(getattr(task, "_cancel_status", None), "effectively_cancelled"):
        watch.trio_task = task
        watch.anyio_state = None
    else:  # pragma: no cover - a trio that renamed them
        watch.anyio_state = _NEVER_PENDING
    return watch


def _asyncio_watch(task: asyncio.Task[Any] | None) -> TaskWatch:
    watch = TaskWatch(task)
    state = None if task is None else _anyio_state(task)
    if state is None:
        if task is not None and _anyio_task_states is not False:
            watch.anyio_state = _NO_STATE
            watch.scope0 = _AskTheWatch(watch)
        else:  # pragma: no cover - outside a task, or an anyio that moved its internals
            watch.anyio_state = _NEVER_PENDING
        return watch
    watch.anyio_state = state
    chain: list[Any] = []
    scope = watch.innermost = state.cancel_scope
    while scope is not None:
        chain.append(scope)
        if scope._shield:
            break
        scope = scope._parent_scope
    if len(chain) > 3:
        chain[2] = _RestOfChain(tuple(chain[2:]))
    watch.scope0, watch.scope1, watch.scope2 = (*chain, *[_NEVER_CANCELLED] * 3)[:3]
    return watch


# anyio's table of asyncio task states (private: read here only, and only if its scopes
# look as expected; without it a pending cancellation waits for the next amortised
# checkpoint, as it did before watches).
_anyio_task_states: Any = None


def _anyio_state(task: asyncio.Task[Any]) -> Any:
    global _anyio_task_states
    if _anyio_task_states is None:
        try:
            from anyio._backends._asyncio import CancelScope, _task_states
        except ImportError:  # pragma: no cover - an anyio that moved them
            _anyio_task_states = False
        else:
            scope = CancelScope()
            names = ("_cancel_called", "_shield", "_parent_scope")
            _anyio_task_states = _task_states if all(hasattr(scope, n) for n in names) else False
    if _anyio_task_states is False:  # pragma: no cover
        return None
    return _anyio_task_states.get(task)


def watch_current_task(previous: TaskWatch | None = None) -> TaskWatch:
    """A :class:`TaskWatch` for the task that calls this (inside an event loop).

    ``previous`` is returned when it still fits: it watches this task, and the task is in
    the same innermost cancel scope (finding the current task is the cheap part).
    """
    if _sniffio_thread.name == "trio":
        task = (_trio or _trio_module()).lowlevel.current_task()
        if previous is not None and task is previous.task:
            return previous
        return _trio_watch(task)
    task = asyncio.current_task()
    if (
        previous is not None
        and task is previous.task
        and (state := previous.anyio_state) is not _NO_STATE
        and state.cancel_scope is previous.innermost
    ):
        return previous
    return _asyncio_watch(task)


def cancel_pending() -> bool:
    """Whether a cancellation is pending for the current task (its next checkpoint raises).

    ``False`` outside any task (a plain call from synchronous code, say).
    """
    if _sniffio_thread.name != "trio" and asyncio._get_running_loop() is None:
        return False
    return watch_current_task().cancel_pending()
