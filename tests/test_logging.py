"""Logging: what the library logs and at which level, and the write key kept out of every log, error and traceback."""

from __future__ import annotations

import base64
import contextlib
import logging
import signal
import traceback
from collections.abc import Iterator

import pytest
from conftest import WRITE_KEY, QuickClient
from faults import FaultServer, closed_port, respond, retry_after, silent
from outcomes import catch_batch, catch_single

from simple_segment import Client, DeliveryError
from simple_segment.testing import FakeSegment

SECRET = "wk_SECRET_123"
"""A write key distinctive enough to search for in tracebacks and logs."""
SECRET_TOKEN = base64.b64encode(f"{SECRET}:".encode()).decode()
"""Its HTTP Basic token."""


# -- what is logged ------------------------------------------------------------------------


def test_debug_and_log_handler(fake_segment: FakeSegment, quick_client: QuickClient) -> None:
    """debug=True sets the 'simple_segment' logger to DEBUG; log_handler receives its records."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logger = logging.getLogger("simple_segment")
    level = logger.level
    try:
        with quick_client(fake_segment, debug=True, log_handler=handler) as client:
            client.track("u", "E")
        assert logger.level == logging.DEBUG
        assert any("sending" in r.getMessage() for r in records)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_plain_http_to_a_remote_host_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """http:// to a host that is not loopback works but warns that the key crosses the network in clear."""
    with caplog.at_level(logging.WARNING, logger="simple_segment"):
        Client(WRITE_KEY, host="http://collector.example.com")
        Client(WRITE_KEY, host="http://127.0.0.1:9")
        Client(WRITE_KEY, host="http://[::1]:9")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "collector.example.com" in warnings[0]
    assert "unencrypted" in warnings[0]


# -- the write key stays secret ------------------------------------------------------------


def test_write_key_never_logged(fake_segment: FakeSegment, caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG, log records show payloads but never the write key."""
    secret = "sk_live_very_secret"
    fake_segment.respond_with(500)
    with caplog.at_level(logging.DEBUG):
        with Client(secret, host=fake_segment.url, backoff_factor=0.01) as client:
            client.track("u", "E", {"p": 1})
        fake_segment.respond_with(400, body={"message": "bad"})
        with Client(secret, host=fake_segment.url) as client, pytest.raises(DeliveryError) as info:
            client.track("u", "E")
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert '"p"' in text or "'p'" in text
    assert secret not in text
    assert secret not in str(info.value)
    assert secret not in repr(info.value)
    simple_records = [r for r in caplog.records if r.name == "simple_segment" and r.levelno < logging.WARNING]
    assert simple_records, "payloads are logged at DEBUG"
    assert all("sending" not in r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)


def _assert_no_secret(text: str, where: str) -> None:
    assert SECRET not in text, f"the write key appears in {where}"
    assert SECRET_TOKEN not in text, f"the write key's Basic token appears in {where}"


@pytest.mark.parametrize("kind", ["500", "connection-refused", "batch-503", "tls"])
def test_write_key_not_in_tracebacks_or_logs(
    kind: str, caplog: pytest.LogCaptureFixture, quick_client: QuickClient
) -> None:
    """The write key (and its Basic token) is in no frame's locals, not in str/repr of
    the error, and in no log record at any level."""
    caplog.set_level(logging.DEBUG)
    with FaultServer(default=respond(500 if kind == "500" else 503)) as server:
        host = {
            "500": server.url,
            "batch-503": server.url,
            "connection-refused": f"http://127.0.0.1:{closed_port()}",
            "tls": server.url.replace("http://", "https://"),
        }[kind]
        client = quick_client(host, key=SECRET, max_retries=0 if kind == "500" else 1)
        error = catch_batch(client) if kind.startswith("batch") else catch_single(client)
        client.close()
    rendered = "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())
    _assert_no_secret(rendered, "a traceback with locals")
    _assert_no_secret(str(error), "str(error)")
    _assert_no_secret(repr(error), "repr(error)")
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        _assert_no_secret(text, f"a {record.levelname} log record from {record.name}")


def test_the_migration_guides_logger_recipe_keeps_old_handlers_working() -> None:
    """docs/migrating.md's recipe: a handler set up on the official "segment" logger gets simple_segment's records."""
    import re
    from pathlib import Path

    from simple_segment.testing import MockTransport

    guide = (Path(__file__).resolve().parent.parent / "docs" / "migrating.md").read_text(encoding="utf-8")
    section = guide.split("**Logging**", 1)[1].split("\n**", 1)[0]
    (recipe,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)

    class Records(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.seen: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.seen.append(record)

    old, new = logging.getLogger("segment"), logging.getLogger("simple_segment")
    saved = [(logger, logger.level, logger.propagate, list(logger.handlers)) for logger in (old, new)]
    handler = Records()
    try:
        old.setLevel(logging.WARNING)
        old.addHandler(handler)
        exec(compile(recipe, "docs/migrating.md logging recipe", "exec"), {})  # noqa: S102
        answers = [503, 200]
        client = Client(WRITE_KEY, host="https://api.example.test", backoff_factor=0.01,
                        transport=MockTransport(lambda _request: answers.pop(0)))
        assert client.track("u", "E")[0] is True
    finally:
        for logger, level, propagate, handlers in saved:
            logger.setLevel(level)
            logger.propagate = propagate
            logger.handlers[:] = handlers
    assert [record.name for record in handler.seen] == ["simple_segment"]
    assert "retrying" in handler.seen[0].getMessage()
# -- the caller's own exception interrupting a call ----------------------------------------------


class Interrupted(Exception):  # noqa: N818 - named as Celery's SoftTimeLimitExceeded is: what happened
    """What a caller's signal handler raises (as Celery's soft time limit does)."""


@contextlib.contextmanager
def interrupt_after(seconds: float) -> Iterator[None]:
    """Raise :class:`Interrupted` from a SIGALRM handler after ``seconds`` (main thread only)."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def with_locals(error: BaseException) -> str:
    exception = traceback.TracebackException(type(error), error, error.__traceback__, capture_locals=True)
    return "".join(exception.format())


@pytest.mark.parametrize("kind", ["waiting", "batch", "backoff"])
def test_a_callers_exception_leaves_no_write_key_in_frame_locals(kind: str, quick_client: QuickClient) -> None:
    """A signal handler raising while a call waits on a slow server (or between two attempts): the
    write key and its Basic token are in no frame's locals of the traceback (``capture_locals=True``)."""
    behaviour = retry_after(503, "3") if kind == "backoff" else silent(limit=5)
    with FaultServer(default=behaviour) as server:
        client = quick_client(server.url, key=SECRET, timeout=5, total_timeout=5, max_retries=1)
        with pytest.raises(Interrupted) as info, interrupt_after(0.5):
            if kind == "batch":
                with client.batch() as block:
                    block.track("u", "E")
            else:
                client.track("u", "E")
        client.close()
    rendered = with_locals(info.value)
    assert "Interrupted" in rendered
    _assert_no_secret(rendered, "a traceback with locals of the caller's own exception")
