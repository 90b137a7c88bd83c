"""rillet's exception vocabulary, and how a run's failures reach the caller."""

from __future__ import annotations

import asyncio
import math

import anyio

from ._signal import running_trio

__all__ = (
    "CompositionError",
    "CarriedInterrupt",
    "ConfigError",
    "RecursionLimitError",
    "UnexpectedCancellation",
    "carry_interrupt",
    "collapse_errors",
    "is_cancellation",
    "stray_cancellation",
)


class ConfigError(ValueError):
    """A run configuration (``config=`` or ``with_config``) has a bad key or value."""


class CompositionError(TypeError):
    """Something that is not a runnable was composed into a chain."""


class UnexpectedCancellation(RuntimeError):
    """A step raised a cancellation that nothing asked for.

    On asyncio, a step that awaits a future or task that someone else cancelled gets a
    ``CancelledError`` although neither its run nor its caller was cancelled. Taken as a
    cancellation, it would end the run early and silently (no output, or truncated
    output, and no error); it is an error of that step instead, with the
    ``CancelledError`` as its ``__cause__``.
    """


def stray_cancellation(step_name: str, exc: BaseException) -> UnexpectedCancellation | None:
    """The error to raise instead of ``exc`` if it is a cancellation nobody asked for."""
    if not isinstance(exc, asyncio.CancelledError) or running_trio():
        return None
    task = asyncio.current_task()
    if task is None or task.cancelling():
        return None  # the task was cancelled (by a cancel scope or by task.cancel())
    if anyio.current_effective_deadline() == -math.inf:
        return None  # a scope around the step is cancelled
    return UnexpectedCancellation(
        f"step {step_name!r} raised CancelledError, but neither its run nor its caller was "
        "cancelled (did it await a future or task that something else cancelled?)"
    )


class RecursionLimitError(RecursionError):
    """A run was started nested deeper than its ``recursion_limit`` allows.

    Runs nest when a step starts another run (a function that returns a runnable, a
    ``@chain`` that calls ``ainvoke``): a step that starts itself again would otherwise
    nest until memory runs out. It is a :class:`RecursionError`, so code that guards
    against runaway recursion catches it too.

    Attributes:
        name: The name of the run that was not started.
        depth: How deep it would have been nested (a top-level run is at depth 0).
        limit: The recursion limit in force.
        parent: The name of the step it was started inside.
    """

    def __init__(self, name: str, depth: int, limit: int, parent: str | None = None) -> None:
        inside = f" (started inside {parent})" if parent else ""
        super().__init__(
            f"{name}{inside} would run nested {depth} levels deep, past the recursion limit "
            f"of {limit}: does a step start itself again? If the nesting is meant, raise "
            "the limit with config={'recursion_limit': n} or with_config(recursion_limit=n)"
        )
        self.name = name
        self.depth = depth
        self.limit = limit
        self.parent = parent

    def __reduce__(self) -> tuple[type[RecursionLimitError], tuple[str, int, int, str | None]]:
        # Rebuilt from its fields, not its message (the default passes only the message).
        return (type(self), (self.name, self.depth, self.limit, self.parent))


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is the running backend's cancellation exception."""
    return isinstance(exc, anyio.get_cancelled_exc_class())


def only_cancellations(exc: BaseException) -> bool:
    """Whether ``exc`` is a cancellation, or a group of nothing but cancellations."""
    return all(is_cancellation(leaf) for leaf in _leaves(exc))


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in exc.exceptions:
            found.extend(_leaves(inner))
        return found
    return [exc]


class CarriedInterrupt(Exception):
    """Carries a ``KeyboardInterrupt`` or ``SystemExit`` raised in a run's task to the
    run's caller, who gets the original (:func:`collapse_errors` unwraps it).

    asyncio lets these two escape the event loop from whichever task raised them, past
    every task group: the run would then be torn down by the loop instead of ending
    in order, and its consumer would see a cancellation. Carried as an ordinary error,
    the interrupt ends the run like any failure and is raised in the consumer's task.
    """

    def __init__(self, interrupt: BaseException) -> None:
        super().__init__(repr(interrupt))
        self.interrupt = interrupt


def carry_interrupt(exc: BaseException) -> BaseException:
    """``exc`` ready to leave a task: a :class:`CarriedInterrupt` for an interrupt."""
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return CarriedInterrupt(exc)
    return exc


def collapse_errors(exc: BaseException) -> BaseException:
    """The exception a run's caller should see for what its task group raised.

    One real error is returned as itself (its own type and traceback); several become
    one flat group holding all of them. A group made only of cancellations is returned
    unchanged, so that the cancel scope that caused it still recognises and absorbs it.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc.interrupt if isinstance(exc, CarriedInterrupt) else exc
    leaves = [leaf.interrupt if isinstance(leaf, CarriedInterrupt) else leaf for leaf in _leaves(exc)]
    real = [leaf for leaf in leaves if not is_cancellation(leaf)]
    if not real:
        return exc
    unique: list[BaseException] = []
    for leaf in real:
        if not any(leaf is seen for seen in unique):
            unique.append(leaf)
    if len(unique) == 1:
        return unique[0]
    if all(isinstance(leaf, Exception) for leaf in unique):
        return ExceptionGroup(
            f"{len(unique)} steps of the run failed",
            [leaf for leaf in unique if isinstance(leaf, Exception)],
        )
    return BaseExceptionGroup(f"{len(unique)} steps of the run failed", unique)
