"""``RayRunnable``: a step that runs the wrapped runnable on a pool of Ray actors.

It is a hosting step (``engine/_hosting.py``): the engine supplies composition, batching
(``abatch``'s one limiter, so ``max_concurrency`` caps the calls in flight on the
driver and therefore on the workers), ``abatch_as_completed``, cancellation and events;
:meth:`RayRunnable.host` turns one run of the step into one call of a pool actor's
streaming generator (``engine/_rayworker.py``) and hands what comes back on:

* output chunks through the step's emitter, held back (as an attempt's) until the first
  chunk with content: before that commit point an attempt whose actor died is tried
  again on another actor (at most ``max_attempts`` in all); after it, the error goes on,
  because a second attempt would show the consumer chunks twice. Ray's own retries
  (actor restarts, task retries), which splice two attempts of a stream, are off;
* the remote steps' events, when someone listens, through an :class:`EventForwarder`
  (the remote run nests under a stand-in of this step, so the events carry this run's
  ids, tags and metadata).

Leaving the step in any way but a clean end (cancelled, nobody reads, an error) cancels
the remote call with ``ray.cancel`` in a ``finally`` on the driver's loop, so nothing
keeps running on the cluster. Awaiting Ray goes through ``engine/_raybridge.py`` (trio
or asyncio, no thread per call). Ray is imported when a ``RayRunnable`` is made, not
when ``engine.ray`` is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import CellType, FunctionType, MappingProxyType
from typing import Any, ClassVar, Final, TypeVar

import attrs

from ._errors import CompositionError
from ._forward import EventForwarder
from ._hosting import Attempt, Emitter, HostingNode, note_delivered
from ._raybridge import await_ref, next_ref
from ._rayworker import CHUNKS, RayWorker, on_worker
from ._runnable import Runnable
from ._step import Step
from ._wrapper import BoundWrapper

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("RayRunnable", "import_ray")

_LOG = logging.getLogger("rillet")

_INSTALL_HINT: Final = "install the 'ray' extra: pip install -e '.[ray]' (or pip install 'rillet[ray]')"

#: Ray's retry options: a retried actor call or restarted actor would replay a stream
#: from its start after chunks of the first attempt were delivered (a splice).
_NO_RAY_RETRIES: Final = {"max_restarts": 0, "max_task_retries": 0}


def import_ray() -> Any:
    """Import Ray, or say which extra brings it.

    Raises:
        ImportError: Ray is not installed.
    """
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"engine.ray.RayRunnable needs Ray, which is not installed: {_INSTALL_HINT}"
        ) from exc
    return ray


def _check_runnable(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Runnable):
        raise TypeError(
            f"RayRunnable runs a runnable on Ray actors, got {type(value).__name__}: {value!r} "
            "(wrap a function with RunnableLambda first)"
        )
    nested = _nested_ray_runnable(value)
    if nested is not None:
        raise CompositionError(
            f"RayRunnable({value!r}): it holds another RayRunnable ({nested!r}); a RayRunnable "
            "cannot run inside another one (each of the outer actors would start a pool of its "
            "own). Put the two side by side in the chain instead: "
            "RayRunnable(a) | RayRunnable(b)"
        )


def _nested_ray_runnable(root: Runnable[Any, Any]) -> RayRunnable[Any, Any] | None:
    """A ``RayRunnable`` inside ``root``, if any: in its steps and bound runnables (its
    attrs fields, and the lists, tuples, sets and dicts they hold), and in the closures of
    its functions (runnables and functions there only: data a function captured is never
    walked, nor a mapping that is not a plain dict, whose reads may cost or fail). A
    RayRunnable hidden deeper is refused on the worker, when it runs."""
    stack: list[tuple[Any, bool]] = [(root, True)]  # (item, whether a runnable's field holds it)
    seen: set[int] = set()
    while stack:
        item, in_field = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, RayRunnable):
            return item
        if isinstance(item, Runnable) and attrs.has(type(item)):
            stack.extend((getattr(item, field.name, None), True) for field in attrs.fields(type(item)))  # type: ignore[arg-type]
        elif isinstance(item, FunctionType) and item.__closure__:
            stack.extend((_cell_contents(cell), False) for cell in item.__closure__)
        elif not in_field:
            continue
        elif isinstance(item, list | tuple | frozenset | set):
            stack.extend((element, True) for element in item)
        elif type(item) is dict or type(item) is MappingProxyType:
            stack.extend((value, True) for value in item.values())
    return None


def _cell_contents(cell: CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell (a name not bound yet)
        return None


def _check_positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"RayRunnable({attribute.name}=...) must be an int >= 1, got {value!r}")


def _actor_options(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise TypeError(f"RayRunnable(actor_options=...) must be a dict, got {type(value).__name__}")
    for key in (*_NO_RAY_RETRIES, "max_retries"):
        if value.get(key):
            raise ValueError(
                f"RayRunnable(actor_options={{{key!r}: {value[key]!r}}}): Ray's own retries are off, "
                "because a retried stream would splice two attempts; RayRunnable retries an item "
                "whose actor died itself, before its commit point (max_attempts)"
            )
    return MappingProxyType(dict(value))


@attrs.define(eq=False)
class _ActorPool:
    """The actors of one ``RayRunnable``, made at its first run; dead ones are replaced."""

    actors: list[Any] = attrs.field(factory=list)
    load: dict[Any, int] = attrs.field(factory=dict)
    _turn: int = 0

    def ensure(self, owner: RayRunnable[Any, Any]) -> None:
        if self.actors:
            return
        ray = import_ray()
        if not ray.is_initialized():
            _LOG.warning(
                "engine.ray: Ray was not initialised; starting a local Ray (ray.init()). "
                "Call ray.init(...) first to choose the cluster and its resources."
            )
            ray.init(include_dashboard=False)
        for _ in range(owner.num_actors):
            self._add(owner)

    def _add(self, owner: RayRunnable[Any, Any]) -> Any:
        ray = import_ray()
        actor_class = ray.remote(RayWorker)
        actor = actor_class.options(**owner.actor_options, **_NO_RAY_RETRIES).remote(owner.bound)
        self.actors.append(actor)
        self.load[actor] = 0
        return actor

    def pick(self, avoid: Any = None) -> Any:
        """The actor with the fewest calls in flight (in turn among equals)."""
        count = len(self.actors)
        self._turn = (self._turn + 1) % count
        order = self.actors[self._turn :] + self.actors[: self._turn]
        choices = [a for a in order if a is not avoid] or order
        actor = min(choices, key=self.load.__getitem__)
        self.load[actor] += 1
        return actor

    def release(self, actor: Any) -> None:
        if actor in self.load:
            self.load[actor] -= 1

    def lost(self, actor: Any, owner: RayRunnable[Any, Any]) -> None:
        """``actor`` died: replace it (its other calls fail on their own and retry)."""
        if actor in self.load:
            self.actors.remove(actor)
            del self.load[actor]
            self._add(owner)

    def shutdown(self) -> None:
        if not self.actors:
            return
        ray = import_ray()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors.clear()
        self.load.clear()


@attrs.frozen(eq=False, repr=False)
class RayRunnable(BoundWrapper[In, Out], HostingNode[In, Out]):
    """Runs ``bound`` on a pool of Ray actors; composes like any runnable.

    Each run of this step (one ``ainvoke``, one item of ``abatch``, one ``astream``) is
    one call on the least busy actor. The actors are made at the first run (each holds
    its own copy of ``bound``, pickled once); a local Ray is started then if none was
    (with a warning in the ``rillet`` log).

    Args:
        bound: The runnable to run remotely.
        num_actors: How many actors (>= 1).
        actor_options: Ray actor options (``num_cpus``, ``runtime_env``, ``resources``...).
            Ray's own retries are off and cannot be turned on here.
        max_attempts: Attempts per run when an actor dies before the run's commit point
            (its first chunk with content), each on another actor (>= 1).
        batch_limit: At most this many items (chunk lists or events) per Ray object.
        unread_objects: At most this many objects made and not yet read by the driver:
            past it the worker's run waits (a slow driver slows the worker).

    Raises:
        TypeError: ``bound`` is not a runnable, or ``actor_options`` not a dict.
        CompositionError: ``bound`` holds another ``RayRunnable`` (they do not nest).
        ValueError: A count below 1, or an actor option that turns Ray's retries on.
        ImportError: Ray is not installed (the message names the extra).
    """

    kind: ClassVar[str] = "chain"

    bound: Runnable[In, Out] = attrs.field(validator=_check_runnable)
    num_actors: int = attrs.field(default=2, kw_only=True, validator=_check_positive)
    actor_options: Mapping[str, Any] = attrs.field(default=None, kw_only=True, converter=_actor_options)
    max_attempts: int = attrs.field(default=3, kw_only=True, validator=_check_positive)
    batch_limit: int = attrs.field(default=256, kw_only=True, validator=_check_positive)
    unread_objects: int = attrs.field(default=16, kw_only=True, validator=_check_positive)
    _pool: _ActorPool = attrs.field(factory=_ActorPool, init=False)

    def __attrs_post_init__(self) -> None:
        import_ray()

    def get_name(self) -> str:
        return "RayRunnable"

    @property
    def actors(self) -> list[Any]:
        """The pool's actor handles now (empty before the first run)."""
        return list(self._pool.actors)

    def start_actors(self) -> list[Any]:
        """Make the actors now (else at the first run) and return their handles."""
        self._pool.ensure(self)
        return self.actors

    def shutdown(self) -> None:
        """Kill the pool's actors (a later run makes new ones)."""
        self._pool.shutdown()

    async def host(self, value: In, emitter: Emitter, step: Step) -> None:
        if on_worker():
            # (One made at run time inside the outer chain's code: construction could not see it.)
            raise CompositionError(
                f"{self!r} was run on a worker of another RayRunnable: a RayRunnable cannot "
                "run inside another one; put them side by side in the chain instead"
            )
        ray = import_ray()
        pool = self._pool
        pool.ensure(self)
        avoid = None
        for number in range(1, self.max_attempts + 1):
            actor = pool.pick(avoid)
            forwarder = EventForwarder.open(step)
            attempt = Attempt(self.bound.carries_content)
            failure: BaseException | None = None
            try:
                await self._call(actor, value, step, emitter, attempt, forwarder)
                return
            except ray.exceptions.RayActorError as exc:
                failure = exc
                pool.lost(actor, self)
                if attempt.committed or number == self.max_attempts or emitter.receiver_closed:
                    if attempt.committed:
                        note_delivered(exc, step.name, emitter.delivered)
                    else:
                        exc.add_note(f"{step.name}: attempt {number} of {number} lost its actor; gave up")
                    raise
                avoid = actor
            except Exception as exc:
                failure = exc
                raise
            finally:
                pool.release(actor)
                if forwarder is not None:
                    # (None when cancelled: the remote steps left open end as cancelled.)
                    forwarder.close(failure)

    async def _call(
        self,
        actor: Any,
        value: Any,
        step: Step,
        emitter: Emitter,
        attempt: Attempt,
        forwarder: EventForwarder | None,
    ) -> None:
        ray = import_ray()
        context = EventForwarder.context(step, forwarder.filters() if forwarder is not None else ())
        if step.scope.invoked:
            await self._call_whole(ray, actor, value, context, emitter, attempt, forwarder)
            return
        # _generator_backpressure_num_objects is a private Ray option (no public one
        # bounds a streaming generator): the worker's generator waits while this many
        # of its objects are unread by the driver. Ray's default is unbounded.
        generator = actor.stream.options(
            num_returns="streaming", _generator_backpressure_num_objects=self.unread_objects
        ).remote(value, context, self.batch_limit)
        finished = False
        try:
            while True:
                try:
                    ref = await next_ref(generator)
                except StopAsyncIteration:
                    finished = True
                    break
                try:
                    batch = await await_ref(ref)
                except ray.exceptions.RayTaskError as exc:
                    finished = True  # the remote call is over
                    raise _unwrapped(exc) from None
                await self._hand_on(batch, emitter, attempt, forwarder, last=False)
            await self._hand_on([], emitter, attempt, forwarder)
        finally:
            if not finished:
                # Cancelled, nobody reads, the actor died, or a send failed: stop the
                # remote run now (dropping the generator would let it run to its end).
                _cancel(ray, generator)

    async def _call_whole(
        self,
        ray: Any,
        actor: Any,
        value: Any,
        context: Any,
        emitter: Emitter,
        attempt: Attempt,
        forwarder: EventForwarder | None,
    ) -> None:
        # The run's caller wants only its whole output (ainvoke, abatch): one plain
        # actor call answers with everything, a fraction of a streaming call's cost.
        ref = actor.invoke.remote(value, context)
        finished = False
        try:
            try:
                items = await await_ref(ref)
            except ray.exceptions.RayTaskError as exc:
                finished = True
                raise _unwrapped(exc) from None
            finished = True
            await self._hand_on(items, emitter, attempt, forwarder)
        finally:
            if not finished:
                _cancel(ray, ref)

    async def _hand_on(
        self,
        items: list[Any],
        emitter: Emitter,
        attempt: Attempt,
        forwarder: EventForwarder | None,
        *,
        last: bool = True,
    ) -> None:
        """Send the chunks and publish the events of ``items``; at the ``last`` items,
        release what the attempt still holds (a reply of chunks without content)."""
        for tag, payload in items:
            if tag == CHUNKS:
                await _send(payload, attempt, emitter)
            elif forwarder is not None:
                await forwarder.publish(payload)
        if last:
            for chunk in attempt.release_held():
                await emitter.send(chunk)

    def __repr__(self) -> str:
        return f"RayRunnable({self.bound!r}, num_actors={self.num_actors})"


def _cancel(ray: Any, generator: Any) -> None:
    try:
        ray.cancel(generator)
    except Exception:  # the actor or the cluster is gone: nothing left to stop there
        _LOG.debug("engine.ray: ray.cancel failed", exc_info=True)


async def _send(chunks: list[Any], attempt: Attempt, emitter: Emitter) -> None:
    if attempt.committed:
        for chunk in chunks:
            await emitter.send(chunk)
        return
    for item in chunks:
        for chunk in attempt.offer(item):
            await emitter.send(chunk)


def _unwrapped(error: Any) -> BaseException:
    """The worker's own exception inside Ray's ``RayTaskError`` (its type is the step's)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        cause.add_note("(raised on a Ray worker of RayRunnable)")
        return cause
    return error  # type: ignore[no-any-return]
