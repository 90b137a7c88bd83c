"""A model that calls tools, streamed: ``ToolLoop(model, tools)``.

Offline, with a scripted model that asks for two tools in its first reply and answers in
its second. Three views of the same loop:

1. ``astream``: the model's tokens of every turn as they come, and each tool's
   ``ToolMessage`` as soon as that tool has finished. A tool starts as soon as its
   arguments are complete in the stream: ``get_weather`` answers while the model is
   still writing ``get_time``'s arguments.
2. ``astream_events``: every model call and every tool call is a run nested under the
   loop, with its turn in its metadata.
3. ``ainvoke``: the transcript, the messages the loop added to the conversation.

Run: python examples/tool_loop.py   (offline; no model needed)
"""

from __future__ import annotations

import sys
from pathlib import Path

# The packages of the checkout this example belongs to, first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from nodes import AIMessage, AIMessageChunk, ScriptedChatModel, ToolCall, ToolLoop, ToolMessage, tool


@tool
async def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"sunny, 24 C in {city}"


@tool
async def get_time(city: str) -> str:
    """Get the local time in a city."""
    return f"14:05 in {city}"


def loop() -> ToolLoop:
    """The model asks for both tools, then answers from their results."""
    ask = AIMessage(
        "Let me look that up.",
        tool_calls=[
            ToolCall(name="get_weather", args={"city": "Lisbon"}, id="call_1"),
            ToolCall(name="get_time", args={"city": "Lisbon"}, id="call_2"),
        ],
    )
    answer = "It is sunny and 24 C in Lisbon, and the local time is 14:05."
    # A short pause before each chunk, as a model's stream has.
    model = ScriptedChatModel([ask, answer], delay=0.02, name="claude")
    return ToolLoop(model, [get_weather, get_time], max_turns=4)


async def main() -> None:
    question = "What's the weather and the time in Lisbon?"

    print("1. astream: tokens and tool answers as they come")
    async for chunk in loop().astream(question):
        if isinstance(chunk, AIMessageChunk):
            for part in chunk.tool_call_chunks:
                print(
                    f"\n  [call {part.name} ({part.id})]" if part.name else f" {part.args}",
                    end="",
                    flush=True,
                )
            print(chunk.text, end="", flush=True)
        elif isinstance(chunk, ToolMessage):
            print(f"\n  [{chunk.name} answered: {chunk.content}]", flush=True)
    print("\n")

    print("2. astream_events: each model call and tool call nested under the loop")
    async for event in loop().astream_events(question):
        kind, name = event["event"], event["name"]
        if kind in ("on_chain_start", "on_chain_end"):
            print(f"{kind} {name}")
        elif kind in ("on_chat_model_start", "on_chat_model_end", "on_tool_start"):
            print(
                f"  {kind} {name} (turn {event['metadata']['turn']}, under the loop: {bool(event['parent_ids'])})"
            )
        elif kind == "on_tool_end":
            print(f"  on_tool_end {name}: {event['data']['output'].content}")
    print()

    print("3. ainvoke: the transcript")
    for message in await loop().ainvoke(question):
        calls = [call.name for call in getattr(message, "tool_calls", [])]
        print(f"  {type(message).__name__}: {message.text!r}" + (f" calls {calls}" if calls else ""))


if __name__ == "__main__":
    anyio.run(main, backend="trio")
