"""Prompts, rillet against langchain-core side by side.

Each case builds the same prompt from either library's classes (``ns`` holds one
library's) and compares what an observer sees: the formatted messages (class name and
content), ``input_variables``, ``optional_variables``, and that a malformed prompt
fails when it is built on both sides. Where rillet differs on purpose, the case says so
in its own test below.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core import messages as lc_messages
from langchain_core import prompts as lc_prompts

import nodes

LC = SimpleNamespace(
    ChatPromptTemplate=lc_prompts.ChatPromptTemplate,
    PromptTemplate=lc_prompts.PromptTemplate,
    MessagesPlaceholder=lc_prompts.MessagesPlaceholder,
    SystemMessagePromptTemplate=lc_prompts.SystemMessagePromptTemplate,
    HumanMessagePromptTemplate=lc_prompts.HumanMessagePromptTemplate,
    AIMessagePromptTemplate=lc_prompts.AIMessagePromptTemplate,
    SystemMessage=lc_messages.SystemMessage,
    HumanMessage=lc_messages.HumanMessage,
    AIMessage=lc_messages.AIMessage,
)
RI = SimpleNamespace(**{name: getattr(nodes, name) for name in vars(LC)})

Build = Callable[[SimpleNamespace], Any]


def _plain(messages: list[Any]) -> list[tuple[str, Any]]:
    return [(type(message).__name__, message.content) for message in messages]


def _on_both(build: Build, values: dict[str, Any]) -> tuple[Any, Any]:
    seen = []
    for ns in (LC, RI):
        prompt = build(ns)
        seen.append(
            (
                list(prompt.input_variables),
                list(getattr(prompt, "optional_variables", [])),
                _plain(prompt.format_messages(**values)),
            )
        )
    return seen[0], seen[1]


CHAT_CASES: dict[str, tuple[Build, dict[str, Any]]] = {
    "tuples": (
        lambda ns: ns.ChatPromptTemplate([("system", "You are {persona}."), ("human", "hi {name}")]),
        {"persona": "terse", "name": "Ann"},
    ),
    "role aliases": (
        lambda ns: ns.ChatPromptTemplate(
            [("user", "{a}"), ("assistant", "{b}"), ("ai", "c"), ("human", "d")]
        ),
        {"a": 1, "b": 2},
    ),
    "dicts": (
        lambda ns: ns.ChatPromptTemplate(
            [{"role": "system", "content": "s {x}"}, {"role": "user", "content": "u {y}"}]
        ),
        {"x": 1, "y": 2},
    ),
    "strings": (lambda ns: ns.ChatPromptTemplate(["hi {x}", "again"]), {"x": 3}),
    "messages are literal": (
        lambda ns: ns.ChatPromptTemplate([ns.SystemMessage("keep {braces}"), ("human", "{q}")]),
        {"q": "?"},
    ),
    "message templates": (
        lambda ns: ns.ChatPromptTemplate(
            [
                ns.SystemMessagePromptTemplate.from_template("s {a}"),
                ns.HumanMessagePromptTemplate.from_template("h {b}"),
                ns.AIMessagePromptTemplate.from_template("a {c}"),
            ]
        ),
        {"a": 1, "b": 2, "c": 3},
    ),
    "placeholders": (
        lambda ns: ns.ChatPromptTemplate(
            [
                ("placeholder", "{opt}"),
                ns.MessagesPlaceholder("history"),
                ns.MessagesPlaceholder("maybe", optional=True),
                ("human", "{q}"),
            ]
        ),
        {"q": "now", "history": [("human", "hi"), ("ai", "yo"), {"role": "user", "content": "d"}, "s"]},
    ),
    "placeholders filled": (
        lambda ns: ns.ChatPromptTemplate(
            [("placeholder", "{opt}"), ns.MessagesPlaceholder("maybe", optional=True), ("human", "x")]
        ),
        {"opt": [("ai", "o")], "maybe": [("system", "m")]},
    ),
    "n_messages": (
        lambda ns: ns.ChatPromptTemplate([ns.MessagesPlaceholder("h", n_messages=1)]),
        {"h": [("ai", "first"), ("ai", "last")]},
    ),
    "list content": (
        lambda ns: ns.ChatPromptTemplate([("human", ["a {x}", {"type": "text", "text": "b {y}"}])]),
        {"x": 1, "y": 2},
    ),
    "from_template": (
        lambda ns: ns.ChatPromptTemplate.from_template("tell me about {topic}"),
        {"topic": "owls"},
    ),
    "from_messages": (
        lambda ns: ns.ChatPromptTemplate.from_messages([("system", "{b} {a}"), ("human", "{c}")]),
        {"a": 1, "b": 2, "c": 3},
    ),
    "format spec": (
        lambda ns: ns.ChatPromptTemplate([("human", "{p:.2f} {n!r} {{lit}}")]),
        {"p": 2, "n": "x"},
    ),
    "partial": (
        lambda ns: ns.ChatPromptTemplate(
            [("system", "{s}"), ("human", "{q}"), ns.MessagesPlaceholder("h")]
        ).partial(s="S", h=[("ai", "earlier")]),
        {"q": "now"},
    ),
    "partial callable, value wins": (
        lambda ns: ns.ChatPromptTemplate([("system", "{s}"), ("human", "{q}")]).partial(s=lambda: "called"),
        {"q": "now", "s": "given"},
    ),
    "partial_variables": (
        lambda ns: ns.ChatPromptTemplate([("human", "{a} {b}")], partial_variables={"a": "A"}),
        {"b": "B"},
    ),
    "add": (
        lambda ns: (
            ns.ChatPromptTemplate([("system", "{s}")])  # noqa: RUF005  # + is what is compared
            + [("human", "{q}"), ("ai", "a")]
            + ns.HumanMessage("m")
            + ns.ChatPromptTemplate([("human", "{t}")])
        ),
        {"s": 1, "q": 2, "t": 3},
    ),
    "mustache": (
        lambda ns: ns.ChatPromptTemplate(
            [
                ("system", "{{#rules}}- {{.}}\n{{/rules}}{{^rules}}none{{/rules}}"),
                ("human", "{{user.name}} says {{{raw}}} {{esc}} {single}"),
            ],
            template_format="mustache",
        ),
        {"rules": ["a", "b"], "user": {"name": "Ann"}, "raw": "<b>", "esc": "<i>&"},
    ),
    "mustache missing": (
        lambda ns: ns.ChatPromptTemplate([("human", "[{{x}}]{{^f}}no f{{/f}}")], template_format="mustache"),
        {},
    ),
}


@pytest.mark.parametrize("name", list(CHAT_CASES))
def test_chat_prompt_formats_as_langchain_core(name: str) -> None:
    """The same chat prompt gives the same messages and variables on both libraries."""
    build, values = CHAT_CASES[name]
    lc, ri = _on_both(build, values)
    assert ri == lc


STRING_CASES: dict[str, tuple[Build, dict[str, Any]]] = {
    "plain": (lambda ns: ns.PromptTemplate.from_template("{b} and {a}"), {"a": 1, "b": 2}),
    "partial": (lambda ns: ns.PromptTemplate.from_template("{a} and {b}").partial(a="A"), {"b": "B"}),
    "partial_variables": (
        lambda ns: ns.PromptTemplate.from_template("{a}{b}", partial_variables={"a": lambda: "L"}),
        {"b": 1},
    ),
    "constructor": (
        lambda ns: ns.PromptTemplate(template="{a}-{b}", input_variables=["a", "b"]),
        {"a": 1, "b": 2},
    ),
    "mustache": (
        lambda ns: ns.PromptTemplate.from_template(
            "{{#items}}* {{name}}\n{{/items}}  {{! note }}\n{{a.b}}", template_format="mustache"
        ),
        {"items": [{"name": "x"}, {"name": "y"}], "a": {"b": '"q"'}},
    ),
}


@pytest.mark.parametrize("name", list(STRING_CASES))
def test_string_prompt_formats_as_langchain_core(name: str) -> None:
    """The same string prompt gives the same text and input_variables on both libraries."""
    build, values = STRING_CASES[name]
    seen = [(list(p.input_variables), p.format(**values)) for p in (build(LC), build(RI))]
    assert seen[1] == seen[0]


MESSAGE_TEMPLATE_CASES: dict[str, Build] = {
    "system": lambda ns: ns.SystemMessagePromptTemplate.from_template("be {mood}"),
    "human": lambda ns: ns.HumanMessagePromptTemplate.from_template("hi {mood}"),
    "ai": lambda ns: ns.AIMessagePromptTemplate.from_template("{mood}!"),
    "prompt": lambda ns: ns.HumanMessagePromptTemplate(prompt=ns.PromptTemplate.from_template("{mood}?")),
}


@pytest.mark.parametrize("name", list(MESSAGE_TEMPLATE_CASES))
def test_message_templates_format_as_langchain_core(name: str) -> None:
    """A message template formats to the same message and has the same variables on both."""
    seen = []
    for ns in (LC, RI):
        template = MESSAGE_TEMPLATE_CASES[name](ns)
        seen.append(
            (
                template.input_variables,
                _plain([template.format(mood="calm")]),
                _plain(template.format_messages(mood="calm")),
                template.prompt.template,
            )
        )
    assert seen[1] == seen[0]


BAD_CASES: dict[str, Build] = {
    "unknown role": lambda ns: ns.ChatPromptTemplate([("robot", "hi")]),
    "tool role": lambda ns: ns.ChatPromptTemplate([("tool", "hi")]),
    "open brace": lambda ns: ns.ChatPromptTemplate([("human", "hi {")]),
    "close brace": lambda ns: ns.ChatPromptTemplate([("human", "hi }")]),
    "positional": lambda ns: ns.ChatPromptTemplate([("human", "{0}")]),
    "attribute": lambda ns: ns.ChatPromptTemplate([("human", "{a.b}")]),
    "not an entry": lambda ns: ns.ChatPromptTemplate([42]),
    "short tuple": lambda ns: ns.ChatPromptTemplate([("human",)]),
    "long tuple": lambda ns: ns.ChatPromptTemplate([("human", "a", "b")]),
    "template type": lambda ns: ns.ChatPromptTemplate([("human", 5)]),
    "dict keys": lambda ns: ns.ChatPromptTemplate([{"content": "hi"}]),
    "dict role": lambda ns: ns.ChatPromptTemplate([{"role": "robot", "content": "hi"}]),
    "placeholder without braces": lambda ns: ns.ChatPromptTemplate([("placeholder", "history")]),
    "format": lambda ns: ns.ChatPromptTemplate([("human", "x")], template_format="bogus"),
    "mustache unclosed section": lambda ns: ns.PromptTemplate.from_template(
        "{{#a}}x", template_format="mustache"
    ),
    "mustache stray end": lambda ns: ns.PromptTemplate.from_template("{{/a}}", template_format="mustache"),
    "string template braces": lambda ns: ns.PromptTemplate.from_template("{a"),
}


@pytest.mark.parametrize("name", list(BAD_CASES))
def test_malformed_prompts_fail_at_construction_on_both(name: str) -> None:
    """A malformed prompt raises while it is built, on langchain-core and on rillet alike."""
    for ns in (LC, RI):
        with pytest.raises(
            (ValueError, TypeError, NotImplementedError, SyntaxError)
        ):  # types differ a little
            BAD_CASES[name](ns)


def test_missing_variables_raise_key_errors_on_both() -> None:
    """A missing template variable or required placeholder is a KeyError on both libraries."""
    for ns in (LC, RI):
        prompt = ns.ChatPromptTemplate([ns.MessagesPlaceholder("history"), ("human", "{q}")])
        with pytest.raises(KeyError, match="history"):
            prompt.format_messages(q="x")
        with pytest.raises(KeyError, match="q"):
            prompt.format_messages(history=[])
        with pytest.raises(KeyError, match="b"):
            ns.PromptTemplate.from_template("{a}{b}").format(a=1)


def test_invoke_gives_the_same_prompt_value() -> None:
    """invoke gives a prompt value with the same messages and string form on both libraries."""
    seen = []
    for ns in (LC, RI):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ns.ChatPromptTemplate([("system", "be {m}"), ("human", "{q}")]).invoke(
                {"m": "kind", "q": "hi"}
            )
        seen.append((_plain(value.to_messages()), value.to_string()))
    assert seen[1] == seen[0]


# -- named differences --------------------------------------------------------------------------


def test_differences_rillet_refuses_what_langchain_core_accepts() -> None:
    """Where langchain-core accepts silently, rillet refuses with a clear error (documented in docs/porting.md)."""
    # An empty chat prompt, a placeholder with two variables, a partial of an unknown name,
    # input_variables that do not match the template, a pair added with +, a placeholder
    # given a string.
    lc_empty = LC.ChatPromptTemplate([])
    assert lc_empty.format_messages() == []
    with pytest.raises(ValueError, match="at least one message"):
        RI.ChatPromptTemplate([])
    assert LC.ChatPromptTemplate([("placeholder", "{a} {b}")]).input_variables == []
    with pytest.raises(ValueError, match="placeholder must be written"):
        RI.ChatPromptTemplate([("placeholder", "{a} {b}")])
    assert LC.PromptTemplate.from_template("{a}").partial(typo=1).input_variables == ["a"]
    with pytest.raises(ValueError, match="typo"):
        RI.PromptTemplate.from_template("{a}").partial(typo=1)
    assert LC.ChatPromptTemplate([("human", "{a}{b}")], input_variables=["a"]).input_variables == ["a", "b"]
    with pytest.raises(ValueError, match="input_variables"):
        RI.ChatPromptTemplate([("human", "{a}{b}")], input_variables=["a"])
    # A pair added to a chat prompt: langchain-core adds each of its items as a message.
    lc_added = (LC.ChatPromptTemplate([("system", "s")]) + ("human", "{q}")).format_messages(q=1)  # noqa: RUF005  # + is tested
    assert _plain(lc_added) == [("SystemMessage", "s"), ("HumanMessage", "human"), ("HumanMessage", "1")]
    ri_added = (RI.ChatPromptTemplate([("system", "s")]) + ("human", "{q}")).format_messages(q=1)  # noqa: RUF005  # + is tested
    assert _plain(ri_added) == [("SystemMessage", "s"), ("HumanMessage", "1")]
    with pytest.raises(ValueError, match="list of base messages"):
        LC.MessagesPlaceholder("h").format_messages(h="text")
    with pytest.raises(TypeError, match="list of messages"):
        RI.MessagesPlaceholder("h").format_messages(h="text")


@pytest.mark.skipif(importlib.util.find_spec("jinja2") is None, reason="jinja2 is not installed")
def test_jinja2_formats_as_langchain_core() -> None:
    """With jinja2 installed, a jinja2 chat prompt formats the same on both libraries."""
    template = "{% for rule in rules %}- {{ rule }}\n{% endfor %}{{ user.name }} {{ missing }}!"

    def build(ns: SimpleNamespace) -> Any:
        return ns.ChatPromptTemplate([("system", template), ("human", "{{ q }}")], template_format="jinja2")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # langchain-core warns that jinja2 templates are unsafe
        lc, ri = _on_both(build, {"rules": ["a", "b"], "user": {"name": "Ann"}, "q": "hi"})
    assert ri == lc
