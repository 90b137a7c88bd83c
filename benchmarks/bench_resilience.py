"""Scenario 10: what the resilience wrappers cost a healthy stream, in chunks per second.

``astream`` of ``prompt | model.with_retry() | StrOutputParser`` and of issue 13's chain
``prompt | model.with_retry().with_timeout(idle=30) | StrOutputParser`` against the bare
``prompt | model | StrOutputParser`` (the model never fails nor stalls: every chunk
passes the commit point and goes straight through). Both sides run once in every round; the
finding is the median of the rounds' ratios (steadier on a shared machine than the
ratio of two medians). Target (issue 13): the wrapped chain within 10% of the bare one.
"""

from __future__ import annotations

import functools

from ._chains import (
    PROMPT_INPUT,
    nodes_status,
    rillet_prompt_chain,
    rillet_retry_prompt_chain,
    rillet_retry_timeout_prompt_chain,
)
from ._harness import (
    Budget,
    Contender,
    Section,
    Table,
    fmt_count,
    fmt_rate,
    run_alternating,
    stat,
    target_at_least,
)
from ._measures import stream_measure

__all__ = ("run",)

KEY = "resilience"
TARGET_RATIO = 0.90
# Labels without "|": they go in markdown tables.
SIDES = (
    ("bare chain", rillet_prompt_chain),
    ("model.with_retry()", rillet_retry_prompt_chain),
    ("model.with_retry().with_timeout(idle=30)", rillet_retry_timeout_prompt_chain),
)


def run(budget: Budget) -> Section:
    """Run scenario 10 and return its report section."""
    section = Section(
        KEY, "10. with_retry and with_timeout on a healthy stream: chunks/s against the bare chain"
    )
    section.notes.append(
        "Each repetition streams the whole output once with a bare `async for`; chunks/s is "
        "chunks divided by the time from the `astream` call to the end of the stream. "
        "`with_retry()` wraps the model with the default arguments; its one attempt "
        "succeeds; `with_timeout(idle=30)` never trips. For figures the machine's load cannot "
        "move, see `python -m benchmarks.instructions --only prompt_model_parser "
        "--only retry_prompt_model_parser --only retry_timeout_prompt_model_parser`."
    )
    reason = nodes_status()
    if reason is not None:
        section.skipped.append(f"prompt | model | parser: {reason}")
        return section
    tokens = budget.size(10_000, 2_000)
    contenders = [
        Contender(
            f"{label} [{backend}]",
            backend,
            stream_measure(functools.partial(make, tokens), PROMPT_INPUT),
            warmup=stream_measure(functools.partial(make, 200), PROMPT_INPUT),
        )
        for backend in budget.backends
        for label, make in SIDES
    ]
    reps = budget.reps(11, 3)
    samples = run_alternating(contenders, reps, name="resilience wrappers")
    table = Table(
        ["contender", "chunks", "median chunks/s", "min", "max"],
        caption=f"prompt | model | StrOutputParser, {tokens:,} tokens, {reps} reps",
    )
    for contender in contenders:
        figures = samples[contender.label]
        rates = stat([n / s for n, s in zip(figures["items"], figures["seconds"], strict=True)])
        table.add(
            contender.label,
            fmt_count(figures["items"][0]),
            fmt_rate(rates.median),
            fmt_rate(rates.low),
            fmt_rate(rates.high),
        )
    section.tables.append(table)
    for backend in budget.backends:
        bare = samples[f"bare chain [{backend}]"]["seconds"]
        for label, _ in SIDES[1:]:
            wrapped = samples[f"{label} [{backend}]"]["seconds"]
            # wrapped chunks/s / bare chunks/s, round by round (same chunk count on both sides).
            ratios = stat([b / w for b, w in zip(bare, wrapped, strict=True)])
            section.findings.append(
                target_at_least(
                    f"{label} chunks/s / bare chunks/s on {backend} (median of {ratios.count} rounds)",
                    ratios.median,
                    TARGET_RATIO,
                    lambda v: f"{v:.2f}x",
                )
            )
    return section
