"""Templates for one message of a chat prompt, and the placeholder for a list of them.

``HumanMessagePromptTemplate.from_template("hi {name}").format(name="Ann")`` is
``HumanMessage("hi Ann")``. As in langchain-core these are not runnables: they are the
entries of a :class:`~nodes.ChatPromptTemplate`, and can be formatted on their own.
"""

from __future__ import annotations

import abc
import reprlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import attrs

from ._messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, coerce_to_messages
from ._prompts import PromptTemplate, PromptVariableError

__all__ = (
    "AIMessagePromptTemplate",
    "BaseMessagePromptTemplate",
    "HumanMessagePromptTemplate",
    "MessagesPlaceholder",
    "SystemMessagePromptTemplate",
)


class BaseMessagePromptTemplate(abc.ABC):
    """What a chat prompt entry that makes messages provides."""

    @property
    @abc.abstractmethod
    def input_variables(self) -> list[str]:
        """The variables formatting needs, sorted."""

    @property
    def optional_variables(self) -> list[str]:
        """The variables formatting may be given, sorted."""
        return []

    def required_variables(self) -> list[str]:
        """The variables whose absence is an error when formatting (by default, all of
        ``input_variables``; a mustache or jinja2 template renders a missing one as nothing)."""
        return self.input_variables

    @abc.abstractmethod
    def format_messages(self, **values: Any) -> list[BaseMessage]:
        """The messages this entry makes from ``values``.

        Raises:
            PromptVariableError: If a required variable is missing.
        """


