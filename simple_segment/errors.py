"""The exception tree of simple_segment.

Every error this library raises is a :class:`SegmentError`::

    SegmentError(Exception)
    ├── ValidationError(SegmentError, ValueError, AssertionError)   bad input, raised before any I/O
    │   ├── MessageTooLargeError(ValidationError, RuntimeError)     one message over 32 KB
    │   └── ConfigurationError(ValidationError)                     bad write_key / host / option
    ├── DeliveryError(SegmentError)                                 a request was not delivered
    │   ├── APIError(DeliveryError)                                 Segment answered non-2xx
    │   │   ├── ServerError(APIError, RetryableError)               408 / 5xx after retries
    │   │   └── RateLimitError(APIError, RetryableError)            429 after retries
    │   ├── TransportError(DeliveryError, RetryableError)           no answer: connection, timeout
    │   └── BatchDeliveryError(DeliveryError)                       a batch() block lost requests
    └── RetryableError(SegmentError)                                marker: trying later may work

``ValidationError`` is also an ``AssertionError`` and ``MessageTooLargeError`` a
``RuntimeError``, the types the official library raises, so existing ``except``
clauses keep working.  ``RetryableError`` is a marker base: ``except RetryableError``
(or Celery's ``autoretry_for=(RetryableError,)``) catches exactly the failures that
may succeed later; every other :class:`DeliveryError` is permanent.

The classes take plain values (status, code, headers, text) and import nothing from
the HTTP stack.  Each one pickles and unpickles with its attributes, because task
queues such as Celery store exceptions.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "BatchDeliveryError",
    "ConfigurationError",
    "DeliveryError",
    "MessageTooLargeError",
    "RateLimitError",
    "RetryableError",
    "SegmentError",
    "ServerError",
    "TransportError",
    "ValidationError",
]


class SegmentError(Exception):
    """Base class of every error raised by simple_segment."""

    __module__ = "simple_segment"


class RetryableError(SegmentError):
    """Marker base: the same messages may be delivered if sent again later.

    Raised errors that derive from it: :class:`TransportError`, :class:`ServerError`
    and :class:`RateLimitError`.
    """

    __module__ = "simple_segment"


class ValidationError(SegmentError, ValueError, AssertionError):
    """An argument cannot become a valid Segment message; nothing was sent.

    ``field`` is the path of the offending value (``"properties.items[2].price"``),
    ``reason`` the rule it broke.
    """

    __module__ = "simple_segment"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class MessageTooLargeError(ValidationError, RuntimeError):
    """A serialized message is larger than Segment accepts (32 KB); nothing was sent."""

    __module__ = "simple_segment"

    def __init__(self, size: int, limit: int, field: str = "message") -> None:
        ValidationError.__init__(self, field, f"serialized size {size} bytes exceeds the {limit} byte limit")
        self.args = (size, limit, field)
        self.size = size
        self.limit = limit


class ConfigurationError(ValidationError):
    """A client option is missing or invalid (write_key, host, timeout, ...)."""

    __module__ = "simple_segment"


class DeliveryError(SegmentError):
    """Messages were not delivered.

    ``messages`` lists the message dicts that were not delivered; ``attempts`` is how
    many HTTP attempts were made for them.  ``retryable`` tells whether sending the
    same messages again later may succeed.
    """

    __module__ = "simple_segment"

    retryable = False

    def __init__(self, message: str, *, messages: list[dict[str, Any]] | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.messages: list[dict[str, Any]] = list(messages or [])
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, _picklable_state(self.__dict__)))


class APIError(DeliveryError):
    """Segment answered with a status that is not 2xx.

    Compatible with the official library's ``APIError(status, code, message, response)``
    and its ``str()``: ``[Segment] {code}: {message} ({status})``.  ``response`` is the
    ``requests.Response`` when there was one (it is not pickled).  ``headers`` holds the
    response headers as a plain dict.
    """

    __module__ = "simple_segment"

    def __init__(  # noqa: PLR0913 - the official positional signature plus keyword extras
        self,
        status: int,
        code: str,
        message: str,
        response: Any = None,  # noqa: ANN401 - a requests.Response; errors import no HTTP library
        *,
        headers: dict[str, str] | None = None,
        messages: list[dict[str, Any]] | None = None,
        attempts: int = 0,
    ) -> None:
        DeliveryError.__init__(self, message, messages=messages, attempts=attempts)
        self.args = (status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.response = response
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        return f"[Segment] {self.code}: {self.message} ({self.status})"


class ServerError(APIError, RetryableError):
    """Segment answered 408 or a retryable 5xx, and retries did not get through."""

    __module__ = "simple_segment"
    retryable = True


class RateLimitError(APIError, RetryableError):
    """Segment answered 429; ``retry_after`` is the wait it asked for in seconds, if any."""

    __module__ = "simple_segment"
    retryable = True

    def __init__(  # noqa: PLR0913 - APIError's signature plus retry_after
        self,
        status: int,
        code: str,
        message: str,
        response: Any = None,  # noqa: ANN401 - a requests.Response; errors import no HTTP library
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        messages: list[dict[str, Any]] | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(status, code, message, response, headers=headers, messages=messages, attempts=attempts)
        self.retry_after = retry_after


class TransportError(DeliveryError, RetryableError):
    """No HTTP answer: connection refused or dropped, timeout, proxy or TLS failure.

    The underlying ``requests`` exception is chained as ``__cause__``.
    """

    __module__ = "simple_segment"
    retryable = True


class BatchDeliveryError(DeliveryError):
    """A ``batch()`` block could not deliver all of its messages.

    ``unsent`` lists every message of the block that was not delivered, in order: the
    messages of the request that failed and every message added after it (a batch stops
    sending after its first failed request).  Resending exactly these, with the same
    messageIds, completes the block; Segment de-duplicates on messageId.  ``sent`` is the
    number of messages the block delivered before the failure (a count, so a long block
    keeps no copy of what it delivered).  ``__cause__`` is the error of the failed request,
    and ``retryable`` is its ``retryable``.
    """

    __module__ = "simple_segment"

    def __init__(
        self,
        message: str,
        *,
        sent: int = 0,
        unsent: list[dict[str, Any]] | None = None,
        retryable: bool = False,
        attempts: int = 0,
    ) -> None:
        super().__init__(message, messages=unsent, attempts=attempts)
        self.sent = sent
        self.retryable = retryable

    @property
    def unsent(self) -> list[dict[str, Any]]:
        """The messages that were not delivered (the same list as ``messages``)."""
        return self.messages


def _picklable_state(state: dict[str, Any]) -> dict[str, Any]:
    # A live requests.Response holds sockets; it is dropped rather than pickled.
    return {key: (None if key == "response" else value) for key, value in state.items()}


def _rebuild(cls: type[DeliveryError], args: tuple[Any, ...], state: dict[str, Any]) -> DeliveryError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
