"""Schemas for structured output: what to ask the model for, and how to read its answer.

A schema is what the user hands to ``with_structured_output`` or
``JsonOutputParser(pydantic_object=...)``: a JSON-schema dict, a dataclass, an attrs class,
a ``TypedDict``, or a pydantic model (only if pydantic is installed; it is looked up in
``sys.modules``, never imported here). :func:`to_schema` turns it, once, into a
:class:`Schema`: the JSON schema to send (as is for a tool, adapted for Claude's native
structured output by :meth:`Schema.claude_format`) and a tree of converter nodes that
checks the model's final JSON value against it and builds the typed value (a dataclass or
attrs instance, a pydantic model; a dict for a ``TypedDict`` or a dict schema).

Everything that can be refused is refused by :func:`to_schema`, before any request: a kind
of schema it does not know, a field type without a JSON schema here (``datetime``, a
``dict`` with non-string keys), a JSON-schema keyword it cannot enforce, a ``$ref`` it cannot resolve, annotations that do not resolve. A value that does
not fit raises :class:`SchemaValidationError` naming where (``people[2].age``), what was
expected and what came instead.

Python types map to JSON schema as follows: ``str``/``int``/``float``/``bool``/``None``;
``Literal[...]`` and ``Enum`` classes (by value) to ``enum``; ``list``, ``Sequence``,
``tuple[X, ...]``, ``set``/``frozenset`` to arrays (converted back to the container type),
``tuple[X, Y]`` to an array of exactly those items (``prefixItems``, built into a tuple);
``dict[str, X]``/``Mapping[str, X]`` to an object with ``additionalProperties``; unions and
``Optional`` to ``anyOf``; ``Annotated[X, "text"]`` adds a description; ``Any`` to ``{}``.
Classes become objects with ``additionalProperties: false`` (a key the class does not have
is an error, as the schema sent says); a class that contains itself, directly or not,
goes to ``$defs`` and is referenced with ``$ref``. Field descriptions come from
``field(metadata={"description": ...})`` (dataclasses and attrs) or ``Annotated``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import reprlib
import sys
import types
import typing
from collections import abc
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import attrs

from ._exceptions import OutputParserException

__all__ = (
    "TOOL_NAME",
    "ArgumentMismatch",
    "ArgumentTypes",
    "Schema",
    "SchemaValidationError",
    "UnsupportedSchemaError",
    "argument_types",
    "to_schema",
    "valid_tool_name",
)

Path = tuple[str | int, ...]


class UnsupportedSchemaError(TypeError):
    """A schema, or a part of one, that has no JSON schema or converter here.

    Raised when the schema is given (``with_structured_output``, ``JsonOutputParser``),
    before any request; the message names the part and says what is supported.
    """


class SchemaValidationError(OutputParserException):
    """The model's JSON value does not fit the schema.

    Attributes:
        path: Where in the value: keys and array indexes from the top (``()`` for the
            value itself).
        expected: What the schema wants there, in words (``"an integer"``).
        text: The model's whole output text (from :class:`OutputParserException`).
    """

    def __init__(self, message: str, *, text: str, path: Path = (), expected: str = "") -> None:
        """Record the failure.

        Args:
            message: The whole message, naming the path, what was expected and what came.
            text: The model's output text.
            path: Where in the value.
            expected: What the schema wants there.
        """
        super().__init__(message, text=text)
        self.path = path
        self.expected = expected

    def __reduce__(self) -> tuple[Any, ...]:
        import functools

        rebuild = functools.partial(type(self), text=self.text, path=self.path, expected=self.expected)
        return (rebuild, self.args, self.__dict__)


def render_path(path: Path) -> str:
    """``("people", 2, "age")`` as ``people[2].age``; the empty path as ``the top level``."""
    if not path:
        return "the top level"
    parts: list[str] = []
    for element in path:
        if isinstance(element, int):
            parts.append(f"[{element}]")
        elif element.isidentifier():
            parts.append(f".{element}" if parts else element)
        else:
            parts.append(f"[{json.dumps(element)}]")
    return "".join(parts)


_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40


def describe_value(value: Any) -> str:
    """A JSON value in words: ``the string 'x'``, ``an object with keys 'a', 'b'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {_repr.repr(value)}"
    if isinstance(value, list):
        return f"an array of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        keys = ", ".join(_repr.repr(key) for key in list(value)[:5])
        more = ", ..." if len(value) > 5 else ""
        return f"an object with keys {keys}{more}" if value else "an empty object"
    return f"a {type(value).__name__}"


