"""The module-level API of segment.analytics: settings, default_client and proxy functions."""

from __future__ import annotations

import pytest
from conftest import WRITE_KEY

import simple_segment
from simple_segment import (
    APIError,
    ConfigurationError,
)
from simple_segment.testing import FakeSegment


def test_settings_exist_with_official_names() -> None:
    """Every setting of segment.analytics is a module attribute."""
    for name in (
        "write_key", "host", "on_error", "debug", "log_handler", "send", "sync_mode", "max_queue_size", "gzip",
        "timeout", "max_retries", "proxies", "oauth_client_id", "oauth_client_key", "oauth_key_id",
        "oauth_auth_server", "oauth_scope",
    ):
        assert hasattr(simple_segment, name), name
    assert simple_segment.__version__ == simple_segment.VERSION
    assert simple_segment.default_client is None


def test_quickstart_with_send_false() -> None:
    """The README quickstart: set write_key and send, then track returns (True, msg)."""
    simple_segment.write_key = "k"
    simple_segment.send = False
    ok, msg = simple_segment.track("u", "Signed Up", {"plan": "pro"})
    assert ok is True
    assert msg["properties"] == {"plan": "pro"}
    assert isinstance(simple_segment.default_client, simple_segment.Client)


def test_proxy_functions_send_through_default_client(fake_segment: FakeSegment) -> None:
    """identify/track/page/screen/group/alias delegate to the lazily built default client."""
    simple_segment.write_key = WRITE_KEY
    simple_segment.host = fake_segment.url
    assert simple_segment.identify("u", {"a": 1})[0]
    assert simple_segment.track("u", "E")[0]
    assert simple_segment.page("u", "c", "n")[0]
    assert simple_segment.screen("u", "c", "n")[0]
    assert simple_segment.group("u", "g")[0]
    assert simple_segment.alias("p", "u")[0]
    assert [m["type"] for m in fake_segment.messages] == ["identify", "track", "page", "screen", "group", "alias"]
    assert fake_segment.requests[0].write_key == WRITE_KEY
    simple_segment.flush()
    simple_segment.join()
    simple_segment.shutdown()
    assert simple_segment.track("u", "after shutdown")[0]


def test_missing_write_key_fails_at_first_call() -> None:
    """Without a write key the first call raises ConfigurationError (an AssertionError)."""
    with pytest.raises(ConfigurationError, match="write_key"):
        simple_segment.track("u", "E")
    with pytest.raises(AssertionError):
        simple_segment.identify("u")


def test_changing_a_setting_rebuilds_the_default_client() -> None:
    """A setting assigned after the first call takes effect on the next call: never a stale write key."""
    with FakeSegment() as first, FakeSegment() as second:
        simple_segment.write_key = "key-one"
        simple_segment.host = first.url
        simple_segment.track("u", "E1")
        old = simple_segment.default_client
        simple_segment.write_key = "key-two"
        assert simple_segment.default_client is None
        simple_segment.host = second.url
        simple_segment.track("u", "E2")
        assert simple_segment.default_client is not old
    assert [r.write_key for r in first.requests] == ["key-one"]
    assert [r.write_key for r in second.requests] == ["key-two"]


def test_assigning_the_same_value_keeps_the_client() -> None:
    """Re-assigning a setting to the value it has does not rebuild the client."""
    simple_segment.write_key = "k"
    simple_segment.send = False
    simple_segment.track("u", "E")
    client = simple_segment.default_client
    simple_segment.send = False
    assert simple_segment.default_client is client


def test_module_on_error_and_send_settings(fake_segment: FakeSegment) -> None:
    """Module on_error is used by the default client."""
    seen = []
    simple_segment.write_key = WRITE_KEY
    simple_segment.host = fake_segment.url
    simple_segment.on_error = lambda exc, msgs: seen.append(msgs)
    fake_segment.respond_with(400)
    ok, msg = simple_segment.track("u", "E")
    assert ok is False
    assert seen == [[msg]]


def test_default_client_can_be_replaced(fake_segment: FakeSegment) -> None:
    """Assigning default_client directly, as with the official library, is honoured."""
    simple_segment.default_client = simple_segment.Client(WRITE_KEY, host=fake_segment.url)
    simple_segment.track("u", "E")
    assert len(fake_segment.messages) == 1


def test_exports() -> None:
    """The public names are importable from the package and listed in __all__."""
    for name in simple_segment.__all__:
        assert hasattr(simple_segment, name), name
    assert simple_segment.Client.__module__ == "simple_segment"
    assert APIError.__module__ == "simple_segment"
    from simple_segment import testing

    assert set(testing.__all__) >= {"FakeSegment", "capture"}
