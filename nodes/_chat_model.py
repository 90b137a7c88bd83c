"""The chat-model base every model node shares, and the scripted model for offline use.

A chat model is an aggregate step that streams: it waits for its whole input (a string,
messages or a prompt value), then streams its reply one ``AIMessageChunk`` at a time.
The base class does the input conversion and the ``on_chat_model_*`` events; a model
node implements only :meth:`BaseChatModel.stream_chunks`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import anyio
import attrs

from engine import AggregateNode, Step

from ._messages import AIMessage, AIMessageChunk, BaseMessage, coerce_to_messages

__all__ = ("BaseChatModel", "ScriptedChatModel", "split_tokens")


class BaseChatModel(AggregateNode[Any, AIMessageChunk]):
    """The shared base of chat-model nodes.

    Subclasses implement :meth:`stream_chunks`, yielding ``AIMessageChunk``s as the
    model produces them (langchain-core's ``_astream``). The base converts the input
    (``str``, a list of messages or ``(role, text)`` pairs, or a prompt value) to
    messages, names the events ``on_chat_model_*`` and puts ``{"messages": [[...]]}``
    in their input. ``compute`` is the base's own: a model overrides
    :meth:`stream_chunks` only (and ``reads_current_step = False`` when its code never
    calls back into the engine).
    """

    kind: ClassVar[str] = "chat_model"

    def _messages(self, value: Any) -> list[BaseMessage]:
        return coerce_to_messages(value, where=f"the input of {self.get_name()}")

    def carries_content(self, chunk: Any) -> bool:
        """A chunk with text, a tool-call delta or a thinking (or other) content block
        carries content; one with only an id, usage or metadata does not."""
        if not isinstance(chunk, AIMessageChunk):
            return True
        content = chunk.content
        return bool(content) or bool(chunk.tool_call_chunks)

    def start_event_input(self, value: Any) -> Any:
        try:
            return {"messages": [self._messages(value)]}
        except (TypeError, ValueError):
            # A bad input fails in the actor, where it becomes the step's error event.
            return value

    def compute(self, value: Any, step: Step) -> AsyncIterator[AIMessageChunk]:
        messages = self._messages(value)
        step.set_input({"messages": [messages]})
        # The stream itself is the step's output: the engine closes it in the actor's own
        # task when the step ends, so a model's HTTP stream never waits for the garbage
        # collector (and costs no wrapper generator per token).
        return self.stream_chunks(messages)

    def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        """Yield the reply to ``messages`` chunk by chunk, as the model produces it.

        Implement it as an async generator. The engine calls it once per run of the
        step, with the whole input converted to messages, and the generator it returns
        is the step's output itself: each chunk is sent downstream (after its
        ``on_chat_model_stream`` event) before the next is asked for, so a slow
        consumer holds the model at its ``yield`` once the bounded edge between them is
        full. Chunks add up with ``+`` into the
        reply.

        It may await anything (an HTTP stream, a sleep). It must not hold a cancel
        scope or task group open across a ``yield`` (the engine resumes it once per
        chunk from its own loop; PEP 789) and must not block the event loop.

        The engine closes the generator (``aclose()``) in the task that iterated it when
        the step ends: after its last chunk, on an error, or when the run is cancelled or
        stopped from downstream, so a ``finally`` or ``async with`` around the model's
        stream releases it there and then (never in the garbage collector). Those
        cleanups run inside the run's cancel scope: one that must await when the run
        was cancelled shields itself and bounds its wait, as ``ChatAnthropic`` does.
        """
        raise NotImplementedError

    async def ainvoke(self, input: Any, config: Any = None) -> AIMessage:  # type: ignore[override]
        """Run the model and return the whole reply as an ``AIMessage``."""
        chunk = await super().ainvoke(input, config)
        return chunk.to_message()


_TOKEN = re.compile(r"\s*\S+|\s+")


def split_tokens(text: str) -> list[str]:
    """Split ``text`` into word tokens, each carrying the whitespace before it.

    ``" Hello! My name"`` gives ``[" Hello!", " My", " name"]``, like a tokenizer's
    pieces; joining the tokens gives back the text exactly.
    """
    return _TOKEN.findall(text)


def _stop_sequences(value: Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"stop must be a list of strings, got {value!r}")
    if not all(value):
        raise ValueError(f"a stop sequence must not be empty, got {list(value)!r}")
    return tuple(value)


def _cut_at_stop(tokens: list[str], stop: tuple[str, ...]) -> list[str]:
    """``tokens`` up to (not including) the first place any ``stop`` sequence occurs."""
    text = "".join(tokens)
    cut = min((at for sequence in stop if (at := text.find(sequence)) >= 0), default=-1)
    if cut < 0:
        return tokens
    kept: list[str] = []
    length = 0
    for token in tokens:
        if length + len(token) >= cut:
            if cut > length:
                kept.append(token[: cut - length])
            break
        kept.append(token)
        length += len(token)
    return kept


@attrs.define(eq=False, repr=False)
class ScriptedChatModel(BaseChatModel):
    """A chat model that streams scripted replies: for tests, examples and offline use.

    Each call takes the next reply (cycling). A reply given as a string is split into
    word tokens (see :func:`split_tokens`); a reply given as a list of strings is
    streamed as exactly those tokens. Each token is one ``AIMessageChunk``, after
    ``delay`` seconds (instant under trio's mock clock).

    Args:
        replies: The replies, used in turn.
        delay: Seconds to wait before each token.
        name: The name events carry (default ``"ScriptedChatModel"``).
        stop: Stop sequences, as a model API takes them: a reply ends right before the
            first place any of them occurs (the token there is cut short), and the rest
            is never streamed. Also bound with ``model.bind(stop=[...])``, which returns
            a copy (with its own call count and ``received`` logs).

    Raises:
        ValueError: If ``replies`` is empty, ``delay`` is negative or a stop sequence is
            empty.
        TypeError: If ``stop`` is a string rather than a list of strings.
    """

    reads_current_step: ClassVar[bool] = False
    #: ``bind(stop=[...])`` sets :attr:`stop` on a copy.
    call_arguments: ClassVar[Mapping[str, str]] = {"stop": "stop"}

    replies: Sequence[str | Sequence[str]]
    delay: float = 0.0
    name_: str = attrs.field(default="ScriptedChatModel", alias="name")
    _calls: int = attrs.field(default=0, init=False)
    received: list[list[BaseMessage]] = attrs.field(factory=list, init=False)
    stop: tuple[str, ...] | None = attrs.field(default=None, converter=_stop_sequences)
    #: The call arguments in force for each call, in order (``{"stop": [...]}`` or ``{}``).
    received_arguments: list[dict[str, Any]] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.replies, str) or not self.replies:
            raise ValueError("ScriptedChatModel needs a non-empty list of replies")
        for reply in self.replies:
            if not isinstance(reply, str) and not all(isinstance(t, str) for t in reply):
                raise ValueError(f"a scripted reply must be a string or a list of strings, got {reply!r}")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")

    def get_name(self) -> str:
        return self.name_

    @property
    def calls(self) -> int:
        """How many times the model was called."""
        return self._calls

    def _next_tokens(self) -> list[str]:
        reply = self.replies[self._calls % len(self.replies)]
        self._calls += 1
        return split_tokens(reply) if isinstance(reply, str) else list(reply)

    async def stream_chunks(self, messages: list[BaseMessage]) -> AsyncGenerator[AIMessageChunk, None]:
        self.received.append(messages)
        self.received_arguments.append({"stop": list(self.stop)} if self.stop is not None else {})
        tokens = self._next_tokens()
        if self.stop:
            # Cut to nothing, the reply is one empty chunk (a model API still answers).
            tokens = _cut_at_stop(tokens, self.stop) or [""]
        for token in tokens:
            if self.delay:
                await anyio.sleep(self.delay)
            yield AIMessageChunk.from_text(token)

    def __repr__(self) -> str:
        return f"ScriptedChatModel(replies={len(self.replies)}, delay={self.delay})"