class _Mismatch(Exception):
    """A value that does not fit a node; the path is added while the error unwinds."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(expected, got)
        self.expected = expected
        self.got = got
        self.path: list[str | int] = []  # innermost first


# -- converter nodes ----------------------------------------------------------------------


class _Node(Protocol):
    def convert(self, value: Any) -> Any: ...

    def describe(self) -> str: ...


@attrs.frozen
class _AnyValue:
    def convert(self, value: Any) -> Any:
        return value

    def describe(self) -> str:
        return "any value"


_ANY: Final = _AnyValue()


@attrs.frozen
class _Never:
    def convert(self, value: Any) -> Any:
        raise _Mismatch("nothing (the schema is false)", describe_value(value))

    def describe(self) -> str:
        return "nothing"


_SCALARS: Final = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


@attrs.frozen
class _Scalar:
    """A JSON scalar of one type. ``to_python`` converts for a Python field: an integral
    number to ``int``, any number to ``float``."""

    type: str
    to_python: bool = False

    def convert(self, value: Any) -> Any:
        kind = self.type
        if kind == "string":
            ok = isinstance(value, str)
        elif kind == "boolean":
            ok = isinstance(value, bool)
        elif kind == "null":
            ok = value is None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            ok = False
        elif kind == "integer":
            # JSON does not tell 3 from 3.0; JSON Schema counts both as integers.
            ok = isinstance(value, int) or value.is_integer()
            if ok and self.to_python:
                return int(value)
        else:
            ok = True
            if self.to_python:
                return float(value)
        if not ok:
            raise _Mismatch(self.describe(), describe_value(value))
        return value

    def describe(self) -> str:
        return _SCALARS[self.type]


def _json_kind(value: Any) -> str:
    # Literal and enum values compare by JSON kind too: true is not 1, 1 is 1.0.
    if value is None or isinstance(value, bool | str):
        return type(value).__name__
    return "number" if isinstance(value, int | float) else "other"


@attrs.frozen
class _Choice:
    """One of fixed values (``enum``, ``const``, ``Literal``), mapped to ``results``."""

    values: tuple[Any, ...]
    results: tuple[Any, ...]

    def convert(self, value: Any) -> Any:
        kind = _json_kind(value)
        for candidate, result in zip(self.values, self.results, strict=True):
            if _json_kind(candidate) == kind and candidate == value:
                return result
        if any(result is value for result in self.results):
            return value  # already converted: an enum member from Python code (a tool's caller)
        raise _Mismatch(self.describe(), describe_value(value))

    def describe(self) -> str:
        shown = ", ".join(json.dumps(value) for value in self.values[:8])
        return f"one of {shown}{', ...' if len(self.values) > 8 else ''}"


@attrs.frozen
class _Array:
    item: _Node
    build: Callable[[list[Any]], Any] = list

    def convert(self, value: Any) -> Any:
        # JSON gives lists; a tuple or set comes from Python code (a tool's caller).
        if not isinstance(value, list | tuple | set | frozenset):
            raise _Mismatch(self.describe(), describe_value(value))
        item = self.item
        converted: list[Any] = []
        for index, element in enumerate(value):
            try:
                converted.append(item.convert(element))
            except _Mismatch as exc:
                exc.path.append(index)
                raise
        try:
            return self.build(converted)
        except TypeError as exc:  # an item that cannot go into a set
            raise _Mismatch(self.describe(), f"items that cannot be collected ({exc})") from None

    def describe(self) -> str:
        return "an array"


@attrs.frozen
class _Tuple:
    """A fixed-length array (``tuple[int, str]``): one node per position, built into a tuple."""

    items: tuple[_Node, ...]

    def convert(self, value: Any) -> Any:
        if not isinstance(value, list | tuple) or len(value) != len(self.items):
            raise _Mismatch(self.describe(), describe_value(value))
        converted: list[Any] = []
        for index, (node, element) in enumerate(zip(self.items, value, strict=True)):
            try:
                converted.append(node.convert(element))
            except _Mismatch as exc:
                exc.path.append(index)
                raise
        return tuple(converted)

    def describe(self) -> str:
        count = len(self.items)
        return f"an array of exactly {count} item{'s' if count != 1 else ''}"


@attrs.frozen
class _Field:
    key: str  # the JSON key
    argument: str  # the keyword the class takes it as
    node: _Node
    required: bool


@attrs.frozen
class _Object:
    """An object with known fields (``extra`` for other keys: a node, or ``None`` to refuse
    them), built into ``build(arguments)`` when given, else kept as a dict."""

    owner: str
    fields: Mapping[str, _Field]
    extra: _Node | None
    build: Callable[[dict[str, Any]], Any] | None = None
    instance_of: type | None = None  # the class ``build`` makes

    def convert(self, value: Any) -> Any:
        if not isinstance(value, dict):
            if self.instance_of is not None and isinstance(value, self.instance_of):
                return value  # already built: an instance from Python code (a tool's caller)
            raise _Mismatch(self.describe(), describe_value(value))
        arguments: dict[str, Any] = {}
        fields = self.fields
        for key, item in value.items():
            field = fields.get(key)
            try:
                if field is not None:
                    arguments[field.argument] = field.node.convert(item)
                elif self.extra is not None:
                    arguments[key] = self.extra.convert(item)
                else:
                    names = ", ".join(repr(name) for name in fields) or "none"
                    raise _Mismatch(f"only the fields {names}", f"the field {key!r}")
            except _Mismatch as exc:
                if field is not None or self.extra is not None:
                    exc.path.append(key)
                raise
        for field in fields.values():
            if field.required and field.key not in value:
                raise _Mismatch(f"the required field {field.key!r}", describe_value(value))
        if self.build is None:
            return arguments
        try:
            return self.build(arguments)
        except Exception as exc:
            # The class's own checks (attrs validators, __post_init__) have the last word.
            raise _Mismatch(f"a value {self.owner} accepts", f"{type(exc).__name__}: {exc}") from None

    def describe(self) -> str:
        return f"an object ({self.owner})" if self.owner else "an object"


@attrs.frozen
class _AnyOf:
    options: tuple[_Node, ...]
    exactly_one: bool = False  # oneOf

    def convert(self, value: Any) -> Any:
        failures: list[_Mismatch] = []
        results: list[Any] = []
        for option in self.options:
            try:
                results.append(option.convert(value))
            except _Mismatch as exc:
                failures.append(exc)
                continue
            if not self.exactly_one:
                return results[0]
        if len(results) == 1:
            return results[0]
        if results:
            raise _Mismatch(
                f"exactly one of {self.describe()}", f"{describe_value(value)}, which fits several"
            )
        # The option that got deepest into the value explains the failure best.
        deepest = max(failures, key=lambda exc: len(exc.path))
        if deepest.path:
            raise deepest
        raise _Mismatch(self.describe(), describe_value(value))

    def describe(self) -> str:
        return " or ".join(option.describe() for option in self.options)


@attrs.frozen
class _AllOf:
    parts: tuple[_Node, ...]

    def convert(self, value: Any) -> Any:
        result = value
        for part in self.parts:
            result = part.convert(value)
        return result

    def describe(self) -> str:
        return " and ".join(part.describe() for part in self.parts)


@attrs.define
class _Ref:
    """A node defined elsewhere (a ``$ref``, a recursive class), filled in once it is built."""

    name: str
    target: _Node | None = None
    _describing: bool = False

    def convert(self, value: Any) -> Any:
        assert self.target is not None
        return self.target.convert(value)

    def describe(self) -> str:
        if self.target is None or self._describing:
            return self.name  # a description that reaches itself again stops at the name
        self._describing = True
        try:
            return self.target.describe()
        finally:
            self._describing = False


@attrs.frozen
class _Checked:
    """A node plus the JSON Schema constraints (``minimum``, ``pattern``...) on its value.

    Each check is ``(applies, holds, expected)``; a check whose ``applies`` is false for a
    value (``minimum`` on a string) does not constrain it, as JSON Schema says.
    """

    node: _Node
    checks: tuple[tuple[Callable[[Any], bool], Callable[[Any], bool], str], ...]

    def convert(self, value: Any) -> Any:
        result = self.node.convert(value)
        for applies, holds, expected in self.checks:
            if applies(value) and not holds(value):
                raise _Mismatch(expected, describe_value(value))
        return result

    def describe(self) -> str:
        limits = ", ".join(expected for _, _, expected in self.checks if expected)
        return f"{self.node.describe()} ({limits})" if limits else self.node.describe()


@attrs.frozen
class _Pydantic:
    model: type

    def convert(self, value: Any) -> Any:
        pydantic = sys.modules["pydantic"]
        try:
            return self.model.model_validate(value)  # type: ignore[attr-defined]
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            got = f"{describe_value(first.get('input'))} ({first.get('msg', 'invalid')})"
            mismatch = _Mismatch("a value pydantic accepts", got)
            mismatch.path.extend(
                reversed([part for part in first.get("loc", ()) if isinstance(part, str | int)])
            )
            raise mismatch from None

    def describe(self) -> str:
        return f"an object ({self.model.__name__})"


# -- JSON-schema dicts ------------------------------------------------------------------

#: Keywords that only annotate: they are sent, and not checked.
_ANNOTATIONS: Final = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "format",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentMediaType",
        "contentEncoding",
    }
)
_STRUCTURE: Final = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "$defs",
        "definitions",
    }
)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _multiple_of(step: float) -> Callable[[Any], bool]:
    def holds(value: Any) -> bool:
        quotient = value / step
        return math.isclose(quotient, round(quotient), rel_tol=1e-9, abs_tol=1e-9)

    return holds


def _pattern(pattern: Any, where: str) -> Callable[[Any], bool]:
    try:
        compiled = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise UnsupportedSchemaError(
            f"{where}: the pattern {pattern!r} is not a regular expression ({exc})"
        ) from None
    return lambda value: compiled.search(value) is not None


def _count(where: str, keyword: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UnsupportedSchemaError(f"{where}: {keyword} must be a non-negative integer, got {value!r}")
    return value


def _bound(where: str, keyword: str, value: Any) -> float:
    if not _number(value):
        raise UnsupportedSchemaError(f"{where}: {keyword} must be a number, got {value!r}")
    return float(value)


_CheckFactory = Callable[[str, Any], tuple[Callable[[Any], bool], Callable[[Any], bool], str]]


def _limit_checks() -> dict[str, _CheckFactory]:
    def numeric(keyword: str, holds: Callable[[float, float], bool], words: str) -> _CheckFactory:
        def make(where: str, raw: Any) -> tuple[Callable[[Any], bool], Callable[[Any], bool], str]:
            limit = _bound(where, keyword, raw)
            return _number, lambda value: holds(value, limit), f"a number {words} {raw}"

        return make

    def sized(keyword: str, applies: Callable[[Any], bool], at_least: bool, unit: str) -> _CheckFactory:
        def make(where: str, raw: Any) -> tuple[Callable[[Any], bool], Callable[[Any], bool], str]:
            limit = _count(where, keyword, raw)
            if at_least:
                return applies, lambda value: len(value) >= limit, f"at least {limit} {unit}"
            return applies, lambda value: len(value) <= limit, f"at most {limit} {unit}"

        return make

    def multiple(where: str, raw: Any) -> tuple[Callable[[Any], bool], Callable[[Any], bool], str]:
        step = _bound(where, "multipleOf", raw)
        if step <= 0:
            raise UnsupportedSchemaError(f"{where}: multipleOf must be positive, got {raw!r}")
        return _number, _multiple_of(step), f"a multiple of {raw}"

    def pattern(where: str, raw: Any) -> tuple[Callable[[Any], bool], Callable[[Any], bool], str]:
        return _is_str, _pattern(raw, where), f"a string matching {raw!r}"

    def unique(where: str, raw: Any) -> tuple[Callable[[Any], bool], Callable[[Any], bool], str]:
        if raw is True:
            return _is_list, lambda value: len({_canonical(v) for v in value}) == len(value), "unique items"
        return _is_list, lambda value: True, ""

    return {
        "minimum": numeric("minimum", lambda value, limit: value >= limit, ">="),
        "maximum": numeric("maximum", lambda value, limit: value <= limit, "<="),
        "exclusiveMinimum": numeric("exclusiveMinimum", lambda value, limit: value > limit, ">"),
        "exclusiveMaximum": numeric("exclusiveMaximum", lambda value, limit: value < limit, "<"),
        "multipleOf": multiple,
        "minLength": sized("minLength", _is_str, True, "characters"),
        "maxLength": sized("maxLength", _is_str, False, "characters"),
        "pattern": pattern,
        "minItems": sized("minItems", _is_list, True, "items"),
        "maxItems": sized("maxItems", _is_list, False, "items"),
        "uniqueItems": unique,
        "minProperties": sized("minProperties", _is_dict, True, "fields"),
        "maxProperties": sized("maxProperties", _is_dict, False, "fields"),
    }


_CHECKS: Final = _limit_checks()
_KNOWN: Final = _ANNOTATIONS | _STRUCTURE | frozenset(_CHECKS)


@attrs.define
class _JsonContext:
    """The definitions a dict schema's ``$ref``s point into, and the nodes made for them."""

    root: Mapping[str, Any]
    where: str
    refs: dict[str, _Ref] = attrs.Factory(dict)

    def resolve(self, ref: Any, at: str) -> _Ref:
        if not isinstance(ref, str):
            raise UnsupportedSchemaError(f"{at}: $ref must be a string, got {ref!r}")
        node = self.refs.get(ref)
        if node is not None:
            return node
        target = self._target(ref, at)
        node = self.refs[ref] = _Ref(ref)
        node.target = _from_json(target, ref if ref != "#" else self.where, self)
        return node

    def _target(self, ref: str, at: str) -> Any:
        if ref == "#":
            return self.root
        for prefix in ("#/$defs/", "#/definitions/"):
            if ref.startswith(prefix):
                name = ref[len(prefix) :]
                defs = self.root.get(prefix[2:-1])
                if isinstance(defs, Mapping) and name in defs:
                    return defs[name]
        raise UnsupportedSchemaError(
            f"{at}: the $ref {ref!r} does not resolve; only references into this schema's own "
            "$defs or definitions (#/$defs/Name) and to its root (#) are supported"
        )


