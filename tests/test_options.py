"""Options: defined once, validated at construction, read-only afterwards; module settings."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from conftest import WRITE_KEY

import simple_segment
from simple_segment import Client, ConfigurationError, Options
from simple_segment._cli import _build_parser
from simple_segment.testing import FakeSegment

NAN = float("nan")


def test_defaults_are_defined_once_and_read_everywhere() -> None:
    """Client's signature, the module settings, DefaultConfig and the CLI all show Options' defaults."""
    import inspect

    signature = inspect.signature(Client)
    for field in dataclasses.fields(Options):
        # total_timeout not given (None) is the default, or one full attempt if longer.
        default = None if field.name == "total_timeout" else field.default
        assert signature.parameters[field.name].default == default, field.name
        assert getattr(simple_segment, field.name) == default, field.name
        assert getattr(Client.DefaultConfig, field.name) == field.default, field.name
    assert Client("k").total_timeout == Options.total_timeout
    args = _build_parser().parse_args(["track", "--user-id", "u", "--event", "E"])
    assert (args.timeout, args.max_retries) == (Options.timeout, Options.max_retries)


def test_official_default_config_names() -> None:
    """Client.DefaultConfig has every name the official one has."""
    official = [
        "write_key", "host", "on_error", "debug", "log_handler", "send", "sync_mode", "max_queue_size", "gzip",
        "timeout", "max_retries", "max_total_backoff_duration", "max_rate_limit_duration", "proxies", "thread",
        "upload_interval", "upload_size", "oauth_client_id", "oauth_client_key", "oauth_key_id",
        "oauth_auth_server", "oauth_scope",
    ]
    for name in official:
        assert hasattr(Client.DefaultConfig, name), name


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"write_key": None}, "write_key"),
        ({"write_key": "   "}, "write_key"),
        ({"write_key": "ke\ny"}, "write_key"),
        ({"write_key": "key\ud800"}, "write_key"),
        ({"write_key": "ke\x00y"}, "write_key"),
        ({"timeout": NAN}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": (1, NAN)}, "timeout"),
        ({"timeout": (1, 2, 3)}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"total_timeout": NAN}, "total_timeout"),
        ({"backoff_factor": NAN}, "backoff_factor"),
        ({"backoff_factor": -1}, "backoff_factor"),
        ({"max_total_backoff_duration": NAN}, "max_total_backoff_duration"),
        ({"max_rate_limit_duration": float("inf")}, "max_rate_limit_duration"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"host": "http://[::1"}, "host"),
        ({"host": "https://api.segment.io:http"}, "host"),
        ({"host": "https://api.segment.io:99999"}, "host"),
        ({"host": "https://api.segment.io:0"}, "host"),
        ({"host": "https://api segment.io"}, "host"),
        ({"host": "https://user:password@api.segment.io"}, "host"),
        ({"host": "ftp://api.segment.io"}, "host"),
        ({"host": "https://api.segment.io/?q=1"}, "host"),
        ({"host": ""}, "host"),
        ({"on_error": "log"}, "on_error"),
        ({"before_send": 42}, "before_send"),
        ({"proxies": ["http://proxy"]}, "proxies"),
        ({"verify": ""}, "verify"),
    ],
)
def test_bad_options_fail_at_construction(options: dict, field: str) -> None:
    """Every bad option is a ConfigurationError naming it, raised when the client is made."""
    arguments = {"write_key": WRITE_KEY, **options}
    with pytest.raises(ConfigurationError) as info:
        Client(**arguments)
    assert info.value.field == field


def test_credentials_in_a_host_are_never_echoed(caplog: pytest.LogCaptureFixture) -> None:
    """A host with user-info is refused without showing the password anywhere."""
    with pytest.raises(ConfigurationError) as info:
        Client(WRITE_KEY, host="http://user:s3cret@example.com")
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize("value", [False, 0, "", None])
def test_falsy_on_error_means_none(value: object, fake_segment: FakeSegment) -> None:
    """As in the official library, any falsy on_error means errors are raised."""
    client = Client(WRITE_KEY, host=fake_segment.url, on_error=value, max_retries=0)  # type: ignore[arg-type]
    assert client.on_error is None
    fake_segment.respond_with(400)
    with pytest.raises(simple_segment.APIError):
        client.track("u", "E")


def test_attributes_are_read_only() -> None:
    """Options are read-only on a client: assigning one raises instead of silently doing nothing."""
    client = Client(WRITE_KEY, host="https://events.eu1.segmentapis.com", gzip=True, timeout=(2, 7))
    assert (client.host, client.gzip, client.timeout) == ("https://events.eu1.segmentapis.com", True, (2.0, 7.0))
    assert client.url == "https://events.eu1.segmentapis.com/v1/batch"
    for name in ("host", "gzip", "timeout", "write_key", "send", "on_error", "debug", "proxies", "max_retries"):
        with pytest.raises(AttributeError):
            setattr(client, name, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        client.options.gzip = False  # type: ignore[misc]


def test_official_attributes() -> None:
    """The attributes the official client exposes are here, with our values."""
    client = Client(WRITE_KEY, sync_mode=True, max_queue_size=5, proxies={"https": "http://proxy:3128"})
    assert client.sync_mode is True
    assert client.consumers is None
    assert client.max_queue_size == 5
    assert client.proxies == {"https": "http://proxy:3128"}
    assert client.max_total_backoff_duration == Options.max_total_backoff_duration
    assert client.max_rate_limit_duration == Options.max_rate_limit_duration
    assert isinstance(client.log, logging.Logger)
    assert WRITE_KEY not in repr(client)
    assert WRITE_KEY not in repr(client.options)


def test_misspelt_module_setting_raises() -> None:
    """Assigning a name that is not a setting is an error, with a suggestion."""
    with pytest.raises(AttributeError, match="did you mean 'write_key'"):
        simple_segment.writekey = "x"  # type: ignore[attr-defined]
    assert not hasattr(simple_segment, "writekey")
    simple_segment._private_note = 1  # private names and submodules stay assignable
    del simple_segment._private_note


def test_assigning_an_equal_setting_keeps_the_default_client(fake_segment: FakeSegment) -> None:
    """Settings compare by equality: re-assigning the same value keeps the client and its connections."""
    simple_segment.write_key = WRITE_KEY
    simple_segment.host = fake_segment.url
    for _ in range(20):
        simple_segment.host = "".join(list(fake_segment.url))  # an equal, not identical, string
        simple_segment.write_key = "".join(WRITE_KEY)
        simple_segment.track("u", "E")
    assert fake_segment.connections_accepted == 1
    first = simple_segment.default_client
    simple_segment.gzip = True
    simple_segment.track("u", "E")
    assert simple_segment.default_client is not first
    assert len(fake_segment.messages) == 21


def test_every_option_is_a_module_setting(fake_segment: FakeSegment) -> None:
    """Module settings reach the default client (before_send and total_timeout included)."""
    simple_segment.write_key = WRITE_KEY
    simple_segment.host = fake_segment.url
    simple_segment.total_timeout = 7
    simple_segment.before_send = lambda msg: {**msg, "properties": {"scrubbed": True}}
    _, msg = simple_segment.track("u", "E", {"email": "a@b.c"})
    assert simple_segment.default_client is not None
    assert simple_segment.default_client.total_timeout == 7
    assert fake_segment.messages[0]["properties"] == {"scrubbed": True}
    assert msg["properties"] == {"scrubbed": True}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"host": "https://exa..mple.com"}, "host"),
        ({"host": "https://" + "a" * 64 + ".example.com"}, "host"),
        ({"verify": "/nonexistent/ca.pem"}, "verify"),
        ({"oauth_auth_server": "ftp://auth"}, "oauth_auth_server"),
    ],
)
def test_more_bad_options_fail_at_construction(options: dict, field: str) -> None:
    """Host names with empty or over-long labels, a CA bundle that is not there: ConfigurationError at once."""
    with pytest.raises(ConfigurationError) as info:
        Client(WRITE_KEY, **options)
    assert info.value.field == field


def test_a_missing_ca_bundle_from_the_environment_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    """REQUESTS_CA_BUNDLE naming a missing file is a ConfigurationError, not a NetworkError retried for ever."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    with pytest.raises(ConfigurationError) as info:
        Client(WRITE_KEY)
    assert info.value.field == "verify"


