"""Errors as a model API raises them, for the resilience tests (retry, fallbacks).

The anthropic SDK's own exception classes, built on a real ``httpx2.Response`` with the
status and headers the API sends, so that what the wrappers read from them (the status
code, ``retry-after``) is read the way it is in production.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2

from engine import Runnable
from nodes import ModelStreamError

__all__ = ("api_error", "events_of", "stream_error")

_REQUEST = httpx2.Request("POST", "https://api.anthropic.test/v1/messages")

_KINDS: dict[int, tuple[type[anthropic.APIStatusError], str]] = {
    400: (anthropic.BadRequestError, "invalid_request_error"),
    401: (anthropic.AuthenticationError, "authentication_error"),
    429: (anthropic.RateLimitError, "rate_limit_error"),
    500: (anthropic.InternalServerError, "api_error"),
    503: (anthropic.ServiceUnavailableError, "api_error"),
    529: (anthropic.OverloadedError, "overloaded_error"),
}


def api_error(status: int, *, retry_after: str | None = None, retry_after_ms: str | None = None) -> Exception:
    """The SDK's exception for an HTTP ``status`` response (with ``retry-after`` if given)."""
    headers: dict[str, str] = {"request-id": f"req_{status}"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    if retry_after_ms is not None:
        headers["retry-after-ms"] = retry_after_ms
    kind, error_type = _KINDS[status]
    body = {"type": "error", "error": {"type": error_type, "message": f"status {status}"}}
    response = httpx2.Response(status, headers=headers, request=_REQUEST, json=body)
    return kind(f"Error code: {status}", response=response, body=body)


def stream_error(error_type: str | None, *, delivered: int = 1) -> ModelStreamError:
    """What ``ChatAnthropic`` raises for an ``event: error`` of ``error_type`` mid-stream."""
    return ModelStreamError(
        f"the Messages API stream failed mid-response with {error_type}",
        chunks_delivered=delivered,
        error_type=error_type,
    )


async def events_of(
    runnable: Runnable[Any, Any], value: Any
) -> tuple[list[dict[str, Any]], BaseException | None]:
    """Every event of a run of ``runnable`` (lossless ``"block"`` subscriber), and its error."""
    events: list[dict[str, Any]] = []
    error: BaseException | None = None
    try:
        async with runnable.astream_events(value) as stream:
            async for event in stream:
                events.append(dict(event))
    except Exception as exc:
        error = exc
    return events, error
