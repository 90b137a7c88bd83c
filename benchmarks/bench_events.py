"""Scenario 2: ``astream_events(version="v2")`` throughput and how it grows with length.

For each stream length, tokens/s (chunks the chain's last step produced per second)
and events/s (event dicts the consumer received per second). Growth is the time per
token at the longest length divided by the time per token at the shortest: 1.00 means
the cost per token does not depend on the stream's length (linear total work).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

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
    Backend,
    Budget,
    Contender,
    Section,
    Table,
    fmt_count,
    fmt_rate,
    fmt_ratio,
    run_alternating,
    stat,
    target_at_least,
    target_at_most,
)
from ._measures import Form, stream_measure

__all__ = ("run",)

KEY = "events"


def _variant(
    budget: Budget,
    section: Section,
    *,
    title: str,
    sizes: list[int],
    rillet: Callable[[int], Any],
    rillet_input: Callable[[int], Any],
    langchain: Callable[[int], Any] | None,
    langchain_input: Callable[[int], Any],
    reps: int,
    target_rate: float | None = None,
) -> None:
    contenders: list[Contender] = []
    sides: list[tuple[str, Backend, Callable[[int], Any], Callable[[int], Any], Form]] = [
        (f"rillet [{b}]", b, rillet, rillet_input, "bare") for b in budget.backends
    ]
    if langchain is not None:
        sides.append(("langchain-core [asyncio]", "asyncio", langchain, langchain_input, "langchain"))
    for size in sizes:
        for side, backend, make, make_input, form in sides:
            contenders.append(
                Contender(
                    f"{side} {size}",
                    backend,
                    stream_measure(functools.partial(make, size), make_input(size), form=form, events=True),
                    warmup=stream_measure(
                        functools.partial(make, 100), make_input(100), form=form, events=True
                    ),
                )
            )
    samples = run_alternating(contenders, reps, name=f"events {title}")
    table = Table(
        ["side", "tokens", "events", "median tokens/s", "median events/s", "tokens/s min", "tokens/s max"],
        caption=f"{title}, {reps} reps",
    )
    per_token: dict[tuple[str, int], float] = {}
    events_rate: dict[tuple[str, int], float] = {}
    for side, *_ in sides:
        for size in sizes:
            figures = samples[f"{side} {size}"]
            tokens = stat([size / s for s in figures["seconds"]])
            events = stat([n / s for n, s in zip(figures["items"], figures["seconds"], strict=True)])
            per_token[side, size] = 1 / tokens.median
            events_rate[side, size] = events.median
            table.add(
                side,
                fmt_count(size),
                fmt_count(figures["items"][0]),
                fmt_rate(tokens.median),
                fmt_rate(events.median),
                fmt_rate(tokens.low),
                fmt_rate(tokens.high),
            )
    section.tables.append(table)
    lc = "langchain-core [asyncio]"
    for side, *_ in sides:
        growth = per_token[side, sizes[-1]] / per_token[side, sizes[0]]
        line = f"{title}: {side} growth (time per token at {sizes[-1]:,} / at {sizes[0]:,}) = {growth:.2f}"
        if side != lc and langchain is not None:
            ratios = ", ".join(
                f"{fmt_ratio(per_token[lc, size] / per_token[side, size])} at {size:,}" for size in sizes
            )
            line += f"; tokens/s vs langchain-core: {ratios}"
        section.findings.append(line)
        if target_rate is not None and side != lc:
            section.findings.append(
                target_at_least(
                    f"{title} tokens/s at {sizes[-1]:,} on {side}",
                    1 / per_token[side, sizes[-1]],
                    target_rate,
                    fmt_rate,
                )
            )
            if langchain is not None:
                section.findings.append(
                    target_at_least(
                        f"{title} {side} / langchain-core at {sizes[-1]:,}",
                        per_token[lc, sizes[-1]] / per_token[side, sizes[-1]],
                        10.0,
                        lambda v: f"{v:.1f}x",
                    )
                )


def _bus_measure(tokens: int, with_bus: bool) -> Callable[[], Any]:
    """Time one ``astream`` of prompt|model|parser, with or without a non-matching bus."""

    async def measure() -> dict[str, float]:
        from engine import EventBus

        chain = rillet_prompt_chain(tokens)
        count = 0
        if with_bus:
            bus = EventBus()
            async with bus.subscribe(include_names=["no-step-has-this-name"]) as subscription:
                started = time.perf_counter()
                async for _ in chain.astream(PROMPT_INPUT, {"bus": bus}):
                    count += 1
                seconds = time.perf_counter() - started
                assert subscription.statistics().delivered == 0
        else:
            started = time.perf_counter()
            async for _ in chain.astream(PROMPT_INPUT):
                count += 1
            seconds = time.perf_counter() - started
        return {"seconds": seconds, "items": count}

    return measure


def _bus_without_match(budget: Budget, section: Section) -> None:
    """astream with a bus whose only subscriber matches nothing, against no bus at all."""
    tokens = 2_000 if budget.quick else 10_000
    contenders = [
        Contender(f"{label} [{b}]", b, _bus_measure(tokens, with_bus), warmup=_bus_measure(100, with_bus))
        for b in budget.backends
        for label, with_bus in (("no bus", False), ("bus, no matching subscriber", True))
    ]
    samples = run_alternating(contenders, budget.reps(11, 3), name="events bus-without-match")
    table = Table(
        ["side", "tokens", "median tokens/s", "min", "max"],
        caption=f"astream of prompt | model | StrOutputParser, {tokens:,} tokens, with and without a bus",
    )
    for contender in contenders:
        figures = samples[contender.label]
        rates = stat([tokens / s for s in figures["seconds"]])
        table.add(
            contender.label,
            fmt_count(tokens),
            fmt_rate(rates.median),
            fmt_rate(rates.low),
            fmt_rate(rates.high),
        )
    section.tables.append(table)
    for b in budget.backends:
        # Both sides run once in every round of the rotation: the median of the rounds'
        # ratios is steadier on a shared machine than the ratio of the two medians.
        plain = samples[f"no bus [{b}]"]["seconds"]
        with_bus = samples[f"bus, no matching subscriber [{b}]"]["seconds"]
        ratios = stat([w / p for w, p in zip(with_bus, plain, strict=True)])
        section.findings.append(
            target_at_most(
                f"astream time with a non-matching bus / without a bus on {b} (median of {ratios.count} rounds)",
                ratios.median,
                1.10,
                lambda v: f"{v:.2f}x",
            )
        )


def run(budget: Budget) -> Section:
    """Run scenario 2 and return its report section."""
    section = Section(KEY, "2. astream_events (v2): tokens/s, events/s, growth")
    section.notes.append(
        'Each repetition consumes `astream_events(x, version="v2")` to the end with a bare '
        "`async for`. tokens = chunks produced by the chain's last step; events = every event "
        "dict received (start/stream/end of the chain and of each step). Growth = (time per "
        "token at the longest stream) / (time per token at the shortest); 1.00 is linear."
    )
    missing_lc = langchain_missing()
    if missing_lc is not None:
        section.skipped.append(missing_lc)
    sizes = [1_000, 2_000, 4_000] if budget.quick else [1_000, 4_000, 10_000]
    _variant(
        budget,
        section,
        title="Engine only: 3-step generator chain",
        sizes=sizes,
        rillet=lambda _size: rillet_chain(3),
        rillet_input=lambda size: size,
        langchain=(lambda _size: langchain_chain(3)) if missing_lc is None else None,
        langchain_input=lambda size: size,
        reps=budget.reps(5, 2),
    )
    reason = nodes_status()
    if reason is not None:
        section.skipped.append(f"prompt | model | parser: {reason}")
        return section
    _bus_without_match(budget, section)
    _variant(
        budget,
        section,
        title="prompt | model | StrOutputParser",
        sizes=[500, 1_000, 2_000] if budget.quick else [1_000, 4_000, 10_000],
        rillet=rillet_prompt_chain,
        rillet_input=lambda _size: PROMPT_INPUT,
        langchain=langchain_prompt_chain if missing_lc is None else None,
        langchain_input=lambda _size: PROMPT_INPUT,
        reps=budget.reps(4, 1),
        target_rate=80_000.0,
    )
    return section
