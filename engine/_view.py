"""The view of runs on a bus (``engine.view``'s ``watch``, ``engine.trace``'s ``record_trace``):
a subscriber task feeds a :class:`RunModel`, a second task redraws it with ``rich``
(``_viewrich``) or it prints plain lines (``_viewrows``), and the trace is written
(``_tracefile``) when the block ends."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TextIO

import anyio
import attrs

from ._background import background_tasks
from ._bus import EventBus, Overflow, Subscription, SubscriptionStatistics
from ._runmodel import RunModel
from ._tracefile import write_trace
from ._viewrows import render_text, step_line

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

__all__ = ("Display", "RunView", "record_trace", "watch")

#: How the view is drawn: ``"live"`` (redrawn in place with ``rich``), ``"lines"`` (a
#: plain line per step as it ends, then the tree), ``"none"`` (only the model, and the
#: trace if asked), or ``"auto"``: live in a terminal when ``rich`` is installed, else lines.
Display = Literal["auto", "live", "lines", "none"]

_DISPLAYS = ("auto", "live", "lines", "none")
_PLAIN_WIDTH = 100


@attrs.define(eq=False)
class RunView:
    """A view of the runs on a bus, as :func:`watch` yields it.

    Attributes:
        bus: The bus it subscribes to: run what you watch with ``config=view.config``
            (or ``{"bus": view.bus}`` in a config of your own).
        model: What it has seen so far (updated as events arrive).
        display: How it draws: ``"live"``, ``"lines"`` or ``"none"`` (``"auto"`` resolved).
    """

    bus: EventBus
    model: RunModel
    display: Literal["live", "lines", "none"]
    _out: TextIO
    _width: int
    _max_rows: int | None
    _subscription: Subscription
    _live: Live | None = None

    @property
    def config(self) -> dict[str, Any]:
        """A run config attaching the view's bus: ``chain.ainvoke(x, config=view.config)``."""
        return {"bus": self.bus}

    def text(self, now: float | None = None) -> str:
        """The view as plain text at ``now`` (default: when the last event was seen, so
        a finished run's text does not depend on when it is asked for)."""
        if now is None:
            now = self.model.last_seen if self.model.last_seen is not None else 0.0
        return render_text(self.model, now, width=self._width)

    def statistics(self) -> SubscriptionStatistics:
        """The view's subscription: events delivered, dropped, buffered."""
        return self._subscription.statistics()

    # -- inside watch() ----------------------------------------------------------------

    def _take(self, event: Any, now: float) -> None:
        record = self.model.apply(event, now)
        # A log line per ended step; in a batch, per ended run only.
        if (
            self.display == "lines"
            and record is not None
            and record.state.finished
            and record.ended == now
            and (record.parent_id is None or not self.model.is_batch)
        ):
            self._print(step_line(self.model, record, now))

    async def _read(self) -> None:
        async for event in self._subscription:
            self._take(event, anyio.current_time())

    def _drain(self) -> None:
        # What the runs published before the block ended and the reader did not get to.
        now = anyio.current_time()
        while events := self._subscription.receive_available(1024):
            for event in events:
                self._take(event, now)

    async def _redraw(self, period: float) -> None:
        assert self._live is not None
        while True:
            self._live.refresh()
            await anyio.sleep(period)

    def _renderable(self) -> Any:
        from ._viewrich import renderable

        # Called by rich.Live.refresh, which only the view calls, on the loop.
        return renderable(self.model, anyio.current_time(), max_rows=self._max_rows)

    def _print(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def _finish(self) -> None:
        if self._live is not None:
            self._live.stop()  # draws the last frame, whole, and leaves it on screen
        elif self.display == "lines":
            self._print(render_text(self.model, anyio.current_time(), width=self._width))


@contextlib.asynccontextmanager
async def watch(
    bus: EventBus | None = None,
    *,
    total: int | None = None,
    display: Display = "auto",
    out: TextIO | None = None,
    trace: str | os.PathLike[str] | None = None,
    refresh_per_second: float = 8.0,
    width: int | None = None,
    max_rows: int | None = None,
    capacity: int = 1024,
    overflow: Overflow | None = None,
) -> AsyncIterator[RunView]:
    """Watch the runs published on ``bus`` while the block runs.

    Args:
        bus: The bus to watch; by default a new one (``view.config`` attaches it).
        total: How many top-level runs to expect: ``len(inputs)`` of an ``abatch``, for
            its progress (N of M done).
        display: ``"auto"``, ``"live"``, ``"lines"`` or ``"none"`` (see :data:`Display`).
        out: Where to draw (default ``sys.stdout``).
        trace: A path: when the block ends, write every run seen there as a Chrome /
            Perfetto trace (see :mod:`engine.trace`).
        refresh_per_second: How often the live view is redrawn.
        width: The width to draw in (default: the terminal's; 100 for plain lines).
        max_rows: At most this many rows of steps in the live view (default: the
            terminal's height less a few); finished runs of a batch go first.
        capacity: The view's event buffer.
        overflow: ``"drop"`` (default without ``trace``: the view never slows the
            runs, and says how many events it lost) or ``"block"`` (default with
            ``trace``: lossless).

    Raises:
        ValueError: For an unknown ``display``, a ``refresh_per_second`` that is not
            positive, a ``width`` or ``max_rows`` below 2, or a bad ``total``,
            ``capacity`` or ``overflow`` (at once, before anything is watched).
        FileNotFoundError: For a ``trace`` path in a directory that does not exist (at once).
        ImportError: For ``display="live"`` without ``rich`` (``pip install 'rillet[view]'``).
    """
    view = _open(bus, total, display, out, trace, refresh_per_second, width, max_rows, capacity, overflow)

    async def finish() -> None:
        # However the block ended (a failed or cancelled run is the one most worth
        # seeing), the last events are read, the last frame drawn and the trace written.
        try:
            view._drain()
            view._finish()
        finally:
            await view._subscription.aclose()
            if trace is not None:
                await anyio.to_thread.run_sync(write_trace, view.model, trace)

    live = view._live
    tasks = [view._read] if live is None else [view._read, partial(view._redraw, 1 / refresh_per_second)]
    async with background_tasks(*tasks, finish=finish, started=None if live is None else live.start):
        yield view


def _open(
    bus: EventBus | None,
    total: int | None,
    display: Display,
    out: TextIO | None,
    trace: str | os.PathLike[str] | None,
    refresh_per_second: float,
    width: int | None,
    max_rows: int | None,
    capacity: int,
    overflow: Overflow | None,
) -> RunView:
    if display not in _DISPLAYS:
        raise ValueError(f"unknown display {display!r}; use one of {', '.join(_DISPLAYS)}")
    if isinstance(refresh_per_second, bool) or not (
        isinstance(refresh_per_second, int | float) and refresh_per_second > 0
    ):
        raise ValueError(f"refresh_per_second must be a number > 0, got {refresh_per_second!r}")
    for name, value in (("width", width), ("max_rows", max_rows)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
            raise ValueError(f"{name} must be an int >= 2 or None, got {value!r}")
    if trace is not None:
        directory = os.path.dirname(os.fspath(trace)) or "."
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f"trace={os.fspath(trace)!r}: there is no directory {directory!r} to write it in"
            )
    model = RunModel(total=total, keep_chunk_times=trace is not None)
    stream = sys.stdout if out is None else out
    if overflow is None:
        overflow = "drop" if trace is None else "block"
    console = _console_for(stream, display, width)
    resolved: Literal["live", "lines", "none"] = (
        "live" if console is not None else "none" if display == "none" else "lines"
    )
    if bus is None:
        bus = EventBus()
    subscription = bus.subscribe(capacity=capacity, overflow=overflow)
    if console is not None and max_rows is None:
        max_rows = max(console.height - 4, 2)
    view = RunView(bus, model, resolved, stream, width or _PLAIN_WIDTH, max_rows, subscription)
    if console is not None:
        from rich.live import Live

        # Redrawn by the view's own task, on the event loop: rich's refresh thread would
        # read the model while the loop changes it.
        # What the program prints meanwhile goes above the view, when both share a terminal.
        shared = stream is sys.stdout or stream is sys.stderr
        view._live = Live(
            console=console,
            auto_refresh=False,
            get_renderable=view._renderable,
            redirect_stdout=shared,
            redirect_stderr=shared,
        )
    return view


def _console_for(out: TextIO, display: Display, width: int | None) -> Console | None:
    """A ``rich`` console on ``out`` when a live view is wanted (and possible), else ``None``."""
    if display in ("lines", "none"):
        return None
    try:
        from rich.console import Console
    except ImportError:
        if display == "live":
            raise ImportError(
                "display='live' draws with rich, which is not installed: pip install 'rillet[view]'"
            ) from None
        return None
    console = Console(file=out, width=width)
    if display == "auto" and not (_isatty(out) and console.is_terminal and not console.is_dumb_terminal):
        # Not a terminal (rich alone would take FORCE_COLOR for one, and write cursor
        # moves into a pipe), or one that cannot move the cursor.
        return None
    return console


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except ValueError:  # closed
        return False


@contextlib.asynccontextmanager
async def record_trace(
    path: str | os.PathLike[str],
    bus: EventBus | None = None,
    *,
    capacity: int = 1024,
    overflow: Overflow = "block",
) -> AsyncIterator[RunView]:
    """Record the runs published on ``bus`` while the block runs; write them to ``path``
    as a trace when it ends (even when it raises: a failed run is worth a look).

    The yielded view draws nothing (``display="none"``); run what you trace with
    ``config=view.config``.

    Args:
        path: The trace file to write.
        bus: The bus to record; by default a new one.
        capacity: The recorder's event buffer.
        overflow: ``"block"`` (default: every event is in the trace) or ``"drop"``
            (the runs never wait for the recorder; the file counts what it lost in
            ``otherData.dropped_events``).
    """
    async with watch(bus, display="none", trace=path, capacity=capacity, overflow=overflow) as view:
        yield view
