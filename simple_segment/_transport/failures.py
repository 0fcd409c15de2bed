"""What went wrong, as our errors: exceptions of an attempt and non-2xx answers mapped by one table.

The urllib3, http.client or socket exception is chained as ``__cause__``, without its
traceback, whose frames hold the request's headers and body.
"""

from __future__ import annotations

import json
import ssl
from http.client import HTTPException
from typing import TYPE_CHECKING

from urllib3.exceptions import HTTPError, LocationValueError, ProxyError, ProxySchemeUnsupported, SSLError

from simple_segment._wire import describe
from simple_segment.errors import APIError, NetworkError, RateLimitError, ServerError, TransportError

from ._httpclient import tunnel_refusal
from .retry import RETRY_STATUSES, Failure, Policy, retry_after_seconds

if TYPE_CHECKING:
    from urllib3.response import BaseHTTPResponse

MAX_ERROR_TEXT = 500
"""Most characters of an error answer kept as an error's ``message``."""


def failure_of(exc: BaseException, url: str, attempts: int, *, ran_out: bool) -> Failure:
    """Map an exception of one attempt to our error: retryable or not, by one table.

    ========================================  ==========================
    what happened                              raised as
    ========================================  ==========================
    the time budget ran out                    NetworkError (retryable)
    refused, reset, dropped, timed out, DNS,   NetworkError (retryable)
    a garbled or truncated answer
    a proxy that could not be reached          NetworkError (retryable)
    a proxy refusing the tunnel: 5xx, 408, 429 NetworkError (retryable)
    a proxy refusing the tunnel: other 4xx     TransportError (permanent)
    (407: its credentials are wrong)
    TLS: certificate rejected, TLS not spoken  TransportError (permanent)
    an unusable URL or proxy setting           TransportError (permanent)
    ========================================  ==========================

    A TLS handshake cut short by the peer (EOF, reset) is a network failure.  The
    exception's traceback is dropped: its frames hold the request's headers and body.
    """
    reason = describe(exc, 300)
    if ran_out:
        reason = f"total_timeout ran out before the answer was complete ({reason})"
    retryable = _is_retryable(exc)
    kind = NetworkError if retryable else TransportError
    error = kind(f"POST {url} failed: {reason}", attempts=attempts)
    error.__cause__ = without_traceback(exc)
    return Failure(error, cause=exc if retryable and isinstance(exc, Exception) else None)


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ProxyError):
        refused = tunnel_refusal(exc)
        if refused is not None:  # the proxy answered our CONNECT: 407 will be 407 next time too
            return refused >= 500 or refused in _PASSING_TUNNEL_REFUSALS  # noqa: PLR2004 - the proxy's own failure
        inner = exc.original_error if isinstance(exc.original_error, BaseException) else None
        return inner is None or _is_retryable(inner)
    if isinstance(exc, (LocationValueError, ProxySchemeUnsupported)):
        return False
    if isinstance(exc, (SSLError, ssl.SSLError, ssl.CertificateError)):
        cause = _innermost(exc)
        return isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError, TimeoutError))
    return isinstance(exc, (HTTPError, HTTPException, OSError, ValueError))  # ValueError: a garbled answer


_PASSING_TUNNEL_REFUSALS = frozenset({408, 429})
"""4xx answers to CONNECT that may pass (a timeout, a rate limit)."""


def _innermost(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while True:
        inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc.__cause__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def without_traceback(exc: BaseException | None) -> BaseException | None:
    """Drop the tracebacks of ``exc`` and its chain: their frames hold the request's headers and body."""
    if exc is None:
        return None
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return exc


def api_error(response: BaseHTTPResponse, text: bytes, attempts: int) -> APIError:
    """Return the error for a non-2xx answer: :class:`RateLimitError`, :class:`ServerError` or :class:`APIError`."""
    status = response.status
    reason = response.reason or ""
    code, message = "unknown", text.decode("utf-8", "replace") or reason
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict):
        code = str(payload.get("code") or code)
        message = str(payload.get("message") or message)
    if len(message) > MAX_ERROR_TEXT:  # it is in str(error) and in every warning line
        message = message[:MAX_ERROR_TEXT] + "..."
    if 300 <= status < 400:  # noqa: PLR2004 - redirects are not followed for a POST
        code = "redirect"
        location = response.headers.get("Location", "?")
        message = f"{reason or 'redirect'} to {location} (redirects are not followed)"
    headers = dict(response.headers)
    if status == 429:  # noqa: PLR2004 - rate limited
        retry_after = retry_after_seconds(Policy(), response)
        return RateLimitError(
            status, code, message, response, headers=headers, attempts=attempts, retry_after=retry_after
        )
    if status in RETRY_STATUSES:
        return ServerError(status, code, message, response, headers=headers, attempts=attempts)
    return APIError(status, code, message, response, headers=headers, attempts=attempts)
