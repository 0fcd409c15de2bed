"""The official segment-analytics-python 2.4.0 test suite, run against simple_segment.

The official tests are read from the installed wheel (``segment/analytics/test/``),
compiled and executed in fresh modules whose ``__import__`` answers
``segment.analytics`` with ``simple_segment`` (see :func:`_redirecting_import`); the
real ``segment.analytics`` stays importable and untouched for the rest of the process.
Each official test becomes one ``test_official[...]`` case here, classified by
``tests/official_suite_lists.py``: not applicable (skipped with its reason), expected
difference (strict xfail naming the README text) or applicable (must pass).  The
counts are printed at the end of the run (``pytest_terminal_summary`` in conftest.py).
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib.metadata
import importlib.resources
import json
import logging
import re
import sys
import types
import unittest
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
import urllib3
from official_suite_lists import (
    EXPECTED_DIFFERENCES,
    NOT_APPLICABLE,
    OFFICIAL_DISTRIBUTION,
    OFFICIAL_TEST_COUNT,
    OFFICIAL_VERSION,
)

import simple_segment
import simple_segment._options
from simple_segment import SegmentError
from simple_segment._transport import Answer, Endpoint
from simple_segment.testing import FakeSegment

OFFICIAL_TESTS_PACKAGE = "segment.analytics.test"
README = Path(__file__).resolve().parents[1] / "README.md"


class NoEquivalentError(LookupError):
    """An official test used a name simple_segment has no equivalent of."""


class OfficialAssertionError(AssertionError):
    """An assertion written in the official test failed (not an error of the code under test)."""


class UnexplainedFailureError(Exception):
    """An expected-difference test failed, but not because of the documented difference."""


# -- what the official imports become ------------------------------------------------


class _NoEquivalent:
    """Stands for an official name simple_segment lacks; calling it or its attributes fails."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"<no simple_segment equivalent of {self._name}>"

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise NoEquivalentError(f"{self._name} has no simple_segment equivalent")

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise NoEquivalentError(f"{self._name}.{attr} has no simple_segment equivalent")


# The names the official tests import from the library's submodules, where
# simple_segment has an equivalent.  Any other name imported from segment.analytics.*
# is a _NoEquivalent (used only by not-applicable tests).
EQUIVALENTS: dict[str, dict[str, object]] = {
    "segment.analytics.client": {"Client": simple_segment.Client},
    "segment.analytics.version": {"VERSION": simple_segment.VERSION},
    "segment.analytics.request": {"APIError": simple_segment.APIError},
}
_SUBMODULES = ("client", "consumer", "oauth_manager", "request", "utils", "version")


