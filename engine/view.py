"""Watching a run: a compact live view of its steps, built from its events.

::

    from engine.view import watch

    async with watch() as view:
        await chain.ainvoke({"topic": "parrots"}, config=view.config)

The view subscribes to a bus (its own, or one you pass) and keeps a :class:`RunModel` of
every run published there: a tree of steps, each with its :class:`StepState` (waiting,
streaming, done, failed, cancelled), its chunks and tokens so far, its time to first
chunk and its duration. In a terminal, with ``rich`` installed (the ``view`` extra), the
tree is redrawn in place several times a second; anywhere else (a pipe, a log, CI) it
prints one plain line per step as it ends, then the whole tree once the block ends. An
``abatch`` watched with ``watch(total=len(inputs))`` shows the batch's progress (N of M
done, failed, running, and one character per input) above the runs still going.

Times are read on the event loop's clock (``anyio.current_time()``, so trio's
``MockClock`` makes them exact in tests) when the view reads each event, within a
scheduling turn of its publication. ``watch(trace="run.json")`` also writes the runs as
a trace file (see :mod:`engine.trace`).
"""

from ._runmodel import BatchProgress as BatchProgress
from ._runmodel import RunModel as RunModel
from ._runmodel import StepRecord as StepRecord
from ._runmodel import StepState as StepState
from ._view import Display as Display
from ._view import RunView as RunView
from ._view import watch as watch
from ._viewrows import render_text as render_text

__all__ = (
    "BatchProgress",
    "Display",
    "RunModel",
    "RunView",
    "StepRecord",
    "StepState",
    "render_text",
    "watch",
)
