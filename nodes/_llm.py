"""The completion-model base (text in, text chunks out) and the scripted LLM for offline use.

A completion model (langchain-core's ``BaseLLM``) is an aggregate step that streams: it
waits for its whole input (a string, a prompt value or messages, made into one prompt
string), then streams its reply as ``str`` chunks. The base does the input conversion
and the ``on_llm_*`` events; a model node implements only :meth:`BaseLLM.stream_text`.
Its chunks add up with ``+`` (strings join), so ``ainvoke`` returns the whole text and
``prompt | llm | StrOutputParser()`` streams the text through.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import anyio
import attrs

from engine import AggregateNode, Step

from ._chat_model import _cut_at_stop, _stop_sequences, split_tokens
from ._messages import BaseMessage, coerce_to_messages
from ._prompt_values import ChatPromptValue, PromptValue

__all__ = ("BaseLLM", "ScriptedLLM", "prompt_text")


def prompt_text(value: object, *, where: str = "input") -> str:
    """The prompt string a completion model is given for ``value``.

    A string is the prompt itself; a prompt value gives its ``to_string()``; a message, or
    a list of messages (or of ``(role, content)`` tuples and message dicts, as a chat model
    takes them), gives one line per message prefixed by its role (``"Human: hi"``), as
    langchain-core's ``get_buffer_string`` does.

    Args:
        value: The model's input.
        where: What the value is, for error messages.

    Returns:
        The prompt.

    Raises:
        TypeError: If ``value`` is none of those forms (the message names it).
        ValueError: If a list item names an unknown role.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, PromptValue):
        return value.to_string()
    if isinstance(value, BaseMessage | list | tuple):
        return ChatPromptValue(coerce_to_messages(value, where=where)).to_string()
    raise TypeError(
        f"{where}: a completion model takes a string, a prompt value or a list of messages, "
        f"got a {type(value).__name__} {value!r:.80}"
    )


class BaseLLM(AggregateNode[Any, str]):
    """The shared base of completion-model nodes: a prompt string in, ``str`` chunks out.

    Subclasses implement :meth:`stream_text` (langchain-core's ``_astream`` of an LLM),
    yielding text chunks as the model produces them. The base converts the input to one
    prompt string (:func:`prompt_text`), names the events ``on_llm_*`` and records
    ``{"prompts": [prompt]}`` as the step's input. Events, as the streaming guide's table
    shows them: ``on_llm_start`` with the input, one ``on_llm_stream`` per chunk whose
    ``chunk`` is the ``str`` itself (langchain-core's ``GenerationChunk`` text, which is
    what its events carry too), ``on_llm_end`` with the whole text as ``output``.
    """

    kind: ClassVar[str] = "llm"

    def _prompt(self, value: Any) -> str:
        return prompt_text(value, where=f"the input of {self.get_name()}")

    def start_event_input(self, value: Any) -> Any:
        try:
            return {"prompts": [self._prompt(value)]}
        except (TypeError, ValueError):
            # A bad input fails in the actor, where it becomes the step's error event.
            return value

    def compute(self, value: Any, step: Step) -> AsyncIterator[str]:
        prompt = self._prompt(value)
        step.set_input({"prompts": [prompt]})
        # The stream itself is the step's output (no wrapper generator per chunk), closed
        # by the engine in the actor's own task when the step ends.
        return self.stream_text(prompt)

    def stream_text(self, prompt: str) -> AsyncGenerator[str, None]:
        """Yield the completion of ``prompt`` chunk by chunk, as the model produces it.

        Implement it as an async generator. The engine calls it once per run of the step
        with the whole input made into one prompt string, and the generator it returns is
        the step's output itself: each chunk is sent downstream (after its
        ``on_llm_stream`` event) before the next is asked for. The chunks join into the
        completion (``ainvoke``'s result).

        The rules of :meth:`BaseChatModel.stream_chunks` hold here too: it may await
        anything, must not hold a cancel scope or task group open across a ``yield``
        (PEP 789), must not block the event loop, and is closed (``aclose()``) by the
        engine in the task that iterated it when the step ends, so a ``finally`` around a
        network stream releases it there and then.
        """
        raise NotImplementedError


