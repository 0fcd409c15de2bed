"""FakeSegment's OAuth mode: the token endpoint, Bearer checks, clock skew, revocation and scripts.

Client assertions are made here with PyJWT and a freshly generated RSA key, as SPEC.md
section 6 describes them, and sent with requests over real sockets; the last tests run
the official segment-analytics-python OAuth client against the server.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import requests

from simple_segment.testing import FakeSegment, IssuedToken, OAuthSettings

jwt = pytest.importorskip("jwt")
rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")

if TYPE_CHECKING:
    from collections.abc import Iterator

CLIENT_ID = "client-1"
KEY_ID = "key-1"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FORM = "application/x-www-form-urlencoded"
JOIN = 10.0


def new_key() -> tuple[str, str]:
    """A fresh RSA key pair as (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return new_key()


@pytest.fixture(scope="module")
def other_keys() -> tuple[str, str]:
    return new_key()


@pytest.fixture
def fake(keys: tuple[str, str]) -> Iterator[FakeSegment]:
    settings = OAuthSettings(public_key=keys[1], client_id=CLIENT_ID, key_id=KEY_ID)
    with FakeSegment(oauth=settings) as server:
        yield server
        assert server.errors == []


def make_assertion(
    server: FakeSegment,
    private_pem: str,
    *,
    skew: float = 0.0,
    algorithm: str = "RS256",
    kid: str = KEY_ID,
    **claims: Any,
) -> str:
    """A client assertion as the official client makes it; a claim given as None is left out."""
    now = int(time.time() - skew)
    body: dict[str, Any] = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": server.url,
        "iat": now - 5,
        "exp": now + 55,
        "jti": str(uuid.uuid4()),
    }
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    return str(jwt.encode(body, private_pem, algorithm=algorithm, headers={"kid": kid}))


def ask_token(
    server: FakeSegment,
    assertion: str | None,
    *,
    content_type: str = FORM,
    timeout: float = 5.0,
    **fields: str,
) -> requests.Response:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "scope": "tracking_api:write",
        **fields,
    }
    if assertion is not None:
        form["client_assertion"] = assertion
    body = "&".join(f"{name}={value}" for name, value in form.items())  # unencoded, as the official client sends it
    return requests.post(f"{server.url}/token", data=body, headers={"Content-Type": content_type}, timeout=timeout)


def token_for(server: FakeSegment, private_pem: str) -> str:
    response = ask_token(server, make_assertion(server, private_pem))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def send(server: FakeSegment, token: str | None = None, **kwargs: Any) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    body = {"batch": [{"type": "track", "userId": "u1", "event": "Paid", "messageId": "m1"}], "writeKey": "wk"}
    return requests.post(f"{server.url}/v1/batch", json=body, headers=headers, timeout=5, **kwargs)


def assert_oauth_error(response: requests.Response, status: int, error: str, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    for word in words:
        assert word in body["error_description"]


def server_date(response: requests.Response) -> float:
    return email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()


# -- the token endpoint ----------------------------------------------------------------


def test_valid_assertion_gets_a_token(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """A valid assertion answers 200 with access_token, expires_in, scope, token_type and a Date; it is recorded."""
    assertion = make_assertion(fake, keys[0])
    response = ask_token(fake, assertion)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "scope", "token_type"}
    assert body["expires_in"] == 3600
    assert (body["scope"], body["token_type"]) == ("tracking_api:write", "Bearer")
    assert response.headers["Cache-Control"] == "no-store"
    assert abs(server_date(response) - time.time()) < 5

    (token,) = fake.tokens
    assert isinstance(token, IssuedToken)
    assert token.access_token == body["access_token"]
    assert (token.client_id, token.scope, token.revoked) == (CLIENT_ID, "tracking_api:write", False)
    assert token.jti == jwt.decode(assertion, options={"verify_signature": False})["jti"]
    assert token.expires_at - token.issued_at == 3600
    assert fake.tokens_issued == 1

    (request,) = fake.requests
    assert (request.method, request.path, request.status) == ("POST", "/token", 200)
    assert (request.json, request.write_key) == (None, None)
    assert b"client_assertion=" in request.body
    assert fake.messages == []


def test_private_key_pem_works_as_the_public_key(keys: tuple[str, str]) -> None:
    """OAuthSettings may be given the private key's PEM (the one the client has); its public half verifies."""
    settings = OAuthSettings(public_key=keys[0].encode(), client_id=CLIENT_ID, key_id=KEY_ID)
    with FakeSegment(oauth=settings) as server:
        assert ask_token(server, make_assertion(server, keys[0])).status_code == 200


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"kid": "other-key"}, ["key id"]),
        ({"aud": "https://oauth2.segment.io"}, ['"aud"']),
        ({"sub": "someone-else"}, ['"sub"']),
        ({"jti": None}, ['"jti"']),
        ({"jti": ""}, ['"jti"']),
        ({"iat": None}, ['"iat"']),
        ({"exp": "soon"}, ['"exp"']),
        ({"exp": int(time.time()) + 7200}, ['"exp" must be after "iat"']),
        ({"iat": int(time.time()) - 10, "exp": int(time.time()) - 20}, ["Token is expired"]),
    ],
)
def test_bad_assertion_is_400_invalid_request(
    fake: FakeSegment, keys: tuple[str, str], change: dict[str, Any], words: list[str]
) -> None:
    """An assertion with a wrong kid, aud, sub, a missing jti or insane times answers 400 invalid_request."""
    response = ask_token(fake, make_assertion(fake, keys[0], **change))
    assert_oauth_error(response, 400, "invalid_request", *words)
    assert fake.tokens_issued == 0
    assert fake.tokens == []


