"""The request options of ``ChatAnthropic`` that take the API's own shapes, checked early.

Each converter takes what a user writes (a shorthand or the API's dict) and returns the
dict the Messages API takes, or raises a ``ValueError``/``TypeError`` naming the option
and the problem. They run when a model is built or bound, so a bad option fails there,
never as a 400 from the API. The accepted shapes are those of the installed SDK's request
types (``anthropic/types/``; see ANTHROPIC-SDK-NOTES.md, "Request options").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = (
    "EFFORT_LEVELS",
    "check_thinking_budget",
    "check_thinking_tool_choice",
    "check_tool_choice",
    "merge_output_config",
    "to_cache_control",
    "to_effort",
    "to_output_config",
    "to_thinking",
    "to_tool_choice",
    "with_parallel_tool_calls",
)

# tool_choice_{auto,any,tool,none}_param.py: the four types, and which take what.
_TOOL_CHOICE_MODES: Final = ("auto", "any", "none")
_TOOL_CHOICE_TYPES: Final = frozenset({"auto", "any", "tool", "none"})
_TOOL_CHOICE_SHAPES: Final = (
    "'auto', 'any', 'none', a tool's name, or the API's dict ({'type': 'auto'|'any'|'tool'|'none', "
    "'name': ... for 'tool', 'disable_parallel_tool_use': bool})"
)

#: output_config_param.py: ``effort: Literal["low", "medium", "high", "xhigh", "max"]``.
EFFORT_LEVELS: Final = ("low", "medium", "high", "xhigh", "max")


def to_tool_choice(value: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The API's ``tool_choice`` for a mode, a tool's name or the API's dict.

    Raises:
        TypeError: For a value of another kind, or a field of the wrong type.
        ValueError: For an empty name, an unknown ``type``, a ``"tool"`` choice without
            a name, or ``disable_parallel_tool_use`` on ``"none"``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if not value:
            raise ValueError(f"tool_choice must not be empty; it is {_TOOL_CHOICE_SHAPES}")
        # langchain-anthropic's shorthand: a mode, or the name of the tool to call.
        return {"type": value} if value in _TOOL_CHOICE_MODES else {"type": "tool", "name": value}
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        raise TypeError(f"tool_choice must be {_TOOL_CHOICE_SHAPES}, got {value!r}")
    choice = dict(value)
    kind = choice["type"]
    if kind not in _TOOL_CHOICE_TYPES:
        raise ValueError(f"tool_choice has the unknown type {kind!r}; it is {_TOOL_CHOICE_SHAPES}")
    if kind == "tool" and (not isinstance(choice.get("name"), str) or not choice["name"]):
        raise ValueError(f"tool_choice {choice!r} forces a tool, so it needs the tool's 'name'")
    if "disable_parallel_tool_use" in choice:
        if not isinstance(choice["disable_parallel_tool_use"], bool):
            raise TypeError(f"tool_choice's disable_parallel_tool_use must be a bool, got {choice!r}")
        if kind == "none":
            raise ValueError(f"tool_choice {choice!r}: the 'none' type takes no disable_parallel_tool_use")
    return choice


def with_parallel_tool_calls(choice: dict[str, Any] | None, parallel: bool) -> dict[str, Any]:
    """``choice`` (or ``"auto"``) with ``disable_parallel_tool_use`` set to ``not parallel``.

    Raises:
        ValueError: If ``choice`` is ``"none"``, which calls no tool at all.
    """
    if choice is not None and choice["type"] == "none":
        raise ValueError("parallel_tool_calls has no meaning with tool_choice 'none', which calls no tool")
    return {**(choice or {"type": "auto"}), "disable_parallel_tool_use": not parallel}


def check_tool_choice(
    choice: Mapping[str, Any] | None, tools: Sequence[Mapping[str, Any]], model: str
) -> None:
    """Refuse a ``tool_choice`` that the bound tools cannot satisfy.

    Args:
        choice: The API's ``tool_choice``.
        tools: The bound tool definitions.
        model: The model's name, for the message.

    Raises:
        ValueError: If the choice names a tool that is not bound, or forces a tool
            (``"any"``, ``"tool"``) when none is bound.
    """
    if choice is None or choice["type"] in ("auto", "none"):
        return
    names = [tool.get("name") for tool in tools]
    if not tools:
        raise ValueError(
            f"{model}: tool_choice {choice!r} makes the model call a tool, but no tools are bound; "
            "bind them with bind_tools(tools, tool_choice=...)"
        )
    if choice["type"] == "tool" and choice["name"] not in names:
        raise ValueError(
            f"{model}: tool_choice names the tool {choice['name']!r}, which is not bound; "
            f"the bound tools are {names!r}"
        )


def to_effort(value: str | None) -> str | None:
    """An ``output_config.effort`` level, checked.

    Raises:
        ValueError: For a level the API does not have.
    """
    if value is not None and value not in EFFORT_LEVELS:
        raise ValueError(f"effort must be one of {', '.join(map(repr, EFFORT_LEVELS))}, got {value!r}")
    return value


def to_output_config(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The API's ``output_config``: keys set to ``None`` left out, ``effort`` and ``format`` checked.

    Other keys pass through as given (the API may have grown them).

    Raises:
        TypeError: If it is not a dict, or ``format`` is not a dict with a ``type``.
        ValueError: For an unknown ``effort`` level, or a ``json_schema`` format without
            a ``schema`` dict.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(
            f"output_config must be a dict such as {{'effort': 'high'}} or "
            f"{{'format': {{'type': 'json_schema', 'schema': {{...}}}}}}, got {value!r}"
        )
    config = {key: item for key, item in value.items() if item is not None}
    to_effort(config.get("effort"))
    form = config.get("format")
    if form is not None:
        if not isinstance(form, Mapping) or not isinstance(form.get("type"), str):
            raise TypeError(f"output_config's format must be a dict with a 'type', got {form!r}")
        if form["type"] == "json_schema" and not isinstance(form.get("schema"), Mapping):
            raise ValueError(f"output_config's json_schema format needs a 'schema' dict, got {form!r}")
    return config or None


def merge_output_config(
    config: Mapping[str, Any] | None, effort: str | None, model: str
) -> dict[str, Any] | None:
    """The ``output_config`` sent: ``config`` with ``effort`` (the model's option) added.

    Raises:
        ValueError: If both set an effort, to different levels.
    """
    if effort is None:
        return dict(config) if config else None
    given = (config or {}).get("effort")
    if given is not None and given != effort:
        raise ValueError(
            f"{model}: effort={effort!r} and output_config={{'effort': {given!r}}} disagree; set the level once"
        )
    return {**(config or {}), "effort": effort}


# thinking_config_*_param.py: the four types; enabled takes budget_tokens, enabled and
# adaptive take display.
_THINKING_TYPES: Final = ("enabled", "adaptive", "disabled", "between_tools")
_THINKING_DISPLAYS: Final = ("summarized", "omitted")
#: thinking_config_enabled_param.py: budget_tokens "Must be >= 1024 and less than max_tokens".
MIN_THINKING_BUDGET: Final = 1024


def to_thinking(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The API's ``thinking`` config, checked: ``{"type": "enabled", "budget_tokens": n}``,
    ``{"type": "adaptive"}``, ``{"type": "disabled"}`` or ``{"type": "between_tools"}``.

    Raises:
        TypeError: If it is not a dict with a ``type``, or the budget is not an int.
        ValueError: For an unknown type or display, an ``enabled`` config without a
            budget of at least 1024, or a budget on another type.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        raise TypeError(
            "thinking must be the API's dict, such as {'type': 'enabled', 'budget_tokens': 2048} "
            f"or {{'type': 'adaptive'}}, got {value!r}"
        )
    config = dict(value)
    kind = config["type"]
    if kind not in _THINKING_TYPES:
        raise ValueError(
            f"thinking has the unknown type {kind!r}; the types are {', '.join(map(repr, _THINKING_TYPES))}"
        )
    budget = config.get("budget_tokens")
    if kind == "enabled":
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise TypeError(f"thinking {{'type': 'enabled'}} needs budget_tokens, an int, got {budget!r}")
        if budget < MIN_THINKING_BUDGET:
            raise ValueError(f"thinking budget_tokens must be at least {MIN_THINKING_BUDGET}, got {budget}")
    elif budget is not None:
        raise ValueError(f"thinking {{'type': {kind!r}}} takes no budget_tokens (only 'enabled' does)")
    display = config.get("display")
    if display is not None and display not in _THINKING_DISPLAYS:
        raise ValueError(f"thinking display must be 'summarized' or 'omitted', got {display!r}")
    return config


def check_thinking_budget(thinking: Mapping[str, Any] | None, max_tokens: int, model: str) -> None:
    """Refuse a thinking budget the API would: it must be less than ``max_tokens``.

    Raises:
        ValueError: If ``budget_tokens >= max_tokens``.
    """
    if thinking is None or thinking["type"] != "enabled":
        return
    budget = thinking["budget_tokens"]
    if budget >= max_tokens:
        raise ValueError(
            f"{model}: thinking budget_tokens ({budget}) must be less than max_tokens ({max_tokens}): "
            "thinking tokens count toward max_tokens; raise max_tokens or lower the budget"
        )


# The thinking types Anthropic's documentation says allow only tool_choice auto or none
# (see ANTHROPIC-SDK-NOTES.md, "Thinking and a forced tool choice").
_THINKING_WITHOUT_FORCED_TOOLS: Final = ("enabled", "adaptive")


def check_thinking_tool_choice(
    thinking: Mapping[str, Any] | None, choice: Mapping[str, Any] | None, model: str
) -> None:
    """Refuse a ``tool_choice`` that forces a tool call while thinking is on.

    With thinking, the API takes ``tool_choice`` ``"auto"`` or ``"none"`` only: ``"any"``
    and a named tool force a tool call, which it refuses (a 400), so the pair is refused
    here, when the model is built or bound, before any request.

    Raises:
        ValueError: If ``thinking`` is ``enabled`` or ``adaptive`` and ``choice`` is of
            type ``"any"`` or ``"tool"``.
    """
    if thinking is None or choice is None:
        return
    if thinking["type"] in _THINKING_WITHOUT_FORCED_TOOLS and choice["type"] in ("any", "tool"):
        raise ValueError(
            f"{model}: tool_choice {dict(choice)!r} forces a tool call, which the API refuses with "
            f"thinking {dict(thinking)!r}: with thinking on, only tool_choice 'auto' or 'none' is "
            "allowed. Use tool_choice='auto' (the model may still call the tool), or turn thinking "
            "off for this call (thinking={'type': 'disabled'})"
        )


def to_cache_control(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The request's top-level ``cache_control``, such as ``{"type": "ephemeral", "ttl": "1h"}``.

    Raises:
        TypeError: If it is not a dict with a ``type``.
        ValueError: For a ``ttl`` other than ``"5m"`` or ``"1h"``.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        raise TypeError(f"cache_control must be a dict such as {{'type': 'ephemeral'}}, got {value!r}")
    ttl = value.get("ttl")
    if ttl is not None and ttl not in ("5m", "1h"):
        raise ValueError(f"cache_control ttl must be '5m' or '1h', got {ttl!r}")
    return dict(value)
