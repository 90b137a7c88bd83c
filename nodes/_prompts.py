"""Prompt templates: aggregate steps that turn a dict of variables into a prompt value.

A template cannot work on a partial dict, so it aggregates its input (the one-key
chunks of a parallel step add up to the whole dict) and then formats. Templates are
parsed when they are built (``_template_formats``: f-string by default, mustache, or
jinja2 when installed), so a malformed one fails there, not in the run.

This module holds the string template and what every template shares;
``_message_templates`` the per-message templates and ``_chat_prompt`` the chat prompt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, ClassVar, Self

import attrs

from engine import AggregateNode, Step

from ._prompt_values import PromptValue, StringPromptValue
from ._template_formats import ParsedTemplate, TemplateFormat, parse_template, to_template_format

__all__ = (
    "PromptTemplate",
    "PromptVariableError",
    "check_declared",
    "format_parsed",
    "resolve_partials",
    "to_partials",
)


class PromptVariableError(KeyError):
    """A prompt template was formatted without one of its variables."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "missing prompt variable"


def to_partials(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """``partial_variables`` as a new dict."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise TypeError(f"partial_variables must be a dict of str keys, got {value!r}")
    return dict(value)


def resolve_partials(partials: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values to format with: the partial ones (a zero-argument callable is called
    now) under the given ones, which win."""
    merged = {
        key: value() if callable(value) else value for key, value in partials.items() if key not in values
    }
    merged.update(values)
    return merged


def format_parsed(parsed: ParsedTemplate, values: Mapping[str, Any], owner: str) -> str:
    """Render ``parsed`` with ``values``.

    Raises:
        PromptVariableError: If an f-string template misses variables, naming them, the
            template and ``owner``.
    """
    if parsed.strict:
        missing = [name for name in parsed.variables if name not in values]
        if missing:
            raise PromptVariableError(
                f"{owner} is missing variable(s) {', '.join(map(repr, missing))} for template "
                f"{parsed.template!r}; it got {sorted(values) or 'no variables'}"
            )
    return parsed.render(values)


def check_declared(owner: str, declared: Iterable[str] | None, required: list[str], known: set[str]) -> None:
    """Check the ``input_variables`` a user declared against those the template has.

    Raises:
        ValueError: If the declared list misses a variable the template needs, or names
            one it does not have.
    """
    if declared is None:
        return
    if isinstance(declared, str):
        raise TypeError(f"{owner}: input_variables must be a list of names, got the string {declared!r}")
    given = set(declared)
    missing, unknown = sorted(set(required) - given), sorted(given - known)
    if missing or unknown:
        raise ValueError(
            f"{owner}: input_variables={sorted(given)} does not match the template, whose "
            f"variables are {required}" + (f" (unknown: {unknown})" if unknown else "")
        )


class _Template(AggregateNode[Any, PromptValue]):
    kind: ClassVar[str] = "prompt"
    reads_current_step: ClassVar[bool] = False

    partial_variables: dict[str, Any]

    @property
    def input_variables(self) -> list[str]:
        """The variables formatting needs, sorted (the partial ones left out)."""
        raise NotImplementedError

    @property
    def optional_variables(self) -> list[str]:
        """The variables formatting may be given (optional message placeholders), sorted."""
        return []

    def _with_partials(self, partials: dict[str, Any]) -> Self:
        raise NotImplementedError

    def partial(self, **values: Any) -> Self:
        """A copy with some variables filled in: ``prompt.partial(date=lambda: today())``.

        A value may be a zero-argument callable, called each time the prompt is
        formatted. The returned template's ``input_variables`` leave them out; a value
        given when formatting still wins.

        Raises:
            ValueError: For a name that is none of the template's variables.
        """
        known = {*self.input_variables, *self.optional_variables, *self.partial_variables}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{self.get_name()}.partial: {unknown} are not variables of the template; "
                f"its variables are {sorted(known)}"
            )
        return self._with_partials({**self.partial_variables, **values})

    def _values(self, value: Any) -> Mapping[str, Any]:
        if isinstance(value, Mapping):
            return value
        variables = self.input_variables
        if len(variables) == 1:
            # As in the guide's retrieval chain: a bare value fills a one-variable template.
            return {variables[0]: value}
        raise TypeError(
            f"{self.get_name()} needs a dict with the variables {list(variables)}, "
            f"got {type(value).__name__}: {value!r}"
        )

    def format_prompt(self, **values: Any) -> PromptValue:
        """Format the template with ``values``.

        Raises:
            PromptVariableError: Naming each missing variable and the template.
        """
        raise NotImplementedError

    def format(self, **values: Any) -> str:
        """The formatted prompt as one string.

        Raises:
            PromptVariableError: Naming each missing variable and the template.
        """
        return self.format_prompt(**values).to_string()

    async def compute(self, value: Any, step: Step) -> AsyncIterator[PromptValue]:
        """Format the prompt from the input dict (or a bare value for a one-variable prompt)."""
        yield self.format_prompt(**self._values(value))


