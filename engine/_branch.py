"""``RunnableBranch``: run the first branch whose condition holds for the input.

``RunnableBranch((condition, runnable), ..., default)`` as in langchain-core. The step
aggregates its input, evaluates the conditions on the whole input in order, then runs
the chosen runnable (the default when none holds) on that input.

**The chosen branch is launched in place.** Once the route is known, the branch's actor
launches the chosen runnable's graph into the run's own task group, under the branch's
step, writing straight to the branch's outbox: its steps are the run's steps (their
events nest under the branch, tagged ``branch:1``... or ``branch:default``), its chunks
flow downstream as they come, and the branch adds nothing per chunk. (The other way,
hosting the branch as a nested run and re-sending each chunk, costs an edge, a task
hop and a send per chunk, and a nested run per call.)

**The route is decided before the commit point.** Conditions run before the chosen
branch starts and produce no output, so a wrapper that retries or falls back before the
first content chunk (``with_retry``, ``with_fallbacks``) wraps a branch as it wraps any
step: an attempt routes again.

Conditions are functions (sync ones run in a worker thread, as a lambda step does;
async ones in the step; an awaitable result is awaited) or runnables, run as nested
runs under the branch step (tagged ``condition:1``...) whose summed output's truth
decides. An error in a condition is the branch step's error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from ._actors import aggregate
from ._config import RunConfig
from ._edge import Accumulation, ConstantInbox
from ._errors import CompositionError
from ._functions import coerce_runnable, run_in_worker_thread
from ._launch import Inbox, Launch, Outbox, Site, TapOutbox
from ._runnable import Runnable
from ._step import Step

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("RunnableBranch",)

#: A branch's condition: a function of the input (sync or async), or a runnable.
Condition = Runnable[Any, Any] | Callable[[Any], Any]


def _condition(thing: object, position: int) -> Condition:
    if isinstance(thing, Runnable):
        return thing
    if not callable(thing):
        raise CompositionError(
            f"the condition of RunnableBranch pair {position} must be a function or a runnable, "
            f"got {type(thing).__name__} {thing!r}"
        )
    if inspect.isgeneratorfunction(thing) or inspect.isasyncgenfunction(thing):
        raise CompositionError(
            f"the condition of RunnableBranch pair {position} is a generator function; a "
            "condition must return a value whose truth picks the branch"
        )
    return thing


def _pair(thing: object, position: int) -> tuple[Condition, Runnable[Any, Any]]:
    if not isinstance(thing, tuple | list) or len(thing) != 2:
        shown = (
            f"{type(thing).__name__} of length {len(thing)}"
            if isinstance(thing, tuple | list)
            else repr(thing)
        )
        raise CompositionError(
            f"RunnableBranch argument {position} must be a (condition, runnable) pair, got {shown}"
        )
    condition, runnable = thing
    return _condition(condition, position), coerce_runnable(runnable, where=f"RunnableBranch pair {position}")


def _same_accumulation(targets: list[tuple[str, Runnable[Any, Any]]]) -> Accumulation:
    """The one way every branch's output adds up (steps downstream must know it before the run)."""
    kinds = {label: target.output_accumulation for label, target in targets}
    if len(set(kinds.values())) > 1:
        shown = ", ".join(f"{label} ({target.get_name()}): {kinds[label]!r}" for label, target in targets)
        raise CompositionError(
            "the branches of a RunnableBranch must add up their output the same way, since the "
            f"steps after it must know how before the route is chosen; got {shown}. A branch "
            "that streams snapshots ('last', such as a JSON parser) can end with a function "
            "(| (lambda value: value)) to yield its final value as one chunk instead"
        )
    return targets[0][1].output_accumulation


