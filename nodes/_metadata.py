"""Message metadata added up: ``additional_kwargs`` and ``response_metadata`` of chunks.

The rules are langchain-core's ``merge_dicts`` (compared side by side in
``tests/test_messages.py``); the code is rillet's own.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ("merge_metadata",)

# Tells a key that is absent from one that holds None.
_MISSING: Final = object()

# String keys whose equal values are one value, not fragments to join: a provider's ids
# and version tags repeat on every chunk that carries them.
_SAME_STRING_KEYS: Final = frozenset({"id", "output_version", "model_provider"})
# Int keys where the later value replaces the earlier one instead of adding to it: a
# position, or a time.
_LATEST_INT_KEYS: Final = frozenset({"index", "created", "timestamp"})


def merge_metadata(dicts: Sequence[Mapping[str, Any]], where: str) -> dict[str, Any]:
    """Metadata dicts folded left to right, with langchain-core's ``merge_dicts`` rules.

    A key's values: ``None`` gives way to any other value; strings concatenate (equal
    ``id``/``output_version``/``model_provider`` strings stay one, and an ``index``
    string starting with ``"lc_"`` stays the first); dicts merge key by key; lists append,
    except that dict items with the same ``"index"`` (an int, or a string starting with
    ``"lc_"``) and no differing ``id`` merge into the first; otherwise equal values stay
    one; differing ints add up (``index``, ``created`` and ``timestamp``: the later wins).

    Raises:
        TypeError: If a key holds values of different types, two differing bools, or two
            differing values of a type with no merge rule (floats, tuples...); the message
            names the key's path from ``where``.
    """
    present = [values for values in dicts if values]
    if not present:
        return {}
    merged = dict(present[0])
    for values in present[1:]:
        _merge_into(merged, values, where)
    return merged


def _merge_into(merged: dict[str, Any], values: Mapping[str, Any], where: str) -> None:
    for key, value in values.items():
        old = merged.get(key, _MISSING)
        if old is _MISSING or (old is None and value is not None):
            merged[key] = value
        elif value is not None:
            merged[key] = _merge_value(old, value, key, f"{where}[{key!r}]")


def _merge_value(old: Any, new: Any, key: object, where: str) -> Any:
    if type(old) is not type(new):
        raise TypeError(
            f"cannot add message chunks: {where} is of type {type(old).__name__} in one chunk and of type "
            f"{type(new).__name__} in another ({reprlib.repr(old)}, {reprlib.repr(new)})"
        )
    if isinstance(old, str):
        if (key in _SAME_STRING_KEYS and old == new) or (key == "index" and old.startswith("lc_")):
            return old
        return old + new
    if isinstance(old, dict):
        merged = dict(old)
        _merge_into(merged, new, where)
        return merged
    if isinstance(old, list):
        return _merge_lists(old, new, where)
    if old == new:
        return old
    if isinstance(old, int) and not isinstance(old, bool):
        return new if key in _LATEST_INT_KEYS else old + new
    raise TypeError(
        f"cannot add message chunks: {where} holds two different values of type "
        f"{type(old).__name__} ({reprlib.repr(old)} and {reprlib.repr(new)}), which do not add up"
    )


def _merge_key(item: object) -> object:
    """The ``index`` by which a list item merges with an earlier one, or ``None``."""
    if not isinstance(item, dict):
        return None
    index = item.get("index")
    if isinstance(index, int) or (isinstance(index, str) and index.startswith("lc_")):
        return index
    return None


def _same_id(left: object, right: object) -> bool:
    return left in (None, "") or right in (None, "") or left == right


def _merge_lists(old: list[Any], new: list[Any], where: str) -> list[Any]:
    merged = list(old)
    for item in new:
        index = _merge_key(item)
        if index is None:
            merged.append(item)
            continue
        for position, earlier in enumerate(merged):
            if _merge_key(earlier) == index and _same_id(earlier.get("id"), item.get("id")):
                # The later item's type is the earlier one's: it would concatenate.
                rest = {key: value for key, value in item.items() if key != "type"}
                merged[position] = _merge_value(earlier, rest, position, f"{where}[{position}]")
                break
        else:
            merged.append(item)
    return merged
