"""Helpers for testing pipelines' streaming, backpressure, cancellation and events.

They import no test framework, so they work with pytest-trio, anyio's pytest plugin or
plain ``anyio.run``.
"""

from ._order import EventOrderError as EventOrderError
from ._order import check_event_order as check_event_order
from ._sources import CountingSource as CountingSource
from ._sources import GatedSource as GatedSource
from ._sources import Probe as Probe
from ._sources import RecordingSink as RecordingSink

__all__ = (
    "CountingSource",
    "EventOrderError",
    "GatedSource",
    "Probe",
    "RecordingSink",
    "check_event_order",
)
