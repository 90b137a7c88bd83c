"""Bad input gives a clear error at the earliest possible point, naming the problem.

Three points, earliest first: building a runnable (composition, node and bus arguments);
calling the run API (config, event-stream options, batch limits), before any task starts;
and, for values only a run can see, the step that gets them, before anything downstream
runs. Every case asserts on the message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _reliability_harness import settle, tally

from engine import (
    CompositionError,
    ConfigError,
    EventBus,
    RunnableGenerator,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
    RunnableSequence,
)
from engine.testing import Probe, rillet_tasks
from nodes import (
    ChatPromptTemplate,
    InMemoryRetriever,
    JsonOutputParser,
    OutputParserException,
    PromptTemplate,
    PromptVariableError,
    ScriptedChatModel,
    StrOutputParser,
    ToolArgumentError,
    tool,
)


@pytest.fixture(autouse=True)
def _count_the_bad_input() -> Iterator[None]:
    yield
    tally("bad inputs rejected")


def _identity(value: Any) -> Any:
    return value


def _not_a_generator(chunks: Any) -> Any:
    return chunks


def _varargs(*values: int) -> int:
    return sum(values)


# -- at construction -----------------------------------------------------------------------------

CONSTRUCTION: list[tuple[str, Callable[[], Any], type[BaseException], str]] = [
    (
        "pipe-non-runnable",
        lambda: RunnableLambda(_identity) | 42,
        CompositionError,
        "cannot compose int 42 (right of |)",
    ),
    (
        "pipe-left-non-runnable",
        lambda: 42 | RunnableLambda(_identity),
        CompositionError,
        "cannot compose int 42 (left of |)",
    ),
    (
        "pipe-method",
        lambda: RunnableLambda(_identity).pipe("text"),
        CompositionError,
        "cannot compose str 'text' (pipe())",
    ),
    (
        "sequence-of",
        lambda: RunnableSequence.of(RunnableLambda(_identity), 3.5),
        CompositionError,
        "a sequence step must be a Runnable, got float",
    ),
    ("empty-sequence", lambda: RunnableSequence.of(), CompositionError, "a sequence needs at least one step"),
    (
        "parallel-branch",
        lambda: RunnableParallel(a=42),
        CompositionError,
        "cannot compose int 42 (branch 'a' of a parallel step)",
    ),
    (
        "dict-branch-in-chain",
        lambda: RunnablePassthrough() | {"a": None},
        CompositionError,
        "cannot compose NoneType None (branch 'a' of a parallel step)",
    ),
    (
        "parallel-key",
        lambda: RunnableParallel({1: _identity}),
        CompositionError,
        "RunnableParallel keys must be strings, got 1",
    ),
    (
        "empty-parallel",
        lambda: RunnableParallel(),
        CompositionError,
        "RunnableParallel needs at least one branch",
    ),
    (
        "empty-assign",
        lambda: RunnablePassthrough.assign(),
        CompositionError,
        "RunnablePassthrough.assign() needs at least one key",
    ),
    (
        "lambda-non-callable",
        lambda: RunnableLambda(42),
        CompositionError,
        "RunnableLambda needs a callable, got int",
    ),  # type: ignore[arg-type]
    (
        "generator-non-generator",
        lambda: RunnableGenerator(_not_a_generator),
        CompositionError,
        "RunnableGenerator needs a generator function, got _not_a_generator",
    ),
    (
        "with-config-unknown-key",
        lambda: RunnablePassthrough().with_config(capcity=3),
        ConfigError,
        "unknown key(s) 'capcity'; known keys are",
    ),
    (
        "with-config-negative-capacity",
        lambda: RunnablePassthrough().with_config(capacity=-2),
        ConfigError,
        "['capacity'] must be >= 0, got -2",
    ),
    (
        "with-config-bool-capacity",
        lambda: RunnablePassthrough().with_config(capacity=True),
        ConfigError,
        "['capacity'] must be an int, got bool True",
    ),
    (
        "with-config-max-concurrency-0",
        lambda: RunnablePassthrough().with_config(max_concurrency=0),
        ConfigError,
        "['max_concurrency'] must be an int >= 1, got 0",
    ),
    (
        "with-config-empty-run-name",
        lambda: RunnablePassthrough().with_config(run_name=""),
        ConfigError,
        "['run_name'] must be a non-empty string",
    ),
    (
        "with-config-tags-string",
        lambda: RunnablePassthrough().with_config(tags="abc"),
        ConfigError,
        "['tags'] must be a list of strings, got 'abc'",
    ),
    (
        "with-config-metadata",
        lambda: RunnablePassthrough().with_config(metadata=[1]),
        ConfigError,
        "['metadata'] must be a dict",
    ),
    (
        "with-config-bus",
        lambda: RunnablePassthrough().with_config(bus="bus"),
        ConfigError,
        "['bus'] must be an EventBus, got str",
    ),
    (
        "model-no-replies",
        lambda: ScriptedChatModel(replies=[]),
        ValueError,
        "ScriptedChatModel needs a non-empty list of replies",
    ),
    (
        "model-negative-delay",
        lambda: ScriptedChatModel(replies=["x"], delay=-1),
        ValueError,
        "delay must be >= 0, got -1",
    ),
    (
        "prompt-unbalanced",
        lambda: PromptTemplate.from_template("tell me about {topic"),
        ValueError,
        "invalid prompt template 'tell me about {topic'",
    ),
    (
        "prompt-attribute",
        lambda: PromptTemplate.from_template("{user.name}"),
        ValueError,
        "invalid placeholder {user.name}",
    ),
    (
        "prompt-not-string",
        lambda: PromptTemplate.from_template(42),
        TypeError,
        "a prompt template must be a string, got int",
    ),  # type: ignore[arg-type]
    (
        "chat-prompt-entry",
        lambda: ChatPromptTemplate.from_messages([42]),
        TypeError,
        "ChatPromptTemplate entry 0 (int 42): expected a (role, template) pair",
    ),
    (
        "chat-prompt-role",
        lambda: ChatPromptTemplate.from_messages([("robot", "x")]),
        ValueError,
        "ChatPromptTemplate entry 0 (tuple ('robot', 'x')): unknown role 'robot'; a template's role is",
    ),
    (
        "chat-prompt-placeholder",
        lambda: ChatPromptTemplate.from_messages([("placeholder", "{a} {b}")]),
        ValueError,
        "a placeholder must be written '{name}' (one variable alone), got '{a} {b}'",
    ),
    (
        "chat-prompt-empty",
        lambda: ChatPromptTemplate.from_messages([]),
        ValueError,
        "a chat prompt needs at least one message",
    ),
    ("retriever-k", lambda: InMemoryRetriever.from_texts(["a"], k=0), ValueError, "k must be >= 1, got 0"),
    (
        "retriever-texts-string",
        lambda: InMemoryRetriever.from_texts("abc"),
        TypeError,
        "from_texts needs a list of strings",
    ),  # type: ignore[arg-type]
    (
        "tool-varargs",
        lambda: tool(_varargs),
        TypeError,
        "tool '_varargs': parameter 'values' must be a named argument",
    ),
    ("tool-not-callable", lambda: tool(42), TypeError, "@tool needs a function, got int"),  # type: ignore[call-overload]
    (
        "subscribe-overflow",
        lambda: EventBus().subscribe(overflow="fifo"),
        ValueError,
        "unknown overflow policy 'fifo'; use 'block' or 'drop'",
    ),  # type: ignore[arg-type]
    (
        "subscribe-capacity-0",
        lambda: EventBus().subscribe(capacity=0),
        ValueError,
        "subscriber capacity must be >= 1, got 0",
    ),
    (
        "subscribe-capacity-type",
        lambda: EventBus().subscribe(capacity="8"),
        TypeError,
        "subscriber capacity must be an int, got str '8'",
    ),  # type: ignore[arg-type]
    (
        "subscribe-unknown-type",
        lambda: EventBus().subscribe(include_types=["model"]),
        ValueError,
        "unknown step type 'model'; the types are",
    ),
    (
        "subscribe-names-string",
        lambda: EventBus().subscribe(include_names="parser"),
        TypeError,
        "include_names must be a list of strings, not the string 'parser'",
    ),
]


@pytest.mark.parametrize(
    ("build", "error", "message"), [c[1:] for c in CONSTRUCTION], ids=[c[0] for c in CONSTRUCTION]
)
def test_bad_construction_fails_at_once_naming_the_problem(
    build: Callable[[], Any], error: type[BaseException], message: str
) -> None:
    """Building a runnable, node or subscription from bad parts raises at once, saying what is wrong."""
    with pytest.raises(error, match=re.escape(message)):
        subscription = build()
        if hasattr(subscription, "aclose"):  # pragma: no cover - only reached when no error
            subscription.end()


# Found by this suite: a negative capacity was reported as "must be >= 0" although 0 is
# rejected too (fixed in f2b0154).
def test_negative_subscriber_capacity_names_the_real_minimum() -> None:
    """subscribe(capacity=-1) says the capacity must be >= 1, the rule it enforces."""
    with pytest.raises(ValueError, match=re.escape("subscriber capacity must be >= 1, got -1")):
        EventBus().subscribe(capacity=-1)


def test_chat_anthropic_bad_arguments_fail_at_construction() -> None:
    """ChatAnthropic rejects bad arguments when built, not when called."""
    nodes = pytest.importorskip("nodes")
    chat_anthropic = getattr(nodes, "ChatAnthropic", None)
    if chat_anthropic is None:  # pragma: no cover - the node is optional for this suite
        pytest.skip("nodes.ChatAnthropic is not available")
    with pytest.raises(ValueError, match=re.escape("temperature must be between 0 and 1, got 2")):
        chat_anthropic(model="claude-test-model", temperature=2)
    with pytest.raises(ValueError, match="max_tokens"):
        chat_anthropic(model="claude-test-model", max_tokens=0)
    with pytest.raises(ValueError, match="model"):
        chat_anthropic(model="")
    with pytest.raises(TypeError):
        chat_anthropic(model="claude-test-model", stop="END")


# -- at the call, before anything runs -------------------------------------------------------------


def _probe_chain() -> tuple[Probe[Any], Any]:
    probe: Probe[Any] = Probe()
    return probe, RunnablePassthrough() | probe


CALLS: list[tuple[str, Callable[[Any], Any], type[BaseException], str]] = [
    (
        "astream-negative-capacity",
        lambda c: c.astream(1, {"capacity": -1}),
        ConfigError,
        "config['capacity'] must be >= 0, got -1",
    ),
    (
        "astream-max-concurrency-0",
        lambda c: c.astream(1, {"max_concurrency": 0}),
        ConfigError,
        "config['max_concurrency'] must be an int >= 1, got 0",
    ),
    (
        "astream-unknown-key",
        lambda c: c.astream(1, {"callback": []}),
        ConfigError,
        "config has unknown key(s) 'callback'; known keys are tags, metadata",
    ),
    (
        "astream-config-not-dict",
        lambda c: c.astream(1, ["tags"]),
        ConfigError,
        "config must be a dict, got list",
    ),
    (
        "atransform-negative-capacity",
        lambda c: c.atransform(_nothing(), {"capacity": -3}),
        ConfigError,
        "config['capacity'] must be >= 0, got -3",
    ),
    (
        "events-unknown-version",
        lambda c: c.astream_events(1, version="v3"),
        ValueError,
        "unknown astream_events version 'v3'; use 'v1' or 'v2'",
    ),
    (
        "events-unknown-type",
        lambda c: c.astream_events(1, include_types=["llmx"]),
        ValueError,
        "unknown step type 'llmx'",
    ),
    (
        "events-capacity-0",
        lambda c: c.astream_events(1, capacity=0),
        ValueError,
        "subscriber capacity must be >= 1, got 0",
    ),
    (
        "events-bad-config",
        lambda c: c.astream_events(1, {"capacity": "big"}),
        ConfigError,
        "config['capacity'] must be an int, got str 'big'",
    ),
    (
        "log-unknown-type",
        lambda c: c.astream_log(1, exclude_types=["nope"]),
        ValueError,
        "unknown step type 'nope'",
    ),
]


async def _nothing() -> Any:
    for item in ():  # pragma: no cover - never iterated
        yield item


@pytest.mark.parametrize(("call", "error", "message"), [c[1:] for c in CALLS], ids=[c[0] for c in CALLS])
async def test_bad_call_arguments_fail_at_the_call_before_any_task_starts(
    call: Callable[[Any], Any], error: type[BaseException], message: str
) -> None:
    """A bad config or event-stream option raises at the call itself: no task, no step ran."""
    probe, chain = _probe_chain()
    with pytest.raises(error, match=re.escape(message)):
        call(chain)
    assert rillet_tasks() == []
    assert probe.started == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrency": 0}, "abatch()['max_concurrency'] must be an int >= 1, got 0"),
        ({"config": {"max_concurrency": 0}}, "config['max_concurrency'] must be an int >= 1, got 0"),
        ({"config": [{}, {}, {}]}, "batch got 3 configs for 2 inputs"),
        ({"config": [{}, {"capacity": -1}]}, "config[1]['capacity'] must be >= 0, got -1"),
    ],
    ids=["max-concurrency-0", "config-max-concurrency-0", "configs-length", "one-bad-config"],
)
async def test_bad_batch_arguments_fail_before_any_item_runs(kwargs: dict[str, Any], message: str) -> None:
    """abatch with a bad limit or configs raises before running any input."""
    ran: list[Any] = []

    async def record(value: Any) -> Any:
        ran.append(value)
        return value

    with pytest.raises((ConfigError, ValueError), match=re.escape(message)):
        await RunnableLambda(record).abatch([1, 2], **kwargs)
    assert ran == []
    await settle()


def test_bad_sync_batch_arguments_fail_before_any_item_runs() -> None:
    """The synchronous batch validates max_concurrency the same way, before running anything."""
    ran: list[Any] = []

    def record(value: Any) -> Any:
        ran.append(value)
        return value

    with pytest.raises(
        ConfigError, match=re.escape("abatch()['max_concurrency'] must be an int >= 1, got 0")
    ):
        RunnableLambda(record).batch([1, 2], max_concurrency=0)
    assert ran == []


# -- in the step that sees the bad value, before anything downstream -------------------------------


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


BAD_VALUES: list[tuple[str, Callable[[], Any], Any, type[BaseException], str]] = [
    (
        "model-given-int",
        lambda: ScriptedChatModel(replies=["hi"]),
        12345,
        TypeError,
        "the input of ScriptedChatModel: cannot make chat messages from a int 12345",
    ),
    (
        "model-given-dict",
        lambda: ScriptedChatModel(replies=["hi"]),
        {"question": "x"},
        TypeError,
        "the input of ScriptedChatModel: cannot make chat messages from a dict",
    ),
    (
        "prompt-given-string",
        lambda: ChatPromptTemplate.from_template("{context} {question}"),
        "x",
        TypeError,
        "ChatPromptTemplate needs a dict with the variables ['context', 'question'], got str: 'x'",
    ),
    (
        "prompt-missing-variable",
        lambda: ChatPromptTemplate.from_template("{context} {question}"),
        {"context": "c"},
        PromptVariableError,
        "ChatPromptTemplate is missing variable(s) 'question' for template '{context} {question}' (entry 0); "
        "it got ['context']",
    ),
    (
        "string-prompt-missing-variables",
        lambda: PromptTemplate.from_template("{a}{b}{c}"),
        {"b": 1},
        PromptVariableError,
        "PromptTemplate is missing variable(s) 'a', 'c' for template '{a}{b}{c}'; it got ['b']",
    ),
    (
        "parser-given-int",
        StrOutputParser,
        5,
        TypeError,
        "StrOutputParser needs text or message chunks, got int: 5",
    ),
    (
        "json-parser-given-list",
        JsonOutputParser,
        [1, 2],
        TypeError,
        "JsonOutputParser needs text or message chunks, got list: [1, 2]",
    ),
    (
        "retriever-given-dict",
        lambda: InMemoryRetriever.from_texts(["a"]),
        {"query": "a"},
        TypeError,
        "InMemoryRetriever needs a query string, got dict: {'query': 'a'}",
    ),
    (
        "tool-wrong-type",
        lambda: add,
        {"a": "1", "b": 2},
        ToolArgumentError,
        "tool 'add': argument 'a': expected an integer, got the string '1'",
    ),
    (
        "tool-unknown-argument",
        lambda: add,
        {"a": 1, "c": 2},
        ToolArgumentError,
        "tool 'add' got unknown argument(s) 'c'; it takes ['a', 'b']",
    ),
    (
        "tool-missing-argument",
        lambda: add,
        {"a": 1},
        ToolArgumentError,
        "tool 'add' is missing the required argument 'b'",
    ),
    (
        "tool-malformed-arguments",
        lambda: add,
        '{"a": 1, "b": ',
        ToolArgumentError,
        "tool 'add' takes the arguments ['a', 'b']: call it with a dict, got str: '{\"a\": 1, \"b\": '",
    ),
    (
        "tool-one-argument-wrong-type",
        lambda: shout,
        3,
        ToolArgumentError,
        "tool 'shout': argument 'text': expected a string, got the integer 3",
    ),
    (
        "assign-given-list",
        lambda: RunnablePassthrough.assign(n=lambda d: len(d)),
        [1],
        TypeError,
        "needs a dict input, got list: [1]",
    ),
]


@pytest.mark.parametrize(
    ("build", "value", "error", "message"), [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES]
)
async def test_a_bad_value_fails_in_its_step_before_anything_downstream(
    build: Callable[[], Any], value: Any, error: type[BaseException], message: str
) -> None:
    """A node given a value it cannot use raises, naming itself and the value, and nothing after it runs."""
    probe: Probe[Any] = Probe("after")
    model_after = ScriptedChatModel(replies=["never"])
    chain = RunnablePassthrough() | build() | probe | RunnableLambda(lambda _: "x") | model_after
    events: list[dict[str, Any]] = []
    with pytest.raises(error, match=re.escape(message)) as info:
        async with chain.astream_events(value) as stream:
            async for event in stream:
                events.append(event)
    await settle()
    assert probe.seen == [] and model_after.calls == 0
    failed = [e for e in events if e["event"].endswith("_error") and e["data"]["error"] is info.value]
    assert failed and failed[-1]["name"] == "RunnableSequence"


async def test_non_json_model_output_gives_an_output_parser_error_carrying_the_text() -> None:
    """JsonOutputParser on prose raises OutputParserException naming the problem, with the text attached."""
    reply = "I'm sorry, I cannot answer in JSON."
    chain = ScriptedChatModel(replies=[reply]) | JsonOutputParser()
    with pytest.raises(
        OutputParserException, match=re.escape("No JSON value found in the model's output")
    ) as info:
        await chain.ainvoke("give me JSON")
    assert info.value.text == reply


async def test_truncated_json_model_output_says_where_it_stopped() -> None:
    """A JSON document cut short by the model is reported as such, with the text attached."""
    reply = '{"countries": [{"name": "France", "population": 67'
    chain = ScriptedChatModel(replies=[reply]) | JsonOutputParser()
    with pytest.raises(OutputParserException, match="ended inside a JSON document") as info:
        await chain.ainvoke("give me JSON")
    assert info.value.text == reply
