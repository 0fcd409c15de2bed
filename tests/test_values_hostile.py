"""Property tests: any value a caller can pass becomes strict JSON or a ValidationError.

Over arbitrary nested values (odd unicode and lone surrogates, bytes, huge ints,
NaN/inf floats and Decimals, datetimes with odd tzinfo, UUIDs, Enums, arbitrary
objects, self-referencing containers, 100,000-level nesting), ``track`` and
``identify`` either return ``(True, msg)`` whose wire form is strict UTF-8 JSON equal
to ``msg``, or raise a :class:`~simple_segment.ValidationError` naming the path of
the bad value; never another exception, and never a change to the caller's value.

Hypothesis is kept modest (``max_examples`` in the tens, no deadline, no example
database written to disk).
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import json
import math
import types
import uuid
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from simple_segment import Client, Message, MessageTooLargeError, ValidationError
from simple_segment.testing import FakeSegment, capture

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    # The explain phase would render the recursive strategy's repr (megabytes) and warn.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

MAX_SNAPSHOT_NODES = 1_000_000


# -- hostile building blocks ----------------------------------------------------------


class Boom(Exception):  # noqa: N818 - a sentinel, named for what it does
    """Raised by the hostile objects below; a ValidationError should carry it as __cause__."""


class Color(enum.Enum):
    RED = "red"
    ONE = 1
    PAIR = (1, "two")
    PI = 3.14


class Odd(enum.Enum):
    DECIMAL = Decimal("1.50")
    DAY = dt.date(2020, 2, 29)
    NOTHING = None
    NAN = float("nan")


class Flag(enum.IntFlag):
    A = 1
    B = 2


class OffsetTz(dt.tzinfo):
    """A tzinfo with a sub-minute offset close to the 24 h limit."""

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        return -dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999)

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, when: dt.datetime | None) -> str:
        return "odd"


class NoOffsetTz(dt.tzinfo):
    """A tzinfo whose utcoffset is None: the datetime counts as naive."""

    def utcoffset(self, when: dt.datetime | None) -> None:
        return None

    def dst(self, when: dt.datetime | None) -> None:
        return None

    def tzname(self, when: dt.datetime | None) -> str:
        return "none"


class RaisingTz(dt.tzinfo):
    """A tzinfo whose utcoffset raises."""

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        raise Boom("utcoffset")

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        raise Boom("dst")

    def tzname(self, when: dt.datetime | None) -> str:
        return "raising"

    def __repr__(self) -> str:
        return "RaisingTz()"


class BadRepr:
    """An object (also usable as a dict key) whose repr raises."""

    def __repr__(self) -> str:
        raise Boom("repr")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # How hypothesis prints a failing example (IPython's protocol), since repr raises.
        printer.text("BadRepr()")

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        return self is other


class BadMapping(Mapping[str, Any]):
    """A Mapping that lists a key and then fails to produce its value."""

    def __getitem__(self, key: str) -> Any:
        raise Boom(f"getitem {key}")

    def __iter__(self) -> Iterator[str]:
        return iter(["k"])

    def __len__(self) -> int:
        return 1

    def __repr__(self) -> str:
        return "BadMapping()"


class BadStr(str):
    """A str subclass whose __str__ raises."""

    __slots__ = ()

    def __str__(self) -> str:
        raise Boom("str")


class HugeInt(int):
    """An int with more digits than int->str allows by default; its repr stays printable
    (hypothesis prints failing examples).  Exact ``int`` values are in the specific tests."""

    def __repr__(self) -> str:
        return f"HugeInt(<{self.bit_length()} bits>)"


class Plain:
    """An arbitrary object with no JSON form."""

    def __repr__(self) -> str:
        return "Plain()"


ODD_TEXT = [
    "",
    "\x00",
    "\u2028\u2029",
    "\ufeff",
    "e\u0301",
    "\U0001f600",
    "\ud800",
    "\udfff",
    "a\udc80b",
    "\ud83d\ude00",
    "\uffff",
    "\U0010ffff",
    "</script>",
    '"\\',
]

texts = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(ODD_TEXT)
huge_ints = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**20, 10**308, 10**400]) | st.sampled_from(
    [4299, 4300, 5000]
).map(lambda digits: HugeInt(10**digits))
ints = st.integers() | huge_ints
floats = st.floats()
keyable_floats = st.floats(allow_nan=False)
"""For set elements and dict keys: hypothesis de-duplicates those, and NaN (equal only to
the same object) would make its generation non-deterministic.  NaN keys are added by
:func:`with_nan_key` instead."""
decimals = st.decimals(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [Decimal("NaN"), Decimal("-sNaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("1E+999999"), Decimal("-0.000")]
)
timezones = st.none() | st.sampled_from(
    [
        dt.timezone.utc,
        dt.timezone(dt.timedelta(hours=14)),
        dt.timezone(-dt.timedelta(hours=23, minutes=59)),
        OffsetTz(),
        NoOffsetTz(),
    ]
)
datetimes = (
    st.datetimes(timezones=timezones)
    | st.sampled_from([dt.datetime.min, dt.datetime.max])  # noqa: DTZ901 - naive extremes are inputs
    # builds, not sampled_from: hypothesis compares sampled elements, which calls utcoffset.
    | st.builds(dt.datetime, st.just(2020), st.just(1), st.just(1), tzinfo=st.builds(RaisingTz))
)
byte_values = (
    st.binary(max_size=12)
    | texts.map(lambda text: text.encode("utf-8", "surrogatepass"))
    | st.binary(max_size=12).map(bytearray)
)
objects = st.sampled_from([object(), Plain(), len, Ellipsis, NotImplemented, 1j, Fraction(1, 3), range(2)]) | st.builds(
    BadRepr
)

hashable_leaves = (
    st.none()
    | st.booleans()
    | ints
    | keyable_floats
    | texts
    | st.uuids()
    | st.dates()
    | st.sampled_from([*Color, Flag.A, Flag.A | Flag.B])
)
leaves = (
    hashable_leaves
    | decimals
    | datetimes
    | st.times(timezones=timezones)
    | byte_values
    | st.sampled_from(list(Odd))
    | objects
)
keys = (
    texts
    | st.integers()
    | floats
    | st.booleans()
    | st.sampled_from([None, (1, 2), Color.RED, HugeInt(10**5000)])
    | st.builds(BadRepr)
)


def with_nan_key(mapping: dict[Any, Any]) -> dict[Any, Any]:
    """``mapping`` plus a NaN key (made after drawing, so generation stays deterministic)."""
    return {**mapping, float("nan"): len(mapping)}


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    dicts = st.dictionaries(keys, children, max_size=4)
    return (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.sets(hashable_leaves, max_size=4)
        | st.frozensets(hashable_leaves, max_size=4)
        | dicts
        | dicts.map(collections.OrderedDict)
        | dicts.map(types.MappingProxyType)
        | dicts.map(with_nan_key)
    )


# deferred: hypothesis shows this strategy by its short repr instead of a multi-megabyte one.
values = st.deferred(lambda: st.recursive(leaves, _containers, max_leaves=16))

SHAPES = [
    "as-is",
    "as-is",
    "as-is",
    "wrapped",
    "shared",
    "self-dict",
    "self-list",
    "deep-20",
    "deep-600",
    "deep-100000",
]
"""How a drawn value is placed in the call's dict; built inside the test, so failure
reports show the recipe, not a 100,000-level repr."""


def nest(leaf: Any, depth: int, *, kind: str = "list") -> Any:
    """``leaf`` inside ``depth`` lists (or dicts under key "a"), built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def build(value: Any, shape: str) -> dict[Any, Any]:
    """The ``properties``/``traits`` dict for ``value`` placed as ``shape`` says."""
    if shape == "as-is" and isinstance(value, dict):
        return value
    if shape == "shared":
        inner = [value]
        return {"a": inner, "b": inner, "c": {"again": inner}}
    if shape == "self-dict":
        outer: dict[Any, Any] = {"v": value}
        outer["self"] = outer
        return outer
    if shape == "self-list":
        loop: list[Any] = [value]
        loop.append(loop)
        return {"loop": loop}
    if shape.startswith("deep-"):
        return {"deep": nest(value, int(shape.removeprefix("deep-")))}
    return {"v": value}


