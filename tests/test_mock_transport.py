"""Client(transport=MockTransport(handler)): retries, Retry-After, errors, OAuth, on_error and gzip through the seam.

Every wait goes to the transport's FakeClock: the autouse fixture below makes the
real clock's ``sleep`` fail, so a test that slept for real would fail, not just be slow.
"""

from __future__ import annotations

import gzip
import json
import ssl
import time
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

import pytest
from conftest import WRITE_KEY, basic_auth
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from simple_segment import (
    APIError,
    Client,
    NetworkError,
    RateLimitError,
    ServerError,
    TokenError,
    TransportError,
)
from simple_segment._transport.clock import SystemClock
from simple_segment.testing import FakeClock, MockRequest, MockResponse, MockTransport

HOST = "https://api.example.test"
AUTH = "https://oauth.example.test"


@pytest.fixture(autouse=True)
def no_real_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's real clock may not wait in these tests: every wait must go to the FakeClock."""

    def forbidden(seconds: float) -> None:
        pytest.fail(f"slept {seconds}s on the real clock")

    monkeypatch.setattr(SystemClock, "sleep", staticmethod(forbidden))


def scripted(*answers: Any) -> MockTransport:
    """A transport answering the requests in order with ``answers`` (then 200)."""
    queue = list(answers)

    def handler(_request: MockRequest) -> Any:
        answer = queue.pop(0) if queue else 200
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return MockTransport(handler)


def mock_client(transport: MockTransport, **options: Any) -> Client:
    settings: dict[str, Any] = {"host": HOST, "backoff_factor": 1.0, "total_timeout": 60.0, **options}
    return Client(WRITE_KEY, transport=transport, **settings)


# -- what the handler sees ---------------------------------------------------------------


def test_the_handler_sees_the_request_as_sent() -> None:
    """method, url, headers (case-insensitive, http.client's included) and body as sent; json() decodes it."""
    transport = scripted(200)
    _, msg = mock_client(transport).track("u", "Signed Up", {"plan": "pro"})
    (request,) = transport.requests
    assert (request.method, request.url) == ("POST", f"{HOST}/v1/batch")
    assert request.headers["authorization"] == basic_auth()
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Host"] == "api.example.test"
    assert request.headers["content-length"] == str(len(request.body))
    assert request.headers["User-Agent"].startswith("simple_segment/")
    assert "X-Retry-Count" not in request.headers
    body = request.json()
    assert body == json.loads(request.body)
    assert body["batch"][0]["messageId"] == msg["messageId"]
    assert body["batch"][0]["properties"] == {"plan": "pro"}
    assert "sentAt" in body


def test_gzip_body_is_sent_compressed_and_json_undoes_it() -> None:
    """With gzip=True the body is gzip bytes (Content-Encoding: gzip); .content and .json() decompress."""
    transport = scripted(200)
    mock_client(transport, gzip=True).track("u", "E")
    (request,) = transport.requests
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.body[:2] == b"\x1f\x8b"
    assert request.content == gzip.decompress(request.body)
    assert request.json()["batch"][0]["event"] == "E"


def test_a_gzip_error_answer_is_inflated_into_the_error() -> None:
    """An error answer sent gzip-compressed is read as over the network: its JSON message reaches the error."""
    payload = gzip.compress(json.dumps({"code": "bad", "message": "inflated"}).encode())
    transport = scripted(MockResponse(400, {"Content-Encoding": "gzip"}, payload))
    with pytest.raises(APIError) as info:
        mock_client(transport).track("u", "E")
    assert (info.value.status, info.value.code, info.value.message) == (400, "bad", "inflated")


@pytest.mark.parametrize(
    "answer",
    [204, (202, {}, b""), (201, {"X-A": "1"}, "ok"), MockResponse(200, json={"success": True})],
    ids=["int", "tuple", "tuple-str-body", "MockResponse"],
)
def test_every_answer_shape_is_accepted(answer: Any) -> None:
    """An int status, a (status, headers, body) tuple or a MockResponse: any 2xx delivers."""
    assert mock_client(scripted(answer)).track("u", "E")[0] is True


