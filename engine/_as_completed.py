"""``abatch_as_completed``: a batch whose results come out as each input finishes.

The batch runs as ``abatch`` runs it (``run_batch``: one limiter, nested batches lend
their slot), inside a hosted run of its own, so the caller gets a
:class:`~engine.RunStream` of ``(index, output)`` pairs with every way of consuming and
stopping a run stream (``async with``, bare ``async for``, ``aclose``, cancellation), and
nothing yields from inside a task group. Each input still runs as its own run (as in
``abatch``: top level, or nested under the calling step); the batch itself has no step
and publishes no event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio.abc

from ._batch import run_batch
from ._config import DEFAULT_CAPACITY, RunConfig
from ._edge import Edge
from ._run import RunSource

if TYPE_CHECKING:
    from ._runnable import Runnable

__all__ = ("AsCompletedPlan",)


class AsCompletedPlan:
    """What a :class:`~engine.RunStream` hosts for ``abatch_as_completed``: the batch's
    task, writing ``(index, output)`` to the stream's edge as each input finishes.

    (It offers the part of :class:`~engine._plan.RunPlan` that ``RunStream`` uses.)
    """

    events = None

    def __init__(
        self,
        runnable: Runnable[Any, Any],
        inputs: Sequence[Any],
        configs: list[RunConfig],
        *,
        return_exceptions: bool,
        limit: int | None,
    ) -> None:
        self._runnable = runnable
        self._inputs = inputs
        self._configs = configs
        self._return_exceptions = return_exceptions
        self._limit = limit
        self.output: Edge[tuple[int, Any]] = Edge(
            DEFAULT_CAPACITY, name=f"{runnable.get_name()} batch_as_completed"
        )
        self.edges = [self.output]

    def open_source(self) -> RunSource[tuple[int, Any]]:
        return self.output

    async def launch(self, task_group: anyio.abc.TaskGroup) -> None:
        task_group.start_soon(self._run_all, name=f"rillet batch_as_completed {self._runnable.get_name()}")

    async def _run_all(self) -> None:
        try:
            await run_batch(len(self._inputs), self._run_one, self._limit)
        finally:
            self.output.close()

    async def _run_one(self, index: int) -> None:
        try:
            result: Any = await self._runnable.ainvoke(self._inputs[index], self._configs[index])
        except Exception as exc:
            if not self._return_exceptions:
                raise
            result = exc
        await self.output.send((index, result))

    def finish(self) -> None:
        self.output.close_all()
