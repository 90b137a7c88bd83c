"""A small mustache: the subset of the spec prompts use, with no dependency.

Supported: ``{{name}}`` (HTML-escaped, as the spec and langchain-core's mustache do),
``{{{name}}}`` and ``{{& name}}`` (unescaped), dotted names (``{{user.name}}``, read from
dicts or attributes), ``{{.}}`` (the current item), sections ``{{#name}}...{{/name}}``
(rendered once for a truthy value, once per item of a list, with a dict or object pushed
as the context) and inverted sections ``{{^name}}...{{/name}}`` (rendered when the value
is missing, falsy or an empty list), and comments ``{{! ... }}``. A tag alone on its
line (a section, inverted section, end or comment) takes its line with it, as the spec
says. A missing name renders as nothing.

Not supported, and refused when the template is built: partials (``{{> name}}``) and
changing the delimiters (``{{=<% %>=}}``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

__all__ = ("MustacheTemplate", "parse_mustache")

_TAG: Final = re.compile(r"\{\{(\{[^}]*\}|[^}]*)\}\}")
_STANDALONE: Final = frozenset("#^/!")
_NAME: Final = re.compile(r"^(\.|[A-Za-z_][\w-]*(\.[A-Za-z_0-9][\w-]*)*)$")
_MISSING: Final = object()


@attrs.frozen
class _Text:
    text: str


@attrs.frozen
class _Variable:
    name: str
    escape: bool


@attrs.frozen
class _Section:
    name: str
    inverted: bool
    body: tuple[_Node, ...]


_Node = _Text | _Variable | _Section


@attrs.frozen
class MustacheTemplate:
    """A parsed template.

    Attributes:
        nodes: The parsed template.
        variables: The top-level names it reads (for dotted names, the first part),
            sorted; names read inside a section are not counted, as they may come from
            the section's value.
    """

    nodes: tuple[_Node, ...]
    variables: tuple[str, ...]

    def render(self, values: Mapping[str, Any]) -> str:
        """The template filled in from ``values``."""
        out: list[str] = []
        _render(self.nodes, [values], out)
        return "".join(out)


def _error(template: str, offset: int, problem: str) -> ValueError:
    line = template.count("\n", 0, offset) + 1
    return ValueError(f"invalid mustache template {template!r}: {problem} (line {line})")


def _tokens(template: str) -> list[tuple[str, str, int]]:
    """The template as ``(kind, text, offset)`` tokens, standalone tag lines trimmed."""
    tokens: list[tuple[str, str, int]] = []
    position = 0
    for match in _TAG.finditer(template):
        start, end = match.span()
        body = match.group(1)
        kind = body[:1] if body[:1] in "#^/!&{>=" else ""
        if kind in _STANDALONE:
            line_start = template.rfind("\n", 0, start) + 1
            line_end = template.find("\n", end)
            line_end = len(template) if line_end == -1 else line_end + 1
            before, after = template[line_start:start], template[end:line_end]
            if not before.strip() and not after.strip() and line_start >= position:
                tokens.append(("text", template[position:line_start], position))
                tokens.append((kind, body, start))
                position = line_end
                continue
        tokens.append(("text", template[position:start], position))
        tokens.append((kind, body, start))
        position = end
    rest = template[position:]
    if "{{" in rest:
        raise _error(template, position + rest.index("{{"), "a tag opened with '{{' is never closed")
    tokens.append(("text", rest, position))
    return tokens


def _name(template: str, offset: int, raw: str) -> str:
    name = raw.strip()
    if not _NAME.match(name):
        raise _error(template, offset, f"{{{{{raw}}}}} is not a name (use letters, digits, '_' and dots)")
    return name


def parse_mustache(template: str) -> MustacheTemplate:
    """Parse ``template``.

    Raises:
        ValueError: For an unclosed tag or section, an end tag that closes nothing or
            another section, a malformed name, or an unsupported tag (partials,
            delimiter changes), naming the tag and its line.
    """
    stack: list[tuple[str, bool, int, list[_Node]]] = [("", False, 0, [])]
    top: set[str] = set()
    for kind, body, offset in _tokens(template):
        current = stack[-1][3]
        if kind == "text":
            if body:
                current.append(_Text(body))
        elif kind == "!":
            continue
        elif kind in (">", "="):
            what = "partials" if kind == ">" else "changing delimiters"
            raise _error(template, offset, f"{{{{{body}}}}}: {what} are not supported")
        elif kind in ("#", "^"):
            name = _name(template, offset, body[1:])
            if len(stack) == 1:
                top.add(name.split(".")[0])
            stack.append((name, kind == "^", offset, []))
        elif kind == "/":
            name = _name(template, offset, body[1:])
            opened, inverted, _, children = stack[-1]
            if len(stack) == 1 or opened != name:
                expected = f"the open section is {opened!r}" if len(stack) > 1 else "no section is open"
                raise _error(template, offset, f"{{{{/{name}}}}} closes nothing ({expected})")
            stack.pop()
            stack[-1][3].append(_Section(name, inverted, tuple(children)))
        else:
            raw = body[1:-1] if kind == "{" else body[1:] if kind == "&" else body
            if kind == "{" and not body.endswith("}"):
                raise _error(template, offset, f"{{{{{body}}}}} needs a closing '}}}}}}'")
            name = _name(template, offset, raw)
            if len(stack) == 1 and name != ".":
                top.add(name.split(".")[0])
            current.append(_Variable(name, escape=kind == ""))
    if len(stack) > 1:
        name, _, offset, _ = stack[-1]
        raise _error(template, offset, f"the section {{{{#{name}}}}} is never closed")
    return MustacheTemplate(tuple(stack[0][3]), tuple(sorted(top)))


def _step(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(key, _MISSING)
    return getattr(value, key, _MISSING)


def _lookup(name: str, contexts: list[Any]) -> Any:
    if name == ".":
        return contexts[-1]
    first, *rest = name.split(".")
    for context in reversed(contexts):
        value = _step(context, first)
        if value is not _MISSING:
            break
    else:
        return _MISSING
    for key in rest:
        value = _step(value, key)
        if value is _MISSING:
            return _MISSING
    return value


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _falsy(value: Any) -> bool:
    return value is _MISSING or value is None or value is False or value == 0 or value in ("", [], ())


def _render(nodes: tuple[_Node, ...], contexts: list[Any], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Variable):
            value = _lookup(node.name, contexts)
            if value is _MISSING or value is None:
                continue
            text = str(value)
            out.append(_escape(text) if node.escape else text)
        else:
            value = _lookup(node.name, contexts)
            if node.inverted:
                if _falsy(value):
                    _render(node.body, contexts, out)
            elif not _falsy(value):
                items: Sequence[Any] = value if isinstance(value, list | tuple) else [value]
                for item in items:
                    _render(node.body, [*contexts, item], out)
