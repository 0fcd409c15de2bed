"""pytest fixtures for testing code that uses simple_segment.

Registered through the ``pytest11`` entry point; inert unless a test asks for one of
its fixtures:

- ``fake_segment``: a running :class:`~simple_segment.testing.FakeSegment`;
- ``segment_client``: a :class:`~simple_segment.Client` pointed at ``fake_segment``
  (short timeouts and backoff, so failure tests stay quick);
- ``segment_capture``: while the test runs, the module-level functions
  (``simple_segment.track(...)``) use a fresh client and every message any client
  would send is recorded instead; yields the :class:`~simple_segment.testing.Captured`.

Module settings and ``default_client`` are restored afterwards, also when the test
fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import simple_segment
from simple_segment.client import Client

from ._capture import Captured, capture
from ._server import FakeSegment

TEST_WRITE_KEY = "test-write-key"


@pytest.fixture
def fake_segment() -> Iterator[FakeSegment]:
    """Run a Segment-compatible server on 127.0.0.1 for one test."""
    with FakeSegment() as server:
        yield server


@pytest.fixture
def segment_client(fake_segment: FakeSegment) -> Iterator[Client]:
    """Give a Client that sends to ``fake_segment``; closed after the test."""
    with Client(TEST_WRITE_KEY, host=fake_segment.url, timeout=5, total_timeout=10, backoff_factor=0.01) as client:
        yield client


@pytest.fixture
def segment_capture() -> Iterator[Captured]:
    """Record what the module-level API (and any client) sends during the test."""
    saved = {name: getattr(simple_segment, name) for name in simple_segment._SETTINGS}  # noqa: SLF001
    saved_client = simple_segment.default_client
    try:
        simple_segment.default_client = Client(TEST_WRITE_KEY)
        with capture() as captured:
            yield captured
    finally:
        for name, value in saved.items():
            setattr(simple_segment, name, value)
        simple_segment.default_client = saved_client
