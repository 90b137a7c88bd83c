"""Incremental parsing of JSON (and comma-separated lists) out of streamed model text.

``IncrementalJsonParser`` is a pushdown state machine fed one piece of text at a time.
It keeps its state between pieces, so every character is examined once, and it keeps
the document as a tree of working containers, one per open ``{`` or ``[``, holding
the members completed so far. A snapshot (``value``) is built on demand by *path
copying*: the containers on the path from the root to the member being written are
shallow-copied, the member in progress is added to the copies, and every completed
subtree is shared, not copied. A completed container is never modified again and the
copies are never modified at all, so snapshots already handed out stay as they were.

**Snapshots are read-only, and the final value is the parser's own.** Consecutive
snapshots share their completed subtrees by identity (that is what keeps them linear:
a snapshot independent of the others would copy the whole document, quadratic over a
stream), so a consumer that changes a snapshot's list or dict changes it in later
snapshots too; copy a snapshot before changing it. Nothing a snapshot holds is part of
the value ``finish`` returns: the parser keeps every container twice, the one it
returns from ``finish`` (never handed out before) and the *shown* twin that snapshots
are built from, and adds each completed member to both. Changing a snapshot can
therefore never change, or slip past the checks of, the final value. The twin costs
one more dict or list per container and one more insertion per member.

Choices for partial text, all made so that a snapshot is always valid JSON and only
ever grows the way a reader expects:

* **Keys.** A key whose string is still open, or whose value has not started yet,
  is not shown: ``{"na`` and ``{"name":`` both give ``{}``.
* **Strings.** A value string is shown as far as it has been decoded:
  ``{"name": "Fr`` gives ``{'name': 'Fr'}``. An escape cut off by the end of a piece
  (``"ab\\``, ``"\\u00``) is held back until it is complete, and so is a ``\\uD8xx``
  high surrogate until the next piece shows whether a low surrogate follows, so a
  pair split across pieces decodes to one character. A lone surrogate escape is kept
  as a lone surrogate character, as ``json.loads`` does.
* **Numbers.** A number is shown as its longest prefix that is a valid JSON number:
  ``67`` gives 67, ``1.`` gives 1, ``1.5e+`` gives 1.5. A number with no valid
  prefix yet (``-``) is omitted together with its key or array slot.
* **Literals.** ``true``, ``false`` and ``null`` are omitted, with their key or slot,
  until their last letter arrives.
* **Where the document starts.** Prose before the document and a Markdown fence
  (```` ```json ```` or a bare ```` ``` ````) are skipped: the document starts at the
  first ``{`` or ``[``. A top-level scalar is accepted only when the text (after
  whitespace and an opening fence) *starts* with one: a string is shown as it grows;
  a number or literal is shown once complete (a number is complete when a character
  that cannot continue it arrives, or at ``finish``). If what looked like a
  top-level number or literal turns out not to be one (``1. First...``, ``the``),
  the text is treated as prose and the search for ``{``/``[`` goes on; nothing was
  shown, so nothing is taken back. Text after the completed top-level value (a
  closing fence, trailing prose) is ignored.
* **Leniency.** Control characters inside strings are accepted (models emit raw
  newlines in strings); everything else is strict JSON: no trailing commas, no
  comments, no single quotes, no ``NaN``.
* **Errors.** ``feed`` never raises for bad text: at the first syntax error it stops
  parsing and keeps its last snapshot. ``finish`` raises ``OutputParserException``
  for a syntax error, for text with no JSON value, and for a truncated document
  (the output ended inside a JSON document, so the best partial value is not the
  answer).
* **Depth.** Nesting deeper than ``max_depth`` (:data:`MAX_DEPTH`, 128, by default) is
  an error like a syntax error: parsing stops at the ``{`` or ``[`` that opens the level
  past the limit, and ``finish`` raises ``OutputParserException`` naming the depth and
  the limit. The parser itself never recurses (its stack is a list), so any limit works
  here; the limit exists because the value goes on to code that does recurse, one
  Python frame or more per level (``==``, ``repr``, ``json.dumps``, ``copy.deepcopy`` in
  ``astream_log``), which fails with a bare ``RecursionError`` somewhere far from the
  parser at a few hundred levels. 128 (serde_json's default too) is far beyond any
  document a model writes, and far below where those consumers fail.

Cost: parsing is linear in the text. A snapshot costs one shallow copy of each open
container (done in C by ``dict.copy``/``list.copy``) plus joining the string in
progress; that is proportional to the width of the open path, not to the document.

``IncrementalListSplitter`` splits a comma-separated list as it streams.
"""

