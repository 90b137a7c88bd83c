"""Tools: functions with a name, a description and an argument schema (``@tool``).

A tool aggregates its input, checks it against the signature, and calls the function:
a synchronous one in a worker thread (which a cancellation cannot interrupt: it waits
for the function to return, or for a generator's current chunk), an async one in its
actor (cancelled at its next ``await``). Each argument's JSON
schema and its conversion come from the schema converter ``with_structured_output`` uses
(``nodes/_schema.py``): an argument annotated with a ``TypedDict``, a dataclass, an attrs
class, a pydantic model (when installed), ``tuple[int, int]``, an ``Enum``... is sent with
its own schema and built from the JSON a call brings (a dict for a ``TypedDict``, an
instance for a class, a tuple, an enum member; ``1`` for a ``float`` is ``1.0``). A value
already built (from Python code) is taken as it is. A value that does not fit is a
:class:`ToolArgumentError` naming the tool and the path inside the argument
(``tool 'trip': argument 'stops[0].lat': expected a number, got the string 'x'``); an
annotation without a JSON schema here (``datetime``) is refused when the tool is made. A generator function
streams its chunks as ``on_tool_stream`` events. Runnables the tool calls are nested
under its step with no ``callbacks`` argument to thread through; a function that
declares one anyway (the guide's ``correct_tool(word, callbacks)``), or a ``config``
parameter, gets it injected, and neither is one of the tool's arguments.

The input is either the arguments (a dict, or one value for a one-argument tool) or a
*tool call* as a model makes it (a :class:`~nodes.ToolCall` from ``AIMessage.tool_calls``,
or LangChain's dict ``{"name", "args", "id", "type": "tool_call"}``). Given a tool call,
the tool answers with a :class:`~nodes.ToolMessage` carrying the call's id and the
tool's name, ready to send back to the model. ``handle_tool_error`` (and
``handle_validation_error`` for arguments that do not fit) turns a failure into that
answer, with ``status="error"``, instead of raising it.
"""

from __future__ import annotations

import enum
import inspect
import json
import types
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from typing import Any, ClassVar, Literal, overload

import anyio
import attrs

from engine import AggregateNode, Step, concat_chunks, run_in_worker_thread, step_config

from ._messages import MessageContent, ToolCall, ToolMessage
from ._schema import ArgumentMismatch, ArgumentTypes, UnsupportedSchemaError, argument_types, render_path

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


def _title(name: str) -> str:
    # pydantic's title for a field: "first_name" -> "First Name".
    return name.replace("_", " ").title()


