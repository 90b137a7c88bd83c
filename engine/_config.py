"""Run configuration: what ``config=`` and ``with_config`` accept, validated up front,
and the config a step hands to the user's code that declares a ``config`` parameter."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

import attrs

from ._edge import validate_capacity
from ._errors import ConfigError

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._step import Step

__all__ = (
    "DEFAULT_CAPACITY",
    "DEFAULT_RECURSION_LIMIT",
    "MAX_DEFAULT_CAPACITY",
    "RunConfig",
    "RunnableConfig",
    "accepts_config",
    "step_config",
)

#: Items an edge buffers by default. Small, so that a stalled consumer holds back the
#: producers after a few chunks, yet large enough that the actors rarely wait.
DEFAULT_CAPACITY = 16
MAX_DEFAULT_CAPACITY = 16
#: How deep runs may nest (a run started inside a step of another run is one level
#: deeper), as in langchain-core: a step that runs itself again fails fast instead of
#: growing until memory runs out.
DEFAULT_RECURSION_LIMIT = 25

_KEYS = (
    "tags",
    "metadata",
    "run_name",
    "max_concurrency",
    "bus",
    "capacity",
    "recursion_limit",
    "run_id",
    "configurable",
    "callbacks",
)


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
        run_id: The run id of the run's root step (a string or a ``uuid.UUID``, kept as
            its string): its events carry it, and so does the config its steps' code
            gets. A call's own: ``with_config`` refuses it.
        configurable: Values for the runnables made configurable with
            ``configurable_fields``/``configurable_alternatives``, by their field id;
            merged over what the caller's run set, inherited by the steps under it and
            the runs started inside them. Bound with ``with_config``, they are defaults
            that a call's values override (as in langchain-core). Ids nothing uses are
            ignored.
        callbacks: Accepted for code ported from langchain-core, and harmless: ``None``,
            or the :class:`~engine.Step` a step's code found in its
            ``config["callbacks"]`` (or got as a tool's ``callbacks`` argument). A call
            made inside a step nests under it without it; with it, the step's own
            ``run_name`` in the same config is not applied to the call. An empty list
            is taken as ``None``; callback handlers are refused (rillet has none).
    """

    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    run_name: str | None = None
    max_concurrency: int | None = None
    bus: EventBus | None = None
    capacity: int | None = None
    recursion_limit: int | None = None
    run_id: str | None = None
    configurable: Mapping[str, Any] = attrs.field(factory=dict)
    callbacks: Step | None = None

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
        configurable = values.get("configurable") or {}
        if not isinstance(configurable, Mapping) or not all(isinstance(k, str) for k in configurable):
            raise ConfigError(
                f"{where}['configurable'] must be a dict with string keys, got {configurable!r}"
            )
        return cls(
            tags=tuple(tags),
            metadata=dict(metadata),
            run_name=run_name,
            max_concurrency=max_concurrency,
            bus=bus,
            capacity=capacity,
            recursion_limit=recursion_limit,
            run_id=_run_id(values.get("run_id"), where),
            configurable=dict(configurable),
            callbacks=_callbacks(values.get("callbacks"), where),
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
            run_id=other.run_id if other.run_id is not None else self.run_id,
            configurable={**self.configurable, **other.configurable},
            callbacks=other.callbacks if other.callbacks is not None else self.callbacks,
        )


_EMPTY = RunConfig()


def _run_id(value: object, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}['run_id'] must be a non-empty string or a uuid.UUID, got {value!r}")
    return value


def _callbacks(value: object, where: str) -> Step | None:
    from ._step import Step

    if value is None or isinstance(value, Step):
        return value
    if isinstance(value, list | tuple) and not value:
        return None  # no handlers: nothing to refuse
    raise ConfigError(
        f"{where}['callbacks'] must be None or the step a step's code got in its config "
        f"(config['callbacks']), got {type(value).__name__}: rillet has no callback handlers; "
        "watch a run with astream_events, an EventBus (config bus=...) or with_listeners()"
    )


class RunnableConfig(TypedDict, total=False):
    """The config a step hands to a function, generator or tool that declares a ``config``
    parameter (langchain-core's ``RunnableConfig``; also what ``config=`` accepts).

    A plain dict. Passing it on to a call inside the step (``other.invoke(x, config)``)
    nests that call under the step as if nothing were passed: its ``run_name`` and
    ``run_id`` describe the calling step and are not applied to the call (see
    :func:`step_config`), ``callbacks`` is the step itself, and the tags, metadata,
    configurable values and recursion limit are those the call inherits anyway.
    """

    tags: list[str]
    metadata: dict[str, Any]
    run_name: str
    run_id: str
    configurable: dict[str, Any]
    callbacks: Any
    recursion_limit: int
    max_concurrency: int | None
    bus: Any
    capacity: int | None


def step_config(step: Step) -> RunnableConfig:
    """The config of ``step`` as its code sees it.

    ``tags`` are the tags the step passes on to what runs under it, ``metadata`` and
    ``configurable`` what it inherited and was bound with, ``run_name`` its name (what
    its events carry), ``run_id`` the run id of the root of the top-level run it belongs
    to, ``recursion_limit`` the one in force, and ``callbacks`` the step itself.
    """
    return {
        "tags": list(step.inheritable_tags),
        "metadata": dict(step.metadata),
        "run_name": step.name,
        "run_id": step.root_run_id,
        "configurable": dict(step.configurable),
        "callbacks": step,
        "recursion_limit": step.recursion_limit,
    }


def accepts_config(func: Callable[..., Any], name: str = "config") -> bool:
    """Whether ``func`` declares a parameter called ``name`` that can be passed by keyword."""
    try:
        parameter = inspect.signature(func).parameters.get(name)
    except (TypeError, ValueError):  # a builtin without a signature takes no config
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
