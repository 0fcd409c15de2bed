"""The Django middleware under Django's test clients (sync and async stacks), against a loopback FakeSegment."""

from __future__ import annotations

import asyncio
import logging

import pytest
from django.test import AsyncClient, Client
from web_apps import django_site

import simple_segment
from simple_segment.testing import FakeSegment

WRITE_KEY = "test-write-key"


@pytest.fixture
def segment(fake_segment: FakeSegment) -> FakeSegment:
    simple_segment.write_key = WRITE_KEY
    simple_segment.host = fake_segment.url
    simple_segment.max_retries = 0
    return fake_segment


def test_messages_carry_the_context_and_wait_for_the_response_close(segment: FakeSegment) -> None:
    """The view's calls send nothing; the test client's response.close() delivers one batch."""
    assert django_site.urlpatterns
    response = Client().get(
        "/cart?a=1",
        headers={"user-agent": "UA", "accept-language": "nl-BE,nl", "referer": "https://r.example/"},
        REMOTE_ADDR="192.0.2.1",
    )
    assert response.content == b"cart"
    assert len(segment.requests) == 1
    first, second = segment.messages
    assert [first["event"], second["event"]] == ["Viewed Cart", "Second"]
    assert first["context"]["ip"] == "192.0.2.1"
    assert first["context"]["userAgent"] == "UA"
    assert first["context"]["locale"] == "nl-BE"
    assert first["context"]["page"] == {
        "url": "http://testserver/cart?a=1", "path": "/cart", "search": "?a=1", "referrer": "https://r.example/"
    }


def test_held_until_close(segment: FakeSegment) -> None:
    """Django's handler returns the response unclosed to a WSGI server: nothing is sent before close()."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.client import RequestFactory

    environ = RequestFactory().get("/cart").environ
    response = WSGIHandler()(environ, lambda *args: None)
    assert b"".join(response) == b"cart"
    assert segment.requests == []
    response.close()
    assert [m["event"] for m in segment.messages] == ["Viewed Cart", "Second"]


def test_a_view_that_raises_still_delivers(segment: FakeSegment) -> None:
    response = Client(raise_request_exception=False).get("/broken")
    assert response.status_code == 500
    assert [m["event"] for m in segment.messages] == ["Before Error"]


def test_failure_after_the_response_is_logged(segment: FakeSegment, caplog: pytest.LogCaptureFixture) -> None:
    segment.respond_with(400, times=1)
    caplog.set_level(logging.ERROR, logger="simple_segment")
    Client().get("/cart")
    ids = [m["messageId"] for m in segment.requests[0].batch]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "2 messages not delivered" in record.getMessage()
    assert all(i in record.getMessage() for i in ids)


def test_async_stack_delivers_off_the_loop(segment: FakeSegment) -> None:
    """Under ASGI (Django's AsyncClient) the delivery starts in the loop's executor after close()."""

    async def main() -> bytes:
        response = await AsyncClient().get("/async-cart", headers={"user-agent": "UA"})
        return bytes(response.content)

    assert asyncio.run(main()) == b"async cart"
    [message] = segment.wait_for_messages(1)
    assert message["event"] == "Async Cart"
    assert message["context"]["userAgent"] == "UA"
    assert message["context"]["page"]["path"] == "/async-cart"


def test_streaming_view_delivers_its_calls(segment: FakeSegment) -> None:
    response = Client().get("/stream")
    assert b"".join(response.streaming_content) == b"ab"  # type: ignore[attr-defined]
    response.close()
    assert [m["event"] for m in segment.messages] == ["Stream Started"]
