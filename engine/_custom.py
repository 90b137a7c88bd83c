"""Custom events: a step's own code publishing ``on_custom_event`` to the run's bus."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.from_thread

from ._step import Step, current_step

__all__ = ("adispatch_custom_event", "dispatch_custom_event")


def _step_or_error(name: str) -> Step:
    step = current_step()
    if step is None:
        raise RuntimeError(f"dispatch_custom_event({name!r}) was called outside any running step")
    return step


async def adispatch_custom_event(name: str, data: Any) -> None:
    """Publish ``on_custom_event`` named ``name`` with ``data`` from the current step.

    The event carries the step's run id, tags and metadata, so filters by the step's
    tags see it. It respects each subscriber's overflow policy.

    Raises:
        RuntimeError: When called outside a running step.
    """
    await _step_or_error(name).emit_custom(name, data)


def dispatch_custom_event(name: str, data: Any) -> None:
    """The synchronous form of :func:`adispatch_custom_event`.

    From a step's synchronous function (a worker thread) the event is published on the
    run's loop; from code on the loop's own thread it is published without waiting.

    Raises:
        RuntimeError: When called outside a running step.
    """
    step = _step_or_error(name)
    try:
        anyio.from_thread.run(step.emit_custom, name, data)
    except anyio.NoEventLoopError:
        step.emit_custom_nowait(name, data)
