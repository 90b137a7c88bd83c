"""Scenario 9: ``ChatAnthropic`` against the loopback Messages API server.

The server (``tests/anthropic_server.py``) streams a reply of ``TOKENS`` text deltas with
no delay. The contenders read it, taking turns:

* **A, the SDK itself** (the reference): ``client.messages.stream(...)`` iterated through
  ``stream.text_stream``, with one ``AsyncAnthropic`` made before the clock starts;
* **A', the SDK's raw events** (context only, no target): the same client's
  ``messages.create(..., stream=True)``, text taken from the ``text_delta`` events;
* **B, the node alone**: ``ChatAnthropic(...).astream("hi")`` (a client per call, as the
  node does);
* **C, a chain**: ``ChatPromptTemplate | ChatAnthropic | StrOutputParser``.

Figures, per stream:

* *per token*: (time of the last text chunk - time of the first) / (tokens - 1), taken by
  the consumer: neither client creation nor the HTTP request is in it;
* *time to first chunk*: from the server's first byte to the consumer holding the first
  text chunk. The server stamps ``time.perf_counter()`` right before it writes the
  response head, and again right before it writes the first event of the body (the
  server builds the whole event plan between the two, which no client can overlap);
* *call to end*: from the call (``messages.stream`` / ``astream``) to the end of the
  stream, everything included.

The server runs in a child process, not a thread of this one: a server thread competes for
the GIL with the client it serves (it writes each event with its own ``select`` and
``sendall``, and every one of those hands the GIL over), which paces the stream to the
server instead of the client and turns the per-token figure into a measure of thread
switching. ``perf_counter`` is ``CLOCK_MONOTONIC`` on Linux (system-wide), so the server's
stamps compare with the client's across the process boundary.
"""

from __future__ import annotations

import importlib
import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio

from ._chains import nodes_status
from ._harness import (
    Budget,
    Contender,
    Sample,
    Section,
    Stat,
    Table,
    fmt_ratio,
    fmt_us,
    run_alternating,
    stat,
    target_at_most,
)

__all__ = ("run",)

KEY = "anthropic"
TOKENS = 2_000
MODEL = "claude-test-model"  # not in the SDK's DEPRECATED_MODELS (which warn)
MAX_TOKENS = 4_096
API_KEY = "test-key"
TARGET_OVERHEAD = 1.20
TESTS = Path(__file__).resolve().parent.parent / "tests"

# Slots of the stamp array the server process shares with this one.
_HEAD, _FIRST_EVENT, _LAST_BYTE, _RESPONSES = range(4)

_SDK = "A: SDK text_stream"
_RAW = "A': SDK create(stream=True) events"
_NODE = "B: ChatAnthropic"
_CHAIN = "C: prompt | ChatAnthropic | StrOutputParser"


def _tokens(count: int) -> list[str]:
    """Short word-like deltas, as a model streams them."""
    return [f" w{index % 97}" for index in range(count)]


# -- the server process -----------------------------------------------------------------


def _instrument(server: Any, stamps: Any) -> None:
    """Make ``server`` stamp each streamed response: head, first event, end (one at a time)."""
    stream, send_event = server._stream, server._send_event
    pending = [False]

    def timed_stream(*args: Any) -> None:
        pending[0] = True
        stamps[_HEAD] = time.perf_counter()
        try:
            stream(*args)
        finally:
            stamps[_LAST_BYTE] = time.perf_counter()
            stamps[_RESPONSES] += 1

    def timed_send_event(*args: Any) -> None:
        if pending[0]:
            pending[0] = False
            stamps[_FIRST_EVENT] = time.perf_counter()
        send_event(*args)

    server._stream = timed_stream
    server._send_event = timed_send_event


def _serve(pipe: Connection, stamps: Any, tokens: int) -> None:
    """The child process: serve ``tokens`` deltas per request until told to stop."""
    sys.path.insert(0, str(TESTS))
    module: Any = importlib.import_module("anthropic_server")
    server = module.AnthropicServer(default_reply=module.TextStream(_tokens(tokens)))
    _instrument(server, stamps)
    server.start()
    pipe.send(server.base_url)
    pipe.recv()  # "stop"
    try:
        server.stop()
    except RuntimeError as exc:
        pipe.send(f"{exc!r} (cause: {exc.__cause__!r})")
    else:
        pipe.send("")


