"""The call commands' flags are the builders' parameters: one table, tied to the signatures."""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import WRITE_KEY

from simple_segment import _messages
from simple_segment._cli import _build_parser, main
from simple_segment._cli.calls import CALL_ARGS, CALLS, FIELDS, Field, builder_args
from simple_segment.testing import FakeSegment


def _subparser(call: str) -> argparse.ArgumentParser:
    parser = _build_parser()
    (commands,) = (action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    sub: argparse.ArgumentParser = commands.choices[call]
    return sub


def _field_flags(call: str) -> dict[str, str]:
    """The ``message fields`` group of ``call``'s parser: flag -> dest."""
    (group,) = (g for g in _subparser(call)._action_groups if g.title == "message fields")
    return {action.option_strings[0]: action.dest for action in group._group_actions}


def _sample(name: str) -> tuple[str, Any]:
    """A command-line value for parameter ``name`` and the value it becomes on the wire."""
    field = FIELDS[name]
    if field.metavar == "JSON":
        return '{"from": "%s"}' % name, {"from": name}  # noqa: UP031 - reads better than escaped braces
    if name == "timestamp":
        return "2024-05-06T07:08:09Z", "2024-05-06T07:08:09.000+00:00"
    return f"v-{name}", f"v-{name}"


@pytest.mark.parametrize("call", CALLS)
def test_every_builder_parameter_has_a_flag_and_every_flag_a_parameter(call: str) -> None:
    """Each call's message-field flags are exactly its builder's parameters, named --like-this."""
    parameters = set(inspect.signature(getattr(_messages, call)).parameters)
    flags = _field_flags(call)
    assert set(flags.values()) == parameters
    assert all(flag == Field.flag(dest) for flag, dest in flags.items())
    assert set(CALL_ARGS[call]) == parameters


def test_the_table_has_no_field_that_no_builder_takes() -> None:
    """Every FIELDS entry is a parameter of some builder (a removed parameter leaves no stale flag)."""
    used = {name for call in CALLS for name in inspect.signature(getattr(_messages, call)).parameters}
    assert set(FIELDS) == used
    assert len({field.wire for field in FIELDS.values()}) == len(FIELDS)


def test_a_parameter_missing_from_the_table_fails() -> None:
    """A builder with a parameter the table lacks is refused, naming the parameter."""

    def track(user_id: str | None = None, shoe_size: int | None = None) -> _messages.Message:
        raise AssertionError((user_id, shoe_size))

    with pytest.raises(KeyError, match="shoe_size"):
        builder_args(track)


@pytest.mark.parametrize("call", CALLS)
def test_every_flag_reaches_the_wire(call: str, fake_segment: FakeSegment, capsys: pytest.CaptureFixture[str]) -> None:
    """Passing every flag of a call sends a message carrying each of them under its wire name."""
    argv = [call, "--write-key", WRITE_KEY, "--host", fake_segment.url]
    expected: dict[str, Any] = {}
    for name in CALL_ARGS[call]:
        text, wire = _sample(name)
        argv += [Field.flag(name), text]
        expected[FIELDS[name].wire] = wire
    assert main(argv) == 0, capsys.readouterr().err
    (msg,) = fake_segment.messages
    assert msg["type"] == call
    for wire, value in expected.items():
        if wire == "context":
            assert msg["context"]["from"] == "context"
        else:
            assert msg[wire] == value, wire


def test_import_takes_every_field_under_its_wire_name(
    tmp_path: Path, fake_segment: FakeSegment, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line in wire names with every field of its call imports without a bad line, field for field."""
    lines = []
    for call in CALLS:
        record: dict[str, Any] = {"type": call}
        for name in CALL_ARGS[call]:
            record[FIELDS[name].wire] = _sample(name)[1]
        record["messageId"] = f"m-{call}"
        lines.append(json.dumps(record))
    source = tmp_path / "messages.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["import", str(source), "--write-key", WRITE_KEY, "--host", fake_segment.url]) == 0
    assert "0 bad lines" in capsys.readouterr().out
    for call, line in zip(CALLS, lines, strict=True):
        record = json.loads(line)
        received = fake_segment.by_message_id(f"m-{call}")
        assert received is not None
        for wire, value in record.items():
            if wire == "context":
                assert received["context"]["from"] == "context"
            else:
                assert received[wire] == value, (call, wire)
