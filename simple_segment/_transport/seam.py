"""The transport seam: ``Client(transport=...)`` hands each request to an object instead of the network.

The seam sits below the retry loop, the deadline and the error mapping: an
:class:`HTTPTransport` sees the bytes an attempt would send and returns the answer
(status, headers, body); everything above it (retries, Retry-After, OAuth token
requests, errors, ``on_error``) runs as it does over the network.  Waits and
deadlines use the transport's ``clock`` when it has one.
:class:`simple_segment.testing.MockTransport` is the one the library ships.
"""

from __future__ import annotations

import http
from collections.abc import Mapping
from http.client import HTTPException
from typing import TYPE_CHECKING, ClassVar, Protocol, Union
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError

from .endpoint import MAX_ERROR_BODY, Answer, Endpoint

if TYPE_CHECKING:
    from simple_segment._options import Options

    from .clock import Clock


class HTTPTransport(Protocol):
    """What ``Client(transport=...)`` takes: an object that answers requests instead of the network.

    :meth:`handle` may raise :class:`OSError` (``ConnectionError``, ``TimeoutError``
    ...), urllib3's ``HTTPError`` or http.client's ``HTTPException`` to stand for a
    network failure: they are mapped as a failure on the network is (a retryable
    :class:`~simple_segment.NetworkError`; a certificate error a
    :class:`~simple_segment.TransportError`).  Anything else it raises reaches the
    caller unchanged.

    Since: 0.2.0
    """

    @property
    def clock(self) -> Clock | None:
        """Where the client reads the time and waits (``monotonic()``, ``sleep()``); None for the real clock."""
        ...

    def handle(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Answer one request (``headers`` and ``body`` as they would go on the wire): (status, headers, body)."""
        ...


class SeamEndpoint:
    """An endpoint whose exchanges go to an :class:`HTTPTransport`: the answers it gives, as urllib3 responses."""

    failures: ClassVar[tuple[type[BaseException], ...]] = (HTTPError, HTTPException, OSError)
    """What a transport may raise to stand for a network failure (a ValueError is a bug in the test, not the wire)."""

    def __init__(self, seam: HTTPTransport, url: str) -> None:
        self.url = url
        self._seam = seam
        self._host = urlsplit(url).netloc

    def __repr__(self) -> str:
        return f"<SeamEndpoint {self.url} {self._seam!r}>"

    def exchange(self, body: bytes, headers: Mapping[str, str], remaining: float) -> Answer:
        """Hand the request to the transport and return its answer (at most ``MAX_ERROR_BODY`` bytes of body).

        Raises what the transport raises, and :class:`TimeoutError` when its answer took
        longer than ``remaining`` on its clock (a handler that advanced a fake clock),
        as the deadline sockets would have on the network.
        """
        # The headers http.client would add, in its order (as Transport.wire_headers shows them).
        sent = {"Host": self._host, "Accept-Encoding": "identity", **headers, "Content-Length": str(len(body))}
        clock = self._seam.clock
        started = clock.monotonic() if clock is not None else 0.0
        status, answer_headers, answer_body = self._seam.handle("POST", self.url, sent, body)
        if clock is not None and clock.monotonic() - started > remaining:
            msg = "total_timeout ran out before the answer was complete"
            raise TimeoutError(msg)
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        data = answer_body[:MAX_ERROR_BODY]
        response = urllib3.HTTPResponse(
            body=data,
            headers=dict(answer_headers),
            status=status,
            reason=reason,
            decode_content=False,
            request_method="POST",
            request_url=self.url,
        )
        return Answer(status, response, data)

    def close(self) -> None:
        """Nothing to release: the transport holds no connection of ours."""


AnyEndpoint = Union[Endpoint, SeamEndpoint]  # noqa: UP007 - a runtime alias on Python 3.10
"""Where a transport's or token source's requests go."""


def endpoint_for(url: str, options: Options, seam: HTTPTransport | None, *, pool_size: int = 16) -> AnyEndpoint:
    """Return the endpoint for ``url``: the network with ``options``' proxies, TLS and timeouts, or ``seam``."""
    if seam is not None:
        return SeamEndpoint(seam, url)
    return Endpoint(url, proxies=options.proxies, verify=options.verify, timeout=options.timeout, pool_size=pool_size)
