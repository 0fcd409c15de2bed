"""The exception tree of simple_segment.

Every error this library raises is a :class:`SegmentError`::

    SegmentError(Exception)
    ├── ValidationError(SegmentError, ValueError, AssertionError)   bad input, raised before any I/O
    │   ├── MessageTooLargeError(ValidationError, RuntimeError)     one message over 32 KB
    │   ├── ConfigurationError(ValidationError)                     bad write_key / host / option
    │   └── PlanViolationError(ValidationError)                     the message breaks the tracking plan
    ├── DeliveryError(SegmentError)                                 messages were not delivered
    │   ├── APIError(DeliveryError)                                 Segment answered non-2xx (permanent)
    │   │   ├── ServerError(APIError, RetryableError)               408 / retryable 5xx
    │   │   ├── RateLimitError(APIError, RetryableError)            429
    │   │   └── TokenError(APIError)                                the OAuth token endpoint refused for good
    │   ├── TransportError(DeliveryError)                           no answer, and trying again will not help:
    │   │   │                                                        TLS certificate, unusable URL or proxy
    │   │   └── NetworkError(TransportError, RetryableError)        no answer: refused, reset, timeout, DNS,
    │   │                                                            the time budget ran out
    │   └── BatchDeliveryError(DeliveryError)                       a batch() block lost messages (permanent)
    │       └── RetryableBatchDeliveryError(BatchDeliveryError, RetryableError)
    └── RetryableError(SegmentError)                                marker: sending the same later may work

``ValidationError`` is also an ``AssertionError`` and ``MessageTooLargeError`` a
``RuntimeError``, the types the official library raises, so existing ``except``
clauses keep working.  ``RetryableError`` is the marker: ``except RetryableError``
(or Celery's ``autoretry_for=(RetryableError,)``) catches exactly the failures that
may succeed later, and ``error.retryable`` is ``isinstance(error, RetryableError)``.

The classes take plain values (status, code, headers, text) and import nothing from
the HTTP stack.  Every attribute lives in ``args``, in the order of the constructor's
parameters (each class names the slots in ``_FIELDS``), so an error rebuilds from its
``args`` alone: ``type(e)(*e.args)`` (after a JSON round trip too, as Celery's JSON
result backend does) and ``pickle`` give back the same status, code, message, attempts
and messages.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, NoReturn, SupportsIndex, cast, overload

__all__ = [
    "APIError",
    "BatchDeliveryError",
    "ConfigurationError",
    "DeliveryError",
    "MessageTooLargeError",
    "NetworkError",
    "PlanViolationError",
    "RateLimitError",
    "RetryableBatchDeliveryError",
    "RetryableError",
    "SegmentError",
    "ServerError",
    "TokenError",
    "TransportError",
    "ValidationError",
]

Messages = Sequence[dict[str, Any]]


class EncodedMessages(list[dict[str, Any]]):
    """A read-only list of messages kept as their encoded JSON bytes, decoded on each access.

    What :attr:`BatchDeliveryError.unsent` is when a block fails: a failing block keeps
    its unsent messages as the bytes it would have sent (about a fifth of the memory of
    the dicts), and each read (``[i]``, iteration, ``==``, ``json.dumps``) decodes a fresh
    dict, so resending 200,000 of them one by one never holds them all as dicts.  It is a
    ``list`` so that ``json.dumps(error.args)`` (Celery's JSON result backend) writes the
    messages and ``isinstance(error.unsent, list)`` still holds; changing it in place
    raises ``TypeError`` (``list(error.unsent)`` makes an ordinary list).  Pickles as the
    bytes.

    Since: 0.2.0
    """

    __slots__ = ()

    def __init__(self, encoded: Iterable[bytes] = ()) -> None:
        # The list's own storage holds the bytes; every reader below decodes them.
        super().__init__(cast("Iterable[dict[str, Any]]", encoded))

    def _encoded(self) -> list[bytes]:
        return cast("list[bytes]", list(super().__iter__()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._encoded(),))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for data in cast("Iterator[bytes]", super().__iter__()):
            message: dict[str, Any] = json.loads(data)
            yield message

    def __reversed__(self) -> Iterator[dict[str, Any]]:
        for data in cast("Iterator[bytes]", super().__reversed__()):
            message: dict[str, Any] = json.loads(data)
            yield message

    @overload
    def __getitem__(self, index: SupportsIndex, /) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice, /) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: SupportsIndex | slice, /) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return EncodedMessages(cast("list[bytes]", super().__getitem__(index)))
        message: dict[str, Any] = json.loads(cast("bytes", super().__getitem__(index)))
        return message

    def __contains__(self, value: object, /) -> bool:
        return any(message == value for message in self)

    def __eq__(self, other: object, /) -> bool:
        if isinstance(other, EncodedMessages):
            return self._encoded() == other._encoded()
        return isinstance(other, list) and len(other) == len(self) and list(self) == other

    def __ne__(self, other: object, /) -> bool:
        return not self == other

    __hash__ = None  # a list: unhashable

    def __lt__(self, other: list[dict[str, Any]], /) -> bool:
        return list(self) < list(other)

    def __le__(self, other: list[dict[str, Any]], /) -> bool:
        return list(self) <= list(other)

    def __gt__(self, other: list[dict[str, Any]], /) -> bool:
        return list(self) > list(other)

    def __ge__(self, other: list[dict[str, Any]], /) -> bool:
        return list(self) >= list(other)

    def __repr__(self) -> str:
        return repr(list(self))

    # A plain list's ``[] + unsent`` would read the stored bytes; these return ordinary lists.
    def __add__(self, other: list[dict[str, Any]], /) -> list[dict[str, Any]]:  # type: ignore[override]
        return [*self, *other]

    def __radd__(self, other: list[dict[str, Any]], /) -> list[dict[str, Any]]:
        return [*other, *self]

    def __mul__(self, count: SupportsIndex, /) -> list[dict[str, Any]]:
        return list(self) * count

    def __rmul__(self, count: SupportsIndex, /) -> list[dict[str, Any]]:
        return list(self) * count

    def copy(self) -> list[dict[str, Any]]:
        """Return the messages as an ordinary list of dicts."""
        return list(self)

    def index(self, value: dict[str, Any], start: SupportsIndex = 0, stop: SupportsIndex = sys.maxsize, /) -> int:
        """Return the position of the first message equal to ``value``; ValueError when there is none."""
        for position in range(len(self))[start:stop]:
            if self[position] == value:
                return position
        raise ValueError(f"{value!r} is not among the messages")

    def count(self, value: dict[str, Any], /) -> int:
        """Return how many messages equal ``value``."""
        return sum(1 for message in self if message == value)

    def _read_only(self, *_: object, **__: object) -> NoReturn:
        raise TypeError("the unsent messages are read-only; list(error.unsent) makes a list you can change")

    append = extend = insert = pop = remove = clear = sort = reverse = _read_only
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only


def _listed(messages: Messages | None) -> list[dict[str, Any]]:
    # An error's own list of messages; encoded ones stay encoded (they cannot change).
    if isinstance(messages, EncodedMessages):
        return messages
    return list(messages or ())


class SegmentError(Exception):
    """Base class of every error raised by simple_segment."""

    _FIELDS: ClassVar[tuple[str, ...]] = ()
    """The names of the ``args`` slots, in the order of the constructor's parameters."""

    def _arg(self, name: str) -> Any:  # noqa: ANN401 - each property says its slot's type
        """Return the ``args`` slot called ``name`` (see :attr:`_FIELDS`)."""
        return self.args[self._FIELDS.index(name)]

    def _set_arg(self, name: str, value: object) -> None:
        """Replace the ``args`` slot called ``name``."""
        args = list(self.args)
        args[self._FIELDS.index(name)] = value
        self.args = tuple(args)


class RetryableError(SegmentError):
    """Marker base: the same messages may be delivered if sent again later.

    Raised errors that derive from it: :class:`ServerError`, :class:`RateLimitError`,
    :class:`NetworkError` and :class:`RetryableBatchDeliveryError`.
    """


class ValidationError(SegmentError, ValueError, AssertionError):
    """An argument cannot become a valid Segment message; nothing was sent.

    ``field`` is the path of the offending value (``"properties.items[2].price"``),
    ``reason`` the rule it broke.
    """

    _FIELDS: ClassVar[tuple[str, ...]] = ("field", "reason")

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)

    @property
    def field(self) -> str:
        """The path of the offending value or option."""
        return str(self._arg("field"))

    @property
    def reason(self) -> str:
        """The rule it broke."""
        return str(self._arg("reason"))

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class MessageTooLargeError(ValidationError, RuntimeError):
    """A serialized message is larger than Segment accepts (32 KB); nothing was sent."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("size", "limit", "field")

    def __init__(self, size: int, limit: int, field: str = "message") -> None:
        Exception.__init__(self, size, limit, field)

    @property
    def size(self) -> int:
        """The serialized size in bytes."""
        return int(self._arg("size"))

    @property
    def limit(self) -> int:
        """The largest size accepted."""
        return int(self._arg("limit"))

    @property
    def field(self) -> str:
        """Which message (``"message"``)."""
        return str(self._arg("field"))

    @property
    def reason(self) -> str:
        """The rule it broke."""
        return f"serialized size {self.size} bytes exceeds the {self.limit} byte limit"


class ConfigurationError(ValidationError):
    """A client option is missing or invalid (write_key, host, timeout, ...)."""


class PlanViolationError(ValidationError):
    """A message breaks the client's tracking plan; nothing was sent for it.

    ``violations`` lists every violation as ``(path, message, rule)`` tuples
    (:class:`simple_segment.plan.Violation`); ``field`` and ``reason`` are the first
    one's path and message; ``str()`` names every path.  Since: 0.2.0
    """

    _FIELDS: ClassVar[tuple[str, ...]] = ("field", "reason", "violations")

    def __init__(self, field: str, reason: str, violations: Sequence[Any] = ()) -> None:
        Exception.__init__(self, field, reason, list(violations))

    @property
    def violations(self) -> list[Any]:
        """Every violation, ``(path, message, rule)`` each (lists again after a JSON round trip)."""
        violations: list[Any] = self._arg("violations")
        return violations

    @property
    def paths(self) -> list[str]:
        """The path of each violation, in order."""
        return [str(violation[0]) for violation in self.violations] or [self.field]

    def __str__(self) -> str:
        listed = [f"{path}: {message} [{rule}]" for path, message, rule in self.violations]
        return f"breaks the tracking plan: {'; '.join(listed) or f'{self.field}: {self.reason}'}"


class DeliveryError(SegmentError):
    """Messages were not delivered.

    ``messages`` lists the message dicts that were not delivered; ``attempts`` is how
    many HTTP attempts were made for them.  ``retryable`` tells whether sending the
    same messages again later may succeed (``isinstance(self, RetryableError)``).
    """

    _FIELDS: ClassVar[tuple[str, ...]] = ("message", "messages", "attempts")

    def __init__(self, message: str, messages: Messages | None = None, attempts: int = 0) -> None:
        super().__init__(message, _listed(messages), attempts)

    def __str__(self) -> str:
        return str(self._arg("message"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, messages=<{len(self.messages)}>, attempts={self.attempts})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Everything is in args; a live HTTP response (``APIError.response``) is not pickled.
        return (type(self), self.args)

    @property
    def retryable(self) -> bool:
        """Whether sending the same messages again later may work."""
        return isinstance(self, RetryableError)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The messages that were not delivered."""
        messages: list[dict[str, Any]] = self._arg("messages")
        return messages

    @messages.setter
    def messages(self, messages: Messages) -> None:
        self._set_arg("messages", _listed(messages))

    @property
    def attempts(self) -> int:
        """How many HTTP attempts were made."""
        return int(self._arg("attempts"))


