"""``with_listeners(on_start=, on_end=, on_error=)``: code called as a step starts and ends.

Built on the event path: the listened step gets one more subscriber (a
:class:`ListenerSubscription`, attached when the launch makes the step, for that step
only: its children are not made observable by it), and the step publishes to it as to
any subscriber. The subscriber turns the step's start, end and error events into
:class:`Run` records and calls the listeners with them; it keeps no stream events (a
listener gets no chunks), so the step's per-chunk cost is the one of any observed step.

* ``on_start`` is called when the start event is published (at launch, before the step
  runs), in the publishing task; an async one is awaited there.
* ``on_end``/``on_error`` are called when the step's end or error event is published,
  before the run is over (``ainvoke`` returns after them): a sync one at once, in the
  task that ended the step; an async one in a task of the run, shielded from the run's
  cancellation so that it runs even when the step's failure is cancelling the run
  (keep it short: the run waits for it).

A listener never changes the run: what it raises is logged on the ``rillet`` logger
and otherwise ignored. The wrapper has no step and no events of its own (as in
langchain-core, whose listeners are callbacks of the bound run).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import anyio
import attrs

from ._bus import EventBus, EventFilter, Subscription
from ._config import accepts_config, step_config
from ._errors import CompositionError
from ._events import Event, EventPhase, phase_of
from ._launch import Inbox, Launch, Outbox, Site
from ._runnable import Runnable
from ._step import Step
from ._wrapper import BoundWrapper

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("ListenerSubscription", "Run", "RunnableListeners")

_LOG = logging.getLogger("rillet")

#: A listener: ``listener(run)``, or ``listener(run, config=...)`` when it declares a
#: ``config`` parameter; sync or async.
Listener = Callable[..., Any]


@attrs.frozen
class Run:
    """What a listener learns about the run of the step it listens to.

    Attributes:
        id: The step's run id (what its events carry).
        name: The step's name.
        run_type: The step's kind (``"chain"``, ``"chat_model"``, ``"tool"``...).
        inputs: The input, as langchain-core's ``Run`` shows it: a dict input as it is,
            anything else as ``{"input": value}``; ``{"input": ""}`` in ``on_start`` when
            the input is not known yet (a step after another one streaming into it).
        outputs: The output, the same way (``{"output": value}``); ``None`` until it ends.
        error: The exception the step failed with (a :class:`~engine.RunCancelled` when
            it was cancelled), ``None`` otherwise. *Where we chose differently from
            langchain-core:* there it is the error's text with its traceback.
        start_time: When the step started (UTC).
        end_time: When it ended (UTC), ``None`` in ``on_start``.
        tags: The step's tags.
        metadata: The step's metadata.
        parent_run_id: The run id of the step above it, ``None`` at a run's root.
    """

    id: str
    name: str
    run_type: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    error: BaseException | None
    start_time: datetime
    end_time: datetime | None
    tags: list[str]
    metadata: dict[str, Any]
    parent_run_id: str | None


def _as_record(value: Any, key: str) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {key: value}


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


def _check_listener(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise CompositionError(
            f"with_listeners({attribute.name}=...) needs a function, got {type(value).__name__}"
        )


@attrs.frozen(eq=False, repr=False)
class RunnableListeners(BoundWrapper[In, Out]):
    """``bound`` with listeners called as its step starts, ends and fails (``with_listeners``).

    Each listener is called with a :class:`Run` (and the step's config as ``config=``
    when it declares that parameter); it may be sync or async. See the module
    ``engine._listeners`` for when each is called. The runnable's output, streaming
    and events are the bound runnable's, unchanged.

    Raises:
        CompositionError: For a listener that is not callable (at construction).
    """

    bound: Runnable[In, Out]
    on_start: Listener | None = attrs.field(default=None, validator=_check_listener)
    on_end: Listener | None = attrs.field(default=None, validator=_check_listener)
    on_error: Listener | None = attrs.field(default=None, validator=_check_listener)

    def get_name(self) -> str:
        return self.bound.get_name()

    def start_event_input(self, value: Any) -> Any:
        return self.bound.start_event_input(value)

    def with_call_arguments(self, arguments: Mapping[str, Any]) -> Self:
        """The bound runnable with ``arguments`` bound, with the same listeners."""
        return attrs.evolve(self, bound=self.bound.with_call_arguments(arguments))

    def attach(self, step: Step, launch: Launch, /) -> Subscription:
        """The subscriber that calls this runnable's listeners for ``step``."""
        return ListenerSubscription(self, step, launch)

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        self.bound._launch(launch, inbox, outbox, attrs.evolve(site, listeners=(*site.listeners, self)))

    def __repr__(self) -> str:
        return f"{self.bound!r}.with_listeners(...)"


