"""The exception an output parser raises on model text it cannot turn into a value, and
the warning a model gives when it is pickled with a secret."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ("OutputParserException", "SecretShippedWarning")


class SecretShippedWarning(UserWarning):
    """A node is being pickled with a secret in it (an explicit ``api_key``).

    Pickling is how a chain travels to another process (``engine.ray.RayRunnable``'s
    actors, a process pool): the key then sits in the pickle, in Ray's object store and
    in the workers' memory. Leave ``api_key`` unset and give the workers the key in
    their environment (``ANTHROPIC_API_KEY``, e.g. through Ray's ``runtime_env``): a
    model without an explicit key reads it there at call time, and its pickle holds no
    secret.
    """


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
