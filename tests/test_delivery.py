"""Delivery: retries inside the call, errors at the call site, forks, threads, gzip, proxies."""

from __future__ import annotations

import gzip
import json
from typing import Any

from conftest import WRITE_KEY

from simple_segment import (
    Client,
)
from simple_segment.testing import FakeSegment


def quick_client(server: FakeSegment, **options: Any) -> Client:
    settings: dict[str, Any] = {"timeout": 2, "total_timeout": 8, "backoff_factor": 0.01, **options}
    return Client(WRITE_KEY, host=server.url, **settings)


def test_gzip_body(fake_segment: FakeSegment) -> None:
    """gzip=True sends Content-Encoding: gzip and bytes that decode to the same JSON."""
    with quick_client(fake_segment, gzip=True) as client:
        _, msg = client.track("u", "E", {"text": "hello " * 200})
    request = fake_segment.requests[0]
    assert request.headers["content-encoding"] == "gzip"
    decoded = json.loads(gzip.decompress(request.body))
    assert decoded["batch"] == [msg]
    assert len(request.body) < len(json.dumps(decoded))
