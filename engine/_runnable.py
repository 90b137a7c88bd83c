"""``Runnable``: the immutable description of a step, and the whole run API.

A runnable describes; running it launches actors (see ``_launch``). Every runnable has
the same API: ``invoke``/``ainvoke``, ``batch``/``abatch``, ``stream``/``astream``,
``transform``/``atransform``, ``astream_events`` and ``astream_log``; composition with
``|``; and ``with_config``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, overload

import anyio
import anyio.abc

from ._chunks import ChunkSum
from ._config import DEFAULT_CAPACITY, RunConfig
from ._edge import Accumulation, ConstantInbox, Edge
from ._errors import collapse_errors
from ._launch import DiscardOutbox, Inbox, Launch, Outbox, Site
from ._run import RunStream
from ._step import RunScope, Step, current_step, new_run_id

if TYPE_CHECKING:
    from ._bus import Event
    from ._compose import RunnableBinding, RunnableSequence
    from ._log import RunLogStream

In = TypeVar("In")
Out = TypeVar("Out")
Other = TypeVar("Other")

__all__ = ("Runnable",)

Config = RunConfig | Mapping[str, Any] | None

# The batch limiter of the run this task belongs to, and whether this task holds a slot.
_LIMITER: ContextVar[tuple[anyio.CapacityLimiter, bool] | None] = ContextVar("rillet_limiter", default=None)


class Runnable(Generic[In, Out]):
    """A step, or a graph of steps, that turns input of type ``In`` into ``Out``.

    Subclasses are frozen attrs classes; they implement ``_launch`` (composites) or one
    of the node kinds in ``engine._actors``.
    """

    #: The event kind: events are named ``on_<kind>_<start|stream|end|error>``.
    kind: ClassVar[str] = "chain"
    #: How this step's output chunks add up (``"last"``: each chunk is a snapshot).
    output_accumulation: ClassVar[Accumulation] = "add"

    # -- description ------------------------------------------------------------------

    def get_name(self) -> str:
        """The name this step's events carry."""
        return type(self).__name__

    @property
    def name(self) -> str:
        """Same as :meth:`get_name`."""
        return self.get_name()

    def _accumulation(self) -> Accumulation:
        """How this runnable's output chunks add up (composites ask their last step)."""
        return self.output_accumulation

    def _max_concurrency(self) -> int | None:
        """The batch limit bound with ``with_config(max_concurrency=...)``, if any."""
        return None

    def _start_input(self, value: Any) -> Any:
        """What the start event shows as the input, when the input is known at start."""
        return value

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        raise NotImplementedError

    # -- composition ------------------------------------------------------------------

    def __or__(
        self, other: Runnable[Out, Other] | Callable[..., Any] | Mapping[str, Any]
    ) -> RunnableSequence[In, Other]:
        from ._compose import RunnableSequence
        from ._functions import coerce_runnable

        return RunnableSequence.of(self, coerce_runnable(other, where="right of |"))

    def __ror__(self, other: Callable[..., Any] | Mapping[str, Any]) -> RunnableSequence[Any, Out]:
        from ._compose import RunnableSequence
        from ._functions import coerce_runnable

        return RunnableSequence.of(coerce_runnable(other, where="left of |"), self)

    def pipe(
        self, *others: Runnable[Any, Any] | Callable[..., Any] | Mapping[str, Any]
    ) -> RunnableSequence[In, Any]:
        """``self | others[0] | others[1] | ...``."""
        from ._compose import RunnableSequence
        from ._functions import coerce_runnable

        return RunnableSequence.of(self, *(coerce_runnable(o, where="pipe()") for o in others))

    def with_config(self, config: Mapping[str, Any] | None = None, **values: Any) -> RunnableBinding[In, Out]:
        """This runnable with config applied to its own step.

        Accepts a dict (as in the guide: ``.with_config({"run_name": "model"})``) and/or
        keywords: ``run_name``, ``tags``, ``metadata``, ``max_concurrency``, ``capacity``.

        Raises:
            ConfigError: For an unknown key or a bad value.
        """
        from ._compose import RunnableBinding

        merged = dict(config or {})
        merged.update(values)
        return RunnableBinding.wrap(self, RunConfig.coerce(merged, where=f"{self.get_name()}.with_config()"))

    # -- running ----------------------------------------------------------------------

    def _scope_and_site(self, config: Config, run_id: str | None = None) -> tuple[RunConfig, RunScope, Site]:
        cfg = RunConfig.coerce(config)
        parent = current_step()
        if parent is not None:
            outer = parent.scope
            scope = RunScope(
                root_run_id=outer.root_run_id,
                bus=cfg.bus if cfg.bus is not None else outer.bus,
                capacity=cfg.capacity if cfg.capacity is not None else outer.capacity,
                version=outer.version,
            )
            site = Site(
                scope=scope,
                parent=parent,
                own_tags=cfg.tags,
                inherited_tags=parent.inheritable_tags,
                metadata={**parent.metadata, **cfg.metadata},
                run_name=cfg.run_name,
                linked=False,
                run_id=run_id,
            )
        else:
            scope = RunScope(
                root_run_id=new_run_id(),
                bus=cfg.bus,
                capacity=cfg.capacity if cfg.capacity is not None else DEFAULT_CAPACITY,
            )
            site = Site(
                scope=scope, own_tags=cfg.tags, metadata=cfg.metadata, run_name=cfg.run_name, run_id=run_id
            )
        return cfg, scope, site

    def _open(
        self,
        make_inbox: Callable[[Launch, Step | None], Inbox[In]],
        config: Config,
        *,
        on_root: Callable[[Step], None] | None = None,
        scope_hook: Callable[[RunScope], None] | None = None,
        run_id: str | None = None,
        discard_output: bool = False,
    ) -> tuple[RunScope, Edge[Out], Callable[[anyio.abc.TaskGroup], Any], list[Edge[Any]]]:
        _, scope, site = self._scope_and_site(config, run_id)
        if scope_hook is not None:
            scope_hook(scope)
        output: Edge[Out] = Edge(
            scope.capacity,
            name=f"{self.get_name()} output",
            accumulation=self._accumulation(),
            pace=scope.pace,
        )
        edges: list[Edge[Any]] = [output]
        outbox: Outbox[Out] = DiscardOutbox(output.accumulation) if discard_output else output

        async def launch(task_group: anyio.abc.TaskGroup) -> None:
            run = Launch(scope)
            run.edges = edges
            inbox = make_inbox(run, site.parent)
            self._launch(run, inbox, outbox, site)
            if on_root is not None:
                root = run.root_step
                if root is not None:
                    on_root(root)
            await run.start(task_group)

        return scope, output, launch, edges

    def astream(self, input: In, config: Config = None) -> RunStream[Out]:
        """Stream the output chunks as they are produced.

        Use as ``async with chain.astream(x) as chunks: async for c in chunks`` (the
        block owns the run) or as a bare ``async for c in chain.astream(x)``.

        Raises:
            ConfigError: For a bad ``config`` (at once, before anything runs).
        """
        _, output, launch, edges = self._open(lambda _run, _parent: ConstantInbox(input), config)
        return RunStream(launch, output, output.close_all, edges)

    def atransform(self, inputs: AsyncIterable[In], config: Config = None) -> RunStream[Out]:
        """Like :meth:`astream`, for an input that is itself a stream of chunks."""

        def make_inbox(run: Launch, parent: Step | None) -> Inbox[In]:
            edge: Edge[In] = run.edge(run.scope.capacity, f"{self.get_name()} input")
            run.add_feeder(edge, inputs)
            return edge

        _, output, launch, edges = self._open(make_inbox, config)
        return RunStream(launch, output, output.close_all, edges)

    async def ainvoke(self, input: In, config: Config = None) -> Out:
        """Run to completion and return the whole output (its chunks added up)."""
        total = ChunkSum(self._accumulation())
        async with self.astream(input, config) as stream:
            while batch := await stream.next_batch(1024):
                total.extend(batch)
                del batch  # not held while the next one is awaited (snapshots: only the last)
        return total.total()  # type: ignore[no-any-return]

    @overload
    async def abatch(
        self,
        inputs: Sequence[In],
        config: Config | Sequence[Config] = None,
        *,
        return_exceptions: Literal[False] = False,
        max_concurrency: int | None = None,
    ) -> list[Out]: ...

    @overload
    async def abatch(
        self,
        inputs: Sequence[In],
        config: Config | Sequence[Config] = None,
        *,
        return_exceptions: Literal[True],
        max_concurrency: int | None = None,
    ) -> list[Out | Exception]: ...

    async def abatch(
        self,
        inputs: Sequence[In],
        config: Config | Sequence[Config] = None,
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
    ) -> list[Out] | list[Out | Exception]:
        """Run on every input concurrently; results in input order.

        ``max_concurrency`` (or the config's) caps how many inputs run at once. The cap
        is one limiter for the whole run: a batch started inside a batch item shares it
        (the item lends its own slot to its nested batch, so this cannot deadlock).

        Raises:
            ConfigError: For a bad config or ``max_concurrency``.
        """
        inputs = list(inputs)
        configs = _per_input_configs(config, len(inputs))
        limit = max_concurrency
        if limit is None:
            limit = (configs[0].max_concurrency if configs else None) or self._max_concurrency()
        if limit is not None:
            RunConfig.build(max_concurrency=limit, where="abatch()")
        inherited = _LIMITER.get()
        limiter: anyio.CapacityLimiter | None
        holds_slot = False
        if inherited is not None:
            limiter, holds_slot = inherited
        else:
            limiter = anyio.CapacityLimiter(limit) if limit is not None else None
        results: list[Any] = [None] * len(inputs)
        pending = iter(range(len(inputs)))

        async def run_one(index: int) -> None:
            try:
                results[index] = await self.ainvoke(inputs[index], configs[index])
            except Exception as exc:
                if not return_exceptions:
                    raise
                results[index] = exc

        waiting: set[anyio.CancelScope] = set()

        async def worker(lent_slot: bool) -> None:
            if limiter is not None:
                _LIMITER.set((limiter, True))
            while True:
                if limiter is None or lent_slot:
                    index = next(pending, None)
                    if index is None:
                        # Nothing left: workers still queued for a slot have nothing to do.
                        for scope in waiting:
                            scope.cancel()
                        return
                    await run_one(index)
                    continue
                with anyio.CancelScope() as scope:
                    waiting.add(scope)
                    try:
                        await limiter.acquire()
                    finally:
                        waiting.discard(scope)
                if scope.cancelled_caught:
                    return
                try:
                    index = next(pending, None)
                    if index is None:
                        return
                    await run_one(index)
                finally:
                    limiter.release()

        workers = len(inputs)
        if limiter is not None:
            workers = min(workers, int(limiter.total_tokens))
        failure: BaseException | None = None
        try:
            async with anyio.create_task_group() as task_group:
                for number in range(workers):
                    task_group.start_soon(worker, holds_slot and number == 0)
        except BaseExceptionGroup as group:
            failure = collapse_errors(group)
            if failure is group:
                raise
        if failure is not None:
            raise failure  # outside the except block: the error keeps its own chain
        return results

    def astream_events(
        self,
        input: In,
        config: Config = None,
        *,
        version: str = "v2",
        include_names: Iterable[str] | None = None,
        include_types: Iterable[str] | None = None,
        include_tags: Iterable[str] | None = None,
        exclude_names: Iterable[str] | None = None,
        exclude_types: Iterable[str] | None = None,
        exclude_tags: Iterable[str] | None = None,
        capacity: int = 64,
    ) -> RunStream[Event]:
        """Stream the run's lifecycle events (and its output, in the end events).

        Raises:
            ValueError: For an unknown ``version`` or filter type (at once).
        """
        from ._events_api import open_event_stream

        return open_event_stream(
            self,
            input,
            config,
            version=version,
            filters={
                "include_names": include_names,
                "include_types": include_types,
                "include_tags": include_tags,
                "exclude_names": exclude_names,
                "exclude_types": exclude_types,
                "exclude_tags": exclude_tags,
            },
            capacity=capacity,
        )

    def astream_log(
        self,
        input: In,
        config: Config = None,
        *,
        diff: bool = True,
        include_names: Iterable[str] | None = None,
        include_types: Iterable[str] | None = None,
        include_tags: Iterable[str] | None = None,
        exclude_names: Iterable[str] | None = None,
        exclude_types: Iterable[str] | None = None,
        exclude_tags: Iterable[str] | None = None,
    ) -> RunLogStream:
        """Stream the run's state as JSON-patch operations (``diff=False``: whole states)."""
        from ._log import stream_log

        return stream_log(
            self,
            input,
            config,
            diff=diff,
            filters={
                "include_names": include_names,
                "include_types": include_types,
                "include_tags": include_tags,
                "exclude_names": exclude_names,
                "exclude_types": exclude_types,
                "exclude_tags": exclude_tags,
            },
        )

    # -- synchronous API --------------------------------------------------------------

    def invoke(self, input: In, config: Config = None) -> Out:
        """Run to completion from synchronous code and return the whole output.

        Works from plain code, from a worker thread, from a step's synchronous function
        (the nested run joins the caller's run), and from an event loop's own thread
        (the call blocks that loop until done). It never starts an event loop per call.
        """
        from ._portal import call_blocking

        return call_blocking(self.ainvoke, input, config)

    def batch(
        self,
        inputs: Sequence[In],
        config: Config | Sequence[Config] = None,
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
    ) -> list[Any]:
        """The synchronous form of :meth:`abatch`."""
        from ._portal import call_blocking

        async def run() -> list[Any]:
            results: list[Any] = await self.abatch(
                inputs,
                config,
                return_exceptions=return_exceptions,
                max_concurrency=max_concurrency,  # type: ignore[call-overload]
            )
            return results

        return call_blocking(run)

    def stream(self, input: In, config: Config = None) -> Iterator[Out]:
        """The synchronous form of :meth:`astream`: a generator of output chunks."""
        from ._portal import iterate_blocking

        return iterate_blocking(lambda: self.astream(input, config))

    def transform(self, inputs: Iterable[In], config: Config = None) -> Iterator[Out]:
        """The synchronous form of :meth:`atransform`."""
        from ._portal import iterate_blocking

        async def chunks() -> AsyncIterator[In]:
            for item in inputs:
                yield item

        return iterate_blocking(lambda: self.atransform(chunks(), config))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _per_input_configs(config: Config | Sequence[Config], count: int) -> list[RunConfig]:
    if isinstance(config, list | tuple):
        if len(config) != count:
            raise ValueError(f"batch got {len(config)} configs for {count} inputs")
        return [RunConfig.coerce(c, where=f"config[{i}]") for i, c in enumerate(config)]
    single = RunConfig.coerce(config)  # type: ignore[arg-type]
    return [single] * count
