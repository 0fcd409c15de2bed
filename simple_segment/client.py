"""The Client: the official library's API, delivering each call before it returns."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ._batch import Batch
from ._calls import Calls, Result
from ._delivery import Delivery
from ._messages import Message, Properties
from ._oauth import TokenSource
from ._options import BeforeSendHooks, OnError, OnViolation, Options, Timeout, given
from ._transport import HTTPTransport, SystemClock, Transport, without_traceback
from ._version import VERSION
from ._wire import Envelope
from .errors import ConfigurationError
from .plan import TrackingPlan
from .plan._gate import PlanGate

__all__ = ["Client"]

log = logging.getLogger("simple_segment")

USER_AGENT = f"simple_segment/{VERSION}"

_D = Options
"""The defaults (class attributes of :class:`Options`), for the signature below."""


class Client(Calls):
    """A Segment client that delivers every call before returning.

    Accepts every keyword of ``segment.analytics.Client`` in the same order.  The
    queue options ``max_queue_size``, ``sync_mode``, ``thread``, ``upload_size`` and
    ``upload_interval`` are accepted and have no effect: there is no queue and no
    thread.

    OAuth: with ``oauth_client_id``, ``oauth_client_key`` (a PEM RSA private key) and
    ``oauth_key_id`` (and optionally ``oauth_auth_server``, ``oauth_scope``), requests
    carry ``Authorization: Bearer <token>``; the token is fetched inline, within the
    call's budget, and cached.  Needs ``pip install 'simple-segment[oauth]'``; without
    it, or with a key that does not parse, construction raises
    :class:`~simple_segment.ConfigurationError`.

    Delivery: each attempt times out after ``timeout`` seconds (one number or a
    ``(connect, read)`` pair); failed attempts are retried up to ``max_retries`` times
    with exponential backoff and jitter (``backoff_factor``), honouring Retry-After, and
    the whole call, waits included, ends within ``total_timeout`` seconds.
    ``max_total_backoff_duration`` caps the time spent waiting between attempts and
    ``max_rate_limit_duration`` the longest Retry-After wait accepted.

    A failed delivery raises a :class:`~simple_segment.DeliveryError`, or, when
    ``on_error`` is given (any falsy value means none, as in the official library),
    calls ``on_error(exception, messages)`` and returns ``(False, msg)``.  With
    ``send=False`` (or ``stub=True``) messages are validated and built but nothing is
    sent.  ``before_send(msg)`` sees every message after validation and returns it
    (possibly changed) or None to drop it; a dropped message's call returns
    ``(False, msg)``.  ``before_send`` may also be a list of hooks (since 0.2.0), run in
    order, each given what the previous one returned; a drop ends the chain.

    ``transport`` replaces the network for tests: each request (the token requests of
    OAuth too) goes to it, for example a :class:`simple_segment.testing.MockTransport`,
    below the retries, the deadline and the error mapping, which work as they do over
    the network; waits and deadlines use its clock.  It is not an option (not in
    :attr:`options`, not a module setting): proxies and ``verify`` do not apply to it.

    ``tracking_plan`` (a :class:`simple_segment.plan.TrackingPlan`, or the path of
    its JSON) checks every message as it would be sent, after ``before_send``;
    ``on_violation`` says what a message that breaks it does: ``"raise"`` (the
    default) raises :class:`~simple_segment.PlanViolationError` at the call, nothing
    sent; ``"drop"`` sends nothing, the call returns ``(False, msg)``, and
    :attr:`violations_dropped` counts it (logged at DEBUG); ``"warn"`` logs a WARNING
    and sends; ``"send"`` does not check.

    ``verify`` is True (check TLS certificates), False, or the path of a CA bundle.
    Proxy variables (``HTTPS_PROXY``, ``NO_PROXY``...) and ``REQUESTS_CA_BUNDLE`` are
    read once, when the client is made.

    Options are validated here (:class:`~simple_segment.ConfigurationError` names a bad
    one) and are read-only afterwards: make a new client to change them.  A client may
    be shared by threads and survives ``os.fork()``: the child opens its own
    connections.
    """

    DefaultConfig = Options
    """The defaults, under the official name: ``Client.DefaultConfig.timeout`` and so on."""

    log = log
    """The library's logger (``logging.getLogger("simple_segment")``), as the official ``Client.log``."""

    consumers = None
    """Always None: there are no consumer threads (the official sync mode's value)."""

    def __init__(  # noqa: PLR0913 - the official signature, plus keyword-only extras
        self,
        write_key: str | None = _D.write_key,
        host: str | None = _D.host,
        debug: bool = _D.debug,  # noqa: FBT001 - official positional signature
        max_queue_size: int = _D.max_queue_size,
        send: bool = _D.send,  # noqa: FBT001
        on_error: OnError | None = _D.on_error,
        gzip: bool = _D.gzip,  # noqa: FBT001
        max_retries: int | None = _D.max_retries,
        sync_mode: bool = _D.sync_mode,  # noqa: FBT001
        timeout: Timeout | tuple[float, None] | None = _D.timeout,
        proxies: Mapping[str, str | None] | None = _D.proxies,
        thread: int = _D.thread,
        upload_size: int = _D.upload_size,
        upload_interval: float = _D.upload_interval,
        log_handler: logging.Handler | None = _D.log_handler,
        oauth_client_id: str | None = _D.oauth_client_id,
        oauth_client_key: str | None = _D.oauth_client_key,
        oauth_key_id: str | None = _D.oauth_key_id,
        oauth_auth_server: str = _D.oauth_auth_server,
        oauth_scope: str = _D.oauth_scope,
        max_total_backoff_duration: float = _D.max_total_backoff_duration,
        max_rate_limit_duration: float = _D.max_rate_limit_duration,
        *,
        total_timeout: float | None = None,
        backoff_factor: float = _D.backoff_factor,
        verify: bool | str = _D.verify,
        before_send: BeforeSendHooks = _D.before_send,
        tracking_plan: TrackingPlan | str | None = _D.tracking_plan,
        on_violation: OnViolation = _D.on_violation,
        stub: bool = False,
        transport: HTTPTransport | None = None,
    ) -> None:
        try:
            if not isinstance(stub, bool):
                raise ConfigurationError("stub", f"must be True or False, not {type(stub).__name__}")  # noqa: TRY301
            options = Options(
                write_key=write_key,
                host=host,
                debug=debug,
                max_queue_size=max_queue_size,
                send=send and not stub if isinstance(send, bool) else send,  # a bad send is still refused
                on_error=on_error,
                gzip=gzip,
                sync_mode=sync_mode,
                proxies=proxies,
                thread=thread,
                upload_size=upload_size,
                upload_interval=upload_interval,
                log_handler=log_handler,
                oauth_client_id=oauth_client_id,
                oauth_client_key=oauth_client_key,
                oauth_key_id=oauth_key_id,
                oauth_auth_server=oauth_auth_server,
                oauth_scope=oauth_scope,
                max_total_backoff_duration=max_total_backoff_duration,
                max_rate_limit_duration=max_rate_limit_duration,
                **given(timeout=timeout, total_timeout=total_timeout, max_retries=max_retries),
                backoff_factor=backoff_factor,
                verify=verify,
                before_send=before_send,
                tracking_plan=tracking_plan,  # type: ignore[arg-type] # a path is loaded by Options
                on_violation=on_violation,
            )
            clock = (transport.clock if transport is not None else None) or SystemClock()
            tokens = TokenSource(options, clock=clock, user_agent=USER_AGENT, seam=transport) if options.oauth else None
            # Made now, so proxy and CA variables are read when the client is (documented).
            http = Transport(options, user_agent=USER_AGENT, clock=clock, authorization=tokens, seam=transport)
        except ConfigurationError as exc:
            error: ConfigurationError | None = exc
        else:
            error = None
        if error is not None:
            # Error reporters record every frame's locals: the frames below this one (and this
            # one's secrets) must not reach them with the write key or the private key.
            del write_key, oauth_client_key, proxies
            raise error.with_traceback(None) from without_traceback(error.__cause__)
        self._options = options
        self._transport = http
        plan, mode = options.tracking_plan, options.on_violation
        self._plan_gate = None if plan is None or mode == "send" else PlanGate(plan, mode)
        self._delivery = Delivery(
            envelope=Envelope(options.write_key or ""),
            transport=http,
            send=options.send,
            on_error=options.on_error,
            before_send=options.before_send,
            plan_gate=self._plan_gate,
        )
        self._emit = self._delivery.emit  # type: ignore[method-assign]
        _configure_logging(options)

    # -- the official attributes, read-only -------------------------------------------

    @property
    def options(self) -> Options:
        """Every option of this client, validated (read-only)."""
        return self._options

    @property
    def write_key(self) -> str:
        """The source's write key (never shown by ``repr``, logs or errors)."""
        return self._options.write_key or ""

    @property
    def host(self) -> str:
        """The base URL requests go to, e.g. ``https://api.segment.io``."""
        return self._options.host or ""

    @property
    def url(self) -> str:
        """Where batches are posted: ``{host}/v1/batch``."""
        return self._options.url

    @property
    def on_error(self) -> OnError | None:
        """``on_error(exception, messages)``, or None (errors are raised)."""
        return self._options.on_error

    @property
    def before_send(self) -> BeforeSendHooks:
        """``before_send(msg)``, the tuple of hooks run in order when a list was given, or None."""
        return self._options.before_send

    @property
    def tracking_plan(self) -> TrackingPlan | None:
        """The tracking plan messages are checked against, or None.

        Since: 0.2.0
        """
        return self._options.tracking_plan

    @property
    def on_violation(self) -> OnViolation:
        """What a message that breaks the plan does: raise, drop, warn or send.

        Since: 0.2.0
        """
        return self._options.on_violation

    @property
    def violations_dropped(self) -> int:
        """Messages not sent because they broke the plan (``on_violation="drop"``).

        Since: 0.2.0
        """
        gate = self._plan_gate
        return 0 if gate is None else gate.dropped

    @property
    def debug(self) -> bool:
        """Whether debug logging was switched on."""
        return self._options.debug

    @property
    def send(self) -> bool:
        """False when messages are built and validated but not sent."""
        return self._options.send

    @property
    def sync_mode(self) -> bool:
        """As given; every call is synchronous whatever its value."""
        return self._options.sync_mode

    @property
    def gzip(self) -> bool:
        """Whether request bodies are gzip-compressed."""
        return self._options.gzip

    @property
    def timeout(self) -> Timeout:
        """Seconds per attempt: a number or a ``(connect, read)`` pair."""
        return self._options.timeout

    @property
    def total_timeout(self) -> float:
        """Seconds for a whole call, every attempt and wait included."""
        return self._options.total_timeout

    @property
    def proxies(self) -> dict[str, str | None] | None:
        """The proxies given (the environment's are also honoured)."""
        proxies = self._options.proxies
        return None if proxies is None else dict(proxies)

    @property
    def max_retries(self) -> int:
        """Retries after a failed attempt."""
        return self._options.max_retries

    @property
    def max_total_backoff_duration(self) -> float:
        """Cap on the total time spent waiting between attempts."""
        return self._options.max_total_backoff_duration

    @property
    def max_rate_limit_duration(self) -> float:
        """The longest Retry-After wait accepted."""
        return self._options.max_rate_limit_duration

    @property
    def max_queue_size(self) -> int:
        """As given; there is no queue."""
        return self._options.max_queue_size

    def __repr__(self) -> str:
        options = getattr(self, "_options", None)  # safe on a client whose construction failed
        if options is None:
            return "<simple_segment.Client (not configured)>"
        return f"<simple_segment.Client host={options.host!r} send={options.send}>"

    # -- sending --------------------------------------------------------------------

    def _emit(self, msg: Message) -> Result:  # replaced per instance by the delivery's own emit (one call less)
        return self._delivery.emit(msg)

    def batch(self, context: Properties | None = None, integrations: Properties | None = None) -> Batch:
        """Return a batch: ``with client.batch() as batch:`` posts its calls together.

        ``context`` and ``integrations`` apply to every message of the batch, under
        the message's own values (a key the message sets wins).  See
        :class:`~simple_segment.Batch`.
        """
        return Batch(self._delivery, context=context, integrations=integrations)

    # -- the official lifecycle -----------------------------------------------------

    def flush(self) -> None:
        """Do nothing: every call was delivered before it returned.  Never fails."""

    def join(self) -> None:
        """Do nothing: there is no consumer thread to wait for.  Never fails."""

    def shutdown(self) -> None:
        """Release pooled connections (same as :meth:`close`).  Never fails."""
        self.close()

    def close(self) -> None:
        """Close pooled connections.  The client stays usable and reconnects on use."""
        try:
            self._transport.close()
        except Exception:
            log.debug("error while closing connections", exc_info=True)

    def __enter__(self) -> Client:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _configure_logging(options: Options) -> None:
    handler = options.log_handler
    if handler is not None and handler not in log.handlers:
        log.addHandler(handler)
    if options.debug:
        log.setLevel(logging.DEBUG)
        if handler is None and not log.handlers:
            log.addHandler(logging.StreamHandler())
