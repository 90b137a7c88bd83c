"""Tools: functions with a name, a description and an argument schema (``@tool``).

A tool aggregates its input, checks it against the signature, and calls the function:
a synchronous one in a worker thread, an async one in its actor. A generator function
streams its chunks as ``on_tool_stream`` events. Runnables the tool calls are nested
under its step with no ``callbacks`` argument to thread through.

The input is either the arguments (a dict, or one value for a one-argument tool) or a
*tool call* as a model makes it (a :class:`~nodes.ToolCall` from ``AIMessage.tool_calls``,
or LangChain's dict ``{"name", "args", "id", "type": "tool_call"}``). Given a tool call,
the tool answers with a :class:`~nodes.ToolMessage` carrying the call's id and the
tool's name, ready to send back to the model. ``handle_tool_error`` (and
``handle_validation_error`` for arguments that do not fit) turns a failure into that
answer, with ``status="error"``, instead of raising it.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from typing import Any, ClassVar, Literal, overload

import anyio
import attrs

from engine import AggregateNode, Step, concat_chunks, run_in_worker_thread

from ._messages import MessageContent, ToolCall, ToolMessage

__all__ = (
    "ErrorHandler",
    "Tool",
    "ToolArgumentError",
    "ToolException",
    "as_tool_call",
    "error_text",
    "tool",
    "tool_content",
)


class ToolArgumentError(TypeError):
    """A tool was called with arguments that do not fit its signature."""


class ToolException(Exception):
    """An error a tool raises for the model to read (langchain-core's name).

    With ``handle_tool_error=True`` its message alone becomes the error
    ``ToolMessage``'s content (other exceptions are shown with their type's name).
    """


#: What ``handle_tool_error``/``handle_validation_error`` take: ``False`` (raise), ``True``
#: (the error's own text), a fixed text, or a function of the exception returning the text.
ErrorHandler = bool | str | Callable[[Exception], str]


def _check_handler(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None and attribute.name == "handle_validation_error":
        return  # follow handle_tool_error
    if isinstance(value, bool | str) or callable(value):
        return
    raise TypeError(
        f"{attribute.name} must be True, False, a text or a function of the exception that "
        f"returns the text, got {type(value).__name__}: {value!r}"
    )


def error_text(handler: ErrorHandler | None, error: Exception) -> str | None:
    """What ``handler`` makes of ``error`` for the model: a text, or ``None`` to raise it.

    Raises:
        TypeError: If a handler function returns something other than a string.
    """
    if handler is None or handler is False:
        return None
    if handler is True:
        if isinstance(error, ToolException):
            return str(error) or "Tool execution error"
        if isinstance(error, ToolArgumentError):
            return str(error)
        return f"{type(error).__name__}: {error}"
    if isinstance(handler, str):
        return handler
    text = handler(error)
    if not isinstance(text, str):
        raise TypeError(
            f"an error handler must return the text for the model, got {type(text).__name__}: {text!r}"
        ) from error
    return text


def as_tool_call(value: Any) -> ToolCall | None:
    """``value`` as a tool call if it is one (a ``ToolCall``, or a dict whose ``"type"`` is
    ``"tool_call"``), else ``None`` (plain arguments).

    Raises:
        ToolArgumentError: For a tool-call dict without a string ``name``, a dict of
            ``args`` and a string (or ``None``) ``id``.
    """
    if isinstance(value, ToolCall):
        return value
    if not isinstance(value, Mapping) or value.get("type") != "tool_call":
        return None
    name, args, call_id = value.get("name"), value.get("args"), value.get("id")
    if (
        not isinstance(name, str)
        or not isinstance(args, Mapping)
        or not (call_id is None or isinstance(call_id, str))
    ):
        raise ToolArgumentError(
            f"a tool call needs a 'name' (str), 'args' (dict) and 'id' (str or None), got {dict(value)!r}"
        )
    return ToolCall(name=name, args=dict(args), id=call_id)


def tool_content(output: Any) -> MessageContent:
    """A tool's output as ``ToolMessage`` content: a string or content blocks as they are,
    anything else as JSON (``str()`` where it is not JSON), as langchain-core does."""
    if isinstance(output, str):
        return output
    if (
        isinstance(output, list)
        and output
        and all(isinstance(block, dict) and isinstance(block.get("type"), str) for block in output)
    ):
        return list(output)
    try:
        return json.dumps(output, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(output)


_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
}


def _json_schema(annotation: Any) -> dict[str, Any]:
    """The JSON schema of a parameter's annotation, in pydantic's spelling (what
    langchain-core shows), for the types a tool's signature commonly uses."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    if annotation is None or annotation is type(None):
        return {"type": "null"}
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        return {"anyOf": [_json_schema(a) for a in options]}
    if origin is typing.Literal:
        return _literal_schema(typing.get_args(annotation))
    base = origin or annotation
    kind = _JSON_TYPES.get(base)
    if kind is None:
        return {}
    schema: dict[str, Any] = {"type": kind}
    args = typing.get_args(annotation)
    if kind == "array":
        # list[int] and tuple[int, ...] alike: the items' schema (a bare list: any items).
        schema["items"] = _json_schema(args[0] if args else inspect.Parameter.empty)
    elif kind == "object":
        schema["additionalProperties"] = _json_schema(args[1]) if len(args) == 2 else True
    return schema


