"""``bind(**kwargs)``: call arguments (``stop``, ``max_tokens``...) bound to a runnable.

rillet's run API takes no per-call keyword arguments, so a bound argument is not
carried to the call: ``bind`` returns a *copy* of the runnable that uses it on every
call. A runnable says which arguments it takes with its class attribute
:attr:`~engine.Runnable.call_arguments` (argument name to the attrs field that holds
it); the default :meth:`~engine.Runnable.with_call_arguments` checks the names and
makes the copy with ``attrs.evolve``, so the field's converter and validator check the
value at bind time. Anything else is refused at bind time, naming the argument.

A binding (``with_config``) passes ``bind`` to the runnable it binds. Composites take
no call arguments: ``bind`` binds to the runnable itself (as langchain-core's does), and
on a sequence langchain-core would hand the arguments to the first step only, where a
prompt ignores them; here that is an error telling to bind the step that takes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

if TYPE_CHECKING:
    from ._runnable import Runnable

R = TypeVar("R", bound="Runnable[Any, Any]")

__all__ = ("refuse_call_arguments", "with_call_arguments")


def refuse_call_arguments(runnable: Runnable[Any, Any], names: list[str]) -> TypeError:
    """The error for binding ``names`` to ``runnable``, which does not accept them."""
    shown = ", ".join(repr(name) for name in names)
    accepted = type(runnable).call_arguments
    if accepted:
        hint = f"it accepts {', '.join(repr(name) for name in accepted)}"
    else:
        hint = (
            "it accepts none; bind() binds to the runnable itself, so bind the step that takes "
            "them (prompt | model.bind(stop=[...]), not (prompt | model).bind(...))"
        )
    return TypeError(f"{runnable.get_name()} does not accept call argument(s) {shown}: {hint}")


def with_call_arguments(runnable: R, arguments: Mapping[str, Any]) -> R:
    """A copy of the attrs runnable ``runnable`` with ``arguments`` set on their fields.

    Raises:
        TypeError: Naming the arguments ``runnable`` does not accept.
        ValueError: For a value the field's validator refuses (noted with the argument).
    """
    accepted = type(runnable).call_arguments
    unknown = [name for name in arguments if name not in accepted]
    if unknown:
        raise refuse_call_arguments(runnable, unknown)
    changes = {accepted[name]: value for name, value in arguments.items()}
    try:
        copy: R = attrs.evolve(runnable, **changes)  # type: ignore[misc]  # an attrs class by contract
        return copy
    except (TypeError, ValueError) as exc:
        exc.add_note(f"binding {', '.join(arguments)} to {runnable.get_name()}")
        raise
