"""Subprocesses for the real-service tests: each in a session of its own, its output in a log file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path

import pytest


class Process:
    """A subprocess in a session (process group) of its own, with its output in a log file."""

    def __init__(self, name: str, args: list[str], directory: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = directory / f"{name}.log"
        with self.log.open("wb") as log:
            self.popen = subprocess.Popen(
                args, cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def tail(self) -> str:
        return "\n".join(self.output().splitlines()[-30:])

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Return the first match of ``pattern`` in the output; fail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output())
            if match:
                return match
            if self.popen.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.popen.returncode}) before {pattern!r}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: no {pattern!r} within {timeout} s:\n{self.tail()}")
            time.sleep(0.05)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        """End the process and every process it started (its group): SIGTERM, then SIGKILL; bounded."""
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(3)
        # Then SIGKILL what is left of the group: the leader if SIGTERM was not enough, or a pool
        # child or RQ work horse that outlived it.
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(3)
