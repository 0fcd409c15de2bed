"""OAuth for sources that require it: Segment's token flow, inline, with no thread.

A token is fetched inside the call that first needs it, cached until half its
``expires_in`` has passed (or until the tracking API refuses it), and shared by the
threads of a client under a lock.  Token requests go through the same retry loop,
policy, clock and deadline as the tracking request they serve (``_transport``).

The flow (SPEC.md section 6): a client assertion, a JWT signed RS256 with the
source's private key (``kid`` = key id; ``iss`` = ``sub`` = client id; ``aud`` = the
auth server; ``iat``/``exp`` corrected for the server's clock), is exchanged at
``{auth server}/token`` for an access token sent as ``Authorization: Bearer``.

Needs PyJWT with its crypto backend: ``pip install 'simple-segment[oauth]'``.  This
module imports them only when a client is configured for OAuth.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import math
import os
import re
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ._transport import (
    MAX_RETRY_AFTER,
    Answer,
    Clock,
    Failure,
    HTTPTransport,
    Limits,
    endpoint_for,
    failure_of,
    retrying,
)
from .errors import APIError, ConfigurationError, NetworkError, RateLimitError, ServerError, TokenError

if TYPE_CHECKING:
    from ._options import Options

__all__ = ["OAUTH_EXTRA", "TokenSource"]

log = logging.getLogger("simple_segment")

OAUTH_EXTRA = "pip install 'simple-segment[oauth]'"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SKEW_ERRORS = frozenset({"Token is expired", "Token used before issued"})
"""``error_description``s of an ``invalid_request`` that mean our clock and the server's disagree."""
PERMANENT_TOKEN_STATUSES = frozenset({400, 401, 415})
_REQUIRED = ("oauth_client_id", "oauth_client_key", "oauth_key_id")
TOKEN_RETRIES = 2
"""Token requests are tried three times at least, as the official client does, whatever ``max_retries``."""
DEFAULT_REFRESH = 60.0
"""Seconds a token is kept when its answer gives no usable ``expires_in``."""
DEFAULT_RATE_LIMIT_WAIT = 5.0
"""Seconds waited after a 429 without a usable ``X-RateLimit-Reset`` (as the official client)."""

_HEADER_SAFE = re.compile(r"[!-~]+")
"""What an access token may hold: visible ASCII (RFC 6750's b64token and more), nothing a header cannot carry."""

_live: weakref.WeakSet[TokenSource] = weakref.WeakSet()


def _new_locks_after_fork() -> None:
    for source in list(_live):
        source._lock = threading.Lock()  # noqa: SLF001 - a lock held by another thread at fork is never released


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_locks_after_fork)


