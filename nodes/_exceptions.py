"""The exception an output parser raises on model text it cannot turn into a value."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ("OutputParserException",)


class OutputParserException(ValueError):
    """The model's output could not be parsed into the value the parser promises.

    Attributes:
        text: The whole text the parser received, so that a caller can log it, show it
            or send it back to the model with a request to fix it.
    """

    def __init__(self, message: str, *, text: str) -> None:
        """Record the failure.

        Args:
            message: What went wrong, in words a user can act on.
            text: The text that failed to parse.
        """
        super().__init__(message)
        self.text = text

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only ``text`` would be lost by BaseException's default reduce,
        # which re-calls the class with ``args`` alone; pickling (process pools,
        # caches) must round-trip the exception whole.
        return (functools.partial(type(self), text=self.text), self.args, self.__dict__)
