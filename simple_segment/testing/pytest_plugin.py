"""pytest fixtures for testing code that uses simple_segment.

Registered through the ``pytest11`` entry point; inert unless a test asks for one of
its fixtures:

- ``fake_segment``: a running :class:`~simple_segment.testing.FakeSegment`;
- ``segment_client``: a :class:`~simple_segment.Client` pointed at ``fake_segment``
  (short timeouts and backoff, so failure tests stay quick);
- ``segment_capture``: while the test runs, the module-level functions
  (``simple_segment.track(...)``) use a fresh client and every message any client
  would send is recorded instead; yields the :class:`~simple_segment.testing.Captured`;
- ``segment_plan``: the tracking plan named by the ini option ``segment_plan`` (a path
  relative to the rootdir).  With that option set, every test fails if any message any
  client prepares while it runs (its call, not its fixtures) breaks the plan (the failure lists each violation and the
  line that made the message); nothing else changes: messages go where they would.

Module settings and ``default_client`` are restored afterwards, also when the test
fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import simple_segment
from simple_segment.client import Client
from simple_segment.plan import TrackingPlan
from simple_segment.plan._gate import watch

from ._capture import Captured, capture
from ._server import FakeSegment

TEST_WRITE_KEY = "test-write-key"

_PLAN_KEY = pytest.StashKey[TrackingPlan]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ini option ``segment_plan``."""
    parser.addini(
        "segment_plan",
        "path (from the rootdir) of a Segment tracking plan's JSON: every test fails on a message that breaks it",
        default="",
    )


def _configured_plan(config: pytest.Config) -> TrackingPlan | None:
    plan = config.stash.get(_PLAN_KEY, None)
    if plan is None:
        path = str(config.getini("segment_plan") or "")
        if not path:
            return None
        plan = config.stash[_PLAN_KEY] = TrackingPlan.load(config.rootpath / path)
    return plan


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """With the ini option ``segment_plan``, fail the test on any message that breaks the plan."""
    plan = _configured_plan(item.config)
    if plan is None:
        return (yield)
    with watch(plan) as seen:
        result = yield
    if seen:
        lines = [
            f"{found.location}: {found.message.get('type')} {found.message.get('event') or found.message.get('name')!r}"
            f" breaks the tracking plan: {'; '.join(map(str, found.violations))}"
            for found in seen
        ]
        pytest.fail("\n".join(lines), pytrace=False)
    return result


@pytest.fixture
def segment_plan(request: pytest.FixtureRequest) -> TrackingPlan:
    """Give the tracking plan of the ini option ``segment_plan`` (every test is checked against it)."""
    plan = _configured_plan(request.config)
    if plan is None:
        pytest.fail("segment_plan: set the ini option `segment_plan = path/to/tracking_plan.json`", pytrace=False)
    return plan


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