class TokenSource:
    """Access tokens for one client: fetched when needed, cached, refreshed; an ``Authorization`` seam.

    Made at client construction, which fails with :class:`ConfigurationError` when
    the OAuth options are incomplete, PyJWT or its crypto backend is missing, or the
    private key does not parse.  Never shows the key or a token in ``repr``, logs or
    errors.
    """

    def __init__(self, options: Options, *, clock: Clock, user_agent: str, seam: HTTPTransport | None = None) -> None:
        missing = [name for name in _REQUIRED if not getattr(options, name)]
        if missing:
            given = ", ".join(name for name in _REQUIRED if name not in missing)
            raise ConfigurationError(missing[0], f"is required for OAuth (with {given})")
        jwt = _import_jwt()
        try:
            self._key = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).prepare_key(
                options.oauth_client_key
            )
        except Exception as exc:  # noqa: BLE001 - whatever the parser says, the key is unusable
            reason = f"is not a PEM-encoded RSA private key ({type(exc).__name__})"
        else:
            reason = ""
        if reason:  # raised outside the except block: the parser's frames (they hold the key) are not kept
            raise ConfigurationError("oauth_client_key", reason)
        self._encode = jwt.encode
        self._client_id = options.oauth_client_id or ""
        self._key_id = options.oauth_key_id or ""
        self._scope = options.oauth_scope
        self._audience = options.oauth_auth_server.rstrip("/")
        self.url = f"{self._audience}/token"
        self._endpoint = endpoint_for(self.url, options, seam)  # the client's transport seam, if it has one
        self._clock = clock
        self._limits = Limits.of(options, clock, at_least=TOKEN_RETRIES)
        self._headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": user_agent}
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._skew = 0
        """Seconds our clock runs ahead of the auth server's (from its ``Date`` header)."""
        _live.add(self)

    def __repr__(self) -> str:
        return f"<TokenSource {getattr(self, 'url', '?')} client_id={getattr(self, '_client_id', '?')!r}>"

    # -- the Authorization seam of the transport -------------------------------------------

    def header(self, deadline: float) -> str:
        """Return ``Bearer <token>``, fetching a token first if none is fresh (before ``deadline``).

        Waiting for another thread's token request ends at ``deadline`` too: raises
        :class:`NetworkError` (retryable) when it does.
        """
        wait = max(0.0, deadline - self._clock.monotonic())
        if not self._lock.acquire(timeout=min(wait, threading.TIMEOUT_MAX)):
            reason = f"POST {self.url}: total_timeout ran out waiting for another thread's token request"
            raise NetworkError(reason, attempts=0)
        try:
            if self._token is None or self._clock.monotonic() >= self._refresh_at:
                self._token = None
                retrying(self._attempt, self.url, deadline, self._limits, at_once=2)
            return f"Bearer {self._token}"
        finally:
            self._lock.release()

    def rejected(self, header: str) -> None:
        """Drop the cached token if ``header`` carried it: the tracking API refused it.

        A token another thread fetched meanwhile is kept.
        """
        with self._lock:
            if self._token is not None and header == f"Bearer {self._token}":
                self._token = None
        log.info("the tracking API refused an OAuth token; a new one will be fetched")

    def close(self) -> None:
        """Close the connections to the auth server."""
        self._endpoint.close()

    # -- fetching -----------------------------------------------------------------------------

    def _attempt(self, number: int, remaining: float) -> bool | Failure:
        """Ask for a token once; on success cache it (under the caller's lock) and return True."""
        attempts = number + 1
        if remaining <= 0:
            reason = f"POST {self.url}: total_timeout ran out before token request {attempts}"
            return Failure(NetworkError(reason, attempts=attempts))
        try:
            answer = self._endpoint.exchange(self._form(), self._headers, remaining)
        except self._endpoint.failures as exc:
            return failure_of(exc, self.url, attempts, ran_out=False)
        self._learn_skew(answer)
        if answer.status == 200:  # noqa: PLR2004 - the one success
            return self._accept(answer, attempts)
        return self._refusal(answer, attempts)

    def _form(self) -> bytes:
        # Built in a frame of its own: the signed assertion is a credential for a minute.
        now = int(time.time())
        claims = {
            "iss": self._client_id,
            "sub": self._client_id,
            "aud": self._audience,
            "iat": now - 5 - self._skew,
            "exp": now + 55 - self._skew,
            "jti": str(uuid.uuid4()),
        }
        assertion = self._encode(claims, self._key, algorithm="RS256", headers={"kid": self._key_id})
        return (
            f"grant_type=client_credentials&client_assertion_type={quote(ASSERTION_TYPE, safe='')}"
            f"&client_assertion={assertion}&scope={quote(self._scope, safe='')}"
        ).encode("ascii")

    def _accept(self, answer: Answer, attempts: int) -> bool | Failure:
        payload = _json(answer.text)
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token or not _HEADER_SAFE.fullmatch(token):
            # A token that cannot go in a header (a newline, a space) would be echoed by
            # http.client's "Invalid header value" error: it is refused unseen.
            reason = "the answer has no access_token" if not token else "its access_token cannot be sent in a header"
            error = ServerError(200, "invalid_token_response", reason, attempts=attempts)
            return Failure(error, response=answer.response)
        lifetime = _seconds(payload.get("expires_in")) if isinstance(payload, dict) else None
        self._token = token
        self._refresh_at = self._clock.monotonic() + (lifetime / 2 if lifetime else DEFAULT_REFRESH)
        log.debug("got an OAuth token from %s on attempt %d", self.url, attempts)
        return True

    def _refusal(self, answer: Answer, attempts: int) -> Failure:
        payload = _json(answer.text)
        fields = payload if isinstance(payload, dict) else {}
        code = str(fields.get("error") or "unknown")
        text = answer.text[:200].decode("utf-8", "replace")
        message = str(fields.get("error_description") or fields.get("message") or text)
        headers = dict(answer.response.headers)
        status = answer.status
        if status == 429:  # noqa: PLR2004 - rate limited: wait X-RateLimit-Reset seconds
            wait = _seconds(answer.response.headers.get("X-RateLimit-Reset"))
            wait = DEFAULT_RATE_LIMIT_WAIT if wait is None else wait
            limited = RateLimitError(status, code, message, headers=headers, attempts=attempts, retry_after=wait)
            return Failure(limited, wait=wait)
        if status in PERMANENT_TOKEN_STATUSES:
            error: APIError = TokenError(status, code, message, headers=headers, attempts=attempts)
            if code == "invalid_request" and message in SKEW_ERRORS:
                log.info("the auth server says %r: asking again with its clock", message)
                return Failure(error, again_now=True)  # the skew was just learnt from its Date header
            log.error("the auth server refused the OAuth client for good: %s", error)
            return Failure(error)
        # Any other answer may pass (SPEC.md section 6: only 400, 401 and 415 are final).
        return Failure(ServerError(status, code, message, headers=headers, attempts=attempts), response=answer.response)

    def _learn_skew(self, answer: Answer) -> None:
        date = answer.response.headers.get("Date")
        if not date:
            return
        try:
            server = email.utils.parsedate_to_datetime(date)
            skew = (dt.datetime.now(dt.timezone.utc) - server).total_seconds()
        except (TypeError, ValueError, OverflowError, IndexError):
            log.debug("the auth server's Date header does not parse: %r", date)
            return
        if math.isfinite(skew) and abs(skew) < MAX_RETRY_AFTER:
            self._skew = int(skew)


def _import_jwt() -> Any:  # noqa: ANN401 - the jwt module
    try:
        import jwt  # noqa: PLC0415 - only OAuth clients need it
        from jwt.algorithms import has_crypto  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigurationError("oauth_client_id", f"OAuth needs the oauth extra: {OAUTH_EXTRA}") from exc
    if not has_crypto:
        raise ConfigurationError("oauth_client_id", f"OAuth needs PyJWT's crypto backend: {OAUTH_EXTRA}")
    return jwt


def _json(body: bytes) -> Any:  # noqa: ANN401 - any JSON
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _seconds(value: object) -> float | None:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and 0 <= seconds <= MAX_RETRY_AFTER else None

