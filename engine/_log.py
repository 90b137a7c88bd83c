"""``astream_log``: a run's state as a stream of JSON-patch operations.

Built on the same events as ``astream_events``. The state is::

    {"id": root run id, "streamed_output": [root chunks...], "final_output": sum so far,
     "logs": {step name: {"id", "name", "type", "tags", "metadata", "start_time",
                          "streamed_output", "final_output", "end_time"}}}

Step names that repeat get ``:2``, ``:3``... suffixes. The filters choose which steps
appear under ``logs``; the root's output is always streamed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._bus import EventFilter, EventFilterArgs
from ._chunks import ChunkSum
from ._events import Event, EventPhase, kind_of, phase_of
from ._run import RunStream

if TYPE_CHECKING:
    from ._edge import Accumulation
    from ._runnable import Config, Runnable

__all__ = ("RunLog", "RunLogPatch", "RunLogStream", "stream_log")

Op = dict[str, Any]


class RunLogPatch:
    """Some JSON-patch operations on the run's state (``RunLogPatch(*ops)``)."""

    __slots__ = ("ops",)

    def __init__(self, *ops: Op) -> None:
        self.ops: tuple[Op, ...] = ops

    def __add__(self, other: RunLogPatch) -> RunLog:
        if not isinstance(other, RunLogPatch):
            return NotImplemented
        state = apply_ops(None, self.ops)
        return RunLog(*self.ops, *other.ops, state=apply_ops(state, other.ops))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunLogPatch) and type(other) is type(self) and other.ops == self.ops

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RunLogPatch({', '.join(repr(op) for op in self.ops)})"


class RunLog(RunLogPatch):
    """The operations so far and the state they build (``diff=False`` yields these)."""

    __slots__ = ("state",)

    def __init__(self, *ops: Op, state: Any) -> None:
        super().__init__(*ops)
        self.state = state

    def __add__(self, other: RunLogPatch) -> RunLog:
        if not isinstance(other, RunLogPatch):
            return NotImplemented
        return RunLog(*self.ops, *other.ops, state=apply_ops(copy.deepcopy(self.state), other.ops))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunLog) and other.ops == self.ops and other.state == self.state

    __hash__ = None

    def __repr__(self) -> str:
        return f"RunLog({self.state!r})"


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def apply_ops(state: Any, ops: Sequence[Op]) -> Any:
    """Apply the ``add``/``replace`` operations ``astream_log`` produces, in place."""
    for op in ops:
        path = op["path"]
        if path == "":
            state = copy.deepcopy(op["value"])
            continue
        tokens = [_unescape(t) for t in path.split("/")[1:]]
        target = state
        for token in tokens[:-1]:
            target = target[int(token)] if isinstance(target, list) else target[token]
        last = tokens[-1]
        if isinstance(target, list):
            if last == "-":
                target.append(op["value"])
            else:
                target[int(last)] = op["value"]
        else:
            target[last] = op["value"]
    return state


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


class RunLogStream:
    """The patches (or cumulative logs) of one run; iterate it, or use ``async with``."""

    def __init__(
        self,
        events: RunStream[Event],
        diff: bool,
        log_filter: EventFilter,
        accumulation: Accumulation = "add",
    ) -> None:
        self._events = events
        self._diff = diff
        self._filter = log_filter
        self._state: Any = None
        self._ops: list[Op] = []
        self._root: str | None = None
        self._keys: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        # The root's output so far (snapshots replace each other, other chunks add up).
        self._final = ChunkSum(accumulation)
        self._pending: list[RunLogPatch] = []

    async def __aenter__(self) -> RunLogStream:
        await self._events.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return await self._events.__aexit__(exc_type, exc, tb)

    def __aiter__(self) -> RunLogStream:
        return self

    async def __anext__(self) -> RunLogPatch:
        while True:
            event = await self._events.__anext__()
            ops = self._ops_for(event)
            if not ops:
                continue
            if self._diff:
                return RunLogPatch(*ops)
            self._state = apply_ops(self._state, ops)
            self._ops.extend(ops)
            return RunLog(*self._ops, state=copy.deepcopy(self._state))

    async def aclose(self) -> None:
        """Stop the run."""
        await self._events.aclose()

    def _ops_for(self, event: Event) -> list[Op]:
        phase = phase_of(event)
        data = event["data"]
        if self._root is None:
            self._root = event["run_id"]
            return [
                {
                    "op": "replace",
                    "path": "",
                    "value": {"id": event["run_id"], "streamed_output": [], "final_output": None, "logs": {}},
                }
            ]
        if event["run_id"] == self._root:
            if phase is EventPhase.STREAM:
                self._final.append(data["chunk"])
                return [
                    {"op": "add", "path": "/streamed_output/-", "value": data["chunk"]},
                    {"op": "replace", "path": "/final_output", "value": self._final.total()},
                ]
            if phase is EventPhase.END:
                return [{"op": "replace", "path": "/final_output", "value": data.get("output")}]
            return []
        kind = kind_of(event)
        # Custom events have no kind and no place in the log's state.
        if kind is None or not self._filter.matches(event["name"], kind, tuple(event["tags"])):
            return []
        run_id = event["run_id"]
        if phase is EventPhase.START:
            name = event["name"]
            count = self._counts[name] = self._counts.get(name, 0) + 1
            key = self._keys[run_id] = name if count == 1 else f"{name}:{count}"
            return [
                {
                    "op": "add",
                    "path": f"/logs/{_escape(key)}",
                    "value": {
                        "id": run_id,
                        "name": name,
                        "type": kind,
                        "tags": list(event["tags"]),
                        "metadata": dict(event["metadata"]),
                        "start_time": time.time(),
                        "streamed_output": [],
                        "final_output": None,
                        "end_time": None,
                    },
                }
            ]
        logged = self._keys.get(run_id)
        if logged is None:
            return []
        base = f"/logs/{_escape(logged)}"
        if phase is EventPhase.STREAM:
            return [{"op": "add", "path": f"{base}/streamed_output/-", "value": data.get("chunk")}]
        if phase is EventPhase.END or phase is EventPhase.ERROR:
            final = data.get("output") if phase is EventPhase.END else {"error": repr(data.get("error"))}
            return [
                {"op": "add", "path": f"{base}/final_output", "value": final},
                {"op": "add", "path": f"{base}/end_time", "value": time.time()},
            ]
        return []


def stream_log(
    runnable: Runnable[Any, Any],
    input: Any,
    config: Config,
    *,
    diff: bool,
    filters: EventFilterArgs,
) -> RunLogStream:
    """The run's state as patches; see :class:`RunLogStream`."""
    log_filter = EventFilter.of(filters)
    events = runnable.astream_events(input, config)
    return RunLogStream(events, diff, log_filter, runnable.output_accumulation)
