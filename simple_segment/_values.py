"""Python values to JSON values: the conversion table of SPEC.md section 4.

This module owns what a caller's value becomes on the wire (datetimes, Decimals,
Enums, bytes, numpy and pandas scalars, dict keys...) and the one walk that says
which value was bad (:func:`locate`).  It knows nothing of bytes, requests or HTTP.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from .errors import ValidationError

MAX_DEPTH = 100
"""Deepest nesting of containers accepted in a value (a message is far shallower)."""

_UTC = dt.timezone.utc
_encode: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False
).encode


_second: tuple[int, str] = (0, "")
"""The last whole second formatted by :func:`now_iso`, and its text up to the seconds."""


def now_iso() -> str:
    """Return the current UTC time as ISO-8601 with milliseconds and offset (``...T12:34:56.789+00:00``).

    Every message and every attempt is stamped, so the text of the current second is
    kept and only the milliseconds are formatted.
    """
    global _second  # noqa: PLW0603 - a one-entry cache, replaced whole (threads see one tuple or the other)
    now = time.time()
    whole = int(now)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int((now - whole) * 1000):03d}+00:00"


def format_datetime(value: dt.datetime) -> str:
    """Format a datetime as ISO-8601 with milliseconds; a naive one is taken as UTC.

    Raises :class:`_InvalidValueError` when its ``tzinfo`` fails.
    """
    try:
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=_UTC)
        return value.isoformat(timespec="milliseconds")
    except Exception as exc:
        raise _InvalidValueError(f"datetime cannot be formatted: its tzinfo raised {describe(exc)}") from exc


def safe_repr(value: object, limit: int = 60) -> str:
    """Return ``repr(value)`` for an error message, shortened, even when ``__repr__`` raises."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a caller's object may fail any way it likes
        text = f"<{type(value).__name__} whose repr() raised>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def describe(exc: BaseException, limit: int = 80) -> str:
    """Return ``Type: text`` of an exception for an error message, shortened, even when ``str()`` fails."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception of the caller's may not even print
        text = "?"
    return f"{type(exc).__name__}: {text[:limit]}" if text else type(exc).__name__


class _InvalidValueError(Exception):
    """A value with no JSON form; the walk that found it adds its path.  ``__cause__`` is kept."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- conversion (SPEC.md section 4) -------------------------------------------------


def to_json_value(value: Any, path: str) -> Any:  # noqa: ANN401 - any caller value
    """Return ``value`` converted to plain JSON types, as a new object.

    Follows the table of SPEC.md section 4.  Containers are always copied, so the
    caller's are never modified or shared.  Raises :class:`ValidationError` naming the
    path of the first bad value below ``path`` (``properties.items[2].price``): a value
    with no JSON form, a circular reference, nesting deeper than :data:`MAX_DEPTH`, or
    a caller's object whose own methods raise (that exception is the ``__cause__``).
    """
    try:
        return _convert(value, 0)
    except (_InvalidValueError, RecursionError):
        found, problem = locate(value, path, _conversion_problem, _key_problem)
        raise ValidationError(found, problem.reason) from problem.__cause__


_PLAIN = frozenset({str, int, float, bool, type(None)})
"""Types sent as they are.  Non-finite floats and huge ints are caught by the encoder."""


def _convert(value: Any, depth: int) -> Any:  # noqa: ANN401 - any caller value
    # The hot path: leaves of a plain type are taken as they are without a call.
    kind = type(value)
    if kind in _PLAIN:
        return value
    if depth >= MAX_DEPTH:
        raise _InvalidValueError(f"nested deeper than {MAX_DEPTH} levels (or a circular reference)")
    depth += 1
    if kind is dict:
        converted = {
            (key if type(key) is str else _json_key(key, value)): (
                item if type(item) in _PLAIN else _convert(item, depth)
            )
            for key, item in value.items()
        }
        if len(converted) != len(value):  # two keys became one string: one value would be lost
            raise _InvalidValueError("two keys become the same string")
        return converted
    if kind is list or kind is tuple:
        return [item if type(item) in _PLAIN else _convert(item, depth) for item in value]
    if kind is dt.datetime and type(value.tzinfo) is dt.timezone:  # the common aware datetime: no caller code runs
        return value.isoformat(timespec="milliseconds")
    try:
        return _convert_other(value, depth)
    except _InvalidValueError:
        raise
    except RecursionError:
        raise
    except Exception as exc:
        raise _InvalidValueError(f"{type(value).__name__} could not be converted: {describe(exc)}") from exc