class APIError(DeliveryError):
    """Segment answered with a status that is not 2xx, and it is not worth retrying.

    Compatible with the official library's ``APIError(status, code, message)`` and its
    ``str()``: ``[Segment] {code}: {message} ({status})``.  ``response`` is the HTTP
    response when there was one (it is neither pickled nor in ``args``); ``headers``
    holds the response headers as a plain dict.
    """

    def __init__(  # noqa: PLR0913 - the official positional signature, then every attribute
        self,
        status: int,
        code: str,
        message: str,
        response: Any = None,  # noqa: ANN401 - an HTTP response; errors import no HTTP library
        headers: dict[str, str] | None = None,
        messages: Messages | None = None,
        attempts: int = 0,
    ) -> None:
        Exception.__init__(self, status, code, message, None, dict(headers or {}), _listed(messages), attempts)
        self.response = response

    # The response slot is always None: a live HTTP response is neither pickled nor sent as JSON.
    _FIELDS: ClassVar[tuple[str, ...]] = ("status", "code", "message", "response", "headers", "messages", "attempts")

    @property
    def status(self) -> int:
        """The HTTP status."""
        return int(self._arg("status"))

    @property
    def code(self) -> str:
        """The ``code`` of Segment's answer (``"unknown"`` when it had none)."""
        return str(self._arg("code"))

    @property
    def message(self) -> str:
        """The ``message`` of Segment's answer, or the body's text."""
        return str(self._arg("message"))

    @property
    def headers(self) -> dict[str, str]:
        """The response headers."""
        headers: dict[str, str] = self._arg("headers")
        return headers

    def __str__(self) -> str:
        return f"[Segment] {self.code}: {self.message} ({self.status})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r}, "
            f"messages=<{len(self.messages)}>, attempts={self.attempts})"
        )


