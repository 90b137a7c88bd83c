"""``runnable.with_retry(...)``: try a step again when it fails before its commit point.

:class:`RunnableRetry` is a hosting step (``engine/_hosting.py``): each attempt is a
nested run of the wrapped runnable under the wrapper's step, with ``{"attempt": n}`` in
its events' metadata. An attempt that fails before its commit point (before its first
chunk with content left the wrapper) has shown nothing downstream, so it may be tried
again, after a backoff wait; a failure after the commit point is raised as it is (with a
note of the chunks delivered), because a second attempt would show the consumer the
same tokens twice or splice two replies.

Which failures are worth another attempt is, by default, what is transient for a model
API (:func:`is_transient_error`); ``retry_if_exception_type`` picks exception types
instead, as in langchain-core.
"""

from __future__ import annotations

import email.utils
import random
import sys
import time
from collections.abc import Mapping
from typing import Any, ClassVar, TypedDict, TypeVar

import anyio
import attrs

from ._hosting import Emitter, HostingNode, UsageLog, run_attempt
from ._runnable import Runnable
from ._step import Step
from ._wrapper import BoundWrapper

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("ExponentialJitterParams", "RunnableRetry", "is_transient_error", "retry_after_seconds")


class ExponentialJitterParams(TypedDict, total=False):
    """The backoff before attempt ``n + 1`` (langchain-core's names, seconds):
    ``min(initial * exp_base ** (n - 1) + uniform(0, jitter), max)``."""

    initial: float
    max: float
    exp_base: float
    jitter: float


_BACKOFF_DEFAULTS: dict[str, float] = {"initial": 1.0, "max": 60.0, "exp_base": 2.0, "jitter": 1.0}

# HTTP client errors that mean the connection failed, by (module, class): looked up only
# in modules already imported (an error of a module nobody imported cannot occur), so the
# engine imports no HTTP client.
_CONNECTION_ERRORS = (
    ("anthropic", "APIConnectionError"),  # the SDK's, APITimeoutError included
    ("anthropic", "RetryableError"),  # raised to opt into the SDK's own retries
    ("httpx", "TransportError"),
    ("httpx2", "TransportError"),
)


def is_transient_error(error: BaseException) -> bool:
    """Whether ``error`` is a failure of a model API worth another attempt.

    True for: a ``TimeoutError`` (``StepTimeout`` included) or ``ConnectionError``; an
    error with an HTTP ``status_code`` of 429 or 5xx (the anthropic SDK's
    ``RateLimitError``, ``InternalServerError``, ``OverloadedError`` (529)...); the
    connection errors of the anthropic SDK and of httpx; an error whose ``transient``
    attribute is ``True`` (``nodes.ModelStreamError`` for an ``overloaded_error``,
    ``rate_limit_error`` or ``api_error`` event mid-stream, or a connection that broke);
    an exception group made only of such errors. False for anything else (a bad
    request, an authentication error, a parser's error, a bug).
    """
    if isinstance(error, BaseExceptionGroup):
        return all(is_transient_error(e) for e in error.exceptions)
    flag = getattr(error, "transient", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(error, TimeoutError | ConnectionError):
        return True
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool) and (status == 429 or 500 <= status <= 599):
        return True
    for module_name, class_name in _CONNECTION_ERRORS:
        module = sys.modules.get(module_name)
        kind = getattr(module, class_name, None) if module is not None else None
        if isinstance(kind, type) and isinstance(error, kind):
            return True
    return False