# -- what an outcome may be -----------------------------------------------------------


def snapshot(value: Any) -> list[Any]:
    """A flat, iterative fingerprint of a value's containers (any depth, cycles allowed).

    Containers are walked; every other object is recorded by identity, so replacing,
    adding or removing anything inside the caller's containers changes the result.
    Stronger than comparing against ``copy.deepcopy`` (works for values that cannot
    be copied, and for NaN, which is not equal to itself).
    """
    out: list[Any] = []
    seen: dict[int, int] = {}
    stack: list[Any] = [value]
    while stack:
        if len(out) > MAX_SNAPSHOT_NODES:
            out.append("...")
            break
        item = stack.pop()
        marker = id(item)
        if marker in seen and isinstance(item, (dict, list, set, frozenset, tuple, bytearray, Mapping)):
            out.append(("seen", seen[marker]))
            continue
        seen[marker] = len(out)
        if isinstance(item, bytearray):
            out.append(("bytearray", marker, bytes(item)))
        elif isinstance(item, Mapping):
            try:
                pairs = list(item.items())
            except Exception:
                out.append(("mapping?", marker, type(item)))
                continue
            out.append(("mapping", marker, type(item), len(pairs)))
            for key, child in reversed(pairs):
                stack.extend((child, key))
        elif isinstance(item, (list, tuple, set, frozenset)) and not isinstance(item, enum.Enum):
            children = list(item)
            out.append(("sequence", marker, type(item), len(children)))
            stack.extend(reversed(children))
        else:
            out.append(("leaf", marker, type(item)))
    return out


