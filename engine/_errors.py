"""rillet's exception vocabulary, and how a run's failures reach the caller."""

from __future__ import annotations

import anyio

__all__ = ("ConfigError", "CompositionError", "collapse_errors", "is_cancellation")


class ConfigError(ValueError):
    """A run configuration (``config=`` or ``with_config``) has a bad key or value."""


class CompositionError(TypeError):
    """Something that is not a runnable was composed into a chain."""


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is the running backend's cancellation exception."""
    return isinstance(exc, anyio.get_cancelled_exc_class())


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in exc.exceptions:
            found.extend(_leaves(inner))
        return found
    return [exc]


def collapse_errors(exc: BaseException) -> BaseException:
    """The exception a run's caller should see for what its task group raised.

    One real error is returned as itself (its own type and traceback); several become
    one flat group holding all of them. A group made only of cancellations is returned
    unchanged, so that the cancel scope that caused it still recognises and absorbs it.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = _leaves(exc)
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