def test_secrets_are_not_in_the_locals_of_a_construction_error() -> None:
    """A ConfigurationError from Client(...) shows neither the write key nor the private key in any frame's locals."""
    import traceback

    def construct() -> BaseException:
        try:
            Client("wk_CONSTRUCT_SECRET", host="ftp://x", oauth_client_key="PRIVATE_KEY_SECRET")
        except ConfigurationError as exc:
            return exc
        raise AssertionError("expected ConfigurationError")

    error = construct()
    exception: traceback.TracebackException | None = traceback.TracebackException.from_exception(
        error, capture_locals=True
    )
    shown = []
    while exception is not None:  # the error and its chain: every frame's locals, as reporters record them
        shown += [value for frame in exception.stack for value in (frame.locals or {}).values()]
        exception = exception.__cause__ or exception.__context__
    assert shown, "no frame locals were captured"
    assert not [value for value in shown if "CONSTRUCT_SECRET" in value or "PRIVATE_KEY_SECRET" in value]


def test_proxy_credentials_are_not_shown() -> None:
    """A proxy URL's password does not appear in repr(client.options)."""
    client = Client(WRITE_KEY, proxies={"https": "http://user:pr0xy-pass@proxy.example:3128"})
    assert "pr0xy-pass" not in repr(client.options)
    assert "proxy.example:3128" in repr(client.options)