class _Facade(types.ModuleType):
    """``segment.analytics.<sub>`` as seen by ``from segment.analytics.<sub> import name``."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        if self.__name__ == "segment.analytics":
            if attr in _SUBMODULES:
                return _facade(f"segment.analytics.{attr}")
            if hasattr(simple_segment, attr):
                return getattr(simple_segment, attr)
        elif attr in EQUIVALENTS.get(self.__name__, {}):
            return EQUIVALENTS[self.__name__][attr]
        return _NoEquivalent(f"{self.__name__}.{attr}")


def _facade(name: str) -> types.ModuleType:
    return _Facade(name, f"what {name} means for the official tests run against simple_segment")


# ``import segment.analytics as analytics`` binds ``segment.analytics``: simple_segment
# itself, so setting ``analytics.write_key`` sets simple_segment's module setting.
_SEGMENT = types.ModuleType("segment", "the official package's name, answered with simple_segment")
_SEGMENT.analytics = simple_segment


_DEFAULT_HOST = "https://api.segment.io"
_redirected_host: list[str] = []
"""The FakeSegment URL that stands for the default host while the module runs (see fake_default_host)."""


def _exchange_through(post: mock.MagicMock) -> Callable[..., Answer]:
    """An ``Endpoint.exchange`` that hands each request to ``post`` in requests' call shape.

    The official client sends through ``requests.Session.post``: batches as
    ``post(url, data=, headers=, timeout=, proxies=)`` and token requests as
    ``post(url=, data=, timeout=, headers=)``; the test's mock answers a
    response-like object (``status_code``, ``headers``, ``json()``), turned here into
    the answer our transport reads.  The default host's stand-in is shown to the mock
    as the default host.
    """

    def exchange(endpoint: Endpoint, body: bytes, headers: Mapping[str, str], remaining: float) -> Answer:
        url = endpoint.url
        for stand_in in _redirected_host:
            url = url.replace(stand_in, _DEFAULT_HOST)
        call: dict[str, Any] = {"data": body, "headers": dict(headers), "timeout": remaining}
        if endpoint.proxies:
            call["proxies"] = endpoint.proxies
        answer = post(url=url, **call) if url.endswith("/token") else post(url, **call)
        status = int(answer.status_code)
        try:
            payload = answer.json()
        except Exception:
            payload = None
        data = json.dumps(payload).encode() if isinstance(payload, (dict, list)) else b""
        answer_headers = {"Content-Type": "application/json"}
        given = getattr(answer, "headers", None)
        if isinstance(given, Mapping):  # a bare Mock answer has none
            answer_headers.update({str(k): str(v) for k, v in given.items()})
        response = urllib3.HTTPResponse(body=b"", status=status, reason=HTTPStatus(status).phrase, headers=answer_headers)
        return Answer(status, response, data)

    return exchange


class _TranslatedPatch:
    """A ``mock.patch`` of the official library's HTTP call, applied to ``Endpoint.exchange``.

    Usable as a context manager (``with ... as mock_post``) and as a decorator (the
    mock is passed as the last positional argument), like the patch it replaces.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.post = mock.MagicMock(**kwargs)
        self._patch = mock.patch.object(Endpoint, "exchange", _exchange_through(self.post))

    def __enter__(self) -> mock.MagicMock:
        self._patch.start()
        return self.post

    def __exit__(self, *exc_info: object) -> None:
        self._patch.stop()

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def patched(*args: Any, **kwargs: Any) -> Any:
            with self as post:
                return function(*args, post, **kwargs)

        return patched


# mock.patch targets inside the official library that have an equivalent here.
PATCH_TARGETS: dict[str, Callable[..., _TranslatedPatch]] = {
    "segment.analytics.request._session.post": _TranslatedPatch,
}


def _mock_facade(real: types.ModuleType) -> types.ModuleType:
    """The ``mock`` module with ``patch("segment.analytics...")`` translated, or refused."""

    def patch(target: object, *args: Any, **kwargs: Any) -> Any:
        if isinstance(target, str) and target.startswith("segment."):
            if target not in PATCH_TARGETS:
                raise NoEquivalentError(f"mock.patch({target!r}) has no simple_segment equivalent")
            return PATCH_TARGETS[target](*args, **kwargs)
        return real.patch(target, *args, **kwargs)

    def patch_object(target: object, attribute: str, *args: Any, **kwargs: Any) -> Any:
        # The official OAuth tests patch requests' Session.post, which its client sends through.
        if target is requests.Session and attribute == "post":
            return _TranslatedPatch(*args, **kwargs)
        return real.patch.object(target, attribute, *args, **kwargs)

    for name in ("dict", "multiple", "stopall", "TEST_PREFIX"):
        setattr(patch, name, getattr(real.patch, name))
    patch.object = patch_object
    facade = types.ModuleType(real.__name__, real.__doc__)
    facade.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
    facade.patch = patch
    return facade


def _redirecting_import(
    name: str,
    globals_: dict[str, Any] | None = None,
    locals_: dict[str, Any] | None = None,
    fromlist: tuple[str, ...] | list[str] | None = (),
    level: int = 0,
) -> types.ModuleType:
    """``__import__`` of the official test modules: ``segment.analytics*`` means simple_segment."""
    if level == 0 and (name == "segment" or name.startswith("segment.")):
        return _facade(name) if fromlist else _SEGMENT
    if level == 0 and name == "mock":
        return _mock_facade(builtins.__import__("mock"))
    if level == 0 and name == "unittest" and fromlist and "mock" in fromlist:
        facade = types.ModuleType("unittest", unittest.__doc__)
        facade.__dict__.update({k: v for k, v in vars(unittest).items() if not k.startswith("__")})
        facade.mock = _mock_facade(builtins.__import__("unittest.mock", fromlist=["patch"]))
        return facade
    return builtins.__import__(name, globals_, locals_, fromlist or (), level)