@pytest.mark.parametrize("answer", ["200", (200, {}), None, 99, 600, True, (200, [], b"")])
def test_an_unusable_answer_is_a_type_error(answer: Any) -> None:
    """A handler returning something that is not an answer fails the call with a TypeError naming it."""
    with pytest.raises(TypeError, match="MockTransport"):
        mock_client(scripted(answer)).track("u", "E")


# -- retries, Retry-After and the budget, on the fake clock ---------------------------------


def test_a_503_is_retried_after_a_backoff_on_the_fake_clock() -> None:
    """503 then 200: two requests, the second with X-Retry-Count: 1 and the same messageId, one wait recorded."""
    transport = scripted(503)
    assert mock_client(transport).track("u", "E")[0] is True
    first, second = transport.requests
    assert second.headers["X-Retry-Count"] == "1"
    assert first.json()["batch"] == second.json()["batch"]
    (wait,) = transport.clock.waits
    assert 1.0 <= wait <= 2.0  # backoff_factor, plus at most as much jitter


def test_backoff_grows_and_retries_run_out() -> None:
    """Always 500: max_retries + 1 attempts, growing waits, then ServerError with attempts set."""
    transport = MockTransport(lambda _request: 500)
    with pytest.raises(ServerError) as info:
        mock_client(transport, max_retries=3, max_total_backoff_duration=100).track("u", "E")
    assert info.value.attempts == len(transport.requests) == 4
    assert [r.headers.get("X-Retry-Count") for r in transport.requests] == [None, "1", "2", "3"]
    waits = transport.clock.waits
    assert len(waits) == 3
    for n, wait in enumerate(waits):
        assert 2**n <= wait <= 2**n + 1.0, waits


def test_retry_after_seconds_and_date_are_waited() -> None:
    """Retry-After: 7 waits 7 s; an HTTP-date 20 s ahead waits about 20 s."""
    transport = scripted(MockResponse(429, {"Retry-After": "7"}))
    mock_client(transport).track("u", "E")
    assert transport.clock.waits == [7.0]
    transport = scripted((503, {"Retry-After": formatdate(time.time() + 20, usegmt=True)}, b""))
    mock_client(transport).track("u", "E")
    (wait,) = transport.clock.waits
    assert 17 <= wait <= 21


def test_a_retry_after_past_the_budget_raises_rate_limit_error_at_once() -> None:
    """429 asking for 30 s with 10 s of total_timeout: RateLimitError with retry_after, no wait, one request."""
    transport = MockTransport(lambda _request: MockResponse(429, {"Retry-After": "30"}, json={"code": "slow"}))
    with pytest.raises(RateLimitError) as info:
        mock_client(transport, total_timeout=10).track("u", "E")
    assert info.value.retry_after == 30
    assert info.value.code == "slow"
    assert transport.clock.waits == []
    assert len(transport.requests) == 1


def test_a_slow_answer_spends_the_budget() -> None:
    """A handler taking 5 s of fake time per answer: the answer that comes after total_timeout is a NetworkError."""
    clock = FakeClock()

    def slow(_request: MockRequest) -> int:
        clock.advance(5)
        return 503

    transport = MockTransport(slow, clock=clock)
    with pytest.raises(NetworkError, match="total_timeout ran out") as info:
        mock_client(transport, total_timeout=12, max_retries=10, backoff_factor=0.1).track("u", "E")
    assert transport.clock is clock
    assert len(transport.requests) == 3  # 5 s each (and short waits): the third answer comes after 12 s
    assert info.value.attempts == 3
    assert clock.now - 1_000.0 < 12 + 5


def test_a_400_is_not_retried() -> None:
    """A 400 is final: APIError (not retryable) with the answer's code and message, one request, no wait."""
    transport = scripted(MockResponse(400, json={"code": "invalid", "message": "no"}))
    with pytest.raises(APIError) as info:
        mock_client(transport).track("u", "E")
    assert (info.value.status, info.value.code, info.value.message) == (400, "invalid", "no")
    assert not info.value.retryable
    assert info.value.response.status == 400
    assert len(transport.requests) == 1
    assert transport.clock.waits == []


# -- network failures raised by the handler ---------------------------------------------


