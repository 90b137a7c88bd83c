"""Tasks that run for the length of a user's ``async with`` block, then a last step.

The live view (``engine.view.watch``) and the OpenTelemetry subscriber
(``engine.otel.trace_runs``) both read a bus subscription in the background while the
user's block runs, and both must finish their work (read what is left, draw the last
frame, end every span) however the block ends: normally, with an error, or cancelled.
:func:`background_tasks` is that shape, written once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio

__all__ = ("background_tasks",)


@contextlib.asynccontextmanager
async def background_tasks(
    *tasks: Callable[[], Coroutine[Any, Any, None]],
    finish: Callable[[], Coroutine[Any, Any, None]],
    started: Callable[[], None] | None = None,
) -> AsyncIterator[None]:
    """Run ``tasks`` while the block runs; then, however it ends, await ``finish``.

    The tasks are cancelled when the block ends. ``finish`` runs shielded (a cancelled
    block still gets its last events read); ``started`` runs in the block's task once the
    tasks are scheduled. An error of the block is raised after ``finish``, as itself (not
    wrapped in an exception group: it is not ours); a cancellation goes through the task
    group to the scope that cancelled the block.

    The block runs in the task that entered it, inside the group's cancel scope, so this
    must be used as ``async with`` in one task (never across a generator's ``yield`` to
    another task; PEP 789).
    """
    body_error: BaseException | None = None
    try:
        async with anyio.create_task_group() as task_group:
            for task in tasks:
                task_group.start_soon(task)
            if started is not None:
                started()
            try:
                yield
            except BaseException as exc:
                if isinstance(exc, anyio.get_cancelled_exc_class()):
                    raise  # the scope that cancelled the block catches it, through the group
                body_error = exc
            finally:
                task_group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await finish()
    if body_error is not None:
        raise body_error
