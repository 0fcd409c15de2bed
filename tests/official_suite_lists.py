"""How each test of the official segment-analytics-python 2.4.0 suite applies to simple_segment.

Read by ``tests/test_official_suite.py``, which runs the official tests themselves
(from the installed wheel's ``segment/analytics/test/``) against simple_segment.
Test ids are ``file::Class::method`` as pytest names them in the official package.

- :data:`NOT_APPLICABLE`: the test's subject does not exist by design in a synchronous
  client: the queue, the consumer thread, or an internal helper module of the official
  library.  Each is skipped, with its reason, and counted.
- :data:`EXPECTED_DIFFERENCES`: the test fails because of a deliberate difference that
  the README documents.  Each names the README text it relies on (checked to be in
  README.md) and a pattern the failure must match; it runs as a strict xfail, so a
  difference that goes away is noticed.
- Every other official test is applicable and must pass.  A real incompatibility is
  never listed here: its test stays a plain test and fails until the client is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

from simple_segment import ConfigurationError

OFFICIAL_DISTRIBUTION = "segment-analytics-python"
OFFICIAL_VERSION = "2.4.0"
OFFICIAL_TEST_COUNT = 140

# -- not applicable --------------------------------------------------------------------

_QUEUE = (
    "n/a: asserts on the client's queue (client.queue, a full queue returning (False, msg)); "
    "there is no queue by design: every call is delivered before it returns"
)
_CONSUMERS = (
    "n/a: reads a setting off client.consumers (each consumer thread's timeout, retries, "
    "rate-limit budget); there are no consumer threads by design"
)
_UPLOAD_BATCHING = (
    "n/a: tests how the consumer thread groups queued messages into uploads "
    "(upload_size/upload_interval, patches segment.analytics.consumer.post); no thread by design"
)
_CONSUMER = (
    "n/a: tests segment.analytics.consumer.Consumer (the upload thread: batching, retry, backoff "
    "and rate-limit state); there is no thread by design, retries happen inside the call"
)
_CONSTANTS = "n/a: compares internal constants of the official consumer and request modules"
_REQUEST = (
    "n/a: calls segment.analytics.request internals (post, parse_retry_after, DatetimeSerializer); "
    "simple_segment's transport is private, with its own interface"
)
_UTILS = "n/a: tests segment.analytics.utils internals (clean, guess_timezone, remove_trailing_slash)"
_OAUTH_MANAGER = "n/a: tests segment.analytics.oauth_manager.OauthManager and its refresh thread"

_CONSUMER_TESTS = (
    "test_next",
    "test_next_limit",
    "test_dropping_oversize_msg",
    "test_upload",
    "test_upload_interval",
    "test_multiple_uploads_per_interval",
    "test_request",
    "test_request_retry",
    "test_pause",
    "test_max_batch_size",
    "test_proxies",
    "test_retry_count_header_increments",
    "test_non_retryable_4xx_status_codes",
    "test_retryable_4xx_status_codes",
    "test_non_retryable_5xx_status_codes",
    "test_retryable_5xx_status_codes",
    "test_429_sets_rate_limit_state_with_retry_after",
    "test_retry_after_capped_at_max_retry_after_seconds",
    "test_a_wait_that_will_not_fit_the_budget_drops_instead_of_shortening",
    "test_a_wait_that_fits_the_budget_is_honoured_in_full",
    "test_408_and_503_without_retry_after_use_backoff",
    "test_503_with_retry_after_sets_rate_limit_state",
    "test_529_with_retry_after_sets_rate_limit_state",
    "test_stale_rate_limit_state_does_not_misroute_later_errors",
    "test_rate_limit_wait_is_interruptible",
    "test_shutdown_during_backoff_requeues_instead_of_dropping",
    "test_exponential_backoff_with_jitter",
    "test_fatal_error_not_retried",
    "test_max_retries_exhausted",
    "test_first_request_has_retry_count_zero",
    "test_429_without_retry_after_uses_counted_backoff",
    "test_408_without_retry_after_uses_backoff",
    "test_network_error_retried_with_backoff",
    "test_511_not_retryable_without_oauth",
    "test_511_retryable_with_oauth",
    "test_429_with_retry_after_does_not_count_against_backoff_budget",
    "test_413_payload_too_large_not_retried",
    "test_t04_429_halts_upload_iteration",
    "test_429_without_retry_after_does_not_requeue_batch",
    "test_retry_after_zero_uses_counted_backoff",
    "test_t19_max_total_backoff_duration",
    "test_t20_max_rate_limit_duration",
    "test_rate_limit_state_cleared_on_success",
    "test_retry_after_zero_does_not_trigger_pipeline_blocking",
    "test_queue_full_during_429_requeue_calls_on_error",
    "test_max_total_backoff_duration_zero_prevents_retry",
    "test_410_and_460_retried",
    "test_505_not_retried",
    "test_retries_exhausted_calls_on_error",
    "test_non_rate_limited_failure_ends_the_episode",
    "test_batch_after_an_ended_episode_is_still_sent",
)

_REQUEST_TESTS = (
    "test_valid_request",
    "test_invalid_request_error",
    "test_invalid_host",
    "test_datetime_serialization",
    "test_date_serialization",
    "test_should_not_timeout",
    "test_should_timeout",
    "test_proxies",
    "test_authorization_header_basic_auth",
    "test_authorization_header_oauth",
    "test_x_retry_count_header",
    "test_non_200_2xx_treated_as_success",
    "test_3xx_is_not_success",
    "test_parse_retry_after_integer",
    "test_parse_retry_after_capped",
    "test_parse_retry_after_missing",
    "test_parse_retry_after_invalid",
    "test_parse_retry_after_http_date_future",
    "test_parse_retry_after_http_date_past",
    "test_oauth_token_cleared_on_511",
    "test_api_error_includes_response",
)

_UTILS_TESTS = (
    "test_timezone_utils",
    "test_clean",
    "test_clean_with_dates",
    "test_bytes",
    "test_clean_fn",
    "test_remove_slash",
)

_OAUTH_MANAGER_TESTS = (
    "test_oauth_success",
    "test_oauth_fail_unrecoverably",
    "test_oauth_fail_with_retries",
    "test_oauth_rate_limit_delay",
)

NOT_APPLICABLE: dict[str, str] = {
    "test_client.py::TestClient::test_flush": _QUEUE,
    "test_client.py::TestClient::test_shutdown": _QUEUE,
    "test_client.py::TestClient::test_synchronous": _QUEUE,
    "test_client.py::TestClient::test_overflow": _QUEUE,
    "test_client.py::TestClient::test_queue_full_returns_false": _QUEUE,
    "test_client.py::TestClient::test_queue_full_does_not_raise": _QUEUE,
    "test_client.py::TestClient::test_user_defined_upload_size": _UPLOAD_BATCHING,
    "test_client.py::TestClient::test_user_defined_timeout": _CONSUMERS,
    "test_client.py::TestClient::test_default_timeout_15": _CONSUMERS,
    "test_init.py::TestInit::test_max_queue_size": _QUEUE,
    "test_init.py::TestInit::test_max_retries": _CONSUMERS,
    "test_consumer.py::TestConsumer::test_client_defaults_to_the_documented_rate_limit_budget": _CONSUMERS,
    "test_consumer.py::TestConsumer::test_default_rate_limit_budget_exceeds_the_retry_after_cap": _CONSTANTS,
    "test_consumer.py::TestConsumer::test_parse_retry_after_http_date_in_past_returns_none": _REQUEST,
    **{f"test_consumer.py::TestConsumer::{name}": _CONSUMER for name in _CONSUMER_TESTS},
    **{f"test_request.py::TestRequests::{name}": _REQUEST for name in _REQUEST_TESTS},
    "test_request.py::TestNonObjectErrorBody::test_non_object_json_body_raises_apierror_not_typeerror": _REQUEST,
    **{f"test_utils.py::TestUtils::{name}": _UTILS for name in _UTILS_TESTS},
    **{f"test_oauth.py::TestOauthManager::{name}": _OAUTH_MANAGER for name in _OAUTH_MANAGER_TESTS},
}

# -- expected differences --------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """A documented, deliberate difference that makes an official test fail."""

    readme: tuple[str, ...]
    """README.md text (verbatim, whitespace aside) that documents the difference."""
    evidence: str
    """Regular expression the official test's failure message must match."""
    raises: type[BaseException] | None = None
    """What the test raises instead of failing an assertion, if that is the difference."""


