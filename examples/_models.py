"""The model the examples use: Claude when ANTHROPIC_API_KEY is set, else a scripted one."""

from __future__ import annotations

import os
from collections.abc import Sequence

from nodes import BaseChatModel, ScriptedChatModel


def pick_model(replies: Sequence[str | Sequence[str]], *, delay: float = 0.0) -> BaseChatModel:
    """``ChatAnthropic`` with a real key, otherwise ``ScriptedChatModel(replies)``."""
    if os.environ.get("ANTHROPIC_API_KEY"):
        try:
            from nodes import ChatAnthropic  # type: ignore[attr-defined]
        except ImportError:  # pragma: no cover - ChatAnthropic ships with nodes
            pass
        else:
            return ChatAnthropic(model=os.environ.get("RILLET_MODEL", "claude-3-5-haiku-latest"))  # type: ignore[no-any-return]
    return ScriptedChatModel(replies=replies, delay=delay)
