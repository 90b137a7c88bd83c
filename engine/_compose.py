"""Composite runnables: sequences, parallel steps, assign, and config bindings.

A composite owns no actor of its own. Launching it creates its step, wires its
children's inboxes and outboxes, and (only when someone listens to it) taps its input
and output so that its own events can be published from the children's sends.

Composites are the engine's own: users compose with ``|``, dicts and
``RunnablePassthrough.assign`` rather than subclass them, so the hook they implement
(``_launch``, with ``_max_concurrency`` for bindings) stays private.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self, TypeVar

import anyio
import attrs

from ._actors import LeafNode, launch_fused
from ._chunks import AddableDict
from ._config import RunConfig
from ._edge import Accumulation, ConstantInbox, Edge
from ._errors import CompositionError
from ._launch import Inbox, KeyedOutbox, Launch, Outbox, RecordingInbox, Site, TapOutbox
from ._runnable import Runnable
from ._step import Step
from ._wrapper import BoundWrapper

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("RunnableAssign", "RunnableBinding", "RunnableParallel", "RunnableSequence")


def _composite_ends(
    launch: Launch, runnable: Runnable[Any, Any], site: Site, inbox: Inbox[Any], outbox: Outbox[Any]
) -> tuple[Step, Inbox[Any], Outbox[Any]]:
    step = launch.new_step(runnable, site, inbox)
    step.accumulation = runnable.output_accumulation
    if step.subscribers:
        if not step.input_known:
            inbox = RecordingInbox(inbox, step)
        outbox = TapOutbox(outbox, step)
    return step, inbox, outbox


@attrs.frozen(eq=False, repr=False)
class RunnableSequence(Runnable[In, Out]):
    """Steps run one after the other, each streaming into the next (``a | b | c``).

    Every step is its own actor (or graph of actors); each pair of neighbours is joined
    by a bounded edge. Its steps carry the local tags ``seq:step:1``, ``seq:step:2``...
    """

    steps: tuple[Runnable[Any, Any], ...]
    #: Its input streams into its first step: inside a composite, its start shows none.
    input_at_start: ClassVar[bool] = False

    @classmethod
    def of(cls, *steps: Runnable[Any, Any]) -> RunnableSequence[Any, Any]:
        """A sequence of ``steps``, flattening plain sequences among them."""
        flat: list[Runnable[Any, Any]] = []
        for step in steps:
            if not isinstance(step, Runnable):
                raise CompositionError(f"a sequence step must be a Runnable, got {type(step).__name__}")
            if type(step) is RunnableSequence:
                flat.extend(step.steps)
            else:
                flat.append(step)
        if not flat:
            raise CompositionError("a sequence needs at least one step")
        return cls(tuple(flat))

    @property
    def output_accumulation(self) -> Accumulation:
        return self.steps[-1].output_accumulation

    def carries_content(self, chunk: Any) -> bool:
        return self.steps[-1].carries_content(chunk)

    @property
    def first(self) -> Runnable[In, Any]:
        """The first step."""
        return self.steps[0]

    @property
    def last(self) -> Runnable[Any, Out]:
        """The last step."""
        return self.steps[-1]

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        step, current, outbox = _composite_ends(launch, self, site, inbox, outbox)
        capacity = site.capacity or launch.scope.capacity
        groups = self._groups(launch, step, site)
        for index, group in enumerate(groups):
            last_step_index = group[-1][0]
            last_child = self.steps[last_step_index]
            if index == len(groups) - 1:
                out: Outbox[Any] = outbox
            else:
                out = launch.edge(
                    capacity, f"{step.name} step {last_step_index + 1}", last_child.output_accumulation
                )
            if len(group) == 1:
                position, child_site = group[0]
                self.steps[position]._launch(launch, current, out, child_site)
            else:
                launch_fused(launch, [_leaf(self.steps[p], s) for p, s in group], current, out)
            if isinstance(out, Edge):
                current = out

    def _groups(self, launch: Launch, step: Step, site: Site) -> list[list[tuple[int, Site]]]:
        """The steps to launch; neighbouring leaves that a subscriber sees share one
        group, launched as one actor so that their events come in exact pipeline order."""
        # The buses with subscribers that this sequence's steps publish to; a binding
        # on a step may add its own.
        watched = tuple(
            b for b in (launch.scope.bus, *step.bound_buses) if b is not None and b.subscriber_count
        )
        groups: list[list[tuple[int, Site]]] = []
        previous_fusable = False
        for position, child in enumerate(self.steps):
            child_site = site.child(step, f"seq:step:{position + 1}")
            fusable = False
            leaf = _leaf(child, child_site) if watched or isinstance(child, RunnableBinding) else None
            if leaf is not None:
                node, leaf_site = leaf
                fusable = any(
                    bus.would_see(
                        name=leaf_site.run_name or node.get_name(),
                        kind=node.kind,
                        tags=(*leaf_site.local_tags, *leaf_site.own_tags, *leaf_site.inherited_tags),
                        parent_ids=(*step.parent_ids, step.run_id),
                    )
                    for bus in (*watched, *leaf_site.buses)
                )
            if fusable and previous_fusable:
                groups[-1].append((position, child_site))
            else:
                groups.append([(position, child_site)])
            previous_fusable = fusable
        return groups

    def __repr__(self) -> str:
        return " | ".join(repr(step) for step in self.steps)


def _leaf(runnable: Runnable[Any, Any], site: Site) -> Any:
    """``(leaf, site)`` for a fusable leaf (looking through bindings and configurable
    choices), else ``None``."""
    while True:
        if isinstance(runnable, RunnableBinding):
            site = _bound_site(site, runnable.config)
            runnable = runnable.bound
        elif (chosen := runnable._chosen_at(site)) is not None:
            runnable, site = chosen
        else:
            break
    if isinstance(runnable, LeafNode) and runnable._can_fuse():
        return (runnable, site)
    return None


def _fan_out(
    launch: Launch,
    step: Step,
    inbox: Inbox[Any],
    count: int,
    capacity: int,
    check: Callable[[Any], None] | None = None,
) -> list[Inbox[Any]]:
    """``count`` inboxes that each see every chunk of ``inbox`` (after ``check``)."""
    if isinstance(inbox, ConstantInbox):
        if check is not None:
            check(inbox.value)
        return [inbox.fresh() for _ in range(count)]
    edges = [launch.edge(capacity, f"{step.name} branch {i}", inbox.accumulation) for i in range(count)]

    async def fan_out() -> None:
        try:
            async for chunk in inbox:
                if check is not None:
                    check(chunk)
                for edge in edges:
                    # A branch that stopped reading is left out (also when it stops
                    # while this send waits); the fan-out itself is stopped once every
                    # branch has (see Launch.spawn).
                    if not edge.receiver_closed:
                        try:
                            await edge.send(chunk)
                        except anyio.BrokenResourceError:
                            if not edge.receiver_closed:
                                raise
        finally:
            for edge in edges:
                edge.close()

    launch.spawn(step, fan_out, inbox=inbox, outboxes=edges)
    return list(edges)


@attrs.frozen(eq=False, repr=False, init=False)
class RunnableParallel(Runnable[In, dict[str, Any]]):
    """Branches that all get the same input and run concurrently.

    The output streams as one-key chunks (``{"question": ...}``, ``{"context": [...]}``)
    as each branch produces them; they add up to the dict of every branch's output.
    A dict inside a chain is a ``RunnableParallel``.
    """

    branches: Mapping[str, Runnable[In, Any]]
    #: Its input streams into its branches: inside a composite, its start shows none.
    input_at_start: ClassVar[bool] = False

    def __init__(self, branches: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        from ._functions import coerce_runnable

        merged: dict[str, Any] = dict(branches or {})
        merged.update(kwargs)
        if not merged:
            raise CompositionError("RunnableParallel needs at least one branch")
        coerced: dict[str, Runnable[In, Any]] = {}
        for key, value in merged.items():
            if not isinstance(key, str):
                raise CompositionError(f"RunnableParallel keys must be strings, got {key!r}")
            coerced[key] = coerce_runnable(value, where=f"branch {key!r} of a parallel step")
        self.__attrs_init__(branches=coerced)

    def get_name(self) -> str:
        return f"RunnableParallel<{','.join(self.branches)}>"

    @property
    def output_accumulation(self) -> Accumulation:
        return "add"

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[dict[str, Any]], site: Site) -> None:
        step, inbox, outbox = _composite_ends(launch, self, site, inbox, outbox)
        step.accumulation = "add"
        capacity = site.capacity or launch.scope.capacity
        inboxes = _fan_out(launch, step, inbox, len(self.branches), capacity)
        for _ in range(len(self.branches) - 1):
            outbox.add_sender()
        for (key, branch), branch_inbox in zip(self.branches.items(), inboxes, strict=True):
            keyed = KeyedOutbox(key, outbox, branch.output_accumulation)
            branch._launch(launch, branch_inbox, keyed, site.child(step, f"map:key:{key}"))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v!r}" for k, v in self.branches.items())
        return "{" + inner + "}"


@attrs.frozen(eq=False, repr=False)
class RunnableAssign(Runnable[dict[str, Any], dict[str, Any]]):
    """Passes its dict input through and adds the keys computed by ``mapper``.

    Made by ``RunnablePassthrough.assign(key=runnable_or_function, ...)``. The input's
    keys stream out as they arrive; each new key streams as its branch produces it.
    """

    mapper: RunnableParallel[dict[str, Any]]
    #: Its input streams through: inside a composite, its start shows none.
    input_at_start: ClassVar[bool] = False

    def get_name(self) -> str:
        return f"RunnableAssign<{','.join(self.mapper.branches)}>"

    def _launch(
        self, launch: Launch, inbox: Inbox[dict[str, Any]], outbox: Outbox[dict[str, Any]], site: Site
    ) -> None:
        step, inbox, outbox = _composite_ends(launch, self, site, inbox, outbox)
        step.accumulation = "add"
        capacity = site.capacity or launch.scope.capacity
        name = step.name

        def check(chunk: Any) -> None:
            if not isinstance(chunk, Mapping):
                raise TypeError(f"{name} needs a dict input, got {type(chunk).__name__}: {chunk!r}")

        passthrough, mapped = _fan_out(launch, step, inbox, 2, capacity, check)
        outbox.add_sender()

        assigned = frozenset(self.mapper.branches)

        async def forward() -> None:
            try:
                async for chunk in passthrough:
                    # An assigned key replaces the input's key of the same name.
                    kept = {k: v for k, v in chunk.items() if k not in assigned}
                    if kept:
                        await outbox.send(AddableDict(kept))
            finally:
                outbox.close()

        launch.spawn(step, forward, inbox=passthrough, outboxes=(outbox,))
        self.mapper._launch(launch, mapped, outbox, site.child(step))


@attrs.frozen(eq=False, repr=False)
class RunnableBinding(BoundWrapper[In, Out]):
    """A runnable with config bound to its own step (what ``with_config`` returns).

    A bound ``bus`` sees the bound step and everything under it (a bound sequence's
    steps, runs started inside them), in addition to the run's own bus; bound on an
    inner step, it sees only that part of the run.
    """

    bound: Runnable[In, Out]
    config: RunConfig

    @classmethod
    def wrap(cls, runnable: Runnable[In, Out], config: RunConfig) -> RunnableBinding[In, Out]:
        """Bind ``config`` to ``runnable``, merging with an existing binding."""
        if isinstance(runnable, RunnableBinding):
            return cls(runnable.bound, runnable.config.merged(config))
        return cls(runnable, config)

    def get_name(self) -> str:
        return self.config.run_name or self.bound.get_name()

    def with_call_arguments(self, arguments: Mapping[str, Any]) -> Self:
        """The bound runnable with ``arguments`` bound, under this binding's config."""
        return attrs.evolve(self, bound=self.bound.with_call_arguments(arguments))

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        self.bound._launch(launch, inbox, outbox, _bound_site(site, self.config))

    def _max_concurrency(self) -> int | None:
        return self.config.max_concurrency or self.bound._max_concurrency()

    def __repr__(self) -> str:
        return f"{self.bound!r}.with_config(...)"


def _bound_site(site: Site, config: RunConfig) -> Site:
    """``site`` with a binding's config applied to the step placed there.

    A bound bus is added to the buses the step (and every step under it, nested runs
    included) publishes to; the run's own bus keeps getting their events. A bound
    recursion limit applies to the runs started under the step (and, bound on a run's
    root, to that run itself).
    """
    bound = site.bind(run_name=config.run_name, tags=config.tags, metadata=config.metadata)
    changes: dict[str, Any] = {}
    if config.capacity is not None:
        changes["capacity"] = config.capacity
    if config.bus is not None and config.bus not in site.buses:
        changes["buses"] = (*site.buses, config.bus)
    if config.recursion_limit is not None:
        changes["recursion_limit"] = config.recursion_limit
    if config.configurable:
        # Bound values are defaults: what the call (or a binding above) sets wins, as
        # in langchain-core.
        changes["configurable"] = {**config.configurable, **site.configurable}
    return attrs.evolve(bound, **changes) if changes else bound
