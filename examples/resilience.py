"""When the model fails: retries and fallbacks that never show a token twice.

Offline, with scripted models that fail the way a model API does:

1. a 529 (overloaded) before the first byte, retried after the server's ``retry-after``;
2. an ``overloaded_error`` in the middle of the stream, after the message-start chunk but
   before any text (before the commit point): retried, and the consumer sees only the
   second attempt;
3. an error after two tokens (after the commit point): not retried, the consumer keeps
   the two tokens and gets the original error, with a note;
3b. a model that goes silent before its first token, stopped by ``with_timeout(idle=...)``
   and retried (a ``StepTimeout`` before the commit point is retryable);
4. a primary model that stays overloaded, and a fallback model that takes over;

then the event view of case 4's attempts (each attempt is a nested run with its attempt
number in its metadata) and the token usage of every attempt, failed ones included.

Run: python examples/resilience.py   (offline; no model needed)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# The packages of the checkout this example belongs to, first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anthropic
import anyio
import httpx2

from engine import Runnable
from nodes import AIMessageChunk, ModelStreamError, ScriptedChatModel, ScriptedReply, StrOutputParser


def overloaded(retry_after: str) -> anthropic.OverloadedError:
    """The anthropic SDK's error for an HTTP 529 answer that carries ``retry-after``."""
    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    response = httpx2.Response(529, headers={"retry-after": retry_after}, request=request, json=body)
    return anthropic.OverloadedError("Error code: 529 - Overloaded", response=response, body=body)


def overloaded_mid_stream() -> ModelStreamError:
    """What ``ChatAnthropic`` raises for an ``event: error`` of type ``overloaded_error``."""
    return ModelStreamError(
        "the Messages API stream failed mid-response with overloaded_error",
        chunks_delivered=1,
        error_type="overloaded_error",
    )


def usage(input_tokens: int, output_tokens: int = 0) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens}


async def tokens_of(chain: Runnable[Any, str]) -> str:
    """The chain's streamed tokens joined with |, or those before its error and the error."""
    seen: list[str] = []
    try:
        async with chain.astream("Tell me a joke") as stream:
            async for token in stream:
                seen.append(token)
    except Exception as exc:
        notes = " / ".join(getattr(exc, "__notes__", []))
        return f"{'|'.join(seen)}  -> {type(exc).__name__}: {exc} [{notes}]"
    return "|".join(seen)


async def retry_a_529() -> None:
    model = ScriptedChatModel([ScriptedReply(error=overloaded("0.2")), "Why did the parrot talk?"])
    print("1. a 529 before the first chunk, retried after retry-after (0.2 s):")
    print("  ", await tokens_of(model.with_retry() | StrOutputParser()))
    print(f"   the model was called {model.calls} times")


async def retry_before_the_commit_point() -> None:
    first = ScriptedReply("Lost words", preamble="msg_1", error=overloaded_mid_stream(), error_after=1)
    model = ScriptedChatModel([first, ScriptedReply("Because it could.", preamble="msg_2")])
    print("2. overloaded_error mid-stream, after message-start, before any text: retried")
    print("  ", await tokens_of(model.with_retry(wait_exponential_jitter=False) | StrOutputParser()))


async def no_retry_after_the_commit_point() -> None:
    reply = ScriptedReply("It was a polly-glot.", error=overloaded_mid_stream(), error_after=2)
    model = ScriptedChatModel([reply, "never streamed"])
    print("3. overloaded_error after two tokens (after the commit point): not retried")
    print("  ", await tokens_of(model.with_retry() | StrOutputParser()))
    print(f"   the model was called {model.calls} time")


# -- a stall caught by ``idle`` ------------------------------------------------------------


async def stall_caught_by_idle() -> None:
    # The first attempt goes silent after its message-start chunk (before any text, so
    # before the commit point) for a minute; ``idle`` stops it after 0.2 s whatever the
    # provider does, and the StepTimeout (a TimeoutError) is retried.
    start = AIMessageChunk(content="", id="msg_1")
    silent = ScriptedReply("never streamed", preamble=start, stall=60.0, stall_before=1)
    model = ScriptedChatModel([silent, "A parrot, mid-sentence."])
    guarded = model.with_timeout(idle=0.2).with_retry(stop_after_attempt=2, wait_exponential_jitter=False)
    print("3b. a model silent for a minute before its first token: idle stops it, retried")
    print("  ", await tokens_of(guarded | StrOutputParser()))
    print(f"   the model was called {model.calls} times")


def fallback_chain() -> Runnable[Any, str]:
    # The primary's message-start chunk reports the prompt's tokens, then it fails.
    start = AIMessageChunk(content="", id="msg_p", usage_metadata=usage(12))
    busy = ScriptedReply(preamble=start, error=overloaded_mid_stream(), error_after=1)
    primary = ScriptedChatModel([busy], name="claude-primary")
    backup = ScriptedChatModel(
        [ScriptedReply("A parrot walks into a bar.", usage=usage(12, 7))], name="claude-backup"
    )
    retried = primary.with_retry(stop_after_attempt=2, wait_exponential_jitter=False)
    return retried.with_fallbacks([backup]) | StrOutputParser()


def show(event: dict[str, Any]) -> str:
    """One event, indented by its depth, with its attempt number and what it carries."""
    attempt = event["metadata"].get("attempt")
    line = "  " * len(event["parent_ids"]) + f"{event['event']} {event['name']}"
    if attempt is not None:
        line += f" (attempt {attempt})"
    data = event["data"]
    if "error" in data:
        line += f": {type(data['error']).__name__}"
    elif "chunk" in data:
        line += f": {data['chunk'].content if isinstance(data['chunk'], AIMessageChunk) else data['chunk']!r}"
    return line


async def fall_back() -> None:
    print("4. the primary stays overloaded (2 attempts), the backup takes over")
    print("  ", await tokens_of(fallback_chain()))
    print()
    print("Events of case 4 (model and wrapper events; parser and sequence left out):")
    events: list[dict[str, Any]] = []
    async with fallback_chain().astream_events("Tell me a joke", exclude_types=["parser"]) as stream:
        async for event in stream:
            if event["name"] != "RunnableSequence":
                events.append(event)
    for event in events:
        if not (event["event"].endswith("_stream") and event["name"].startswith("Runnable")):
            print(show(event))
    end = next(e for e in events if e["event"] == "on_chain_end" and e["name"] == "RunnableWithFallbacks")
    print()
    print("Usage per attempt, on RunnableWithFallbacks' end event:")
    for record in end["data"]["usage"]["attempts"]:
        print(f"  attempt {record['attempt']} ({record['name']}, {record['outcome']}): {record['usage']}")
    print(f"  total: {end['data']['usage']['total']}")


async def main() -> None:
    await retry_a_529()
    await retry_before_the_commit_point()
    await no_retry_after_the_commit_point()
    await stall_caught_by_idle()
    await fall_back()


if __name__ == "__main__":
    anyio.run(main, backend="trio")