from __future__ import annotations

import re
from typing import Any, Final, NoReturn

from ._exceptions import OutputParserException

__all__ = ("MAX_DEPTH", "IncrementalJsonParser", "IncrementalListSplitter", "check_max_depth")

#: How deeply arrays and objects may nest by default (see "Depth" above).
MAX_DEPTH: Final = 128

# Parser states. Those up to _COLON expect a structural token and skip whitespace.
_AFTER: Final = 0  # after an object member or array item: ',' or the closer
_VALUE: Final = 1  # after ':' or after ',' in an array: a value
_ARRAY_FIRST: Final = 2  # after '[': a value or ']'
_KEY_FIRST: Final = 3  # after '{': a key or '}'
_KEY: Final = 4  # after ',' in an object: a key
_COLON: Final = 5  # after a key: ':'
_STRING: Final = 6
_ESCAPE: Final = 7
_NUMBER: Final = 8
_LITERAL: Final = 9
_PRELUDE: Final = 10  # nothing but whitespace seen yet
_FENCE_TICKS: Final = 11  # inside the backticks that may open a fence
_FENCE_INFO: Final = 12  # after "```": the info string ("json") up to the newline
_AFTER_FENCE: Final = 13  # after the fence's first line
_PROSE: Final = 14  # skipping text up to the first '{' or '['
_DONE: Final = 15  # the top-level value is complete; the rest is ignored
_TOO_DEEP: Final = -2  # what _begin_value returns for an opener past max_depth

_WHITESPACE: Final = frozenset(" \t\n\r")
_NON_WHITESPACE: Final = re.compile(r"[^ \t\n\r]")
_STRING_STOP: Final = re.compile(r'["\\]')
_NUMBER_CHARS: Final = re.compile(r"[-+.eE0-9]+")
# The longest prefix of a run of number characters that is itself a JSON number.
_NUMBER_PREFIX: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_OPENER: Final = re.compile(r"[{\[]")
_FENCE_INFO_STOP: Final = re.compile(r"[\n{\[]")
_NUMBER_START: Final = frozenset("-0123456789")
_LITERALS: Final = {"t": "true", "f": "false", "n": "null"}
_LITERAL_VALUES: Final[dict[str, Any]] = {"true": True, "false": False, "null": None}
_SIMPLE_ESCAPES: Final = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_HEX: Final = frozenset("0123456789abcdefABCDEF")


class _Missing:
    """Marks "no member in progress to show" (``None`` is a JSON value)."""


_MISSING: Final = _Missing()


def _number_value(text: str) -> int | float:
    if "." in text or "e" in text or "E" in text:
        return float(text)
    return int(text)


def _same_number(left: int | float | None, right: int | float | None) -> bool:
    # 1 and 1.0 are equal but show differently; 1.5 and 1.5e-0 are the same value.
    return type(left) is type(right) and left == right


def check_max_depth(max_depth: object) -> int:
    """Return ``max_depth`` if it is a usable nesting limit, else raise ``ValueError``."""
    if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
        raise ValueError(f"max_depth must be a positive int, got {max_depth!r}")
    return max_depth


def _describe(char: str) -> str:
    return "a line break" if char == "\n" else repr(char)


class _Frame:
    """An open ``{`` or ``[``: its completed members, twice, and for an object the key in hand.

    ``container`` holds the parser's own values (what ``finish`` returns); ``shown`` holds
    the same members as snapshots show them (completed containers by their ``shown``
    twin), so nothing a snapshot hands out is part of the final value.
    """

    __slots__ = ("container", "key", "shown")

    def __init__(self, container: dict[str, Any] | list[Any], shown: dict[str, Any] | list[Any]) -> None:
        self.container = container
        self.shown = shown
        # Set once a key's string has closed; the member it names is in progress.
        self.key = ""