@pytest.mark.parametrize(
    "error", [ConnectionRefusedError("refused"), ConnectionResetError("reset"), TimeoutError("timed out"), OSError()]
)
def test_an_oserror_is_a_network_failure_and_retried(error: OSError) -> None:
    """A handler raising OSError stands for the network failing: retried, then NetworkError chaining it."""
    transport = scripted(error, error)
    with pytest.raises(NetworkError) as info:
        mock_client(transport, max_retries=1).track("u", "E")
    assert info.value.retryable
    assert info.value.attempts == 2
    assert isinstance(info.value.__cause__, type(error))
    assert len(transport.clock.waits) == 1
    transport = scripted(error)
    assert mock_client(transport, max_retries=1).track("u", "E")[0] is True


def test_a_certificate_error_is_a_transport_error_not_retried() -> None:
    """A handler raising ssl.SSLCertVerificationError: TransportError (permanent), as a bad certificate would."""
    transport = scripted(ssl.SSLCertVerificationError("certificate verify failed"))
    with pytest.raises(TransportError) as info:
        mock_client(transport).track("u", "E")
    assert not isinstance(info.value, NetworkError)
    assert len(transport.requests) == 1


@pytest.mark.parametrize("error", [AssertionError("checked in the handler"), ValueError("a bug"), KeyError("k")])
def test_anything_else_the_handler_raises_reaches_the_caller(error: Exception) -> None:
    """A failed assert (or any non-network error) in a handler is not retried nor mapped: the test sees it."""
    transport = scripted(error)
    with pytest.raises(type(error)) as info:
        mock_client(transport, on_error=lambda *_: None).track("u", "E")
    assert info.value is error
    assert len(transport.requests) == 1


# -- on_error and batches ---------------------------------------------------------------


def test_on_error_gets_the_error_and_the_messages() -> None:
    """With on_error, a failure after retries calls it with the error and the batch's messages; the call returns False."""
    seen: list[tuple[Exception, list[Any]]] = []
    transport = MockTransport(lambda _request: 502)
    ok, msg = mock_client(transport, max_retries=2, on_error=lambda e, m: seen.append((e, m))).track("u", "E")
    assert ok is False
    ((error, messages),) = seen
    assert isinstance(error, ServerError)
    assert error.attempts == 3
    assert [m["messageId"] for m in messages] == [msg["messageId"]]
    assert len(transport.clock.waits) == 2


def test_a_batch_is_one_request() -> None:
    """client.batch() posts its calls in one request through the transport."""
    transport = scripted(200)
    with mock_client(transport).batch() as batch:
        for i in range(3):
            batch.track("u", f"E{i}")
    (request,) = transport.requests
    assert [m["event"] for m in request.json()["batch"]] == ["E0", "E1", "E2"]


def test_the_transport_is_not_an_option() -> None:
    """transport= leaves Client.options as without it (it is no setting, so equal settings stay equal)."""
    assert mock_client(scripted()).options == Client(WRITE_KEY, host=HOST, backoff_factor=1.0, total_timeout=60.0).options


def test_send_false_sends_nothing() -> None:
    """send=False still validates and builds; the transport sees nothing."""
    transport = scripted()
    assert mock_client(transport, send=False).track("u", "E")[0] is True
    assert transport.requests == []


# -- OAuth through the same transport -----------------------------------------------------


@pytest.fixture(scope="module")
def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class Tokens:
    """A handler playing an auth server and the tracking API on one fake clock: tokens expire on it."""

    def __init__(self, lifetime: float = 2.0) -> None:
        self.lifetime = lifetime
        self.issued: list[tuple[str, float]] = []
        self.refusals: list[Any] = []
        self.transport = MockTransport(self)

    def __call__(self, request: MockRequest) -> Any:
        clock = self.transport.clock
        if request.url == f"{AUTH}/token":
            if self.refusals:
                return self.refusals.pop(0)
            token = f"token-{len(self.issued)}"
            self.issued.append((token, clock.now + self.lifetime))
            return MockResponse(200, json={"access_token": token, "expires_in": self.lifetime})
        live = {f"Bearer {token}" for token, ends in self.issued if clock.now < ends}
        return 200 if request.headers["Authorization"] in live else 401


def oauth_client(tokens: Tokens, private_key: str, **options: Any) -> Client:
    return mock_client(
        tokens.transport,
        oauth_client_id="client-1",
        oauth_client_key=private_key,
        oauth_key_id="key-1",
        oauth_auth_server=AUTH,
        **options,
    )


