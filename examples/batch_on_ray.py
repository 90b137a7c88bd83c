"""A few hundred inputs through ``prompt | model | parser`` on a local Ray, offline.

The chain runs on two Ray actors (``engine.ray.RayRunnable``); the driver sends at most
16 inputs at once and shows a progress line as results come back, in the order they
finish (``abatch_as_completed``), then a few of the answers in input order.

Run:  python examples/batch_on_ray.py [--inputs 300] [--backend trio|asyncio]
(needs the ``ray`` extra: ``pip install -e '.[ray]'``; starts and stops its own local Ray.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.ray import RayRunnable
from nodes import ChatPromptTemplate, ScriptedChatModel, StrOutputParser

ANIMALS = ["parrot", "otter", "heron", "lynx", "newt", "ibis", "marmot", "gecko", "tapir", "wren"]


def make_chain() -> RayRunnable[dict[str, str], str]:
    prompt = ChatPromptTemplate.from_template("Name one fact about the {animal}, number {n}.")
    # Offline: a scripted model streams its replies a token at a time, 2 ms apart.
    model = ScriptedChatModel(
        replies=[
            "It is very good at hiding in plain sight.",
            "It sleeps more than most people would guess.",
            "It has been seen using tools.",
        ],
        delay=0.002,
    )
    return RayRunnable(prompt | model | StrOutputParser(), num_actors=2, actor_options={"num_cpus": 0})


def progress(done: int, total: int, started: float) -> str:
    width = 30
    filled = width * done // total
    rate = done / max(time.perf_counter() - started, 1e-9)
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  {rate:5.0f} items/s"


async def run(count: int) -> None:
    chain = make_chain()
    inputs = [{"animal": ANIMALS[i % len(ANIMALS)], "n": str(i)} for i in range(count)]
    answers: list[str | None] = [None] * count
    started = time.perf_counter()
    interactive = sys.stdout.isatty()
    try:
        async with chain.abatch_as_completed(inputs, max_concurrency=16) as finished:
            done = 0
            async for index, answer in finished:
                answers[index] = answer
                done += 1
                if interactive or done % 100 == 0 or done == count:
                    print(progress(done, count, started), end="" if interactive else "\n", flush=True)
    finally:
        chain.shutdown()
    if interactive:
        print()
    print(f"{count} answers in {time.perf_counter() - started:.1f} s on 2 Ray actors")
    for index in (0, 1, count - 1):
        print(f"  {index}: {inputs[index]['animal']}: {answers[index]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=300)
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    args = parser.parse_args()
    import ray

    # A local Ray of our own: no dashboard, session files in a temporary folder, and the
    # workers import this checkout.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="ray", dir="/tmp") as folder:
        os.environ["RAY_TMPDIR"] = folder
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            anyio.run(run, args.inputs, backend=args.backend)
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
