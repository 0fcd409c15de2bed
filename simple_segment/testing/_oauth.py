"""FakeSegment's OAuth mode: a token endpoint and Bearer checks, as Segment's OAuth server.

Segment sources can require OAuth instead of the write key (SPEC.md section 6).
:class:`TokenAuthority` plays Segment's authorization server for one client: it
verifies the client assertion of a ``POST /token`` request, issues opaque
access tokens and checks the ``Authorization: Bearer`` header of tracking
requests. It knows nothing of sockets; :class:`FakeSegment` wires it to HTTP.

This is the only part of the testing kit that needs a third-party package:
PyJWT with cryptography (``pip install 'pyjwt[crypto]'``), imported when a
:class:`TokenAuthority` is created, that is only when OAuth mode is used.
"""

from __future__ import annotations

import collections
import dataclasses
import email.utils
import math
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = ["TOKEN_PATH", "IssuedToken", "OAuthSettings", "TokenAuthority", "TokenReply"]

#: Where the token endpoint listens (the client posts to ``{oauth_auth_server}/token``).
TOKEN_PATH = "/token"  # noqa: S105 - a URL path, not a password
FORM_TYPE = "application/x-www-form-urlencoded"
GRANT_TYPE = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHM = "RS256"

# The two descriptions a client reads as clock skew (it then asks again at once).
USED_BEFORE_ISSUED = "Token used before issued"
EXPIRED = "Token is expired"

#: Longest accepted assertion life (exp - iat), in seconds; the official client uses 60.
MAX_ASSERTION_LIFETIME = 3600
_MAX_FORM_BYTES = 65_536
_MAX_FORM_FIELDS = 20
# Bounds on memory: tokens kept valid and assertion ids remembered against replay.
_MAX_TOKENS_KEPT = 10_000
_MAX_JTIS_KEPT = 100_000


@dataclasses.dataclass(frozen=True)
class OAuthSettings:
    """Turns on FakeSegment's OAuth mode: ``FakeSegment(oauth=OAuthSettings(...))``.

    The client's settings must match: ``oauth_client_id=client_id``,
    ``oauth_key_id=key_id``, ``oauth_client_key`` the private key of
    ``public_key``, and ``oauth_auth_server`` the server's :attr:`FakeSegment.url`
    (the assertion's ``aud``).

    Since: 0.1.0
    """

    public_key: str | bytes
    """PEM of the RSA key that verifies client assertions (str or bytes). A private key's PEM works too: its
    public half is used."""
    client_id: str
    """The one client known: the assertion's ``iss`` and ``sub``."""
    key_id: str
    """The assertion header's ``kid``."""
    token_lifetime: int = 3600
    """Seconds an access token lives; answered as ``expires_in``. Change it later with
    :attr:`FakeSegment.token_lifetime`."""
    scope: str = "tracking_api:write"
    """The scope granted; a request naming another scope answers 400 ``invalid_scope``."""
    clock_offset: float = 0.0
    """Seconds the server's clock runs ahead of this machine's (negative: behind), to simulate clock skew. It
    judges the assertion's ``iat``/``exp``, ages tokens and stamps the ``Date`` header. Change it later with
    :attr:`FakeSegment.clock_offset`."""

    def __post_init__(self) -> None:
        """Check the values.

        Raises :class:`ValueError` for an empty id, a lifetime under 1 second or a
        non-finite offset.
        """
        if not self.client_id or not self.key_id:
            msg = "client_id and key_id must not be empty"
            raise ValueError(msg)
        _check_lifetime(self.token_lifetime)
        _check_offset(self.clock_offset)


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    """An access token :class:`FakeSegment` issued in OAuth mode.

    Since: 0.1.0
    """

    access_token: str
    """The token string, sent back as ``Authorization: Bearer ...``."""
    client_id: str
    """The client it was issued to."""
    scope: str
    """The scope granted."""
    jti: str
    """The ``jti`` of the client assertion it was issued for."""
    issued_at: float
    """When, in seconds since the epoch on the server's clock (which includes ``clock_offset``)."""
    expires_at: float
    """When it stops working, on the server's clock."""
    revoked: bool = False
    """Whether :meth:`FakeSegment.revoke_tokens` revoked it."""


