"""Static checks of with_rate_limit's types (run by mypy in CI, never executed)."""

from __future__ import annotations

from typing import assert_type

from engine import RateLimiter, Runnable, RunnableRateLimited, RunnableSequence


def check(first: Runnable[int, str], second: Runnable[str, int], limiter: RateLimiter) -> None:
    assert_type(first.with_rate_limit(limiter), RunnableRateLimited[int, str])
    assert_type(first.with_rate_limit(limiter) | second, RunnableSequence[int, int])