class ServerError(APIError, RetryableError):
    """Segment answered 408 or a retryable 5xx, and retries did not get through."""


class RateLimitError(APIError, RetryableError):
    """Segment answered 429; ``retry_after`` is the wait it asked for in seconds, if any."""

    _FIELDS: ClassVar[tuple[str, ...]] = (
        "status", "code", "message", "response", "headers", "messages", "attempts", "retry_after",
    )

    def __init__(  # noqa: PLR0913 - APIError's signature plus retry_after
        self,
        status: int,
        code: str,
        message: str,
        response: Any = None,  # noqa: ANN401 - an HTTP response; errors import no HTTP library
        headers: dict[str, str] | None = None,
        messages: Messages | None = None,
        attempts: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, message, response, headers, messages, attempts)
        self.args = (*self.args, retry_after)

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait (``Retry-After``), if it said."""
        value = self._arg("retry_after")
        return None if value is None else float(value)


class TokenError(APIError):
    """The OAuth token endpoint refused to issue a token, for good (a bad client, key or scope).

    ``status``, ``code`` (the answer's ``error``) and ``message`` (its
    ``error_description``) say why.  Not retryable: fix the OAuth settings.  A token
    endpoint that fails for a while raises :class:`ServerError`, :class:`RateLimitError`
    or :class:`NetworkError` instead, which are.
    """


class TransportError(DeliveryError):
    """No HTTP answer, and the same request will not get one later.

    A TLS failure (an untrusted certificate), an unusable URL or proxy setting.  The
    underlying exception is chained as ``__cause__``.
    """


class NetworkError(TransportError, RetryableError):
    """No HTTP answer, for a reason that may pass: refused, reset, timed out, DNS, time budget.

    The underlying exception, if any, is chained as ``__cause__``.
    """


class BatchDeliveryError(DeliveryError):
    """A ``batch()`` block could not deliver all of its messages.

    ``unsent`` lists every message of the block that was not delivered, in order: the
    messages of the request that failed and every message added after it (a batch stops
    sending after its first failed request).  Resending exactly these, with the same
    messageIds, completes the block; Segment de-duplicates on messageId.  ``sent`` is the
    number of messages the block delivered before the failure (a count, so a long block
    keeps no copy of what it delivered).  ``__cause__`` is the error of the failed request.
    When that error is retryable, the block raises :class:`RetryableBatchDeliveryError`.
    A raised one's ``unsent`` is an :class:`EncodedMessages`: a read-only list that keeps
    the messages as their JSON bytes and decodes each one when it is read.
    """

    # The unsent messages are DeliveryError's ``messages`` slot.
    _FIELDS: ClassVar[tuple[str, ...]] = ("message", "messages", "attempts", "sent")

    def __init__(self, message: str, unsent: Messages | None = None, attempts: int = 0, sent: int = 0) -> None:
        Exception.__init__(self, message, _listed(unsent), attempts, sent)

    @property
    def unsent(self) -> list[dict[str, Any]]:
        """The messages that were not delivered (the same list as ``messages``)."""
        return self.messages

    @property
    def sent(self) -> int:
        """How many messages the block delivered."""
        return int(self._arg("sent"))


class RetryableBatchDeliveryError(BatchDeliveryError, RetryableError):
    """A ``batch()`` block lost messages to a failure that may pass (a retryable error)."""