def retry_after_seconds(error: BaseException) -> float | None:
    """How long the server asked to wait before the next request, if ``error`` says.

    Read from the HTTP response the error (or an error in its ``__cause__`` chain)
    carries, as the anthropic SDK's ``APIStatusError.response``: ``retry-after-ms``, or
    ``retry-after`` in seconds or as an HTTP date. ``None`` when there is none.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        headers = getattr(getattr(current, "response", None), "headers", None)
        if headers is not None and hasattr(headers, "get"):
            seconds = _parse_retry_after(headers)
            if seconds is not None:
                return seconds
        current = current.__cause__
    return None


def _parse_retry_after(headers: Any) -> float | None:
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(float(milliseconds) / 1000, 0.0)
        except (TypeError, ValueError):
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        pass
    try:
        date = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return max(date.timestamp() - time.time(), 0.0)


def _exception_types(value: Any, what: str) -> tuple[type[BaseException], ...]:
    if isinstance(value, type):
        value = (value,)
    if not isinstance(value, tuple | list) or not value:
        raise TypeError(f"{what} must be a non-empty tuple of exception types, got {value!r}")
    for kind in value:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise TypeError(f"{what} must hold exception types only, got {kind!r}")
    return tuple(value)


def _retry_types(value: Any) -> tuple[type[BaseException], ...] | None:
    return None if value is None else _exception_types(value, "retry_if_exception_type")


def _backoff(value: Mapping[str, float] | None) -> dict[str, float]:
    params = dict(_BACKOFF_DEFAULTS)
    if value is None:
        return params
    if not isinstance(value, Mapping):
        raise TypeError(f"exponential_jitter_params must be a dict, got {value!r}")
    unknown = sorted(set(value) - set(_BACKOFF_DEFAULTS))
    if unknown:
        raise ValueError(
            f"exponential_jitter_params has unknown key(s) {unknown}; known: {', '.join(_BACKOFF_DEFAULTS)}"
        )
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int | float) or not number >= 0:
            raise ValueError(f"exponential_jitter_params[{key!r}] must be a number >= 0, got {number!r}")
        params[key] = float(number)
    return params


def _check_attempts(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"stop_after_attempt must be an int >= 1, got {value!r}")


def _check_max_retry_after(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"max_retry_after must be a number of seconds >= 0, got {value!r}")


def _check_runnable(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Runnable):
        raise TypeError(f"with_retry wraps a runnable, got {type(value).__name__}: {value!r}")


@attrs.frozen(eq=False, repr=False)
class RunnableRetry(BoundWrapper[In, Out], HostingNode[In, Out]):
    """A runnable tried again when it fails before its commit point.

    Made by :meth:`Runnable.with_retry` (see there for the arguments). Its step is a
    ``chain`` step named ``RunnableRetry``; each attempt is a nested run of ``bound``
    under it, with ``{"attempt": n}`` (1-based) in its events' metadata, and its end (or
    error) event carries ``data["usage"]``, the token usage of every attempt (see
    ``engine/_hosting.py``, ``UsageLog``).
    """

    kind: ClassVar[str] = "chain"

    bound: Runnable[In, Out] = attrs.field(validator=_check_runnable)
    retry_if_exception_type: tuple[type[BaseException], ...] | None = attrs.field(
        default=None, converter=_retry_types
    )
    stop_after_attempt: int = attrs.field(default=3, validator=_check_attempts)
    wait_exponential_jitter: bool = True
    exponential_jitter_params: dict[str, float] = attrs.field(default=None, converter=_backoff)
    respect_retry_after: bool = True
    max_retry_after: float = attrs.field(default=60.0, validator=_check_max_retry_after)

    def get_name(self) -> str:
        return "RunnableRetry"

    def should_retry(self, error: BaseException) -> bool:
        """Whether a failure before the commit point is worth another attempt."""
        if self.retry_if_exception_type is None:
            return is_transient_error(error)
        return isinstance(error, self.retry_if_exception_type)

    def wait_before(self, attempt: int, error: BaseException) -> float | None:
        """Seconds to wait after attempt ``attempt`` failed with ``error`` (``None``: the
        server asked for a longer wait than ``max_retry_after``, so give up)."""
        if self.respect_retry_after:
            asked = retry_after_seconds(error)
            if asked is not None:
                return asked if asked <= self.max_retry_after else None
        if not self.wait_exponential_jitter:
            return 0.0
        p = self.exponential_jitter_params
        wait = p["initial"] * p["exp_base"] ** (attempt - 1) + random.uniform(0, p["jitter"])
        return min(wait, p["max"])

    async def host(self, value: In, emitter: Emitter, step: Step) -> None:
        usage = UsageLog.open(step)
        try:
            last = self.stop_after_attempt
            for number in range(1, last + 1):
                error = await run_attempt(self.bound, value, number, emitter, step, usage)
                if error is None:
                    return
                if not self.should_retry(error):
                    raise error
                if number == last:
                    error.add_note(f"{step.name}: attempt {number} of {number} failed; gave up")
                    raise error
                wait = self.wait_before(number, error)
                if wait is None:
                    error.add_note(
                        f"{step.name}: the server asked to retry after {retry_after_seconds(error):g} s, "
                        f"more than max_retry_after ({self.max_retry_after:g} s); gave up"
                    )
                    raise error
                # Cancellable, and virtual under trio's MockClock.
                await anyio.sleep(wait)
        finally:
            if usage is not None:
                usage.close(step)

    def __repr__(self) -> str:
        return f"RunnableRetry({self.bound!r}, stop_after_attempt={self.stop_after_attempt})"
