"""OAuth end to end against FakeSegment's OAuth mode: tokens fetched inline, cached, refreshed, never shown."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import simple_segment
from simple_segment import Client, ConfigurationError, DeliveryError, RateLimitError, RetryableError, TokenError
from simple_segment.testing import FakeSegment, MockRequest, MockTransport, OAuthSettings

CLIENT_ID = "client-1"
KEY_ID = "key-1"
WRITE_KEY = "wk_oauth_SECRET"


@pytest.fixture(scope="module")
def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def server(private_key: str) -> Iterator[FakeSegment]:
    with FakeSegment(oauth=OAuthSettings(public_key=private_key, client_id=CLIENT_ID, key_id=KEY_ID)) as fake:
        yield fake


def oauth_client(server: FakeSegment, private_key: str, **options: Any) -> Client:
    settings: dict[str, Any] = {
        "host": server.url,
        "oauth_client_id": CLIENT_ID,
        "oauth_client_key": private_key,
        "oauth_key_id": KEY_ID,
        "oauth_auth_server": server.url,
        "timeout": 2,
        "total_timeout": 8,
        "backoff_factor": 0.01,
        **options,
    }
    return Client(WRITE_KEY, **settings)


def token_requests(server: FakeSegment) -> list[Any]:
    return [r for r in server.requests if r.path == "/token"]


def test_delivers_with_a_bearer_token_fetched_once(server: FakeSegment, private_key: str) -> None:
    """The first call fetches a token; later calls reuse it; batches carry it too."""
    with oauth_client(server, private_key) as client:
        assert client.track("u", "First")[0] is True
        client.identify("u", {"plan": "pro"})
        with client.batch() as batch:
            for i in range(5):
                batch.track("u", f"Batched {i}")
    assert server.tokens_issued == 1
    assert len(server.messages) == 7
    batches = [r for r in server.requests if r.path == "/v1/batch"]
    assert all(r.headers["authorization"] == f"Bearer {server.tokens[0].access_token}" for r in batches)
    (token_request,) = token_requests(server)
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"


def test_the_assertion_has_the_official_claims(server: FakeSegment, private_key: str) -> None:
    """The client assertion: RS256, kid, iss = sub = client id, aud = the auth server, a minute of life."""
    from urllib.parse import parse_qs

    import jwt

    with oauth_client(server, private_key, oauth_scope="tracking_api:write") as client:
        client.track("u", "E")
    form = parse_qs(token_requests(server)[0].body.decode())
    assert form["grant_type"] == ["client_credentials"]
    assert form["client_assertion_type"] == ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
    assert form["scope"] == ["tracking_api:write"]
    assertion = form["client_assertion"][0]
    header = jwt.get_unverified_header(assertion)
    assert (header["alg"], header["kid"]) == ("RS256", KEY_ID)
    public = serialization.load_pem_private_key(private_key.encode(), None).public_key()
    claims = jwt.decode(assertion, public, algorithms=["RS256"], audience=server.url)
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["exp"] - claims["iat"] == 60
    assert abs(claims["iat"] - (time.time() - 5)) < 5
    assert claims["jti"]


def test_a_revoked_token_is_refreshed_and_the_request_resent_once(server: FakeSegment, private_key: str) -> None:
    """401 from the tracking API: the token is dropped, a new one fetched, the batch re-sent with the same ids."""
    with oauth_client(server, private_key) as client:
        client.track("u", "Before")
        server.revoke_tokens()
        _, msg = client.track("u", "After")
    assert server.tokens_issued == 2
    refused, accepted = [r for r in server.requests if r.path == "/v1/batch"][1:]
    assert refused.status == 401
    assert accepted.status == 200
    assert refused.json["batch"][0]["messageId"] == accepted.json["batch"][0]["messageId"] == msg["messageId"]
    assert [m["event"] for m in server.messages] == ["Before", "After"]


def relay_to(server: FakeSegment) -> MockTransport:
    """A MockTransport that passes each request on to ``server`` over loopback: the client's time is a FakeClock."""
    pool = urllib3.PoolManager(retries=False)

    def relay(request: MockRequest) -> tuple[int, dict[str, str], bytes]:
        answer = pool.request(request.method, request.url, body=request.body, headers=dict(request.headers))
        return answer.status, dict(answer.headers), answer.data

    return MockTransport(relay)