class _Server:
    """The loopback server running in a child process, and the stamps it takes."""

    def __init__(self, tokens: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._stamps: Any = context.Array("d", 4, lock=False)
        self._process = context.Process(
            target=_serve, args=(child, self._stamps, tokens), name="anthropic-server", daemon=True
        )
        self._process.start()
        child.close()
        if not self._pipe.poll(60):
            self._process.kill()
            raise RuntimeError("the loopback server process did not start within 60 s")
        self.base_url: str = self._pipe.recv()

    @property
    def responses(self) -> int:
        """How many streamed responses the server has finished writing."""
        return int(self._stamps[_RESPONSES])

    async def stamps_after(self, responses: int) -> tuple[float, float, float]:
        """Head, first-event and last-byte stamps of the response numbered ``responses``.

        The server stamps the end after its last write, so the consumer may see the end of
        the stream first: wait (untimed) until the server has counted the response.
        """
        deadline = time.perf_counter() + 5.0
        while self.responses < responses:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the server never finished response {responses}")
            await anyio.sleep(0.0002)
        stamps = self._stamps
        return stamps[_HEAD], stamps[_FIRST_EVENT], stamps[_LAST_BYTE]

    def close(self) -> None:
        """Stop the server; raise if one of its threads failed."""
        try:
            self._pipe.send("stop")
            errors = self._pipe.recv() if self._pipe.poll(30) else "no answer to stop within 30 s"
        finally:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._pipe.close()
        if errors:
            raise RuntimeError(f"the loopback server failed: {errors}")


# -- the contenders ---------------------------------------------------------------------


def _node(base_url: str) -> Any:
    from nodes import ChatAnthropic

    return ChatAnthropic(model=MODEL, max_tokens=MAX_TOKENS, api_key=API_KEY, base_url=base_url)


def _chain(base_url: str) -> Any:
    from nodes import ChatPromptTemplate, StrOutputParser

    return ChatPromptTemplate.from_template("{q}") | _node(base_url) | StrOutputParser()


def _measure(server: _Server, streams: int, kind: str) -> Callable[[], Awaitable[Sample]]:
    """One repetition: ``streams`` calls one after the other; the medians of their figures.

    ``kind`` is ``"sdk"`` (A), ``"raw"`` (A'), ``"node"`` (B) or ``"chain"`` (C). The SDK's
    client and the rillet runnables are made before the clock starts; the node still makes
    its own client inside each call.
    """

    async def measure() -> Sample:
        import anthropic

        figures: dict[str, list[float]] = {}
        client: Any = None
        runnable: Any = None
        if kind in ("sdk", "raw"):
            client = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=server.base_url, max_retries=0)
        else:
            runnable = (_node if kind == "node" else _chain)(server.base_url)
        value: Any = {"q": "hi"} if kind == "chain" else "hi"
        try:
            for _ in range(streams):
                expected = server.responses + 1
                count = 0
                first = last = math.nan
                started = time.perf_counter()
                if kind == "sdk":
                    async with client.messages.stream(
                        model=MODEL, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": "hi"}]
                    ) as stream:
                        async for text in stream.text_stream:
                            if text:
                                last = time.perf_counter()
                                if not count:
                                    first = last
                                count += 1
                elif kind == "raw":
                    events = await client.messages.create(
                        model=MODEL,
                        max_tokens=MAX_TOKENS,
                        messages=[{"role": "user", "content": "hi"}],
                        stream=True,
                    )
                    async with events:
                        async for event in events:
                            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                                text = event.delta.text
                                if text:
                                    last = time.perf_counter()
                                    if not count:
                                        first = last
                                    count += 1
                else:
                    async for chunk in runnable.astream(value):
                        text = chunk if isinstance(chunk, str) else chunk.content
                        if text:
                            last = time.perf_counter()
                            if not count:
                                first = last
                            count += 1
                ended = time.perf_counter()
                if count != TOKENS:
                    raise RuntimeError(f"{kind}: received {count} text chunks, expected {TOKENS}")
                head, first_event, last_byte = await server.stamps_after(expected)
                for name, figure in (
                    ("per_token", (last - first) / (count - 1)),
                    ("ttfc_head", first - head),
                    ("ttfc_event", first - first_event),
                    ("call_to_first", first - started),
                    ("call_to_end", ended - started),
                    ("server_per_token", (last_byte - first_event) / count),
                ):
                    figures.setdefault(name, []).append(figure)
        finally:
            if client is not None:
                await client.close()
        return {name: statistics.median(values) for name, values in figures.items()}

    return measure


# -- the report -------------------------------------------------------------------------


def _stats(samples: dict[str, dict[str, list[float]]], figure: str) -> dict[str, Stat]:
    return {label: stat(figures[figure]) for label, figures in samples.items()}


def _table(
    caption: str, columns: Sequence[tuple[str, str]], samples: dict[str, dict[str, list[float]]]
) -> Table:
    headers = ["contender"]
    for title, _ in columns:
        headers += [f"{title} median", "min", "max"]
    table = Table(headers, caption=caption)
    for label in samples:
        cells = [label]
        for _, figure in columns:
            row = stat(samples[label][figure])
            cells += [fmt_us(row.median), fmt_us(row.low), fmt_us(row.high)]
        table.add(*cells)
    return table


def _sooner_or_later(delta: float) -> str:
    return f"{fmt_us(abs(delta))} {'later' if delta >= 0 else 'sooner'}"


