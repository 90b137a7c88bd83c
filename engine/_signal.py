"""A one-shot wake-up for one waiting task: the cheapest blocking primitive per backend.

An edge blocks a task only when its buffer is empty (receiver) or full (sender), but in
a busy pipeline that still happens thousands of times a second. ``anyio.Event`` costs a
backend lookup and two objects per wait; this parks the task directly: a bare future on
asyncio, ``wait_task_rescheduled`` on trio. Both honour cancellation like any checkpoint.
"""

from __future__ import annotations

import asyncio
from typing import Any

import sniffio

__all__ = ("Signal",)


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
            import trio

            trio.lowlevel.reschedule(parked)

    async def wait(self) -> None:
        """Block until ``set()`` (a checkpoint: it may raise the backend's cancellation)."""
        if sniffio.current_async_library() == "trio":
            await self._wait_trio()
        else:
            await self._wait_asyncio()

    async def _wait_asyncio(self) -> None:
        if self._flag:
            await asyncio.sleep(0)
            return
        future = self._parked = asyncio.get_running_loop().create_future()
        try:
            await future
        finally:
            if self._parked is future:
                self._parked = None

    async def _wait_trio(self) -> None:
        import trio

        if self._flag:
            await trio.lowlevel.checkpoint()
            return
        self._parked = trio.lowlevel.current_task()

        def abort(_: Any) -> Any:
            self._parked = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
