"""The shipped testing kit: capture(), FakeSegment through the client, and the pytest fixtures."""

from __future__ import annotations

import pytest
from conftest import WRITE_KEY

import simple_segment
from simple_segment import Client, ValidationError
from simple_segment.testing import Captured, FakeSegment, capture


def test_capture_records_without_http(fake_segment: FakeSegment) -> None:
    """Inside capture() clients hand messages to the recorder and open no connection."""
    client = Client(WRITE_KEY, host=fake_segment.url)
    with capture() as sent:
        ok, msg = client.track("u", "Signed Up", {"plan": "pro"})
        client.identify("u", {"email": "a@b.c"})
        with client.batch() as batch:
            batch.track("u", "Batched")
    assert ok is True
    assert fake_segment.requests == []
    assert len(sent) == 3
    assert sent[0] == msg
    assert sent.by_event("Signed Up") == [msg]
    assert [m["type"] for m in sent.by_type("track")] == ["track", "track"]
    assert sent.by_message_id(msg["messageId"]) == msg
    assert sent.by_message_id("nope") is None
    client.track("u", "After")
    assert len(fake_segment.messages) == 1
    assert len(sent) == 3


def test_capture_still_validates() -> None:
    """Bad arguments raise inside capture() exactly as in production."""
    with capture() as sent, pytest.raises(ValidationError):
        Client(WRITE_KEY).track("u", None)
    assert len(sent) == 0


def test_capture_nests_and_clears() -> None:
    """Nested captures each record what was sent while open; clear() forgets."""
    client = Client(WRITE_KEY)
    with capture() as outer:
        client.track("u", "A")
        with capture() as inner:
            client.track("u", "B")
        outer.clear()
        client.track("u", "C")
    assert [m["event"] for m in inner] == ["B"]
    assert [m["event"] for m in outer] == ["C"]


def test_segment_capture_fixture(segment_capture: Captured) -> None:
    """segment_capture: application code using the module-level API is recorded."""
    simple_segment.track("user-1", "Checkout")
    simple_segment.identify("user-1", {"plan": "pro"})
    assert [m["type"] for m in segment_capture] == ["track", "identify"]


def test_segment_client_fixture(segment_client: Client, fake_segment: FakeSegment) -> None:
    """segment_client sends to the fake_segment server over real HTTP."""
    segment_client.track("u", "E")
    assert fake_segment.by_event("E")[0]["userId"] == "u"


def test_fixtures_restore_state_when_a_test_fails(pytester: pytest.Pytester) -> None:
    """After a failing test that used segment_capture, settings and default_client are as before."""
    pytester.makepyfile(
        """
        import simple_segment

        def test_fails(segment_capture):
            simple_segment.write_key = "changed"
            simple_segment.track("u", "E")
            assert False

        def test_after():
            assert simple_segment.write_key is None
            assert simple_segment.default_client is None
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)


def test_plugin_is_inert_without_its_fixtures(pytester: pytest.Pytester) -> None:
    """A test that uses none of the fixtures runs with no server and no capture."""
    pytester.makepyfile(
        """
        from simple_segment import _delivery

        def test_plain():
            assert _delivery._recorders == ()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_captured_batch_counts_like_a_real_run(fake_segment: FakeSegment) -> None:
    """Inside capture(), a batch reports the messages, requests and bytes a real run would."""
    properties = {"text": "x" * 2000}

    def run(client: Client) -> tuple[int, int, int]:
        with client.batch() as batch:
            for _ in range(600):
                batch.track("u", "E", properties, message_id="m")
        return batch.messages_sent, batch.requests_sent, batch.bytes_sent

    for gzip in (False, True):
        with Client(WRITE_KEY, host=fake_segment.url, gzip=gzip) as client:
            real = run(client)
            with capture() as sent:
                captured = run(client)
        assert len(sent) == 600
        assert real[:2] == captured[:2] == (600, 3)
        assert abs(real[2] - captured[2]) < 100 * real[1]  # only sentAt and timestamps differ


def test_send_false_clients_are_captured_too() -> None:
    """capture() records what a send=False client tried to send; without capture it sends and counts nothing."""
    client = Client(WRITE_KEY, send=False)
    with client.batch() as batch:
        batch.track("u", "Nowhere")
    assert (batch.messages_sent, batch.requests_sent) == (0, 0)
    with capture() as sent:
        ok, msg = client.track("u", "Recorded")
    assert ok is True
    assert list(sent) == [msg]


def test_capture_covers_other_threads(fake_segment: FakeSegment) -> None:
    """Capturing is process-wide: a call made on another thread is recorded, not sent."""
    import threading

    client = Client(WRITE_KEY, host=fake_segment.url)
    with capture() as sent:
        thread = threading.Thread(target=client.track, args=("u", "From a thread"))
        thread.start()
        thread.join(10)
    assert [m["event"] for m in sent] == ["From a thread"]
    assert fake_segment.requests == []
