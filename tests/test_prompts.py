"""Prompts: the list forms of ChatPromptTemplate, message templates, partials, placeholders and
template formats (f-string, mustache, jinja2), each checked when the prompt is built.

langchain-core behaviour is compared side by side in tests/test_prompts_parity.py.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import pytest

from engine import ConfigurableField, Runnable
from nodes import (
    AIMessage,
    AIMessagePromptTemplate,
    BaseMessagePromptTemplate,
    ChatPromptTemplate,
    ChatPromptValue,
    HumanMessage,
    HumanMessagePromptTemplate,
    MessagesPlaceholder,
    PromptTemplate,
    PromptVariableError,
    ScriptedChatModel,
    StringPromptValue,
    StrOutputParser,
    SystemMessage,
    SystemMessagePromptTemplate,
    ToolMessage,
)

HAS_JINJA2 = importlib.util.find_spec("jinja2") is not None

# -- the list forms ------------------------------------------------------------------------


async def test_a_list_of_tuples_runs_in_a_chain() -> None:
    """ChatPromptTemplate([("human", "hi {name}")]) formats inside a run (issue 17's failure)."""
    model = ScriptedChatModel(replies=["hello"])
    chain = ChatPromptTemplate([("system", "be {mood}"), ("human", "hi {name}")]) | model | StrOutputParser()
    assert await chain.ainvoke({"mood": "kind", "name": "Ann"}) == "hello"
    assert model.received[0] == [SystemMessage("be kind"), HumanMessage("hi Ann")]


async def test_dict_entries_run_in_a_chain() -> None:
    """{"role": ..., "content": ...} entries are templates too, and format inside a run."""
    prompt = ChatPromptTemplate(
        [{"role": "user", "content": "hi {name}"}, {"role": "assistant", "content": "ok"}]
    )
    value = await prompt.ainvoke({"name": "Bo"})
    assert value == ChatPromptValue([HumanMessage("hi Bo"), AIMessage("ok")])


def test_every_entry_form_formats() -> None:
    """Pairs, dicts, strings, messages, message templates, placeholders and nested prompts mix."""
    inner = ChatPromptTemplate([("ai", "inner {x}")])
    prompt = ChatPromptTemplate(
        messages=[
            ("system", "sys {x}"),
            {"role": "human", "content": "dict {x}"},
            "plain {x}",
            SystemMessage("literal {x}"),
            HumanMessagePromptTemplate.from_template("tmpl {x}"),
            MessagesPlaceholder("history"),
            ("placeholder", "{extra}"),
            inner,
        ]
    )
    assert prompt.input_variables == ["history", "x"]
    assert prompt.optional_variables == ["extra"]
    messages = prompt.format_messages(x=1, history=[("ai", "h")])
    assert messages == [
        SystemMessage("sys 1"),
        HumanMessage("dict 1"),
        HumanMessage("plain 1"),
        SystemMessage("literal {x}"),
        HumanMessage("tmpl 1"),
        AIMessage("h"),
        AIMessage("inner 1"),
    ]
    assert ChatPromptTemplate.from_messages([("user", "u"), ("assistant", "a")]).format_messages() == [
        HumanMessage("u"),
        AIMessage("a"),
    ]


def test_a_message_template_class_may_stand_for_the_role() -> None:
    """(SystemMessagePromptTemplate, "text") is a system message template."""
    prompt = ChatPromptTemplate([(SystemMessagePromptTemplate, "be {mood}")])
    assert prompt.format_messages(mood="brief") == [SystemMessage("be brief")]


def test_list_content_becomes_text_blocks() -> None:
    """A list template gives list content: strings and text blocks are templates, other blocks kept."""
    image = {"type": "image", "source": {"type": "url", "url": "https://x/{not_a_var}.png"}}
    prompt = ChatPromptTemplate(
        [
            (
                "human",
                [
                    "look at {thing}",
                    image,
                    {"type": "text", "text": "and {other}", "cache_control": {"type": "ephemeral"}},
                ],
            )
        ]
    )
    assert prompt.input_variables == ["other", "thing"]
    (message,) = prompt.format_messages(thing="this", other="that")
    assert message == HumanMessage(
        [
            {"type": "text", "text": "look at this"},
            image,
            {"type": "text", "text": "and that", "cache_control": {"type": "ephemeral"}},
        ]
    )


def test_input_variables_are_sorted_and_unique() -> None:
    """input_variables is the sorted list of the variables every entry needs, each once."""
    prompt = ChatPromptTemplate([("system", "{b} {a}"), ("human", "{a} {c}")])
    assert prompt.input_variables == ["a", "b", "c"]
    assert prompt.optional_variables == []
    assert prompt.partial_variables == {}


# -- errors at construction -----------------------------------------------------------------

BAD_ENTRIES = [
    ([("robot", "hi")], ValueError, r"entry 0 .*unknown role 'robot'"),
    ([("human", "ok"), ("tool", "hi")], ValueError, r"entry 1 .*'tool'.*ToolMessage"),
    ([("human", "unbalanced {")], ValueError, r"entry 0 .*invalid prompt template"),
    ([("human", "a }")], ValueError, r"entry 0 .*Single '\}'"),
    ([("human", "{0}")], ValueError, r"entry 0 .*invalid placeholder \{0\}"),
    ([("human", "{a.b}")], ValueError, r"entry 0 .*invalid placeholder \{a\.b\}"),
    ([42], TypeError, r"entry 0 \(int 42\): expected"),
    ([("human", "x"), ("human",)], ValueError, r"entry 1 .*pair, got 1 items"),
    ([("human", "a", "b")], ValueError, r"entry 0 .*pair, got 3 items"),
    ([("human", 5)], TypeError, r"entry 0 .*template must be a string"),
    ([(1, "hi")], TypeError, r"entry 0 .*role must be a str"),
    ([{"content": "hi"}], ValueError, r"entry 0 .*exactly the keys 'role' and 'content'"),
    ([{"role": "human", "content": "hi", "name": "x"}], ValueError, r"entry 0 .*exactly the keys"),
    ([("placeholder", "history")], ValueError, r"entry 0 .*placeholder must be written '\{name\}'"),
    ([("placeholder", "{a} {b}")], ValueError, r"entry 0 .*placeholder must be written"),
    ([("placeholder", "{{a}}")], ValueError, r"entry 0 .*placeholder must be written"),
    ([("human", "ok"), ("placeholder", 3)], TypeError, r"entry 1 .*placeholder is written"),
    ([], ValueError, "at least one message"),
]


@pytest.mark.parametrize(("entries", "error", "match"), BAD_ENTRIES)
def test_a_bad_entry_fails_at_construction_naming_it(
    entries: list[Any], error: type[Exception], match: str
) -> None:
    """Each malformed entry raises when the prompt is built, naming its position and problem."""
    with pytest.raises(error, match=match):
        ChatPromptTemplate(entries)
    with pytest.raises(error, match=match):
        ChatPromptTemplate.from_messages(entries)


def test_a_string_or_dict_is_not_a_list_of_entries() -> None:
    """ChatPromptTemplate("text") is refused (it would be one entry per character)."""
    with pytest.raises(TypeError, match="from_template"):
        ChatPromptTemplate("hi {x}")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of entries"):
        ChatPromptTemplate({"role": "human", "content": "x"})  # type: ignore[arg-type]


def test_declared_input_variables_must_match() -> None:
    """input_variables given as in langchain-core code is checked against the template."""
    assert ChatPromptTemplate([("human", "{a}{b}")], input_variables=["b", "a"]).input_variables == ["a", "b"]
    with pytest.raises(ValueError, match=r"input_variables=\['a'\].*\['a', 'b'\]"):
        ChatPromptTemplate([("human", "{a}{b}")], input_variables=["a"])
    with pytest.raises(ValueError, match=r"unknown: \['z'\]"):
        PromptTemplate("{a}", input_variables=["a", "z"])
    assert PromptTemplate(template="{a} {b}", input_variables=["a", "b"]).format(a=1, b=2) == "1 2"


def test_an_unknown_template_format_is_refused() -> None:
    """template_format other than f-string, mustache or jinja2 fails naming the three."""
    with pytest.raises(ValueError, match=r"'bogus'.*'f-string', 'mustache' or 'jinja2'"):
        ChatPromptTemplate([("human", "x")], template_format="bogus")
    with pytest.raises(ValueError, match="bogus"):
        PromptTemplate.from_template("x", template_format="bogus")


# -- message templates ------------------------------------------------------------------------


def test_message_templates_format_on_their_own() -> None:
    """System/Human/AI message templates format to their message, and are not runnables."""
    human = HumanMessagePromptTemplate.from_template("hi {name}")
    assert human.format(name="Ann") == HumanMessage("hi Ann")
    assert human.format_messages(name="Ann") == [HumanMessage("hi Ann")]
    assert human.input_variables == ["name"]
    assert isinstance(human.prompt, PromptTemplate)
    assert human.prompt.template == "hi {name}"
    assert SystemMessagePromptTemplate.from_template("{x}").format(x=1) == SystemMessage("1")
    assert AIMessagePromptTemplate.from_template("{x}").format(x=2) == AIMessage("2")
    assert HumanMessagePromptTemplate(prompt=PromptTemplate("{n}!")).format(n=3) == HumanMessage("3!")
    assert not isinstance(human, Runnable)
    assert isinstance(human, BaseMessagePromptTemplate)
    with pytest.raises(PromptVariableError, match="'name'"):
        human.format()


def test_message_template_formats_and_partials() -> None:
    """from_template takes template_format and partial_variables."""
    mustache = SystemMessagePromptTemplate.from_template("{{a}} {b}", template_format="mustache")
    assert mustache.input_variables == ["a"]
    assert mustache.format(a="A") == SystemMessage("A {b}")
    partial = HumanMessagePromptTemplate.from_template(
        "{greeting} {name}", partial_variables={"greeting": "hi"}
    )
    assert partial.input_variables == ["name"]
    assert partial.format(name="Bo") == HumanMessage("hi Bo")


def test_a_message_template_prompt_must_be_a_prompt_template() -> None:
    """A message template built from something other than a PromptTemplate is refused."""
    with pytest.raises(TypeError, match="PromptTemplate"):
        HumanMessagePromptTemplate(prompt="hi {x}")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of content blocks"):
        HumanMessagePromptTemplate.from_template(42)  # type: ignore[arg-type]


# -- partial variables ------------------------------------------------------------------------


def test_prompt_template_partial() -> None:
    """partial fills variables ahead; callables are called per format; given values win."""
    prompt = PromptTemplate.from_template("{a} and {b}")
    filled = prompt.partial(a="A")
    assert filled.input_variables == ["b"]
    assert filled.partial_variables == {"a": "A"}
    assert filled.format(b="B") == "A and B"
    assert filled.format(a="mine", b="B") == "mine and B"
    assert prompt.input_variables == ["a", "b"]  # the original is unchanged
    counter = iter(range(10))
    ticking = prompt.partial(a=lambda: next(counter))
    assert [ticking.format(b="x"), ticking.format(b="x")] == ["0 and x", "1 and x"]
    built = PromptTemplate.from_template("{a}{b}", partial_variables={"a": 1})
    assert built.input_variables == ["b"]
    assert built.format(b=2) == "12"


async def test_chat_prompt_partial() -> None:
    """A chat prompt's partial fills template and placeholder variables, also inside a run."""
    prompt = ChatPromptTemplate([("system", "{persona}"), MessagesPlaceholder("history"), ("human", "{q}")])
    filled = prompt.partial(persona="terse", history=[("ai", "earlier")])
    assert filled.input_variables == ["q"]
    assert await filled.ainvoke("why") == ChatPromptValue(
        [SystemMessage("terse"), AIMessage("earlier"), HumanMessage("why")]
    )
    assert filled.format_messages(q="x", persona="chatty")[0] == SystemMessage("chatty")
    from_init = ChatPromptTemplate([("human", "{a}{b}")], partial_variables={"a": lambda: "A"})
    assert from_init.input_variables == ["b"]
    assert from_init.format_messages(b="B") == [HumanMessage("AB")]


def test_partial_of_an_unknown_variable_is_refused() -> None:
    """partial names only the template's variables (a typo fails, naming them)."""
    with pytest.raises(ValueError, match=r"\['c'\].*\['a', 'b'\]"):
        PromptTemplate.from_template("{a}{b}").partial(c=1)
    with pytest.raises(ValueError, match="'nope'"):
        ChatPromptTemplate([("human", "{a}")]).partial(nope=1)
    optional = ChatPromptTemplate([("placeholder", "{history}"), ("human", "{a}")])
    assert optional.partial(history=[("ai", "x")]).format_messages(a=1) == [AIMessage("x"), HumanMessage("1")]


# -- format, format_prompt, invoke, + ---------------------------------------------------------


def test_format_format_prompt_and_invoke_agree() -> None:
    """format_messages, format_prompt, format (a string) and invoke give the same prompt."""
    prompt = ChatPromptTemplate([("system", "be {mood}"), ("human", "{q}")])
    values = {"mood": "kind", "q": "hi", "unused": 0}
    messages = [SystemMessage("be kind"), HumanMessage("hi")]
    assert prompt.format_messages(**values) == messages
    assert prompt.format_prompt(**values) == ChatPromptValue(messages)
    assert prompt.format(**values) == "System: be kind\nHuman: hi"
    assert prompt.invoke(values) == ChatPromptValue(messages)


def test_missing_variables_name_the_entries() -> None:
    """A missing variable is reported with each entry that needs it."""
    prompt = ChatPromptTemplate([("system", "{a}"), ("human", "{a} {b}")])
    with pytest.raises(
        PromptVariableError,
        match=r"'a' for template '\{a\}' \(entry 0\) and template '\{a\} \{b\}' \(entry 1\);",
    ) as caught:
        prompt.format_messages(b=1)
    assert "'b'" not in str(caught.value).split("it got")[0]


def test_adding_prompts_messages_and_entries() -> None:
    """+ appends a chat prompt, a list of entries, or one entry, keeping partials."""
    base = ChatPromptTemplate([("system", "{s}")]).partial(s="S")
    combined = base + ("human", "{q}") + [("ai", "a")] + HumanMessage("m") + "str {z}"
    combined = combined + ChatPromptTemplate([("human", "{t}")], partial_variables={"t": "T"})
    assert combined.input_variables == ["q", "z"]
    assert combined.partial_variables == {"s": "S", "t": "T"}
    assert combined.format_messages(q=1, z=2) == [
        SystemMessage("S"),
        HumanMessage("1"),
        AIMessage("a"),
        HumanMessage("m"),
        HumanMessage("str 2"),
        HumanMessage("T"),
    ]
    with pytest.raises(TypeError):
        base + 5  # type: ignore[operator]


# -- placeholders -------------------------------------------------------------------------------


def test_optional_placeholder_semantics() -> None:
    """Optional: missing gives nothing and is an optional variable; required: missing names it."""
    optional = ChatPromptTemplate([MessagesPlaceholder("history", optional=True), ("human", "{q}")])
    assert optional.input_variables == ["q"]
    assert optional.optional_variables == ["history"]
    assert optional.format_messages(q="x") == [HumanMessage("x")]
    required = ChatPromptTemplate([MessagesPlaceholder("history"), ("human", "{q}")])
    assert required.input_variables == ["history", "q"]
    with pytest.raises(PromptVariableError, match="'history'"):
        required.format_messages(q="x")
    with pytest.raises(PromptVariableError, match=r"'history'.*optional=True"):
        MessagesPlaceholder("history").format_messages()
    assert MessagesPlaceholder("h", optional=True).format_messages() == []


def test_placeholder_values() -> None:
    """A placeholder takes a list of messages, pairs, dicts or strings; n_messages keeps the last n."""
    placeholder = MessagesPlaceholder("h")
    given = [SystemMessage("s"), ("ai", "a"), {"role": "user", "content": "d"}, "text"]
    assert placeholder.format_messages(h=given) == [
        SystemMessage("s"),
        AIMessage("a"),
        HumanMessage("d"),
        HumanMessage("text"),
    ]
    assert MessagesPlaceholder("h", n_messages=2).format_messages(h=given) == [
        HumanMessage("d"),
        HumanMessage("text"),
    ]
    tool = ToolMessage("42", tool_call_id="c1")
    assert placeholder.format_messages(h=[tool]) == [tool]
    for bad in ("a string", HumanMessage("one"), 5):
        with pytest.raises(TypeError, match="'h' must hold a list of messages"):
            placeholder.format_messages(h=bad)
    with pytest.raises(TypeError, match="item 0"):
        placeholder.format_messages(h=[42])
    with pytest.raises(ValueError, match="variable name"):
        MessagesPlaceholder("")
    with pytest.raises(ValueError, match="n_messages"):
        MessagesPlaceholder("h", n_messages=0)


async def test_a_missing_placeholder_fails_the_run_naming_it() -> None:
    """In a run, a required placeholder left out fails with PromptVariableError naming it."""
    chain = ChatPromptTemplate([MessagesPlaceholder("history"), ("human", "{q}")]) | ScriptedChatModel(["x"])
    with pytest.raises(PromptVariableError, match="'history'"):
        await chain.ainvoke({"q": "hi"})


# -- f-string details ----------------------------------------------------------------------------


def test_f_string_specs_conversions_and_literal_braces() -> None:
    """Format specs and conversions work; doubled braces are literal."""
    prompt = PromptTemplate.from_template("{price:.2f} {name!r} {{literal}}")
    assert prompt.input_variables == ["name", "price"]
    assert prompt.format(price=2, name="x") == "2.00 'x' {literal}"


async def test_string_prompt_partial_in_a_run() -> None:
    """A partially filled string prompt formats in a run from the remaining variable."""
    prompt = PromptTemplate.from_template("{greeting}, {name}").partial(greeting="Hello")
    assert await prompt.ainvoke("Ann") == StringPromptValue("Hello, Ann")


# -- mustache --------------------------------------------------------------------------------------

MUSTACHE = [
    ("hi {{name}}", {"name": "Ann"}, "hi Ann"),
    ("hi {{ name }}", {"name": "Ann"}, "hi Ann"),
    ("hi {{name}}", {}, "hi "),
    ("{{x}}", {"x": "<b> & \"q\" 'a'"}, "&lt;b&gt; &amp; &quot;q&quot; 'a'"),
    ("{{{x}}} {{&x}}", {"x": "<b>"}, "<b> <b>"),
    ("{{a.b.c}}", {"a": {"b": {"c": 5}}}, "5"),
    ("{{a.b}}", {"a": {"c": 1}}, ""),
    ("{{x}}", {"x": None}, ""),
    ("{{x}} {{y}}", {"x": 0, "y": 1.5}, "0 1.5"),
    ("{{#items}}[{{.}}]{{/items}}", {"items": [1, 2]}, "[1][2]"),
    ("{{#items}}- {{name}}\n{{/items}}", {"items": [{"name": "a"}, {"name": "b"}]}, "- a\n- b\n"),
    ("{{#f}}yes{{/f}}{{^f}}no{{/f}}", {"f": True}, "yes"),
    ("{{#f}}yes{{/f}}{{^f}}no{{/f}}", {"f": False}, "no"),
    ("{{#f}}yes{{/f}}{{^f}}no{{/f}}", {}, "no"),
    ("{{#f}}yes{{/f}}{{^f}}no{{/f}}", {"f": []}, "no"),
    ("{{#f}}yes{{/f}}{{^f}}no{{/f}}", {"f": 0}, "no"),
    ("{{#a}}{{b}}{{/a}}", {"a": {"b": "inner"}, "b": "outer"}, "inner"),
    ("{{#a}}{{c}}{{/a}}", {"a": {"b": "inner"}, "c": "outer"}, "outer"),
    ("{{#a}}{{#b}}{{c}}{{/b}}{{/a}}", {"a": {"b": [{"c": 1}, {"c": 2}]}}, "12"),
    ("{{! a comment }}x", {}, "x"),
    ("  {{#a}}\n  x\n  {{/a}}\n", {"a": True}, "  x\n"),
    ("a\n{{#l}}\n- {{n}}\n{{/l}}\nend {{! c }}\n", {"l": [{"n": 1}, {"n": 2}]}, "a\n- 1\n- 2\nend \n"),
]


@pytest.mark.parametrize(("template", "values", "expected"), MUSTACHE)
def test_mustache_subset_renders(template: str, values: dict[str, Any], expected: str) -> None:
    """The mustache subset renders variables, escaping, dotted names, sections and standalone lines."""
    assert PromptTemplate.from_template(template, template_format="mustache").format(**values) == expected


def test_mustache_variables_are_the_top_level_names() -> None:
    """A mustache template's variables are its top-level names (dotted: the first part)."""
    prompt = PromptTemplate.from_template(
        "{{a.b}} {{#s}}{{inner}}{{/s}} {{^t}}{{/t}} {{{u}}} {plain}", template_format="mustache"
    )
    assert prompt.input_variables == ["a", "s", "t", "u"]


BAD_MUSTACHE = [
    ("{{#a}}x", "section \\{\\{#a\\}\\} is never closed"),
    ("{{a}", "never closed"),
    ("{{#a}}{{/b}}", "closes nothing \\(the open section is 'a'\\)"),
    ("{{/a}}", "closes nothing \\(no section is open\\)"),
    ("{{> partial}}", "partials are not supported"),
    ("{{=<% %>=}}", "changing delimiters are not supported"),
    ("{{a b}}", "is not a name"),
    ("{{{a}}", "closing '\\}\\}\\}'"),
]


@pytest.mark.parametrize(("template", "match"), BAD_MUSTACHE)
def test_unsupported_or_malformed_mustache_fails_at_construction(template: str, match: str) -> None:
    """Malformed mustache and the tags outside the subset fail when the template is built."""
    with pytest.raises(ValueError, match="invalid mustache template.*" + match):
        PromptTemplate.from_template(template, template_format="mustache")
    with pytest.raises(ValueError, match="entry 0 .*" + match):
        ChatPromptTemplate([("human", template)], template_format="mustache")


async def test_mustache_chat_prompt_in_a_run() -> None:
    """A mustache chat prompt (placeholder written {{name}}) formats inside a run."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", "{{#rules}}- {{.}}\n{{/rules}}"), ("placeholder", "{{history}}"), ("human", "{{q}}")],
        template_format="mustache",
    )
    assert prompt.input_variables == ["q", "rules"]
    assert prompt.optional_variables == ["history"]
    value = await prompt.ainvoke({"rules": ["short", "kind"], "q": "hi", "history": [("ai", "x")]})
    assert value == ChatPromptValue([SystemMessage("- short\n- kind\n"), AIMessage("x"), HumanMessage("hi")])


# -- jinja2 ---------------------------------------------------------------------------------------


def test_jinja2_without_jinja2_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without jinja2, a jinja2 template fails when built, saying to pip install jinja2."""
    # A None entry makes the import fail as if jinja2 were absent, installed or not.
    monkeypatch.setitem(sys.modules, "jinja2", None)
    monkeypatch.setitem(sys.modules, "jinja2.sandbox", None)
    with pytest.raises(ImportError, match="pip install jinja2"):
        PromptTemplate.from_template("{{ x }}", template_format="jinja2")
    with pytest.raises(ImportError, match=r"entry 0 .*pip install jinja2"):
        ChatPromptTemplate([("human", "{{ x }}")], template_format="jinja2")


@pytest.mark.skipif(not HAS_JINJA2, reason="jinja2 is not installed")
def test_jinja2_templates_render() -> None:
    """With jinja2, templates find their variables and render in the sandbox."""
    prompt = PromptTemplate.from_template(
        "{% for i in items %}{{ i }},{% endfor %} {{ name }}", template_format="jinja2"
    )
    assert prompt.input_variables == ["items", "name"]
    assert prompt.format(items=[1, 2], name="x") == "1,2, x"
    with pytest.raises(ValueError, match="invalid jinja2 template"):
        PromptTemplate.from_template("{% for %}", template_format="jinja2")


async def test_a_prompt_template_is_a_configurable_field() -> None:
    """configurable_fields rebuilds a prompt from a new template (parsed again) per call."""
    prompt = PromptTemplate.from_template("hi {x}").configurable_fields(template=ConfigurableField(id="t"))
    assert await prompt.ainvoke({"x": 1}) == StringPromptValue("hi 1")
    configured = {"configurable": {"t": "yo {x}"}}
    assert await prompt.ainvoke({"x": 1}, config=configured) == StringPromptValue("yo 1")
    with pytest.raises(ValueError, match="invalid prompt template"):
        await prompt.ainvoke({"x": 1}, config={"configurable": {"t": "yo {x"}})
