"""The template languages a prompt may be written in: f-string, mustache and jinja2.

Each template is parsed once, when the prompt is built (so a malformed one fails there),
into a :class:`ParsedTemplate`: the variables it reads and how to render it.

* ``"f-string"`` (the default): ``{name}`` placeholders, with a format spec or conversion
  if wanted (``{price:.2f}``, ``{x!r}``); ``{{``/``}}`` are literal braces. Names must be
  plain identifiers: no positional ``{0}``, no ``{a.b}`` or ``{a[0]}``. Every variable
  is required.
* ``"mustache"``: the subset in ``_mustache``; a missing variable renders as nothing.
* ``"jinja2"``: rendered in jinja2's sandbox, when jinja2 is installed (it is imported
  only for a jinja2 template); an undefined variable renders as nothing.
"""

from __future__ import annotations

import enum
import importlib
import string
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._mustache import parse_mustache

__all__ = ("ParsedTemplate", "TemplateFormat", "parse_template", "to_template_format")


class TemplateFormat(enum.StrEnum):
    """The template languages."""

    F_STRING = "f-string"
    MUSTACHE = "mustache"
    JINJA2 = "jinja2"


def to_template_format(value: str | TemplateFormat) -> TemplateFormat:
    """``value`` as a :class:`TemplateFormat`.

    Raises:
        ValueError: For another value, naming the supported ones.
    """
    try:
        return TemplateFormat(value)
    except ValueError:
        raise ValueError(
            f"unsupported template_format {value!r}; use 'f-string', 'mustache' or 'jinja2'"
        ) from None


@attrs.frozen
class ParsedTemplate:
    """A template ready to render.

    Attributes:
        template: The source text.
        format: Its language.
        variables: The (top-level) variables it reads, sorted.
        strict: Whether every variable must be given (f-strings); mustache and jinja2
            render a missing one as nothing.
        render: Fills the template from a mapping of values.
    """

    template: str
    format: TemplateFormat
    variables: tuple[str, ...]
    strict: bool
    render: Callable[[Mapping[str, Any]], str] = attrs.field(eq=False, repr=False)


def _f_string(template: str) -> ParsedTemplate:
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"invalid prompt template {template!r}: {exc}") from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(
                f"invalid placeholder {{{field}}} in prompt template {template!r}: "
                "use {name} with a plain name (no position, '.' or '[]'), and {{ }} for literal braces"
            )
        names.add(field)

    def render(values: Mapping[str, Any]) -> str:
        return template.format_map({name: values[name] for name in names})

    return ParsedTemplate(template, TemplateFormat.F_STRING, tuple(sorted(names)), True, render)


def _mustache(template: str) -> ParsedTemplate:
    parsed = parse_mustache(template)
    return ParsedTemplate(template, TemplateFormat.MUSTACHE, parsed.variables, False, parsed.render)


def _jinja2(template: str) -> ParsedTemplate:
    try:
        # Imported by name: jinja2 is optional, and only a jinja2 template needs it.
        jinja2 = importlib.import_module("jinja2")
        sandbox = importlib.import_module("jinja2.sandbox")
        meta = importlib.import_module("jinja2.meta")
    except ImportError:
        raise ImportError(
            "template_format='jinja2' needs jinja2, which is not installed: pip install jinja2"
        ) from None
    environment = sandbox.SandboxedEnvironment()
    try:
        names = meta.find_undeclared_variables(environment.parse(template))
        compiled = environment.from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid jinja2 template {template!r}: {exc}") from None

    def render(values: Mapping[str, Any]) -> str:
        return str(compiled.render(**values))

    return ParsedTemplate(template, TemplateFormat.JINJA2, tuple(sorted(names)), False, render)


_PARSERS: dict[TemplateFormat, Callable[[str], ParsedTemplate]] = {
    TemplateFormat.F_STRING: _f_string,
    TemplateFormat.MUSTACHE: _mustache,
    TemplateFormat.JINJA2: _jinja2,
}


def parse_template(template: object, template_format: str | TemplateFormat) -> ParsedTemplate:
    """Parse ``template`` in its language.

    Raises:
        TypeError: If ``template`` is not a string.
        ValueError: For a malformed template or an unknown format.
        ImportError: For a jinja2 template when jinja2 is not installed.
    """
    if not isinstance(template, str):
        raise TypeError(f"a prompt template must be a string, got {type(template).__name__}: {template!r}")
    return _PARSERS[to_template_format(template_format)](template)
