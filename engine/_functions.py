"""Functions as steps: lambdas (finalized input), generators (input stream), passthrough.

The streaming rule, in one place:

* a plain function (sync or async) works on the *finalized* input, so it is an
  aggregate step: it waits for upstream to close, and emits one chunk;
* a generator function (sync or async) whose parameter is an iterator of input chunks
  works on the *input stream*, so it is a transform step and streams.

Synchronous functions run in a worker thread (they may block, and may call other
runnables synchronously: such a nested call runs back on the run's own event loop and
is nested under the calling step), through :func:`run_in_worker_thread`, which nodes
use too. Async functions run in the step's actor task.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing
from contextvars import copy_context
from typing import Any, ClassVar, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.to_thread
import attrs

from ._actors import AggregateNode, TransformNode
from ._compose import RunnableAssign, RunnableParallel
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


@attrs.frozen(eq=False, repr=False)
class RunnableLambda(AggregateNode[In, Out]):
    """A function on the finalized input (sync or async), as an aggregate step.

    **A function that returns a runnable runs that runnable** on the same input, as a
    run nested under this step (its events are this step's children), and its output is
    this step's output: it streams through chunk by chunk as the nested run makes it
    (routing by hand: ``lambda x: model_a if x["long"] else model_b``). When the
    runnable's chunks add up differently from this step's (it streams snapshots, as a
    JSON parser does), its whole output is one chunk instead, so that the steps after
    this one sum it right. The nesting counts toward ``recursion_limit``.
    """

    func: Callable[[In], Out | Awaitable[Out]]
    func_name: str | None = None
    #: As langchain-core's lambdas: inside a composite, its start shows no input.
    input_at_start: ClassVar[bool] = False

    def __attrs_post_init__(self) -> None:
        if not callable(self.func):
            raise CompositionError(f"RunnableLambda needs a callable, got {type(self.func).__name__}")
        if inspect.isasyncgenfunction(self.func) or inspect.isgeneratorfunction(self.func):
            raise CompositionError(
                f"{_function_name(self.func, 'function')} is a generator function: use RunnableGenerator"
            )

    def get_name(self) -> str:
        return self.func_name or _function_name(self.func, "RunnableLambda")

    async def compute(self, value: In, step: Step) -> AsyncIterator[Out]:
        func = self.func
        result: Any
        if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__):
            result = await func(value)  # type: ignore[misc]
        else:
            result = await run_in_worker_thread(step, func, value)
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


@attrs.frozen(eq=False, repr=False)
class RunnableGenerator(TransformNode[In, Out]):
    """A generator function over the input stream, as a transform step (it streams).

    ``func`` takes an (async) iterator of input chunks and yields output chunks: the
    guide's ``_extract_country_names_streaming``.
    """

    func: Callable[[Any], Any]
    func_name: str | None = None

    def __attrs_post_init__(self) -> None:
        if not (inspect.isasyncgenfunction(self.func) or inspect.isgeneratorfunction(self.func)):
            raise CompositionError(
                f"RunnableGenerator needs a generator function, got {_function_name(self.func, repr(self.func))}"
            )

    def get_name(self) -> str:
        return self.func_name or _function_name(self.func, "RunnableGenerator")

    def transform_stream(self, chunks: AsyncIterator[In], step: Step) -> AsyncIterator[Out]:
        return cast("AsyncIterator[Out]", self.func(chunks))

    def _can_fuse(self) -> bool:
        # A synchronous generator runs in a worker thread with its own actor.
        return inspect.isasyncgenfunction(self.func)

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        if inspect.isasyncgenfunction(self.func):
            super()._launch(launch, inbox, outbox, site)
            return
        step = launch.new_step(self, site, inbox)
        func = self.func
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
            generator = await run_in_worker_thread(step, func, inputs())
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


@attrs.frozen(eq=False, repr=False)
class RunnablePassthrough(TransformNode[In, In]):
    """Passes its input through unchanged, chunk by chunk."""

    async def transform_stream(self, chunks: AsyncIterator[In], step: Step) -> AsyncIterator[In]:
        async for chunk in chunks:
            yield chunk

    @staticmethod
    def assign(
        **mapping: Runnable[dict[str, Any], Any] | Callable[..., Any] | Mapping[str, Any],
    ) -> RunnableAssign:
        """Pass a dict input through and add ``key=runnable_or_function`` results to it."""
        if not mapping:
            raise CompositionError("RunnablePassthrough.assign() needs at least one key")
        return RunnableAssign(RunnableParallel(mapping))

    def __repr__(self) -> str:
        return "RunnablePassthrough()"


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
    """Make a runnable named after ``func`` (``@chain``).

    Runnables that ``func`` calls (``invoke``, ``ainvoke``, ``stream``, ``batch``...) are
    nested under its step automatically.
    """
    return coerce_runnable(func, where="@chain")
