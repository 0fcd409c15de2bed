"""The README's "Testing your code" examples run as written."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_examples(heading: str = "Testing your code") -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_section_has_its_examples() -> None:
    """The section holds the capture, FakeSegment, pytest and MockTransport examples."""
    assert len(readme_examples()) == 4


@pytest.mark.parametrize("index", [0, 1, 3])
def test_script_examples_run(index: int) -> None:
    """The capture(), FakeSegment and MockTransport examples run without error and their asserts hold."""
    code = readme_examples()[index]
    exec(compile(code, f"README.md example {index + 1}", "exec"), {"__name__": "readme_example"})  # noqa: S102


def test_pytest_fixture_example_passes(pytester: pytest.Pytester) -> None:
    """The pytest example passes when run by pytest with the installed plugin."""
    pytester.makepyfile(test_readme_example=readme_examples()[2])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_oauth_example_runs() -> None:
    """The OAuth example delivers with a Bearer token against FakeSegment's OAuth mode."""
    (code,) = readme_examples("OAuth")
    exec(compile(code, "README.md OAuth example", "exec"), {"__name__": "readme_example"})  # noqa: S102


def all_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(all_python_blocks())))
def test_every_python_block_runs_or_says_it_is_a_fragment(index: int) -> None:
    """A README python block either runs as written or starts with '# Fragment: ...' (naming what it assumes).

    A fragment must still be valid Python.  A block that brings no server of its own
    (FakeSegment, MockTransport, capture) runs inside capture(), so nothing reaches Segment.
    """
    from simple_segment.testing import capture

    code = all_python_blocks()[index]
    compiled = compile(code, f"README.md python block {index + 1}", "exec")
    if code.startswith("# Fragment: "):
        return
    own_server = any(name in code for name in ("FakeSegment", "MockTransport", "capture", "fake_segment"))
    with contextlib.nullcontext() if own_server else capture():
        exec(compiled, {"__name__": "readme_example"})  # noqa: S102