def _convert_other(value: Any, depth: int) -> Any:  # noqa: ANN401, C901, PLR0911, PLR0912 - one branch per row of the table
    if type(value).__module__.startswith(FOREIGN):
        value = foreign_scalar(value)  # then the rows below, once (a Timestamp is a datetime)
        if type(value) in _PLAIN:
            return value
    if isinstance(value, Enum):
        return _convert(value.value, depth)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return plain_str(value)
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _InvalidValueError(f"Decimal {value} is not a finite number")
        return str(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _InvalidValueError("bytes are not valid UTF-8") from None
    if isinstance(value, Mapping):
        return _convert(dict(value), depth - 1)
    if isinstance(value, (set, frozenset, list, tuple)):
        return [_convert(item, depth) for item in value]
    raise _InvalidValueError(f"{type(value).__name__} is not JSON serializable")


FOREIGN = ("numpy", "pandas")
"""Modules whose scalars are converted by :func:`foreign_scalar` (neither is imported)."""


def foreign_scalar(value: Any) -> Any:  # noqa: ANN401, PLR0911 - a numpy or pandas value; one return per kind
    """Return a numpy or pandas scalar as the Python value it stands for; None for a missing one.

    These are the values a DataFrame hands over: numpy integers, floats and bools
    (``.item()``), ``datetime64`` (a naive ``datetime``, taken as UTC like every naive
    one), ``Timestamp`` (a ``datetime`` already); ``NaN``, ``NaT`` and ``NA`` mean "no
    value" there, so they are None.  Neither library is imported: the value is
    recognised by its type's module and used through its own methods.
    """
    kind = type(value)
    if kind.__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, dt.datetime):  # pandas.Timestamp
        return value
    dtype = getattr(value, "dtype", None)
    if getattr(dtype, "kind", "") == "M":  # numpy.datetime64: item() of [ns] is an int, of [us] a datetime
        value = value.astype("datetime64[us]").item()
        if value is not None and not isinstance(value, dt.datetime):
            raise _InvalidValueError("datetime64 is outside the range of a datetime")
        return value
    if getattr(value, "ndim", 0):  # an array or a Series (a list column): a list, not its one item
        return list(value)  # its items are numpy scalars again (NaN among them absent)
    item = getattr(value, "item", None)
    if item is None:
        return value
    value = item()
    if isinstance(value, float) and value != value:  # noqa: PLR0124 - NaN: a DataFrame's missing number
        return None
    return value


def _json_key(key: Any, mapping: Mapping[Any, Any]) -> str:  # noqa: ANN401 - any dict key
    # Keys become strings the way json.dumps writes them, so the wire matches the
    # official library's: 1 -> "1", 1.5 -> "1.5", True -> "true"; an Enum is its value.
    original = key
    if isinstance(key, Enum):
        try:
            key = key.value
        except Exception as exc:
            raise _InvalidValueError(f"Enum key has no usable value: {describe(exc)}") from exc
    elif type(key).__module__.startswith(FOREIGN):
        key = foreign_scalar(key)
    if isinstance(key, str):
        text = plain_str(key)
        if _collides(original, text, mapping):
            raise _InvalidValueError(f"key {safe_repr(original)} collides with key {text!r} once made a string")
        return text
    if not isinstance(key, (bool, int, float)) or isinstance(key, Enum):
        raise _InvalidValueError(f"dict keys must be str, int, float or bool, not {type(key).__name__}")
    if isinstance(key, float) and not math.isfinite(key):
        raise _InvalidValueError("a dict key must be a finite number")
    try:
        text = _encode(key)
        collides = text in mapping or _collides(original, text, mapping)
    except Exception as exc:
        raise _InvalidValueError(f"dict key could not be made a string: {describe(exc)}") from exc
    if collides:
        raise _InvalidValueError(f"key {safe_repr(original)} collides with key {text!r} once made a string")
    return text


def _collides(key: object, text: str, mapping: Mapping[Any, Any]) -> bool:
    # Two keys that become one string would leave one value silently dropped.  Cheap in the
    # common case: the conversion checks the converted dict's size, and this full look runs
    # only to say which key it was (and for the keys a str already holds).
    if len(mapping) < 2:  # noqa: PLR2004
        return False
    for other in mapping:
        if other is key:
            continue
        if type(other) is str:
            if other == text:
                return True
            continue
        try:
            other_text = _json_key_text(other)
        except Exception:  # noqa: BLE001, S112 - that key's own problem is reported on its own
            continue
        if other_text == text:
            return True
    return False


