"""Test helpers: record what would be sent, or receive it on a real local server.

- :func:`capture` records every message any client builds for delivery, with no HTTP::

      with simple_segment.testing.capture() as sent:
          app.sign_up("user-1")
      assert sent.by_event("Signed Up")

- :class:`MockTransport` answers a client's requests with a function, below its
  retries and error mapping, on a :class:`FakeClock` that never sleeps::

      transport = MockTransport(lambda request: 503 if len(transport.requests) == 1 else 200)
      Client("key", transport=transport).track("u", "E")
      assert transport.clock.waits  # one backoff, waited instantly

- :class:`FakeSegment` is a Segment-compatible HTTP server on 127.0.0.1 that
  validates like the real API, records what it accepts and can be scripted per
  request (status, headers, delay, dropped connection). Tests in other processes
  read and script it over HTTP (``GET /_messages``, ``POST /_script``, ...). With
  ``oauth=OAuthSettings(...)`` it plays a source that requires OAuth: a token
  endpoint and Bearer checks (the one part that needs PyJWT, imported only then).

Neither imports pytest; the fixtures built on them live in
:mod:`simple_segment.testing.pytest_plugin`.
"""

from __future__ import annotations

from ._capture import Captured, capture
from ._mock import FakeClock, MockRequest, MockResponse, MockTransport
from ._oauth import IssuedToken, OAuthSettings
from ._server import FakeSegment, FakeSegmentTimeoutError, RecordedRequest

__all__ = [
    "Captured",
    "FakeClock",
    "FakeSegment",
    "FakeSegmentTimeoutError",
    "IssuedToken",
    "MockRequest",
    "MockResponse",
    "MockTransport",
    "OAuthSettings",
    "RecordedRequest",
    "capture",
]
