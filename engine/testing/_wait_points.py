"""Seeing the engine's own wait points, for tests that stop a run at each of them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from .._signal import set_wait_point_hook

__all__ = ("observe_wait_points",)


@contextlib.contextmanager
def observe_wait_points(callback: Callable[[str], None]) -> Iterator[None]:
    """Call ``callback(kind)`` at every wait of the engine while the block runs.

    ``kind`` is ``"checkpoint"`` (the engine gives way: its edges do so every few dozen
    items, and before handing over a stream's first item) or ``"wait"`` (a task blocks on
    an edge: a full buffer, an empty one). The callback runs synchronously in the task
    that is about to wait, before it waits, so a cancel scope it cancels, or an exception
    it raises, is delivered right at that wait. These are the engine's waits only: the
    anyio checkpoints and events that runs also pass through are the test's to count.
    Blocks nest: an inner callback runs before the outer one.
    """
    outer: Callable[[str], None] | None = None

    def hook(kind: str) -> None:
        callback(kind)
        if outer is not None:
            outer(kind)

    outer = set_wait_point_hook(hook)
    try:
        yield
    finally:
        set_wait_point_hook(outer)
