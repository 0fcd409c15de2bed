"""The six Segment calls as message builders: the official signatures, written once.

Each builder takes the arguments of one call, in the official library's positional
order, and returns a new :class:`Message` in Segment's wire shape (SPEC.md section 2)
whose values are plain JSON types, validating as it goes: a bad argument raises
:class:`~simple_segment.ValidationError` naming the argument (or the path inside it).
Builders never modify what the caller passed.  They know nothing of serialization
limits, batching or HTTP.

These functions are the single source of the call signatures: ``Client.track``,
``Batch.track`` and ``simple_segment.track`` are made from them (see ``_calls``).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from typing import Any, ParamSpec, TypeAlias
from uuid import UUID

from ._ids import next_message_id
from ._values import (
    FOREIGN,
    _InvalidValueError,
    describe,
    foreign_scalar,
    format_datetime,
    json_copy,
    now_iso,
    plain_str,
    to_json_value,
)
from ._version import VERSION
from .errors import ValidationError

__all__ = ["Id", "Message", "Properties", "Result", "alias", "group", "identify", "page", "screen", "track"]

LIBRARY_NAME = "simple_segment"
MAX_MESSAGE_ID_LENGTH = 100
"""A messageId must be shorter than this."""

Id: TypeAlias = str | int | float | Decimal | UUID
"""What an id may be given as; it is sent as a string (``user_id=0`` is valid)."""
Properties: TypeAlias = Mapping[str, Any]
"""A dict of properties, traits, context or integrations; values follow SPEC.md section 4."""

P = ParamSpec("P")

_ABSENT_AS_NONE = frozenset({"userId", "anonymousId", "name", "category"})
"""Fields the official library always puts in ``msg`` (as None when not given).  Ours
leaves them off the wire, and reading them from the returned ``msg`` gives None."""


class Message(dict[str, Any]):
    """A Segment message: a dict of plain JSON values, as sent.

    A field the caller did not give is not on the wire, yet reading one of the fields
    the official library always includes (``userId``, ``anonymousId``, ``name``,
    ``category``) gives None, as there: ``msg["anonymousId"] is None``.  Any other
    missing key raises :class:`KeyError` as in a dict.
    """

    __slots__ = ()

    def __missing__(self, key: str) -> None:
        if key in _ABSENT_AS_NONE:
            return
        raise KeyError(key)


Result: TypeAlias = tuple[bool, Message]
"""``(ok, msg)``: what every call returns, as in the official library.

