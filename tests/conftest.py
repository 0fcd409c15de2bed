"""Shared fixtures: a clean environment and a real loopback Segment server.

The project's own pytest plugin (``simple_segment.testing.pytest_plugin``) provides
``fake_segment``, ``segment_client`` and ``segment_capture``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any, Protocol

import pytest
from faults import FaultServer
from tls import Certificates, make_certificates

import simple_segment
from simple_segment.testing import FakeSegment

pytest_plugins = ["pytester"]

WRITE_KEY = "test-write-key"

_ENV = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SEGMENT_WRITE_KEY", "SEGMENT_HOST",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy and CA variables of the machine must not change where tests connect."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def clean_module_state() -> Iterator[None]:
    """Module-level settings and default_client are restored after every test."""
    saved = {name: getattr(simple_segment, name) for name in simple_segment._SETTINGS}
    saved_client = simple_segment.default_client
    yield
    for name, value in saved.items():
        setattr(simple_segment, name, value)
    current = simple_segment.default_client
    if current is not None and current is not saved_client:
        current.close()
    simple_segment.default_client = saved_client


@pytest.fixture
def client(fake_segment: FakeSegment) -> Iterator[simple_segment.Client]:
    """A client of the fake server with quick retries and a short time budget."""
    with simple_segment.Client(
        WRITE_KEY, host=fake_segment.url, timeout=2, total_timeout=8, backoff_factor=0.01
    ) as c:
        yield c


QUICK = {"timeout": 2, "total_timeout": 8, "backoff_factor": 0.01}
"""The options of a quick client: retries a hundredth of a second apart, a short time budget."""


class _Served(Protocol):
    @property
    def url(self) -> str: ...


class QuickClient(Protocol):
    """The ``quick_client`` fixture: ``quick_client(host=None, *, key=WRITE_KEY, **options) -> Client``."""

    def __call__(
        self, host: str | _Served | None = None, /, *, key: str = ..., **options: Any
    ) -> simple_segment.Client: ...


@pytest.fixture
def quick_client(request: pytest.FixtureRequest) -> Iterator[QuickClient]:
    """Make clients with QUICK options; closed after the test.

    ``host`` is a URL or a server with a ``.url`` (a FakeSegment, a FaultServer), the
    ``fake_segment`` fixture's when left out; ``options`` override QUICK.
    """
    made: list[simple_segment.Client] = []

    def make(host: str | _Served | None = None, /, *, key: str = WRITE_KEY, **options: Any) -> simple_segment.Client:
        if host is None:
            host = request.getfixturevalue("fake_segment")
        url = host if isinstance(host, str) else host.url
        made.append(simple_segment.Client(key, host=url, **{**QUICK, **options}))
        return made[-1]

    yield make
    for made_client in made:
        made_client.close()


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A fault server (tests/faults.py) answering 200 unless scripted; its threads are joined afterwards."""
    with FaultServer() as server:
        yield server
    assert server.alive_threads() == []
    assert server.errors == []


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA and a certificate for 127.0.0.1 it signed (tests/tls.py), made once per module."""
    return make_certificates(tmp_path_factory.mktemp("tls"))


def basic_auth(key: str = WRITE_KEY) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def body_of(request: Any) -> dict[str, Any]:
    """The decoded JSON body of a recorded request (gunzipped when needed)."""
    assert request.json is not None, request.body[:200]
    return dict(request.json)


def wire(msg: dict[str, Any]) -> dict[str, Any]:
    """What ``msg`` looks like once serialized and parsed."""
    return dict(json.loads(json.dumps(msg)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how the official 2.4.0 suite fared (tests/test_official_suite.py), if it ran."""
    outcomes: dict[str, str] = {}
    for outcome in ("passed", "skipped", "xfailed", "xpassed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if "test_official_suite.py::test_official[" in nodeid and outcomes.get(nodeid) not in ("failed", "error"):
                outcomes[nodeid] = outcome
    if not outcomes:
        return
    counts = {outcome: list(outcomes.values()).count(outcome) for outcome in set(outcomes.values())}
    not_applicable = counts.get("skipped", 0)
    differences = counts.get("xfailed", 0)
    terminalreporter.write_sep(
        "=",
        f"official segment-analytics-python suite: {len(outcomes)} tests, {not_applicable} n/a, "
        f"{len(outcomes) - not_applicable} applicable: {counts.get('passed', 0)} passed, "
        f"{differences} expected differences (xfail), "
        f"{counts.get('failed', 0) + counts.get('error', 0) + counts.get('xpassed', 0)} failed",
    )


@pytest.fixture
def fake() -> Iterator[FakeSegment]:
    """A FakeSegment for the fake server's own tests; it must end the test with no handler errors."""
    with FakeSegment() as server:
        yield server
        assert server.errors == []


def track(i: int = 0, **fields: Any) -> dict[str, Any]:
    """A valid track message in wire shape, messageId ``m{i}``, for posting to the fake server."""
    return {"type": "track", "userId": "u1", "event": "Clicked", "messageId": f"m{i}", **fields}