def test_equal_settings_of_another_type_keep_the_default_client(fake_segment: FakeSegment) -> None:
    """timeout = 15 after 15.0 is the same setting: the default client is kept."""
    simple_segment.write_key = WRITE_KEY
    simple_segment.host = fake_segment.url
    simple_segment.track("u", "E")
    first = simple_segment.default_client
    simple_segment.timeout = 15
    simple_segment.track("u", "E")
    assert simple_segment.default_client is first


def test_threads_build_one_default_client(fake_segment: FakeSegment) -> None:
    """Eight threads making their first module-level call at once share one default client."""
    import threading

    simple_segment.write_key = WRITE_KEY
    simple_segment.host = fake_segment.url
    seen: list[object] = []
    barrier = threading.Barrier(8)

    def first_call() -> None:
        barrier.wait(10)
        simple_segment.track("u", "E")
        seen.append(simple_segment.default_client)

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(seen) == 8
    assert len({id(client) for client in seen}) == 1


# -- the spellings the official client (requests) accepts ---------------------------


def test_timeout_none_gives_an_attempt_the_whole_budget(fake_segment: FakeSegment) -> None:
    client = Client(WRITE_KEY, host=fake_segment.url, timeout=None, total_timeout=9)
    assert client.timeout == 9
    assert client.track("u", "E")[0] is True
    pair = Client(WRITE_KEY, host=fake_segment.url, timeout=(2, None), total_timeout=9)
    assert pair.timeout == (2, 9)
    assert pair.track("u", "E")[0] is True
    assert len(fake_segment.messages) == 2


@pytest.mark.parametrize(
    ("timeout", "total"),
    [(60, 60), ((10, 50), 60), (5, Options.total_timeout), (None, Options.total_timeout)],
)
def test_a_timeout_given_without_total_timeout_fits_one_full_attempt(timeout: object, total: float) -> None:
    assert Client(WRITE_KEY, timeout=timeout).total_timeout == total  # type: ignore[arg-type]


def test_an_explicit_total_timeout_still_wins() -> None:
    assert Client(WRITE_KEY, timeout=60, total_timeout=10).total_timeout == 10


def test_a_module_timeout_setting_fits_one_full_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simple_segment, "write_key", WRITE_KEY)
    monkeypatch.setattr(simple_segment, "send", False)
    monkeypatch.setattr(simple_segment, "timeout", 45)
    simple_segment.track("u", "E")
    assert simple_segment.default_client is not None
    assert simple_segment.default_client.total_timeout == 45


def test_max_retries_none_means_the_default() -> None:
    assert Client(WRITE_KEY, max_retries=None).max_retries == Options.max_retries


def test_a_proxy_of_none_means_no_proxy_for_that_scheme(fake_segment: FakeSegment, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests' idiom: {"http": None} turns off the environment's proxy for http."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = Client(WRITE_KEY, host=fake_segment.url, max_retries=0, total_timeout=5)
    with pytest.raises(simple_segment.NetworkError):
        proxied.track("u", "E")
    direct = Client(WRITE_KEY, host=fake_segment.url, proxies={"http": None}, max_retries=0, total_timeout=5)
    assert direct.track("u", "E")[0] is True
    assert len(fake_segment.messages) == 1


def test_a_write_key_read_from_a_secret_file_loses_its_newline(fake_segment: FakeSegment) -> None:
    client = Client(f"  {WRITE_KEY}\n", host=fake_segment.url)
    assert client.write_key == WRITE_KEY
    assert client.track("u", "E")[0] is True
    assert fake_segment.requests[0].write_key == WRITE_KEY


@pytest.mark.parametrize("name", ["timeout", "total_timeout", "max_total_backoff_duration", "max_rate_limit_duration"])
@pytest.mark.parametrize("value", [1e10, 10**400])
def test_huge_durations_are_configuration_errors(name: str, value: float) -> None:
    """Sockets and sleeps cannot wait that long: an OverflowError at every call is refused up front."""
    with pytest.raises(ConfigurationError, match=name):
        Client(WRITE_KEY, **{name: value})


@pytest.mark.parametrize("name", ["debug", "send", "gzip", "sync_mode"])
@pytest.mark.parametrize("value", ["false", "no", None, 2, 1.0, [False]])
def test_switches_must_be_bools(name: str, value: object) -> None:
    """send="false" used to send: a switch that is not a bool is refused, not guessed."""
    with pytest.raises(ConfigurationError, match=f"{name}: must be True or False"):
        Client(WRITE_KEY, **{name: value})


@pytest.mark.parametrize("value", [True, False, 0, 1])
def test_switches_take_bools_and_zero_or_one(value: int) -> None:
    assert Client(WRITE_KEY, send=value).send is bool(value)


def test_stub_turns_sending_off_and_still_checks_send() -> None:
    assert Client(WRITE_KEY, stub=True).send is False
    with pytest.raises(ConfigurationError, match="send"):
        Client(WRITE_KEY, send="yes", stub=True)  # type: ignore[arg-type]
