"""Scenario 1: streaming throughput with ``astream``, in chunks per second.

Two variants:

* engine only: ``source | increment | increment`` (three async generator steps, one
  actor each) passing 10,000 chunks, against hand-written 3-task pipelines on bare
  channels and against langchain-core's same ``RunnableGenerator`` chain;
* ``prompt | model | StrOutputParser`` (needs rillet's ``nodes``), against
  langchain-core's ``ChatPromptTemplate | FakeListChatModel | StrOutputParser``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable

from . import _handwritten
from ._chains import (
    PROMPT_INPUT,
    langchain_chain,
    langchain_missing,
    langchain_prompt_chain,
    nodes_status,
    rillet_chain,
    rillet_prompt_chain,
)
from ._harness import (
    Budget,
    Contender,
    Sample,
    Samples,
    Section,
    Stat,
    Table,
    fmt_count,
    fmt_rate,
    fmt_ratio,
    run_alternating,
    stat,
    target_at_least,
)
from ._measures import Form, stream_measure

__all__ = ("run",)

KEY = "throughput"
TARGET_RATE = 150_000.0
TARGET_VS_LANGCHAIN = 10.0
WARMUP = 1_000


def _handwritten_measure(variant: _handwritten.Variant, count: int) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        started = time.perf_counter()
        received = await _handwritten.run_pipeline(variant, count, 3)
        return {"seconds": time.perf_counter() - started, "items": received}

    return measure


def _rates(samples: Samples) -> dict[str, Stat]:
    return {
        label: stat([n / s for n, s in zip(figures["items"], figures["seconds"], strict=True)])
        for label, figures in samples.items()
    }


def _rate_table(samples: Samples, rates: dict[str, Stat], caption: str) -> Table:
    """One row per contender: chunks per run, median, min and max chunks/s."""
    table = Table(["contender", "chunks", "median chunks/s", "min", "max"], caption=caption)
    for label, figures in samples.items():
        rate = rates[label]
        table.add(
            label,
            fmt_count(figures["items"][0]),
            fmt_rate(rate.median),
            fmt_rate(rate.low),
            fmt_rate(rate.high),
        )
    return table


def _engine_only(budget: Budget, section: Section) -> None:
    count = budget.size(10_000, 5_000)
    contenders: list[Contender] = []
    backend_of: dict[str, str] = {}
    for backend in budget.backends:
        forms: tuple[tuple[Form, str], ...] = (("bare", "async for"), ("with", "async with"))
        for form, how in forms:
            label = f"rillet ({how})"
            contenders.append(
                Contender(
                    f"{label} [{backend}]",
                    backend,
                    stream_measure(functools.partial(rillet_chain, 3), count, form=form),
                    warmup=stream_measure(functools.partial(rillet_chain, 3), WARMUP, form=form),
                )
            )
        variants = [v for v in _handwritten.VARIANTS if backend == "trio" or not v.startswith("trio")]
        for variant in variants:
            contenders.append(
                Contender(
                    f"hand-written {variant} [{backend}]",
                    backend,
                    _handwritten_measure(variant, count),
                    warmup=_handwritten_measure(variant, WARMUP),
                )
            )
    missing_lc = langchain_missing()
    if missing_lc is None:
        contenders.append(
            Contender(
                "langchain-core RunnableGenerator x3 [asyncio]",
                "asyncio",
                stream_measure(functools.partial(langchain_chain, 3), count, form="langchain"),
                warmup=stream_measure(functools.partial(langchain_chain, 3), WARMUP, form="langchain"),
            )
        )
    else:
        section.skipped.append(missing_lc)
    for contender in contenders:
        backend_of[contender.label] = contender.backend
    reps = budget.reps(7, 2)
    samples = run_alternating(contenders, reps, name="throughput engine-only")
    rates = _rates(samples)

    section.tables.append(
        _rate_table(samples, rates, f"Engine only: 3-step chain, {count:,} chunks, {reps} reps")
    )

    lc_label = "langchain-core RunnableGenerator x3 [asyncio]"
    for backend in budget.backends:
        for how in ("async for", "async with"):
            label = f"rillet ({how}) [{backend}]"
            rillet = rates[label].median
            hand = {
                lab: r.median
                for lab, r in rates.items()
                if lab.startswith("hand-written") and backend_of[lab] == backend
            }
            best_label = max(hand, key=hand.__getitem__)
            line = (
                f"{label}: {fmt_ratio(rillet / hand[best_label])} the best hand-written pipeline on {backend} "
                f"({best_label.removeprefix('hand-written ').split(' ')[0]}, {fmt_rate(hand[best_label])})"
            )
            if lc_label in rates:
                line += f"; {fmt_ratio(rillet / rates[lc_label].median)} langchain-core"
            section.findings.append(line)
    for backend in budget.backends:
        label = f"rillet (async for) [{backend}]"
        section.findings.append(
            target_at_least(f"rillet throughput on {backend}", rates[label].median, TARGET_RATE, fmt_rate)
        )
        if lc_label in rates:
            section.findings.append(
                target_at_least(
                    f"rillet/langchain on {backend}",
                    rates[label].median / rates[lc_label].median,
                    TARGET_VS_LANGCHAIN,
                    fmt_ratio,
                )
            )


def _with_nodes(budget: Budget, section: Section) -> None:
    tokens = budget.size(10_000, 2_000)
    reason = nodes_status()
    if reason is not None:
        section.skipped.append(f"prompt | model | StrOutputParser: {reason}")
        return
    contenders = [
        Contender(
            f"rillet prompt|ScriptedChatModel|StrOutputParser [{backend}]",
            backend,
            stream_measure(functools.partial(rillet_prompt_chain, tokens), PROMPT_INPUT),
        )
        for backend in budget.backends
    ]
    missing_lc = langchain_missing()
    lc_label = "langchain-core prompt|FakeListChatModel|StrOutputParser [asyncio]"
    if missing_lc is None:
        contenders.append(
            Contender(
                lc_label,
                "asyncio",
                stream_measure(
                    functools.partial(langchain_prompt_chain, tokens), PROMPT_INPUT, form="langchain"
                ),
                warmup=stream_measure(
                    functools.partial(langchain_prompt_chain, 200), PROMPT_INPUT, form="langchain"
                ),
            )
        )
    reps = budget.reps(5, 2)
    samples = run_alternating(contenders, reps, name="throughput prompt|model|parser")
    rates = _rates(samples)
    section.tables.append(
        _rate_table(samples, rates, f"prompt | model | StrOutputParser, about {tokens:,} tokens, {reps} reps")
    )
    for backend in budget.backends:
        label = f"rillet prompt|ScriptedChatModel|StrOutputParser [{backend}]"
        section.findings.append(
            target_at_least(
                f"prompt|model|parser throughput on {backend}", rates[label].median, TARGET_RATE, fmt_rate
            )
        )
        if lc_label in rates:
            section.findings.append(
                target_at_least(
                    f"prompt|model|parser rillet/langchain on {backend}",
                    rates[label].median / rates[lc_label].median,
                    TARGET_VS_LANGCHAIN,
                    fmt_ratio,
                )
            )


def run(budget: Budget) -> Section:
    """Run scenario 1 and return its report section."""
    section = Section(KEY, "1. Throughput: astream, chunks/s")
    section.notes.append(
        "Each repetition streams the whole output once and counts the chunks; chunks/s is "
        "chunks divided by the time from the `astream` call to the end of the stream. "
        "`rillet (async for)` is the guide's bare loop (the run is hosted in a system task "
        "or loop task); `rillet (async with)` is the structured form. Hand-written "
        "pipelines: 3 tasks on bounded channels of capacity 16, stage work inline "
        "(`benchmarks/_handwritten.py`); `*-fast` use `send_nowait`/`receive_nowait` with a "
        "checkpoint every 64 operations, `*-plain` await every operation. langchain-core "
        "runs on asyncio only."
    )
    _engine_only(budget, section)
    _with_nodes(budget, section)
    return section
