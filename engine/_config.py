"""Run configuration: what ``config=`` and ``with_config`` accept, validated up front."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ._edge import validate_capacity
from ._errors import ConfigError

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = ("DEFAULT_CAPACITY", "DEFAULT_RECURSION_LIMIT", "MAX_DEFAULT_CAPACITY", "RunConfig")

#: Items an edge buffers by default. Small, so that a stalled consumer holds back the
#: producers after a few chunks, yet large enough that the actors rarely wait.
DEFAULT_CAPACITY = 16
MAX_DEFAULT_CAPACITY = 16
#: How deep runs may nest (a run started inside a step of another run is one level
#: deeper), as in langchain-core: a step that runs itself again fails fast instead of
#: growing until memory runs out.
DEFAULT_RECURSION_LIMIT = 25

_KEYS = ("tags", "metadata", "run_name", "max_concurrency", "bus", "capacity", "recursion_limit")


@attrs.frozen
class RunConfig:
    """A validated run configuration.

    Attributes:
        tags: Tags for the step (inherited by its children).
        metadata: Metadata for the step (inherited by its children).
        run_name: The name the step's events carry.
        max_concurrency: The most batch items in flight at once, for the whole run.
        bus: The :class:`~engine.EventBus` the run publishes to. Bound with
            ``with_config``, it sees the bound step and everything under it (the steps
            of a bound sequence, runs started inside them), besides the run's own bus.
        capacity: Items each edge of the run buffers.
        recursion_limit: How many levels deep runs started inside this one may nest
            (default 25); deeper raises :class:`~engine.RecursionLimitError`. Runs
            started inside inherit it.
    """

    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    run_name: str | None = None
    max_concurrency: int | None = None
    bus: EventBus | None = None
    capacity: int | None = None
    recursion_limit: int | None = None

    @classmethod
    def coerce(cls, config: RunConfig | Mapping[str, Any] | None, *, where: str = "config") -> RunConfig:
        """Validate a config dict (or pass a ``RunConfig`` through).

        Raises:
            ConfigError: Naming the key and what is wrong with it.
        """
        if config is None:
            return _EMPTY
        if isinstance(config, RunConfig):
            return config
        if not isinstance(config, Mapping):
            raise ConfigError(f"{where} must be a dict, got {type(config).__name__}")
        unknown = [key for key in config if key not in _KEYS]
        if unknown:
            raise ConfigError(
                f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys are {', '.join(_KEYS)}"
            )
        return cls.build(where=where, **config)

    @classmethod
    def build(cls, *, where: str = "config", **values: Any) -> RunConfig:
        """Validate keyword values (the ``with_config`` form)."""
        tags = values.get("tags") or ()
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise ConfigError(f"{where}['tags'] must be a list of strings, got {tags!r}")
        metadata = values.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ConfigError(f"{where}['metadata'] must be a dict, got {metadata!r}")
        run_name = values.get("run_name")
        if run_name is not None and (not isinstance(run_name, str) or not run_name):
            raise ConfigError(f"{where}['run_name'] must be a non-empty string, got {run_name!r}")
        max_concurrency = values.get("max_concurrency")
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ConfigError(f"{where}['max_concurrency'] must be an int >= 1, got {max_concurrency!r}")
        capacity = values.get("capacity")
        if capacity is not None:
            try:
                validate_capacity(capacity, what=f"{where}['capacity']")
            except (TypeError, ValueError) as exc:
                raise ConfigError(str(exc)) from None
        recursion_limit = values.get("recursion_limit")
        if recursion_limit is not None and (
            isinstance(recursion_limit, bool) or not isinstance(recursion_limit, int) or recursion_limit < 1
        ):
            raise ConfigError(f"{where}['recursion_limit'] must be an int >= 1, got {recursion_limit!r}")
        bus = values.get("bus")
        if bus is not None:
            from ._bus import EventBus

            if not isinstance(bus, EventBus):
                raise ConfigError(f"{where}['bus'] must be an EventBus, got {type(bus).__name__}")
        return cls(
            tags=tuple(tags),
            metadata=dict(metadata),
            run_name=run_name,
            max_concurrency=max_concurrency,
            bus=bus,
            capacity=capacity,
            recursion_limit=recursion_limit,
        )

    def merged(self, other: RunConfig) -> RunConfig:
        """``other`` layered over this config (tags appended, metadata merged)."""
        return RunConfig(
            tags=self.tags + tuple(t for t in other.tags if t not in self.tags),
            metadata={**self.metadata, **other.metadata},
            run_name=other.run_name if other.run_name is not None else self.run_name,
            max_concurrency=other.max_concurrency
            if other.max_concurrency is not None
            else self.max_concurrency,
            bus=other.bus if other.bus is not None else self.bus,
            capacity=other.capacity if other.capacity is not None else self.capacity,
            recursion_limit=other.recursion_limit
            if other.recursion_limit is not None
            else self.recursion_limit,
        )


_EMPTY = RunConfig()
