"""The chat prompt: a list of message templates, fixed messages and placeholders.

``ChatPromptTemplate([...])`` and ``ChatPromptTemplate.from_messages([...])`` take the
same entries, and check each one when the prompt is built, so a bad entry fails there,
with its position, rather than inside a run:

* ``(role, template)``: ``role`` is ``"system"``, ``"human"``/``"user"`` or
  ``"ai"``/``"assistant"`` (or a message template class); ``template`` a string or a list
  of content blocks. ``("placeholder", "{name}")`` is an optional ``MessagesPlaceholder``.
* ``{"role": ..., "content": ...}``: the same as the pair.
* a string: a human message template.
* a message (``SystemMessage(...)``...): inserted as it is, never formatted.
* a message template (``HumanMessagePromptTemplate``...) or a ``MessagesPlaceholder``.
* another ``ChatPromptTemplate``: its entries (and partial variables).
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Self

import attrs

from ._message_templates import (
    AIMessagePromptTemplate,
    BaseMessagePromptTemplate,
    HumanMessagePromptTemplate,
    MessagesPlaceholder,
    SystemMessagePromptTemplate,
    _StringMessagePromptTemplate,
)
from ._messages import BaseMessage
from ._prompt_values import ChatPromptValue
from ._prompts import (
    PromptTemplate,
    PromptVariableError,
    _Template,
    check_declared,
    resolve_partials,
    to_partials,
)
from ._template_formats import TemplateFormat, parse_template, to_template_format

__all__ = ("ChatPromptTemplate",)

MessageLike = BaseMessage | BaseMessagePromptTemplate

_ROLES: Final[Mapping[str, type[_StringMessagePromptTemplate]]] = {
    "system": SystemMessagePromptTemplate,
    "human": HumanMessagePromptTemplate,
    "user": HumanMessagePromptTemplate,
    "ai": AIMessagePromptTemplate,
    "assistant": AIMessagePromptTemplate,
}
_ROLE_NAMES: Final = "'system', 'human'/'user', 'ai'/'assistant' or 'placeholder'"
_FORMS: Final = (
    "a (role, template) pair, a {'role': ..., 'content': ...} dict, a string, a message, "
    "a message template or a MessagesPlaceholder"
)


def _placeholder(template: object, template_format: TemplateFormat) -> MessagesPlaceholder:
    if not isinstance(template, str):
        raise TypeError(f"a placeholder is written ('placeholder', '{{name}}'), got {template!r}")
    variables = parse_template(template, template_format).variables
    written = {TemplateFormat.F_STRING: "{%s}", TemplateFormat.MUSTACHE: "{{%s}}"}.get(
        template_format, "{{ %s }}"
    )
    if len(variables) != 1 or template.strip().replace(" ", "") != (written % variables[0]).replace(" ", ""):
        raise ValueError(
            f"a placeholder must be written {written % 'name'!r} (one variable alone), got {template!r}"
        )
    return MessagesPlaceholder(variables[0], optional=True)


def _from_pair(role: object, template: object, template_format: TemplateFormat) -> MessageLike:
    if role == "placeholder":
        return _placeholder(template, template_format)
    if isinstance(role, type) and issubclass(role, _StringMessagePromptTemplate):
        kind: type[_StringMessagePromptTemplate] = role
    elif isinstance(role, str):
        found = _ROLES.get(role)
        if found is None:
            extra = " (a tool message is not templated: insert a ToolMessage)" if role == "tool" else ""
            raise ValueError(f"unknown role {role!r}; a template's role is {_ROLE_NAMES}{extra}")
        kind = found
    else:
        raise TypeError(f"the role must be a str, got {type(role).__name__}: {role!r}")
    if not isinstance(template, str | list | tuple):
        raise TypeError(
            f"the template must be a string or a list of content blocks, got {type(template).__name__}: {template!r}"
        )
    return kind.from_template(template, template_format=template_format)


def _entry(entry: object, template_format: TemplateFormat) -> list[MessageLike]:
    if isinstance(entry, BaseMessage | BaseMessagePromptTemplate):
        return [entry]
    if isinstance(entry, ChatPromptTemplate):
        return list(entry.messages)
    if isinstance(entry, str):
        return [HumanMessagePromptTemplate.from_template(entry, template_format=template_format)]
    if isinstance(entry, tuple):
        if len(entry) != 2:
            raise ValueError(f"a tuple entry must be a (role, template) pair, got {len(entry)} items")
        return [_from_pair(entry[0], entry[1], template_format)]
    if isinstance(entry, Mapping):
        if set(entry) != {"role", "content"}:
            raise ValueError(
                f"a dict entry must have exactly the keys 'role' and 'content', got {sorted(entry)}"
            )
        return [_from_pair(entry["role"], entry["content"], template_format)]
    raise TypeError(f"expected {_FORMS}")


def _as_list(messages: object) -> list[Any]:
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Iterable):
        raise TypeError(
            f"ChatPromptTemplate takes a list of entries, got {type(messages).__name__}: "
            f"{reprlib.repr(messages)}; for one human message use ChatPromptTemplate.from_template"
        )
    return list(messages)


def _entries(messages: list[Any], template_format: TemplateFormat) -> tuple[MessageLike, ...]:
    parts: list[MessageLike] = []
    for position, entry in enumerate(messages):
        try:
            parts.extend(_entry(entry, template_format))
        except (ValueError, TypeError, ImportError) as error:
            where = f"ChatPromptTemplate entry {position} ({type(entry).__name__} {reprlib.repr(entry)})"
            raise type(error)(f"{where}: {error}") from None
    if not parts:
        raise ValueError("a chat prompt needs at least one message")
    return tuple(parts)


def _partials_of(messages: list[Any]) -> dict[str, Any]:
    """The partial variables of the chat prompts among ``messages``, merged."""
    found: dict[str, Any] = {}
    for entry in messages:
        if isinstance(entry, ChatPromptTemplate):
            found.update(entry.partial_variables)
    return found


def _describe(part: BaseMessagePromptTemplate) -> str:
    if isinstance(part, MessagesPlaceholder):
        return "a MessagesPlaceholder (pass a list of messages, or make it optional=True)"
    if isinstance(part, _StringMessagePromptTemplate):
        if isinstance(part.prompt, PromptTemplate):
            return f"template {part.prompt.template!r}"
        return f"a {type(part).__name__} with list content"
    return repr(part)


@attrs.frozen(eq=False, repr=False, init=False)
class ChatPromptTemplate(_Template):
    """A chat prompt: ``ChatPromptTemplate([("system", "You are {persona}."), ("human", "{q}")])``.

    Attributes:
        messages: The entries, each a message or a message template (``MessagesPlaceholder``
            included).
        template_format: The language the entries given as text were written in.
        partial_variables: Variables filled in ahead (values, or zero-argument callables).
    """

    messages: tuple[MessageLike, ...]
    template_format: TemplateFormat
    partial_variables: dict[str, Any]

    def __init__(
        self,
        messages: Sequence[Any],
        *,
        template_format: str = "f-string",
        partial_variables: Mapping[str, Any] | None = None,
        input_variables: Iterable[str] | None = None,
    ) -> None:
        """Build the prompt from its entries (see the module's docstring for the forms).

        ``input_variables`` is optional (the entries' variables are found in them); when
        given, as in langchain-core code, it must agree with them.

        Raises:
            ValueError: For an unknown role, a malformed template or placeholder, a dict
                without exactly ``role`` and ``content``, no entries, or
                ``input_variables`` that do not match; naming the entry.
            TypeError: For an entry of another type, naming its position.
            ImportError: For a jinja2 template when jinja2 is not installed.
        """
        template_format = to_template_format(template_format)
        entries = _as_list(messages)
        parts = _entries(entries, template_format)
        partials = {**_partials_of(entries), **to_partials(partial_variables)}
        self.__attrs_init__(parts, template_format, partials)
        known = {*self.input_variables, *self.optional_variables, *partials}
        check_declared("ChatPromptTemplate", input_variables, self.input_variables, known)

    @classmethod
    def from_template(
        cls,
        template: str,
        *,
        template_format: str = "f-string",
        partial_variables: Mapping[str, Any] | None = None,
    ) -> ChatPromptTemplate:
        """One human message from ``template`` (as in the guide).

        Raises:
            ValueError: For a malformed template or an unknown format.
        """
        return cls(
            [("human", template)], template_format=template_format, partial_variables=partial_variables
        )

    @classmethod
    def from_messages(cls, messages: Sequence[Any], template_format: str = "f-string") -> ChatPromptTemplate:
        """The same as ``ChatPromptTemplate(messages, template_format=...)``.

        Raises:
            ValueError: For an unknown role or a malformed template, naming the entry.
            TypeError: For an entry of another type, naming its position.
        """
        return cls(messages, template_format=template_format)

    def _variables(self, which: str) -> list[str]:
        names = {
            name
            for part in self.messages
            if not isinstance(part, BaseMessage)
            for name in getattr(part, which)
        }
        return sorted(names - set(self.partial_variables))

    @property
    def input_variables(self) -> list[str]:
        """The variables formatting needs, sorted (the partial ones left out)."""
        return self._variables("input_variables")

    @property
    def optional_variables(self) -> list[str]:
        """The variables of optional placeholders, sorted."""
        return self._variables("optional_variables")

    def _with_partials(self, partials: dict[str, Any]) -> Self:
        return type(self)(self.messages, template_format=self.template_format, partial_variables=partials)

    def _check_missing(self, values: Mapping[str, Any]) -> None:
        missing: dict[str, list[str]] = {}
        for position, part in enumerate(self.messages):
            if isinstance(part, BaseMessagePromptTemplate):
                for name in part.required_variables():
                    if name not in values:
                        missing.setdefault(name, []).append(f"{_describe(part)} (entry {position})")
        if missing:
            where = "; ".join(f"{name!r} for {' and '.join(uses)}" for name, uses in missing.items())
            raise PromptVariableError(
                f"{self.get_name()} is missing variable(s) {where}; it got {sorted(values) or 'no variables'}"
            )

    def format_messages(self, **values: Any) -> list[BaseMessage]:
        """The formatted messages (extra values are ignored).

        Raises:
            PromptVariableError: Naming each missing variable and the entries that need it.
            TypeError: If a placeholder's variable does not hold a list of messages.
        """
        merged = resolve_partials(self.partial_variables, values)
        self._check_missing(merged)
        out: list[BaseMessage] = []
        for part in self.messages:
            out.extend([part] if isinstance(part, BaseMessage) else part.format_messages(**merged))
        return out

    def format_prompt(self, **values: Any) -> ChatPromptValue:
        """The formatted messages as a prompt value.

        Raises:
            PromptVariableError: Naming each missing variable and the entries that need it.
        """
        return ChatPromptValue(self.format_messages(**values))

    def __add__(self, other: object) -> ChatPromptTemplate:
        """A prompt with ``other``'s entries after these: another chat prompt, a list of
        entries, or one entry (a pair, a string, a message or a message template)."""
        if isinstance(other, list):
            more: list[Any] = other
        elif isinstance(other, ChatPromptTemplate | BaseMessage | BaseMessagePromptTemplate | str | tuple):
            more = [other]
        else:
            return NotImplemented
        added = ChatPromptTemplate(more, template_format=self.template_format)
        return type(self)(
            [*self.messages, *added.messages],
            template_format=self.template_format,
            partial_variables={**self.partial_variables, **added.partial_variables},
        )

    def __repr__(self) -> str:
        partials = f", partial_variables={self.partial_variables!r}" if self.partial_variables else ""
        return f"ChatPromptTemplate(input_variables={self.input_variables!r}, messages={list(self.messages)!r}{partials})"