def test_assertion_signed_by_another_key_is_400(fake: FakeSegment, other_keys: tuple[str, str]) -> None:
    """A signature that the configured public key does not verify answers 400."""
    assert_oauth_error(ask_token(fake, make_assertion(fake, other_keys[0])), 400, "invalid_request", "signature")


@pytest.mark.parametrize(("algorithm", "key"), [("HS256", "a-shared-secret-of-at-least-32-bytes!"), ("none", None)])
def test_assertion_must_be_rs256(fake: FakeSegment, algorithm: str, key: str | None) -> None:
    """An assertion signed with HMAC or not signed at all answers 400, whatever it claims."""
    assertion = make_assertion(fake, key, algorithm=algorithm)  # type: ignore[arg-type]
    assert_oauth_error(ask_token(fake, assertion), 400, "invalid_request", "RS256")


def test_malformed_requests(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """Missing or wrong form fields and a non-JWT assertion answer 400 with the OAuth error names."""
    good = make_assertion(fake, keys[0])
    assert_oauth_error(ask_token(fake, None), 400, "invalid_request", "client_assertion")
    assert_oauth_error(ask_token(fake, "not.a.jwt"), 400, "invalid_request", "malformed")
    assert_oauth_error(ask_token(fake, good, grant_type="password"), 400, "unsupported_grant_type")
    assert_oauth_error(ask_token(fake, good, client_assertion_type="x"), 400, "invalid_request", "assertion_type")
    assert_oauth_error(ask_token(fake, good, scope="admin"), 400, "invalid_scope", "admin")
    assert_oauth_error(ask_token(fake, good, content_type="application/json"), 415, "invalid_request", FORM)
    repeated = f"grant_type=client_credentials&grant_type=client_credentials&client_assertion={good}"
    answer = requests.post(f"{fake.url}/token", data=repeated, headers={"Content-Type": FORM}, timeout=5)
    assert_oauth_error(answer, 400, "invalid_request", "grant_type")
    assert_oauth_error(requests.get(f"{fake.url}/token", timeout=5), 405, "invalid_request", "POST")
    assert fake.tokens_issued == 0
    assert [r.path for r in fake.requests] == ["/token"] * 8


def test_unknown_client_is_401_invalid_client(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """An assertion from a client the server does not know answers 401 invalid_client."""
    response = ask_token(fake, make_assertion(fake, keys[0], iss="stranger", sub="stranger"))
    assert_oauth_error(response, 401, "invalid_client", "stranger")


def test_a_replayed_assertion_is_refused(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """The same assertion (same jti) gets one token; sent again it answers 400."""
    assertion = make_assertion(fake, keys[0])
    assert ask_token(fake, assertion).status_code == 200
    assert_oauth_error(ask_token(fake, assertion), 400, "invalid_request", "already used")
    assert fake.tokens_issued == 1


# -- clock skew ---------------------------------------------------------------------------


def test_server_clock_behind_means_token_used_before_issued(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """With the server's clock 300 s behind, an assertion stamped by the client's clock was 'used before issued';
    the Date header shows the server's clock, and an assertion corrected by it is accepted."""
    fake.clock_offset = -300
    refused = ask_token(fake, make_assertion(fake, keys[0]))
    assert_oauth_error(refused, 400, "invalid_request")
    assert refused.json()["error_description"] == "Token used before issued"
    skew = time.time() - server_date(refused)
    assert 295 < skew < 305

    corrected = ask_token(fake, make_assertion(fake, keys[0], skew=skew))
    assert corrected.status_code == 200, corrected.text
    assert fake.tokens[0].issued_at == pytest.approx(time.time() - 300, abs=5)


def test_server_clock_ahead_means_token_is_expired(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """With the server's clock 300 s ahead, the client's assertion has already expired."""
    fake.clock_offset = 300
    refused = ask_token(fake, make_assertion(fake, keys[0]))
    assert_oauth_error(refused, 400, "invalid_request")
    assert refused.json()["error_description"] == "Token is expired"
    assert 295 < server_date(refused) - time.time() < 305


def test_clock_offset_from_settings_and_checked(keys: tuple[str, str]) -> None:
    """clock_offset starts from OAuthSettings; a non-finite offset is refused."""
    settings = OAuthSettings(public_key=keys[1], client_id=CLIENT_ID, key_id=KEY_ID, clock_offset=-300)
    with FakeSegment(oauth=settings) as server:
        assert server.clock_offset == -300
        assert ask_token(server, make_assertion(server, keys[0])).json()["error_description"] == (
            "Token used before issued"
        )
        with pytest.raises(ValueError, match="clock_offset"):
            server.clock_offset = float("nan")


# -- Bearer tokens on tracking requests -----------------------------------------------------


def test_tracking_needs_a_valid_bearer_token(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """In OAuth mode a batch with a token from this server is accepted; none, Basic auth or a made-up token is 401."""
    token = token_for(fake, keys[0])
    accepted = send(fake, token)
    assert accepted.status_code == 200, accepted.text
    assert [m["messageId"] for m in fake.messages] == ["m1"]
    assert fake.requests[-1].headers["authorization"] == f"Bearer {token}"

    for response, words in [
        (send(fake), "Bearer"),
        (send(fake, auth=("write-key", "")), "Bearer"),
        (send(fake, "made-up"), "unknown access token"),
    ]:
        assert response.status_code == 401
        body = response.json()
        assert (body["success"], body["code"]) == (False, "invalid_token")
        assert words in body["message"]
    assert len(fake.messages) == 1


def test_the_bearer_check_comes_before_the_body(fake: FakeSegment) -> None:
    """Without a token even an invalid body answers 401, so a client learns to fetch a token first."""
    response = requests.post(f"{fake.url}/v1/batch", data=b"{not json", timeout=5)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_revoke_tokens(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """revoke_tokens() makes every current token answer 401; a token issued afterwards works."""
    first, second = token_for(fake, keys[0]), token_for(fake, keys[0])
    assert fake.revoke_tokens() == 2
    assert fake.revoke_tokens() == 0
    for token in (first, second):
        response = send(fake, token)
        assert response.status_code == 401
        assert "revoked" in response.json()["message"]
    assert [t.revoked for t in fake.tokens] == [True, True]
    assert send(fake, token_for(fake, keys[0])).status_code == 200
    assert fake.tokens_issued == 3


def test_tokens_expire_on_the_server_clock(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """A token stops working once the server's clock passes its expiry: moving clock_offset expires it at once."""
    fake.token_lifetime = 60
    token = token_for(fake, keys[0])
    assert fake.tokens[0].expires_at - fake.tokens[0].issued_at == 60
    assert send(fake, token).status_code == 200
    fake.clock_offset = 61
    expired = send(fake, token)
    assert expired.status_code == 401
    assert "expired" in expired.json()["message"]


def test_token_lifetime_is_settable(keys: tuple[str, str]) -> None:
    """token_lifetime starts from OAuthSettings, changes expires_in of new tokens and must be at least 1 second."""
    settings = OAuthSettings(public_key=keys[1], client_id=CLIENT_ID, key_id=KEY_ID, token_lifetime=120)
    with FakeSegment(oauth=settings) as server:
        assert ask_token(server, make_assertion(server, keys[0])).json()["expires_in"] == 120
        server.token_lifetime = 5
        assert server.token_lifetime == 5
        assert ask_token(server, make_assertion(server, keys[0])).json()["expires_in"] == 5
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match="token_lifetime"):
                server.token_lifetime = bad  # type: ignore[assignment]


def test_clear_forgets_the_record_but_tokens_stay_valid(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """clear() (and POST /_clear) forget tokens_issued and tokens, yet a client's token goes on working."""
    token = token_for(fake, keys[0])
    fake.clear()
    assert (fake.tokens, fake.tokens_issued, fake.requests) == ([], 0, [])
    assert send(fake, token).status_code == 200
    assert requests.post(f"{fake.url}/_clear", timeout=5).status_code == 200
    assert fake.messages == []
    assert send(fake, token).status_code == 200


def test_concurrent_token_requests(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """Token requests from 4 threads at once each get their own valid token."""
    assertions = [make_assertion(fake, keys[0]) for _ in range(20)]
    tokens: list[str] = []
    failures: list[BaseException] = []

    def worker(part: list[str]) -> None:
        try:
            with requests.Session() as session:
                for assertion in part:
                    form = f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}"
                    answer = session.post(f"{fake.url}/token", data=form, headers={"Content-Type": FORM}, timeout=10)
                    assert answer.status_code == 200, answer.text
                    tokens.append(answer.json()["access_token"])
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(assertions[n::4],), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
    assert failures == []
    assert len(set(tokens)) == 20
    assert fake.tokens_issued == 20
    assert all(send(fake, token).status_code == 200 for token in tokens[:3])


# -- scripted token answers -------------------------------------------------------------------


def test_scripted_token_rate_limit_then_normal(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """respond_with(429, endpoint="token") answers the next /token with 429, its headers and an OAuth error body;
    no token is issued; tracking requests are not affected."""
    fake.respond_with(429, headers={"X-RateLimit-Reset": "2"}, endpoint="token")
    limited = ask_token(fake, make_assertion(fake, keys[0]))
    assert_oauth_error(limited, 429, "too_many_requests", "Too Many Requests")
    assert limited.headers["X-RateLimit-Reset"] == "2"
    assert "Date" in limited.headers
    assert fake.tokens_issued == 0
    token = token_for(fake, keys[0])
    assert send(fake, token).status_code == 200
    assert [r.status for r in fake.requests] == [429, 200, 200]


def test_tracking_and_token_scripts_are_separate(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """A tracking script is not used by /token, and a token script is not used by /v1/batch."""
    fake.respond_with(503)
    fake.respond_with(500, times=2, endpoint="token")
    assert fake.pending_responses == 3
    assert [ask_token(fake, make_assertion(fake, keys[0])).status_code for _ in range(3)] == [500, 500, 200]
    token = fake.tokens[0].access_token
    assert [send(fake, token).status_code for _ in range(2)] == [503, 200]


def test_token_script_over_http(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """POST /_script with "endpoint": "token" scripts /token from another process, body and all."""
    spec = {"endpoint": "token", "status": 400, "body": {"error": "invalid_request", "error_description": "nope"}}
    assert requests.post(f"{fake.url}/_script", data=json.dumps(spec), timeout=5).status_code == 200
    assert_oauth_error(ask_token(fake, make_assertion(fake, keys[0])), 400, "invalid_request", "nope")
    assert ask_token(fake, make_assertion(fake, keys[0])).status_code == 200


def test_token_time_window(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """A time window on the token endpoint answers every /token during it."""
    fake.respond_with(500, seconds=60, endpoint="token")
    assert [ask_token(fake, make_assertion(fake, keys[0])).status_code for _ in range(3)] == [500, 500, 500]
    assert fake.tokens_issued == 0


def test_delayed_token_is_issued_before_the_late_answer(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """A delayed 2xx script still verifies and issues the token first: the client times out, yet the token exists."""
    fake.respond_with(200, delay=2, endpoint="token")
    with pytest.raises(requests.exceptions.ReadTimeout):
        ask_token(fake, make_assertion(fake, keys[0]), timeout=0.3)
    assert fake.tokens_issued == 1
    assert send(fake, fake.tokens[0].access_token).status_code == 200


def test_dropped_token_request(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """drop=True on the token endpoint closes the connection; nothing is issued and the request shows status 0."""
    fake.respond_with(drop=True, endpoint="token")
    with pytest.raises(requests.exceptions.ConnectionError):
        ask_token(fake, make_assertion(fake, keys[0]))
    assert fake.tokens_issued == 0
    assert [r.status for r in fake.requests] == [0]


# -- without OAuth mode, and settings ---------------------------------------------------------


def test_without_oauth_mode(keys: tuple[str, str]) -> None:
    """Without oauth=, /token is an unknown path, Basic auth works, the OAuth accessors raise RuntimeError
    and token scripts are refused."""
    with FakeSegment() as server:
        assert server.oauth is None
        assert requests.post(f"{server.url}/token", data="x=1", timeout=5).status_code == 404
        assert send(server, auth=("write-key", "")).status_code == 200
        for name in ("tokens", "tokens_issued", "token_lifetime", "clock_offset"):
            with pytest.raises(RuntimeError, match="OAuth"):
                getattr(server, name)
        with pytest.raises(RuntimeError, match="OAuth"):
            server.revoke_tokens()
        with pytest.raises(ValueError, match="endpoint"):
            server.respond_with(500, endpoint="batch")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="OAuth mode"):
            server.respond_with(500, endpoint="token")
        refused = requests.post(f"{server.url}/_script", json={"endpoint": "token", "status": 500}, timeout=5)
        assert refused.status_code == 400
        assert "OAuth mode" in refused.json()["message"]
        assert server.pending_responses == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"client_id": ""},
        {"key_id": ""},
        {"token_lifetime": 0},
        {"clock_offset": float("inf")},
    ],
)
def test_settings_are_checked(keys: tuple[str, str], kwargs: dict[str, Any]) -> None:
    """OAuthSettings refuses empty ids, a lifetime under a second and a non-finite clock offset."""
    with pytest.raises(ValueError, match=r"client_id|token_lifetime|clock_offset"):
        OAuthSettings(**{"public_key": keys[1], "client_id": CLIENT_ID, "key_id": KEY_ID, **kwargs})


def test_a_key_that_is_not_rsa_is_refused_at_creation() -> None:
    """A public_key that is not an RSA PEM fails when the server is created, not on the first request."""
    with pytest.raises(ValueError, match="RSA"):
        FakeSegment(oauth=OAuthSettings(public_key="not a key", client_id=CLIENT_ID, key_id=KEY_ID))


# -- the official client ------------------------------------------------------------------------------


def official_client(server: FakeSegment, private_pem: str) -> Any:
    analytics = pytest.importorskip("segment.analytics")
    return analytics.Client(
        "write-key",
        host=server.url,
        sync_mode=True,
        timeout=5,
        max_retries=3,
        oauth_client_id=CLIENT_ID,
        oauth_client_key=private_pem,
        oauth_key_id=KEY_ID,
        oauth_auth_server=server.url + "/",
    )


def stop_refresh(client: Any) -> None:
    """The official client refreshes its token on a timer thread; stop it so nothing outlives the test."""
    thread = client.oauth_manager.thread
    if thread is not None:
        thread.cancel()
        thread.join(JOIN)


# Python 3.12 deprecates datetime.utcnow, which the official client calls to read the Date header.
@pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")
def test_official_client_gets_a_token_and_sends_with_it(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """segment-analytics-python 2.4.0 in OAuth mode fetches a token from /token and sends its batch with it."""
    client = official_client(fake, keys[0])
    try:
        client.track("user-1", "Official OAuth")
    finally:
        stop_refresh(client)
    assert [r.path for r in fake.requests] == ["/token", "/v1/batch"]
    assert [r.status for r in fake.requests] == [200, 200]
    assert fake.requests[1].headers["authorization"] == f"Bearer {fake.tokens[0].access_token}"
    assert fake.by_event("Official OAuth")[0]["userId"] == "user-1"


@pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")
def test_official_client_recovers_from_clock_skew(fake: FakeSegment, keys: tuple[str, str]) -> None:
    """With the server's clock 120 s behind, the official client is told 'Token used before issued', reads the
    skew from the Date header, asks again at once and succeeds."""
    fake.clock_offset = -120
    client = official_client(fake, keys[0])
    try:
        client.track("user-1", "After Skew")
    finally:
        stop_refresh(client)
    assert [(r.path, r.status) for r in fake.requests] == [("/token", 400), ("/token", 200), ("/v1/batch", 200)]
    assert len(fake.by_event("After Skew")) == 1
