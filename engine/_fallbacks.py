"""``runnable.with_fallbacks([...])``: the next runnable takes over before the commit point.

:class:`RunnableWithFallbacks` is a hosting step (``engine/_hosting.py``): it runs the
primary runnable as a nested run, and when that fails before its commit point (nothing
with content was delivered) with one of ``exceptions_to_handle``, the first fallback, and
so on. Each is an attempt with ``{"attempt": n}`` in its events' metadata (the primary
is attempt 1). A failure after the commit point is raised as it is (with a note of the
chunks delivered): a fallback then would splice two replies. The names follow
langchain-core's, whose fallbacks also take over only before the first chunk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import attrs

from ._edge import Accumulation
from ._hosting import Emitter, HostingNode, UsageLog, run_attempt
from ._retry import _exception_types
from ._runnable import Runnable
from ._step import Step

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("RunnableWithFallbacks",)


def _fallbacks(value: Any) -> tuple[Runnable[Any, Any], ...]:
    if isinstance(value, Runnable) or not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"with_fallbacks takes a list of runnables, got {value!r}")
    if not value:
        raise ValueError("with_fallbacks needs at least one fallback runnable, got an empty list")
    for index, fallback in enumerate(value):
        if not isinstance(fallback, Runnable):
            raise TypeError(
                f"fallbacks[{index}] is not a runnable: {type(fallback).__name__} {fallback!r} "
                "(wrap a function with RunnableLambda)"
            )
    return tuple(value)


def _check_runnable(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Runnable):
        raise TypeError(f"with_fallbacks wraps a runnable, got {type(value).__name__}: {value!r}")


def _check_key(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"exception_key must be a non-empty string or None, got {value!r}")


def _handled(value: Any) -> tuple[type[BaseException], ...]:
    return _exception_types(value, "exceptions_to_handle")


@attrs.frozen(eq=False, repr=False)
class RunnableWithFallbacks(HostingNode[In, Out]):
    """A runnable with others to take over when it fails before its commit point.

    Made by :meth:`Runnable.with_fallbacks` (see there for the arguments). Its step is a
    ``chain`` step named ``RunnableWithFallbacks``; each runnable tried is a nested run
    under it with ``{"attempt": n}`` in its events' metadata, and its end (or error)
    event carries ``data["usage"]`` (see ``engine/_hosting.py``, ``UsageLog``).
    """

    kind: ClassVar[str] = "chain"

    runnable: Runnable[In, Out] = attrs.field(validator=_check_runnable)
    fallbacks: tuple[Runnable[In, Out], ...] = attrs.field(converter=_fallbacks)
    exceptions_to_handle: tuple[type[BaseException], ...] = attrs.field(
        default=(Exception,), converter=_handled
    )
    exception_key: str | None = attrs.field(default=None, validator=_check_key)

    @property
    def runnables(self) -> tuple[Runnable[In, Out], ...]:
        """The primary runnable, then the fallbacks, in the order they are tried."""
        return (self.runnable, *self.fallbacks)

    def get_name(self) -> str:
        return "RunnableWithFallbacks"

    @property
    def output_accumulation(self) -> Accumulation:
        return self.runnable.output_accumulation

    def carries_content(self, chunk: Any) -> bool:
        # Held until every runnable that could have made it says it has content: holding
        # a chunk only delays it, while releasing one too early ends the chance to fall back.
        return all(r.carries_content(chunk) for r in self.runnables)

    def _max_concurrency(self) -> int | None:
        return self.runnable._max_concurrency()

    async def host(self, value: In, emitter: Emitter, step: Step) -> None:
        key = self.exception_key
        if key is not None and not isinstance(value, Mapping):
            raise ValueError(
                f"{step.name} has exception_key={key!r}, so its input must be a dict, "
                f"got {type(value).__name__}: {value!r}"
            )
        usage = UsageLog.open(step)
        errors: list[BaseException] = []
        try:
            for number, runnable in enumerate(self.runnables, start=1):
                given: Any = value
                if key is not None and errors:
                    given = {**value, key: errors[-1]}  # type: ignore[dict-item]
                error = await run_attempt(runnable, given, number, emitter, step, usage)
                if error is None:
                    return
                if not isinstance(error, self.exceptions_to_handle):
                    raise error
                errors.append(error)
        finally:
            if usage is not None:
                usage.close(step)
        first = errors[0]
        first.add_note(f"{step.name}: every fallback failed too: " + "; ".join(f"{e!r}" for e in errors[1:]))
        raise first

    def __repr__(self) -> str:
        return f"RunnableWithFallbacks({self.runnable!r}, fallbacks={list(self.fallbacks)!r})"
