"""A finished run as a trace file for Perfetto or ``chrome://tracing``.

::

    from engine.trace import record_trace

    async with record_trace("run.json") as view:
        await chain.ainvoke({"topic": "parrots"}, config=view.config)

Then open ``run.json`` at https://ui.perfetto.dev (or in ``chrome://tracing``): each run
is a process, each step a track of its own (in tree order) holding one slice from its
start to its end, and each chunk an instant mark on its step's track, so you see which
steps overlap, where the first token came, and where a run waited. The file is the
trace-event JSON format (``{"traceEvents": [...]}``, times in microseconds).

``watch(trace="run.json")`` writes the same file while showing the live view;
:func:`trace_events` and :func:`write_trace` turn any :class:`~engine.view.RunModel`
(kept with ``keep_chunk_times=True`` for the chunk marks) into one.
"""

from ._tracefile import trace_events as trace_events
from ._tracefile import write_trace as write_trace
from ._view import record_trace as record_trace

__all__ = ("record_trace", "trace_events", "write_trace")
