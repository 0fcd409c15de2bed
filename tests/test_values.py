"""SPEC.md section 4: how Python values travel, and how bad input is refused."""

from __future__ import annotations

import copy
import datetime as dt
import enum
import json
import subprocess
import sys
import uuid
from decimal import Decimal

import pytest
from conftest import WRITE_KEY
from hypothesis import given, settings
from hypothesis import strategies as st

import simple_segment
from simple_segment import Client, MessageTooLargeError, ValidationError
from simple_segment.testing import FakeSegment


class Color(enum.Enum):
    RED = "red"
    NESTED = dt.date(2024, 1, 2)


class Level(enum.IntEnum):
    HIGH = 3


UTC = dt.timezone.utc
PLUS2 = dt.timezone(dt.timedelta(hours=2))


@pytest.fixture
def builder() -> Client:
    return Client(WRITE_KEY, send=False)


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("text", "text"),
        (7, 7),
        (2.5, 2.5),
        (True, True),
        (None, None),
        (Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
        (Decimal("1.10"), "1.10"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "2024-01-02T03:04:05.678+00:00"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=PLUS2), "2024-01-02T03:04:05.000+02:00"),
        (dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05.000+00:00"),
        (dt.date(2024, 1, 2), "2024-01-02"),
        (dt.time(13, 14, 15), "13:14:15"),
        (dt.time(13, 14, 15, 16), "13:14:15.000016"),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
        (Color.RED, "red"),
        (Color.NESTED, "2024-01-02"),
        (Level.HIGH, 3),
        ((1, 2), [1, 2]),
        ([1, (2, 3)], [1, [2, 3]]),
        ({3}, [3]),
        (frozenset({"a"}), ["a"]),
        ("é".encode(), "é"),
        ({1: "a", 2.5: "b"}, {"1": "a", "2.5": "b"}),
        ({False: "c"}, {"false": "c"}),
        ({"nested": {"d": Decimal(1)}}, {"nested": {"d": "1"}}),
    ],
)
def test_value_table(fake_segment: FakeSegment, value: object, sent: object) -> None:
    """Each row of the value table arrives on the wire as SPEC.md says, and msg shows the same."""
    with Client(WRITE_KEY, host=fake_segment.url) as client:
        _, msg = client.track("u", "E", {"v": value})
    assert msg["properties"]["v"] == sent
    assert fake_segment.messages[0]["properties"]["v"] == sent


@pytest.mark.parametrize(
    ("properties", "path"),
    [
        ({"price": float("nan")}, "properties.price"),
        ({"items": [1, 2, {"price": float("inf")}]}, "properties.items[2].price"),
        ({"a": {"b": -float("inf")}}, "properties.a.b"),
        ({"obj": object()}, "properties.obj"),
        ({"deep": [[{"x": [1, object]}]]}, "properties.deep[0][0].x[1]"),
        ({"d": Decimal("NaN")}, "properties.d"),
        ({"b": b"\xff\xfe"}, "properties.b"),
        ({(1, 2): "tuple key"}, "properties[(1, 2)]"),
        ({None: "none key"}, "properties[None]"),
        ({1: "a", "1": "b"}, "properties[1]"),
        ({"s": "\ud800"}, "properties.s"),
    ],
)
def test_bad_values_name_their_path(builder: Client, properties: dict, path: str) -> None:
    """A value with no JSON form raises ValidationError naming its path; nothing is sent."""
    with pytest.raises(ValidationError) as info:
        builder.track("u", "E", properties)
    assert info.value.field == path
    assert str(info.value).startswith(f"{path}: ")
    assert isinstance(info.value, AssertionError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("call", "kwargs", "field"),
    [
        ("track", {"event": "E"}, "user_id"),
        ("track", {"user_id": "", "event": "E"}, "user_id"),
        ("track", {"user_id": "u"}, "event"),
        ("track", {"user_id": "u", "event": ""}, "event"),
        ("track", {"user_id": "u", "event": 5}, "event"),
        ("track", {"user_id": "u", "event": "E", "properties": ["x"]}, "properties"),
        ("track", {"user_id": "u", "event": "E", "context": "x"}, "context"),
        ("track", {"user_id": "u", "event": "E", "integrations": 1}, "integrations"),
        ("track", {"user_id": "u", "event": "E", "timestamp": "2024-01-01"}, "timestamp"),
        ("track", {"user_id": "u", "event": "E", "message_id": "x" * 100}, "message_id"),
        ("track", {"user_id": True, "event": "E"}, "user_id"),
        ("track", {"user_id": ["u"], "event": "E"}, "user_id"),
        ("track", {"anonymous_id": {"a": 1}, "event": "E"}, "anonymous_id"),
        ("identify", {"user_id": "u", "traits": "x"}, "traits"),
        ("group", {"user_id": "u"}, "group_id"),
        ("group", {"user_id": "u", "group_id": "g", "traits": 3}, "traits"),
        ("alias", {"user_id": "u"}, "previous_id"),
        ("alias", {"previous_id": "p"}, "user_id"),
        ("page", {"user_id": "u", "name": 3}, "name"),
        ("screen", {"user_id": "u", "category": ["c"]}, "category"),
    ],
)
def test_argument_errors_name_the_field(fake_segment: FakeSegment, call: str, kwargs: dict, field: str) -> None:
    """Bad arguments raise ValidationError (an AssertionError) naming the argument, before any I/O."""
    client = Client(WRITE_KEY, host=fake_segment.url)
    with pytest.raises(ValidationError) as info:
        getattr(client, call)(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)
    assert fake_segment.requests == []