def assert_plain_json(value: Any) -> None:
    """``value`` is made of dict (str keys), list, str (valid Unicode), int, finite float, bool, None.

    The message itself may be a ``simple_segment.Message`` (a dict); what it holds is plain.
    """
    stack = [dict(value) if isinstance(value, Message) else value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key, child in item.items():
                assert type(key) is str, f"non-str key {key!r}"
                key.encode("utf-8")
                stack.append(child)
        elif kind is list:
            stack.extend(item)
        elif kind is str:
            item.encode("utf-8")  # raises on a lone surrogate
        elif kind is float:
            assert math.isfinite(item), f"non-finite float {item!r}"
        else:
            assert kind in (int, bool, type(None)), f"{kind.__name__} in a message"


def reject_constant(name: str) -> Any:
    pytest.fail(f"{name} on the wire: not JSON")


def strict_loads(data: bytes) -> Any:
    """Parse wire bytes as strict UTF-8 JSON (no NaN/Infinity)."""
    return json.loads(data.decode("utf-8", "strict"), parse_constant=reject_constant)


def assert_wire_equal(msg: dict[str, Any]) -> None:
    """``msg`` serializes to strict UTF-8 JSON and parses back equal to itself."""
    assert_plain_json(msg)
    wire = json.dumps(msg, ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert strict_loads(wire) == msg


def assert_validation_error(error: BaseException, root: str) -> None:
    """A ValidationError whose field is ``root`` or a path under it (or a too-large message)."""
    if isinstance(error, MessageTooLargeError):
        return  # a valid value that is simply too big for one message
    assert isinstance(error, ValidationError), f"{type(error).__name__}: {str(error)[:200]}"
    assert isinstance(error.field, str)
    assert error.field == root or error.field.startswith((f"{root}.", f"{root}[")), error.field


def outcome(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return call(), None
    except Exception as exc:
        return None, exc


CALLS: dict[str, tuple[str, Callable[[Client, Any], Any]]] = {
    "track": ("properties", lambda client, value: client.track("u", "E", value)),
    "identify": ("traits", lambda client, value: client.identify("u", value)),
}


@pytest.fixture(scope="module")
def offline() -> Client:
    """A client that validates and builds but sends nothing."""
    return Client("test-key", send=False)


@pytest.fixture(scope="module")
def wire_server() -> Iterator[FakeSegment]:
    """One FakeSegment for the whole module (hypothesis re-runs the test body many times)."""
    with FakeSegment() as server:
        yield server


# -- properties -----------------------------------------------------------------------


@pytest.mark.parametrize("call", list(CALLS))
@PROPERTY_SETTINGS
@given(value=values, shape=st.sampled_from(SHAPES))
def test_any_value_is_json_or_validation_error(offline: Client, call: str, value: Any, shape: str) -> None:
    """send=False: every value gives (True, msg) with msg plain JSON that round-trips
    exactly, or a ValidationError whose field is a path under properties/traits; the
    caller's value is unchanged."""
    root, method = CALLS[call]
    argument = build(value, shape)
    before = snapshot(argument)
    result, error = outcome(lambda: method(offline, argument))
    assert snapshot(argument) == before, "the caller's value was modified"
    if error is not None:
        assert_validation_error(error, root)
        return
    ok, msg = result
    assert ok is True
    assert_wire_equal(msg)


@pytest.mark.parametrize("call", list(CALLS))
@PROPERTY_SETTINGS
@given(value=values, shape=st.sampled_from(SHAPES))
def test_captured_messages_are_json(call: str, value: Any, shape: str) -> None:
    """Under testing.capture(): the same outcomes, and what was captured is exactly msg."""
    root, method = CALLS[call]
    argument = build(value, shape)
    before = snapshot(argument)
    client = Client("test-key", host="http://127.0.0.1:9")
    with capture() as sent:
        result, error = outcome(lambda: method(client, argument))
    assert snapshot(argument) == before, "the caller's value was modified"
    if error is not None:
        assert_validation_error(error, root)
        assert len(sent) == 0
        return
    ok, msg = result
    assert ok is True
    assert_wire_equal(msg)
    assert sent.messages == [msg]


wire_ints = st.integers(min_value=-(10**300), max_value=10**300)
"""FakeSegment (like Segment) rejects numbers beyond a float's range, so the wire test keeps ints in it."""
wire_hashables = st.none() | st.booleans() | wire_ints | keyable_floats | texts | st.uuids() | st.dates()
wire_leaves = wire_hashables | decimals | datetimes | byte_values | st.sampled_from(list(Color) + list(Odd)) | objects
wire_keys = texts | st.integers(min_value=-(10**300), max_value=10**300) | keyable_floats | st.booleans()
wire_values = st.deferred(
    lambda: st.recursive(
        wire_leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.lists(children, max_size=4).map(tuple)
            | st.sets(wire_hashables, max_size=4)
            | st.dictionaries(wire_keys, children, max_size=4)
        ),
        max_leaves=16,
    )
)


@PROPERTY_SETTINGS
@given(value=wire_values, shape=st.sampled_from(SHAPES))
def test_wire_bytes_are_strict_json_equal_to_msg(wire_server: FakeSegment, value: Any, shape: str) -> None:
    """Through a real request to FakeSegment: the body is strict UTF-8 JSON (no
    NaN/Infinity) and its message equals the msg the call returned."""
    argument = build(value, shape)
    before = snapshot(argument)
    client = Client("test-key", host=wire_server.url, timeout=2, total_timeout=5, max_retries=0)
    count = len(wire_server.requests)
    try:
        result, error = outcome(lambda: client.track("u", "E", argument))
    finally:
        client.close()
    assert snapshot(argument) == before, "the caller's value was modified"
    if error is not None:
        assert_validation_error(error, "properties")
        assert len(wire_server.requests) == count, "a request was sent for an invalid message"
        return
    ok, msg = result
    assert ok is True
    requests = wire_server.requests
    assert len(requests) == count + 1
    body = strict_loads(requests[-1].body)
    assert body["batch"] == [msg]


# -- specific hostile values ------------------------------------------------------------


def self_dict() -> dict[str, Any]:
    inner: dict[str, Any] = {"n": 1}
    inner["me"] = inner
    return {"x": inner}


def self_list() -> dict[str, Any]:
    inner: list[Any] = [1]
    inner.append(inner)
    return {"l": inner}


HOSTILE_PROPERTIES: dict[str, tuple[Callable[[], dict[Any, Any]], str, type[BaseException] | None]] = {
    # name: (make the properties, the path the field must start with, the __cause__ type if one is required)
    "dict-containing-itself": (self_dict, "properties.x", None),
    "list-containing-itself": (self_list, "properties.l", None),
    "huge-int-value": (lambda: {"n": 10**5000}, "properties.n", None),
    "huge-int-key": (lambda: {"d": {10**5000: 1}}, "properties.d", None),
    "key-whose-repr-raises": (lambda: {"d": {BadRepr(): 1}}, "properties.d", None),
    "mapping-whose-getitem-raises": (lambda: {"m": BadMapping()}, "properties.m", Boom),
    "tzinfo-whose-utcoffset-raises": (lambda: {"t": dt.datetime(2020, 1, 1, tzinfo=RaisingTz())}, "properties.t", Boom),
}


@pytest.mark.parametrize("name", list(HOSTILE_PROPERTIES))
def test_hostile_property_values(offline: Client, name: str) -> None:
    """Each hostile value is a ValidationError naming its path (with the original
    exception as __cause__ where the value raised one); the input is unchanged."""
    make, path, cause = HOSTILE_PROPERTIES[name]
    properties = make()
    before = snapshot(properties)
    _, error = outcome(lambda: offline.track("u", "E", properties))
    assert snapshot(properties) == before
    assert isinstance(error, ValidationError), f"{name}: {type(error).__name__}: {str(error)[:200]}"
    assert error.field.startswith(path), f"{name}: field {error.field!r} does not name {path!r}"
    if cause is not None:
        assert isinstance(error.__cause__, cause), f"{name}: __cause__ is {error.__cause__!r}"


@pytest.mark.parametrize("name", ["dict-containing-itself", "mapping-whose-getitem-raises", "huge-int-value"])
def test_hostile_traits(offline: Client, name: str) -> None:
    """The same for identify's traits: the path starts with traits."""
    make, path, cause = HOSTILE_PROPERTIES[name]
    _, error = outcome(lambda: offline.identify("u", make()))
    assert isinstance(error, ValidationError), f"{name}: {type(error).__name__}: {str(error)[:200]}"
    assert error.field.startswith(path.replace("properties", "traits", 1)), error.field
    if cause is not None:
        assert isinstance(error.__cause__, cause)


def test_str_subclasses_are_sent_as_their_text(offline: Client) -> None:
    """A str subclass is sent as its text, as json.dumps would (its own __str__, which may raise, is not called)."""
    _, msg = offline.track(BadStr("user"), BadStr("Event"), {"s": BadStr("x"), "d": {BadStr("k"): 1}})
    assert (msg["userId"], msg["event"]) == ("user", "Event")
    assert msg["properties"] == {"s": "x", "d": {"k": 1}}
    assert all(type(v) is str for v in (msg["userId"], msg["event"], msg["properties"]["s"]))


def test_huge_int_user_id(offline: Client) -> None:
    """user_id=10**5000 (more digits than int->str allows) is a ValidationError on user_id."""
    _, error = outcome(lambda: offline.track(10**5000, "E"))
    assert isinstance(error, ValidationError), f"{type(error).__name__}: {str(error)[:200]}"
    assert error.field == "user_id"


def test_timestamp_whose_utcoffset_raises(offline: Client) -> None:
    """timestamp= with a tzinfo whose utcoffset raises is a ValidationError on timestamp, caused by it."""
    _, error = outcome(lambda: offline.track("u", "E", timestamp=dt.datetime(2020, 1, 1, tzinfo=RaisingTz())))
    assert isinstance(error, ValidationError), f"{type(error).__name__}: {str(error)[:200]}"
    assert error.field == "timestamp"
    assert isinstance(error.__cause__, Boom)


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_twenty_levels_work(kind: str, wire_server: FakeSegment) -> None:
    """20 levels of nesting are sent as they are (the documented maximum depth is above that)."""
    properties = {"d": nest(1, 20, kind=kind)}
    client = Client("test-key", host=wire_server.url, timeout=2, total_timeout=5, max_retries=0)
    ok, msg = client.track("u", "E", properties)
    client.close()
    assert ok is True
    assert msg["properties"] == properties
    assert strict_loads(wire_server.requests[-1].body)["batch"] == [msg]


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_100000_levels_are_a_depth_error(offline: Client, kind: str) -> None:
    """100,000 levels (built iteratively) are a ValidationError under the path that
    mentions the depth; no RecursionError."""
    properties = {"d": nest(1, 100_000, kind=kind)}
    _, error = outcome(lambda: offline.track("u", "E", properties))
    assert isinstance(error, ValidationError), f"{type(error).__name__}: {str(error)[:200]}"
    assert error.field.startswith("properties.d"), error.field[:200]
    assert "depth" in error.reason.lower() or "nest" in error.reason.lower(), error.reason[:200]


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_600_levels_do_not_crash(offline: Client, kind: str) -> None:
    """600 levels: sent exactly, or a ValidationError about depth (the maximum is the
    library's to document); never a RecursionError."""
    properties = {"d": nest(1, 600, kind=kind)}
    result, error = outcome(lambda: offline.track("u", "E", properties))
    if error is None:
        assert result[1]["properties"] == properties
        assert_wire_equal(result[1])
        return
    assert isinstance(error, ValidationError), f"{type(error).__name__}: {str(error)[:200]}"
    assert error.field.startswith("properties.d"), error.field[:200]
    assert "depth" in error.reason.lower() or "nest" in error.reason.lower(), error.reason[:200]


def test_shared_containers_are_not_cycles(offline: Client) -> None:
    """The same list used twice (a DAG, not a cycle) is valid and sent twice."""
    shared = [1, {"x": 2}]
    ok, msg = offline.track("u", "E", {"a": shared, "b": {"c": shared}})
    assert ok is True
    assert msg["properties"] == {"a": [1, {"x": 2}], "b": {"c": [1, {"x": 2}]}}


def test_uuid_and_enum_values(offline: Client) -> None:
    """A sanity anchor for the properties: known conversions of the value table."""
    value = uuid.UUID(int=1)
    _, msg = offline.track("u", "E", {"id": value, "c": Color.PAIR, "d": Decimal("1.10")})
    assert msg["properties"] == {"id": str(value), "c": [1, "two"], "d": "1.10"}
