"""HTTP delivery: a urllib3 connection pool per client, retries, a whole-call deadline, errors.

The only package that imports urllib3 and requests.  One job per module:

- :mod:`._httpclient`: the deadline sockets and every use of http.client's and
  urllib3's internals (one write per request, a reader nobody holds closed at once).
- :mod:`.endpoint`: one URL's connections: the urllib3 pool, proxies and CA bundle
  read once the way requests reads them, TLS, fork safety; the raw answer.
- :mod:`.retry`: urllib3's ``Retry`` as the policy and the one retry loop, shared by
  tracking and token requests; Retry-After and the caps on waiting.
- :mod:`.failures`: exceptions and non-2xx answers mapped to :mod:`..errors`.
- :mod:`.transport`: the :class:`Transport`: headers, gzip, the deadline, OAuth's
  ``Authorization``, one attempt's answer judged.
- :mod:`.seam`: ``Client(transport=...)``: requests handed to an object instead of
  the network, below the retries and the error mapping.
- :mod:`.clock`: where the time is read and waits are made (the seam tests replace).
"""

from __future__ import annotations

from .clock import Clock, SystemClock
from .endpoint import MAX_ERROR_BODY, NETWORK_FAILURES, Answer, Endpoint
from .failures import MAX_ERROR_TEXT, failure_of, without_traceback
from .retry import MAX_RETRY_AFTER, RETRY_STATUSES, Failure, Limits, policy_of, retrying
from .seam import AnyEndpoint, HTTPTransport, SeamEndpoint, endpoint_for
from .transport import GZIP_LEVEL, REJECTED_TOKEN_STATUSES, Authorization, Delivered, Transport

__all__ = [
    "GZIP_LEVEL",
    "MAX_ERROR_BODY",
    "MAX_ERROR_TEXT",
    "MAX_RETRY_AFTER",
    "NETWORK_FAILURES",
    "REJECTED_TOKEN_STATUSES",
    "RETRY_STATUSES",
    "Answer",
    "AnyEndpoint",
    "Authorization",
    "Clock",
    "Delivered",
    "Endpoint",
    "Failure",
    "HTTPTransport",
    "Limits",
    "SeamEndpoint",
    "SystemClock",
    "Transport",
    "endpoint_for",
    "failure_of",
    "policy_of",
    "retrying",
    "without_traceback",
]