def _json_key_text(key: Any) -> str:  # noqa: ANN401 - any dict key
    if isinstance(key, Enum):
        key = key.value
    elif type(key).__module__.startswith(FOREIGN):
        key = foreign_scalar(key)
    return plain_str(key) if isinstance(key, str) else _encode(key)


def json_copy(value: Any) -> Any:  # noqa: ANN401 - a JSON value
    """Return a copy of a JSON value (dicts and lists copied at every level), for values already converted."""
    if type(value) is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if type(value) is list:
        return [json_copy(item) for item in value]
    return value


def plain_str(value: str) -> str:
    """Return the text of a ``str`` (subclass) as a plain ``str``, as ``json.dumps`` sends it.

    Its own ``__str__`` is not called: it may say something else, or fail.
    """
    return value if type(value) is str else str.__str__(value)


def _conversion_problem(value: object, depth: int) -> _InvalidValueError | None:
    try:
        _convert(value, depth)
    except _InvalidValueError as exc:
        return exc
    except RecursionError as exc:  # pragma: no cover - the depth limit comes first
        problem = _InvalidValueError("nested too deep to convert")
        problem.__cause__ = exc
        return problem
    return None


def _key_problem(key: object, mapping: Mapping[Any, Any]) -> _InvalidValueError | None:
    if type(key) is str:
        return None
    try:
        _json_key(key, mapping)
    except _InvalidValueError as exc:
        return exc
    return None


Problem = Callable[[object, int], "_InvalidValueError | None"]
"""Whether a subtree, at a depth, cannot be sent: its problem, or None."""
KeyProblem = Callable[[object, Mapping[Any, Any]], "_InvalidValueError | None"]
"""Whether a dict key cannot be sent: its problem, or None."""


def locate(value: object, path: str, problem: Problem, key_problem: KeyProblem) -> tuple[str, _InvalidValueError]:
    """Return the path and problem of the first bad value at or below ``value``.

    The one walk behind every "which value was it?" answer.  It runs only after a
    conversion or an encoding failed, so the fast paths never build path strings.
    At each level it goes down into the first bad key or child; it stops at
    :data:`MAX_DEPTH` and reports a container met again on the way down as a circular
    reference, so it never recurses and never runs without bound.
    """
    ancestors: list[int] = []
    node, node_path = value, path
    while True:
        depth = len(ancestors)
        if id(node) in ancestors:
            return node_path, _InvalidValueError("circular reference: a container contains itself")
        if depth >= MAX_DEPTH:
            return node_path, _InvalidValueError(f"nested deeper than {MAX_DEPTH} levels")
        ancestors.append(id(node))
        try:
            step = _first_bad_child(node, node_path, depth + 1, problem, key_problem)
        except Exception as exc:  # noqa: BLE001 - walking a caller's object may fail like converting it
            found = _InvalidValueError(f"{type(node).__name__} could not be read: {describe(exc)}")
            found.__cause__ = exc
            return node_path, found
        if step is None:
            return node_path, problem(node, depth) or _InvalidValueError("value cannot be sent")
        node_path, child = step
        if isinstance(child, _InvalidValueError):
            return node_path, child
        node = child


def _first_bad_child(
    node: object, path: str, depth: int, problem: Problem, key_problem: KeyProblem
) -> tuple[str, object] | None:
    """Return ``(path, child)`` of the first bad child, ``(path, problem)`` of a bad key, or None."""
    if isinstance(node, Enum):
        return (path, node.value) if problem(node.value, depth) else None
    if isinstance(node, Mapping):
        return _first_bad_item(node, path, depth, problem, key_problem)
    if isinstance(node, (list, tuple, set, frozenset)):
        for index, item in enumerate(node):
            if problem(item, depth) is not None:
                return f"{path}[{index}]", item
    return None


def _first_bad_item(
    node: Mapping[Any, Any], path: str, depth: int, problem: Problem, key_problem: KeyProblem
) -> tuple[str, object] | None:
    for key in node:
        found = key_problem(key, node)
        if found is not None:
            return f"{path}[{safe_repr(key)}]", found
    for key, item in node.items():
        if problem(item, depth) is not None:
            if type(key) is str:
                return (f"{path}.{key}" if path else key), item
            return f"{path}[{safe_repr(key)}]", item
    return None
