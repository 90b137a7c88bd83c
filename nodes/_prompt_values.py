"""Prompt values: what a prompt template produces and a model consumes.

A prompt value can be read either as one string (for completion-style models and
logging) or as a list of chat messages.
"""

from __future__ import annotations

import abc
import reprlib
from collections.abc import Iterable
from typing import Final

import attrs

from ._messages import BaseMessage, HumanMessage

__all__ = ("PromptValue", "StringPromptValue", "ChatPromptValue")


@attrs.frozen
class PromptValue(abc.ABC):
    """A formatted prompt, readable as a string or as chat messages."""

    @abc.abstractmethod
    def to_string(self) -> str:
        """The prompt as one string.

        Returns:
            The text.
        """

    @abc.abstractmethod
    def to_messages(self) -> list[BaseMessage]:
        """The prompt as chat messages.

        Returns:
            A new list of messages.
        """


@attrs.frozen
class StringPromptValue(PromptValue):
    """A prompt that is a single string; as messages, one human message.

    Attributes:
        text: The prompt.
    """

    text: str = attrs.field(validator=attrs.validators.instance_of(str))

    def to_string(self) -> str:
        """The prompt text.

        Returns:
            ``text``.
        """
        return self.text

    def to_messages(self) -> list[BaseMessage]:
        """The prompt as one human message.

        Returns:
            ``[HumanMessage(text)]``.
        """
        return [HumanMessage(self.text)]


def _message_list(messages: Iterable[BaseMessage]) -> list[BaseMessage]:
    given: object = messages  # the static type does not rule out a string at run time
    if isinstance(given, (str, bytes)):
        # A string is iterable, and each character would be reported as a bad message.
        raise TypeError(f"ChatPromptValue.messages must be messages, got a {type(given).__name__}")
    result = list(messages)
    for position, message in enumerate(result):
        if not isinstance(message, BaseMessage):
            raise TypeError(
                f"ChatPromptValue.messages: item {position} is a {type(message).__name__} "
                f"{reprlib.repr(message)}, not a message"
            )
    return result


# The prefixes LangChain's buffer strings use, so string renderings of prompts match.
_PREFIXES: Final = {"human": "Human", "ai": "AI", "system": "System", "tool": "Tool"}


@attrs.frozen
class ChatPromptValue(PromptValue):
    """A prompt that is a list of chat messages.

    Attributes:
        messages: The messages, in order.
    """

    messages: list[BaseMessage] = attrs.field(converter=_message_list)

    def to_string(self) -> str:
        """The messages one per line, each prefixed by its role (``Human: hi``).

        Returns:
            The text.
        """
        return "\n".join(
            f"{_PREFIXES.get(message.type, message.type.capitalize())}: {message.text}"
            for message in self.messages
        )

    def to_messages(self) -> list[BaseMessage]:
        """The messages.

        Returns:
            A new list holding ``messages``.
        """
        return list(self.messages)
