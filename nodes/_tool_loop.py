"""``ToolLoop``: a chat model that calls tools, run until it answers.

``ToolLoop(model, tools, max_turns=10)`` takes messages (or a string, or a prompt value)
and runs *turns*: the model streams a reply; each tool call of the reply runs as soon as
its arguments are complete; once the reply has ended and every call has been answered,
the model runs again with the reply and the answers (``ToolMessage``s) added to the
conversation. The loop ends at the first reply without tool calls.

**Dataflow.** The loop is one hosting step (``engine.HostingNode``): its actor runs the
model as a nested run under the loop's step, reads the model's chunks and sends each one
on through the step's emitter (an ``await``, never a ``yield``), so the loop's output is
bounded by its edges like any step's: a slow consumer holds the actor at its send, the
model's nested run fills its own bounded edge and stops reading the HTTP stream, in every
turn. Each tool call runs as a nested run of its tool (``tool.ainvoke(call)``) in a task
of a task group the actor holds for the turn; the model's stream is read inside that
group, so cancelling the loop cancels the model call and every running tool, and a tool
that fails (unless its error is handled) cancels the model call and the other tools of
its turn, and ends the loop with its own exception.

**Cancelling waits for synchronous tools.** An async tool is cancelled at its next
``await``. A synchronous tool runs in a worker thread, and a thread cannot be
interrupted: the cancellation waits until the function returns (a ``time.sleep(1)`` tool
holds a cancelled loop for up to a second), and a synchronous generator tool is stopped
after the chunk it is making, then closed in its thread. *Chosen over abandoning the
thread* (``anyio.to_thread.run_sync(abandon_on_cancel=True)``, which would let the
cancellation return at once): everything a run starts ends before the run does, as for
every step of the engine (``engine.run_in_worker_thread``); an abandoned tool would go on
with its side effects unseen, still hold a worker thread, and call back into a run that
has ended if it runs a runnable itself. A tool that must stop promptly is written async
(or checks for cancellation in its own way).

**When a call is complete.** A chat model streams a message's content blocks one after
another (the Messages API sends every event of a block before the next block starts), and
each tool-call fragment carries the ``index`` of its block. So a fragment of another index
means the open call is complete, and the end of the message completes the last one. A
provider that knows sooner says so with an *end marker*, a fragment with nothing but the
call's ``index`` (no name, arguments or id; it adds nothing to the call):
``ChatAnthropic`` sends one at the tool_use block's ``content_block_stop``, so a call
runs as soon as its block ends, not when the next block (or the message's end) arrives.
A fragment without an index cannot be placed; such calls run when the message has ended.

**What streams out.** ``astream`` yields the model's ``AIMessageChunk``s of every turn as
they come, each tool's ``ToolMessage`` as soon as that tool has finished (so a fast tool's
answer may come while the model is still streaming the next call's arguments), and, last,
the *transcript*: a ``list`` of the messages the loop added to the conversation, one
``AIMessage`` per turn, each followed by the ``ToolMessage``s that answer it in the order
of its calls (its last message is the answer). Messages of two kinds do not add up with
``+`` (a conversation is not one message), and where chunks do not add up the engine's
sum is the last chunk; so whatever sums the loop's output (``ainvoke``, ``invoke``,
``abatch``, a chain ending in the loop, ``with_retry``, the end event) gets the
transcript, with no special case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import attrs

# The hosting step is the engine's base for steps that run nested runs in their actor
# (retry, fallbacks, timeouts); the loop is one more, so it uses the same base.
from engine import (
    Emitter,
    HostingNode,
    Runnable,
    RunnableBinding,
    RunnableRateLimited,
    RunnableRetry,
    RunnableTimeout,
    RunnableWithFallbacks,
    Step,
)

from ._messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    InvalidToolCall,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
    coerce_to_messages,
)
from ._tools import ErrorHandler, Tool, error_text, tool

__all__ = ("ToolLoop", "ToolLoopError", "ToolLoopLimitError")

#: Chunks of a turn's message held before they are added into one (bounds the list).
_FOLD = 256


class ToolLoopError(RuntimeError):
    """The model's tool calls cannot be answered: a call of a tool the loop does not
    have, arguments that are not a JSON object, a call without an id, or a stream that
    went back to a call it had moved past."""


class ToolLoopLimitError(ToolLoopError):
    """The model still called tools in the last turn ``max_turns`` allowed.

    The calls of that turn were not run (no model would read their answers).

    Attributes:
        max_turns: The limit.
        messages: What the loop had added to the conversation, the last turn's
            ``AIMessage`` (with its unanswered calls) included.
    """

    def __init__(self, name: str, max_turns: int, messages: Sequence[BaseMessage]) -> None:
        last = messages[-1] if messages else None
        called = [call.name for call in last.tool_calls] if isinstance(last, AIMessage) else []
        super().__init__(
            f"{name} reached max_turns={max_turns}: the model still called tools "
            f"({', '.join(map(repr, called)) or 'invalid calls'}) in turn {max_turns}; raise "
            "max_turns, or catch ToolLoopLimitError (its .messages hold the conversation so far)"
        )
        self.name = name
        self.max_turns = max_turns
        self.messages = list(messages)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its fields (the default would pass only the message).
        return (type(self), (self.name, self.max_turns, self.messages))


def _to_tools(value: Sequence[Tool | Callable[..., Any]]) -> tuple[Tool, ...]:
    if isinstance(value, Tool) or not isinstance(value, Sequence):
        raise TypeError(f"ToolLoop takes a list of tools, got {type(value).__name__}: {value!r}")
    tools = tuple(item if isinstance(item, Tool) else tool(item) for item in value)
    if not tools:
        raise ValueError("ToolLoop needs at least one tool")
    names = [item.tool_name for item in tools]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"ToolLoop: two tools have the name {repeated[0]!r}; a call names one tool")
    return tools


def _offered_names(model: Runnable[Any, Any]) -> list[str] | None:
    """The names of the tools ``model`` already offers, or ``None`` when it offers none."""
    bound = getattr(model, "tools", None)
    if not bound:
        return None
    names = []
    for item in bound:
        name = item.get("name") if isinstance(item, Mapping) else getattr(item, "tool_name", None)
        names.append(str(name))
    return names


def _offer(model: Runnable[Any, Any], tools: tuple[Tool, ...], loop: str) -> Runnable[Any, Any]:
    """``model`` offering exactly ``tools``, bound through the engine's wrappers.

    Raises:
        ValueError: If the model already offers other tools.
        TypeError: If no model inside can be given tools.
    """
    if isinstance(model, RunnableBinding | RunnableRetry | RunnableRateLimited):
        return attrs.evolve(model, bound=_offer(model.bound, tools, loop))
    if isinstance(model, RunnableTimeout):
        return attrs.evolve(model, inner=_offer(model.inner, tools, loop))
    if isinstance(model, RunnableWithFallbacks):
        return attrs.evolve(
            model,
            runnable=_offer(model.runnable, tools, loop),
            fallbacks=tuple(_offer(fallback, tools, loop) for fallback in model.fallbacks),
        )
    wanted = [item.tool_name for item in tools]
    offered = _offered_names(model)
    if offered is not None:
        if sorted(offered) != sorted(wanted):
            raise ValueError(
                f"{loop}: its model {model.get_name()} already offers the tools {offered}, but the "
                f"loop's tools are {wanted}; the model would call tools the loop cannot run, or never "
                "hear of some it can. Give the loop the model without tools bound (it binds its own), "
                "or the same tools"
            )
        # The same tools, bound by the user: kept as bound (with their tool_choice, cache_control).
        return model
    bind_tools = getattr(model, "bind_tools", None)
    if callable(bind_tools):
        bound: Runnable[Any, Any] = bind_tools(list(tools))
        return bound
    if "tools" in type(model).call_arguments:
        return model.bind(tools=list(tools))
    raise TypeError(
        f"{loop} cannot offer its tools to its model {model.get_name()}: it has no bind_tools() and "
        "takes no 'tools' call argument, so the model would never hear of the tools. Give the loop a "
        "chat model that takes tools (ChatAnthropic, ScriptedChatModel), possibly wrapped in "
        "with_retry, with_fallbacks, with_timeout, with_rate_limit or with_config"
    )


def _check_model(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Runnable):
        raise TypeError(f"ToolLoop's model must be a chat model (a runnable), got {type(value).__name__}")


def _check_turns(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_turns must be an int >= 1, got {value!r}")


def _check_handler(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not (isinstance(value, bool | str) or callable(value)):
        raise TypeError(
            "handle_tool_errors must be True, False, a text or a function of the exception that "
            f"returns the text, got {type(value).__name__}: {value!r}"
        )


@attrs.frozen(eq=False, repr=False)
class ToolLoop(HostingNode[Any, Any]):
    """Runs ``model``, then the tools it calls, then ``model`` again, until it answers.

    Args:
        model: A chat model (a runnable streaming ``AIMessageChunk``s) that takes tools,
            possibly wrapped in the engine's wrappers (``with_retry``,
            ``with_fallbacks``, ``with_timeout``, ``with_rate_limit``, ``with_config``).
            The loop offers the model exactly its ``tools``, or refuses at
            construction: it binds them inside the wrappers (to each model of a
            fallback list), with ``bind_tools`` or, for a model without it, the
            ``tools`` call argument (``bind(tools=...)``); a model that already offers
            the same tools (by name) is kept as bound, so a ``tool_choice`` or
            ``cache_control`` bound with them stays. The bound model is the loop's
            ``model`` attribute.
        tools: ``Tool`` objects (or functions, made tools with ``@tool``), named uniquely.
        max_turns: The most model calls. A reply in the last turn that still calls tools
            ends the loop with :class:`ToolLoopLimitError` (an error, not a quiet stop:
            the conversation is unfinished), after that reply has streamed.
        handle_tool_errors: What a tool's error (an ``Exception`` the tool did not handle
            itself with ``handle_tool_error``), a call of an unknown tool or arguments
            that are not JSON become. ``False`` (the default): the loop ends with that
            exception (the model call and the other tools of the turn are cancelled).
            ``True``, a text or a function of the exception: an error ``ToolMessage``
            (``status="error"``) that goes back to the model, as ``handle_tool_error``
            makes one (see :class:`~nodes.Tool`).
        name: The name the loop's events carry.

    ``astream`` yields each turn's ``AIMessageChunk``s as they come, each
    ``ToolMessage`` as its tool finishes, and last the transcript (a list of the
    messages added: an ``AIMessage`` per turn, each followed by its ``ToolMessage``s),
    which is what ``ainvoke`` returns (see the module docstring). The model call and every tool call are nested runs under the
    loop's step (``on_chat_model_*``, ``on_tool_*``), with ``{"turn": n}`` in their
    metadata.

    Raises:
        TypeError: For a model that is not a runnable or cannot be given tools (no
            ``bind_tools``, no ``tools`` call argument, inside or out of the wrappers),
            tools that are not a list of tools or functions, or a bad
            ``handle_tool_errors``.
        ValueError: For no tools, two tools of one name, ``max_turns`` below 1, or a
            model that already offers other tools than the loop's (both named).
    """

    kind: ClassVar[str] = "chain"

    model: Runnable[Any, Any] = attrs.field(validator=_check_model)
    tools: tuple[Tool, ...] = attrs.field(converter=_to_tools)
    max_turns: int = attrs.field(default=10, kw_only=True, validator=_check_turns)
    handle_tool_errors: ErrorHandler = attrs.field(default=False, kw_only=True, validator=_check_handler)
    name_: str = attrs.field(default="ToolLoop", kw_only=True, alias="name")
    _by_name: Mapping[str, Tool] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {item.tool_name: item for item in self.tools})
        object.__setattr__(self, "model", _offer(self.model, self.tools, self.get_name()))

    def get_name(self) -> str:
        return self.name_

    def carries_content(self, chunk: Any) -> bool:
        # The loop's first chunks are the model's: its commit point is the model's.
        if isinstance(chunk, AIMessageChunk):
            return self.model.carries_content(chunk)
        return True

    async def host(self, value: Any, emitter: Emitter, step: Step) -> None:
        conversation = coerce_to_messages(value, where=f"the input of {self.get_name()}")
        added: list[BaseMessage] = []
        for turn in range(1, self.max_turns + 1):
            message, answers = await self._turn([*conversation, *added], turn, emitter)
            added.append(message)
            if not (message.tool_calls or message.invalid_tool_calls):
                # The last chunk: what the chunks add up to (they do not add with +,
                # so a sum keeps the last chunk: ainvoke, a chain's, the end event).
                await emitter.send(list(added))
                return
            if turn == self.max_turns:
                raise ToolLoopLimitError(self.get_name(), self.max_turns, added)
            added.extend(answers)

    async def _turn(
        self, messages: list[BaseMessage], turn: int, emitter: Emitter
    ) -> tuple[AIMessage, list[ToolMessage]]:
        """One model call and the tool calls of its reply (none in the last turn)."""
        state = _TurnState()
        failure: BaseException | None = None
        message: AIMessage | None = None
        async with anyio.create_task_group() as tools:
            state.scope = tools.cancel_scope
            start: Callable[[_Call], None] | None = None
            if turn < self.max_turns:

                def start(call: _Call) -> None:
                    tools.start_soon(
                        self._run_call, call, turn, state, emitter, name=f"rillet tool call {call}"
                    )

            try:
                message = await self._stream_model(messages, turn, emitter, start)
            except BaseException as exc:  # raised below as itself: the task group would wrap it
                failure = exc
                tools.cancel_scope.cancel()
        if state.failure is not None:
            # The tool's error ended the turn (its cancellation of the model is not the
            # loop's failure), unless the loop itself was cancelled meanwhile.
            await anyio.lowlevel.checkpoint_if_cancelled()
            raise state.failure
        if failure is not None:
            raise failure
        assert message is not None
        return message, [state.answers[position] for position in sorted(state.answers)]

    async def _stream_model(
        self,
        messages: list[BaseMessage],
        turn: int,
        emitter: Emitter,
        start: Callable[[_Call], None] | None,
    ) -> AIMessage:
        """Stream the model's reply to ``messages`` downstream, starting each tool call
        (``start``) as soon as it is complete; the whole reply."""
        reply = _MessageSum()
        calls = _CallTracker()
        async with self.model.astream(messages, {"metadata": {"turn": turn}}) as chunks:
            async for chunk in chunks:
                if not isinstance(chunk, AIMessageChunk):
                    raise TypeError(
                        f"{self.get_name()}'s model must stream AIMessageChunks, got "
                        f"{type(chunk).__name__} from {self.model.get_name()}"
                    )
                reply.add(chunk)
                if start is not None and chunk.tool_call_chunks:
                    for call in calls.feed(chunk.tool_call_chunks):
                        start(call)
                await emitter.send(chunk)
        if start is not None:
            for call in calls.finish():
                start(call)
        return reply.total().to_message()

    async def _run_call(self, call: _Call, turn: int, state: _TurnState, emitter: Emitter) -> None:
        """Answer one call and send the answer downstream; a failure ends the turn."""
        try:
            answer = await self._answer(call, turn)
            state.answers[call.position] = answer
            await emitter.send(answer)
        except Exception as exc:
            state.fail(exc)

    async def _answer(self, call: _Call, turn: int) -> ToolMessage:
        parsed, invalid = call.parsed, call.invalid
        call_id = parsed.id if parsed is not None else invalid.id if invalid is not None else None
        name = parsed.name if parsed is not None else invalid.name if invalid is not None else None
        if call_id is None:
            raise ToolLoopError(
                f"turn {turn}: the model's call of {name!r} has no id; {self.get_name()} pairs each "
                "ToolMessage with its call by id"
            )
        try:
            if parsed is None:
                raise ToolLoopError(f"the call of {name!r} is invalid: {invalid.error if invalid else ''}")
            chosen = self._by_name.get(parsed.name)
            if chosen is None:
                raise ToolLoopError(
                    f"there is no tool named {parsed.name!r}; the tools are "
                    f"{', '.join(map(repr, self._by_name))}"
                )
            answer = await chosen.ainvoke(parsed, {"metadata": {"turn": turn}})
        except Exception as error:
            handler = self.handle_tool_errors
            text = (
                str(error)
                if handler is True and isinstance(error, ToolLoopError)
                else error_text(handler, error)
            )
            if text is None:
                error.add_note(
                    f"raised by the call {call_id!r} of {name!r} in turn {turn} of {self.get_name()}"
                )
                raise
            return ToolMessage(text, tool_call_id=call_id, name=name, status="error")
        if not isinstance(answer, ToolMessage):
            raise TypeError(
                f"tool {name!r} answered the call {call_id!r} with a {type(answer).__name__}, not a ToolMessage"
            )
        return answer

    def __repr__(self) -> str:
        names = [item.tool_name for item in self.tools]
        return f"ToolLoop({self.model!r}, tools={names!r}, max_turns={self.max_turns})"


@attrs.define(eq=False)
class _Call:
    """A complete tool call of a streaming reply: parsed, or invalid with the reason."""

    position: int
    parsed: ToolCall | None
    invalid: InvalidToolCall | None

    def __str__(self) -> str:
        call = self.parsed or self.invalid
        return f"{call.name if call else None}#{self.position}"


@attrs.define(eq=False)
class _TurnState:
    """What a turn's tool tasks share with the loop's actor."""

    answers: dict[int, ToolMessage] = attrs.field(factory=dict)
    failure: Exception | None = None
    scope: anyio.CancelScope | None = None

    def fail(self, error: Exception) -> None:
        """The first failure ends the turn: the model call and the other tools stop."""
        if self.failure is None:
            self.failure = error
        if self.scope is not None:
            self.scope.cancel()


class _CallTracker:
    """Tells when each tool call of a streaming reply is complete (see the module docstring)."""

    __slots__ = ("_closed", "_loose", "_open", "_parts", "_position")

    def __init__(self) -> None:
        self._open: int | None = None
        self._parts: list[ToolCallChunk] = []
        self._closed: set[int] = set()
        self._loose: list[ToolCallChunk] = []
        self._position = 0

    def feed(self, fragments: list[ToolCallChunk]) -> list[_Call]:
        """Take a chunk's fragments; the calls they show to be complete."""
        complete: list[_Call] = []
        for fragment in fragments:
            index = fragment.index
            if index is None:
                self._loose.append(fragment)
            elif fragment.name is None and fragment.args is None and fragment.id is None:
                # An end marker (ChatAnthropic's at content_block_stop): the call is complete.
                if index == self._open:
                    complete.append(self._close())
            elif index == self._open:
                self._parts.append(fragment)
            elif index in self._closed:
                raise ToolLoopError(
                    f"the model's stream went back to the tool call at index {index} after moving "
                    "past it, so that call may have run with part of its arguments"
                )
            else:
                if self._open is not None:
                    complete.append(self._close())
                self._open, self._parts = index, [fragment]
        return complete

    def finish(self) -> list[_Call]:
        """The reply has ended: the calls still open (a fragment without an index is a
        whole call: there is nothing to merge it with)."""
        complete = [self._close()] if self._open is not None else []
        complete.extend(self._call([fragment]) for fragment in self._loose)
        self._loose = []
        return complete

    def _close(self) -> _Call:
        assert self._open is not None
        self._closed.add(self._open)
        call = self._call(self._parts)
        self._open, self._parts = None, []
        return call

    def _call(self, fragments: list[ToolCallChunk]) -> _Call:
        # Parsed once: to_message() parses the fragments into both lists in one pass.
        merged = AIMessageChunk(content="", tool_call_chunks=fragments).to_message()
        parsed, invalid = merged.tool_calls, merged.invalid_tool_calls
        call = _Call(self._position, parsed[0] if parsed else None, invalid[0] if invalid else None)
        self._position += 1
        return call


class _MessageSum:
    """A reply's chunks added up, folded every ``_FOLD`` chunks (not one object per token)."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[AIMessageChunk] = []

    def add(self, chunk: AIMessageChunk) -> None:
        parts = self._parts
        parts.append(chunk)
        if len(parts) >= _FOLD:
            self._parts = [AIMessageChunk.concat_chunks(parts)]

    def total(self) -> AIMessageChunk:
        if not self._parts:
            return AIMessageChunk(content="")
        return AIMessageChunk.concat_chunks(self._parts)

    def __bool__(self) -> bool:
        return bool(self._parts)