def _types_of(schema: Mapping[str, Any], where: str) -> list[str]:
    declared = schema.get("type")
    if declared is None:
        if {"properties", "required", "additionalProperties"} & schema.keys():
            return ["object"]
        return ["array"] if "items" in schema else []
    listed = [declared] if isinstance(declared, str) else declared
    if (
        not isinstance(listed, list)
        or not listed
        or any(kind not in _SCALARS and kind not in ("object", "array") for kind in listed)
    ):
        raise UnsupportedSchemaError(
            f"{where}: type must be one of 'object', 'array', 'string', 'integer', 'number', "
            f"'boolean', 'null' (or a list of them), got {declared!r}"
        )
    return list(listed)


def _json_object(schema: Mapping[str, Any], where: str, context: _JsonContext) -> _Node:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(properties, Mapping):
        raise UnsupportedSchemaError(f"{where}: properties must be an object, got {properties!r}")
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        raise UnsupportedSchemaError(f"{where}: required must be a list of strings, got {required!r}")
    fields = {
        key: _Field(key, key, _from_json(sub, f"{where}.properties.{key}", context), key in required)
        for key, sub in properties.items()
    }
    for key in required:
        if key not in fields:
            fields[key] = _Field(key, key, _ANY, True)
    additional = schema.get("additionalProperties", True)
    extra = None if additional is False else _from_json(additional, f"{where}.additionalProperties", context)
    return _Object(str(schema.get("title", "")), fields, extra)


