"""Tools: functions with a name, a description and an argument schema (``@tool``).

A tool aggregates its input (a dict of arguments, or one value for a one-argument
tool), checks it against the signature, and calls the function: a synchronous one in a
worker thread, an async one in its actor. A generator function streams its chunks as
``on_tool_stream`` events. Runnables the tool calls are nested under its step with no
``callbacks`` argument to thread through.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
from typing import Any, ClassVar, overload

import anyio
import attrs

from engine import AggregateNode, Step, run_in_worker_thread

__all__ = ("Tool", "ToolArgumentError", "tool")


class ToolArgumentError(TypeError):
    """A tool was called with arguments that do not fit its signature."""


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
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _json_schema(options[0])
        return {"anyOf": [_json_schema(a) for a in options]}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(annotation))}
    base = origin or annotation
    kind = _JSON_TYPES.get(base)
    if kind is None:
        return {}
    schema: dict[str, Any] = {"type": kind}
    args = typing.get_args(annotation)
    if kind == "array" and args:
        schema["items"] = _json_schema(args[0])
    return schema


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
    """A function as a tool step. Make one with :func:`tool`."""

    kind: ClassVar[str] = "tool"

    func: Callable[..., Any]
    tool_name: str
    description: str
    _signature: inspect.Signature
    _hints: dict[str, Any]

    @classmethod
    def from_function(
        cls, func: Callable[..., Any], *, name: str | None = None, description: str | None = None
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
        )

    def get_name(self) -> str:
        return self.tool_name

    @property
    def args_schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments (``{"type": "object", "properties": ...}``)."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, parameter in self._signature.parameters.items():
            schema = _json_schema(self._hints.get(name, parameter.annotation))
            if parameter.default is not inspect.Parameter.empty:
                schema = {**schema, "default": parameter.default}
            else:
                required.append(name)
            properties[name] = schema
        return {"type": "object", "properties": properties, "required": required}

    def to_anthropic(self) -> dict[str, Any]:
        """The tool definition for Anthropic's Messages API."""
        return {"name": self.tool_name, "description": self.description, "input_schema": self.args_schema}

    def _arguments(self, value: Any) -> dict[str, Any]:
        parameters = self._signature.parameters
        if isinstance(value, Mapping) and not (len(parameters) == 1 and next(iter(parameters)) not in value):
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

    async def compute(self, value: Any, step: Step) -> AsyncIterator[Any]:
        arguments = self._arguments(value)
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
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str | None = None
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a (sync or async, plain or generator) function into a :class:`Tool`.

    Use as ``@tool`` or ``@tool(name=..., description=...)``.
    """
    if func is not None:
        return Tool.from_function(func, name=name, description=description)

    def decorate(function: Callable[..., Any]) -> Tool:
        return Tool.from_function(function, name=name, description=description)

    return decorate
