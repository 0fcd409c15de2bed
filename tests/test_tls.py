"""TLS: CA bundles (verify=, REQUESTS_CA_BUNDLE), verify=False, and which TLS failures are permanent.

The HTTPS servers are tests/tls.py's (a test CA and a certificate for 127.0.0.1, the
``certificates`` fixture of conftest) and :mod:`faults`'s self-signed one.
"""

from __future__ import annotations

import pytest
import urllib3
from conftest import WRITE_KEY, QuickClient
from faults import FaultServer, self_signed_context
from outcomes import assert_retryability, failing_call
from tls import Certificates, https_segment

from simple_segment import Client, NetworkError, RetryableError, TransportError
from simple_segment.testing import FakeSegment

# -- trusting a certificate ----------------------------------------------------------------


def test_verify_with_a_ca_bundle_path(certificates: Certificates) -> None:
    """verify=<CA bundle> trusts that CA: the request is delivered over TLS."""
    with https_segment(certificates) as server, Client(WRITE_KEY, host=server.url, verify=str(certificates.ca)) as c:
        assert c.track("u", "Over TLS")[0] is True
    assert server.bodies[0]["batch"][0]["event"] == "Over TLS"


def test_requests_ca_bundle_is_read_at_construction(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REQUESTS_CA_BUNDLE, as requests users set it, is honoured; it is read when the client is made."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates.ca))
    with https_segment(certificates) as server, Client(WRITE_KEY, host=server.url) as client:
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        assert client.track("u", "E")[0] is True


def test_verify_false_skips_the_check_with_urllib3_warning(certificates: Certificates) -> None:
    """verify=False delivers to an untrusted certificate, with urllib3's InsecureRequestWarning."""
    with https_segment(certificates) as server, Client(WRITE_KEY, host=server.url, verify=False) as client:
        with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
            assert client.track("u", "E")[0] is True


# -- TLS failures: permanent unless the server gave no answer ------------------------------


def test_untrusted_certificate_is_permanent_and_not_retried(certificates: Certificates) -> None:
    """The default CA store does not trust the test CA: a TransportError, not retryable, one connection only."""
    with https_segment(certificates) as server, Client(WRITE_KEY, host=server.url, max_retries=3) as client:
        with pytest.raises(TransportError) as info:
            client.track("u", "E")
        assert server.connections == 1
    error = info.value
    assert not isinstance(error, RetryableError)
    assert error.retryable is False
    assert error.attempts == 1
    assert len(error.messages) == 1
    assert "certificate" in str(error).lower()


def test_self_signed_certificate_is_permanent(quick_client: QuickClient) -> None:
    """A server presenting a self-signed certificate: not retryable, one connection attempt."""
    with FaultServer(tls=self_signed_context()) as server:
        client = quick_client(server.url, max_retries=3)
        error = failing_call(client)
        connections = server.connections
        client.close()
    assert_retryability(error, retryable=False)
    assert connections == 1
    assert error.attempts == 1


def test_https_to_a_plain_http_server_is_permanent(fake_segment: FakeSegment) -> None:
    """https:// to a server that does not speak TLS: permanent, not retried."""
    host = fake_segment.url.replace("http://", "https://")
    with Client(WRITE_KEY, host=host, max_retries=3, backoff_factor=0.01) as client, pytest.raises(TransportError) as info:
        client.track("u", "E")
    assert not info.value.retryable
    assert info.value.attempts == 1


def test_tls_to_a_plain_http_server_is_permanent(quick_client: QuickClient) -> None:
    """https:// to a plain-HTTP server (it answers the TLS hello with an HTTP 400): not retryable, one attempt."""
    with FakeSegment() as plain:
        client = quick_client(plain.url.replace("http://", "https://"), max_retries=3)
        error = failing_call(client)
        connections = plain.connections_accepted
        client.close()
    assert_retryability(error, retryable=False)
    assert connections == 1
    assert error.attempts == 1


def test_tls_handshake_cut_off_is_retryable(fault_server: FaultServer, quick_client: QuickClient) -> None:
    """A server that hangs up during the TLS handshake gave no answer: a retryable NetworkError, retried."""
    client = quick_client(fault_server.url.replace("http://", "https://"), max_retries=2)
    error = failing_call(client)
    assert_retryability(error, retryable=True)
    assert isinstance(error, NetworkError)
    assert error.attempts == 3
