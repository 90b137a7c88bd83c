"""What must not travel to another process refuses to pickle, and secrets say so.

An ``EventBus``, a ``Subscription`` and a ``RunStream`` are live objects of this process:
pickled (plainly, or by cloudpickle as Ray ships a chain) they would arrive as silent,
disconnected copies, so they refuse with a ``TypeError`` naming them. A ``ChatAnthropic``
built with an explicit ``api_key`` warns (``SecretShippedWarning``) when pickled; one that
reads the key from the environment pickles without it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest

from engine import EventBus, RunnableLambda
from nodes import ChatAnthropic, SecretShippedWarning


def _dumpers() -> list[Any]:
    dumpers: list[Any] = [pytest.param(pickle.dumps, id="pickle")]
    try:
        from ray import cloudpickle
    except ImportError:
        dumpers.append(
            pytest.param(None, id="cloudpickle", marks=pytest.mark.skip(reason="ray not installed"))
        )
    else:
        dumpers.append(pytest.param(cloudpickle.dumps, id="cloudpickle"))
    return dumpers


DUMPERS = _dumpers()


@pytest.mark.parametrize("dumps", DUMPERS)
def test_an_event_bus_refuses_to_pickle(dumps: Callable[[Any], bytes]) -> None:
    """Pickling an ``EventBus`` (or a config holding one) raises a TypeError that names it."""
    bus = EventBus()
    with pytest.raises(TypeError, match="cannot pickle <EventBus"):
        dumps(bus)
    with pytest.raises(TypeError, match="EventBus"):
        dumps({"bus": bus})


@pytest.mark.parametrize("dumps", DUMPERS)
async def test_a_subscription_refuses_to_pickle(dumps: Callable[[Any], bytes]) -> None:
    """Pickling a ``Subscription`` raises a TypeError saying a copy would never receive an event."""
    bus = EventBus()
    async with bus.subscribe() as subscription:
        with pytest.raises(TypeError, match="would never receive an event"):
            dumps(subscription)


@pytest.mark.parametrize("dumps", DUMPERS)
async def test_a_run_stream_refuses_to_pickle(dumps: Callable[[Any], bytes]) -> None:
    """Pickling a ``RunStream`` raises a TypeError saying to pickle the runnable and input instead."""
    stream = RunnableLambda(abs).astream(-1)
    try:
        with pytest.raises(TypeError, match="pickle the runnable and its input instead"):
            dumps(stream)
    finally:
        await stream.aclose()


@pytest.mark.parametrize("dumps", DUMPERS)
def test_a_model_with_an_explicit_key_warns_when_pickled(dumps: Callable[[Any], bytes]) -> None:
    """A ``ChatAnthropic(api_key=...)`` warns that its key travels, and it does."""
    model = ChatAnthropic(model="claude-test", api_key="sk-secret-123")
    with pytest.warns(SecretShippedWarning, match="ANTHROPIC_API_KEY"):
        data = dumps(model)
    assert b"sk-secret-123" in data
    assert pickle.loads(data).api_key == "sk-secret-123"


@pytest.mark.parametrize("dumps", DUMPERS)
def test_a_model_reading_the_environment_pickles_no_key(
    dumps: Callable[[Any], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the key in ``ANTHROPIC_API_KEY``, a pickled model holds no key and no warning is given."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-env-456")
    model = ChatAnthropic(model="claude-test")
    data = dumps(model)  # filterwarnings=error: any warning would fail here
    assert b"sk-env-456" not in data
    copied = pickle.loads(data)
    assert copied.api_key is None and copied.model == "claude-test"


def test_copying_a_model_in_process_does_not_warn() -> None:
    """``copy.copy``/``copy.deepcopy`` of a keyed model stay in this process: no warning."""
    import copy

    model = ChatAnthropic(model="claude-test", api_key="sk-secret-123")
    assert copy.copy(model) is model
    deep = copy.deepcopy(model)
    assert deep.api_key == "sk-secret-123" and deep.model == model.model
