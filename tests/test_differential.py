"""Differential tests: our messages equal segment-analytics-python 2.4.0's ``send=False`` messages.

The only differences allowed are the ones SPEC.md section 5 and the README document:
library name/version, left-out nulls, Decimal/UUID/naive-datetime rules, and datetime
values written with milliseconds.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from simple_segment import Client

official = pytest.importorskip("segment.analytics")
from segment.analytics.request import DatetimeSerializer  # noqa: E402

UTC = dt.timezone.utc
WHEN = dt.datetime(2024, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
LATER = dt.datetime(2024, 3, 5, 0, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))

NESTED = {
    "plan": "pro",
    "seats": 12,
    "price": 39.99,
    "trial": False,
    "tags": ["a", "b", ("c", "d")],
    "owner": {"name": "Ada", "roles": ["admin"], "limits": {"api": 1000, "ratio": 0.5}},
    "empty": {},
    "nothing": None,
    "signed_up": LATER,
    "unicode": "naïve café ☕",
}

CASES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("identify", ("user-1", {"email": "a@example.com", **NESTED}), {}),
    ("identify", (), {"anonymous_id": "anon-1", "traits": NESTED}),
    ("identify", ("user-1",), {"context": {"ip": "1.2.3.4", "app": {"name": "x"}}, "integrations": {"All": False}}),
    ("track", ("user-1", "Order Completed", NESTED), {}),
    ("track", (), {"user_id": 157963456373623802, "event": "Played", "properties": {"n": 1}}),
    ("track", ("u", "E", {}, {"locale": "fr"}, WHEN, "anon", {"Mixpanel": True}), {}),
    ("track", (None, "E"), {"anonymous_id": "a", "properties": {"list": [1, [2, [3]]]}}),
    ("alias", ("previous", "user-1"), {}),
    ("alias", (), {"previous_id": 12, "user_id": 34, "context": {"a": 1}}),
    ("group", ("user-1", "group-1", {"name": "Acme", **NESTED}), {}),
    ("group", (), {"anonymous_id": "a", "group_id": 99, "integrations": {"Salesforce": False}}),
    ("page", ("user-1", "Docs", "Install", {"path": "/install", "nested": NESTED}), {}),
    ("page", ("user-1",), {"name": "Home"}),
    ("page", (), {"anonymous_id": "a", "category": "Cat"}),
    ("screen", ("user-1", "Onboarding", "Welcome", {"step": 2}), {}),
    ("screen", (), {"user_id": "u", "properties": NESTED, "context": {"device": {"type": "ios"}}}),
]


def as_wire(msg: dict[str, Any]) -> Any:
    return json.loads(json.dumps(msg, cls=DatetimeSerializer))


def normalize(value: Any) -> Any:
    """Make datetimes comparable (we write milliseconds, the official library microseconds)."""
    if isinstance(value, dict):
        return {key: normalize(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalize(item) for item in value]
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def comparable(msg: dict[str, Any]) -> dict[str, Any]:
    wire = as_wire(msg)
    for key in ("previousId", "groupId"):  # documented: we send every id as a string
        if isinstance(wire.get(key), (int, float)):
            wire[key] = str(wire[key])
    wire["context"] = {k: v for k, v in wire["context"].items() if k != "library"}
    wire.pop("messageId")
    return normalize({key: value for key, value in wire.items() if value is not None})


@pytest.fixture(scope="module")
def theirs() -> Any:
    return official.Client("write-key", send=False)


@pytest.fixture(scope="module")
def ours() -> Client:
    return Client("write-key", send=False)


@pytest.mark.parametrize(("call", "args", "kwargs"), CASES)
def test_same_message_as_official(theirs: Any, ours: Client, call: str, args: tuple, kwargs: dict) -> None:
    """For the same arguments our message equals the official one, minus the documented differences."""
    kwargs = {"timestamp": WHEN, **kwargs} if len(args) < 5 else kwargs
    # The official client writes into the caller's context, so each library gets its own copy.
    ok_theirs, msg_theirs = getattr(theirs, call)(*copy.deepcopy(args), **copy.deepcopy(kwargs))
    ok_ours, msg_ours = getattr(ours, call)(*args, **kwargs)
    assert ok_theirs is ok_ours is True
    assert comparable(msg_ours) == comparable(msg_theirs)
    assert msg_ours["context"]["library"] == {"name": "simple_segment", "version": ours_version()}
    assert as_wire(msg_ours) == msg_ours, "our msg is exactly what goes on the wire"


def ours_version() -> str:
    import simple_segment

    return simple_segment.VERSION


def test_default_timestamp_and_message_id_have_the_same_shape(theirs: Any, ours: Client) -> None:
    """Defaults: messageId a uuid4 string, timestamp ISO-8601 UTC with milliseconds, in both."""
    _, a = theirs.track("u", "E")
    _, b = ours.track("u", "E")
    for msg in (a, b):
        assert uuid.UUID(msg["messageId"]).version == 4
        assert msg["timestamp"].endswith("+00:00")
        assert len(msg["timestamp"]) == len("2024-01-01T00:00:00.000+00:00")


def test_left_out_nulls(theirs: Any, ours: Client) -> None:
    """Documented difference: fields the caller did not give are left out, not sent as null."""
    _, a = theirs.track("u", "E", timestamp=WHEN)
    _, b = ours.track("u", "E", timestamp=WHEN)
    assert a["anonymousId"] is None
    assert "anonymousId" not in b


def test_decimal_and_uuid_differences(theirs: Any, ours: Client) -> None:
    """Documented differences: Decimal keeps every digit as a string, UUID is sent (the official drops it)."""
    value = Decimal("1234567890123456789.25")
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    _, a = theirs.track("u", "E", {"d": value, "id": ident}, timestamp=WHEN)
    _, b = ours.track("u", "E", {"d": value, "id": ident}, timestamp=WHEN)
    assert a["properties"] == {"d": float(value)}
    assert b["properties"] == {"d": "1234567890123456789.25", "id": str(ident)}


def test_naive_datetime_is_utc(ours: Client) -> None:
    """Documented difference: a naive timestamp is taken as UTC, never guessed from the clock."""
    _, msg = ours.track("u", "E", timestamp=dt.datetime(2024, 1, 1, 12, 0))
    assert msg["timestamp"] == "2024-01-01T12:00:00.000+00:00"


def test_context_not_mutated_unlike_official(theirs: Any, ours: Client) -> None:
    """Documented difference: the official library writes library into the caller's context; we do not."""
    theirs_context: dict[str, Any] = {"ip": "1.2.3.4"}
    ours_context: dict[str, Any] = {"ip": "1.2.3.4"}
    theirs.track("u", "E", context=theirs_context)
    ours.track("u", "E", context=ours_context)
    assert "library" in theirs_context
    assert ours_context == {"ip": "1.2.3.4"}


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        ("track", {"event": "E"}),
        ("track", {"user_id": "u", "event": 3}),
        ("track", {"user_id": "u", "event": "E", "properties": "x"}),
        ("identify", {"user_id": "u", "traits": "x"}),
        ("track", {"user_id": "u", "event": "E", "timestamp": "2024"}),
        ("group", {"user_id": "u"}),
        ("alias", {"user_id": "u"}),
    ],
)
def test_same_arguments_rejected_as_assertion_error(theirs: Any, ours: Client, call: str, kwargs: dict) -> None:
    """Where the official library raises AssertionError, we raise an AssertionError too."""
    with pytest.raises(AssertionError):
        getattr(theirs, call)(**kwargs)
    with pytest.raises(AssertionError):
        getattr(ours, call)(**kwargs)


def test_oversize_is_runtime_error_in_both(theirs: Any, ours: Client) -> None:
    """A message over 32 KB is a RuntimeError in both libraries."""
    with pytest.raises(RuntimeError):
        theirs.track("u", "E", {"x": "y" * 40_000})
    with pytest.raises(RuntimeError):
        ours.track("u", "E", {"x": "y" * 40_000})