def _json_typed(kind: str, schema: Mapping[str, Any], where: str, context: _JsonContext) -> _Node:
    if kind == "object":
        return _json_object(schema, where, context)
    if kind == "array":
        items = schema.get("items", True)
        if isinstance(items, list):
            raise UnsupportedSchemaError(
                f"{where}: items as a list (tuple validation) is not supported; use prefixItems-free arrays or an object"
            )
        return _Array(_from_json(items, f"{where}.items", context))
    return _Scalar(kind)


def _from_json(schema: Any, where: str, context: _JsonContext) -> _Node:
    """The converter node for a JSON-schema dict (values stay plain JSON)."""
    if schema is True:
        return _ANY
    if schema is False:
        return _Never()
    if not isinstance(schema, Mapping):
        raise UnsupportedSchemaError(f"{where}: a JSON schema must be a dict or a boolean, got {schema!r}")
    unknown = sorted(key for key in schema if key not in _KNOWN)
    if unknown:
        raise UnsupportedSchemaError(
            f"{where}: the JSON-schema keyword(s) {', '.join(map(repr, unknown))} are not supported "
            f"(supported: {', '.join(sorted(_STRUCTURE | frozenset(_CHECKS)))}, and annotations "
            "such as title and description)"
        )
    parts: list[_Node] = []
    if "$ref" in schema:
        parts.append(context.resolve(schema["$ref"], where))
    kinds = _types_of(schema, where)
    if kinds:
        typed = [_json_typed(kind, schema, where, context) for kind in kinds]
        parts.append(typed[0] if len(typed) == 1 else _AnyOf(tuple(typed)))
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise UnsupportedSchemaError(f"{where}: enum must be a non-empty list, got {values!r}")
        parts.append(_Choice(tuple(values), tuple(values)))
    if "const" in schema:
        parts.append(_Choice((schema["const"],), (schema["const"],)))
    for keyword in ("anyOf", "oneOf", "allOf"):
        if keyword in schema:
            options = schema[keyword]
            if not isinstance(options, list) or not options:
                raise UnsupportedSchemaError(f"{where}: {keyword} must be a non-empty list of schemas")
            nodes = tuple(
                _from_json(option, f"{where}.{keyword}[{i}]", context) for i, option in enumerate(options)
            )
            parts.append(
                _AllOf(nodes) if keyword == "allOf" else _AnyOf(nodes, exactly_one=keyword == "oneOf")
            )
    node: _Node = _ANY if not parts else parts[0] if len(parts) == 1 else _AllOf(tuple(parts))
    checks = tuple(_CHECKS[keyword](where, schema[keyword]) for keyword in _CHECKS if keyword in schema)
    return _Checked(node, checks) if checks else node


# -- Python types -----------------------------------------------------------------------

_SUPPORTED_TYPES: Final = (
    "str, int, float, bool, None, Any, Literal[...], Enum classes, list/Sequence/set/frozenset/"
    "tuple[X, ...], tuple[X, Y], dict[str, X], unions and Optional, Annotated, and dataclasses, attrs "
    "classes, TypedDicts and pydantic models"
)


@attrs.define
class _TypeContext:
    """The classes being converted (to spot recursion) and the ``$defs`` made for recursive ones."""

    where: str
    # Spell literals, enums and free dicts as pydantic does (what langchain-core shows for
    # a tool's arguments) rather than in the shortest form.
    pydantic_spelling: bool = False
    in_progress: dict[type, _Ref] = attrs.Factory(dict)
    recursive: set[type] = attrs.Factory(set)
    names: dict[type, str] = attrs.Factory(dict)
    defs: dict[str, Any] = attrs.Factory(dict)

    def def_name(self, cls: type) -> str:
        name = self.names.get(cls)
        if name is None:
            taken = set(self.names.values()) | set(self.defs)
            name, number = cls.__name__, 1
            while name in taken:
                number += 1
                name = f"{cls.__name__}_{number}"
            self.names[cls] = name
        return name


def _pydantic_base() -> type | None:
    module = sys.modules.get("pydantic")
    return getattr(module, "BaseModel", None) if module is not None else None


