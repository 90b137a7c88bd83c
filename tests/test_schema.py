"""Schemas for structured output: each kind becomes a JSON schema and a converter that checks
the final value and builds its type; what has no converter is refused when the schema is given.

This module uses ``from __future__ import annotations`` on purpose: class annotations are
strings here, as in most user code, and must still resolve (``NotRequired`` included).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import pickle
from collections.abc import Sequence
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import attrs
import pytest

from nodes import JsonOutputParser, OutputParserException, SchemaValidationError, UnsupportedSchemaError
from nodes._schema import to_schema

WHERE = "with_structured_output()"


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass
class Address:
    city: str
    zip: str | None = None


@dataclasses.dataclass
class Person:
    """A person in the address book."""

    name: Annotated[str, "Full name"]
    age: int
    tags: list[str] = dataclasses.field(default_factory=list, metadata={"description": "Labels"})
    color: Color = Color.RED
    address: Address | None = None
    kind: Literal["friend", "colleague"] = "friend"
    score: float = 0.0


@attrs.frozen
class Account:
    _owner: str  # taken as "owner", the attrs alias
    balance: int = attrs.field(validator=attrs.validators.ge(0))
    labels: frozenset[str] = attrs.Factory(frozenset)
    history: tuple[int, ...] = ()


class Movie(TypedDict):
    title: str
    year: int
    cast: NotRequired[list[Address]]


@attrs.frozen
class Tree:
    """A labelled tree."""

    label: str
    children: list[Tree] = attrs.Factory(list)


@dataclasses.dataclass
class Forest:
    trees: list[Tree]
    biggest: Tree | None = None


def convert(schema: Any, value: Any) -> Any:
    return to_schema(schema, where=WHERE).convert(value)


def mismatch(schema: Any, value: Any) -> SchemaValidationError:
    with pytest.raises(SchemaValidationError) as caught:
        convert(schema, value)
    return caught.value


# -- classes ------------------------------------------------------------------------------


def test_a_dataclass_becomes_an_object_schema_with_its_fields_defaults_and_descriptions() -> None:
    """Fields, required ones, defaults, Annotated and metadata descriptions, the docstring, no extras."""
    schema = to_schema(Person, where=WHERE)
    assert (schema.kind, schema.name, schema.description) == (
        "dataclass",
        "Person",
        "A person in the address book.",
    )
    assert schema.json_schema == {
        "type": "object",
        "description": "A person in the address book.",
        "properties": {
            "name": {"type": "string", "description": "Full name"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "Labels"},
            "color": {"enum": ["red", "green"]},
            "address": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string"},
                            "zip": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
                        },
                        "required": ["city"],
                        "additionalProperties": False,
                    },
                    {"type": "null"},
                ],
                "default": None,
            },
            "kind": {"enum": ["friend", "colleague"], "default": "friend"},
            "score": {"type": "number", "default": 0.0},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }


def test_a_dataclass_value_is_built_with_nested_classes_enums_and_numbers_converted() -> None:
    """Nested dataclasses and enums are built; 3.0 is an int field's 3 and 2 a float field's 2.0."""
    value = {"name": "Ann", "age": 3.0, "color": "green", "address": {"city": "Paris"}, "score": 2}
    person = convert(Person, value)
    assert person == Person("Ann", 3, [], Color.GREEN, Address("Paris"), "friend", 2.0)
    assert type(person.age) is int and type(person.score) is float


def test_an_attrs_class_takes_its_aliases_and_containers_and_its_validators_have_the_last_word() -> None:
    """A private field is keyed by its alias; sets and tuples are rebuilt; a validator's refusal names the class."""
    schema = to_schema(Account, where=WHERE)
    assert list(schema.json_schema["properties"]) == ["owner", "balance", "labels", "history"]
    assert schema.json_schema["properties"]["labels"] == {
        "type": "array",
        "items": {"type": "string"},
        "uniqueItems": True,
    }
    assert schema.json_schema["required"] == ["owner", "balance"]
    account = schema.convert({"owner": "ann", "balance": 5, "labels": ["a", "b"], "history": [1, 2]})
    assert account == Account("ann", 5, frozenset({"a", "b"}), (1, 2))
    error = mismatch(Account, {"owner": "ann", "balance": -1})
    assert (
        error.path == ()
        and "expected a value Account accepts, got ValueError: 'balance' must be >= 0" in str(error)
    )


