"""Proxies: proxies=, HTTP_PROXY/HTTPS_PROXY/NO_PROXY read at construction, CONNECT tunnels for HTTPS."""

from __future__ import annotations

import pytest
from conftest import WRITE_KEY, QuickClient
from tls import Certificates, https_segment

from simple_segment import Client
from simple_segment.testing import FakeSegment


def test_explicit_proxy_reaches_the_wire(fake_segment: FakeSegment) -> None:
    """proxies={'http': ...} sends the request to the proxy with the absolute URL as target."""
    with Client(WRITE_KEY, host="http://segment.invalid", proxies={"http": fake_segment.url}, timeout=2) as client:
        client.track("u", "E")
    (request,) = fake_segment.requests
    assert request.path == "http://segment.invalid/v1/batch"


def test_environment_proxy_is_read_at_construction(
    fake_segment: FakeSegment, monkeypatch: pytest.MonkeyPatch, quick_client: QuickClient
) -> None:
    """HTTP_PROXY set when the client is made is used; NO_PROXY is respected."""
    monkeypatch.setenv("HTTP_PROXY", fake_segment.url)
    with Client(WRITE_KEY, host="http://segment.invalid", timeout=2) as client:
        monkeypatch.delenv("HTTP_PROXY")
        client.track("u", "E")
    assert fake_segment.requests[0].path == "http://segment.invalid/v1/batch"
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with quick_client(fake_segment) as client:
        client.track("u", "E")
    assert fake_segment.requests[1].path == "/v1/batch"


def test_https_through_a_connect_proxy_from_the_environment(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY: the client tunnels with CONNECT (credentials in the proxy URL become Proxy-Authorization)."""
    from proxy import connect_proxy

    with connect_proxy() as proxy, https_segment(certificates) as server:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("http://", "http://user:s3cret@"))
        with Client(WRITE_KEY, host=server.url, verify=str(certificates.ca)) as client:
            assert client.track("u", "Tunnelled")[0] is True
            assert client.track("u", "Reused")[0] is True
    (head,) = proxy.heads  # one tunnel, kept alive for the second call
    assert head.startswith(f"CONNECT 127.0.0.1:{server.server_address[1]} HTTP/")
    assert "proxy-authorization: basic dxnlcjpzm2nyzxq=" in head.lower()
    assert WRITE_KEY not in head  # the write key travels inside the tunnel only
    assert [b["batch"][0]["event"] for b in server.bodies] == ["Tunnelled", "Reused"]


def test_no_proxy_bypasses_the_proxy(certificates: Certificates, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_PROXY naming the host sends directly, as requests would."""
    from proxy import connect_proxy

    with connect_proxy() as proxy, https_segment(certificates) as server:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with Client(WRITE_KEY, host=server.url, verify=str(certificates.ca)) as client:
            assert client.track("u", "Direct")[0] is True
    assert proxy.heads == []
    assert len(server.bodies) == 1
