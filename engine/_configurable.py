"""Runnables configured per call: ``configurable_fields`` and ``configurable_alternatives``.

A configurable runnable stands for the runnable it chooses at each call from the
``configurable`` values in force where it is placed (the call's config, a
``with_config(configurable=...)`` binding above it, or the run that a nested call was
started in). It has no step of its own: at launch it launches the chosen runnable in
its place, so the chosen runnable streams, nests and publishes its events exactly as it
would without the wrapper (as in langchain-core, whose configurable runnables add no
run of their own).

A choice that cannot be made (an unknown alternative, a value a field refuses) fails
the run before any of its steps starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Self, TypeVar

import attrs

from ._compose import RunnableBinding
from ._edge import Accumulation
from ._errors import CompositionError
from ._launch import Inbox, Launch, Outbox, Site
from ._runnable import Runnable

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ("ConfigurableField", "RunnableConfigurableAlternatives", "RunnableConfigurableFields")


@attrs.frozen
class ConfigurableField:
    """A field (or the choice of an alternative) set per call through ``configurable``.

    Attributes:
        id: The key in ``config["configurable"]`` that sets it.
        name: A human-readable name (for documentation only).
        description: What it does (for documentation only).
    """

    id: str = attrs.field()
    name: str | None = None
    description: str | None = None

    @id.validator
    def _check_id(self, attribute: attrs.Attribute[str], value: object) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"a ConfigurableField's id must be a non-empty string, got {value!r}")


class _Configurable(Runnable[In, Out]):
    """What both configurable kinds share: they launch, and answer for, another runnable."""

    default: Runnable[In, Out]

    def choose(self, configurable: Mapping[str, Any]) -> Runnable[In, Out]:
        """The runnable that runs for these ``configurable`` values."""
        raise NotImplementedError

    def get_name(self) -> str:
        return self.default.get_name()

    @property
    def output_accumulation(self) -> Accumulation:
        return self.default.output_accumulation

    def carries_content(self, chunk: Any) -> bool:
        return self.default.carries_content(chunk)

    def start_event_input(self, value: Any) -> Any:
        return self.default.start_event_input(value)

    def _max_concurrency(self) -> int | None:
        return self.default._max_concurrency()

    def _chosen_at(self, site: Site) -> tuple[Runnable[In, Out], Site]:
        chosen = self.choose(site.configurable)
        if chosen.output_accumulation != self.output_accumulation:
            raise CompositionError(
                f"{chosen.get_name()}, chosen for {self.get_name()}, adds its output up "
                f"({chosen.output_accumulation!r}) differently from it ({self.output_accumulation!r}); "
                "alternatives must add up the same way"
            )
        return chosen, site

    def _launch(self, launch: Launch, inbox: Inbox[In], outbox: Outbox[Out], site: Site) -> None:
        chosen, site = self._chosen_at(site)
        chosen._launch(launch, inbox, outbox, site)


def _settable_fields(runnable: Runnable[Any, Any]) -> tuple[Runnable[Any, Any], frozenset[str]]:
    """The attrs runnable under any ``with_config`` bindings, and its ``__init__`` keywords."""
    target = runnable
    while isinstance(target, RunnableBinding):
        target = target.bound
    kind: Any = type(target)
    if not attrs.has(kind):
        return target, frozenset()
    return target, frozenset(field.alias for field in attrs.fields(kind) if field.init)


def _rebuilt(runnable: Runnable[In, Out], changes: Mapping[str, Any]) -> Runnable[In, Out]:
    """``runnable`` with ``changes`` made to the attrs runnable under its bindings."""
    if isinstance(runnable, RunnableBinding):
        return attrs.evolve(runnable, bound=_rebuilt(runnable.bound, changes))
    rebuilt: Runnable[In, Out] = attrs.evolve(runnable, **changes)  # type: ignore[misc]  # attrs by contract
    return rebuilt


@attrs.frozen(eq=False, repr=False)
class RunnableConfigurableFields(_Configurable[In, Out]):
    """A runnable whose fields are set per call (what ``configurable_fields`` returns).

    ``fields`` maps an ``__init__`` keyword of the runnable (an attrs class, under any
    ``with_config`` bindings) to the :class:`ConfigurableField` whose id sets it: a call
    with ``{"configurable": {id: value}}`` runs a copy made with that value
    (``attrs.evolve``, so the field's converter and validator check it); a call without
    it runs the runnable as it is.

    Raises:
        ValueError: At construction, for a keyword the runnable does not take (naming the
            ones it does); in the run, for a value the field refuses (noted with its id).
        TypeError: For a value in ``fields`` that is not a ``ConfigurableField``.
    """

    default: Runnable[In, Out]
    fields: Mapping[str, ConfigurableField]

    def __attrs_post_init__(self) -> None:
        target, settable = _settable_fields(self.default)
        for key, field in self.fields.items():
            if not isinstance(field, ConfigurableField):
                raise TypeError(
                    f"configurable_fields({key}=...) needs a ConfigurableField, got {type(field).__name__}"
                )
            if key not in settable:
                raise ValueError(
                    f"configurable_fields: {target.get_name()} has no field {key!r} to configure; "
                    f"it takes {', '.join(sorted(settable)) or 'none'}"
                )

    def choose(self, configurable: Mapping[str, Any]) -> Runnable[In, Out]:
        changes = {
            key: configurable[field.id] for key, field in self.fields.items() if field.id in configurable
        }
        if not changes:
            return self.default
        try:
            return _rebuilt(self.default, changes)
        except (TypeError, ValueError) as exc:
            shown = ", ".join(f"{self.fields[key].id!r} (field {key!r})" for key in changes)
            exc.add_note(f"configuring {self.default.get_name()} with {shown}")
            raise

    def with_call_arguments(self, arguments: Mapping[str, Any]) -> Self:
        """The runnable with ``arguments`` bound, still configurable."""
        return attrs.evolve(self, default=self.default.with_call_arguments(arguments))

    def __repr__(self) -> str:
        return f"{self.default!r}.configurable_fields({', '.join(self.fields)})"


#: An alternative: a runnable, or a function of no arguments that makes one when chosen.
Alternative = Runnable[Any, Any] | Callable[[], Runnable[Any, Any]]


@attrs.frozen(eq=False, repr=False)
class RunnableConfigurableAlternatives(_Configurable[In, Out]):
    """A runnable replaced per call by one of its alternatives (``configurable_alternatives``).

    ``{"configurable": {which.id: key}}`` runs the alternative under ``key`` (the runnable
    itself under ``default_key``, and when the id is not given). An alternative is a
    runnable, or a function of no arguments that makes one when chosen (so a model that
    is rarely used is built only then). With ``prefix_keys``, the configurable fields of
    an alternative are set as ``"<which.id>==<key>/<field id>"``, so two alternatives
    may use the same field id.

    Every alternative must add up its output as the runnable does (checked at
    construction for runnables, when chosen for the functions).

    Raises:
        ValueError: For ``default_key`` among the alternatives' keys or no alternative (at
            construction); for an unknown key in the run, naming the known ones.
        CompositionError: For an alternative that is neither a runnable nor a function,
            or one that adds its output up differently.
    """

    which: ConfigurableField
    default: Runnable[In, Out]
    alternatives: Mapping[str, Alternative]
    default_key: str = "default"
    prefix_keys: bool = False

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.which, ConfigurableField):
            raise TypeError(
                f"configurable_alternatives needs a ConfigurableField, got {type(self.which).__name__}"
            )
        if not self.alternatives:
            raise ValueError("configurable_alternatives needs at least one alternative")
        if self.default_key in self.alternatives:
            raise ValueError(
                f"configurable_alternatives: the key {self.default_key!r} is the default's "
                "(default_key): name the alternative differently"
            )
        for key, alternative in self.alternatives.items():
            if isinstance(alternative, Runnable):
                _same_accumulation(self, key, alternative)
            elif not callable(alternative):
                raise CompositionError(
                    f"alternative {key!r} must be a runnable or a function that makes one, "
                    f"got {type(alternative).__name__}"
                )

    def choose(self, configurable: Mapping[str, Any]) -> Runnable[In, Out]:
        key = configurable.get(self.which.id, self.default_key)
        if key == self.default_key:
            return self.default
        if key not in self.alternatives:
            known = ", ".join(repr(k) for k in (self.default_key, *self.alternatives))
            raise ValueError(
                f"unknown alternative {key!r} for {self.which.id!r}; the alternatives are {known}"
            )
        alternative = self.alternatives[key]
        if not isinstance(alternative, Runnable):
            alternative = alternative()
            if not isinstance(alternative, Runnable):
                raise CompositionError(
                    f"alternative {key!r}'s function must return a runnable, got {type(alternative).__name__}"
                )
        chosen: Runnable[In, Out] = alternative
        return chosen

    def _chosen_at(self, site: Site) -> tuple[Runnable[In, Out], Site]:
        chosen, site = super()._chosen_at(site)
        if self.prefix_keys and chosen is not self.default:
            # The chosen alternative's own fields are set under the prefix.
            prefix = f"{self.which.id}=={site.configurable[self.which.id]}/"
            values = site.configurable
            unprefixed = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
            if unprefixed:
                site = attrs.evolve(site, configurable={**values, **unprefixed})
        return chosen, site

    def with_call_arguments(self, arguments: Mapping[str, Any]) -> Self:
        """Every alternative with ``arguments`` bound (a function's, once it made it)."""
        return attrs.evolve(
            self,
            default=self.default.with_call_arguments(arguments),
            alternatives={k: _bound(a, arguments) for k, a in self.alternatives.items()},
        )

    def __repr__(self) -> str:
        keys = ", ".join((self.default_key, *self.alternatives))
        return f"{self.default!r}.configurable_alternatives({self.which.id!r}: {keys})"


def _same_accumulation(owner: Runnable[Any, Any], key: str, alternative: Runnable[Any, Any]) -> None:
    if alternative.output_accumulation != owner.output_accumulation:
        raise CompositionError(
            f"alternative {key!r} ({alternative.get_name()}) adds its output up "
            f"({alternative.output_accumulation!r}) differently from {owner.get_name()} "
            f"({owner.output_accumulation!r}); alternatives must add up the same way"
        )


def _bound(alternative: Alternative, arguments: Mapping[str, Any]) -> Alternative:
    if isinstance(alternative, Runnable):
        return alternative.with_call_arguments(arguments)

    def make() -> Runnable[Any, Any]:
        return alternative().with_call_arguments(arguments)

    return make