def test_a_typeddict_stays_a_dict_and_its_not_required_keys_may_be_missing() -> None:
    """A TypedDict's value is a dict (nested classes built); NotRequired keys are optional, others required."""
    schema = to_schema(Movie, where=WHERE)
    assert schema.json_schema["required"] == ["title", "year"]
    assert schema.convert({"title": "Up", "year": 2009}) == {"title": "Up", "year": 2009}
    assert schema.convert({"title": "Up", "year": 2009, "cast": [{"city": "x"}]})["cast"] == [Address("x")]
    assert "expected the required field 'year'" in str(mismatch(Movie, {"title": "Up"}))


def test_a_recursive_class_goes_to_defs_and_is_referenced() -> None:
    """A class that contains itself is defined once in $defs; the top level stays an object."""
    schema = to_schema(Tree, where=WHERE)
    body = {
        "type": "object",
        "description": "A labelled tree.",
        "properties": {
            "label": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}},
        },
        "required": ["label"],
        "additionalProperties": False,
    }
    assert schema.json_schema == {**body, "$defs": {"Tree": body}}
    tree = schema.convert({"label": "a", "children": [{"label": "b", "children": [{"label": "c"}]}]})
    assert tree == Tree("a", [Tree("b", [Tree("c")])])
    forest = to_schema(Forest, where=WHERE)
    assert forest.json_schema["properties"]["trees"] == {"type": "array", "items": {"$ref": "#/$defs/Tree"}}
    assert forest.convert({"trees": [{"label": "x"}]}) == Forest([Tree("x")])


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        (
            {"name": "Ann"},
            (),
            "at the top level, expected the required field 'age', got an object with keys 'name'",
        ),
        ({"name": "A", "age": "x"}, ("age",), "at age, expected an integer, got the string 'x'"),
        ({"name": "A", "age": 1.5}, ("age",), "at age, expected an integer, got the number 1.5"),
        ({"name": "A", "age": True}, ("age",), "at age, expected an integer, got true"),
        (
            {"name": "A", "age": 1, "tags": ["a", 2]},
            ("tags", 1),
            "at tags[1], expected a string, got the integer 2",
        ),
        (
            {"name": "A", "age": 1, "address": {"city": 3}},
            ("address", "city"),
            "at address.city, expected a string",
        ),
        (
            {"name": "A", "age": 1, "color": "blue"},
            ("color",),
            'expected one of "red", "green", got the string',
        ),
        ({"name": "A", "age": 1, "nick": "x"}, (), "expected only the fields 'name', 'age'"),
        ([1], (), "at the top level, expected an object (Person), got an array of 1 item"),
    ],
)
def test_a_value_that_does_not_fit_is_refused_naming_the_path_and_what_was_expected(
    value: Any, path: tuple[Any, ...], message: str
) -> None:
    """The error names where (keys and indexes), what the schema wants there and what came."""
    error = mismatch(Person, value)
    assert error.path == path
    assert message in str(error) and str(error).startswith("The model's output does not fit Person: ")
    assert isinstance(error, OutputParserException)


def test_a_deep_path_through_recursion_and_odd_keys_is_spelled_out() -> None:
    """Indexes in brackets, identifiers after dots, other keys quoted in brackets."""
    error = mismatch(Tree, {"label": "a", "children": [{"label": "b", "children": [{"label": 5}]}]})
    assert "at children[0].children[0].label, expected a string, got the integer 5" in str(error)
    odd = {"type": "object", "properties": {"a b": {"type": "array", "items": {"type": "integer"}}}}
    assert 'at ["a b"][0], expected an integer' in str(mismatch(odd, {"a b": ["x"]}))


