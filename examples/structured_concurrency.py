"""Several chains under one trio nursery, a deadline, a live monitor, and a clean Ctrl-C.

* Four joke chains run at once in one nursery, inside ``trio.move_on_after(deadline)``:
  the ones that finish in time deliver their joke; the deadline cancels the rest, and
  leaving each ``async with chain.astream(...)`` block returns only once every actor of
  that run has finished.
* One ``EventBus`` is shared by every run (``config={"bus": bus}``). A monitor task
  subscribes with ``overflow="drop"``, so it can never slow the chains down (if it falls
  behind, it is told how many events it lost), and prints a live progress line per run:
  tokens so far, keyed by the run's root run id.
* Ctrl-C raises ``KeyboardInterrupt`` in the nursery: every run is cancelled, the
  monitor reads the runs' last (cancellation) events, and a summary is printed.

Run: python examples/structured_concurrency.py [--deadline SECONDS]
(offline with scripted models; Claude when ANTHROPIC_API_KEY is set.)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _models import pick_model

from engine import Event, EventBus, RunCancelled, Subscription
from nodes import ChatPromptTemplate, StrOutputParser, split_tokens

# topic -> (scripted reply, seconds per token). The octopus is too long-winded for the deadline.
JOKES: dict[str, tuple[str, float]] = {
    "parrot": ("Why did the parrot wear a raincoat? Because it wanted to be a polly-unsaturated bird!", 0.03),
    "cat": ("Why was the cat sitting on the computer? To keep an eye on the mouse.", 0.05),
    "robot": (
        "Why did the robot go on vacation? It needed to recharge its batteries after a byte-sized crisis.",
        0.04,
    ),
    "octopus": (
        "An octopus walks into a bar, and the bartender asks what it will have. The octopus, "
        "being a thoughtful creature with eight arms and three hearts, takes its time, reads "
        "the whole menu twice, asks about every cocktail, orders one of each, and then starts "
        "telling the bartender a very long story about the time it escaped from an aquarium "
        "by squeezing through a drain no wider than a coin, which is where the punchline "
        "would have been, had anyone stayed long enough to hear it.",
        0.05,
    ),
}

BAR_WIDTH = 20
EVERY = 5  # print a run's progress line every this many tokens


class Run:
    """What the monitor knows about one root run."""

    def __init__(self, run_id: str, topic: str) -> None:
        self.run_id = run_id
        self.topic = topic
        self.tokens = 0
        self.state = "running"

    def line(self) -> str:
        total = len(split_tokens(JOKES[self.topic][0])) if self.topic in JOKES else self.tokens
        filled = min(BAR_WIDTH, BAR_WIDTH * self.tokens // max(total, 1))
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        return f"[{self.run_id[:8]}] {self.topic:<8} {bar} {self.tokens:>3} tokens  {self.state}"


class Board:
    """The live progress of every run, updated from the bus's events."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.dropped = 0

    def apply(self, events: Iterable[Event], *, live: bool = True) -> None:
        for event in events:
            self._apply(event, live)

    def _apply(self, event: Event, live: bool) -> None:
        kind = event["event"]
        if kind == "on_events_dropped":
            self.dropped += event["data"]["dropped"]
            return
        parents = event["parent_ids"]
        root_id = parents[0] if parents else event["run_id"]
        if kind == "on_chain_start" and not parents:
            run = self.runs[root_id] = Run(root_id, event["metadata"].get("topic", event["name"]))
        elif (run := self.runs.get(root_id)) is None:
            return
        elif kind == "on_chat_model_stream":
            run.tokens += 1
            if run.tokens % EVERY:
                return
        elif parents:
            return
        elif kind == "on_chain_end":
            run.state = "done"
        elif kind == "on_chain_error":
            error = event["data"]["error"]
            run.state = "cancelled" if isinstance(error, RunCancelled) else f"failed: {error!r}"
        else:
            return
        if live:
            print(run.line(), flush=True)


async def watch(events: Subscription, board: Board) -> None:
    """The monitor: print progress as the events arrive."""
    async for event in events:
        board.apply([event])


async def tell_joke(topic: str, bus: EventBus, jokes: dict[str, str]) -> None:
    """One chain: stream a joke about ``topic``, publishing its events on ``bus``."""
    reply, delay = JOKES[topic]
    prompt = ChatPromptTemplate.from_template("tell me a joke about {topic}")
    chain = prompt | pick_model([reply], delay=delay) | StrOutputParser()
    config: dict[str, Any] = {"bus": bus, "run_name": f"joke:{topic}", "metadata": {"topic": topic}}
    async with chain.astream({"topic": topic}, config) as chunks:
        async for chunk in chunks:
            jokes[topic] = jokes.get(topic, "") + chunk


def summary(board: Board, jokes: dict[str, str], *, deadline_hit: bool, interrupted: bool) -> None:
    print()
    print("== summary ==")
    why = (
        "interrupted (Ctrl-C)" if interrupted else "deadline reached" if deadline_hit else "all runs finished"
    )
    print(f"stopped: {why}")
    for run in board.runs.values():
        print(f"{run.topic:<8} {run.state:<10} {run.tokens:>3} tokens  root run {run.run_id}")
    print(f"events dropped by the monitor: {board.dropped}")
    for run in board.runs.values():
        if run.state == "done":
            print(f"{run.topic}: {jokes.get(run.topic, '').strip()}")


async def main(deadline: float) -> bool:
    """Run the chains; return whether Ctrl-C stopped them."""
    bus = EventBus()
    board = Board()
    jokes: dict[str, str] = {}
    deadline_hit = interrupted = False
    async with bus.subscribe(capacity=64, overflow="drop", exclude_types=["prompt", "parser"]) as events:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch, events, board)
                with trio.move_on_after(deadline) as scope:
                    async with trio.open_nursery() as runs:
                        for topic in JOKES:
                            runs.start_soon(tell_joke, topic, bus, jokes)
                deadline_hit = scope.cancelled_caught
                nursery.cancel_scope.cancel()  # the runs are over: stop the monitor
        except* KeyboardInterrupt:
            interrupted = True
        # The runs' last events (their ends, or cancellations) that the monitor did not read.
        board.apply(events.receive_available(10_000))
    summary(board, jokes, deadline_hit=deadline_hit, interrupted=interrupted)
    return interrupted


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Several chains under one nursery, with a deadline.")
    parser.add_argument(
        "--deadline", type=float, default=2.0, help="seconds before the remaining runs are cancelled"
    )
    args = parser.parse_args()
    if trio.run(main, args.deadline):
        sys.exit(130)  # the shell's code for "stopped by Ctrl-C"
