"""What ``ChatAnthropic.bind_tools`` takes, made into the Messages API's tool definitions.

A tool may be given as langchain-core takes it, and each becomes the API's ``{"name",
"description", "input_schema"}`` when it is bound, never at call time:

* a :class:`~nodes.Tool` (``Tool.to_anthropic()``), or a plain function (made a tool with
  ``@tool``, so its signature is its schema);
* a schema class: a pydantic model (when pydantic is installed), a dataclass, an attrs
  class or a ``TypedDict`` (``nodes/_schema.py``: its name, docstring and JSON schema);
* the API's own dict (sent as given, so it may carry ``cache_control``), or OpenAI's
  function form, ``{"type": "function", "function": {"name", "description",
  "parameters"}}`` (or the bare ``{"name", "description", "parameters"}``);
* a dict of one of the API's server tools (``{"type": "web_search_20250305", ...}``: a
  ``type`` other than ``custom``), sent as given: those take no ``input_schema``.

Anything else is refused with an error naming the tool: a dict of a custom tool without
an ``input_schema`` dict, and a name that does not match the API's tool-name pattern
(``TOOL_NAME``), which the API would answer with a 400.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from ._schema import TOOL_NAME, UnsupportedSchemaError, class_kind, to_schema
from ._tools import Tool, tool

__all__ = ("to_tool_definition", "to_tool_definitions")

_SHAPES = (
    "a Tool (from @tool), a function, a schema class (a pydantic model, dataclass, attrs class or "
    "TypedDict), the API's tool dict {'name', 'description', 'input_schema'} or OpenAI's "
    "{'type': 'function', 'function': {'name', 'description', 'parameters'}}"
)


def _check_name(name: object, shown: object) -> None:
    if not isinstance(name, str) or TOOL_NAME.fullmatch(name) is None:
        raise ValueError(
            f"the tool {shown!r} has the name {name!r}, which the Messages API refuses: a tool's name "
            f"must match {TOOL_NAME.pattern} (letters, digits, '_' and '-', 1 to 64 characters)"
        )


def _from_openai(function: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, Mapping):
        raise TypeError(f"the OpenAI-style tool {dict(given)!r} has 'parameters' that are not a dict")
    definition: dict[str, Any] = {"name": function.get("name")}
    if isinstance(function.get("description"), str):
        definition["description"] = function["description"]
    definition["input_schema"] = dict(parameters)
    return definition


def _from_dict(given: Mapping[str, Any]) -> dict[str, Any]:
    kind = given.get("type")
    if kind == "function":
        function = given.get("function")
        if not isinstance(function, Mapping):
            raise TypeError(f"the OpenAI-style tool {dict(given)!r} needs a 'function' dict")
        definition = _from_openai(function, given)
    elif kind not in (None, "custom"):
        # One of the API's server tools (web search, code execution...): no input_schema.
        return dict(given)
    elif "input_schema" in given:
        if not isinstance(given["input_schema"], Mapping):
            raise TypeError(f"the tool {given.get('name')!r} has an input_schema that is not a dict")
        definition = dict(given)
    elif "parameters" in given:
        definition = _from_openai(given, given)
    else:
        raise ValueError(
            f"the tool dict {dict(given)!r} has no 'input_schema' (the JSON schema of its input, which "
            f"the Messages API requires); a tool is {_SHAPES}"
        )
    _check_name(definition.get("name"), definition.get("name"))
    return definition


def to_tool_definition(given: Any) -> dict[str, Any]:
    """The Messages API's definition of one tool (see the module docstring).

    Raises:
        TypeError: For something that is no tool, or a dict of the wrong shape.
        ValueError: For a custom tool without ``input_schema``, or a name the API refuses.
        UnsupportedSchemaError: For a schema class with a field that has no JSON schema.
    """
    if isinstance(given, Tool):
        definition = given.to_anthropic()
        _check_name(definition["name"], given)
        return definition
    if isinstance(given, Mapping):
        return _from_dict(given)
    if class_kind(given) is not None:
        schema = to_schema(given, where=f"bind_tools({given.__qualname__})")
        definition = schema.tool(f"bind_tools({given.__qualname__})")
        _check_name(definition["name"], given.__qualname__)
        return definition
    if inspect.isfunction(given) or inspect.ismethod(given) or inspect.isbuiltin(given):
        return to_tool_definition(tool(given))
    if isinstance(given, type):
        raise UnsupportedSchemaError(
            f"bind_tools cannot read a schema from the class {given.__qualname__}: a tool is {_SHAPES}"
        )
    raise TypeError(f"bind_tools takes {_SHAPES}; got {type(given).__name__}: {given!r}")


def to_tool_definitions(tools: Sequence[Any]) -> tuple[dict[str, Any], ...]:
    """Each of ``tools`` as the API's definition (see :func:`to_tool_definition`).

    Raises:
        TypeError: If ``tools`` is not a list (a single tool, a string), or an item is no tool.
        ValueError: For a tool the API would refuse (no input schema, a bad name).
    """
    if isinstance(tools, str | Mapping | Tool) or not isinstance(tools, Sequence):
        raise TypeError(f"tools must be a list of tools, got {type(tools).__name__}: {tools!r}")
    return tuple(to_tool_definition(item) for item in tools)