# -- loading the installed official tests ------------------------------------------


def _official_sources() -> list[tuple[str, str, str]]:
    """``(file name, path, source)`` of each official test module, as installed."""
    installed = importlib.metadata.version(OFFICIAL_DISTRIBUTION)
    assert installed == OFFICIAL_VERSION, (
        f"{OFFICIAL_DISTRIBUTION} {installed} is installed; official_suite_lists.py classifies {OFFICIAL_VERSION}"
    )
    files = importlib.resources.files(OFFICIAL_TESTS_PACKAGE)
    found = sorted(
        (entry for entry in files.iterdir() if entry.name.startswith("test_") and entry.name.endswith(".py")),
        key=lambda entry: entry.name,
    )
    return [(entry.name, str(entry), entry.read_text(encoding="utf-8")) for entry in found]


def _load(file_name: str, path: str, source: str) -> types.ModuleType:
    module = types.ModuleType(f"official_suite.{file_name.removesuffix('.py')}")
    module.__file__ = path
    module.__builtins__ = {**vars(builtins), "__import__": _redirecting_import}
    code = compile(source, path, "exec")
    saved_path = list(sys.path)  # test_oauth.py appends to sys.path
    try:
        exec(code, module.__dict__)  # noqa: S102 - the official test module, read from the installed wheel
    finally:
        sys.path[:] = saved_path
    return module


def _collect() -> tuple[dict[str, tuple[type[unittest.TestCase], str]], set[str]]:
    """Every official test by id (``file::Class::method``), and the module settings they assign."""
    tests: dict[str, tuple[type[unittest.TestCase], str]] = {}
    assigned: set[str] = set()
    loader = unittest.TestLoader()
    for file_name, path, source in _official_sources():
        module = _load(file_name, path, source)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, unittest.TestCase) and value.__module__ == module.__name__:
                for method in loader.getTestCaseNames(value):
                    tests[f"{file_name}::{value.__name__}::{method}"] = (value, method)
        assigned |= {
            node.attr
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "analytics"
        }
    return tests, assigned


OFFICIAL, ASSIGNED_SETTINGS = _collect()


# -- running one official test -------------------------------------------------------


def _strict_fail(case: unittest.TestCase) -> Callable[..., None]:
    """Keep a test class's own ``fail(e, batch)`` for on_error, and unittest's for assertions.

    TestClient and TestOauthIntegration define ``fail(self, e, batch=[])`` as their
    ``on_error`` handler, which shadows unittest's ``fail(msg)``: assertDictEqual,
    assertIn and the others that report through ``fail()`` would pass silently.
    """
    handler = case.fail

    def fail(*args: Any, **kwargs: Any) -> None:
        if args and isinstance(args[0], BaseException):
            handler(*args, **kwargs)  # on_error(exception, messages)
            return
        raise case.failureException(args[0] if args else kwargs.get("msg"))

    return fail


def _run(test_id: str) -> None:
    case_class, method = OFFICIAL[test_id]
    case = case_class(method)
    if case_class.fail is not unittest.TestCase.fail:
        case.fail = _strict_fail(case)
    try:
        case.debug()  # setUp, the test, tearDown and cleanups; exceptions propagate
    except AssertionError as exc:
        if type(exc) is not case.failureException:  # e.g. a ValidationError from the client
            raise
        raise OfficialAssertionError(str(exc)) from exc


def _param(test_id: str) -> Any:
    if test_id in NOT_APPLICABLE:
        return pytest.param(test_id, marks=pytest.mark.skip(reason=NOT_APPLICABLE[test_id]))
    if test_id in EXPECTED_DIFFERENCES:
        difference = EXPECTED_DIFFERENCES[test_id]
        reason = "expected difference, README: " + " / ".join(difference.readme)
        marks = pytest.mark.xfail(strict=True, raises=difference.raises or OfficialAssertionError, reason=reason)
        return pytest.param(test_id, marks=marks)
    return pytest.param(test_id)


