"""``Runnable``: the immutable description of a step, and the whole run API.

A runnable describes; running it launches actors (see ``_launch``). Every runnable has
the same API: ``invoke``/``ainvoke``, ``batch``/``abatch``,
``batch_as_completed``/``abatch_as_completed``, ``stream``/``astream``,
``transform``/``atransform``, ``astream_events`` and ``astream_log``; composition with
``|``, ``pick``, ``assign`` and ``map``; ``with_config``, ``bind``,
``configurable_fields``/``configurable_alternatives`` and ``with_listeners``; and the
resilience wrappers.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Self, TypeVar, cast, overload

import attrs

from ._batch import run_batch
from ._bus import EventFilterArgs
from ._chunks import ChunkSum
from ._config import RunConfig
from ._edge import Accumulation
from ._errors import CompositionError, ConfigError
from ._launch import Inbox, Launch, Outbox, Site
from ._plan import EventsRequest, RunPlan, plan_run
from ._run import RunStream

if TYPE_CHECKING:
    from ._compose import RunnableBinding, RunnableSequence
    from ._configurable import ConfigurableField, RunnableConfigurableAlternatives, RunnableConfigurableFields
    from ._events import Event
    from ._fallbacks import RunnableWithFallbacks
    from ._listeners import RunnableListeners
    from ._log import RunLogStream
    from ._pick import RunnableEach
    from ._ratelimit import RateLimiter, RunnableRateLimited
    from ._retry import ExponentialJitterParams, RunnableRetry
    from ._timeout import RunnableTimeout

In = TypeVar("In")
Out = TypeVar("Out")
Other = TypeVar("Other")

__all__ = ("Runnable",)

Config = RunConfig | Mapping[str, Any] | None

#: The kinds whose output is one value made at once: no stream events in ``astream_events``
#: (see :attr:`Runnable.publishes_chunks`).
_ONE_VALUE_KINDS = frozenset({"prompt", "retriever", "tool"})


class Runnable(Generic[In, Out]):
    """A step, or a graph of steps, that turns input of type ``In`` into ``Out``.

    Subclasses are frozen attrs classes. Users write nodes by subclassing
    :class:`~engine.TransformNode` or :class:`~engine.AggregateNode` (their hooks are
    listed in ARCHITECTURE.md, "Extension points"); the hooks every runnable has are
    ``kind``, :meth:`get_name`, :attr:`output_accumulation` and
    :meth:`start_event_input`. ``_launch`` and ``_max_concurrency`` are the engine's own,
    overridden only by its composites and node kinds.
    """

    #: The event kind: events are named ``on_<kind>_<start|stream|end|error>``.
    kind: ClassVar[str] = "chain"

    # -- description ------------------------------------------------------------------

    def get_name(self) -> str:
        """The name this step's events carry."""
        return type(self).__name__

    @property
    def name(self) -> str:
        """Same as :meth:`get_name`."""
        return self.get_name()

    @property
    def output_accumulation(self) -> Accumulation:
        """How this step's output chunks add up into its whole output.

        ``"add"`` (the default): with ``+`` (strings joined, a type's ``concat_chunks``
        if it has one). ``"last"``: each chunk is a snapshot of the whole output so far,
        so the output is the last chunk (a JSON parser's values, a retriever's list).
        The engine reads it when it launches the step, for the step's end event, for
        ``ainvoke`` and for the step that aggregates this one's output.

        Override it with a class attribute when it is constant
        (``output_accumulation: ClassVar[Accumulation] = "last"``) or with a property
        when it depends on the instance. A sequence answers for its last step and a
        binding for the runnable it binds; parallel steps add up (``"add"``).
        """
        return "add"

    def _max_concurrency(self) -> int | None:
        """The batch limit bound with ``with_config(max_concurrency=...)``, if any."""
        return None

    def carries_content(self, chunk: Any) -> bool:
        """Whether ``chunk`` of this runnable's output carries content (the commit point).

        A step's output is *uncommitted* until its first chunk with content leaves it:
        before that a failure can be retried or handed to a fallback without anyone
        downstream having seen anything (see ``engine/_hosting.py``). The default says
        every chunk does; a chat model says only chunks with text, a tool-call delta or
        a thinking delta do, so a message-start chunk with only an id is held back.
        Composites ask their last step. Called per chunk, before the commit point only.
        """
        return True

    def start_event_input(self, value: Any) -> Any:
        """What this step's start event shows as its input, given the input ``value``.

        Called at launch, before any actor runs, only when someone listens to the step
        and its input is known at start (see ARCHITECTURE.md, "Events"); the default
        shows ``value`` itself. An error here fails the run before any step runs, so for
        an input it cannot convert it returns ``value`` and lets the step's own code
        reject it (as the step's error event). The end event shows what
        the step last gave ``Step.set_input`` (an aggregate's finalized input by
        default), so a node that converts its input here converts it there too.
        """
        return value

    @property
    def input_at_start(self) -> bool:
        """Whether this step's ``astream_events`` start shows its input inside a composite.

        For a step placed in a sequence or a parallel step whose input is known at launch
        (see ARCHITECTURE.md, "Differences from langchain-core"). ``True`` (the default)
        for steps that take their whole input at once (prompts, models, tools,
        retrievers), as langchain-core's invoked runnables do; ``False`` for steps that
        work on the input stream or pass it on (functions, passthrough, parsers,
        sequences, parallel steps), which langchain-core starts with ``{}``. The root of
        the stream and a run started inside a step always show their input. Override it
        with a class attribute.
        """
        return True

    @property
    def publishes_chunks(self) -> bool:
        """Whether ``astream_events`` publishes this step's stream events.

        ``False`` for the kinds whose output is one value made at once (``prompt``,
        ``retriever``, ``tool``; a generator tool says ``True``): as in langchain-core,
        v2 publishes no stream event for them, and v1 only at the root of the stream.
        ``True`` for every other kind. The output is on the end event either way, and a
        run that is not an ``astream_events`` stream (``EventBus`` subscribers only)
        publishes every chunk. Override it with a class attribute, or a property when it
        depends on the instance.
        """
        return self.kind not in _ONE_VALUE_KINDS

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        # Engine-internal: wires this runnable's actors between ``inbox`` and
        # ``outbox``. Overridden by the node kinds and composites only.
        raise NotImplementedError

    def _chosen_at(self, site: Site) -> tuple[Runnable[In, Out], Site] | None:
        # Engine-internal: for a runnable that stands for another one chosen per call
        # (configurable fields and alternatives), the one that runs at ``site`` and the
        # site it runs at; such a runnable has no step of its own. ``None`` for the rest.
        return None

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
        keywords: ``run_name``, ``tags``, ``metadata``, ``max_concurrency``, ``capacity``,
        ``bus``, ``recursion_limit``.

        Raises:
            ConfigError: For an unknown key or a bad value.
        """
        from ._compose import RunnableBinding

        merged = dict(config or {})
        merged.update(values)
        where = f"{self.get_name()}.with_config()"
        for key in ("run_id", "callbacks"):
            if merged.get(key) is not None:
                raise ConfigError(f"{where} cannot bind {key!r}: it belongs to one call, pass it in config=")
        return RunnableBinding.wrap(self, RunConfig.coerce(merged, where=where))

    def assign(
        self, **mapping: Runnable[dict[str, Any], Any] | Callable[..., Any] | Mapping[str, Any]
    ) -> Runnable[Any, dict[str, Any]]:
        """``self`` then its dict output passed on with ``key=runnable_or_function``
        results added (``self | RunnablePassthrough.assign(**mapping)``).

        Raises:
            CompositionError: For no key, or a value that cannot be composed.
        """
        from ._compose import RunnableAssign, RunnableParallel, RunnableSequence

        if not mapping:
            raise CompositionError(f"{self.get_name()}.assign() needs at least one key")
        return RunnableSequence.of(self, RunnableAssign(RunnableParallel(mapping)))

    def pick(self, keys: str | Sequence[str]) -> RunnableSequence[In, Any]:
        """``self`` then the picked keys of its dict output: one key gives its value, a
        list of keys a dict of them (:class:`~engine.RunnablePick`). It streams: each
        output chunk that has a picked key passes on at once.

        Raises:
            CompositionError: For a key that is not a string, or an empty list.
        """
        from ._compose import RunnableSequence
        from ._pick import RunnablePick, picked_accumulation

        pick = RunnablePick(keys)
        return RunnableSequence.of(
            self, RunnablePick(pick.keys, accumulation=picked_accumulation(self, pick.keys))
        )

    def map(self) -> RunnableEach[In, Out]:
        """A runnable that takes a list and runs this one on every item, concurrently
        (as :meth:`abatch`), giving the list of outputs (:class:`~engine.RunnableEach`)."""
        from ._pick import RunnableEach

        return RunnableEach(self)

    def configurable_fields(self, **fields: ConfigurableField) -> RunnableConfigurableFields[In, Out]:
        """This runnable with fields set per call: ``model.configurable_fields(
        temperature=ConfigurableField(id="temp"))`` then ``config={"configurable": {"temp":
        0.2}}`` (or ``with_config(configurable=...)``) runs a copy with that value.

        The runnable must be an attrs class (every rillet node is); each keyword names
        one of its ``__init__`` keywords. The runnable's streaming and events are its own
        (no step is added). See :class:`~engine.RunnableConfigurableFields`.

        Raises:
            ValueError: For a keyword the runnable does not take (at once).
            TypeError: For a value that is not a ``ConfigurableField``.
        """
        from ._configurable import RunnableConfigurableFields

        return RunnableConfigurableFields(self, fields)

    def configurable_alternatives(
        self,
        which: ConfigurableField,
        *,
        default_key: str = "default",
        prefix_keys: bool = False,
        **alternatives: Runnable[In, Out] | Callable[[], Runnable[In, Out]],
    ) -> RunnableConfigurableAlternatives[In, Out]:
        """This runnable, or one of ``alternatives`` chosen per call by
        ``config={"configurable": {which.id: key}}`` (``default_key`` or no value: this
        one). An alternative may be a function of no arguments that makes the runnable
        when it is chosen. The chosen runnable streams and publishes its events exactly
        as it does on its own. See :class:`~engine.RunnableConfigurableAlternatives`.

        Raises:
            ValueError: For no alternative or ``default_key`` among their keys (at once),
                and in the run for an unknown key.
            CompositionError: For an alternative that adds its output up differently.
        """
        from ._configurable import RunnableConfigurableAlternatives

        return RunnableConfigurableAlternatives(
            which, self, alternatives, default_key=default_key, prefix_keys=prefix_keys
        )

    def with_listeners(
        self,
        *,
        on_start: Callable[..., Any] | None = None,
        on_end: Callable[..., Any] | None = None,
        on_error: Callable[..., Any] | None = None,
    ) -> RunnableListeners[In, Out]:
        """This runnable with functions called as its step starts, ends and fails.

        Each gets a :class:`~engine.Run` (id, name, inputs, outputs, error, start and end
        time...), and the step's config as ``config=`` if it declares that parameter. A
        listener may be sync or async; it never changes the run (what it raises is
        logged). Output, streaming and events stay the runnable's own. See
        :class:`~engine.RunnableListeners` for when each is called.

        Raises:
            CompositionError: For a listener that is not callable.
        """
        from ._listeners import RunnableListeners

        return RunnableListeners(self, on_start=on_start, on_end=on_end, on_error=on_error)

    def with_alisteners(
        self,
        *,
        on_start: Callable[..., Any] | None = None,
        on_end: Callable[..., Any] | None = None,
        on_error: Callable[..., Any] | None = None,
    ) -> RunnableListeners[In, Out]:
        """Same as :meth:`with_listeners` (which takes async listeners too), under
        langchain-core's name for async listeners."""
        return self.with_listeners(on_start=on_start, on_end=on_end, on_error=on_error)

    def with_timeout(
        self, *, first_chunk: float | None = None, idle: float | None = None, total: float | None = None
    ) -> RunnableTimeout[In, Out]:
        """This runnable with its work bounded in time, whatever its provider does.

        Any subset of three limits, in seconds:

        * ``first_chunk``: until the first chunk that carries content
          (:meth:`carries_content`: a chat model's id-only or keep-alive chunk does not
          count). Until then it takes the place of ``idle``, so a model may think in
          silence for longer than it may pause between tokens.
        * ``idle``: between one chunk (any chunk) and the next, and, when ``first_chunk``
          is not given, from the start to the first chunk. Time spent handing a chunk to
          a slow consumer is not counted. Nothing is timed per chunk: the step's
          progress is looked at every ``idle / 8`` seconds, so a stall is caught between
          ``idle`` and ``idle * 9 / 8`` seconds after the last chunk, never earlier
          (``RunnableTimeout.looks_per_idle``).
        * ``total``: the whole of the step's work, from when its input is complete to its
          last chunk delivered.

        A limit that runs out cancels the step's nested run (a model's HTTP stream is
        closed in its own task) and raises :class:`~engine.StepTimeout`, naming the
        limit and the chunks delivered; chunks already delivered stay delivered. Each
        run of the wrapper starts its clocks afresh, so inside ``with_retry`` every
        attempt gets the full limits. A retry wrapper *inside* the timeout
        (``model.with_retry().with_timeout(first_chunk=10)``) is one step to it:
        ``first_chunk`` then bounds the time to the first content across all the
        attempts and their waits, and running out stops the retrying.

        Raises:
            TypeError: If a limit is not a number.
            ValueError: If a limit is not positive and finite, or none is given.
        """
        from ._timeout import RunnableTimeout

        return RunnableTimeout(self, first_chunk=first_chunk, idle=idle, total=total)

    #: The call arguments :meth:`bind` accepts, each mapped to the ``__init__`` keyword of
    #: the attrs field that holds it (a chat model: ``{"stop": "stop", ...}``); none by default.
    call_arguments: ClassVar[Mapping[str, str]] = {}

    def bind(self, **arguments: Any) -> Self:
        """This runnable with call arguments bound (``model.bind(stop=["\\n"])``).

        Returns a copy that uses ``arguments`` on every call (see
        :meth:`with_call_arguments`); this runnable is unchanged. ``bind`` binds to the
        runnable itself: bind a chain's step (``prompt | model.bind(...)``), not the chain.

        Raises:
            TypeError: Naming the arguments this runnable does not accept, at once.
            ValueError: For a value the runnable refuses, at once.
        """
        if not arguments:
            return self
        return self.with_call_arguments(arguments)

    def with_call_arguments(self, arguments: Mapping[str, Any]) -> Self:
        """A copy of this runnable that uses ``arguments`` on every call (what :meth:`bind` does).

        The default sets each argument on the attrs field :attr:`call_arguments` names
        for it (``attrs.evolve``: the field's converter and validator run now), and
        refuses any other argument with a ``TypeError`` naming it. A node whose
        arguments do not map to fields overrides this; a wrapper passes them to what it
        wraps (a ``with_config`` binding does).

        Raises:
            TypeError: Naming the arguments this runnable does not accept.
        """
        from ._bind import with_call_arguments

        return with_call_arguments(self, arguments)

    def with_rate_limit(self, limiter: RateLimiter) -> RunnableRateLimited[In, Out]:
        """This runnable, each run of it waiting its turn on ``limiter`` first.

        Every runnable holding the same limiter shares its limits (see
        :class:`~engine.RateLimiter`); waiting suspends the run and is cancellable.

        Raises:
            TypeError: If ``limiter`` is not a ``RateLimiter``.
        """
        from ._ratelimit import RunnableRateLimited

        return RunnableRateLimited.wrap(self, limiter)

    def with_retry(
        self,
        *,
        retry_if_exception_type: tuple[type[BaseException], ...] | None = None,
        stop_after_attempt: int = 3,
        wait_exponential_jitter: bool = True,
        exponential_jitter_params: ExponentialJitterParams | None = None,
        respect_retry_after: bool = True,
        max_retry_after: float = 60.0,
    ) -> RunnableRetry[In, Out]:
        """This runnable, tried again when it fails before its commit point.

        Works the same for every way of running it (``invoke``, ``batch``: each input on
        its own; ``astream``, ``astream_events``). An attempt that fails before its first
        chunk with content left the step (a chat model's message-start chunk is held
        back) is retried after a backoff wait; one that fails after it is not, and its
        error is raised as it is, with a note of the chunks delivered: the consumer never
        sees a chunk twice or a splice of two attempts. Each attempt is a nested run with
        ``{"attempt": n}`` in its events' metadata; the wrapper's end event carries every
        attempt's token usage (``data["usage"]``).

        Args:
            retry_if_exception_type: The exception types worth another attempt. ``None``
                (the default): what is transient for a model API
                (:func:`engine.is_transient_error`: timeouts, connection errors, HTTP 429
                and 5xx (529 included), an ``overloaded_error`` or ``rate_limit_error``
                mid-stream), and nothing else.
            stop_after_attempt: How many attempts in all (>= 1).
            wait_exponential_jitter: Wait between attempts with an exponential backoff
                and jitter (else retry at once).
            exponential_jitter_params: ``initial`` (1 s), ``max`` (60 s), ``exp_base``
                (2), ``jitter`` (1 s): the wait after attempt n is
                ``min(initial * exp_base ** (n - 1) + uniform(0, jitter), max)``.
            respect_retry_after: When the error carries the server's ``retry-after``
                (the anthropic SDK's errors carry the response), wait exactly that long.
            max_retry_after: A ``retry-after`` longer than this (seconds) is not waited
                for: the error is raised.

        The waits are cancellable (and take no real time under trio's ``MockClock``).
        The last attempt's error is raised when every attempt failed.

        Raises:
            ValueError: For ``stop_after_attempt`` < 1, a negative or unknown backoff
                parameter or a negative ``max_retry_after`` (at once).
            TypeError: For ``retry_if_exception_type`` holding a non-exception type.
        """
        from ._retry import RunnableRetry

        return RunnableRetry(
            self,
            retry_if_exception_type=retry_if_exception_type,
            stop_after_attempt=stop_after_attempt,
            wait_exponential_jitter=wait_exponential_jitter,
            exponential_jitter_params=exponential_jitter_params,  # type: ignore[arg-type]
            respect_retry_after=respect_retry_after,
            max_retry_after=max_retry_after,
        )

    def with_fallbacks(
        self,
        fallbacks: Sequence[Runnable[In, Out]],
        *,
        exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,),
        exception_key: str | None = None,
    ) -> RunnableWithFallbacks[In, Out]:
        """This runnable, with others to take over when it fails before its commit point.

        The fallbacks are tried in order, each when the one before failed with one of
        ``exceptions_to_handle`` before its first chunk with content left the step, in
        ``astream`` as in ``invoke``. A failure after that point is raised as it is,
        with a note of the chunks delivered (a fallback would splice two replies). When
        all fail, the first error is raised (as in langchain-core), with the others in a
        note. Each runnable tried is a nested run with ``{"attempt": n}`` in its events'
        metadata (the primary is 1).

        Args:
            fallbacks: The runnables to try next, in order.
            exceptions_to_handle: The exception types that hand over to the next one.
            exception_key: When set, the input must be a dict, and each fallback gets
                the previous runnable's exception under this key.

        Raises:
            ValueError: For an empty ``fallbacks`` (at once).
            TypeError: For a fallback that is not a runnable, or a bad
                ``exceptions_to_handle`` or ``exception_key`` (at once).
        """
        from ._fallbacks import RunnableWithFallbacks

        return RunnableWithFallbacks(
            self, fallbacks, exceptions_to_handle=exceptions_to_handle, exception_key=exception_key
        )

    # -- running ----------------------------------------------------------------------

    def astream(self, input: In, config: Config = None) -> RunStream[Out]:
        """Stream the output chunks as they are produced.

        Use as ``async with chain.astream(x) as chunks: async for c in chunks`` (the
        block owns the run) or as a bare ``async for c in chain.astream(x)``.

        Raises:
            ConfigError: For a bad ``config`` (at once, before anything runs).
        """
        return RunStream(plan_run(self, config, input=input))

    def atransform(self, inputs: AsyncIterable[In], config: Config = None) -> RunStream[Out]:
        """Like :meth:`astream`, for an input that is itself a stream of chunks."""
        return RunStream(plan_run(self, config, input_stream=inputs))

    async def ainvoke(self, input: In, config: Config = None) -> Out:
        """Run to completion and return the whole output (its chunks added up).

        Inside an ``astream_events`` stream, an invoked run publishes no stream events
        but a model's tokens, as langchain-core's ``ainvoke`` does (its start and end
        events carry its input and output).
        """
        total = ChunkSum(self.output_accumulation)
        async with RunStream(plan_run(self, config, input=input, invoked=True)) as stream:
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
        limit = self._batch_limit(configs, max_concurrency)
        results: list[Any] = [None] * len(inputs)

        async def run_one(index: int) -> None:
            try:
                results[index] = await self.ainvoke(inputs[index], configs[index])
            except Exception as exc:
                if not return_exceptions:
                    raise
                results[index] = exc

        await run_batch(len(inputs), run_one, limit)
        return results

    def abatch_as_completed(
        self,
        inputs: Sequence[In],
        config: Config | Sequence[Config] = None,
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
    ) -> RunStream[tuple[int, Out | Exception]]:
        """Run on every input concurrently; ``(index, output)`` pairs as each one finishes.

        As :meth:`abatch` (configs, ``max_concurrency`` or the config's, one limiter for
        the whole run), but the results come out in the order the inputs finish. With
        ``return_exceptions``, a failed input gives ``(index, exception)``; without, the
        first failure cancels the inputs still running and is raised after the pairs
        already given. Returns a :class:`~engine.RunStream`: iterate it bare or in
        ``async with`` (leaving the block early cancels what is still running).

        Raises:
            ConfigError: For a bad config or ``max_concurrency`` (at once).
        """
        from ._as_completed import AsCompletedPlan

        inputs = list(inputs)
        configs = _per_input_configs(config, len(inputs))
        limit = self._batch_limit(configs, max_concurrency)
        plan = AsCompletedPlan(self, inputs, configs, return_exceptions=return_exceptions, limit=limit)
        # AsCompletedPlan offers the part of RunPlan that RunStream uses.
        return RunStream(cast("RunPlan[tuple[int, Out | Exception]]", plan))

    def _batch_limit(self, configs: list[RunConfig], max_concurrency: int | None) -> int | None:
        limit = max_concurrency
        if limit is None:
            limit = (configs[0].max_concurrency if configs else None) or self._max_concurrency()
        if limit is not None:
            RunConfig.build(max_concurrency=limit, where="abatch()")
        return limit

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

        The run publishes to the bus given in its config (so a service-wide monitor sees
        it too) or to a private bus; the stream sees this run only and ends with its
        root's end event (after a step's error events, it raises that error).

        Raises:
            ValueError: For an unknown ``version`` or filter type (at once).
        """
        filters = EventFilterArgs(
            include_names, include_types, include_tags, exclude_names, exclude_types, exclude_tags
        )
        events = EventsRequest(filters=filters, version=version, capacity=capacity)
        return RunStream(plan_run(self, config, input=input, events=events))

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

        filters = EventFilterArgs(
            include_names, include_types, include_tags, exclude_names, exclude_types, exclude_tags
        )
        return stream_log(self, input, config, diff=diff, filters=filters)

    # -- synchronous API --------------------------------------------------------------

    def invoke(self, input: In, config: Config = None) -> Out:
        """Run to completion from synchronous code and return the whole output.

        Works from plain code, from a worker thread, from a step's synchronous function
        (the nested run joins the caller's run), and from an event loop's own thread
        (the call blocks that loop until done). It never starts an event loop per call.
        An interrupted call (Ctrl-C) cancels its run and waits for it to end, for at most
        5 seconds, before the ``KeyboardInterrupt`` goes on; so do ``batch`` and ``stream``.
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

    def batch_as_completed(
        self,
        inputs: Sequence[In],
        config: Config | Sequence[Config] = None,
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
    ) -> Iterator[tuple[int, Out | Exception]]:
        """The synchronous form of :meth:`abatch_as_completed`: a generator of pairs."""
        from ._portal import iterate_blocking

        return iterate_blocking(
            lambda: self.abatch_as_completed(
                inputs, config, return_exceptions=return_exceptions, max_concurrency=max_concurrency
            )
        )

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
    if single.run_id is not None and count > 1:
        # A run id names one run: as langchain-core, the first input's run gets it.
        warnings.warn(
            "a batch's single config has a run_id: only the first input's run gets it",
            UserWarning,
            stacklevel=3,
        )
        return [single, *[attrs.evolve(single, run_id=None)] * (count - 1)]
    return [single] * count