def _literal_schema(values: tuple[Any, ...]) -> dict[str, Any]:
    kinds = {_JSON_TYPES.get(type(value)) for value in values}
    schema: dict[str, Any] = {"const": values[0]} if len(values) == 1 else {"enum": list(values)}
    if len(kinds) == 1 and None not in kinds:
        schema["type"] = kinds.pop()
    return schema


def _title(name: str) -> str:
    # pydantic's title for a field: "first_name" -> "First Name".
    return name.replace("_", " ").title()


def _json_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _check_type(value: Any, annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    base = origin or annotation
    if not isinstance(base, type):
        return True
    if base is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, base)


@attrs.frozen(eq=False, repr=False)
class Tool(AggregateNode[Any, Any]):
    """A function as a tool step. Make one with :func:`tool`.

    The input is the arguments (a dict, or one value for a one-argument tool), or a tool
    call (a :class:`~nodes.ToolCall`, or ``{"name", "args", "id", "type": "tool_call"}``):
    then the output is one :class:`~nodes.ToolMessage` with the call's id, the tool's
    name and the output as content (a string or content blocks as they are, anything else
    as JSON; a generator tool's chunks added up first; a ``ToolMessage`` the function
    returns, as it is). A call without an id gets the output itself, as in langchain-core.

    Attributes:
        handle_tool_error: What to do when the function raises an ``Exception``:
            ``False`` raises it; ``True`` answers with its text (a
            :class:`ToolException`'s message, or ``"TypeName: message"``); a string
            answers with that string; a function of the exception returns the text.
            The answer is an error ``ToolMessage`` (``status="error"``) for a tool call,
            the text itself for plain arguments. A cancellation is never caught.
        handle_validation_error: The same for arguments that do not fit the signature
            (:class:`ToolArgumentError`); ``None`` (the default) does what
            ``handle_tool_error`` does. *Where we chose differently from langchain-core:*
            there ``handle_tool_error`` catches only ``ToolException``, argument errors
            are raised unless ``handle_validation_error`` is set, and ``True`` answers
            argument errors with a fixed "Tool input validation error"; here the flag
            covers whatever the tool raises, and the model reads which argument was
            wrong, so it can correct its call.

    Raises:
        ToolArgumentError: For arguments that do not fit the signature, or a tool call
            naming another tool (always raised: it is a routing mistake, not the model's).
    """

    kind: ClassVar[str] = "tool"

    func: Callable[..., Any]
    tool_name: str
    description: str
    _signature: inspect.Signature
    _hints: dict[str, Any]
    handle_tool_error: ErrorHandler = attrs.field(default=False, kw_only=True, validator=_check_handler)
    handle_validation_error: ErrorHandler | None = attrs.field(
        default=None, kw_only=True, validator=_check_handler
    )

    @property
    def publishes_chunks(self) -> bool:
        """A generator tool's chunks are stream events; a plain tool's one value is not
        (as in langchain-core's ``astream_events`` v2)."""
        return inspect.isasyncgenfunction(self.func) or inspect.isgeneratorfunction(self.func)

    @classmethod
    def from_function(
        cls,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        handle_tool_error: ErrorHandler = False,
        handle_validation_error: ErrorHandler | None = None,
    ) -> Tool:
        """A tool for ``func``, named after it and described by its docstring."""
        if not callable(func):
            raise TypeError(f"@tool needs a function, got {type(func).__name__}")
        signature = inspect.signature(func)
        for parameter in signature.parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
                raise TypeError(
                    f"tool {func.__name__!r}: parameter {parameter.name!r} must be a named argument"
                )
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # an unresolvable annotation only costs the type check
            hints = {}
        doc = inspect.getdoc(func) or ""
        return cls(
            func=func,
            tool_name=name or func.__name__,
            description=description if description is not None else doc,
            signature=signature,
            hints=hints,
            handle_tool_error=handle_tool_error,
            handle_validation_error=handle_validation_error,
        )

    def get_name(self) -> str:
        return self.tool_name

    @property
    def args_schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments (``{"type": "object", "properties": ...}``), as
        sent to a model. *Where we chose differently from langchain-core:* there it is a
        pydantic class; rillet has no pydantic, so it is the schema itself."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, parameter in self._signature.parameters.items():
            schema = _json_schema(self._hints.get(name, parameter.annotation))
            if parameter.default is not inspect.Parameter.empty:
                schema = {**schema, "default": _json_default(parameter.default)}
            else:
                required.append(name)
            properties[name] = schema
        return {"type": "object", "properties": properties, "required": required}

    @property
    def tool_call_schema(self) -> dict[str, Any]:
        """The schema of the arguments a model fills in: :attr:`args_schema` (rillet
        injects no arguments, so the two are the same)."""
        return self.args_schema

    @property
    def args(self) -> dict[str, Any]:
        """Each argument's JSON schema by name, with pydantic's title, as langchain-core's
        ``tool.args`` shows them (``{"a": {"title": "A", "type": "integer"}}``)."""
        properties = self.args_schema["properties"]
        return {name: {**schema, "title": _title(name)} for name, schema in properties.items()}

    def get_input_jsonschema(self) -> dict[str, Any]:
        """The whole input schema as langchain-core gives it: title, description,
        properties with titles, and ``required`` when some argument is."""
        schema: dict[str, Any] = {"properties": self.args, "title": self.tool_name, "type": "object"}
        if self.description:
            schema["description"] = self.description
        required = self.args_schema["required"]
        if required:
            schema["required"] = required
        return schema

    def to_anthropic(self) -> dict[str, Any]:
        """The tool definition for Anthropic's Messages API."""
        return {"name": self.tool_name, "description": self.description, "input_schema": self.args_schema}

    def _arguments(self, value: Any, *, named: bool = False) -> dict[str, Any]:
        """``value`` as keyword arguments, checked against the signature. A one-argument
        tool also takes the bare value, unless ``named`` (a tool call's arguments are
        always by name, so a wrong name there is reported as such)."""
        parameters = self._signature.parameters
        if isinstance(value, Mapping) and (
            named or not (len(parameters) == 1 and next(iter(parameters)) not in value)
        ):
            arguments = dict(value)
        elif len(parameters) == 1:
            arguments = {next(iter(parameters)): value}
        else:
            raise ToolArgumentError(
                f"tool {self.tool_name!r} takes the arguments {list(parameters)}: call it with a dict, "
                f"got {type(value).__name__}: {value!r}"
            )
        unknown = [key for key in arguments if key not in parameters]
        if unknown:
            raise ToolArgumentError(
                f"tool {self.tool_name!r} got unknown argument(s) {', '.join(map(repr, unknown))}; "
                f"it takes {list(parameters)}"
            )
        for name, parameter in parameters.items():
            if name not in arguments:
                if parameter.default is inspect.Parameter.empty:
                    raise ToolArgumentError(
                        f"tool {self.tool_name!r} is missing the required argument {name!r}"
                    )
                continue
            annotation = self._hints.get(name, parameter.annotation)
            if not _check_type(arguments[name], annotation):
                raise ToolArgumentError(
                    f"tool {self.tool_name!r}: argument {name!r} must be {getattr(annotation, '__name__', annotation)}, "
                    f"got {type(arguments[name]).__name__}: {arguments[name]!r}"
                )
        return arguments

    def compute(self, value: Any, step: Step) -> AsyncIterator[Any]:
        call = as_tool_call(value)
        if call is None:
            return self._run(value, step)
        if call.name != self.tool_name:
            raise ToolArgumentError(
                f"tool {self.tool_name!r} was given a call of the tool {call.name!r} (id {call.id!r})"
            )
        return self._answer(call, step)

    def _handled(self, error: Exception) -> str | None:
        """The text for the model instead of ``error``, or ``None`` to raise it."""
        handler = self.handle_tool_error
        if isinstance(error, ToolArgumentError) and self.handle_validation_error is not None:
            handler = self.handle_validation_error
        return error_text(handler, error)

    async def _run(self, value: Any, step: Step) -> AsyncIterator[Any]:
        """Plain arguments: the function's output chunks (a handled error's text last)."""
        try:
            arguments = self._arguments(value)
            # Closed here, in this task, when the step stops early (a sync generator's
            # cleanup then runs in its worker thread, within the run).
            async with aclosing(self._chunks(arguments, step)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except Exception as error:
            text = self._handled(error)
            if text is None:
                raise
            yield text

    async def _answer(self, call: ToolCall, step: Step) -> AsyncIterator[Any]:
        """A tool call: one ``ToolMessage`` answering it."""
        status: Literal["success", "error"] = "success"
        try:
            arguments = self._arguments(call.args, named=True)
            async with aclosing(self._chunks(arguments, step)) as stream:
                chunks = [chunk async for chunk in stream]
            output = chunks[0] if len(chunks) == 1 else concat_chunks(chunks)
        except Exception as error:
            text = self._handled(error)
            if text is None:
                raise
            output, status = text, "error"
        if call.id is None or isinstance(output, ToolMessage):
            yield output
            return
        yield ToolMessage(tool_content(output), tool_call_id=call.id, name=self.tool_name, status=status)

    async def _chunks(self, arguments: dict[str, Any], step: Step) -> AsyncGenerator[Any, None]:
        func = self.func
        if inspect.isasyncgenfunction(func):
            async with aclosing(func(**arguments)) as chunks:
                async for chunk in chunks:
                    yield chunk
        elif inspect.iscoroutinefunction(func):
            yield await func(**arguments)
        elif inspect.isgeneratorfunction(func):
            # Each chunk comes back from the worker thread as soon as it is produced.
            iterator = await run_in_worker_thread(step, lambda: func(**arguments))
            try:
                while True:
                    done, item = await run_in_worker_thread(step, _next_or_done, iterator)
                    if done:
                        break
                    yield item
            finally:
                # Stopped early: close it here, in a worker thread (its cleanup may
                # block), before the run ends, not whenever it is collected.
                with anyio.CancelScope(shield=True):
                    await run_in_worker_thread(step, iterator.close)
        else:
            yield await run_in_worker_thread(step, lambda: func(**arguments))

    def __repr__(self) -> str:
        return f"Tool({self.tool_name!r})"


def _next_or_done(iterator: Any) -> tuple[bool, Any]:
    try:
        return False, next(iterator)
    except StopIteration:
        return True, None


@overload
def tool(func: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    handle_tool_error: ErrorHandler = False,
    handle_validation_error: ErrorHandler | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    handle_tool_error: ErrorHandler = False,
    handle_validation_error: ErrorHandler | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a (sync or async, plain or generator) function into a :class:`Tool`.

    Use as ``@tool`` or ``@tool(name=..., description=..., handle_tool_error=...,
    handle_validation_error=...)`` (see :class:`Tool` for the two error flags).
    """
    options: dict[str, Any] = {
        "name": name,
        "description": description,
        "handle_tool_error": handle_tool_error,
        "handle_validation_error": handle_validation_error,
    }
    if func is not None:
        return Tool.from_function(func, **options)

    def decorate(function: Callable[..., Any]) -> Tool:
        return Tool.from_function(function, **options)

    return decorate