@attrs.frozen(eq=False, repr=False, init=False)
class RunnableBranch(Runnable[In, Out]):
    """Runs the first branch whose condition holds for the input, else the default.

    ``RunnableBranch((condition, runnable), ..., default)``: each condition is a function
    of the whole input (sync or async; its result's truth decides) or a runnable (run
    on the input as a nested run; its output's truth decides). Branch targets and the
    default are runnables, or functions and dicts, coerced as ``|`` does. The chosen
    branch streams: its chunks leave the step as it makes them.

    Raises:
        CompositionError: At construction, for no ``(condition, runnable)`` pair before
            the default, a pair that is not a 2-tuple, a condition that is neither
            callable nor a runnable (or is a generator function), a target that cannot be
            composed, or branches whose outputs add up differently
            (:attr:`~engine.Runnable.output_accumulation`).
    """

    branches: tuple[tuple[Condition, Runnable[In, Out]], ...]
    default: Runnable[In, Out]

    def __init__(self, *branches: Any) -> None:
        if len(branches) < 2:
            raise CompositionError(
                "RunnableBranch needs at least one (condition, runnable) pair and then a default, "
                f"got {len(branches)} argument(s)"
            )
        *pairs, default = branches
        if isinstance(default, tuple):
            raise CompositionError(
                "the last argument of RunnableBranch is the default (a runnable, function or dict), "
                "got a tuple: add the runnable to use when no condition holds"
            )
        checked = tuple(_pair(pair, position) for position, pair in enumerate(pairs, start=1))
        fallback = coerce_runnable(default, where="the default of RunnableBranch")
        _same_accumulation(
            [
                *((f"branch {i}", target) for i, (_, target) in enumerate(checked, start=1)),
                ("default", fallback),
            ]
        )
        self.__attrs_init__(branches=checked, default=fallback)

    @property
    def output_accumulation(self) -> Accumulation:
        return self.default.output_accumulation

    def carries_content(self, chunk: Any) -> bool:
        """Whether every branch would say ``chunk`` carries content (the route is not known
        here; a chunk some branch holds back as empty is held)."""
        return self.default.carries_content(chunk) and all(
            target.carries_content(chunk) for _, target in self.branches
        )

    async def _route(self, value: In, step: Step) -> tuple[Runnable[In, Out], str]:
        """The runnable to run for ``value``, and its tag."""
        for position, (condition, target) in enumerate(self.branches, start=1):
            if await _holds(condition, value, step, position):
                return target, f"branch:{position}"
        return self.default, "branch:default"

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        step = launch.new_step(self, site, inbox)
        # The chosen branch's chunks are this step's output: when someone listens, they
        # pass a tap that publishes this step's stream events (as a sequence's do).
        target: Outbox[Out] = TapOutbox(outbox, step) if step.subscribers else outbox

        async def actor() -> None:
            handed_over = False
            try:
                value = await aggregate(inbox)
                step.set_input(value)
                chosen, tag = await self._route(value, step)
                branch = Launch(launch.scope)
                branch.edges = launch.edges
                chosen._launch(branch, ConstantInbox(value), target, site.child(step, tag))
                assert launch.task_group is not None  # set when the run's tasks started
                await branch.start(launch.task_group)
                # The chosen branch closes the outbox when it ends.
                handed_over = True
            finally:
                if not handed_over:
                    outbox.close()

        launch.spawn(step, actor, inbox=inbox, outboxes=(outbox,))

    def __repr__(self) -> str:
        pairs = ", ".join(f"({_describe(c)}, {t!r})" for c, t in self.branches)
        return f"RunnableBranch({pairs}, {self.default!r})"


async def _holds(condition: Condition, value: Any, step: Step, position: int) -> bool:
    if isinstance(condition, Runnable):
        result = await condition.ainvoke(value, RunConfig(tags=(f"condition:{position}",)))
    elif inspect.iscoroutinefunction(condition) or inspect.iscoroutinefunction(type(condition).__call__):
        result = await condition(value)
    else:
        # Boxed, so that a coroutine it returns (a lambda around an async check) comes
        # back to be awaited here (trio refuses a thread's function that returns one).
        (result,) = await run_in_worker_thread(step, _boxed, condition, value)
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


def _boxed(condition: Callable[[Any], Any], value: Any) -> tuple[Any]:
    return (condition(value),)


def _describe(condition: Condition) -> str:
    if isinstance(condition, Runnable):
        return repr(condition)
    return getattr(condition, "__name__", None) or repr(condition)
