"""Running `carehub` commands as real child processes for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO

READY = re.compile(r"^carehub (?:broker )?ready (\S+)", re.MULTILINE)


class CarehubProcess:
    """One `python -m services.cli ...` child with its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.cwd = cwd
        self.log = cwd / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.address: str | None = None

    def start(self, timeout: float = 60) -> CarehubProcess:
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *self.args],
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
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREHUB_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env