def test_a_validation_error_survives_pickling() -> None:
    """The path, what was expected and the text round-trip."""
    error = to_schema(Person, where=WHERE)
    with pytest.raises(SchemaValidationError) as caught:
        error.convert({"name": "A", "age": "x"}, text='{"name": "A", "age": "x"}')
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.path, copy.expected, copy.text, str(copy)) == (
        ("age",),
        "an integer",
        '{"name": "A", "age": "x"}',
        str(caught.value),
    )


# -- JSON-schema dicts ----------------------------------------------------------------------

RECORD = {
    "title": "Record",
    "description": "A record.",
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "note": {"type": ["string", "null"], "maxLength": 5},
        "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 1, "uniqueItems": True},
        "mode": {"enum": ["a", "b"]},
        "version": {"const": 2},
        "size": {"oneOf": [{"type": "integer", "multipleOf": 2}, {"type": "integer", "multipleOf": 3}]},
        "both": {"allOf": [{"type": "number"}, {"type": "number", "exclusiveMaximum": 10}]},
    },
    "required": ["id", "items"],
    "additionalProperties": False,
    "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]}},
}


def test_a_dict_schema_keeps_the_value_as_json_and_checks_every_keyword() -> None:
    """A value that fits comes back as the same plain JSON value."""
    value = {"id": 1, "code": "ABC", "note": None, "items": [{"n": 1}, {"n": 2.5}], "mode": "a", "version": 2}
    schema = to_schema(RECORD, where=WHERE)
    assert (schema.kind, schema.name, schema.description) == ("JSON schema", "Record", "A record.")
    assert schema.convert({**value, "size": 9, "both": 9.5}) == {**value, "size": 9, "both": 9.5}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": 0}, "at id, expected a number >= 1, got the integer 0"),
        ({"code": "AB"}, "at code, expected a string matching '^[A-Z]{3}$'"),
        ({"note": "toolong"}, "at note, expected at most 5 characters"),
        ({"note": 3}, "at note, expected a string or null, got the integer 3"),
        ({"items": []}, "at items, expected at least 1 items"),
        ({"items": [{"n": 1}, {"n": 1}]}, "at items, expected unique items"),
        ({"items": [{"m": 1}]}, "at items[0], expected the required field 'n'"),
        ({"mode": "c"}, 'at mode, expected one of "a", "b"'),
        ({"version": 2.5}, "at version, expected one of 2"),
        ({"version": True}, "at version, expected one of 2, got true"),
        (
            {"size": 6},
            "at size, expected exactly one of an integer (a multiple of 2) or an integer (a multiple of 3), got the integer 6, which fits several",
        ),
        (
            {"size": 7},
            "at size, expected an integer (a multiple of 2) or an integer (a multiple of 3), got the integer 7",
        ),
        ({"both": 10}, "at both, expected a number < 10"),
        ({"extra": 1}, "at the top level, expected only the fields 'id', 'code'"),
    ],
)
def test_a_dict_schema_refuses_each_broken_keyword_by_path(change: dict[str, Any], message: str) -> None:
    """minimum, pattern, maxLength, type lists, minItems, uniqueItems, $ref, enum, const, oneOf, allOf, extras."""
    value = {"id": 1, "items": [{"n": 1}], **change}
    assert message in str(mismatch(RECORD, value))


