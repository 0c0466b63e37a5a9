"""Running `carehub` commands as real child processes for end-to-end tests, and what those
tests share: waiting for a condition, reading a process's JSON log lines."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.conftest import REPO

# `carehub ready URL`, `carehub broker ready ADDRESS`, and the test servers' own
# (`carehub smtp-sink ready URL`).
READY = re.compile(r"^carehub (?:[a-z-]+ )?ready (\S+)", re.MULTILINE)


class CarehubProcess:
    """One `python -m services.cli ...` child (or another module's, with `module`) with its
    output in a log file; started again after a kill, it appends to the same log."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        *,
        module: str = "services.cli",
    ) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.cwd = cwd
        self.module = module
        self.log = cwd / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.address: str | None = None
        self.cpu_s = 0.0  # CPU seconds of the runs that ended (kill, stop)

    def start(self, timeout: float = 60) -> CarehubProcess:
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            match = READY.search(text)
            if match:
                self.address = match.group(1)
                return self
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}:\n{text[-3000:]}"
                )
            time.sleep(0.05)
        raise AssertionError(f"{self.name} was not ready in {timeout}s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        if not self.log.exists():
            return ""
        with open(self.log, "rb") as handle:
            handle.seek(self._offset)
            return handle.read().decode("utf-8", "replace")

    def kill(self) -> None:
        """SIGKILL: no clean-up, no offset commit, an open transaction simply vanishes."""
        assert self.proc is not None
        self.cpu_s += _cpu_s(self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: frozen where it stands, connections open, nothing read or sent."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.cpu_s += _cpu_s(self.proc.pid)
        self.proc.send_signal(signal.SIGCONT)  # a paused process could not act on SIGTERM
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREHUB_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def log_events(path: Path, name: str) -> list[dict[str, Any]]:
    """JSON log lines with this event name (a line cut short by SIGKILL is skipped)."""
    found = []
    for line in path.read_text("utf-8", "replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == name:
            found.append(entry)
    return found