def test_message_over_32kb_is_refused_before_sending(fake_segment: FakeSegment) -> None:
    """A message over 32,768 serialized bytes raises MessageTooLargeError (a RuntimeError) and sends nothing."""
    client = Client(WRITE_KEY, host=fake_segment.url)
    with pytest.raises(MessageTooLargeError) as info:
        client.track("u", "E", {"blob": "x" * 33_000})
    error = info.value
    assert isinstance(error, RuntimeError)
    assert error.limit == 32_768
    assert error.size > 32_768
    assert str(error.size) in str(error)
    assert fake_segment.requests == []


def test_size_limit_is_measured_on_the_utf8_bytes(builder: Client) -> None:
    """The limit counts bytes, not characters: 3-byte characters reach it sooner."""
    _, small = builder.track("u", "E", {"s": "x"})
    base = len(json.dumps(small, separators=(",", ":")).encode()) - 1
    room = 32_768 - base
    builder.track("u", "E", {"s": "x" * room}, message_id=small["messageId"], timestamp=dt.datetime.now(UTC))
    with pytest.raises(MessageTooLargeError):
        builder.track("u", "E", {"s": "€" * (room // 3 + 1)}, message_id=small["messageId"])


def test_inputs_are_never_mutated(builder: Client) -> None:
    """Every dict and list the caller passes is left exactly as it was."""
    properties = {"items": [{"price": Decimal("1.5"), "tags": ("a", "b")}], "when": dt.datetime(2024, 1, 1)}
    context = {"ip": "1.2.3.4", "app": {"name": "x"}}
    integrations = {"All": True}
    before = copy.deepcopy((properties, context, integrations))
    _, msg = builder.track("u", "E", properties, context, None, None, integrations)
    assert (properties, context, integrations) == before
    msg["properties"]["items"][0]["price"] = "changed"
    msg["context"]["app"]["name"] = "changed"
    assert (properties, context, integrations) == before


def test_message_shares_no_containers_with_caller(builder: Client) -> None:
    """The returned msg holds copies, so later changes on either side do not leak across."""
    properties = {"list": [1], "dict": {"a": 1}}
    _, msg = builder.track("u", "E", properties)
    properties["list"].append(2)
    properties["dict"]["b"] = 2
    assert msg["properties"] == {"list": [1], "dict": {"a": 1}}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_plain_json_properties_round_trip(properties: dict) -> None:
    """Any plain JSON properties are sent unchanged, and msg equals its own serialized form."""
    client = Client(WRITE_KEY, send=False)
    before = copy.deepcopy(properties)
    _, msg = client.track("u", "E", properties)
    assert properties == before
    assert msg["properties"] == properties
    assert json.loads(json.dumps(msg)) == msg


def test_module_level_validation_matches_client() -> None:
    """Module functions raise the same validation errors as a client."""
    simple_segment.write_key = WRITE_KEY
    simple_segment.send = False
    with pytest.raises(ValidationError):
        simple_segment.track("u")


def test_enums_are_their_values_everywhere(builder: Client) -> None:
    """A str or int Enum is sent as its value: as an id, an event name, a property and a dict key."""
    import enum

    class Event(str, enum.Enum):
        SIGNED_UP = "Signed Up"

    class Plan(enum.IntEnum):
        PRO = 2

    _, msg = builder.track(Event.SIGNED_UP, Event.SIGNED_UP, {Event.SIGNED_UP: Plan.PRO, Plan.PRO: Event.SIGNED_UP})
    assert msg["userId"] == msg["event"] == "Signed Up"
    assert msg["properties"] == {"Signed Up": 2, "2": "Signed Up"}
    _, page = builder.page("u", Event.SIGNED_UP, Event.SIGNED_UP, anonymous_id=Plan.PRO)
    assert (page["category"], page["name"], page["anonymousId"]) == ("Signed Up", "Signed Up", "2")


# -- numpy and pandas scalars: the values a DataFrame hands over ----------------------


def test_numpy_and_pandas_scalars_are_their_python_values() -> None:
    import numpy as np  # in the test extra; never imported by simple_segment
    import pandas as pd
    client = Client("key", send=False)
    _, msg = client.track(
        np.int64(42),
        "Ordered",
        {
            "count": np.int32(3),
            "price": np.float64(9.5),
            "ratio": np.float32(0.5),
            "paid": np.bool_(True),
            "sku": np.str_("A-1"),
            "at": np.datetime64("2024-01-02T03:04:05.123456789"),
            "seen": pd.Timestamp("2024-01-01 12:00", tz="Europe/Paris"),
            "naive": pd.Timestamp("2024-01-01 12:00"),
            "items": [np.int8(1), {np.int64(7): np.float64(1.0)}],
        },
        timestamp=np.datetime64("2024-05-06T07:08:09"),
    )
    assert msg["userId"] == "42"
    assert msg["timestamp"] == "2024-05-06T07:08:09.000+00:00"
    assert msg["properties"] == {
        "count": 3,
        "price": 9.5,
        "ratio": 0.5,
        "paid": True,
        "sku": "A-1",
        "at": "2024-01-02T03:04:05.123+00:00",
        "seen": "2024-01-01T12:00:00.000+01:00",
        "naive": "2024-01-01T12:00:00.000+00:00",
        "items": [1, {"7": 1.0}],
    }
    assert [type(v) for v in msg["properties"].values()][:5] == [int, float, float, bool, str]


def test_missing_values_of_a_dataframe_are_absent() -> None:
    """NaN, NaT and NA mean "no value" in a DataFrame: null as a property, no id as an id."""
    import numpy as np  # in the test extra; never imported by simple_segment
    import pandas as pd
    client = Client("key", send=False)
    _, msg = client.track(
        np.float64("nan"),
        "E",
        {"a": np.float64("nan"), "b": pd.NaT, "c": pd.NA, "d": np.datetime64("NaT", "ns")},
        anonymous_id="anon",
        timestamp=pd.NaT,
    )
    assert "userId" not in msg
    assert msg["anonymousId"] == "anon"
    assert msg["properties"] == {"a": None, "b": None, "c": None, "d": None}
    with pytest.raises(ValidationError, match="user_id or anonymous_id is required"):
        client.track(pd.NA, "E", anonymous_id=np.float64("nan"))


def test_a_plain_python_nan_is_still_refused() -> None:
    with pytest.raises(ValidationError, match=r"properties\.a"):
        Client("key", send=False).track("u", "E", {"a": float("nan")})


def test_importing_simple_segment_imports_neither_numpy_nor_pandas() -> None:
    code = "import sys, simple_segment; print(sorted({'numpy', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_keys_that_become_one_string_are_refused_not_dropped() -> None:
    class Colour(enum.Enum):
        RED = "red"

    class Shade(enum.Enum):
        RED = "red"

    client = Client("key", send=False)
    with pytest.raises(ValidationError, match=r"collides with key 'red'"):
        client.track("u", "E", {Colour.RED: 1, "red": 2})
    with pytest.raises(ValidationError, match=r"properties\.x\[<Shade.RED: 'red'>\]|properties\.x\[<Colour.RED: 'red'>\]"):
        client.track("u", "E", {"x": {Colour.RED: 1, Shade.RED: 2}})
    with pytest.raises(ValidationError, match="collides"):
        client.track("u", "E", {1: "a", "1": "b"})
    assert client.track("u", "E", {Colour.RED: 1, "blue": 2})[1]["properties"] == {"red": 1, "blue": 2}


def test_numpy_arrays_and_series_are_lists_whatever_their_length() -> None:
    """A list column read through a DataFrame holds arrays: a one-item array stays a list of one."""
    import numpy as np
    import pandas as pd

    client = Client("key", send=False)
    _, msg = client.track(
        "u",
        "E",
        {
            "one": np.array([5]),
            "grid": np.array([[1, 2], [3, 4]]),
            "series": pd.Series([7, 8]),
            "gaps": np.array([np.nan, 1.5]),
            "names": np.array(["x", "y"]),
            "empty": np.array([]),
        },
    )
    assert msg["properties"] == {
        "one": [5],
        "grid": [[1, 2], [3, 4]],
        "series": [7, 8],
        "gaps": [None, 1.5],
        "names": ["x", "y"],
        "empty": [],
    }
    with pytest.raises(ValidationError, match="user_id"):
        client.track(np.array([1]), "E")


def test_size_limit_is_exactly_32768_bytes() -> None:
    """A message whose encoding is exactly 32,768 bytes is sent; one byte more is refused and nothing is posted."""
    from simple_segment.testing import MockTransport

    transport = MockTransport(lambda _request: 200)
    client = Client(WRITE_KEY, host="https://api.example.test", transport=transport, max_retries=0)
    fixed = {"message_id": "boundary", "timestamp": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)}

    def sent_bytes(pad: int) -> bytes:
        transport.requests.clear()
        assert client.track("u", "E", {"pad": "x" * pad}, **fixed)[0] is True
        (request,) = transport.requests
        body = request.content  # {"batch":[<the message>],"sentAt":"...","writeKey":"..."}
        return body[len(b'{"batch":[') : body.rindex(b'],"sentAt":"')]

    room = 32_768 - len(sent_bytes(0))
    exact = sent_bytes(room)
    assert len(exact) == 32_768
    assert json.loads(exact)["properties"]["pad"] == "x" * room
    transport.requests.clear()
    with pytest.raises(MessageTooLargeError) as info:
        client.track("u", "E", {"pad": "x" * (room + 1)}, **fixed)
    assert (info.value.size, info.value.limit) == (32_769, 32_768)
    assert transport.requests == []


@pytest.mark.parametrize(
    ("properties", "field", "reason"),
    [
        ({"a": float("nan")}, "properties.a", "nan is not a valid JSON number"),
        ({"a": {"k": float("-inf")}}, "properties.a.k", "-inf is not a valid JSON number"),
        ({"a": {"b": 10**5000}}, "properties.a.b", "an int of 16610 bits has too many digits to send"),
        ({"a": ["x", "\ud800"]}, "properties.a[1]", "text is not valid Unicode (lone surrogate)"),
        ({"a": {"\ud800": 1}}, "properties.a['\\ud800']", "text is not valid Unicode (lone surrogate)"),
    ],
)
def test_values_the_encoder_refuses_name_the_path_and_the_rule(properties: dict, field: str, reason: str) -> None:
    """What JSON cannot carry is a ValidationError naming the value's path (a key's too) and why."""
    with pytest.raises(ValidationError) as info:
        Client(WRITE_KEY, send=False).track("u", "E", properties)
    assert (info.value.field, info.value.reason) == (field, reason)
    assert isinstance(info.value.__cause__, ValueError)  # the encoder's own complaint, kept for the traceback


def test_ids_whose_own_methods_raise_are_validation_errors() -> None:
    """An Enum whose value raises, an int whose str() raises: a ValidationError naming the field, not their error."""

    class Broken(enum.Enum):
        A = 1

        @property
        def value(self) -> int:  # type: ignore[override]
            raise RuntimeError("broken value")

    class Unprintable(int):
        def __str__(self) -> str:
            raise RuntimeError("broken str")

    client = Client("key", send=False)
    with pytest.raises(ValidationError, match=r"user_id: Broken has no usable value: RuntimeError"):
        client.track(Broken.A, "E")
    with pytest.raises(ValidationError, match=r"event: Broken has no usable value"):
        client.track("u", Broken.A)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"user_id: could not be made a str: RuntimeError: broken str"):
        client.track(Unprintable(5), "E")
