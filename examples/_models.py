"""The model the examples use: Claude when ANTHROPIC_API_KEY is set, else a scripted one."""

from __future__ import annotations

import os
from collections.abc import Sequence

from nodes import BaseChatModel, ChatAnthropic, ScriptedChatModel, ScriptedReply


def pick_model(
    replies: Sequence[str | Sequence[str] | ScriptedReply], *, delay: float = 0.0, name: str | None = None
) -> BaseChatModel:
    """``ChatAnthropic`` with a real key, otherwise ``ScriptedChatModel(replies)``.

    ``name`` is the name the scripted model's events carry (the guide's examples pass
    ``"ChatAnthropic"`` so their events read as in the guide); Claude keeps its own.
    """
    if os.environ.get("ANTHROPIC_API_KEY"):
        return ChatAnthropic(model=os.environ.get("RILLET_MODEL", "claude-haiku-4-5"))
    if name is None:
        return ScriptedChatModel(replies=replies, delay=delay)
    return ScriptedChatModel(replies=replies, delay=delay, name=name)