@attrs.frozen(eq=False, repr=False, init=False)
class PromptTemplate(_Template):
    """A string prompt: ``PromptTemplate.from_template("tell me about {topic}")``.

    Attributes:
        template: The template text.
        template_format: ``"f-string"`` (the default), ``"mustache"`` or ``"jinja2"``.
        partial_variables: Variables filled in ahead (values, or zero-argument callables).
    """

    template: str
    template_format: TemplateFormat
    partial_variables: dict[str, Any]
    _parsed: ParsedTemplate = attrs.field(init=False)

    def __init__(
        self,
        template: str,
        *,
        template_format: str = "f-string",
        partial_variables: Mapping[str, Any] | None = None,
        input_variables: Iterable[str] | None = None,
    ) -> None:
        """Parse ``template``.

        ``input_variables`` is optional (the template's variables are found in it); when
        given, as in langchain-core code, it must agree with the template.

        Raises:
            ValueError: For a malformed template, an unknown format, or
                ``input_variables`` that do not match.
            TypeError: If ``template`` is not a string.
            ImportError: For a jinja2 template when jinja2 is not installed.
        """
        parsed = parse_template(template, template_format)
        partials = to_partials(partial_variables)
        self.__attrs_init__(template, to_template_format(template_format), partials)
        object.__setattr__(self, "_parsed", parsed)
        known = {*parsed.variables, *partials}
        check_declared("PromptTemplate", input_variables, self.input_variables, known)

    @classmethod
    def from_template(
        cls,
        template: str,
        *,
        template_format: str = "f-string",
        partial_variables: Mapping[str, Any] | None = None,
    ) -> PromptTemplate:
        """Build a template, finding its variables.

        Raises:
            ValueError: For a malformed template (unbalanced braces, odd placeholders)
                or an unknown format.
            TypeError: If ``template`` is not a string.
            ImportError: For a jinja2 template when jinja2 is not installed.
        """
        return cls(template, template_format=template_format, partial_variables=partial_variables)

    @property
    def input_variables(self) -> list[str]:
        """The variables formatting needs, sorted (the partial ones left out)."""
        return [name for name in self._parsed.variables if name not in self.partial_variables]

    def _with_partials(self, partials: dict[str, Any]) -> Self:
        return type(self)(self.template, template_format=self.template_format, partial_variables=partials)

    def format_prompt(self, **values: Any) -> StringPromptValue:
        """Format the template with ``values`` (extra ones are ignored).

        Raises:
            PromptVariableError: Naming each missing variable and the template.
        """
        merged = resolve_partials(self.partial_variables, values)
        return StringPromptValue(format_parsed(self._parsed, merged, self.get_name()))

    def __repr__(self) -> str:
        extra = (
            ""
            if self.template_format is TemplateFormat.F_STRING
            else f", template_format={str(self.template_format)!r}"
        )
        if self.partial_variables:
            extra += f", partial_variables={self.partial_variables!r}"
        return f"PromptTemplate(template={self.template!r}{extra})"