def run(budget: Budget) -> Section:
    """Run scenario 9 and return its report section."""
    section = Section(KEY, "9. ChatAnthropic against the loopback Messages API (2,000 tokens)")
    reason = nodes_status()
    if reason is not None:
        section.skipped.append(f"anthropic: {reason}")
        return section
    try:
        importlib.import_module("anthropic")
    except ImportError:
        section.skipped.append("anthropic: the anthropic SDK is not installed")
        return section
    streams = budget.size(3, 1)
    reps = budget.reps(7, 1)
    section.notes.append(
        f"The loopback server (`tests/anthropic_server.py`, in a child process) streams "
        f"{TOKENS:,} text deltas with no delay. **A** iterates the SDK's own "
        f"`client.messages.stream(...).text_stream` with one `AsyncAnthropic` made before the "
        f"clock starts (its keep-alive connection is reused); **A'** (for context, no target) reads "
        f"the same client's `messages.create(..., stream=True)` events, the SDK's cheapest public "
        f'path, which skips the snapshot the helper builds; **B** is `ChatAnthropic.astream("hi")` '
        f"(bare `async for`; the node makes a client, hence a connection, per call); **C** is "
        f'`ChatPromptTemplate | ChatAnthropic | StrOutputParser` with `astream({{"q": "hi"}})`. '
        f"Each repetition makes {streams} calls per contender and keeps the medians of their "
        f"figures; tables show median/min/max over {reps} repetitions, contenders taking turns."
    )
    section.notes.append(
        "*Per token*: (last text chunk - first text chunk) / (tokens - 1), timed by the consumer, "
        "so client creation and the request are not in it. *From head* / *from first event*: "
        "`perf_counter()` stamped by the server right before it writes the response head, and "
        "right before it writes the first event of the body (between the two it builds its event "
        "plan, a few ms no client can overlap), to the consumer holding the first text chunk. "
        "*Call to end*: from `messages.stream(...)` / `astream(...)` to the end of the stream. "
        "*Server pace*: the server's own time per token (first event to last byte): a contender "
        "slower than that is measured on its own work, not waiting for the server. The server "
        "runs in its own process because a server thread would take the GIL from the client at "
        "every event and pace the stream to thread switches."
    )
    server = _Server(TOKENS)
    try:
        contenders: list[Contender] = []
        for backend in budget.backends:
            for label, kind in ((_SDK, "sdk"), (_RAW, "raw"), (_NODE, "node"), (_CHAIN, "chain")):
                contenders.append(
                    Contender(
                        f"{label} [{backend}]",
                        backend,
                        _measure(server, streams, kind),
                        warmup=_measure(server, 1, kind),
                    )
                )
        samples = run_alternating(contenders, reps, name="anthropic")
    finally:
        server.close()

    section.tables.append(
        _table(
            f"Per token and end to end: {TOKENS:,} tokens, {reps} reps x {streams} calls",
            [("per token", "per_token"), ("call to end", "call_to_end"), ("server pace", "server_per_token")],
            samples,
        )
    )
    section.tables.append(
        _table(
            "Time to first text chunk",
            [
                ("from first event", "ttfc_event"),
                ("from head", "ttfc_head"),
                ("from call", "call_to_first"),
            ],
            samples,
        )
    )
    per_token = _stats(samples, "per_token")
    ttfc = _stats(samples, "ttfc_event")
    total = _stats(samples, "call_to_end")
    pace = _stats(samples, "server_per_token")
    for backend in budget.backends:
        sdk = f"{_SDK} [{backend}]"
        for label, short in ((_NODE, "B/A"), (_CHAIN, "C/A")):
            mine = f"{label} [{backend}]"
            ratio = per_token[mine].median / per_token[sdk].median
            section.findings.append(
                f"{short} per-token time on {backend}: {fmt_ratio(ratio)} "
                f"({fmt_us(per_token[mine].median)} vs {fmt_us(per_token[sdk].median)} per token); "
                f"call to end {fmt_ratio(total[mine].median / total[sdk].median)} "
                f"({fmt_us(total[mine].median)} vs {fmt_us(total[sdk].median)}); first chunk "
                f"{_sooner_or_later(ttfc[mine].median - ttfc[sdk].median)} than A after the first event "
                f"({fmt_us(ttfc[mine].median)} vs {fmt_us(ttfc[sdk].median)})"
            )
        node = f"{_NODE} [{backend}]"
        raw = f"{_RAW} [{backend}]"
        section.findings.append(
            f"for context, B/A' (the SDK's raw events) on {backend}: "
            f"{fmt_ratio(per_token[node].median / per_token[raw].median)} "
            f"({fmt_us(per_token[node].median)} vs {fmt_us(per_token[raw].median)} per token)"
        )
        section.findings.append(
            target_at_most(
                f"ChatAnthropic per-token time / SDK text_stream (B/A) on {backend}",
                per_token[node].median / per_token[sdk].median,
                TARGET_OVERHEAD,
                fmt_ratio,
            )
        )
        fastest = min(per_token[f"{label} [{backend}]"].median for label in (_SDK, _RAW, _NODE, _CHAIN))
        slowest_pace = max(pace[f"{label} [{backend}]"].median for label in (_SDK, _RAW, _NODE, _CHAIN))
        if slowest_pace > 0.8 * fastest:
            section.findings.append(
                f"caution [{backend}]: the server's pace ({fmt_us(slowest_pace)} per token) is close "
                f"to the fastest contender's ({fmt_us(fastest)}): that contender may be waiting for "
                f"the server, so its per-token time is an upper bound"
            )
    return section
