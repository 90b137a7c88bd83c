"""Static checks of the typed composition API (run by mypy in CI, never executed)."""

from __future__ import annotations

from typing import Any, assert_type

from engine import Runnable, RunnableLambda, RunnableParallel, RunnableSequence


def int_to_str(value: int) -> str:
    return str(value)


def str_to_len(value: str) -> int:
    return len(value)


def check(first: Runnable[int, str], second: Runnable[str, int]) -> None:
    chained = first | second
    assert_type(chained, RunnableSequence[int, int])
    assert_type(RunnableLambda(int_to_str), RunnableLambda[int, str])
    lambdas = RunnableLambda(int_to_str) | RunnableLambda(str_to_len)
    assert_type(lambdas, RunnableSequence[int, int])
    parallel = first | RunnableParallel(a=second)
    assert_type(parallel, RunnableSequence[int, dict[str, Any]])
