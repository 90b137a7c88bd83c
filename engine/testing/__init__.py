"""Helpers for testing pipelines' streaming, backpressure, cancellation and events.

They import no test framework, so they work with pytest-trio, anyio's pytest plugin or
plain ``anyio.run``.
"""

from ._sources import CountingSource as CountingSource
from ._sources import GatedSource as GatedSource
from ._sources import Probe as Probe
from ._sources import RecordingSink as RecordingSink

__all__ = ("CountingSource", "GatedSource", "Probe", "RecordingSink")
