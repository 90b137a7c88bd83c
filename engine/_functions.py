"""Functions as steps: lambdas (finalized input), generators (input stream), passthrough.

The streaming rule, in one place:

* a plain function (sync or async) works on the *finalized* input, so it is an
  aggregate step: it waits for upstream to close, and emits one chunk;
* a generator function (sync or async) whose parameter is an iterator of input chunks
  works on the *input stream*, so it is a transform step and streams (composed with
  ``|``, or as a :class:`RunnableGenerator`); as a :class:`RunnableLambda` or ``@chain``
  (langchain-core's reading) it gets the finalized input and streams what it yields.

Synchronous functions run in a worker thread (they may block, and may call other
runnables synchronously: such a nested call runs back on the run's own event loop and
is nested under the calling step), through :func:`run_in_worker_thread`, which nodes
use too. Async functions run in the step's actor task.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing
from contextvars import copy_context
from functools import partial
from typing import Any, ClassVar, TypeVar, cast, overload

import anyio
import anyio.from_thread
import anyio.to_thread
import attrs

from ._actors import AggregateNode, TransformNode
from ._chunks import ChunkSum
from ._compose import RunnableAssign, RunnableParallel
from ._config import accepts_config, step_config
from ._errors import CompositionError
from ._launch import Inbox, Launch, Outbox, RecordingInbox, Site
from ._runnable import Runnable
from ._step import Step

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = (
    "RunnableGenerator",
    "RunnableLambda",
    "RunnablePassthrough",
    "chain",
    "coerce_runnable",
    "iterate_in_worker_thread",
    "run_in_worker_thread",
)


def _function_name(func: Callable[..., Any], default: str) -> str:
    name = getattr(func, "__name__", None)
    if not name or name == "<lambda>":
        return default
    return str(name)


def _next_or_done(iterator: Iterator[Any]) -> tuple[bool, Any]:
    try:
        return False, next(iterator)
    except StopIteration:
        return True, None


async def run_in_worker_thread(step: Step, func: Callable[..., Out], *args: Any) -> Out:
    """Run a step's synchronous code in a worker thread, as rillet's own steps do.

    The code sees the calling task's context, so runnables it calls synchronously
    (``invoke``, ``stream``...) run back on the run's loop, nested under ``step``.

    Raises:
        RuntimeError: If the code raised ``GeneratorExit``, naming ``step`` (the
            ``GeneratorExit`` is its ``__cause__``). ``GeneratorExit`` is how Python
            closes a generator or coroutine: raised on through the run's coroutines it
            would read as "close this one" (asyncio breaks the task; an async generator
            on the way may swallow it), and as a ``BaseException`` it would slip past
            ``except Exception`` and ``return_exceptions``. Python turns a generator's
            stray ``StopIteration`` into a ``RuntimeError`` for the same reason.
    """
    context = copy_context()
    return await anyio.to_thread.run_sync(context.run, _step_code, step.name, func, *args)


def _step_code(name: str, func: Callable[..., Out], *args: Any) -> Out:
    try:
        return func(*args)
    except GeneratorExit as exc:
        raise RuntimeError(
            f"step {name!r} raised GeneratorExit; a step must not raise it (it is how Python "
            "closes a generator): raise another exception, or return to end a generator"
        ) from exc


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


def _is_generator(func: Callable[..., Any]) -> bool:
    return inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func)


def _pick_name(name: str | None, func_name: str | None, what: str) -> str | None:
    if name is not None and func_name is not None and name != func_name:
        raise CompositionError(f"{what} got two names, name={name!r} and func_name={func_name!r}")
    chosen = name if name is not None else func_name
    if chosen is not None and (not isinstance(chosen, str) or not chosen):
        raise CompositionError(f"{what}'s name must be a non-empty string, got {chosen!r}")
    return chosen


def _config_arguments(takes_config: bool, step: Step) -> dict[str, Any]:
    # Built once per call of the step's code, only for code that declares ``config``.
    return {"config": step_config(step)} if takes_config else {}


async def iterate_in_worker_thread(step: Step, iterator: Iterator[Out]) -> AsyncGenerator[Out, None]:
    """The items of a synchronous ``iterator``, each fetched in a worker thread.

    Each item comes back as soon as it is produced. The iterator is closed here, in a
    worker thread (its cleanup may block), however the iteration ends: before the run
    ends, not whenever it is collected.
    """
    try:
        while True:
            done, item = await run_in_worker_thread(step, _next_or_done, iterator)
            if done:
                return
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await run_in_worker_thread(step, close)


@attrs.frozen(eq=False, repr=False, init=False)
class RunnableLambda(AggregateNode[In, Out]):
    """A function on the finalized input (sync or async), as an aggregate step.

    ``RunnableLambda(func, afunc=None, name=None)``: ``afunc`` is an async variant of
    ``func``. *Where we chose differently from langchain-core:* every call runs on the
    event loop (the synchronous ``invoke`` too), so when both are given ``afunc`` is the
    one that runs, whichever way the runnable is called; they are meant to do the same.
    The step is named after ``func`` (``name`` overrides it; ``func_name`` is the same
    keyword under its older spelling).

    A function that declares a ``config`` parameter gets the step's config (see
    :func:`~engine.step_config`) as that keyword argument.

    A **generator function** (sync or async) gets the finalized input too and streams
    what it yields (as langchain-core's ``RunnableLambda`` and ``@chain`` do); to work
    on the input *stream*, use :class:`RunnableGenerator` (or compose the generator
    function with ``|``).

    **A function that returns a runnable runs that runnable** on the same input, as a
    run nested under this step (its events are this step's children), and its output is
    this step's output: it streams through chunk by chunk as the nested run makes it
    (routing by hand: ``lambda x: model_a if x["long"] else model_b``). When the
    runnable's chunks add up differently from this step's (it streams snapshots, as a
    JSON parser does), its whole output is one chunk instead, so that the steps after
    this one sum it right. The nesting counts toward ``recursion_limit``.

    Raises:
        CompositionError: If ``func`` is not callable, ``afunc`` is not an async
            function (or async generator function), ``func`` is async when ``afunc`` is
            given too, or the name is not a non-empty string.
    """

    func: Callable[..., Any]
    afunc: Callable[..., Any] | None
    func_name: str | None
    _takes_config: bool
    #: As langchain-core's lambdas: inside a composite, its start shows no input.
    input_at_start: ClassVar[bool] = False

    @overload
    def __init__(
        self,
        func: Callable[[In], Out | Awaitable[Out]],
        afunc: Callable[..., Any] | None = None,
        name: str | None = None,
        *,
        func_name: str | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        func: Callable[..., Any],
        afunc: Callable[..., Any] | None = None,
        name: str | None = None,
        *,
        func_name: str | None = None,
    ) -> None: ...

    def __init__(
        self,
        func: Callable[..., Any],
        afunc: Callable[..., Any] | None = None,
        name: str | None = None,
        *,
        func_name: str | None = None,
    ) -> None:
        if not callable(func):
            raise CompositionError(f"RunnableLambda needs a callable, got {type(func).__name__}")
        if afunc is not None:
            if not (_is_async(afunc) or inspect.isasyncgenfunction(afunc)):
                raise CompositionError(
                    f"RunnableLambda's afunc must be an async function (or async generator "
                    f"function), got {_function_name(afunc, repr(afunc))}"
                )
            if _is_async(func) or inspect.isasyncgenfunction(func):
                raise CompositionError(
                    f"RunnableLambda got an async func ({_function_name(func, repr(func))}) and an "
                    "afunc: give func as the synchronous variant, or give only the async one"
                )
        chosen = _pick_name(name, func_name, "RunnableLambda")
        runs = afunc if afunc is not None else func
        self.__attrs_init__(func, afunc, chosen, accepts_config(runs))

    def get_name(self) -> str:
        return self.func_name or _function_name(self.func, "RunnableLambda")

    async def compute(self, value: In, step: Step) -> AsyncIterator[Out]:
        func = self.afunc if self.afunc is not None else self.func
        arguments = _config_arguments(self._takes_config, step)
        if inspect.isasyncgenfunction(func):
            async with aclosing(func(value, **arguments)) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        if inspect.isgeneratorfunction(func):
            iterator = await run_in_worker_thread(step, partial(func, **arguments), value)
            async with aclosing(iterate_in_worker_thread(step, iterator)) as items:
                async for item in items:
                    yield item
            return
        result: Any
        if _is_async(func):
            result = await func(value, **arguments)
        else:
            result = await run_in_worker_thread(step, partial(func, **arguments), value)
        if isinstance(result, Runnable):
            if result.output_accumulation != self.output_accumulation:
                yield await result.ainvoke(value)
                return
            # A bare stream, closed here however this generator ends: no cancel scope is
            # held across the yield (the nested run is hosted outside this task).
            async with aclosing(result.astream(value)) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        yield result

    def __repr__(self) -> str:
        return f"RunnableLambda({self.get_name()})"


@attrs.frozen(eq=False, repr=False, init=False)
class RunnableGenerator(TransformNode[In, Out]):
    """A generator function over the input stream, as a transform step (it streams).

    ``RunnableGenerator(transform, atransform=None, *, name=None)``: ``transform`` takes
    an (async) iterator of input chunks and yields output chunks (the guide's
    ``_extract_country_names_streaming``); ``atransform`` is an async generator variant,
    which runs when given (as with :class:`RunnableLambda`, every call runs on the event
    loop). The step is named after ``transform``. A generator that declares a ``config``
    parameter gets the step's config as that keyword argument.

    Raises:
        CompositionError: If ``transform`` is not a generator function (sync or async),
            ``atransform`` is not an async generator function, or the name is not a
            non-empty string.
    """

    func: Callable[..., Any]
    afunc: Callable[..., Any] | None
    func_name: str | None
    _takes_config: bool

    def __init__(
        self,
        transform: Callable[..., Any],
        atransform: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        func_name: str | None = None,
    ) -> None:
        if not _is_generator(transform):
            raise CompositionError(
                f"RunnableGenerator needs a generator function, got {_function_name(transform, repr(transform))}"
            )
        if atransform is not None and not inspect.isasyncgenfunction(atransform):
            raise CompositionError(
                "RunnableGenerator's atransform must be an async generator function, got "
                f"{_function_name(atransform, repr(atransform))}"
            )
        chosen = _pick_name(name, func_name, "RunnableGenerator")
        runs = atransform if atransform is not None else transform
        self.__attrs_init__(transform, atransform, chosen, accepts_config(runs))

    @property
    def _runs(self) -> Callable[..., Any]:
        return self.afunc if self.afunc is not None else self.func

    def get_name(self) -> str:
        return self.func_name or _function_name(self.func, "RunnableGenerator")

    def transform_stream(self, chunks: AsyncIterator[In], step: Step) -> AsyncIterator[Out]:
        return cast("AsyncIterator[Out]", self._runs(chunks, **_config_arguments(self._takes_config, step)))

    def _can_fuse(self) -> bool:
        # A synchronous generator runs in a worker thread with its own actor.
        return inspect.isasyncgenfunction(self._runs)

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        func = self._runs
        if inspect.isasyncgenfunction(func):
            super()._launch(launch, inbox, outbox, site)
            return
        step = launch.new_step(self, site, inbox)
        source: Inbox[Any] = inbox
        if step.subscribers and not step.input_known:
            source = RecordingInbox(inbox, step)

        def inputs() -> Iterator[In]:
            # Runs in the worker thread: each input chunk is fetched on the run's loop.
            while True:
                try:
                    yield anyio.from_thread.run(source.receive)
                except anyio.EndOfStream:
                    return

        async def actor() -> None:
            # The generator advances in a worker thread one chunk at a time; the chunk is
            # sent from this task, so a stopped run never leaves a thread blocked on a
            # send nobody will take.
            arguments = _config_arguments(self._takes_config, step)
            generator = await run_in_worker_thread(step, partial(func, **arguments), inputs())
            try:
                while True:
                    done, chunk = await run_in_worker_thread(step, _next_or_done, generator)
                    if done:
                        break
                    await step.emit_stream(chunk)
                    await outbox.send(chunk)
            finally:
                outbox.close()
                with anyio.CancelScope(shield=True):
                    await run_in_worker_thread(step, generator.close)

        launch.spawn(step, actor, inbox=inbox, outboxes=(outbox,))

    def __repr__(self) -> str:
        return f"RunnableGenerator({self.get_name()})"


@attrs.frozen(eq=False, repr=False, init=False)
class RunnablePassthrough(TransformNode[In, In]):
    """Passes its input through unchanged, chunk by chunk.

    ``RunnablePassthrough(func=None, afunc=None)``: with a function, the input is still
    passed on chunk by chunk, and once it is complete the function is called with the
    whole input (its chunks added up; not called for an input stream with no chunk),
    before the step ends; what it returns is ignored. ``func`` may be sync (it runs in a
    worker thread) or async; ``afunc`` is an async variant, which runs when given. A
    function that declares a ``config`` parameter gets the step's config.

    Raises:
        CompositionError: If ``func`` is not callable or ``afunc`` not an async function.
    """

    func: Callable[..., Any] | None
    afunc: Callable[..., Any] | None
    _takes_config: bool

    def __init__(
        self, func: Callable[..., Any] | None = None, afunc: Callable[..., Any] | None = None
    ) -> None:
        if func is not None and not callable(func):
            raise CompositionError(f"RunnablePassthrough's func must be callable, got {type(func).__name__}")
        if afunc is not None and not _is_async(afunc):
            raise CompositionError(
                f"RunnablePassthrough's afunc must be an async function, got {_function_name(afunc, repr(afunc))}"
            )
        runs = afunc if afunc is not None else func
        self.__attrs_init__(func, afunc, runs is not None and accepts_config(runs))

    def transform_stream(self, chunks: AsyncIterator[In], step: Step) -> AsyncIterator[In]:
        if self.func is None and self.afunc is None:
            return self._through(chunks)
        return self._through_then_call(chunks, step)

    async def _through(self, chunks: AsyncIterator[In]) -> AsyncIterator[In]:
        async for chunk in chunks:
            yield chunk

    async def _through_then_call(self, chunks: AsyncIterator[In], step: Step) -> AsyncIterator[In]:
        total = ChunkSum(getattr(chunks, "accumulation", "add"))
        seen = False
        async for chunk in chunks:
            total.append(chunk)
            seen = True
            yield chunk
        if not seen:
            return
        func = self.afunc if self.afunc is not None else self.func
        assert func is not None
        arguments = _config_arguments(self._takes_config, step)
        if _is_async(func):
            await func(total.total(), **arguments)
        else:
            await run_in_worker_thread(step, partial(func, **arguments), total.total())

    @staticmethod
    def assign(
        **mapping: Runnable[dict[str, Any], Any] | Callable[..., Any] | Mapping[str, Any],
    ) -> RunnableAssign:
        """Pass a dict input through and add ``key=runnable_or_function`` results to it."""
        if not mapping:
            raise CompositionError("RunnablePassthrough.assign() needs at least one key")
        return RunnableAssign(RunnableParallel(mapping))

    def __repr__(self) -> str:
        shown = self.afunc if self.afunc is not None else self.func
        return (
            "RunnablePassthrough()"
            if shown is None
            else f"RunnablePassthrough({_function_name(shown, 'func')})"
        )


def coerce_runnable(thing: object, *, where: str = "in a chain") -> Runnable[Any, Any]:
    """``thing`` as a runnable: runnables as they are, dicts as parallel steps, functions
    as lambdas (finalized input) or generators (input stream).

    Raises:
        CompositionError: For anything else, naming it and where it was found.
    """
    if isinstance(thing, Runnable):
        return thing
    if isinstance(thing, Mapping):
        return RunnableParallel(thing)
    if callable(thing):
        if inspect.isasyncgenfunction(thing) or inspect.isgeneratorfunction(thing):
            return RunnableGenerator(thing)
        return RunnableLambda(thing)
    raise CompositionError(
        f"cannot compose {type(thing).__name__} {thing!r} ({where}): "
        "expected a Runnable, a function, a generator function or a dict"
    )


def chain(func: Callable[[In], Any]) -> Runnable[In, Any]:
    """Make a runnable named after ``func`` (``@chain``): a :class:`RunnableLambda`.

    ``func`` gets the finalized input, as langchain-core's ``@chain`` does, also when it
    is a generator function (whose chunks then stream out). Runnables that ``func`` calls
    (``invoke``, ``ainvoke``, ``stream``, ``batch``...) are nested under its step
    automatically; a ``config`` parameter gets the step's config.

    Raises:
        CompositionError: If ``func`` is not callable.
    """
    return RunnableLambda(func)