def test_a_schema_can_refer_to_its_root_and_to_definitions() -> None:
    """'#' is the schema itself (recursion); '#/definitions/X' works as '#/$defs/X'."""
    nested = {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}}
    assert convert(nested, {"next": {"next": None}}) == {"next": {"next": None}}
    assert "at next.next, expected an object or null, got the integer 1" in str(
        mismatch(nested, {"next": {"next": 1}})
    )
    old = {"properties": {"a": {"$ref": "#/definitions/A"}}, "definitions": {"A": {"type": "integer"}}}
    assert "at a, expected an integer" in str(mismatch(old, {"a": "x"}))


def test_an_anthropic_tool_definition_is_taken_as_a_schema() -> None:
    """{'name', 'description', 'input_schema'} gives the name, description and schema."""
    tool = {"name": "lookup", "description": "Look up.", "input_schema": {"type": "object", "properties": {}}}
    schema = to_schema(tool, where=WHERE)
    assert (schema.name, schema.description, schema.json_schema) == (
        "lookup",
        "Look up.",
        tool["input_schema"],
    )
    assert schema.tool(WHERE) == tool


# -- refused when given ---------------------------------------------------------------------


class Plain:
    name: str


@dataclasses.dataclass
class When:
    at: datetime.date


@dataclasses.dataclass
class Pair:
    pair: tuple[int, str]


@dataclasses.dataclass
class IntKeys:
    counts: dict[int, str]


@dataclasses.dataclass
class Dangling:
    other: Undefined  # type: ignore[name-defined]  # noqa: F821  # on purpose: it does not resolve


@dataclasses.dataclass
class WithInitVar:
    seed: dataclasses.InitVar[int]


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            3,
            "a schema must be a JSON-schema dict, a dataclass, an attrs class, a TypedDict or a pydantic model",
        ),
        (dict, "got dict"),
        (Plain, "got Plain"),
        (When, "When.at has the type datetime.date, which has no JSON schema here; supported: str, int"),
        (IntKeys, "has <class 'int'> keys; JSON object keys are strings"),
        (Dangling, "the annotations of Dangling do not resolve (NameError"),
        (WithInitVar, "WithInitVar.seed is an InitVar"),
        ({"type": "object", "not": {}}, "the JSON-schema keyword(s) 'not' are not supported"),
        ({"type": "text"}, "type must be one of 'object', 'array', 'string'"),
        ({"properties": {"a": {"$ref": "#/$defs/Missing"}}}, "the $ref '#/$defs/Missing' does not resolve"),
        ({"properties": {"a": {"$ref": "https://x/y"}}}, "the $ref 'https://x/y' does not resolve"),
        ({"type": "string", "pattern": "("}, "the pattern '(' is not a regular expression"),
        ({"type": "string", "minLength": -1}, "minLength must be a non-negative integer"),
        ({"type": "array", "items": [{"type": "string"}]}, "items as a list"),
        ({"enum": []}, "enum must be a non-empty list"),
        ({"properties": "x"}, "properties must be an object"),
        ({"properties": {}, "required": "a"}, "required must be a list of strings"),
        ({"properties": {"a": 3}}, ".properties.a: a JSON schema must be a dict or a boolean, got 3"),
    ],
)
def test_a_schema_without_a_converter_is_refused_when_given_naming_the_part(
    schema: Any, message: str
) -> None:
    """Unknown kinds, unsupported field types, unknown keywords, dangling refs: a clear error at once."""
    with pytest.raises(UnsupportedSchemaError) as caught:
        to_schema(schema, where=WHERE)
    assert str(caught.value).startswith(WHERE)
    assert message in str(caught.value)


class Odd(enum.Enum):
    A = (1, 2)


@dataclasses.dataclass
class UsesOdd:
    odd: Odd


@dataclasses.dataclass
class OddLiteral:
    odd: Literal[b"x"]


def test_a_literal_or_enum_value_that_is_not_json_is_refused() -> None:
    """Literal and Enum values must be JSON scalars."""
    with pytest.raises(UnsupportedSchemaError, match=r"the Literal value b'x' is not a JSON string"):
        to_schema(OddLiteral, where=WHERE)
    with pytest.raises(UnsupportedSchemaError, match=r"the enum .*Odd has the value \(1, 2\)"):
        to_schema(UsesOdd, where=WHERE)