# README "Deliberate differences from the official library", verbatim.
_MILLISECONDS = "datetimes are written with milliseconds and an offset"
_LIBRARY = '`context.library` is `{"name": "simple_segment", "version": ...}`'
_OAUTH_KEY = "a private key that does not parse is a `ConfigurationError` when the client is made"
# README "Quickstart": what a call returns.
_WIRE_MSG = "returns `(True, msg)`, where `msg` is the dict that went on the wire"

# The advanced_* tests give datetime(2014, 9, 3) and expect "2014-09-03T00:00:00+00:00"
# (checked first), then context.library == analytics-python (checked later).
_ADVANCED = Difference(
    readme=(_MILLISECONDS, _LIBRARY),
    evidence=(
        r"'2014-09-03T00:00:00\.000\+00:00' != '2014-09-03T00:00:00\+00:00'"
        r"|\{'name': 'simple_segment', 'version': '[^']*'\} != \{'name': 'analytics-python'"
    ),
)

EXPECTED_DIFFERENCES: dict[str, Difference] = {
    "test_client.py::TestClient::test_advanced_track": _ADVANCED,
    "test_client.py::TestClient::test_advanced_identify": _ADVANCED,
    "test_client.py::TestClient::test_advanced_group": _ADVANCED,
    "test_client.py::TestClient::test_advanced_page": _ADVANCED,
    "test_client.py::TestClient::test_advanced_screen": _ADVANCED,
    # traits {"birthdate": date(1981, 2, 2)} come back as the wire value "1981-02-02".
    "test_client.py::TestClient::test_identify_with_date_object": Difference(
        readme=(_WIRE_MSG,),
        evidence=r"\{'birthdate': '1981-02-02'\} != \{'birthdate': datetime\.date\(1981, 2, 2\)\}",
    ),
    # Client(..., oauth_client_key="badkey") raises at once; the official reports it to on_error on the first call.
    "test_oauth.py::TestOauthIntegration::test_oauth_integration_fail_bad_key": Difference(
        readme=(_OAUTH_KEY,),
        evidence=r"oauth_client_key: is not a PEM-encoded RSA private key",
        raises=ConfigurationError,
    ),
}