``msg`` is the message as sent (or as it would be sent).  ``ok`` is False only when
nothing was sent for it: delivery failed and ``on_error`` took the error, or a
``before_send`` hook dropped the message.
"""


# -- argument checks -------------------------------------------------------------


def _id(value: object, field: str) -> str | None:
    if value is None or type(value) is str:
        return value
    if type(value).__module__.startswith(FOREIGN):  # a DataFrame's value: numpy int, NaN, NA
        value = _foreign(value, field)
        if value is None:
            return None
    if isinstance(value, Enum):
        value = _enum_value(value, field)
    if isinstance(value, str):
        return plain_str(value)
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal, UUID)):
        raise ValidationError(field, f"must be a str or a number, not {type(value).__name__}")
    if isinstance(value, float) and value - value != 0.0:
        raise ValidationError(field, f"{value!r} is not a valid id")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValidationError(field, f"{value} is not a valid id")
    try:
        return str(value)
    except Exception as exc:
        too_long = isinstance(value, int) and isinstance(exc, ValueError)  # Python's digit limit
        reason = "an int with too many digits to send" if too_long else f"could not be made a str: {describe(exc)}"
        raise ValidationError(field, reason) from exc


def _enum_value(value: Enum, field: str) -> object:
    try:
        return value.value
    except Exception as exc:  # a caller's Enum whose value property raises
        raise ValidationError(field, f"{type(value).__name__} has no usable value: {describe(exc)}") from exc


def _foreign(value: object, field: str) -> object:
    try:
        return foreign_scalar(value)
    except Exception as exc:
        raise ValidationError(field, f"could not be read: {describe(exc)}") from exc


def _required_id(value: object, field: str) -> str:
    text = _id(value, field)
    if not text:
        raise ValidationError(field, "is required")
    return text


def mapping(value: object, field: str) -> dict[str, Any]:
    """Return ``value`` (a dict of the caller's, or None) converted to a new dict of JSON values.

    Raises :class:`ValidationError` naming ``field`` when it is not a dict or holds a bad value.
    """
    if value is None:
        return {}
    if type(value) is not dict and not isinstance(value, Mapping):  # (the ABC check only for the rare non-dict)
        raise ValidationError(field, f"must be a dict, not {type(value).__name__}")
    converted: dict[str, Any] = to_json_value(value, field)
    return converted


def _optional_str(value: object, field: str) -> str | None:
    if value is None or type(value) is str:
        return value
    if isinstance(value, Enum):  # a str Enum is its value, as json.dumps sends it
        value = _enum_value(value, field)
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a str, not {type(value).__name__}")
    return plain_str(value)


def _timestamp(value: object) -> str:
    if type(value).__module__.startswith(FOREIGN):  # numpy.datetime64; NaT is no timestamp given
        value = _foreign(value, "timestamp")
    if value is None:
        return now_iso()
    if not isinstance(value, dt.datetime):
        raise ValidationError("timestamp", f"must be a datetime, not {type(value).__name__}")
    try:
        return format_datetime(value)
    except _InvalidValueError as exc:
        raise ValidationError("timestamp", exc.reason) from exc.__cause__


def _message_id(value: object) -> str:
    if value is None:
        return next_message_id()
    text = _required_id(value, "message_id")
    if len(text) >= MAX_MESSAGE_ID_LENGTH:
        raise ValidationError("message_id", f"must be shorter than {MAX_MESSAGE_ID_LENGTH} characters")
    return text


def _common(  # noqa: PLR0913 - the fields every call shares
    kind: str,
    user_id: object,
    anonymous_id: object,
    context: object,
    timestamp: object,
    integrations: object,
    message_id: object,
    *,
    need_identity: bool = True,
) -> Message:
    user = _id(user_id, "user_id")
    anonymous = _id(anonymous_id, "anonymous_id")
    if need_identity and not user and not anonymous:
        raise ValidationError("user_id", "user_id or anonymous_id is required")
    stamp = _timestamp(timestamp)
    # The caller's context keys win, "library" included; their dict is copied, never modified.
    ctx = {"library": {"name": LIBRARY_NAME, "version": VERSION}}
    if context is not None:
        ctx.update(mapping(context, "context"))
    msg = Message(
        type=kind,
        messageId=_message_id(message_id),
        timestamp=stamp,
        context=ctx,
        integrations=mapping(integrations, "integrations"),
    )
    if user is not None:
        msg["userId"] = user
    if anonymous is not None:
        msg["anonymousId"] = anonymous
    return msg


# -- the six calls -----------------------------------------------------------------


def identify(  # noqa: PLR0913 - the official signature
    user_id: Id | None = None,
    traits: Properties | None = None,
    context: Properties | None = None,
    timestamp: dt.datetime | None = None,
    anonymous_id: Id | None = None,
    integrations: Properties | None = None,
    message_id: Id | None = None,
) -> Message:
    """Record who a user is and what is known about them (``traits``)."""
    msg = _common("identify", user_id, anonymous_id, context, timestamp, integrations, message_id)
    msg["traits"] = mapping(traits, "traits")
    return msg


def track(  # noqa: PLR0913 - the official signature
    user_id: Id | None = None,
    event: str | None = None,
    properties: Properties | None = None,
    context: Properties | None = None,
    timestamp: dt.datetime | None = None,
    anonymous_id: Id | None = None,
    integrations: Properties | None = None,
    message_id: Id | None = None,
) -> Message:
    """Record that a user did ``event``, with its ``properties``."""
    name = _optional_str(event, "event")
    if not name:
        raise ValidationError("event", "is required (a non-empty str)")
    msg = _common("track", user_id, anonymous_id, context, timestamp, integrations, message_id)
    msg["event"] = name
    msg["properties"] = mapping(properties, "properties")
    return msg


def alias(  # noqa: PLR0913 - the official signature
    previous_id: Id | None = None,
    user_id: Id | None = None,
    context: Properties | None = None,
    timestamp: dt.datetime | None = None,
    integrations: Properties | None = None,
    message_id: Id | None = None,
) -> Message:
    """Merge the identity ``previous_id`` into ``user_id``."""
    previous = _required_id(previous_id, "previous_id")
    user = _required_id(user_id, "user_id")
    msg = _common("alias", user, None, context, timestamp, integrations, message_id)
    msg["previousId"] = previous
    return msg


def group(  # noqa: PLR0913 - the official signature
    user_id: Id | None = None,
    group_id: Id | None = None,
    traits: Properties | None = None,
    context: Properties | None = None,
    timestamp: dt.datetime | None = None,
    anonymous_id: Id | None = None,
    integrations: Properties | None = None,
    message_id: Id | None = None,
) -> Message:
    """Associate a user with the group ``group_id`` (an account, a company)."""
    gid = _required_id(group_id, "group_id")
    msg = _common("group", user_id, anonymous_id, context, timestamp, integrations, message_id)
    msg["groupId"] = gid
    msg["traits"] = mapping(traits, "traits")
    return msg


def page(  # noqa: PLR0913 - the official signature
    user_id: Id | None = None,
    category: str | None = None,
    name: str | None = None,
    properties: Properties | None = None,
    context: Properties | None = None,
    timestamp: dt.datetime | None = None,
    anonymous_id: Id | None = None,
    integrations: Properties | None = None,
    message_id: Id | None = None,
) -> Message:
    """Record a page view (``name`` within ``category``)."""
    title = _optional_str(name, "name")
    section = _optional_str(category, "category")
    msg = _common("page", user_id, anonymous_id, context, timestamp, integrations, message_id)
    msg["properties"] = mapping(properties, "properties")
    if title is not None:
        msg["name"] = title
    if section is not None:
        msg["category"] = section
    return msg


def _retyped(builder: Callable[P, Message], kind: str, doc: str) -> Callable[P, Message]:
    @functools.wraps(builder)
    def build(*args: P.args, **kwargs: P.kwargs) -> Message:
        msg = builder(*args, **kwargs)
        msg["type"] = kind
        return msg

    build.__name__ = build.__qualname__ = kind
    build.__doc__ = doc
    return build


screen = _retyped(page, "screen", "Record a mobile screen view (``name`` within ``category``).")


# -- after the call ------------------------------------------------------------------


def with_defaults(msg: Message, context: dict[str, Any] | None, integrations: dict[str, Any] | None) -> Message:
    """Return ``msg`` with default ``context``/``integrations`` (a batch's, a scope's) merged under its own.

    The merge is recursive (:func:`merged_under`): a key the message sets wins over
    the same key of the defaults, and where both hold a dict (``context["page"]``)
    the two are merged key by key.  ``msg`` itself is not modified, and each message
    gets its own copy of the defaults (a hook or a caller changing one message's
    nested context cannot change the next message's).
    """
    msg = Message(msg)
    if context:
        msg["context"] = merged_under(msg["context"], context)
    if integrations:
        msg["integrations"] = merged_under(msg["integrations"], integrations)
    return msg


def merged_under(own: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Return a new dict: ``defaults`` (copied) with ``own`` over it, dicts found in both merged recursively.

    Both are converted JSON values; the defaults' keys come first, as ``{**defaults, **own}`` orders them.
    """
    result: dict[str, Any] = {}
    for key, under in defaults.items():
        if key not in own:
            result[key] = json_copy(under)
        else:
            value = own[key]
            result[key] = merged_under(value, under) if type(value) is dict and type(under) is dict else value
    for key, value in own.items():
        if key not in result:
            result[key] = value
    return result


_REQUIRED = {
    "identify": (),
    "track": ("event",),
    "page": (),
    "screen": (),
    "group": ("groupId",),
    "alias": ("previousId", "userId"),
}


def check(value: object, field: str) -> Message:
    """Validate a message handed back by a hook (``before_send``); return it converted.

    It must still be a message: a dict with a known ``type``, a ``messageId`` shorter
    than 100 characters, a ``timestamp`` string, the ids its type needs, and values
    that can be sent.  Raises :class:`ValidationError` with ``field`` before the path.
    """
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must return a message dict or None, not {type(value).__name__}")
    msg = Message(to_json_value(value, field))
    kind = msg.get("type")
    if kind not in _REQUIRED:
        raise ValidationError(f"{field}.type", f"must be one of {', '.join(_REQUIRED)}, not {kind!r}")
    message_id = msg.get("messageId")
    if not isinstance(message_id, str) or not message_id or len(message_id) >= MAX_MESSAGE_ID_LENGTH:
        raise ValidationError(f"{field}.messageId", f"must be a str shorter than {MAX_MESSAGE_ID_LENGTH} characters")
    if not isinstance(msg.get("timestamp"), str):
        raise ValidationError(f"{field}.timestamp", "must be an ISO-8601 str")
    for name in _REQUIRED[kind]:
        if not msg.get(name):
            raise ValidationError(f"{field}.{name}", f"is required in a {kind} message")
    if kind != "alias" and not msg.get("userId") and not msg.get("anonymousId"):
        raise ValidationError(f"{field}.userId", "userId or anonymousId is required")
    for name in ("context", "integrations", "properties", "traits"):
        if name in msg and not isinstance(msg[name], dict):
            raise ValidationError(f"{field}.{name}", "must be a dict")
    return msg
