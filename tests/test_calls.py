"""Each call type puts the right bytes on the wire and returns what it sent."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import uuid

import pytest
from conftest import WRITE_KEY, QuickClient, basic_auth, body_of

import simple_segment
from simple_segment import Client
from simple_segment.testing import FakeSegment

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
LIBRARY = {"name": "simple_segment", "version": simple_segment.VERSION}


def only_request(server: FakeSegment):
    requests = server.requests
    assert len(requests) == 1, requests
    return requests[0]


def test_track_request_bytes_and_headers(client: Client, fake_segment: FakeSegment) -> None:
    """A track call POSTs one batch with Basic auth, SPEC headers and the message as returned."""
    ok, msg = client.track("user-1", "Signed Up", {"plan": "pro"})
    request = only_request(fake_segment)
    assert ok is True
    assert request.method == "POST"
    assert request.path == "/v1/batch"
    assert request.headers["authorization"] == basic_auth()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"simple_segment/{simple_segment.VERSION}"
    assert "x-retry-count" not in request.headers
    assert int(request.headers["content-length"]) == len(request.body)
    body = body_of(request)
    assert set(body) == {"batch", "sentAt", "writeKey"}
    assert body["writeKey"] == WRITE_KEY
    assert ISO_MS.match(body["sentAt"])
    assert body["batch"] == [msg]
    assert msg["type"] == "track"
    assert msg["userId"] == "user-1"
    assert msg["event"] == "Signed Up"
    assert msg["properties"] == {"plan": "pro"}
    assert msg["context"] == {"library": LIBRARY}
    assert msg["integrations"] == {}
    assert ISO_MS.match(msg["timestamp"])
    assert uuid.UUID(msg["messageId"]).version == 4
    assert "anonymousId" not in msg


def test_body_is_compact_utf8_json(client: Client, fake_segment: FakeSegment) -> None:
    """The body is compact JSON in UTF-8 (non-ASCII text is not escaped)."""
    client.track("u", "Café ☕", {"名前": "値"})
    raw = only_request(fake_segment).body
    assert "Café ☕".encode() in raw
    assert b", " not in raw
    assert b": " not in raw
    assert json.loads(raw)["batch"][0]["properties"] == {"名前": "値"}


def test_gzip_body(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """gzip=True sends Content-Encoding: gzip and bytes that decode to the same JSON."""
    with quick_client(fake_segment, gzip=True) as client:
        _, msg = client.track("u", "E", {"text": "hello " * 200})
    request = fake_segment.requests[0]
    assert request.headers["content-encoding"] == "gzip"
    decoded = json.loads(gzip.decompress(request.body))
    assert decoded["batch"] == [msg]
    assert len(request.body) < len(json.dumps(decoded))


@pytest.mark.parametrize(
    ("call", "args", "expected"),
    [
        ("identify", ("u1", {"email": "a@b.c"}), {"type": "identify", "userId": "u1", "traits": {"email": "a@b.c"}}),
        (
            "track",
            ("u1", "Played", {"song": "x"}),
            {"type": "track", "userId": "u1", "event": "Played", "properties": {"song": "x"}},
        ),
        ("alias", ("old", "new"), {"type": "alias", "previousId": "old", "userId": "new"}),
        (
            "group",
            ("u1", "g1", {"name": "Acme"}),
            {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}},
        ),
        (
            "page",
            ("u1", "Docs", "Install", {"path": "/i"}),
            {"type": "page", "userId": "u1", "category": "Docs", "name": "Install", "properties": {"path": "/i"}},
        ),
        (
            "screen",
            ("u1", "Onboarding", "Welcome", {"step": 1}),
            {"type": "screen", "userId": "u1", "category": "Onboarding", "name": "Welcome", "properties": {"step": 1}},
        ),
    ],
)
def test_each_call_type(client: Client, fake_segment: FakeSegment, call: str, args: tuple, expected: dict) -> None:
    """Every call type sends its fields, from positional arguments in the official order."""
    ok, msg = getattr(client, call)(*args)
    assert ok is True
    sent = body_of(only_request(fake_segment))["batch"]
    assert sent == [msg]
    for key, value in expected.items():
        assert msg[key] == value, key
    assert msg["context"]["library"] == LIBRARY
    assert msg["integrations"] == {}


def test_positional_order_of_every_argument(client: Client, fake_segment: FakeSegment) -> None:
    """All positional arguments land in the fields the official library puts them in."""
    when = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    common = ({"ip": "1.2.3.4"}, when, "anon", {"All": False}, "mid-1")
    client.identify("u", {"t": 1}, *common)
    client.track("u", "E", {"p": 1}, *common)
    client.group("u", "g", {"t": 1}, *common)
    client.page("u", "cat", "name", {"p": 1}, *common)
    client.screen("u", "cat", "name", {"p": 1}, *common)
    client.alias("prev", "u", {"ip": "1.2.3.4"}, when, {"All": False}, "mid-1")
    messages = fake_segment.messages
    assert [m["type"] for m in messages] == ["identify", "track", "group", "page", "screen", "alias"]
    for msg in messages:
        assert msg["context"] == {"ip": "1.2.3.4", "library": LIBRARY}
        assert msg["timestamp"] == "2024-05-06T07:08:09.123+00:00"
        assert msg["integrations"] == {"All": False}
        assert msg["messageId"] == "mid-1"
        if msg["type"] != "alias":
            assert msg["anonymousId"] == "anon"
            assert msg["userId"] == "u"


def test_keyword_arguments(client: Client, fake_segment: FakeSegment) -> None:
    """Keyword arguments with the official names work for every call."""
    client.track(event="E", anonymous_id="a1", properties={"x": 1})
    client.page(anonymous_id="a1", name="Home")
    client.group(user_id="u", group_id=42)
    client.alias(previous_id=1, user_id=2)
    track, page, group, alias = fake_segment.messages
    assert track["anonymousId"] == "a1"
    assert "userId" not in track
    assert page["name"] == "Home"
    assert "category" not in page
    assert page["properties"] == {}
    assert group["groupId"] == "42"
    assert group["traits"] == {}
    assert alias == {**alias, "previousId": "1", "userId": "2"}


def test_ids_are_strings_without_losing_digits(client: Client, fake_segment: FakeSegment) -> None:
    """Numeric ids are sent as strings with every digit; user_id=0 is a valid id."""
    client.track(157963456373623802, "E")
    client.identify(0)
    client.track(anonymous_id=12, event="E")
    big, zero, anon = fake_segment.messages
    assert big["userId"] == "157963456373623802"
    assert zero["userId"] == "0"
    assert anon["anonymousId"] == "12"


def test_caller_context_keys_win_and_library_is_added(client: Client) -> None:
    """The library context is merged under the caller's context; the caller's dict is untouched."""
    context = {"ip": "10.0.0.1", "traits": {"a": 1}}
    _, msg = client.identify("u", context=context)
    assert context == {"ip": "10.0.0.1", "traits": {"a": 1}}
    assert msg["context"] == {"ip": "10.0.0.1", "traits": {"a": 1}, "library": LIBRARY}
    _, msg = client.identify("u", context={"library": {"name": "wrapper", "version": "9"}})
    assert msg["context"]["library"] == {"name": "wrapper", "version": "9"}


def test_message_ids_are_unique(client: Client) -> None:
    """Each call without message_id gets a new uuid4."""
    ids = {client.track("u", "E")[1]["messageId"] for _ in range(50)}
    assert len(ids) == 50


def test_send_false_builds_and_sends_nothing(fake_segment: FakeSegment) -> None:
    """send=False (and stub=True) validate and return the message, with no request."""
    for client in (Client(WRITE_KEY, host=fake_segment.url, send=False), Client(WRITE_KEY, host=fake_segment.url, stub=True)):
        ok, msg = client.track("u", "E", {"a": 1})
        assert ok is True
        assert msg["event"] == "E"
        with pytest.raises(simple_segment.ValidationError):
            client.track("u", None)
    assert fake_segment.requests == []


def test_connection_is_kept_alive(client: Client, fake_segment: FakeSegment) -> None:
    """Consecutive calls reuse one keep-alive connection."""
    for _ in range(5):
        client.track("u", "E")
    assert len(fake_segment.requests) == 5
    assert fake_segment.connections_accepted == 1


def test_client_lifecycle_never_fails(client: Client, fake_segment: FakeSegment) -> None:
    """flush/join/shutdown/close are safe in any order, and the client keeps working."""
    client.flush()
    client.join()
    client.shutdown()
    client.close()
    client.close()
    assert client.track("u", "E")[0] is True
    with client as same:
        assert same is client
    assert len(fake_segment.messages) == 1


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (None, "https://api.segment.io/v1/batch"),
        ("https://api.segment.io/", "https://api.segment.io/v1/batch"),
        ("events.eu1.segmentapis.com", "https://events.eu1.segmentapis.com/v1/batch"),
        ("https://events.eu1.segmentapis.com", "https://events.eu1.segmentapis.com/v1/batch"),
        ("http://localhost:8080", "http://localhost:8080/v1/batch"),
        ("https://proxy.example.com/segment/", "https://proxy.example.com/segment/v1/batch"),
    ],
)
def test_host_normalisation(host: str | None, url: str) -> None:
    """Hosts are full URLs or bare host names (https), without a trailing slash."""
    assert Client(WRITE_KEY, host=host).url == url


@pytest.mark.parametrize("host", ["ftp://example.com", "ws://x", "", "https://", 42])
def test_bad_hosts_are_rejected(host: object) -> None:
    """A host with another scheme or no host name is a ConfigurationError at construction."""
    with pytest.raises(simple_segment.ConfigurationError) as info:
        Client(WRITE_KEY, host=host)  # type: ignore[arg-type]
    assert info.value.field == "host"


@pytest.mark.parametrize("key", [None, "", 123])
def test_write_key_is_required(key: object) -> None:
    """A missing or empty write key fails at construction, as an AssertionError too."""
    with pytest.raises(simple_segment.ConfigurationError, match="write_key") as info:
        Client(key)  # type: ignore[arg-type]
    assert isinstance(info.value, AssertionError)


def test_every_official_keyword_is_accepted() -> None:
    """Client takes every keyword of segment.analytics.Client, positionally in order too."""
    client = Client(
        write_key="k", host=None, debug=False, max_queue_size=10, send=False, on_error=None, gzip=False,
        max_retries=2, sync_mode=True, timeout=3, proxies=None, thread=4, upload_size=10, upload_interval=1.0,
        log_handler=None, oauth_client_id=None, oauth_client_key=None, oauth_key_id=None,
        oauth_auth_server="https://oauth2.segment.io", oauth_scope="tracking_api:write",
        max_total_backoff_duration=10, max_rate_limit_duration=10,
    )
    assert client.track("u", "E")[0] is True
    positional = Client("k", None, False, 10, False, None, False, 2, True, 3, None, 1, 100, 0.5, None)
    assert positional.send is False


@pytest.mark.parametrize(
    ("option", "value"),
    [("timeout", 0), ("timeout", "5"), ("timeout", (1, -1)), ("max_retries", -1), ("max_retries", 1.5),
     ("total_timeout", 0), ("on_error", "nope"), ("proxies", "http://p"), ("max_total_backoff_duration", -1),
     ("max_rate_limit_duration", None)],
)
def test_bad_options_are_rejected(option: str, value: object) -> None:
    """Invalid options raise ConfigurationError naming the option."""
    with pytest.raises(simple_segment.ConfigurationError) as info:
        Client(WRITE_KEY, **{option: value})
    assert info.value.field == option


def test_repr_hides_write_key() -> None:
    """The write key is not in repr()."""
    client = Client("super-secret-key")
    assert "super-secret-key" not in repr(client)
    assert client.write_key == "super-secret-key"