def _check_name(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.isidentifier():
        raise ValueError(f"MessagesPlaceholder needs a variable name (an identifier), got {value!r}")


@attrs.frozen
class MessagesPlaceholder(BaseMessagePromptTemplate):
    """A slot in a chat prompt filled with the list of messages held by ``variable_name``.

    Attributes:
        variable_name: The variable holding the messages (a list of messages,
            ``(role, content)`` tuples, ``{"role": ..., "content": ...}`` dicts or strings).
        optional: Whether the variable may be left out (then the slot is empty); an
            optional placeholder is listed in the prompt's ``optional_variables``, not
            its ``input_variables``.
        n_messages: If set, only the last ``n_messages`` messages are inserted.
    """

    variable_name: str = attrs.field(validator=_check_name)
    optional: bool = False
    n_messages: int | None = attrs.field(
        default=None,
        kw_only=True,
        validator=attrs.validators.optional([attrs.validators.instance_of(int), attrs.validators.gt(0)]),
    )

    @property
    def input_variables(self) -> list[str]:
        """``[variable_name]``, or nothing when optional."""
        return [] if self.optional else [self.variable_name]

    @property
    def optional_variables(self) -> list[str]:
        """``[variable_name]`` when optional."""
        return [self.variable_name] if self.optional else []

    def format_messages(self, **values: Any) -> list[BaseMessage]:
        """The messages held by the variable.

        Raises:
            PromptVariableError: If the variable is missing and the placeholder is not optional.
            TypeError: If the variable does not hold a list of messages (or message-like items).
        """
        name = self.variable_name
        if name not in values:
            if self.optional:
                return []
            raise PromptVariableError(
                f"the messages variable {name!r} (a MessagesPlaceholder) is missing; "
                f"pass a list of messages as {name!r}, or make the placeholder optional=True"
            )
        value = values[name]
        if not isinstance(value, list | tuple):
            raise TypeError(
                f"the messages variable {name!r} must hold a list of messages, got "
                f"{type(value).__name__} {reprlib.repr(value)}"
            )
        items = [HumanMessage(item) if isinstance(item, str) else item for item in value]
        messages = coerce_to_messages(items, where=f"the messages variable {name!r}")
        if self.n_messages is not None:
            messages = messages[-self.n_messages :]
        return messages


@attrs.frozen(eq=False)
class _TextBlock:
    """A ``{"type": "text", "text": template}`` block of list content."""

    prompt: PromptTemplate
    block: Mapping[str, Any]


_ContentPart = PromptTemplate | _TextBlock | Mapping[str, Any]


def _to_content_part(item: object, template_format: str, partials: Mapping[str, Any] | None) -> _ContentPart:
    if isinstance(item, str):
        return PromptTemplate(item, template_format=template_format, partial_variables=partials)
    if isinstance(item, Mapping):
        if item.get("type") == "text" and isinstance(item.get("text"), str):
            prompt = PromptTemplate(item["text"], template_format=template_format, partial_variables=partials)
            return _TextBlock(prompt, dict(item))
        return dict(item)  # another block (an image...) is kept as it is
    raise TypeError(f"a content block must be a str or a dict, got {type(item).__name__}: {item!r}")


def _to_prompt(value: object) -> PromptTemplate | tuple[_ContentPart, ...]:
    if isinstance(value, PromptTemplate):
        return value
    if isinstance(value, list | tuple) and all(
        isinstance(p, PromptTemplate | _TextBlock | Mapping) for p in value
    ):
        return tuple(value)
    raise TypeError(
        f"a message template's prompt is a PromptTemplate (or use from_template), got {type(value).__name__}: {value!r}"
    )


@attrs.frozen
class _StringMessagePromptTemplate(BaseMessagePromptTemplate):
    """A message whose content is a template (or a list of content blocks with templates)."""

    message_class: ClassVar[type[BaseMessage]]

    #: The content's template, or for list content one entry per block.
    prompt: PromptTemplate | tuple[_ContentPart, ...] = attrs.field(converter=_to_prompt)

    @classmethod
    def from_template(
        cls,
        template: str | Sequence[str | Mapping[str, Any]],
        *,
        template_format: str = "f-string",
        partial_variables: Mapping[str, Any] | None = None,
    ) -> Self:
        """A message template from a template string, or from a list of content blocks
        (strings, which become text blocks, and dicts; the text of a text block is a template).

        Raises:
            ValueError: For a malformed template or an unknown format.
            TypeError: For content that is neither a string nor a list of strings and dicts.
            ImportError: For a jinja2 template when jinja2 is not installed.
        """
        if isinstance(template, str):
            prompt = PromptTemplate(
                template, template_format=template_format, partial_variables=partial_variables
            )
            return cls(prompt)
        if isinstance(template, list | tuple):
            return cls(tuple(_to_content_part(item, template_format, partial_variables) for item in template))
        raise TypeError(
            f"a message template is a string or a list of content blocks, got {type(template).__name__}: {template!r}"
        )

    def _prompts(self) -> list[PromptTemplate]:
        if isinstance(self.prompt, PromptTemplate):
            return [self.prompt]
        return [
            part.prompt if isinstance(part, _TextBlock) else part
            for part in self.prompt
            if not isinstance(part, Mapping)
        ]

    @property
    def input_variables(self) -> list[str]:
        """The variables of the content's templates, sorted."""
        return sorted({name for prompt in self._prompts() for name in prompt.input_variables})

    def required_variables(self) -> list[str]:
        """The variables of the content's f-string templates."""
        strict = (p for p in self._prompts() if p.template_format == "f-string")
        return sorted({name for prompt in strict for name in prompt.input_variables})

    def format(self, **values: Any) -> BaseMessage:
        """The message, its content formatted from ``values``.

        Raises:
            PromptVariableError: If a variable of an f-string template is missing.
        """
        if isinstance(self.prompt, PromptTemplate):
            return self.message_class(self.prompt.format(**values))
        blocks: list[str | dict[str, Any]] = []
        for part in self.prompt:
            if isinstance(part, PromptTemplate):
                blocks.append({"type": "text", "text": part.format(**values)})
            elif isinstance(part, _TextBlock):
                blocks.append({**part.block, "text": part.prompt.format(**values)})
            else:
                blocks.append(dict(part))
        return self.message_class(blocks)

    def format_messages(self, **values: Any) -> list[BaseMessage]:
        """``[self.format(**values)]``."""
        return [self.format(**values)]


@attrs.frozen
class SystemMessagePromptTemplate(_StringMessagePromptTemplate):
    """A system message template: ``SystemMessagePromptTemplate.from_template("You are {persona}.")``."""

    message_class: ClassVar[type[BaseMessage]] = SystemMessage


@attrs.frozen
class HumanMessagePromptTemplate(_StringMessagePromptTemplate):
    """A human message template: ``HumanMessagePromptTemplate.from_template("{question}")``."""

    message_class: ClassVar[type[BaseMessage]] = HumanMessage


@attrs.frozen
class AIMessagePromptTemplate(_StringMessagePromptTemplate):
    """An AI message template (a few-shot answer): ``AIMessagePromptTemplate.from_template("{answer}")``."""

    message_class: ClassVar[type[BaseMessage]] = AIMessage