def test_a_token_is_refreshed_after_half_its_life(server: FakeSegment, private_key: str) -> None:
    """A token of 2 s is replaced after 1 s of the client's (fake) time, before the server would refuse it."""
    server.token_lifetime = 2
    transport = relay_to(server)
    with oauth_client(server, private_key, transport=transport) as client:
        client.track("u", "A")
        client.track("u", "B")
        transport.clock.advance(1.1)
        client.track("u", "C")
    assert server.tokens_issued == 2
    assert all(r.status == 200 for r in server.requests)
    assert transport.clock.waits == []


def test_an_expired_token_is_replaced(server: FakeSegment, private_key: str) -> None:
    """The server's clock jumps past the token's expiry: 401, a new token, delivered."""
    with oauth_client(server, private_key) as client:
        client.track("u", "A")
        server.clock_offset = 7200
        assert client.track("u", "B")[0] is True
    assert server.tokens_issued == 2


@pytest.mark.parametrize("offset", [120, -120])
def test_clock_skew_is_corrected_from_the_date_header(private_key: str, offset: int) -> None:
    """The auth server's clock is 2 minutes off: it refuses the assertion once, the client corrects and succeeds."""
    settings = OAuthSettings(public_key=private_key, client_id=CLIENT_ID, key_id=KEY_ID, clock_offset=offset)
    with FakeSegment(oauth=settings) as server, oauth_client(server, private_key) as client:
        assert client.track("u", "E")[0] is True
        statuses = [r.status for r in token_requests(server)]
    assert statuses == [400, 200]


def test_token_endpoint_rate_limit_waits_its_reset(server: FakeSegment, private_key: str) -> None:
    """429 with X-RateLimit-Reset: 1 waits a second (on the client's fake clock), then gets the token."""
    server.respond_with(429, headers={"X-RateLimit-Reset": "1"}, endpoint="token")
    transport = relay_to(server)
    with oauth_client(server, private_key, transport=transport) as client:
        assert client.track("u", "E")[0] is True
    assert transport.clock.waits == [1.0]
    assert [r.status for r in token_requests(server)] == [429, 200]


def test_token_endpoint_rate_limit_beyond_the_budget_is_retryable(server: FakeSegment, private_key: str) -> None:
    """A reset longer than the call's budget: RateLimitError at once, retryable, the message handed back."""
    server.respond_with(429, headers={"X-RateLimit-Reset": "60"}, endpoint="token")
    started = time.monotonic()
    with oauth_client(server, private_key, total_timeout=5) as client, pytest.raises(RateLimitError) as info:
        client.track("u", "E")
    assert time.monotonic() - started < 3
    assert isinstance(info.value, RetryableError)
    assert len(info.value.messages) == 1
    assert not [r for r in server.requests if r.path == "/v1/batch"]


def test_token_endpoint_errors_are_retried(server: FakeSegment, private_key: str) -> None:
    """500 twice, then a token: delivered within the same call."""
    server.respond_with(500, times=2, endpoint="token")
    with oauth_client(server, private_key) as client:
        assert client.track("u", "E")[0] is True
    assert [r.status for r in token_requests(server)] == [500, 500, 200]


def test_a_refused_client_is_a_permanent_token_error(server: FakeSegment, private_key: str) -> None:
    """An unknown client: TokenError (an APIError), not retryable, not retried; with on_error, (False, msg)."""
    with oauth_client(server, private_key, oauth_client_id="someone-else") as client:
        with pytest.raises(TokenError) as info:
            client.track("u", "E")
        error = info.value
        assert (error.status, error.code) == (401, "invalid_client")
        assert not error.retryable
        assert len(error.messages) == 1
        assert len(token_requests(server)) == 1
    seen: list[Any] = []
    with oauth_client(server, private_key, oauth_client_id="someone-else", on_error=lambda e, m: seen.append(e)) as c:
        ok, _ = c.track("u", "E")
    assert ok is False
    assert isinstance(seen[0], TokenError)


