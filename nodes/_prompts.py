"""Prompt templates: aggregate steps that turn a dict of variables into a prompt value.

A template cannot work on a partial dict, so it aggregates its input (the one-key
chunks of a parallel step add up to the whole dict) and then formats. Templates use
``{name}`` placeholders, with ``{{``/``}}`` for literal braces.
"""

from __future__ import annotations

import string
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from engine import AggregateNode, Step

from ._messages import BaseMessage, coerce_to_messages, message_from_role
from ._prompt_values import ChatPromptValue, PromptValue, StringPromptValue

__all__ = ("ChatPromptTemplate", "MessagesPlaceholder", "PromptTemplate", "PromptVariableError")


class PromptVariableError(KeyError):
    """A prompt template was formatted without one of its variables."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "missing prompt variable"


def _variables(template: str) -> tuple[str, ...]:
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"invalid prompt template {template!r}: {exc}") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field or not field.isidentifier():
            raise ValueError(
                f"invalid placeholder {{{field}}} in prompt template {template!r}: "
                "use {name} with a plain name, and {{ }} for literal braces"
            )
        if spec or conversion:
            raise ValueError(f"placeholder {{{field}}} in {template!r} must not have a format spec")
        if field not in names:
            names.append(field)
    return tuple(names)


def _format(template: str, variables: tuple[str, ...], values: Mapping[str, Any], owner: str) -> str:
    missing = [name for name in variables if name not in values]
    if missing:
        raise PromptVariableError(
            f"{owner} is missing variable(s) {', '.join(map(repr, missing))} for template {template!r}; "
            f"it got {sorted(values) or 'no variables'}"
        )
    return template.format(**{name: values[name] for name in variables})


class _Template(AggregateNode[Any, PromptValue]):
    kind: ClassVar[str] = "prompt"
    reads_current_step: ClassVar[bool] = False

    @property
    def input_variables(self) -> tuple[str, ...]:
        """The variables the template needs."""
        raise NotImplementedError

    def _values(self, value: Any) -> Mapping[str, Any]:
        if isinstance(value, Mapping):
            return value
        variables = self.input_variables
        if len(variables) == 1:
            # As in the guide's retrieval chain: a bare value fills a one-variable template.
            return {variables[0]: value}
        raise TypeError(
            f"{self.get_name()} needs a dict with the variables {list(variables)}, "
            f"got {type(value).__name__}: {value!r}"
        )

    def format_prompt(self, **values: Any) -> PromptValue:
        """Format the template with ``values``.

        Raises:
            PromptVariableError: Naming each missing variable and the template.
        """
        raise NotImplementedError

    async def compute(self, value: Any, step: Step) -> AsyncIterator[PromptValue]:
        yield self.format_prompt(**self._values(value))


@attrs.frozen(eq=False, repr=False)
class PromptTemplate(_Template):
    """A string prompt: ``PromptTemplate.from_template("tell me about {topic}")``."""

    template: str
    variables: tuple[str, ...]

    @classmethod
    def from_template(cls, template: str) -> PromptTemplate:
        """Build a template, finding its ``{variables}``.

        Raises:
            ValueError: For a malformed template (unbalanced braces, odd placeholders).
        """
        if not isinstance(template, str):
            raise TypeError(f"a prompt template must be a string, got {type(template).__name__}")
        return cls(template, _variables(template))

    @property
    def input_variables(self) -> tuple[str, ...]:
        return self.variables

    def format_prompt(self, **values: Any) -> StringPromptValue:
        return StringPromptValue(_format(self.template, self.variables, values, self.get_name()))

    def format(self, **values: Any) -> str:
        """The formatted string."""
        return self.format_prompt(**values).to_string()

    def __repr__(self) -> str:
        return f"PromptTemplate(template={self.template!r})"


@attrs.frozen
class MessagesPlaceholder:
    """A slot in a chat prompt filled with a list of messages from ``variable_name``."""

    variable_name: str
    optional: bool = False


@attrs.frozen
class _MessageTemplate:
    role: str
    template: str
    variables: tuple[str, ...]


_Part = _MessageTemplate | MessagesPlaceholder | BaseMessage


@attrs.frozen(eq=False, repr=False)
class ChatPromptTemplate(_Template):
    """A chat prompt: a list of role templates, fixed messages and placeholders."""

    parts: tuple[_Part, ...]

    @classmethod
    def from_template(cls, template: str) -> ChatPromptTemplate:
        """One human message from ``template`` (as in the guide)."""
        return cls.from_messages([("human", template)])

    @classmethod
    def from_messages(cls, messages: Sequence[Any]) -> ChatPromptTemplate:
        """Build from ``(role, template)`` pairs, messages and placeholders.

        ``("placeholder", "{history}")`` and ``MessagesPlaceholder("history")`` both
        insert the list of messages held by the ``history`` variable.

        Raises:
            ValueError: For an unknown role or a malformed template.
            TypeError: For an entry of another type.
        """
        parts: list[_Part] = []
        for position, entry in enumerate(messages):
            if isinstance(entry, MessagesPlaceholder | BaseMessage):
                parts.append(entry)
            elif isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], str):
                role, template = entry
                if role == "placeholder":
                    names = _variables(template)
                    if len(names) != 1 or template.strip() != f"{{{names[0]}}}":
                        raise ValueError(f"a placeholder must be written '{{name}}', got {template!r}")
                    parts.append(MessagesPlaceholder(names[0], optional=True))
                    continue
                message_from_role(role, "")  # validates the role, naming the allowed ones
                parts.append(_MessageTemplate(role, template, _variables(template)))
            else:
                raise TypeError(
                    f"chat prompt entry {position} must be a (role, template) pair, a message "
                    f"or a MessagesPlaceholder, got {type(entry).__name__}: {entry!r}"
                )
        if not parts:
            raise ValueError("a chat prompt needs at least one message")
        return cls(tuple(parts))

    @property
    def input_variables(self) -> tuple[str, ...]:
        names: list[str] = []
        for part in self.parts:
            found: tuple[str, ...] = ()
            if isinstance(part, _MessageTemplate):
                found = part.variables
            elif isinstance(part, MessagesPlaceholder) and not part.optional:
                found = (part.variable_name,)
            names.extend(n for n in found if n not in names)
        return tuple(names)

    def format_prompt(self, **values: Any) -> ChatPromptValue:
        out: list[BaseMessage] = []
        owner = self.get_name()
        for part in self.parts:
            if isinstance(part, BaseMessage):
                out.append(part)
            elif isinstance(part, MessagesPlaceholder):
                if part.variable_name not in values:
                    if part.optional:
                        continue
                    raise PromptVariableError(
                        f"{owner} is missing the messages variable {part.variable_name!r}"
                    )
                out.extend(
                    coerce_to_messages(values[part.variable_name], where=f"variable {part.variable_name!r}")
                )
            else:
                text = _format(part.template, part.variables, values, owner)
                out.append(message_from_role(part.role, text))
        return ChatPromptValue(out)

    def format_messages(self, **values: Any) -> list[BaseMessage]:
        """The formatted messages."""
        return self.format_prompt(**values).to_messages()

    def __repr__(self) -> str:
        return f"ChatPromptTemplate(parts={list(self.parts)!r})"