def test_the_token_request_goes_through_the_transport(private_key: str) -> None:
    """The handler sees the token POST (a form with the client assertion), then the batch with its Bearer token."""
    tokens = Tokens()
    assert oauth_client(tokens, private_key).track("u", "E")[0] is True
    token_request, batch_request = tokens.transport.requests
    assert token_request.url == f"{AUTH}/token"
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(token_request.content.decode())
    assert form["grant_type"] == ["client_credentials"]
    assert form["client_assertion"][0].count(".") == 2
    assert batch_request.headers["Authorization"] == "Bearer token-0"


def test_a_token_is_refreshed_after_half_its_life_on_the_fake_clock(private_key: str) -> None:
    """A token of 2 s is kept for 1 s of fake time and replaced after, before the server would refuse it."""
    tokens = Tokens(lifetime=2.0)
    client = oauth_client(tokens, private_key)
    client.track("u", "A")
    tokens.transport.clock.advance(0.9)
    client.track("u", "B")
    assert len(tokens.issued) == 1
    tokens.transport.clock.advance(0.2)
    client.track("u", "C")
    assert len(tokens.issued) == 2
    batches = [r for r in tokens.transport.requests if r.url.endswith("/v1/batch")]
    assert [r.headers["Authorization"] for r in batches] == ["Bearer token-0"] * 2 + ["Bearer token-1"]
    assert tokens.transport.clock.waits == []  # nothing was refused, nothing waited


def test_a_refused_token_is_replaced_and_the_batch_resent(private_key: str) -> None:
    """401 on the batch (the token expired on the server): a new token, the same batch sent again at once."""
    tokens = Tokens(lifetime=100.0)
    client = oauth_client(tokens, private_key)
    client.track("u", "A")
    tokens.issued[0] = ("token-0", 0.0)  # the server revokes it
    _, msg = client.track("u", "B")
    refused, accepted = [r for r in tokens.transport.requests if r.url.endswith("/v1/batch")][1:]
    assert refused.headers["Authorization"] == "Bearer token-0"
    assert accepted.headers["Authorization"] == "Bearer token-1"
    assert refused.json()["batch"][0]["messageId"] == accepted.json()["batch"][0]["messageId"] == msg["messageId"]
    assert tokens.transport.clock.waits == []


def test_a_rate_limited_token_request_waits_on_the_fake_clock(private_key: str) -> None:
    """429 from the auth server with X-RateLimit-Reset: 3 waits 3 s (fake), then the token comes."""
    tokens = Tokens()
    tokens.refusals.append(MockResponse(429, {"X-RateLimit-Reset": "3"}))
    assert oauth_client(tokens, private_key).track("u", "E")[0] is True
    assert tokens.transport.clock.waits == [3.0]


def test_a_refused_oauth_client_is_a_token_error(private_key: str) -> None:
    """400 invalid_client from the auth server: TokenError, no retry, no batch sent; on_error sees it."""
    tokens = Tokens()
    tokens.refusals.append(MockResponse(400, json={"error": "invalid_client", "error_description": "unknown"}))
    seen: list[Exception] = []
    ok, _ = oauth_client(tokens, private_key, on_error=lambda e, _m: seen.append(e)).track("u", "E")
    assert ok is False
    (error,) = seen
    assert isinstance(error, TokenError)
    assert error.code == "invalid_client"
    assert [r.url for r in tokens.transport.requests] == [f"{AUTH}/token"]


def test_a_token_request_failing_on_the_network_is_retried(private_key: str) -> None:
    """The auth server unreachable once (ConnectionError): retried after a fake wait, then delivered."""
    tokens = Tokens()
    tokens.refusals.append(None)
    handler = tokens.__call__

    def flaky(request: MockRequest) -> Any:
        if request.url.endswith("/token") and tokens.refusals and tokens.refusals[0] is None:
            tokens.refusals.pop(0)
            raise ConnectionResetError("reset by the auth server")
        return handler(request)

    tokens.transport.handler = flaky
    assert oauth_client(tokens, private_key).track("u", "E")[0] is True
    assert [r.url.rsplit("/", 1)[1] for r in tokens.transport.requests] == ["token", "token", "batch"]
    assert len(tokens.transport.clock.waits) == 1