def _is_typeddict(tp: Any) -> bool:
    # typing_extensions' TypedDict is a class of its own that typing.is_typeddict misses.
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def class_kind(tp: Any) -> str | None:
    """What kind of schema class ``tp`` is, or ``None``."""
    if not isinstance(tp, type):
        return None
    if _is_typeddict(tp):
        return "TypedDict"
    if dataclasses.is_dataclass(tp):
        return "dataclass"
    if attrs.has(tp):
        return "attrs class"
    base = _pydantic_base()
    if base is not None and issubclass(tp, base):
        return "pydantic model"
    return None


def _hints(cls: type, where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        raise UnsupportedSchemaError(
            f"{where}: the annotations of {cls.__qualname__} do not resolve ({type(exc).__name__}: {exc}); "
            "the types they name must be importable from the class's module"
        ) from None


def _docstring(cls: type) -> str | None:
    doc = cls.__doc__
    if not doc or (dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}(")):
        return None  # none, or the signature dataclasses writes when there is none
    if _is_typeddict(cls) and doc == dict.__doc__:
        return None
    import inspect

    return inspect.cleandoc(doc)


@attrs.frozen
class _ClassField:
    key: str
    argument: str
    annotation: Any
    required: bool
    default: Any
    description: str | None


_NO_DEFAULT: Final = object()


def _dataclass_fields(cls: type, where: str) -> list[_ClassField]:
    hints = _hints(cls, where)
    for name, hint in hints.items():
        if isinstance(hint, dataclasses.InitVar):
            raise UnsupportedSchemaError(
                f"{where}: {cls.__qualname__}.{name} is an InitVar, which has no JSON schema here"
            )
    fields: list[_ClassField] = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        default = _NO_DEFAULT if field.default is dataclasses.MISSING else field.default
        description = field.metadata.get("description")
        fields.append(
            _ClassField(field.name, field.name, hints.get(field.name, Any), required, default, description)
        )
    return fields


def _attrs_fields(cls: type, where: str) -> list[_ClassField]:
    hints = _hints(cls, where)
    fields: list[_ClassField] = []
    for field in attrs.fields(cls):
        if not field.init:
            continue
        annotation = hints.get(field.name, field.type if field.type is not None else Any)
        default = field.default
        required = default is attrs.NOTHING
        shown = _NO_DEFAULT if required or isinstance(default, attrs.Factory) else default  # type: ignore[arg-type]
        key = field.alias or field.name
        fields.append(_ClassField(key, key, annotation, required, shown, field.metadata.get("description")))
    return fields


def _typeddict_fields(cls: type, where: str) -> list[_ClassField]:
    hints = _hints(cls, where)
    required_keys: frozenset[str] = getattr(cls, "__required_keys__", frozenset())
    fields: list[_ClassField] = []
    for key, hint in hints.items():
        required = key in required_keys
        # Read the wrappers themselves: under ``from __future__ import annotations`` Python
        # 3.11 cannot see them when it makes __required_keys__.
        while (wrapper := getattr(typing.get_origin(hint), "_name", None)) in (
            "Required",
            "NotRequired",
            "ReadOnly",
        ):
            required = {"Required": True, "NotRequired": False}.get(wrapper, required)
            hint = typing.get_args(hint)[0]
        fields.append(_ClassField(key, key, hint, required, _NO_DEFAULT, None))
    return fields


def _json_default(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _class_object(cls: type, kind: str, where: str, context: _TypeContext) -> tuple[dict[str, Any], _Node]:
    """The object schema and node of a dataclass, attrs class or TypedDict."""
    read = {"dataclass": _dataclass_fields, "attrs class": _attrs_fields, "TypedDict": _typeddict_fields}[
        kind
    ]
    properties: dict[str, Any] = {}
    required: list[str] = []
    fields: dict[str, _Field] = {}
    for spec in read(cls, where):
        field_where = f"{where}: {cls.__qualname__}.{spec.key}"
        field_schema, node = _from_type(spec.annotation, field_where, context)
        if spec.description:
            field_schema = {**field_schema, "description": spec.description}
        if spec.default is not _NO_DEFAULT and _json_default(spec.default):
            field_schema = {**field_schema, "default": spec.default}
        properties[spec.key] = field_schema
        if spec.required:
            required.append(spec.key)
        fields[spec.key] = _Field(spec.key, spec.argument, node, spec.required)
    schema: dict[str, Any] = {"type": "object"}
    if context.pydantic_spelling:
        schema["title"] = cls.__name__
    description = _docstring(cls)
    if description:
        schema["description"] = description
    schema.update(properties=properties, required=required, additionalProperties=False)
    build = None if kind == "TypedDict" else (lambda arguments: cls(**arguments))
    return schema, _Object(cls.__name__, fields, None, build, None if kind == "TypedDict" else cls)


def _pydantic_object(cls: type, where: str, context: _TypeContext) -> tuple[dict[str, Any], _Node]:
    schema = dict(cls.model_json_schema())  # type: ignore[attr-defined]
    for name, definition in schema.pop("$defs", {}).items():
        if name in context.defs and context.defs[name] != definition:
            raise UnsupportedSchemaError(
                f"{where}: two different definitions are both called {name!r} in $defs; rename one of the classes"
            )
        context.defs[name] = definition
    return schema, _Pydantic(cls)


def _class_schema(cls: type, kind: str, where: str, context: _TypeContext) -> tuple[dict[str, Any], _Node]:
    if kind == "pydantic model":
        return _pydantic_object(cls, where, context)
    pending = context.in_progress.get(cls)
    if pending is not None:
        context.recursive.add(cls)
        return {"$ref": f"#/$defs/{context.def_name(cls)}"}, pending
    ref = context.in_progress[cls] = _Ref(cls.__name__)
    try:
        schema, node = _class_object(cls, kind, where, context)
    finally:
        del context.in_progress[cls]
    ref.target = node
    if cls in context.recursive:
        name = context.def_name(cls)
        context.defs[name] = schema
        return {"$ref": f"#/$defs/{name}"}, node
    return schema, node


_PYDANTIC_KINDS: Final[dict[type, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _choice_schema(values: tuple[Any, ...], context: _TypeContext) -> dict[str, Any]:
    if not context.pydantic_spelling:
        return {"enum": list(values)}
    # pydantic: one value is a const; values all of one JSON type name it.
    schema: dict[str, Any] = {"const": values[0]} if len(values) == 1 else {"enum": list(values)}
    kinds = {type(value) for value in values}
    if len(kinds) == 1:
        schema["type"] = _PYDANTIC_KINDS[kinds.pop()]
    return schema


def _literal(values: tuple[Any, ...], where: str, context: _TypeContext) -> tuple[dict[str, Any], _Node]:
    for value in values:
        if not _json_default(value):
            raise UnsupportedSchemaError(
                f"{where}: the Literal value {value!r} is not a JSON string, number, boolean or null"
            )
    return _choice_schema(values, context), _Choice(values, values)


def _enum(cls: type[enum.Enum], where: str, context: _TypeContext) -> tuple[dict[str, Any], _Node]:
    members = tuple(cls)
    values = tuple(member.value for member in members)
    for value in values:
        if not _json_default(value):
            raise UnsupportedSchemaError(
                f"{where}: the enum {cls.__qualname__} has the value {value!r}, which is not a JSON string, number, boolean or null"
            )
    schema = _choice_schema(values, context)
    if "const" in schema:  # pydantic spells a one-member enum as an enum all the same
        schema = {"enum": [schema.pop("const")], **schema}
    return schema, _Choice(values, members)


_SEQUENCES: Final[frozenset[Any]] = frozenset({list, abc.Sequence, abc.MutableSequence})
_SETS: Final[dict[Any, type]] = {set: set, frozenset: frozenset, abc.Set: frozenset, abc.MutableSet: set}
_MAPPINGS: Final[frozenset[Any]] = frozenset({dict, abc.Mapping, abc.MutableMapping})


def _container(
    tp: Any, origin: Any, where: str, context: _TypeContext
) -> tuple[dict[str, Any], _Node] | None:
    args = typing.get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        return _fixed_tuple(args, where, context)
    if origin in _SEQUENCES or origin in _SETS or origin is tuple:
        item_schema, item = _from_type(args[0], f"{where}[]", context) if args else ({}, _ANY)
        schema: dict[str, Any] = {"type": "array", "items": item_schema}
        if origin in _SETS:
            schema["uniqueItems"] = True
            return schema, _Array(item, _SETS[origin])
        return schema, _Array(item, tuple if origin is tuple else list)
    if origin in _MAPPINGS:
        if args and args[0] is not str:
            raise UnsupportedSchemaError(
                f"{where}: {tp!r} has {args[0]!r} keys; JSON object keys are strings (use dict[str, X])"
            )
        value_schema, value = _from_type(args[1], f"{where}[]", context) if args else ({}, _ANY)
        extra: Any = True if value_schema == {} and context.pydantic_spelling else value_schema
        return {"type": "object", "additionalProperties": extra}, _Object("", {}, value)
    return None


def _fixed_tuple(args: tuple[Any, ...], where: str, context: _TypeContext) -> tuple[dict[str, Any], _Node]:
    """``tuple[int, str]``: an array with one schema per position, as pydantic spells it."""
    converted = [_from_type(arg, f"{where}[{i}]", context) for i, arg in enumerate(args)]
    schema = {
        "type": "array",
        "prefixItems": [item for item, _ in converted],
        "minItems": len(args),
        "maxItems": len(args),
    }
    return schema, _Tuple(tuple(node for _, node in converted))


def _union(options: tuple[Any, ...], where: str, context: _TypeContext) -> tuple[dict[str, Any], _Node]:
    converted = [_from_type(option, where, context) for option in options]
    return {"anyOf": [schema for schema, _ in converted]}, _AnyOf(tuple(node for _, node in converted))


_PRIMITIVES: Final = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp)


def _from_type(tp: Any, where: str, context: _TypeContext) -> tuple[dict[str, Any], _Node]:
    """The JSON schema and converter node of a Python type."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *metadata = typing.get_args(tp)
        schema, node = _from_type(inner, where, context)
        texts = [item for item in metadata if isinstance(item, str)]
        return ({**schema, "description": texts[0]} if texts else schema), node
    if tp is Any or tp is object:
        return {}, _ANY
    if tp is None or tp is type(None):
        return {"type": "null"}, _Scalar("null")
    if tp in _PRIMITIVES:
        kind = _PRIMITIVES[tp]
        return {"type": kind}, _Scalar(kind, to_python=True)
    if origin is typing.Literal:
        return _literal(typing.get_args(tp), where, context)
    if origin in (typing.Union, types.UnionType):
        return _union(typing.get_args(tp), where, context)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp, where, context)
    made = _container(tp, origin or tp, where, context)
    if made is not None:
        return made
    found = class_kind(tp)
    if found is not None:
        return _class_schema(tp, found, where, context)
    raise UnsupportedSchemaError(
        f"{where} has the type {_type_name(tp)}, which has no JSON schema here; supported: {_SUPPORTED_TYPES}"
    )


# -- Claude's native structured output ----------------------------------------------------

#: What the installed SDK's own schema adapter for ``output_config.format`` keeps as is
#: (``anthropic/lib/_parse/_transform.py``); anything else it moves into the description.
_CLAUDE_STRING_FORMATS: Final = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
_CLAUDE_TYPES: Final = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _claude_schema(schema: Any, where: str) -> dict[str, Any]:
    """``schema`` in the form Claude's structured output takes (see ANTHROPIC-SDK-NOTES.md)."""
    if not isinstance(schema, Mapping):
        raise UnsupportedSchemaError(
            f"{where}: Claude's structured output needs every part of the schema to name a type; "
            f"got {schema!r} (any value). Use method='function_calling' or give the part a type"
        )
    rest = dict(schema)
    out: dict[str, Any] = {}
    defs = {**rest.pop("definitions", {}), **rest.pop("$defs", {})}
    if defs:
        out["$defs"] = {name: _claude_schema(sub, f"{where}.$defs.{name}") for name, sub in defs.items()}
    if "$ref" in rest:
        # Keywords beside a $ref are dropped here; the final value is still checked against them.
        out["$ref"] = str(rest.pop("$ref")).replace("#/definitions/", "#/$defs/")
        return out
    for keyword in ("title", "description"):
        if keyword in rest:
            out[keyword] = rest.pop(keyword)
    literal = _claude_literals(rest, out)
    for keyword in ("anyOf", "oneOf", "allOf"):
        if keyword in rest:
            target = "allOf" if keyword == "allOf" else "anyOf"
            options = rest.pop(keyword)
            out[target] = [
                _claude_schema(option, f"{where}.{keyword}[{i}]") for i, option in enumerate(options)
            ]
    declared = rest.pop("type", None) or _implied_type(rest)
    if literal:
        pass  # the values say it all (the SDK's adapter drops the type beside them too)
    elif isinstance(declared, list):
        # A list of types is a union; the SDK's adapter takes one type per schema.
        alternatives = [_claude_schema({**rest, "type": kind}, where) for kind in declared]
        out["anyOf"] = out.get("anyOf", []) + alternatives
        rest = {}
    elif declared is not None:
        out["type"] = declared
        _claude_typed(declared, rest, out, where)
    elif not {"anyOf", "allOf"} & out.keys():
        raise UnsupportedSchemaError(
            f"{where}: Claude's structured output needs every part of the schema to name a type "
            f"(or enum, const, anyOf, allOf, $ref); {dict(schema)!r} allows any value. "
            "Use method='function_calling' or give the part a type"
        )
    if rest:
        # The rest (minimum, pattern, maxItems, default...) still reaches the model, in words;
        # the final value is checked against the whole schema anyway.
        note = json.dumps(rest, sort_keys=True, default=str)
        out["description"] = f"{out['description']}\n\n{note}" if "description" in out else note
    return out


def _claude_literals(rest: dict[str, Any], out: dict[str, Any]) -> bool:
    found = False
    if isinstance(rest.get("enum"), list) and rest["enum"] and all(_primitive(v) for v in rest["enum"]):
        out["enum"] = rest.pop("enum")
        found = True
    if "const" in rest and _primitive(rest["const"]):
        out["const"] = rest.pop("const")
        found = True
    return found


def _implied_type(rest: Mapping[str, Any]) -> str | None:
    if {"properties", "required", "additionalProperties"} & rest.keys():
        return "object"
    return "array" if "items" in rest else None


def _claude_typed(declared: str, rest: dict[str, Any], out: dict[str, Any], where: str) -> None:
    if declared not in _CLAUDE_TYPES:
        raise UnsupportedSchemaError(f"{where}: Claude's structured output has no type {declared!r}")
    if declared == "object":
        properties = rest.pop("properties", {})
        additional = rest.pop("additionalProperties", None)
        if not properties and additional not in (None, False):
            raise UnsupportedSchemaError(
                f"{where}: an object with free keys (a dict[str, X], additionalProperties) cannot be asked "
                "of Claude's structured output, which wants additionalProperties: false on every object; "
                "use method='function_calling' or a class with named fields"
            )
        out["properties"] = {
            key: _claude_schema(sub, f"{where}.properties.{key}") for key, sub in properties.items()
        }
        out["additionalProperties"] = False
        if "required" in rest:
            out["required"] = list(rest.pop("required"))
    elif declared == "array":
        if "items" in rest:
            out["items"] = _claude_schema(rest.pop("items"), f"{where}.items")
        if rest.get("minItems") in (0, 1):
            out["minItems"] = rest.pop("minItems")
    elif declared == "string" and rest.get("format") in _CLAUDE_STRING_FORMATS:
        out["format"] = rest.pop("format")


# -- the schema -------------------------------------------------------------------------

#: The names a model API takes for a tool: Anthropic's (see ANTHROPIC-SDK-NOTES.md, "Tool
#: definitions"), which OpenAI's function names share.
TOOL_NAME: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_NOT_IN_TOOL_NAME: Final = re.compile(r"[^a-zA-Z0-9_-]")


def valid_tool_name(name: str) -> str:
    """``name`` made a name the APIs take: each other character becomes ``_``, cut to 64.

    For a name the user never calls by (the forced tool of structured output, named
    after a schema's title such as ``"Person Info"``).
    """
    return _NOT_IN_TOOL_NAME.sub("_", name)[:64]


@attrs.frozen(eq=False)
class Schema:
    """A schema made usable: its JSON schema, its name, and the converter of final values.

    Attributes:
        kind: ``"JSON schema"``, ``"dataclass"``, ``"attrs class"``, ``"TypedDict"`` or
            ``"pydantic model"``.
        name: The class name, or a dict schema's ``title`` (or tool ``name``); ``None`` for
            a dict schema with neither.
        description: The class docstring or the schema's ``description``.
        json_schema: The JSON schema (a fresh copy is handed out by each method).
        source: What the user gave.
    """

    kind: str
    name: str | None
    description: str | None
    json_schema: dict[str, Any]
    source: Any
    _node: _Node

    @property
    def is_typed(self) -> bool:
        """Whether the final value is an instance of a class rather than a dict/JSON value."""
        return self.kind in ("dataclass", "attrs class", "pydantic model")

    def convert(self, value: Any, *, text: str = "") -> Any:
        """Check the model's final JSON ``value`` and build the schema's value from it.

        Raises:
            SchemaValidationError: Naming the path, what was expected there and what came.
        """
        try:
            return self._node.convert(value)
        except _Mismatch as exc:
            path = tuple(reversed(exc.path))
            target = f"{self.name}" if self.name else "the schema"
            message = (
                f"The model's output does not fit {target}: at {render_path(path)}, expected "
                f"{exc.expected}, got {exc.got}"
            )
            raise SchemaValidationError(message, text=text, path=path, expected=exc.expected) from None

    def tool(self, where: str) -> dict[str, Any]:
        """The schema as a tool definition (name, description, input_schema) for a forced tool call.

        Raises:
            UnsupportedSchemaError: For a dict schema without a name, or a schema whose top
                level is not an object (a tool's input is an object).
        """
        if not self.name:
            raise UnsupportedSchemaError(
                f"{where}: method='function_calling' sends the schema as a tool, which needs a name: "
                "give the JSON schema a 'title' (or pass {'name': ..., 'input_schema': ...})"
            )
        input_schema = {
            key: value for key, value in self.json_schema.items() if key not in ("title", "description")
        }
        if input_schema.get("type") != "object":
            raise UnsupportedSchemaError(
                f"{where}: a tool's input is a JSON object, but this schema's top level is "
                f"{input_schema.get('type', 'untyped')!r}; wrap the value in an object"
            )
        tool: dict[str, Any] = {"name": self.name}
        if self.description:
            tool["description"] = self.description
        tool["input_schema"] = input_schema
        return tool

    def claude_format(self, where: str) -> dict[str, Any]:
        """The ``output_config.format`` of Claude's native structured output for this schema.

        Raises:
            UnsupportedSchemaError: For a part Claude's structured output cannot express
                (any value, a dict with free keys).
        """
        return {"type": "json_schema", "schema": _claude_schema(self.json_schema, where)}

    def format_instructions(self) -> str:
        """Words for a prompt that ask for a JSON value fitting this schema (no tools needed)."""
        schema = json.dumps(self.json_schema, ensure_ascii=False)
        return (
            "Answer with one JSON value and nothing else: no text before or after it, and no "
            "Markdown code fence around it. The value must conform to this JSON schema:\n"
            f"{schema}"
        )


def _dict_schema(schema: Mapping[str, Any], where: str) -> Schema:
    if "input_schema" in schema and "name" in schema:
        # An Anthropic tool definition.
        body = schema["input_schema"]
        name, description = schema.get("name"), schema.get("description")
        if not isinstance(body, Mapping):
            raise UnsupportedSchemaError(f"{where}: the tool's input_schema must be a dict, got {body!r}")
    else:
        body, name, description = schema, schema.get("title"), schema.get("description")
    if name is not None and not isinstance(name, str):
        raise UnsupportedSchemaError(f"{where}: the schema's name/title must be a string, got {name!r}")
    json_schema = dict(body)
    context = _JsonContext(json_schema, where)
    node = _from_json(json_schema, where, context)
    return Schema(
        "JSON schema", name, description if isinstance(description, str) else None, json_schema, schema, node
    )


def _class_root(cls: type, kind: str, where: str) -> Schema:
    context = _TypeContext(where)
    json_schema, node = _class_schema(cls, kind, where, context)
    if "$ref" in json_schema:
        # The class contains itself: inline its definition at the top, which a tool's input
        # needs (an object), and keep the definition for the references inside.
        json_schema = dict(context.defs[context.def_name(cls)])
    if context.defs:
        json_schema = {**json_schema, "$defs": {**json_schema.get("$defs", {}), **context.defs}}
    description = json_schema.get("description") if kind == "pydantic model" else _docstring(cls)
    return Schema(kind, cls.__name__, description, json_schema, cls, node)


def to_schema(schema: Any, *, where: str) -> Schema:
    """Turn what a user gave as a schema into a :class:`Schema`.

    Args:
        schema: A JSON-schema dict (or an Anthropic tool definition with ``name`` and
            ``input_schema``), a dataclass, an attrs class, a ``TypedDict``, a pydantic
            model, or a :class:`Schema`.
        where: Who asks, for error messages (``"with_structured_output()"``).

    Raises:
        UnsupportedSchemaError: For anything else, or a part of the schema without a
            JSON schema or converter here, naming the part.
    """
    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, Mapping):
        return _dict_schema(schema, where)
    kind = class_kind(schema)
    if kind is not None:
        return _class_root(schema, kind, where)
    shown = getattr(schema, "__qualname__", None) or f"{type(schema).__name__} {_repr.repr(schema)}"
    raise UnsupportedSchemaError(
        f"{where}: a schema must be a JSON-schema dict, a dataclass, an attrs class, a TypedDict or "
        f"a pydantic model (when pydantic is installed), got {shown}"
    )


# -- a function's arguments (tools) ---------------------------------------------------------


class ArgumentMismatch(Exception):
    """An argument value that does not fit its annotation.

    Attributes:
        path: The argument's name, then keys and array indexes inside its value.
        expected: What the annotation wants there, in words.
        got: What came instead, in words.
    """

    def __init__(self, path: Path, expected: str, got: str) -> None:
        """Record where, what was expected and what came."""
        super().__init__(path, expected, got)
        self.path = path
        self.expected = expected
        self.got = got


@attrs.frozen(eq=False)
class ArgumentTypes:
    """A function's argument annotations made usable for values that arrive as JSON.

    Attributes:
        schemas: Each argument's JSON schema by name, spelled as pydantic spells it (what
            langchain-core shows for a tool's arguments).
        defs: The ``$defs`` those schemas refer to (recursive classes, a pydantic model's
            own definitions); they belong at the top of the schema that holds them.
    """

    schemas: Mapping[str, dict[str, Any]]
    defs: Mapping[str, Any]
    _nodes: Mapping[str, _Node]

    def convert(self, name: str, value: Any) -> Any:
        """Check ``value`` against argument ``name``'s annotation and build the typed value
        (a dataclass, attrs or pydantic instance, a tuple, an enum member...). A value that
        already is one (from Python code) is taken as it is.

        Raises:
            ArgumentMismatch: Naming the path inside the argument, what was expected and
                what came.
        """
        try:
            return self._nodes[name].convert(value)
        except _Mismatch as exc:
            raise ArgumentMismatch((name, *reversed(exc.path)), exc.expected, exc.got) from None


def argument_types(annotations: Mapping[str, Any], *, where: str) -> ArgumentTypes:
    """The JSON schemas and converters of a function's (resolved) argument annotations.

    Args:
        annotations: Each argument's annotation by name (``Any`` for none).
        where: Who asks, for error messages (``"tool 'f'"``).

    Raises:
        UnsupportedSchemaError: For an annotation (or a part of one) without a JSON schema
            or converter here, naming the argument.
    """
    context = _TypeContext(where, pydantic_spelling=True)
    schemas: dict[str, dict[str, Any]] = {}
    nodes: dict[str, _Node] = {}
    for name, annotation in annotations.items():
        schemas[name], nodes[name] = _from_type(annotation, f"{where}: argument {name!r}", context)
    return ArgumentTypes(schemas, dict(context.defs), nodes)
