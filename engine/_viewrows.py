"""What the view shows, as rows of text: shared by the plain rendering and the rich one.

Everything here is a pure function of a :class:`RunModel` and a time, so a finished
run's rendering is exactly reproducible (tests run it under trio's mock clock).
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from ._runmodel import BatchProgress, RunModel, StepRecord, StepState

__all__ = (
    "COLUMNS",
    "STRIP_LIMIT",
    "STRIP_SYMBOLS",
    "Row",
    "batch_header",
    "batch_strip",
    "format_seconds",
    "render_text",
    "rows",
    "step_line",
)

#: The column headings, in order (the first is the tree of step names).
COLUMNS = ("step", "state", "chunks", "tokens", "first", "time")

#: One character per top-level run of a batch, in the order the runs started.
STRIP_SYMBOLS = {
    StepState.DONE: "#",
    StepState.STREAMING: ">",
    StepState.WAITING: ".",
    StepState.FAILED: "x",
    StepState.CANCELLED: "/",
}
_NOT_STARTED = " "
#: A longer batch shows its counts only.
STRIP_LIMIT = 100


@attrs.frozen
class Row:
    """One line of the table: a step, or a note standing for rows left out."""

    guide: str
    label: str
    state: StepState | None = None
    chunks: str = ""
    tokens: str = ""
    first: str = ""
    time: str = ""
    note: str = ""

    def cells(self) -> tuple[str, ...]:
        """The cells under :data:`COLUMNS` (the tree guide and label as one)."""
        state = "" if self.state is None else self.state.value
        return (self.guide + self.label, state, self.chunks, self.tokens, self.first, self.time)


def format_seconds(seconds: float | None) -> str:
    """A short duration: ``"40ms"``, ``"1.25s"``, ``"12.5s"``, ``"2m05s"``; ``"-"`` for none."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _tokens(model: RunModel, record: StepRecord) -> str:
    tokens = model.tokens(record.run_id)
    return "-" if tokens is None else f"{tokens[0]}/{tokens[1]}"


def _label(model: RunModel, record: StepRecord, numbered: bool) -> str:
    label = f"#{record.number} {record.name}" if numbered else record.name
    parent = model.steps.get(record.parent_id) if record.parent_id is not None else None
    # Only where the attempt changes: the steps under an attempt inherit its metadata.
    if record.attempt is not None and (parent is None or parent.attempt != record.attempt):
        label += f" (attempt {record.attempt})"
    return label


def _row(model: RunModel, record: StepRecord, guide: str, now: float, numbered: bool) -> Row:
    return Row(
        guide=guide,
        label=_label(model, record, numbered),
        state=record.state,
        chunks=str(record.chunks),
        tokens=_tokens(model, record),
        first=format_seconds(record.time_to_first_chunk),
        time=format_seconds(record.duration(now)),
        note=record.error or "",
    )


def _tree(model: RunModel, run_id: str, now: float, numbered: bool) -> Iterator[Row]:
    # Depth first with explicit guides: "├─ " for a child with siblings after it, "└─ "
    # for the last, and "│  " / "   " carried down under each.
    root = model.steps[run_id]
    yield _row(model, root, "", now, numbered)
    stack: list[tuple[str, str, bool]] = [
        (child, "", index == len(root.children) - 1) for index, child in enumerate(root.children)
    ]
    stack.reverse()
    while stack:
        child_id, carried, last = stack.pop()
        record = model.steps[child_id]
        yield _row(model, record, carried + ("└─ " if last else "├─ "), now, False)
        below = carried + ("   " if last else "│  ")
        children = record.children
        stack.extend((c, below, i == len(children) - 1) for i, c in reversed(list(enumerate(children))))


