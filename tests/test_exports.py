"""Every supported import path, and the public surface's shape (as stripe's test_exports does)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import types

import pytest

import simple_segment

PACKAGE = pathlib.Path(simple_segment.__file__).parent

SUPPORTED = {
    "simple_segment": [
        "VERSION", "__version__", "Client", "Batch", "Options", "Message", "Result", "OnError", "BeforeSend",
        "Id", "Properties", "Timeout",
        "SegmentError", "ValidationError", "MessageTooLargeError", "ConfigurationError", "DeliveryError",
        "APIError", "ServerError", "RateLimitError", "TokenError", "TransportError", "NetworkError", "BatchDeliveryError",
        "RetryableBatchDeliveryError", "RetryableError", "PlanViolationError",
        "identify", "track", "page", "screen", "group", "alias", "batch", "flush", "join", "shutdown",
        "default_client", "stable_ids", "scope", "Scope", "Pending",
    ],
    "simple_segment.client": ["Client"],
    "simple_segment.errors": [
        "SegmentError", "ValidationError", "MessageTooLargeError", "ConfigurationError", "DeliveryError",
        "APIError", "ServerError", "RateLimitError", "TokenError", "TransportError", "NetworkError", "BatchDeliveryError",
        "RetryableBatchDeliveryError", "RetryableError", "PlanViolationError",
    ],
    "simple_segment.testing": [
        "capture", "Captured", "FakeSegment", "FakeSegmentTimeoutError", "RecordedRequest", "IssuedToken",
        "OAuthSettings", "MockTransport", "MockRequest", "MockResponse", "FakeClock",
    ],
    "simple_segment.plan": ["TrackingPlan", "Violation", "Rule", "OnViolation", "Unplanned"],
    "simple_segment.integrations.celery": ["install", "uninstall"],
    "simple_segment.integrations.rq": ["StableIdsJob", "stable_ids_job"],
    "simple_segment.integrations.wsgi": ["SegmentMiddleware"],
    "simple_segment.integrations.asgi": ["SegmentMiddleware"],
    "simple_segment.integrations.django": ["SegmentMiddleware"],
    "simple_segment.integrations.flask": ["init_app"],
    "simple_segment.integrations.dask": ["send"],
    "simple_segment.backfill": ["BackfillSummary", "InvalidRow", "PartitionSummary", "send_partition"],
}


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in SUPPORTED.items() for n in names])
def test_supported_import_path(module: str, name: str) -> None:
    """``from <module> import <name>`` works for every documented path."""
    assert hasattr(importlib.import_module(module), name)


def test_all_is_exactly_the_public_surface() -> None:
    """``__all__`` lists the supported names and nothing private."""
    assert sorted(simple_segment.__all__) == sorted(SUPPORTED["simple_segment"])
    assert all(not name.startswith("_") or name == "__version__" for name in simple_segment.__all__)


def test_testing_all_is_exactly_its_surface() -> None:
    """``simple_segment.testing.__all__`` lists its supported names, MockTransport's included."""
    import simple_segment.testing

    assert sorted(simple_segment.testing.__all__) == sorted(SUPPORTED["simple_segment.testing"])


def test_client_takes_transport_keyword_only_last() -> None:
    """``transport`` is keyword-only, after the other keyword-only options, and defaults to the network (None)."""
    parameters = list(inspect.signature(simple_segment.Client).parameters.values())
    assert parameters[-1].name == "transport"
    assert parameters[-1].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters[-1].default is None
    assert "transport" not in simple_segment.Options.__dataclass_fields__


def test_public_objects_show_the_public_module() -> None:
    """Every public class and function says ``simple_segment`` in tracebacks, reprs and pickles."""
    for name in simple_segment.__all__:
        value = getattr(simple_segment, name)
        # (On Python 3.10 a type alias such as OnError also passes isinstance(..., type).)
        if isinstance(value, (type, types.FunctionType)) and not isinstance(value, types.GenericAlias):
            assert value.__module__ == "simple_segment", name
    assert repr(simple_segment.APIError(400, "c", "m")).startswith("APIError(")
    assert f"{simple_segment.Client.__module__}.{simple_segment.Client.__qualname__}" == "simple_segment.Client"


def test_module_functions_carry_the_official_signatures() -> None:
    """``inspect.signature(simple_segment.track)`` shows the official parameters, in order."""
    expected = {
        "identify": ["user_id", "traits", "context", "timestamp", "anonymous_id", "integrations", "message_id"],
        "track": ["user_id", "event", "properties", "context", "timestamp", "anonymous_id", "integrations",
                  "message_id"],
        "alias": ["previous_id", "user_id", "context", "timestamp", "integrations", "message_id"],
        "group": ["user_id", "group_id", "traits", "context", "timestamp", "anonymous_id", "integrations",
                  "message_id"],
        "page": ["user_id", "category", "name", "properties", "context", "timestamp", "anonymous_id",
                 "integrations", "message_id"],
    }
    expected["screen"] = expected["page"]
    client = simple_segment.Client("k", send=False)
    for call, names in expected.items():
        for function in (getattr(simple_segment, call), getattr(client, call), getattr(simple_segment.Batch, call)):
            parameters = list(inspect.signature(function).parameters.values())
            if parameters and parameters[0].name == "self":
                parameters = parameters[1:]
            assert [p.name for p in parameters] == names, (call, function)
            assert all(p.default is None for p in parameters)
        assert getattr(simple_segment, call).__doc__


def _import_graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports (at any depth of its code)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        imports = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(max(node.level - 1, 0)):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
                imports.update({target, *(f"{target}.{alias.name}" for alias in node.names)})
            elif isinstance(node, ast.Import):
                imports.update(alias.name for alias in node.names)
    modules = set(graph)
    # A package importing its own submodules is how re-exports work; only cycles among modules count.
    return {
        m: {i for i in deps if i in modules and i != m and not m.startswith(i + ".") and not i.startswith(m + ".")}
        for m, deps in graph.items()
    }


def test_no_import_cycle() -> None:
    """No module of the package imports, directly or not, a module that imports it back."""
    edges = _import_graph()

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    assert "simple_segment._batch" in edges["simple_segment.client"]  # the graph is really read
    cycles = sorted(f"{m} -> {d}" for m, deps in edges.items() for d in deps if reaches(d, m))
    assert cycles == []


def test_every_since_names_this_version_or_the_next() -> None:
    """'Since: X' in a docstring is the package version, or the next minor while CHANGELOG has an Unreleased part.

    Names of the first release say its version; names added since (CHANGELOG "Unreleased")
    say the release that will carry them, never a version that will not exist.
    """
    import re
    from pathlib import Path

    from simple_segment._version import VERSION

    root = Path(simple_segment.__file__).resolve().parent
    major, minor, _ = (int(part) for part in VERSION.split("."))
    allowed = {VERSION}
    changelog = (root.parent / "CHANGELOG.md").read_text(encoding="utf-8")
    if "\n## Unreleased\n" in changelog:
        allowed.add(f"{major}.{minor + 1}.0")
    found = {
        (str(path.relative_to(root)), version)
        for path in root.rglob("*.py")
        for version in re.findall(r"Since:? ([0-9][0-9.]*[0-9])", path.read_text(encoding="utf-8"))
    }
    assert found, "no 'Since:' found: the pattern is wrong"
    assert {(path, version) for path, version in found if version not in allowed} == set()