def test_a_fixed_length_tuple_is_an_array_of_exactly_its_items() -> None:
    """tuple[int, str] is sent with prefixItems (in words for Claude's format, as the SDK does) and built into a tuple."""
    schema = to_schema(Pair, where=WHERE)
    pair = {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2,
        "maxItems": 2,
    }
    assert schema.json_schema["properties"] == {"pair": pair}
    assert schema.claude_format(WHERE)["schema"]["properties"]["pair"] == {
        "type": "array",
        "description": json.dumps({key: pair[key] for key in ("maxItems", "minItems", "prefixItems")}),
    }
    assert schema.convert({"pair": [1, "a"]}) == Pair((1, "a"))
    with pytest.raises(
        SchemaValidationError, match="at pair, expected an array of exactly 2 items, got an array of 1 item"
    ):
        schema.convert({"pair": [1]})
    with pytest.raises(SchemaValidationError, match=r"at pair\[1\], expected a string, got the integer 2"):
        schema.convert({"pair": [1, 2]})


# -- the forms the schema is sent in --------------------------------------------------------


def test_the_tool_form_names_the_class_and_keeps_its_object_schema() -> None:
    """name, description (the docstring) and input_schema; a dict schema needs a title; the top must be an object."""
    tool = to_schema(Person, where=WHERE).tool(WHERE)
    assert tool["name"] == "Person" and tool["description"] == "A person in the address book."
    without_description = dict(to_schema(Person, where=WHERE).json_schema)
    del without_description["description"]
    assert tool["input_schema"] == without_description
    assert "description" not in to_schema(Address, where=WHERE).tool(WHERE)
    with pytest.raises(UnsupportedSchemaError, match="needs a name: give the JSON schema a 'title'"):
        to_schema({"type": "object"}, where=WHERE).tool(WHERE)
    with pytest.raises(UnsupportedSchemaError, match="this schema's top level is 'array'; wrap the value"):
        to_schema({"title": "L", "type": "array"}, where=WHERE).tool(WHERE)


def test_claudes_format_closes_every_object_and_keeps_only_what_its_structured_output_takes() -> None:
    """additionalProperties false everywhere, type lists as anyOf, other keywords into the description."""
    output_format = to_schema(RECORD, where=WHERE).claude_format(WHERE)
    assert output_format["type"] == "json_schema"
    schema = output_format["schema"]
    assert (
        schema["additionalProperties"] is False and schema["$defs"]["Item"]["additionalProperties"] is False
    )
    properties = schema["properties"]
    assert properties["id"] == {"type": "integer", "description": '{"minimum": 1}'}
    assert properties["note"] == {
        "anyOf": [
            {"type": "string", "description": '{"maxLength": 5}'},
            {"type": "null", "description": '{"maxLength": 5}'},
        ]
    }
    assert properties["items"] == {
        "type": "array",
        "items": {"$ref": "#/$defs/Item"},
        "minItems": 1,
        "description": '{"uniqueItems": true}',
    }
    assert properties["mode"] == {"enum": ["a", "b"]} and properties["version"] == {"const": 2}
    assert properties["size"]["anyOf"][0] == {"type": "integer", "description": '{"multipleOf": 2}'}
    assert schema["required"] == ["id", "items"] and schema["title"] == "Record"
    formats = {
        "type": "object",
        "properties": {
            "at": {"type": "string", "format": "date"},
            "x": {"type": "string", "format": "color"},
        },
    }
    shaped = to_schema(formats, where=WHERE).claude_format(WHERE)["schema"]["properties"]
    assert shaped == {
        "at": {"type": "string", "format": "date"},
        "x": {"type": "string", "description": '{"format": "color"}'},
    }
    old = {
        "type": "object",
        "properties": {"a": {"$ref": "#/definitions/A"}},
        "definitions": {"A": {"type": "integer"}},
    }
    assert to_schema(old, where=WHERE).claude_format(WHERE)["schema"] == {
        "$defs": {"A": {"type": "integer"}},
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A"}},
        "additionalProperties": False,
    }


