"""Behaviour no other test defends: TLS and CA bundles, timeouts, warnings, CLI gzip and dry-run, import."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import WRITE_KEY
from tls import Certificates, make_certificates

from simple_segment.testing import FakeSegment


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "simple_segment", *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def test_cli_gzip_sends_compressed_bodies(fake_segment: FakeSegment) -> None:
    """--gzip: the request carries Content-Encoding: gzip and a body that inflates to the message."""
    result = _cli("track", "--write-key", WRITE_KEY, "--host", fake_segment.url, "--gzip", "--user-id", "u",
                  "--event", "Zipped")
    assert result.returncode == 0, result.stderr
    (request,) = fake_segment.requests
    assert request.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(request.body))["batch"][0]["event"] == "Zipped"


@pytest.mark.parametrize("compressed", [False, True])
def test_dry_run_prints_the_request_as_it_would_be_sent(fake_segment: FakeSegment, compressed: bool) -> None:
    """--dry-run shows the same request line and headers a real run sends (credentials redacted)."""
    flags = ["--gzip"] if compressed else []
    common = ["track", "--write-key", WRITE_KEY, "--user-id", "u", "--event", "E", "--message-id", "m-1", *flags]
    dry = _cli(*common, "--host", fake_segment.url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    real = _cli(*common, "--host", fake_segment.url)
    assert real.returncode == 0, real.stderr
    (request,) = fake_segment.requests
    head, _, body = dry.stdout.decode().partition("\n\n")
    request_line, *header_lines = head.splitlines()
    assert request_line == f"POST {fake_segment.url}/v1/batch HTTP/1.1"
    shown = {name.lower(): value for name, _, value in (line.partition(": ") for line in header_lines)}
    assert shown.pop("authorization") == "Basic ***"
    sent = {k: v for k, v in request.headers.items() if k != "authorization"}
    if compressed:  # the size of compressed bytes depends on the timestamps of the moment
        assert abs(int(shown.pop("content-length")) - int(sent.pop("content-length"))) <= 8
    assert shown == sent
    assert WRITE_KEY not in dry.stdout.decode()
    printed = json.loads(body.splitlines()[0])
    received = request.json
    assert printed["batch"][0]["messageId"] == received["batch"][0]["messageId"] == "m-1"
    assert printed["writeKey"] == "***"
    if compressed:
        assert "gzip-compressed" in body


def test_import_reports_every_bad_line_and_delivers_the_rest(fake_segment: FakeSegment, tmp_path: Path) -> None:
    """import: lines 600 and 100,000 levels deep, invalid UTF-8 and bad JSON are reported; the rest go; exit 2."""
    lines = [
        b'{"type":"track","userId":"u","event":"First"}',
        b'{"type":"track","userId":"u","event":"Deep","properties":' + b'{"a":' * 600 + b"1" + b"}" * 600 + b"}",
        b'{"type":"track","userId":"u","event":"Deeper","properties":' + b'{"a":' * 100_000 + b"1"
        + b"}" * 100_000 + b"}",
        b"[" * 100_000,
        b'{"type":"track","userId":"\xff\xfe","event":"Bad UTF-8"}',
        b'{"type": "track", nope}',
        b'{"type":"track","userId":"u","event":"Last"}',
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for source, stdin in ((str(path), None), ("-", path.read_bytes())):
        fake_segment.clear()
        result = _cli("import", source, "--write-key", WRITE_KEY, "--host", fake_segment.url, stdin=stdin)
        errors = result.stderr.decode()
        assert result.returncode == 2, errors
        for number in (2, 3, 4, 5, 6):
            assert f"line {number}: " in errors
        assert "Traceback" not in errors
        assert [m["event"] for m in fake_segment.messages] == ["First", "Last"]
