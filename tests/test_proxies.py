"""Proxies: proxies=, HTTP_PROXY/HTTPS_PROXY/NO_PROXY read at construction, CONNECT tunnels for HTTPS."""

from __future__ import annotations

import ssl
import time
from typing import Any

import pytest
from conftest import WRITE_KEY, QuickClient
from tls import Certificates, https_segment

from simple_segment import Client, NetworkError, TransportError
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


# -- an https:// proxy: its certificate checked as requests checks it, its bytes under the deadline --


def _server_context(certificates: Certificates) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.chain, certificates.key)
    return context


@pytest.mark.parametrize("how", ["verify", "REQUESTS_CA_BUNDLE"])
def test_an_https_proxy_is_trusted_as_verify_says(
    how: str, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify= and REQUESTS_CA_BUNDLE apply to an https:// proxy's certificate too (TLS in TLS to the target)."""
    from proxy import connect_proxy

    options: dict[str, Any] = {"verify": str(certificates.ca)} if how == "verify" else {}
    if how == "REQUESTS_CA_BUNDLE":
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates.ca))
    with connect_proxy(tls=_server_context(certificates)) as proxy, https_segment(certificates) as server:
        proxies = {"https": proxy.url}
        with Client(WRITE_KEY, host=server.url, proxies=proxies, timeout=5, max_retries=0, **options) as client:
            assert client.track("u", "Through TLS in TLS")[0] is True
    assert proxy.heads[0].startswith(f"CONNECT 127.0.0.1:{server.server_address[1]} HTTP/")
    assert [b["batch"][0]["event"] for b in server.bodies] == ["Through TLS in TLS"]


def test_an_untrusted_https_proxy_is_a_permanent_error(certificates: Certificates) -> None:
    """An https:// proxy whose certificate the CA store does not trust: TransportError, as for the target."""
    from proxy import connect_proxy

    with connect_proxy(tls=_server_context(certificates)) as proxy:
        with Client(WRITE_KEY, host="https://127.0.0.1:9", proxies={"https": proxy.url}, max_retries=0) as client:
            with pytest.raises(TransportError) as info:
                client.track("u", "E")
    assert not info.value.retryable


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_a_dripping_proxy_ends_within_the_deadline(scheme: str, certificates: Certificates) -> None:
    """An https:// (or http://) proxy dripping its CONNECT answer forever: a 2 s call (timeout=5) ends within 2.5 s."""
    from proxy import connect_proxy

    tls = _server_context(certificates) if scheme == "https" else None
    with connect_proxy(tls=tls, drip=0.1) as proxy:
        options: dict[str, Any] = {"proxies": {"https": proxy.url}, "verify": str(certificates.ca)}
        with Client(WRITE_KEY, host="https://127.0.0.1:9", timeout=5, total_timeout=2, **options) as client:
            started = time.monotonic()
            with pytest.raises(NetworkError):
                client.track("u", "E")
            elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"the call took {elapsed:.2f}s with total_timeout=2"


def test_a_dripping_target_through_tls_in_tls_ends_within_the_deadline(certificates: Certificates) -> None:
    """Every byte through an https:// proxy's tunnel keeps the deadline: a target dripping its
    answer through TLS in TLS holds a 2 s call (timeout=5) no longer than 2.5 s."""
    from faults import FaultServer, drip
    from proxy import connect_proxy

    endless = drip("headers", 0.1, endless=True, limit=6)
    with (
        connect_proxy(tls=_server_context(certificates)) as proxy,
        FaultServer(default=endless, tls=_server_context(certificates)) as target,
    ):
        options: dict[str, Any] = {"proxies": {"https": proxy.url}, "verify": str(certificates.ca)}
        host = f"https://127.0.0.1:{target.port}"
        with Client(WRITE_KEY, host=host, timeout=5, total_timeout=2, **options) as client:
            started = time.monotonic()
            with pytest.raises(NetworkError):
                client.track("u", "E")
            elapsed = time.monotonic() - started
        assert len(target.requests) == 1  # the request went through the tunnel
    assert elapsed < 2.5, f"the call took {elapsed:.2f}s with total_timeout=2"


# -- a permanent proxy problem is not retried ---------------------------------------------------


@pytest.mark.parametrize("status", [403, 407])
def test_a_proxy_refusing_the_tunnel_is_permanent(status: int, certificates: Certificates) -> None:
    """A proxy answering CONNECT with 407 (its credentials are wrong) or 403: TransportError, not retried."""
    from proxy import connect_proxy

    with connect_proxy(refuse=status) as proxy:
        with Client(WRITE_KEY, host="https://127.0.0.1:9", proxies={"https": proxy.url}, max_retries=3) as client:
            with pytest.raises(TransportError) as info:
                client.track("u", "E")
    assert not isinstance(info.value, NetworkError)
    assert not info.value.retryable
    assert info.value.attempts == 1
    assert len(proxy.heads) == 1
    assert str(status) in str(info.value)


def test_a_proxy_failing_to_reach_the_target_is_retried(certificates: Certificates) -> None:
    """A proxy answering CONNECT with 502 (it could not reach the target): NetworkError, retried."""
    from proxy import connect_proxy

    with connect_proxy(refuse=502) as proxy:
        options: dict[str, Any] = {"proxies": {"https": proxy.url}, "max_retries": 1, "backoff_factor": 0.01}
        with Client(WRITE_KEY, host="https://127.0.0.1:9", **options) as client:
            with pytest.raises(NetworkError) as info:
                client.track("u", "E")
    assert info.value.attempts == 2