@dataclasses.dataclass
class FreeForm:
    counts: dict[str, int]


@dataclasses.dataclass
class Anything:
    blob: Any


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            FreeForm,
            "properties.counts: an object with free keys (a dict[str, X], additionalProperties) cannot be asked",
        ),
        (
            Anything,
            "properties.blob: Claude's structured output needs every part of the schema to name a type",
        ),
        ({"title": "T", "type": "object", "properties": {"a": True}}, "got True (any value)"),
    ],
)
def test_a_schema_claudes_structured_output_cannot_express_is_refused_pointing_to_function_calling(
    schema: Any, message: str
) -> None:
    """Free-key maps and untyped parts work as a tool, not as Claude's output format."""
    converted = to_schema(schema, where=WHERE)
    with pytest.raises(UnsupportedSchemaError) as caught:
        converted.claude_format(WHERE)
    assert message in str(caught.value) and "method='function_calling'" in str(caught.value)
    assert converted.tool(WHERE)["input_schema"]["properties"] == converted.json_schema["properties"]


# -- pydantic, when installed -----------------------------------------------------------------


def test_a_pydantic_model_uses_its_own_schema_and_validation() -> None:
    """model_json_schema() is sent; model_validate builds the value; its error names the path."""
    pydantic = pytest.importorskip("pydantic")

    class City(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        name: str

    class Trip(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        """A trip."""

        stops: list[City]

    schema = to_schema(Trip, where=WHERE)
    assert (schema.kind, schema.name, schema.description) == ("pydantic model", "Trip", "A trip.")
    assert schema.json_schema == Trip.model_json_schema()
    assert schema.convert({"stops": [{"name": "Rome"}]}) == Trip(stops=[City(name="Rome")])
    error = mismatch(Trip, {"stops": [{"name": 3}]})
    assert error.path == ("stops", 0, "name")
    assert (
        "at stops[0].name, expected a value pydantic accepts, got the integer 3 (Input should be a valid string)"
        in str(error)
    )
    assert (
        to_schema(Trip, where=WHERE).claude_format(WHERE)["schema"]["$defs"]["City"]["additionalProperties"]
        is False
    )


# -- JsonOutputParser(pydantic_object=...) ----------------------------------------------------


def test_format_instructions_carry_the_json_schema_or_ask_for_plain_json() -> None:
    """With a schema the instructions include its JSON schema; without, they ask for one JSON value."""
    import json

    plain = JsonOutputParser().get_format_instructions()
    assert plain.startswith("Answer with one JSON value and nothing else")
    with_schema = JsonOutputParser(pydantic_object=Address).get_format_instructions()
    assert with_schema.startswith(plain) and with_schema.endswith(
        json.dumps(to_schema(Address, where=WHERE).json_schema)
    )


def test_json_parser_refuses_a_bad_schema_and_patches_of_class_instances_at_construction() -> None:
    """An unknown schema kind, or diff=True with a class schema, is refused when the parser is made."""
    with pytest.raises(
        UnsupportedSchemaError, match=r"JsonOutputParser\(pydantic_object=...\): a schema must be"
    ):
        JsonOutputParser(pydantic_object=Sequence)
    with pytest.raises(
        ValueError, match=r"diff=True\) emits JSON patches, which cannot build a dataclass \(Address\)"
    ):
        JsonOutputParser(diff=True, pydantic_object=Address)
    assert (
        repr(JsonOutputParser(diff=True, pydantic_object=Movie))
        == "JsonOutputParser(diff=True, pydantic_object=Movie)"
    )