def test_token_requests_count_against_the_budget(server: FakeSegment, private_key: str) -> None:
    """A token endpoint that answers late cannot stretch the call past total_timeout."""
    server.respond_with(200, delay=5, endpoint="token")
    started = time.monotonic()
    with oauth_client(server, private_key, total_timeout=1, timeout=5) as client:
        with pytest.raises(DeliveryError) as info:
            client.track("u", "E")
    assert time.monotonic() - started < 3
    assert info.value.retryable


def test_threads_share_one_token(server: FakeSegment, private_key: str) -> None:
    """Eight threads making calls at once: one token request."""
    errors: list[BaseException] = []
    with oauth_client(server, private_key) as client:

        def work() -> None:
            try:
                for _ in range(10):
                    client.track("u", "E")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert server.tokens_issued == 1
    assert len(server.messages) == 80


def test_module_level_settings(server: FakeSegment, private_key: str) -> None:
    """The oauth_* module settings configure the default client like the official module's."""
    simple_segment.write_key = WRITE_KEY
    simple_segment.host = server.url
    simple_segment.oauth_client_id = CLIENT_ID
    simple_segment.oauth_client_key = private_key
    simple_segment.oauth_key_id = KEY_ID
    simple_segment.oauth_auth_server = server.url
    assert simple_segment.track("u", "E")[0] is True
    assert server.tokens_issued == 1


