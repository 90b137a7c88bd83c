"""RFC 6902 JSON Patch: computing the operations between two snapshots, and applying them.

``json_patch_ops`` is tuned for a streaming parser's consecutive snapshots, where the
new value extends the old one and shares every unchanged subtree with it by identity
(path copying): identical subtrees are skipped without being looked into, a string
that grew is one ``replace`` of that leaf, and new array items and object members are
``add`` operations. It handles any two JSON values, though, not only growth.

Both functions walk the tree with an explicit stack, so deep documents do not hit
Python's recursion limit.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ("JsonPatchError", "apply_patch", "json_patch_ops")

_ARRAY_INDEX: Final = re.compile(r"0|[1-9][0-9]*")
# Tells "no such key" from a key whose value is None.
_ABSENT: Final = object()


class JsonPatchError(ValueError):
    """A patch operation is malformed or does not fit the document it is applied to."""


def _escape(token: str) -> str:
    if "~" not in token and "/" not in token:
        return token
    # RFC 6901: "~" first, or the "~" introduced for "/" would be escaped again.
    return token.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    # The reverse order, so that "~01" becomes "~1" and not "/".
    return token.replace("~1", "/").replace("~0", "~")


def _same_scalar(old: Any, new: Any) -> bool:
    # The type check keeps 1, 1.0 and True apart: equal in Python, different in JSON.
    return type(old) is type(new) and bool(old == new)


def json_patch_ops(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """The JSON Patch operations that turn ``old`` into ``new``.

    Operations come in document order: for an object, removed members first, then
    changes inside kept members and added members in ``new``'s key order; for an
    array, changes inside kept items, then added items (``add`` at each new index) or
    removed items (from the last one back, so that every index is valid when applied).
    A string or number that changed, and a value whose type changed, is one
    ``replace``. Operation values are the objects from ``new``, not copies.

    Args:
        old: The value the operations start from.
        new: The value they produce.
        path: The JSON pointer (already escaped) under which ``old`` and ``new`` sit
            in a larger document; the operations' paths start with it.

    Returns:
        The operations, as dicts with ``op``, ``path`` and, for ``add`` and
        ``replace``, ``value``. Empty when the values are equal.
    """
    ops: list[dict[str, Any]] = []
    # Pending comparisons (old, new, path) and operations that must come after what
    # precedes them on the stack; pushed in reverse so they pop in document order.
    work: list[tuple[Any, Any, str] | dict[str, Any]] = [(old, new, path)]
    while work:
        item = work.pop()
        if isinstance(item, dict):
            ops.append(item)
            continue
        before, after, where = item
        if before is after:
            continue
        later: list[tuple[Any, Any, str] | dict[str, Any]] = []
        if isinstance(before, dict) and isinstance(after, dict):
            # Most snapshots only add keys; check that in C before looking for removals.
            if not all(map(after.__contains__, before)):
                ops.extend(
                    {"op": "remove", "path": f"{where}/{_escape(str(key))}"}
                    for key in before
                    if key not in after
                )
            for key, value in after.items():
                previous = before.get(key, _ABSENT)
                if previous is value:
                    continue
                child = f"{where}/{_escape(str(key))}"
                if previous is _ABSENT:
                    later.append({"op": "add", "path": child, "value": value})
                else:
                    later.append((previous, value, child))
        elif isinstance(before, list) and isinstance(after, list):
            # Consecutive snapshots share all but the last item or so: find the
            # items that are not the very same object in C, not item by item.
            for index in itertools.compress(itertools.count(), map(operator.is_not, before, after)):
                later.append((before[index], after[index], f"{where}/{index}"))
            old_length, new_length = len(before), len(after)
            for index in range(old_length, new_length):
                later.append({"op": "add", "path": f"{where}/{index}", "value": after[index]})
            for index in range(old_length - 1, new_length - 1, -1):
                later.append({"op": "remove", "path": f"{where}/{index}"})
        elif not _same_scalar(before, after):
            ops.append({"op": "replace", "path": where, "value": after})
        work.extend(reversed(later))
    return ops


def _copy_tree(value: Any) -> Any:
    """A deep copy of the dicts and lists in ``value``; other values are shared."""
    if not isinstance(value, dict | list):
        return value
    root: dict[Any, Any] | list[Any] = {} if isinstance(value, dict) else []
    work: list[tuple[Any, dict[Any, Any] | list[Any]]] = [(value, root)]
    while work:
        source, target = work.pop()
        pairs = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in pairs:
            if isinstance(item, dict | list):
                copied: Any = {} if isinstance(item, dict) else []
                work.append((item, copied))
            else:
                copied = item
            if isinstance(target, dict):
                target[key] = copied
            else:
                target.append(copied)
    return root


def _array_index(token: str, array: list[Any], *, for_add: bool, pointer: str) -> int:
    if token == "-" and for_add:
        return len(array)
    if _ARRAY_INDEX.fullmatch(token) is None:
        raise JsonPatchError(f"{pointer!r}: {token!r} is not an array index")
    index = int(token)
    if index > len(array) or (index == len(array) and not for_add):
        raise JsonPatchError(f"{pointer!r}: index {index} is out of range for an array of {len(array)}")
    return index


def _parent(document: Any, pointer: str) -> tuple[Any, str]:
    """The container that ``pointer`` points into, and the last token, unescaped."""
    if not pointer.startswith("/"):
        raise JsonPatchError(f"{pointer!r} is not a JSON pointer (it must be empty or start with '/')")
    tokens = [_unescape(token) for token in pointer[1:].split("/")]
    node = document
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise JsonPatchError(f"{pointer!r}: no member {token!r}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(token, node, for_add=False, pointer=pointer)]
        else:
            raise JsonPatchError(f"{pointer!r}: {token!r} goes into a value that is not a container")
    return node, tokens[-1]


def apply_patch(document: Any, ops: Iterable[Mapping[str, Any]], *, in_place: bool = False) -> Any:
    """Apply JSON Patch ``add``, ``replace`` and ``remove`` operations to a document.

    Values taken from the operations are copied into the document, so later
    operations never modify the objects the operations hold (a streaming parser's
    snapshots, say).

    Args:
        document: The JSON value to patch.
        ops: The operations, applied in order.
        in_place: Modify ``document`` itself instead of a deep copy of it. Use it to
            keep a long-lived document up to date at the cost of each patch alone;
            the default copies the whole document on every call.

    Returns:
        The patched document (a new root when an operation replaces the root).

    Raises:
        JsonPatchError: If an operation is malformed, unsupported, or names a
            location the document does not have.
    """
    if not in_place:
        document = _copy_tree(document)
    for op in ops:
        kind = op.get("op")
        pointer = op.get("path")
        if kind not in ("add", "replace", "remove"):
            raise JsonPatchError(f"unsupported operation {kind!r} (expected 'add', 'replace' or 'remove')")
        if not isinstance(pointer, str):
            raise JsonPatchError(f"operation {kind!r} has no string 'path'")
        value: Any = None
        if kind != "remove":
            if "value" not in op:
                raise JsonPatchError(f"operation {kind!r} at {pointer!r} has no 'value'")
            value = _copy_tree(op["value"])
        if pointer == "":
            if kind == "remove":
                raise JsonPatchError("cannot remove the whole document")
            document = value
            continue
        parent, token = _parent(document, pointer)
        if isinstance(parent, dict):
            if kind != "add" and token not in parent:
                raise JsonPatchError(f"{pointer!r}: no member {token!r} to {kind}")
            if kind == "remove":
                del parent[token]
            else:
                parent[token] = value
        elif isinstance(parent, list):
            index = _array_index(token, parent, for_add=kind == "add", pointer=pointer)
            if kind == "add":
                parent.insert(index, value)
            elif kind == "replace":
                parent[index] = value
            else:
                del parent[index]
        else:
            raise JsonPatchError(f"{pointer!r}: the parent is not an object or an array")
    return document