class IncrementalJsonParser:
    """Parses a JSON document out of model text arriving in pieces.

    Feed each piece to ``feed``; when it returns True, ``value`` holds a new snapshot
    (the best valid JSON value for the text so far, with open strings, arrays and
    objects closed). Call ``finish`` at the end of the stream for the final value.
    The module docstring lists how partial keys, strings, numbers and literals are
    shown and where the document is taken to start.

    Args:
        max_depth: How deeply arrays and objects may nest; deeper nesting is an error
            that ``finish`` raises.

    Raises:
        ValueError: If ``max_depth`` is not a positive int.
    """

    __slots__ = (
        "_cache",
        "_cache_valid",
        "_complete",
        "_consumed",
        "_dirty",
        "_error",
        "_escape",
        "_finished",
        "_high_surrogate",
        "_is_key",
        "_literal",
        "_literal_length",
        "_max_depth",
        "_number",
        "_number_shown",
        "_pieces",
        "_received",
        "_result",
        "_shown_result",
        "_stack",
        "_started",
        "_state",
        "_ticks",
    )

    def __init__(self, max_depth: int = MAX_DEPTH) -> None:
        """Start with no text and no value."""
        self._max_depth = check_max_depth(max_depth)
        self._state: int = _PRELUDE
        self._stack: list[_Frame] = []
        # The decoded text of the string in progress, joined only for a snapshot.
        self._pieces: list[str] = []
        self._is_key = False
        self._escape = ""  # an escape sequence cut off by the end of a piece
        self._high_surrogate = ""  # held back until we know whether a low one follows
        self._number = ""
        # The number the last reported snapshot shows, to tell whether "1" -> "1." or
        # "1.5" -> "1.5e-0" changed anything (they did not) without building a snapshot.
        self._number_shown: int | float | None = None
        self._literal = ""
        self._literal_length = 0
        self._ticks = 0
        self._received: list[str] = []
        self._consumed = 0
        self._dirty = False
        self._started = False
        self._complete = False
        self._result: Any = None  # the final value: never part of a snapshot
        self._shown_result: Any = None  # the complete document as snapshots show it
        self._error: str | None = None
        self._finished = False
        self._cache: Any = None
        self._cache_valid = False

    @property
    def has_value(self) -> bool:
        """Whether a JSON value has started, so that ``value`` means something."""
        return self._started

    @property
    def is_complete(self) -> bool:
        """Whether the top-level value has been read to its end."""
        return self._complete

    @property
    def result(self) -> Any:
        """The final value once ``is_complete`` (the object ``finish`` returns, which
        shares no list or dict with any snapshot); ``None`` before."""
        return self._result

    @property
    def text(self) -> str:
        """All the text fed so far (for an error message about the value it held)."""
        return "".join(self._received)

    @property
    def value(self) -> Any:
        """The best valid JSON value for the text so far.

        A new object each time the value changes; never modified after it is returned.
        It shares completed subtrees with earlier and later snapshots, so treat it as
        read-only (see the module docstring), and shares nothing with what ``finish``
        returns. ``None`` while ``has_value`` is false (check ``has_value`` to tell that
        apart from a JSON ``null``).
        """
        if not self._cache_valid:
            self._cache = self._snapshot()
            self._cache_valid = True
        return self._cache

    def feed(self, text: str) -> bool:
        """Consume the next piece of model text.

        Args:
            text: The piece, in stream order.

        Returns:
            True if ``value`` changed since the last call that returned True, that is
            when a new snapshot should be emitted.

        Raises:
            RuntimeError: If ``finish`` has already been called.
        """
        if self._finished:
            raise RuntimeError("IncrementalJsonParser.feed() called after finish()")
        if not text:
            return False
        self._received.append(text)
        if self._error is None and self._state != _DONE:
            self._scan(text)
            if self._state == _NUMBER and self._stack:
                shown = self._partial_number()
                if not _same_number(shown, self._number_shown):
                    self._number_shown = shown
                    self._dirty = True
        self._consumed += len(text)
        changed = self._dirty
        if changed or self._complete:
            self._dirty = False
            self._cache_valid = False
            self._cache = None  # an old snapshot is not kept alive until the next value is asked
        return changed

    def finish(self) -> Any:
        """End the stream and return the final value.

        Returns:
            The parsed top-level JSON value: equal to the last snapshot of a complete
            document, but sharing no list or dict with any snapshot ``value`` gave.

        Raises:
            OutputParserException: If the text held a syntax error, nested deeper than
                ``max_depth``, held no JSON value, or ended inside the JSON document;
                ``text`` is everything received.
        """
        self._finished = True
        if self._error is not None:
            self._raise(f"Invalid JSON in the model's output: {self._error}")
        if self._complete:
            return self._result
        if self._state == _NUMBER and not self._stack:
            # A top-level number only ends at the end of the stream.
            number = self._number
            if _NUMBER_PREFIX.fullmatch(number) is not None:
                try:
                    value = _number_value(number)
                except ValueError as exc:
                    self._raise(f"Invalid JSON in the model's output: number {number!r}: {exc}")
                self._result = self._shown_result = value
                self._complete = self._started = True
                self._cache_valid = False
                return value
            if _NUMBER_PREFIX.fullmatch(number + "0") is None:
                # Not a number cut short ("1.", "-") but prose like "2024-05-01".
                self._raise("No JSON value found in the model's output (expected a '{' or '[' to start one)")
        if self._started or self._state in (_NUMBER, _LITERAL):
            self._raise(
                "The model's output ended inside a JSON document: "
                f"the text stopped {self._where_truncated()} before the document was complete"
            )
        self._raise("No JSON value found in the model's output (expected a '{' or '[' to start one)")

    def _raise(self, message: str) -> NoReturn:
        raise OutputParserException(message, text="".join(self._received))

    def _where_truncated(self) -> str:
        state = self._state
        if state in (_STRING, _ESCAPE):
            return "inside a key string" if self._is_key else "inside a string"
        if state in (_NUMBER, _LITERAL):
            return "inside a number" if state == _NUMBER else "inside a literal"
        return f"with {len(self._stack)} bracket(s) still open"

    def _partial_number(self) -> int | float | None:
        """The value of the longest prefix of the number in progress that is a number."""
        match = _NUMBER_PREFIX.match(self._number)
        if match is None:
            return None
        try:
            return _number_value(match.group())
        except ValueError:
            # Beyond int()'s digit limit: such a number fails at its end anyway.
            return None

    def _snapshot(self) -> Any:
        if self._complete:
            return self._shown_result
        stack = self._stack
        state = self._state
        leaf: Any = _MISSING
        if state in (_STRING, _ESCAPE):
            if not self._is_key:
                leaf = self._partial_string()
        elif state == _NUMBER and stack:
            shown = self._partial_number()
            if shown is not None:
                leaf = shown
        for frame in reversed(stack):
            container = frame.shown
            if isinstance(container, dict):
                members = container.copy()
                if leaf is not _MISSING:
                    members[frame.key] = leaf
                leaf = members
            else:
                items = container.copy()
                if leaf is not _MISSING:
                    items.append(leaf)
                leaf = items
        return None if leaf is _MISSING else leaf

    def _partial_string(self) -> str:
        pieces = self._pieces
        if len(pieces) == 1:
            return pieces[0]
        # Keep the join so that the next snapshot joins only what arrived since.
        joined = "".join(pieces)
        pieces[:] = [joined]
        return joined

    def _fail(self, message: str, at: int) -> None:
        self._error = f"{message} at character {self._consumed + at}"

    def _scan(self, text: str) -> None:
        stack = self._stack
        state = self._state
        n = len(text)
        i = 0
        while i < n:
            if state == _STRING:
                match = _STRING_STOP.search(text, i)
                end = n if match is None else match.start()
                if end > i:
                    if self._high_surrogate:
                        self._append(self._high_surrogate)
                        self._high_surrogate = ""
                    self._append(text[i:end])
                if match is None:
                    break
                i = end + 1
                if text[end] == '"':
                    state = self._close_string()
                else:
                    self._escape = "\\"
                    state = _ESCAPE
                continue

            char = text[i]
            if state <= _COLON:
                if char in _WHITESPACE:
                    match = _NON_WHITESPACE.search(text, i)
                    i = n if match is None else match.start()
                    continue
                if state == _AFTER:
                    container = stack[-1].container
                    is_object = isinstance(container, dict)
                    if char == ",":
                        state = _KEY if is_object else _VALUE
                    elif char == ("}" if is_object else "]"):
                        state = self._close_container()
                    else:
                        closer = "'}'" if is_object else "']'"
                        self._fail(f"expected ',' or {closer}, found {_describe(char)}", i)
                        break
                    i += 1
                elif state in (_VALUE, _ARRAY_FIRST):
                    if char == "]" and state == _ARRAY_FIRST:
                        state = self._close_container()
                        i += 1
                        continue
                    new_state = self._begin_value(char)
                    if new_state < 0:
                        if new_state == _TOO_DEEP:
                            depth = len(stack) + 1
                            self._fail(
                                f"nesting depth {depth} exceeds the limit of {self._max_depth} levels (max_depth)",
                                i,
                            )
                        else:
                            self._fail(f"expected a value, found {_describe(char)}", i)
                        break
                    state = new_state
                    if state != _NUMBER:
                        i += 1
                elif state == _COLON:
                    if char != ":":
                        self._fail(f"expected ':' after an object key, found {_describe(char)}", i)
                        break
                    state = _VALUE
                    i += 1
                else:  # _KEY_FIRST or _KEY
                    if char == '"':
                        self._pieces = []
                        self._is_key = True
                        state = _STRING
                    elif char == "}" and state == _KEY_FIRST:
                        state = self._close_container()
                    else:
                        self._fail(f"expected a '\"' to start an object key, found {_describe(char)}", i)
                        break
                    i += 1

            elif state == _NUMBER:
                match = _NUMBER_CHARS.match(text, i)
                if match is not None:
                    i = match.end()
                    self._number += match.group()
                if i < n:
                    # text[i] cannot continue a number: the number has ended.
                    state = self._end_number(i)
                    if state < 0:
                        break

            elif state == _ESCAPE:
                i += 1
                sequence = self._escape + char
                if len(sequence) == 2:
                    if char == "u":
                        self._escape = sequence
                        continue
                    decoded = _SIMPLE_ESCAPES.get(char)
                    if decoded is None:
                        self._fail(f"invalid escape '\\{char}' in a string", i - 1)
                        break
                    self._escape = ""
                    self._append_decoded(decoded)
                    state = _STRING
                else:
                    if char not in _HEX:
                        self._fail(f"invalid \\u escape {sequence!r} in a string", i - 1)
                        break
                    if len(sequence) < 6:
                        self._escape = sequence
                        continue
                    self._escape = ""
                    self._append_code_point(int(sequence[2:], 16))
                    state = _STRING

            elif state == _LITERAL:
                literal = self._literal
                if char == literal[self._literal_length]:
                    i += 1
                    self._literal_length += 1
                    if self._literal_length == len(literal):
                        self._dirty = True
                        value = _LITERAL_VALUES[literal]
                        state = self._complete_value(value, value)
                elif not stack:
                    # It was prose that began like a literal ("the", "no"): look on.
                    state = _PROSE
                else:
                    self._fail(f"invalid literal (expected {literal!r}), found {_describe(char)}", i)
                    break

            elif state == _PROSE:
                match = _OPENER.search(text, i)
                if match is None:
                    break
                i = match.start() + 1
                state = self._open(text[match.start()])

            elif state in (_PRELUDE, _AFTER_FENCE):
                if char in _WHITESPACE:
                    i += 1
                elif char == "`" and state == _PRELUDE:
                    self._ticks = 1
                    state = _FENCE_TICKS
                    i += 1
                else:
                    new_state = self._begin_value(char)
                    if new_state < 0:
                        state = _PROSE
                    else:
                        state = new_state
                        if state != _NUMBER:
                            i += 1

            elif state == _FENCE_TICKS:
                if char == "`":
                    self._ticks += 1
                    i += 1
                    if self._ticks == 3:
                        state = _FENCE_INFO
                else:
                    state = _PROSE

            elif state == _FENCE_INFO:
                match = _FENCE_INFO_STOP.search(text, i)
                if match is None:
                    break
                i = match.start()
                if text[i] == "\n":
                    state = _AFTER_FENCE
                    i += 1
                else:
                    state = _PROSE

            else:  # _DONE: what follows the document is not ours to parse
                break
        self._state = state

    def _append(self, text: str) -> None:
        self._pieces.append(text)
        if not self._is_key:
            self._dirty = True

    def _append_decoded(self, char: str) -> None:
        if self._high_surrogate:
            self._append(self._high_surrogate + char)
            self._high_surrogate = ""
        else:
            self._append(char)

    def _append_code_point(self, code: int) -> None:
        if 0xDC00 <= code <= 0xDFFF and self._high_surrogate:
            high = ord(self._high_surrogate)
            self._high_surrogate = ""
            self._append(chr(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00)))
        elif 0xD800 <= code <= 0xDBFF:
            if self._high_surrogate:
                self._append(self._high_surrogate)
            self._high_surrogate = chr(code)
        else:
            self._append_decoded(chr(code))

    def _begin_value(self, char: str) -> int:
        """The state after ``char`` starts a value, -1 if it cannot start one, or
        ``_TOO_DEEP`` if it opens one level more than ``max_depth``."""
        if char == '"':
            self._pieces = []
            self._is_key = False
            self._dirty = self._started = True
            return _STRING
        if char == "{" or char == "[":
            if len(self._stack) >= self._max_depth:
                return _TOO_DEEP
            return self._open(char)
        if char in _NUMBER_START:
            self._number = ""
            self._number_shown = None
            return _NUMBER
        literal = _LITERALS.get(char)
        if literal is not None:
            self._literal = literal
            self._literal_length = 1
            return _LITERAL
        return -1

    def _open(self, char: str) -> int:
        if char == "{":
            self._stack.append(_Frame({}, {}))
        else:
            self._stack.append(_Frame([], []))
        self._dirty = self._started = True
        return _KEY_FIRST if char == "{" else _ARRAY_FIRST

    def _close_string(self) -> int:
        if self._high_surrogate:
            self._append(self._high_surrogate)
            self._high_surrogate = ""
        text = "".join(self._pieces)
        self._pieces = []
        if self._is_key:
            self._stack[-1].key = text
            return _COLON
        return self._complete_value(text, text)

    def _end_number(self, at: int) -> int:
        number = self._number
        if _NUMBER_PREFIX.fullmatch(number) is None:
            if not self._stack:
                # Prose that began like a number ("1. First", "2024-05-01 report").
                return _PROSE
            self._fail(f"invalid number {number!r}", at)
            return -1
        try:
            value = _number_value(number)
        except ValueError as exc:
            self._fail(f"number {number[:20]!r}... cannot be read ({exc})", at)
            return -1
        if not _same_number(value, self._number_shown):
            self._dirty = True
        self._number_shown = None
        if not self._stack:
            self._started = True
        return self._complete_value(value, value)

    def _close_container(self) -> int:
        frame = self._stack.pop()
        return self._complete_value(frame.container, frame.shown)

    def _complete_value(self, value: Any, shown: Any) -> int:
        """Add a completed value to the open container (``shown``: its snapshot twin,
        the value itself for a string, number or literal)."""
        stack = self._stack
        if stack:
            frame = stack[-1]
            container = frame.container
            if isinstance(container, dict):
                key = frame.key
                container[key] = value
                frame.shown[key] = shown  # type: ignore[call-overload]
            else:
                container.append(value)
                frame.shown.append(shown)  # type: ignore[union-attr]
            return _AFTER
        self._result = value
        self._shown_result = shown
        self._complete = True
        return _DONE


class IncrementalListSplitter:
    """Splits a comma-separated list (``vanilla, chocolate, mint``) as it streams.

    An item is complete when the comma after it arrives; items are stripped of
    surrounding whitespace and empty items (``a,,b``, a trailing comma) are dropped.
    There is no quoting: every comma separates. Each character is handled once.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        """Start with no text."""
        # The text since the last comma, joined only when the item completes.
        self._pending: list[str] = []

    def feed(self, text: str) -> list[str]:
        """Consume the next piece of text.

        Args:
            text: The piece, in stream order.

        Returns:
            The items this piece completed, in order (often none).
        """
        if "," not in text:
            if text:
                self._pending.append(text)
            return []
        parts = text.split(",")
        self._pending.append(parts[0])
        items: list[str] = []
        first = "".join(self._pending).strip()
        if first:
            items.append(first)
        for part in parts[1:-1]:
            item = part.strip()
            if item:
                items.append(item)
        self._pending = [parts[-1]]
        return items

    def finish(self) -> list[str]:
        """End the stream.

        Returns:
            The last item, if the text after the last comma holds one.
        """
        last = "".join(self._pending).strip()
        self._pending = []
        return [last] if last else []
