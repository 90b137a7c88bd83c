"""Helpers for testing pipelines' streaming, backpressure, cancellation and events.

They import no test framework, so they work with pytest-trio, anyio's pytest plugin or
plain ``anyio.run``.
"""

from ._cleanup import RunLeftovers as RunLeftovers
from ._cleanup import assert_run_cleaned_up as assert_run_cleaned_up
from ._cleanup import cleanup_guard as cleanup_guard
from ._cleanup import rillet_tasks as rillet_tasks
from ._order import EventOrderError as EventOrderError
from ._order import check_event_order as check_event_order
from ._sources import CountingSource as CountingSource
from ._sources import GatedSource as GatedSource
from ._sources import Probe as Probe
from ._sources import ProbeRecord as ProbeRecord
from ._sources import RecordingSink as RecordingSink
from ._wait_points import observe_wait_points as observe_wait_points

__all__ = (
    "CountingSource",
    "EventOrderError",
    "GatedSource",
    "Probe",
    "ProbeRecord",
    "RecordingSink",
    "RunLeftovers",
    "assert_run_cleaned_up",
    "check_event_order",
    "cleanup_guard",
    "observe_wait_points",
    "rillet_tasks",
)
