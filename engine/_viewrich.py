"""The view drawn with ``rich`` (the ``view`` extra): the same rows as the plain text,
coloured, in a table that ``rich.live.Live`` redraws in place.

Only ``engine.view`` imports this module, and only when it draws to a terminal.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._runmodel import RunModel, StepState
from ._viewrows import COLUMNS, STRIP_LIMIT, STRIP_SYMBOLS, batch_header, rows

__all__ = ("renderable",)

_STYLES = {
    StepState.WAITING: "dim",
    StepState.STREAMING: "cyan",
    StepState.DONE: "green",
    StepState.FAILED: "bold red",
    StepState.CANCELLED: "yellow",
}
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def _state(state: StepState | None, now: float) -> Text:
    if state is None:
        return Text("")
    if state is StepState.STREAMING:
        # The spinner turns with the clock, so a redraw of a streaming step always moves.
        return Text(f"{_SPINNER[int(now * 10) % len(_SPINNER)]} {state.value}", style=_STYLES[state])
    return Text(state.value, style=_STYLES[state])


def _strip(model: RunModel) -> Text:
    progress = model.progress()
    strip = Text("[")
    for run_id in model.roots:
        state = model.steps[run_id].state
        strip.append(STRIP_SYMBOLS[state], style=_STYLES[state])
    strip.append(" " * progress.not_started + "]")
    return strip


def renderable(model: RunModel, now: float, *, max_rows: int | None) -> RenderableType:
    """The view of ``model`` at ``now``: a batch's progress line, then the table."""
    parts: list[RenderableType] = []
    if model.is_batch:
        # Text.assemble, not +: a Text's own style would cover what is added to it.
        header = Text.assemble(("batch: ", "bold"), batch_header(model.progress()))
        if model.progress().total <= STRIP_LIMIT:
            header.append("  ")
            header.append_text(_strip(model))
        parts.append(header)
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold dim")
    table.add_column(COLUMNS[0], no_wrap=True, overflow="ellipsis")
    # Widths that fit what the columns will hold, so the table does not shift as a step
    # starts streaming or its counts grow.
    table.add_column(COLUMNS[1], no_wrap=True, min_width=len("⠋ streaming"))
    for column in COLUMNS[2:]:
        table.add_column(column, justify="right", no_wrap=True, min_width=6)
    table.add_column("", overflow="ellipsis", no_wrap=True, style="red")
    for row in rows(model, now, max_rows=max_rows):
        label = Text.assemble((row.guide, "dim"), (row.label, "italic dim" if row.state is None else ""))
        table.add_row(label, _state(row.state, now), row.chunks, row.tokens, row.first, row.time, row.note)
    parts.append(table if model.roots else Text("(no run seen yet)", style="dim"))
    if model.dropped:
        parts.append(Text(f"(the view lost {model.dropped} events: its buffer was full)", style="yellow"))
    return Group(*parts)