# The bus a listener subscription belongs to: it is never published to (the step holds
# the subscription directly), so one for all of them does.
_NO_BUS = EventBus()


class ListenerSubscription(Subscription):
    """The subscriber of one listened step: it calls the listeners instead of buffering.

    Stream and custom events are taken and dropped at once (they cost no buffer).
    """

    def __init__(self, owner: RunnableListeners[Any, Any], step: Step, launch: Launch) -> None:
        super().__init__(_NO_BUS, EventFilter(), 1, "block")
        self._owner = owner
        self._step = step
        self._launch = launch
        self._start_time: datetime | None = None
        self._inputs: dict[str, Any] = {"input": ""}

    async def put(self, event: Event, on_delivered: Callable[[], None] | None = None) -> None:
        if on_delivered is not None:
            on_delivered()  # the end is owed from now on, whatever the listener does
        if phase_of(event) is not EventPhase.START:
            return
        self._start_time = datetime.now(UTC)
        data = event["data"] or {}
        if "input" in data:
            self._inputs = _as_record(data["input"], "input")
        listener = self._owner.on_start
        if listener is not None:
            run = self._run(None, None, None)
            if _is_async(listener):
                await self._call_async(listener, run)
            else:
                self._call(listener, run)

    def try_put(self, event: Event) -> bool:
        return True  # a listener gets no chunks

    def count_dropped(self) -> None:
        pass

    def put_terminal(self, event: Event) -> None:
        phase = phase_of(event)
        data = event["data"] or {}
        if "input" in data:
            self._inputs = _as_record(data["input"], "input")
        if phase is EventPhase.END:
            listener = self._owner.on_end
            run = self._run(_as_record(data.get("output"), "output"), None, datetime.now(UTC))
        elif phase is EventPhase.ERROR:
            listener = self._owner.on_error
            run = self._run(None, data.get("error"), datetime.now(UTC))
        else:
            return
        if listener is None:
            return
        if not _is_async(listener):
            self._call(listener, run)
            return
        task_group = self._launch.task_group
        if task_group is None:  # pragma: no cover - a step ends only once its launch started
            _LOG.error(
                "rillet: %s listener of %s not called: its run was not started", phase, self._step.name
            )
            return
        task_group.start_soon(self._call_async_shielded, listener, run)

    def _run(self, outputs: dict[str, Any] | None, error: Any, end_time: datetime | None) -> Run:
        step = self._step
        return Run(
            id=step.run_id,
            name=step.name,
            run_type=step.kind,
            inputs=self._inputs,
            outputs=outputs,
            error=error,
            start_time=self._start_time or datetime.now(UTC),
            end_time=end_time,
            tags=list(step.tags),
            metadata=dict(step.metadata),
            parent_run_id=step.parent.run_id if step.parent is not None else None,
        )

    def _arguments(self, listener: Listener) -> dict[str, Any]:
        return {"config": step_config(self._step)} if accepts_config(listener) else {}

    def _call(self, listener: Listener, run: Run) -> None:
        try:
            listener(run, **self._arguments(listener))
        except Exception:
            self._log(listener)

    async def _call_async(self, listener: Listener, run: Run) -> None:
        try:
            await listener(run, **self._arguments(listener))
        except Exception:
            self._log(listener)

    async def _call_async_shielded(self, listener: Listener, run: Run) -> None:
        with anyio.CancelScope(shield=True):
            await self._call_async(listener, run)

    def _log(self, listener: Listener) -> None:
        _LOG.exception(
            "a listener of %s (%s) raised; the run goes on unchanged",
            self._step.name,
            getattr(listener, "__name__", repr(listener)),
        )

    def end(self) -> None:
        pass

    def __del__(self) -> None:
        pass  # nothing is buffered, so nothing is left unread

    def __repr__(self) -> str:
        return f"<ListenerSubscription of {self._step.name}>"
