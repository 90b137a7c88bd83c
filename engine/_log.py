"""``astream_log``: a run's state as a stream of JSON-patch operations.

Built on the same events as ``astream_events`` (v2). The state is langchain-core's::

    {"id": root run id, "streamed_output": [root chunks...], "final_output": sum so far,
     "logs": {step name: {"id", "name", "type", "tags", "metadata", "start_time",
                          "streamed_output", "streamed_output_str", "final_output",
                          "end_time"}},
     "name": the root's name, "type": the root's type}

Step names that repeat get ``:2``, ``:3``... suffixes. The filters choose which steps
appear under ``logs``; the root's output is always streamed. ``final_output`` is updated
by the JSON-patch difference each chunk makes (a key added to a dict, an item appended
to a list; a value that changed is replaced; a stream of snapshots replaces it whole),
and the root's end adds nothing the chunks did not already say. Times are ISO 8601
strings (UTC, milliseconds); a chat model's type is ``"llm"`` (langchain-core's run
type), and its ``streamed_output_str`` holds its tokens' text.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
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
    """Apply the ``add``/``replace`` operations ``astream_log`` produces.

    The state is changed in place; the values the operations carry are copied into it,
    so a later operation never changes an earlier patch's value.
    """
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
        value = copy.deepcopy(op["value"])
        if not isinstance(target, list):
            target[last] = value
        elif last == "-":
            target.append(value)
        elif op["op"] == "add":
            target.insert(int(last), value)
        else:
            target[int(last)] = value
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
        self._snapshots = accumulation == "last"
        self._final_output: Any = None
        self._root_streamed = False
        # The steps under ``logs`` whose chunks' text is logged (chat models, llms).
        self._text_runs: set[str] = set()

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
            state: dict[str, Any] = {
                "id": event["run_id"],
                "streamed_output": [],
                "final_output": None,
                "logs": {},
                "name": event["name"],
                "type": _run_type(kind_of(event)),
            }
            return [{"op": "replace", "path": "", "value": state}]
        if event["run_id"] == self._root:
            return self._root_ops(phase, data)
        kind = kind_of(event)
        # Custom events have no kind and no place in the log's state.
        if kind is None:
            return []
        run_type = _run_type(kind)
        name = event["name"]
        if not self._logged(name, kind, run_type, tuple(event["tags"])):
            return []
        run_id = event["run_id"]
        if phase is EventPhase.START:
            count = self._counts[name] = self._counts.get(name, 0) + 1
            key = self._keys[run_id] = name if count == 1 else f"{name}:{count}"
            if run_type == "llm":
                self._text_runs.add(run_id)
            return [{"op": "add", "path": f"/logs/{_escape(key)}", "value": _entry(event, run_type)}]
        logged = self._keys.get(run_id)
        if logged is None:
            return []
        base = f"/logs/{_escape(logged)}"
        if phase is EventPhase.STREAM:
            chunk = data.get("chunk")
            ops = [{"op": "add", "path": f"{base}/streamed_output/-", "value": chunk}]
            if run_id in self._text_runs:
                text = getattr(chunk, "content", chunk)
                if isinstance(text, str):
                    ops.insert(0, {"op": "add", "path": f"{base}/streamed_output_str/-", "value": text})
            return ops
        if phase is EventPhase.END or phase is EventPhase.ERROR:
            final = data.get("output") if phase is EventPhase.END else {"error": repr(data.get("error"))}
            return [
                {"op": "add", "path": f"{base}/final_output", "value": final},
                {"op": "add", "path": f"{base}/end_time", "value": _now()},
            ]
        return []

    def _logged(self, name: str, kind: str, run_type: str, tags: tuple[str, ...]) -> bool:
        """Whether the filters keep a step: a type filter names it by its kind or by its
        run type (``"chat_model"`` or langchain-core's ``"llm"`` for a chat model)."""
        include, exclude = self._filter.include, self._filter.exclude
        if include.given and not (include.picks(name, kind, tags) or include.picks(name, run_type, tags)):
            return False
        return not (exclude.picks(name, kind, tags) or exclude.picks(name, run_type, tags))

    def _root_ops(self, phase: EventPhase, data: Any) -> list[Op]:
        if phase is EventPhase.STREAM:
            self._root_streamed = True
            return self._root_chunk(data["chunk"])
        if phase is EventPhase.END and not self._root_streamed and data.get("output") is not None:
            # A root that makes its output at once publishes no stream event (v2): its
            # one chunk is the output its end carries.
            return self._root_chunk(data["output"])
        return []

    def _root_chunk(self, chunk: Any) -> list[Op]:
        previous = self._final_output
        self._final.append(chunk)
        final = self._final_output = self._final.total()
        ops: list[Op] = [{"op": "add", "path": "/streamed_output/-", "value": chunk}]
        if previous is None or self._snapshots or final is chunk:
            # The first chunk, a snapshot, or chunks that do not add up (the sum is the
            # newest chunk): the whole value, as langchain-core replaces it.
            ops.append({"op": "replace", "path": "/final_output", "value": final})
        else:
            ops.extend(_diff("/final_output", previous, final))
        return ops


def _run_type(kind: str | None) -> str:
    """A step's type in the log: langchain-core's run type (a chat model's is ``"llm"``)."""
    return "llm" if kind == "chat_model" else kind or "chain"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _entry(event: Event, run_type: str) -> dict[str, Any]:
    return {
        "id": event["run_id"],
        "name": event["name"],
        "type": run_type,
        "tags": list(event["tags"]),
        "metadata": dict(event["metadata"]),
        "start_time": _now(),
        "streamed_output": [],
        "streamed_output_str": [],
        "final_output": None,
        "end_time": None,
    }


def _diff(path: str, old: Any, new: Any) -> list[Op]:
    """The JSON-patch operations that turn ``old`` into ``new``, where ``new`` is ``old``
    with a chunk added: keys added or changed in a dict (a sum never loses one), items
    appended to a list, and any other value that changed replaced whole."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        ops: list[Op] = []
        for key, value in new.items():
            where = f"{path}/{_escape(str(key))}"
            if key not in old:
                ops.append({"op": "add", "path": where, "value": value})
            elif old[key] is not value:
                ops.extend(_diff(where, old[key], value))
        return ops
    if isinstance(old, list) and isinstance(new, list) and len(new) >= len(old) and new[: len(old)] == old:
        return [
            {"op": "add", "path": f"{path}/{index}", "value": new[index]}
            for index in range(len(old), len(new))
        ]
    if old == new:
        return []
    return [{"op": "replace", "path": path, "value": new}]


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