# -- the environment the official tests run in -----------------------------------------


@pytest.fixture(scope="module")
def fake_default_host() -> Iterator[FakeSegment]:
    """Send what goes to the default host (https://api.segment.io) to a local FakeSegment.

    The official tests build clients without a host.  This is the one place that knows
    how simple_segment picks its default host: ``_options.normalize_host()`` reads
    ``simple_segment._options.DEFAULT_HOST`` when ``host`` is None.  Adjust here when
    the core moves it; the probe below fails loudly (instead of reaching the real
    Segment) if the redirect stops working.
    """
    with FakeSegment() as server, pytest.MonkeyPatch.context() as patch:
        patch.setattr(simple_segment._options, "DEFAULT_HOST", server.url)
        probe = simple_segment.Client("probe-key")
        probe.close()
        assert probe.host == server.url, "the default host is no longer redirected: adjust fake_default_host"
        _redirected_host.append(server.url)
        try:
            yield server
        finally:
            _redirected_host.remove(server.url)


@pytest.fixture
def official_environment(fake_default_host: FakeSegment) -> Iterator[FakeSegment]:
    """What an official test may change beyond the module settings, restored afterwards.

    conftest.py's ``clean_module_state`` restores ``simple_segment``'s settings and
    ``default_client`` (``test_settings_assigned_by_official_tests_are_restored``
    checks it covers what they assign).  ``Client(debug=True)`` also sets the level
    and handlers of the ``simple_segment`` logger, process-wide.
    """
    logger = logging.getLogger("simple_segment")
    saved = (logger.level, list(logger.handlers), logger.propagate, logger.disabled)
    try:
        yield fake_default_host
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
        logger.propagate, logger.disabled = saved[2], saved[3]


# -- the tests -----------------------------------------------------------------------


@pytest.mark.parametrize("test_id", [_param(test_id) for test_id in OFFICIAL])
def test_official(test_id: str, official_environment: FakeSegment) -> None:
    """The official test ``test_id`` passes against simple_segment (or fails as documented)."""
    difference = EXPECTED_DIFFERENCES.get(test_id)
    try:
        _run(test_id)
    except (OfficialAssertionError, SegmentError) as exc:
        if difference is not None and not re.search(difference.evidence, str(exc)):
            msg = f"{test_id} failed, but not as its expected difference ({difference.evidence!r}) explains"
            raise UnexplainedFailureError(msg) from exc
        raise


def test_every_official_test_is_classified_once() -> None:
    """The lists name only official tests, none twice, and the suite is the size we classified."""
    assert len(OFFICIAL) == OFFICIAL_TEST_COUNT
    assert set(NOT_APPLICABLE) <= set(OFFICIAL), set(NOT_APPLICABLE) - set(OFFICIAL)
    assert set(EXPECTED_DIFFERENCES) <= set(OFFICIAL), set(EXPECTED_DIFFERENCES) - set(OFFICIAL)
    assert not set(NOT_APPLICABLE) & set(EXPECTED_DIFFERENCES)


def test_expected_differences_cite_the_readme() -> None:
    """Every expected difference quotes text that is in README.md."""
    readme = " ".join(README.read_text(encoding="utf-8").split())
    for test_id, difference in EXPECTED_DIFFERENCES.items():
        for line in difference.readme:
            assert " ".join(line.split()) in readme, (test_id, line)


def test_settings_assigned_by_official_tests_are_restored() -> None:
    """conftest.py restores every module attribute the official tests assign."""
    assert ASSIGNED_SETTINGS, "no `analytics.<name> = ...` found in the official tests"
    assert ASSIGNED_SETTINGS - {"default_client"} <= set(simple_segment._SETTINGS)


def test_the_real_official_package_is_untouched() -> None:
    """Loading the official tests did not replace or alter segment.analytics."""
    import segment.analytics
    import segment.analytics.client

    assert segment.analytics.Client is segment.analytics.client.Client
    assert segment.analytics.Client is not simple_segment.Client
    assert sys.modules["segment.analytics"] is segment.analytics
    assert not any(name.startswith("official_suite.") for name in sys.modules)
