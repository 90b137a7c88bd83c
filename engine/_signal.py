"""The cheapest blocking primitives per backend: a one-shot wake-up, and a checkpoint.

An edge blocks a task only when its buffer is empty (receiver) or full (sender), but in
a busy pipeline that still happens thousands of times a second, and a busy actor
checkpoints every few dozen chunks. ``anyio.Event`` and ``anyio.lowlevel.checkpoint``
look the backend up through sniffio on every call and build extra objects; these park
the task directly (a bare future on asyncio, ``wait_task_rescheduled`` on trio) and
tell the backends apart by the flag trio sets while it runs (sniffio's own first test).
Both honour cancellation like any checkpoint. anyio runs only on asyncio and trio, so
"not trio" means asyncio.

The one other backend-specific concern of the runtime lives here too: on trio, the run's
own tasks are protected from ``KeyboardInterrupt`` (see
:func:`guard_against_keyboard_interrupt`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sniffio import thread_local as _sniffio_thread

if TYPE_CHECKING:
    import trio

__all__ = (
    "Signal",
    "checkpoint",
    "guard_against_keyboard_interrupt",
    "keyboard_interrupt_safe",
    "running_trio",
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


async def checkpoint() -> None:
    """Let other tasks run and deliver a pending cancellation (``anyio.lowlevel.checkpoint``)."""
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