@dataclasses.dataclass(frozen=True)
class TokenReply:
    """The answer to a token request: status and JSON body (with a token if one was issued)."""

    status: int
    payload: dict[str, Any]
    token: IssuedToken | None = None


class _RefusedError(Exception):
    """The token request is refused; the answer is in ``reply``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(status, error, description)
        self.reply = oauth_error(status, error, description)


def oauth_error(status: int, error: str, description: str) -> TokenReply:
    """Return an OAuth error answer: ``{"error": ..., "error_description": ...}``."""
    return TokenReply(status, {"error": error, "error_description": description})


def _check_lifetime(seconds: int) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        msg = f"token_lifetime must be a whole number of seconds >= 1, not {seconds!r}"
        raise ValueError(msg)


def _check_offset(seconds: float) -> None:
    if isinstance(seconds, bool) or not math.isfinite(seconds):
        msg = f"clock_offset must be a finite number of seconds, not {seconds!r}"
        raise ValueError(msg)


def _load_public_key(pem: str | bytes) -> RSAPublicKey:
    """Load an RSA public key from PEM (a private key gives its public half).

    Raises :class:`ImportError` when PyJWT or cryptography is not installed;
    :class:`ValueError` when the PEM is not an RSA key.
    """
    try:
        import jwt  # noqa: F401, PLC0415 - OAuth mode only; fail at start rather than on a request
        from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415
        from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
            load_pem_private_key,
            load_pem_public_key,
        )
    except ImportError as exc:
        msg = "FakeSegment's OAuth mode needs PyJWT with cryptography: pip install 'pyjwt[crypto]'"
        raise ImportError(msg) from exc
    data = pem.encode() if isinstance(pem, str) else pem
    key: object
    try:
        key = load_pem_public_key(data)
    except ValueError:
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            msg = "public_key must be the PEM of an RSA key"
            raise ValueError(msg) from exc
    if isinstance(key, rsa.RSAPrivateKey):
        key = key.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        msg = "public_key must be the PEM of an RSA key"
        raise ValueError(msg)  # noqa: TRY004 - a wrong kind of key is a bad value, not a bad type
    return key


def _form(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    """Parse the form body; one value per field."""
    content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise _RefusedError(415, "invalid_request", f"Content-Type must be {FORM_TYPE}")
    if len(body) > _MAX_FORM_BYTES:
        raise _RefusedError(400, "invalid_request", f"the body is over {_MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS)
    except ValueError as exc:  # also UnicodeDecodeError
        raise _RefusedError(400, "invalid_request", f"the body is not a valid form: {exc}") from None
    repeated = sorted(name for name, values in fields.items() if len(values) > 1)
    if repeated:
        raise _RefusedError(400, "invalid_request", f"parameters must not repeat: {', '.join(repeated)}")
    return {name: values[0] for name, values in fields.items()}


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the assertion's header and claims, before checking its signature."""
    import jwt  # noqa: PLC0415 - OAuth mode only

    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _RefusedError(400, "invalid_request", f"malformed client assertion: {exc}") from None
    return header, claims


def _verify_signature(assertion: str, key: RSAPublicKey) -> None:
    import jwt  # noqa: PLC0415 - OAuth mode only

    # Only the signature: the claims are judged on the server's own clock below.
    options: Any = {
        "verify_signature": True,
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
        "verify_aud": False,
        "verify_iss": False,
        "verify_sub": False,
        "verify_jti": False,
    }
    try:
        jwt.decode(assertion, key, algorithms=[ALGORITHM], options=options)
    except jwt.PyJWTError as exc:
        raise _RefusedError(400, "invalid_request", f"invalid client assertion signature: {exc}") from None


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _RefusedError(400, "invalid_request", f'the assertion needs a numeric "{name}" claim')
    return float(value)