def _responses(value: Sequence[str | Sequence[str]]) -> tuple[str | tuple[str, ...], ...]:
    if isinstance(value, str):
        raise TypeError(f"responses must be a list of responses, not one string ({value!r:.60})")
    out: list[str | tuple[str, ...]] = []
    for position, response in enumerate(value):
        if isinstance(response, str):
            out.append(response)
        elif isinstance(response, Sequence) and all(isinstance(chunk, str) for chunk in response):
            out.append(tuple(response))
        else:
            raise TypeError(
                f"ScriptedLLM response {position} must be a string or a list of string chunks, "
                f"got a {type(response).__name__} {response!r:.60}"
            )
    if not out:
        raise ValueError("ScriptedLLM needs a non-empty list of responses")
    return tuple(out)


@attrs.define(eq=False, repr=False)
class ScriptedLLM(BaseLLM):
    """A completion model that streams scripted responses: for tests, examples and offline use.

    langchain-core's ``FakeListLLM`` and ``FakeStreamingListLLM`` port to it: each call
    takes the next response and the list cycles (after the last comes the first again),
    as theirs does. A response given as a string streams as word tokens
    (:func:`split_tokens`, each with the whitespace before it), one given as a list of
    strings as exactly those chunks (``list(text)`` streams it character by character,
    as ``FakeStreamingListLLM`` does).

    Args:
        responses: The responses, used in turn.
        delay: Seconds to wait before each chunk (virtual under trio's ``MockClock``).
        name: The name events carry (default ``"ScriptedLLM"``).
        stop: Stop sequences: a response ends right before the first place one of them
            occurs. Also bound with ``llm.bind(stop=[...])``, which returns a copy (with
            its own call count and ``received`` log).

    Raises:
        TypeError: If ``responses`` is one string or holds something that is not a
            response, or ``stop`` is a string rather than a list of strings.
        ValueError: If ``responses`` is empty, ``delay`` is negative or a stop sequence
            is empty.
    """

    reads_current_step: ClassVar[bool] = False
    #: ``bind(stop=[...])`` sets it on a copy.
    call_arguments: ClassVar[Mapping[str, str]] = {"stop": "stop"}

    responses: tuple[str | tuple[str, ...], ...] = attrs.field(converter=_responses)
    delay: float = 0.0
    name_: str = attrs.field(default="ScriptedLLM", alias="name")
    stop: tuple[str, ...] | None = attrs.field(default=None, converter=_stop_sequences)
    _calls: int = attrs.field(default=0, init=False)
    #: The prompt of each call, in order.
    received: list[str] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.delay, bool) or not isinstance(self.delay, int | float) or not self.delay >= 0:
            raise ValueError(f"delay must be a number of seconds >= 0, got {self.delay!r}")

    def get_name(self) -> str:
        return self.name_

    @property
    def calls(self) -> int:
        """How many times the model was called."""
        return self._calls

    def stream_text(self, prompt: str) -> AsyncGenerator[str, None]:
        self.received.append(prompt)
        response = self.responses[self._calls % len(self.responses)]
        self._calls += 1
        chunks = split_tokens(response) if isinstance(response, str) else list(response)
        if self.stop:
            chunks = _cut_at_stop(chunks, self.stop)
        # An empty completion is one empty chunk, so that it adds up to "" (not to nothing).
        return self._stream_chunks(chunks or [""])

    async def _stream_chunks(self, chunks: list[str]) -> AsyncGenerator[str, None]:
        for chunk in chunks:
            if self.delay:
                await anyio.sleep(self.delay)
            yield chunk

    def __repr__(self) -> str:
        return f"ScriptedLLM(responses={len(self.responses)}, delay={self.delay})"