def test_a_key_that_does_not_parse_fails_at_construction(server: FakeSegment) -> None:
    """A bad private key is a ConfigurationError naming oauth_client_key, raised by Client(...)."""
    with pytest.raises(ConfigurationError) as info:
        oauth_client(server, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----")
    assert info.value.field == "oauth_client_key"
    assert "not a key" not in str(info.value)
    assert server.requests == []


def test_incomplete_oauth_settings_fail_at_construction(server: FakeSegment, private_key: str) -> None:
    """OAuth needs all three of client id, key and key id; never a silent fallback to Basic auth."""
    with pytest.raises(ConfigurationError) as info:
        Client(WRITE_KEY, host=server.url, oauth_client_id=CLIENT_ID, oauth_client_key=private_key)
    assert info.value.field == "oauth_key_id"


def test_without_the_extra_oauth_options_fail_naming_it(monkeypatch: pytest.MonkeyPatch, private_key: str) -> None:
    """Without PyJWT (the oauth extra), OAuth options are a ConfigurationError that says what to install."""
    monkeypatch.setitem(sys.modules, "jwt", None)
    with pytest.raises(ConfigurationError, match=r"simple-segment\[oauth\]"):
        Client(WRITE_KEY, oauth_client_id=CLIENT_ID, oauth_client_key=private_key, oauth_key_id=KEY_ID)


def library_frames(error: BaseException) -> str:
    """The traceback of ``error`` with every frame's locals, from the library's frames down (not this test's)."""
    below_the_test = error.__traceback__.tb_next if error.__traceback__ else None
    exception = traceback.TracebackException(type(error), error, below_the_test, capture_locals=True)
    return "".join(exception.format())


def test_secrets_never_show(server: FakeSegment, private_key: str, caplog: pytest.LogCaptureFixture) -> None:
    """The private key and the tokens are not in repr, logs, exception text or frame locals."""
    caplog.set_level(logging.DEBUG, logger="simple_segment")
    key_line = private_key.splitlines()[1]
    with oauth_client(server, private_key, max_retries=0) as client:
        client.track("u", "E")
        token = server.tokens[0].access_token
        server.revoke_tokens()
        server.respond_with(500, times=5, endpoint="token")
        with pytest.raises(DeliveryError) as info:
            client.track("u", "E")
        shown = [
            repr(client),
            repr(client.options),
            str(info.value),
            repr(info.value),
            caplog.text,
            library_frames(info.value),
        ]
    for text in shown:
        assert key_line not in text
        assert token not in text
        assert WRITE_KEY not in text


def test_the_budget_covers_the_token_request_and_the_batch(server: FakeSegment, private_key: str) -> None:
    """A slow token request plus a slow batch cannot together stretch the call past total_timeout."""
    server.respond_with(200, delay=1.5, endpoint="token")
    server.respond_with(200, delay=2.5)
    started = time.monotonic()
    with oauth_client(server, private_key, total_timeout=3, timeout=5, max_retries=0) as client:
        with pytest.raises(DeliveryError) as info:
            client.track("u", "E")
    assert time.monotonic() - started < 4.5
    assert info.value.retryable


def test_sent_at_is_stamped_after_the_token_request(server: FakeSegment, private_key: str) -> None:
    """sentAt is when the batch went out, not when the call began (a slow token request comes first)."""
    import datetime as dt

    server.respond_with(200, delay=1.0, endpoint="token")
    with oauth_client(server, private_key) as client:
        client.track("u", "E")
    (batch,) = [r for r in server.requests if r.path == "/v1/batch"]
    sent_at = dt.datetime.fromisoformat(batch.json["sentAt"]).timestamp()
    assert abs(batch.received_at - sent_at) < 0.5


def test_other_token_endpoint_answers_are_retried(server: FakeSegment, private_key: str) -> None:
    """Only 400, 401 and 415 are final at the token endpoint; a 403 is tried again (three attempts at least)."""
    server.respond_with(403, times=2, endpoint="token")
    with oauth_client(server, private_key, max_retries=0) as client:
        assert client.track("u", "E")[0] is True
    assert [r.status for r in token_requests(server)] == [403, 403, 200]


# -- the OAuth rules, pinned on a MockTransport (no sockets, no waits) ---------------------


class Auth:
    """An auth server issuing token-0, token-1 ... and a tracking API answering ``batch(request)``."""

    def __init__(self) -> None:
        self.token_answers: list[Any] = []
        self.issued: list[str] = []
        self.batch = lambda _request: 200
        self.transport = MockTransport(self)

    def __call__(self, request: MockRequest) -> Any:
        if request.url.endswith("/token"):
            if self.token_answers:
                return self.token_answers.pop(0)
            self.issued.append(f"token-{len(self.issued)}")
            return 200, {}, f'{{"access_token":"{self.issued[-1]}","expires_in":3600}}'
        return self.batch(request)

    def kinds(self) -> list[str]:
        """token / batch, for every request made, in order."""
        return [request.url.rsplit("/", 1)[1] for request in self.transport.requests]

    def client(self, private_key: str, **options: Any) -> Client:
        settings: dict[str, Any] = {
            "host": "https://api.example.test",
            "oauth_client_id": CLIENT_ID,
            "oauth_client_key": private_key,
            "oauth_key_id": KEY_ID,
            "oauth_auth_server": "https://oauth.example.test",
            "total_timeout": 60,
            **options,
        }
        return Client(WRITE_KEY, transport=self.transport, **settings)


def test_415_from_the_token_endpoint_is_final(private_key: str) -> None:
    """415 from the auth server: TokenError at once, one token request, no wait, no batch posted."""
    auth = Auth()
    auth.token_answers.append((415, {}, b'{"error":"unsupported_media_type"}'))
    with pytest.raises(TokenError) as info:
        auth.client(private_key, max_retries=5).track("u", "E")
    assert (info.value.status, info.value.code, info.value.retryable) == (415, "unsupported_media_type", False)
    assert auth.kinds() == ["token"]
    assert auth.transport.clock.waits == []


@pytest.mark.parametrize("status", [400, 401, 403, 511])
def test_a_refused_token_is_replaced_and_the_request_sent_once_more(private_key: str, status: int) -> None:
    """400/401/403/511 from the tracking API drop the token: a new one, the same batch again at once, once only."""
    auth = Auth()
    auth.batch = lambda request: 200 if request.headers["Authorization"] == "Bearer token-1" else status
    client = auth.client(private_key)
    _, msg = client.track("u", "E")
    assert auth.kinds() == ["token", "batch", "token", "batch"]
    first, again = (r for r in auth.transport.requests if r.url.endswith("/batch"))
    assert first.headers["Authorization"] == "Bearer token-0"
    assert again.headers["Authorization"] == "Bearer token-1"
    assert first.json()["batch"][0]["messageId"] == again.json()["batch"][0]["messageId"] == msg["messageId"]
    assert auth.transport.clock.waits == []
    auth.transport.requests.clear()
    client.track("u", "F")  # the new token is kept
    assert auth.kinds() == ["batch"]


@pytest.mark.parametrize("status", [400, 403, 511])
def test_a_token_refused_twice_ends_the_call(private_key: str, status: int) -> None:
    """The same refusal with the new token too: the call ends with that APIError; no third token, no loop."""
    auth = Auth()
    auth.batch = lambda _request: status
    with pytest.raises(DeliveryError) as info:
        auth.client(private_key, max_retries=5).track("u", "E")
    assert getattr(info.value, "status", None) == status
    assert info.value.retryable is (status >= 500)  # the status table's word: a 511 may pass later
    assert auth.kinds() == ["token", "batch", "token", "batch"]


def test_a_refused_stale_token_does_not_drop_the_current_one(private_key: str) -> None:
    """A call refused with token-0 after another call already replaced it keeps token-1 (no third token)."""
    auth = Auth()
    client = auth.client(private_key)
    revoked: set[str] = set()
    inner_sent = threading.Event()

    def batch(request: MockRequest) -> int:
        header = request.headers["Authorization"]
        if request.json()["batch"][0]["event"] == "outer" and not inner_sent.is_set():
            # While this request (with token-0) is in flight, the server revokes token-0 and
            # another call of the same client gets refused, fetches token-1 and delivers.
            revoked.add("Bearer token-0")
            inner_sent.set()
            assert client.track("u", "inner")[0] is True
        return 401 if header in revoked else 200

    auth.batch = batch
    assert client.track("u", "outer")[0] is True
    assert auth.issued == ["token-0", "token-1"]
    headers = [(r.json()["batch"][0]["event"], r.headers["Authorization"]) for r in auth.transport.requests
               if r.url.endswith("/batch")]
    assert headers == [
        ("outer", "Bearer token-0"),
        ("inner", "Bearer token-0"),
        ("inner", "Bearer token-1"),
        ("outer", "Bearer token-1"),
    ]
# -- waiting for another thread's token, and tokens that cannot go in a header ---------------------


def _token_answer(token: str) -> bytes:
    import json

    return json.dumps({"access_token": token, "expires_in": 3600}).encode()


def test_waiting_for_another_threads_token_ends_at_the_waiters_deadline(
    private_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thread A's token request is stuck resolving the auth server's name (3 s, which no socket
    timeout bounds); thread B, waiting for that token with a 1 s budget, gives up within 1.5 s."""
    import socket

    from faults import FaultServer, respond

    real = socket.getaddrinfo
    slow_once = threading.Event()

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "auth.test":
            if not slow_once.is_set():
                slow_once.set()
                time.sleep(3)
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with FaultServer(default=respond(200, body=_token_answer("tok-1"))) as fault:
        options: dict[str, Any] = {"oauth_auth_server": f"http://auth.test:{fault.port}", "total_timeout": 1}
        with Client(
            WRITE_KEY,
            host=fault.url,
            oauth_client_id=CLIENT_ID,
            oauth_client_key=private_key,
            oauth_key_id=KEY_ID,
            timeout=1,
            max_retries=0,
            **options,
        ) as client:
            first = threading.Thread(target=_quietly, args=(client,))
            first.start()
            assert slow_once.wait(5), "thread A never asked for a token"
            started = time.monotonic()
            with pytest.raises(DeliveryError) as info:
                client.track("u", "B")
            elapsed = time.monotonic() - started
            first.join(10)
    assert elapsed < 1.5, f"thread B waited {elapsed:.2f}s with total_timeout=1"
    assert info.value.retryable


def _quietly(client: Client) -> None:
    with contextlib.suppress(DeliveryError):
        client.track("u", "A")


def test_a_token_with_a_newline_is_never_shown(private_key: str, caplog: pytest.LogCaptureFixture) -> None:
    """The auth server returns a token holding a newline: refused as unusable; neither half of it
    appears in the error's text or in any log record."""
    from faults import FaultServer, respond

    caplog.set_level(logging.DEBUG)
    token = "tok-FIRSTHALF\nSECONDHALF"
    with FaultServer(default=respond(200, body=_token_answer(token))) as fault:
        with Client(
            WRITE_KEY,
            host=fault.url,
            oauth_client_id=CLIENT_ID,
            oauth_client_key=private_key,
            oauth_key_id=KEY_ID,
            oauth_auth_server=fault.url,
            timeout=2,
            total_timeout=3,
            backoff_factor=0.01,
        ) as client:
            with pytest.raises(DeliveryError) as info:
                client.track("u", "E")
        assert not [r for r in fault.requests if r.path == "/v1/batch"]
    shown = [str(info.value), repr(info.value), caplog.text, library_frames(info.value)]
    shown.extend(repr(cause) for cause in (info.value.__cause__, info.value.__context__))
    for text in shown:
        assert "FIRSTHALF" not in text
        assert "SECONDHALF" not in text


@pytest.mark.parametrize("phase", ["tracking", "token"])
def test_a_callers_exception_leaves_no_bearer_token_in_frame_locals(phase: str, private_key: str) -> None:
    """A signal handler raising while a call waits on the tracking API (or on the token request):
    the Bearer token, the client assertion, the write key and the private key are in no frame's
    locals of the traceback."""
    import signal

    from faults import FaultServer, respond, silent

    class Interrupted(Exception):  # noqa: N818 - as Celery's SoftTimeLimitExceeded
        pass

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    token = "tok-BEARERSECRET"
    with FaultServer(default=silent(limit=5)) as fault:
        if phase == "tracking":
            fault.script(respond(200, body=_token_answer(token)))
        previous = signal.signal(signal.SIGALRM, handler)
        try:
            with Client(
                WRITE_KEY,
                host=fault.url,
                oauth_client_id=CLIENT_ID,
                oauth_client_key=private_key,
                oauth_key_id=KEY_ID,
                oauth_auth_server=fault.url,
                timeout=5,
                total_timeout=5,
                max_retries=0,
            ) as client:
                signal.setitimer(signal.ITIMER_REAL, 0.5)
                with pytest.raises(Interrupted) as info:
                    client.track("u", "E")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert len(fault.requests) == (2 if phase == "tracking" else 1)
    rendered = library_frames(info.value)  # from the library's frames down: this test's own locals hold the token
    assert "Interrupted" in rendered
    assert "BEARERSECRET" not in rendered
    assert "client_assertion=" not in rendered  # the signed assertion is a credential for a minute
    assert WRITE_KEY not in rendered
    assert private_key.splitlines()[1] not in rendered


def test_clock_skew_is_asked_about_twice_at_once_then_final(private_key: str) -> None:
    """'Token used before issued' twice: two immediate new token requests, then delivered; a third time is final."""
    skew = (400, {}, b'{"error":"invalid_request","error_description":"Token used before issued"}')
    auth = Auth()
    auth.token_answers += [skew, skew]
    assert auth.client(private_key).track("u", "E")[0] is True
    assert auth.kinds() == ["token", "token", "token", "batch"]
    assert auth.transport.clock.waits == []
    again = Auth()
    again.token_answers += [skew, skew, skew]
    with pytest.raises(TokenError):
        again.client(private_key).track("u", "E")
    assert again.kinds() == ["token", "token", "token"]