def rows(model: RunModel, now: float, *, max_rows: int | None = None) -> list[Row]:
    """The table's rows: each run's tree of steps.

    In a batch (:attr:`RunModel.is_batch`) the runs are numbered in the order they
    started, and a finished run is one row. With ``max_rows``, finished runs that
    succeeded are left out first (oldest first), then the last rows, each cut noted in
    a row of its own.
    """
    batch = model.is_batch
    trees = {
        run_id: list(_tree(model, run_id, now, batch))
        for run_id in model.roots
        if not (batch and model.steps[run_id].state.finished)
    }
    done = model.progress().done if batch else 0
    count = sum(map(len, trees.values())) + (len(model.roots) - len(trees))
    hide = 0
    if max_rows is not None and count > max_rows:
        hide = min(done, count - max(max_rows - 1, 1))  # one row says what was left out
    out = [Row("", f"... {hide} finished run{'s' if hide != 1 else ''} not shown")] if hide else []
    for run_id in model.roots:
        tree = trees.get(run_id)
        if tree is not None:
            out.extend(tree)
            continue
        record = model.steps[run_id]
        if hide and record.state is StepState.DONE:
            hide -= 1  # only a count: a long batch's hidden runs build no row
        else:
            out.append(_row(model, record, "", now, True))
    if max_rows is not None and len(out) > max_rows:
        cut = len(out) - max_rows + 1
        out = [*out[: max_rows - 1], Row("", f"... {cut} more row{'s' if cut != 1 else ''}")]
    return out


def batch_strip(model: RunModel) -> str:
    """One character per top-level run (``#`` done, ``>`` streaming, ``.`` waiting, ``x``
    failed, ``/`` cancelled, a space for not started), or ``""`` past 100 runs."""
    progress = model.progress()
    if progress.total > STRIP_LIMIT:
        return ""
    seen = "".join(STRIP_SYMBOLS[model.steps[run_id].state] for run_id in model.roots)
    return f"[{seen}{_NOT_STARTED * progress.not_started}]"


def batch_header(progress: BatchProgress) -> str:
    """``"3 of 10 done, 1 failed, 4 running, 2 queued"`` (cancelled and queued only when some)."""
    parts = [f"{progress.done} of {progress.total} done", f"{progress.failed} failed"]
    if progress.cancelled:
        parts.append(f"{progress.cancelled} cancelled")
    parts.append(f"{progress.streaming + progress.waiting} running")
    if progress.not_started:
        parts.append(f"{progress.not_started} queued")
    return ", ".join(parts)


def _table(table_rows: list[Row], width: int) -> list[str]:
    cells = [COLUMNS, *(row.cells() for row in table_rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    # The step column gives way when the line would be too wide; the rest keep their size.
    fixed = sum(widths[1:]) + 2 * (len(COLUMNS) - 1)
    widths[0] = max(min(widths[0], width - fixed), len(COLUMNS[0]))
    lines = []
    for line, row in zip(cells, [None, *table_rows], strict=True):
        step = _clip(line[0], widths[0])
        text = "  ".join(
            [
                step.ljust(widths[0]),
                line[1].ljust(widths[1]),
                *(c.rjust(w) for c, w in zip(line[2:], widths[2:], strict=True)),
            ]
        )
        if row is not None and row.note:
            text += "  " + row.note
        lines.append(text.rstrip())
    return lines


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def render_text(model: RunModel, now: float, *, width: int = 100, max_rows: int | None = None) -> str:
    """The view as plain text: the batch's progress (for a batch), the table, and a
    note of events the subscriber lost, if any. No trailing newline."""
    lines: list[str] = []
    if model.is_batch:
        strip = batch_strip(model)
        header = "batch: " + batch_header(model.progress())
        lines.append(f"{header}  {strip}" if strip else header)
    if model.roots:
        lines.extend(_table(rows(model, now, max_rows=max_rows), width))
    else:
        lines.append("(no run seen yet)")
    if model.dropped:
        lines.append(f"(the view lost {model.dropped} events: its buffer was full)")
    return "\n".join(lines)


def step_line(model: RunModel, record: StepRecord, now: float) -> str:
    """One line for a step that just ended, for a log: its state, place and figures."""
    if model.is_batch and record.parent_id is None:
        progress = model.progress()
        label = f"[{progress.finished}/{progress.total}] {_label(model, record, True)}"
    else:
        label = "  " * record.depth + _label(model, record, False)
    chunks = f"{record.chunks} chunk{'s' if record.chunks != 1 else ''}"
    parts = [f"{record.state.value:<9}", label, chunks]
    if model.tokens(record.run_id) is not None:
        parts.append(f"{_tokens(model, record)} tokens")
    parts.append(f"first {format_seconds(record.time_to_first_chunk)}")
    parts.append(f"time {format_seconds(record.duration(now))}")
    if record.error:
        parts.append(record.error)
    return "  ".join(parts)