class TokenAuthority:
    """Issues and checks access tokens for one OAuth client; thread-safe.

    Tokens stay valid until they expire (on the server's clock) or are revoked;
    :meth:`forget_history` (FakeSegment's ``clear``) forgets the record of issued
    tokens, not the tokens themselves.
    """

    def __init__(self, settings: OAuthSettings, clock: Callable[[], float] = time.time) -> None:
        """Load the public key (importing PyJWT) and start with no tokens.

        Raises :class:`ImportError` when PyJWT or cryptography is not installed;
        :class:`ValueError` when ``settings.public_key`` is not an RSA key.
        """
        self.settings = settings
        self._key = _load_public_key(settings.public_key)
        self._clock = clock
        self._lock = threading.Lock()
        self._lifetime = settings.token_lifetime
        self._offset = settings.clock_offset
        # Insertion-ordered, so the oldest go first when over the bound.
        self._valid: dict[str, IssuedToken] = {}
        self._history: collections.deque[str] = collections.deque(maxlen=_MAX_TOKENS_KEPT)
        self._issued = 0
        self._jtis: dict[str, float] = {}  # assertion id -> its exp, to refuse replays

    # -- settings ------------------------------------------------------------------

    def now(self) -> float:
        """Return the server's clock: this machine's plus ``clock_offset``."""
        with self._lock:
            return self._clock() + self._offset

    def http_date(self) -> str:
        """Return the server's clock as an HTTP ``Date`` header value."""
        return email.utils.formatdate(self.now(), usegmt=True)

    @property
    def token_lifetime(self) -> int:
        """Seconds a new token lives."""
        with self._lock:
            return self._lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: int) -> None:
        _check_lifetime(seconds)
        with self._lock:
            self._lifetime = seconds

    @property
    def clock_offset(self) -> float:
        """Seconds the server's clock runs ahead of this machine's."""
        with self._lock:
            return self._offset

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        _check_offset(seconds)
        with self._lock:
            self._offset = float(seconds)

    # -- tokens ----------------------------------------------------------------------

    @property
    def tokens(self) -> list[IssuedToken]:
        """The tokens issued since start or :meth:`forget_history`, oldest first, as they are now."""
        with self._lock:
            return [self._valid[token] for token in self._history if token in self._valid]

    @property
    def issued(self) -> int:
        """How many tokens were issued since start or :meth:`forget_history`."""
        with self._lock:
            return self._issued

    def revoke_all(self) -> int:
        """Revoke every token issued so far; return how many were still unrevoked."""
        with self._lock:
            live = [token for token in self._valid.values() if not token.revoked]
            for token in live:
                self._valid[token.access_token] = dataclasses.replace(token, revoked=True)
            return len(live)

    def forget_history(self) -> None:
        """Forget the record of issued tokens; the tokens themselves stay valid."""
        with self._lock:
            self._history.clear()
            self._issued = 0

    def bearer_problem(self, headers: Mapping[str, str]) -> str | None:
        """Return why the request's Bearer token is not accepted, or None if it is."""
        scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return "this source requires OAuth: send Authorization: Bearer <access token>"
        with self._lock:
            token = self._valid.get(credentials.strip())
            now = self._clock() + self._offset
        if token is None:
            return "unknown access token"
        if token.revoked:
            return "the access token was revoked"
        if token.expires_at <= now:
            return "the access token has expired"
        return None

    # -- the token endpoint -----------------------------------------------------------

    def answer(self, method: str, headers: Mapping[str, str], body: bytes, audience: str) -> TokenReply:
        """Answer a ``/token`` request: verify the client assertion and issue a token.

        - ``method``: The HTTP method (only POST is allowed).
        - ``headers``: Request headers with lower-cased names.
        - ``body``: The form-encoded body.
        - ``audience``: The ``aud`` the assertion must name: the server's base URL
          without a trailing slash.
        """
        if method != "POST":
            return oauth_error(405, "invalid_request", f"{method} is not allowed; use POST")
        try:
            claims = self._verify(_form(headers, body), audience)
            token = self._issue(claims)
        except _RefusedError as refused:
            return refused.reply
        payload = {
            "access_token": token.access_token,
            "expires_in": round(token.expires_at - token.issued_at),
            "scope": token.scope,
            "token_type": "Bearer",
        }
        return TokenReply(200, payload, token)

    def _verify(self, form: Mapping[str, str], audience: str) -> dict[str, Any]:
        """Check the request and its assertion; return the assertion's claims."""
        grant_type = form.get("grant_type")
        if grant_type != GRANT_TYPE:
            raise _RefusedError(400, "unsupported_grant_type", f"grant_type must be {GRANT_TYPE}, not {grant_type!r}")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise _RefusedError(400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion", "")
        if not assertion:
            raise _RefusedError(400, "invalid_request", "client_assertion is required")
        claims = self._verify_assertion(assertion, audience)
        scope = form.get("scope") or self.settings.scope
        if scope != self.settings.scope:
            raise _RefusedError(400, "invalid_scope", f"scope {scope!r} is not granted; use {self.settings.scope!r}")
        return claims

    def _verify_assertion(self, assertion: str, audience: str) -> dict[str, Any]:
        """Check the client assertion (a signed JWT); return its claims."""
        settings = self.settings
        header, claims = _unverified(assertion)
        # The client is looked up first, as a real server must, to know which key verifies it.
        if claims.get("iss") != settings.client_id:
            raise _RefusedError(401, "invalid_client", f"unknown client {claims.get('iss')!r}")
        if claims.get("sub") != claims.get("iss"):
            raise _RefusedError(400, "invalid_request", 'the assertion\'s "sub" must equal its "iss"')
        if header.get("alg") != ALGORITHM:
            raise _RefusedError(400, "invalid_request", f"the assertion must be signed with {ALGORITHM}")
        if header.get("kid") != settings.key_id:
            raise _RefusedError(400, "invalid_request", f"unknown key id {header.get('kid')!r}")
        _verify_signature(assertion, self._key)
        aud = claims.get("aud")
        if aud != audience and not (isinstance(aud, list) and audience in aud):
            raise _RefusedError(400, "invalid_request", f'the assertion\'s "aud" must be {audience!r}, not {aud!r}')
        self._check_times(claims)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _RefusedError(400, "invalid_request", 'the assertion needs a "jti" claim')
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        issued, expires = _number(claims, "iat"), _number(claims, "exp")
        now = self.now()
        if issued > now:
            raise _RefusedError(400, "invalid_request", USED_BEFORE_ISSUED)
        if expires <= now:
            raise _RefusedError(400, "invalid_request", EXPIRED)
        if not 0 < expires - issued <= MAX_ASSERTION_LIFETIME:
            message = f'the assertion\'s "exp" must be after "iat", by at most {MAX_ASSERTION_LIFETIME} seconds'
            raise _RefusedError(400, "invalid_request", message)

    def _issue(self, claims: Mapping[str, Any]) -> IssuedToken:
        """Issue a token for a verified assertion, unless its ``jti`` was used already."""
        jti = str(claims["jti"])
        with self._lock:
            now = self._clock() + self._offset
            if jti in self._jtis:
                raise _RefusedError(400, "invalid_request", f"the assertion {jti!r} was already used")
            # An expired assertion is refused anyway, so its id need not be remembered.
            self._jtis = {key: exp for key, exp in self._jtis.items() if exp > now}
            if len(self._jtis) >= _MAX_JTIS_KEPT:
                del self._jtis[next(iter(self._jtis))]
            self._jtis[jti] = float(claims["exp"])
            token = IssuedToken(
                access_token=secrets.token_urlsafe(32),
                client_id=self.settings.client_id,
                scope=self.settings.scope,
                jti=jti,
                issued_at=now,
                expires_at=now + self._lifetime,
            )
            if len(self._valid) >= _MAX_TOKENS_KEPT:
                del self._valid[next(iter(self._valid))]
            self._valid[token.access_token] = token
            self._history.append(token.access_token)
            self._issued += 1
            return token