def _json_default(value: Any) -> tuple[bool, Any]:
    """``value`` as JSON for a schema's ``default``, as pydantic writes it: ``(False, None)``
    when it has no JSON form (it is then left out of the schema)."""
    if isinstance(value, enum.Enum):
        value = value.value
    elif isinstance(value, tuple | set | frozenset):
        value = list(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False, None
    return True, value


def _resolved_annotations(
    func: Callable[..., Any], signature: inspect.Signature, where: str
) -> dict[str, Any]:
    """Each parameter's annotation, strings (``from __future__ import annotations``)
    resolved in the function's module; the return annotation is not looked at."""
    annotations = {
        name: parameter.annotation
        for name, parameter in signature.parameters.items()
        if parameter.annotation is not inspect.Parameter.empty
    }
    holder = types.SimpleNamespace(__annotations__=annotations)
    globalns = getattr(inspect.unwrap(func), "__globals__", None)
    try:
        hints = typing.get_type_hints(holder, globalns=globalns, include_extras=True)
    except Exception as exc:
        raise UnsupportedSchemaError(
            f"{where}: the argument annotations do not resolve ({type(exc).__name__}: {exc}); "
            "the types they name must be importable from the function's module"
        ) from None
    return {name: hints.get(name, Any) for name in signature.parameters}


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
    _types: ArgumentTypes
    handle_tool_error: ErrorHandler = attrs.field(default=False, kw_only=True, validator=_check_handler)
    handle_validation_error: ErrorHandler | None = attrs.field(
        default=None, kw_only=True, validator=_check_handler
    )
    #: The parameters the step fills in itself (``config``, ``callbacks``), left out of
    #: the arguments and their schema.
    injected: tuple[str, ...] = attrs.field(default=(), kw_only=True)

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
        tool_name = name or func.__name__
        where = f"tool {tool_name!r}"
        # Injected parameters (the run's config, the guide's callbacks) are not arguments:
        # they are left out before the schema is made (a RunnableConfig has no JSON form).
        injected = tuple(name for name in signature.parameters if name in _INJECTED)
        if injected:
            signature = signature.replace(
                parameters=[p for p in signature.parameters.values() if p.name not in injected]
            )
        argument_schema = argument_types(_resolved_annotations(func, signature, where), where=where)
        doc = inspect.getdoc(func) or ""
        return cls(
            func=func,
            tool_name=tool_name,
            description=description if description is not None else doc,
            signature=signature,
            types=argument_schema,
            handle_tool_error=handle_tool_error,
            handle_validation_error=handle_validation_error,
            injected=injected,
        )

    def get_name(self) -> str:
        return self.tool_name

    @property
    def args_schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments (``{"type": "object", "properties": ...}``, and
        ``$defs`` when a recursive class or a pydantic model needs them), as sent to a
        model. Defaults are written as JSON (an enum's value, a tuple as a list); one with
        no JSON form is left out.

        *Where we chose differently from langchain-core:* there it is a pydantic class;
        rillet has no pydantic, so it is the schema itself. A class argument (dataclass,
        attrs, ``TypedDict``) is written in place with ``additionalProperties: false`` (and
        a key it does not have is refused) where pydantic refers to ``$defs`` and ignores
        such keys; attrs classes work here (pydantic has no schema for them). Values are
        JSON's own types: the string ``"1"`` is not an integer here (pydantic's lax mode
        takes it), so the model reads that its call was wrong."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, parameter in self._signature.parameters.items():
            schema = self._types.schemas[name]
            if parameter.default is inspect.Parameter.empty:
                required.append(name)
            else:
                has_default, default = _json_default(parameter.default)
                if has_default:
                    schema = {**schema, "default": default}
            properties[name] = schema
        args_schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
        if self._types.defs:
            args_schema["$defs"] = dict(self._types.defs)
        return args_schema

    @property
    def tool_call_schema(self) -> dict[str, Any]:
        """The schema of the arguments a model fills in: :attr:`args_schema` (the
        injected ``config``/``callbacks`` parameters are in neither)."""
        return self.args_schema

    @property
    def args(self) -> dict[str, Any]:
        """Each argument's JSON schema by name, with pydantic's title, as langchain-core's
        ``tool.args`` shows them (``{"a": {"title": "A", "type": "integer"}}``)."""
        properties = self.args_schema["properties"]
        # A class's schema keeps its own title (pydantic's), as langchain-core shows it.
        return {name: {"title": _title(name), **schema} for name, schema in properties.items()}

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
            try:
                arguments[name] = self._types.convert(name, arguments[name])
            except ArgumentMismatch as exc:
                raise ToolArgumentError(
                    f"tool {self.tool_name!r}: argument {render_path(exc.path)!r}: expected {exc.expected}, got {exc.got}"
                ) from None
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
        if self.injected:
            arguments = {**arguments, **_injected_arguments(self.injected, step)}
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


#: Parameters a tool's function may declare for the step to fill in: its config, and
#: ``callbacks`` (langchain-core's way to nest calls, which the guide's ``correct_tool``
#: passes on; here the step itself, which nesting does not need but accepts).
_INJECTED = ("config", "callbacks")


def _injected_arguments(names: tuple[str, ...], step: Step) -> dict[str, Any]:
    config = step_config(step)
    return {name: config if name == "config" else config["callbacks"] for name in names}


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
