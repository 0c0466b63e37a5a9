"""The Twilio stand-in in its own process for tests/e2e/test_notifier_crash.py.

It is the stand-in of `carehub twilio-standin` (`services.notifier.twilio_standin.create_app`,
unchanged) with one extra read-only route, `GET /_harness/messages`: every message it accepted
with the notification id from its `StatusCallback` URL, which the Twilio-shaped
`/_standin/messages` does not show. So a test can count what reached the provider per
notification even when one survivor gets several texts with the same words.

    python -m tests.e2e.notifier_harness --port P --account-sid AC… --auth-token T
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.notifier.twilio_standin import Standin, create_app

READY = re.compile(r"^carehub twilio-standin ready (\S+)", re.MULTILINE)


def notification_id(status_callback: str | None) -> str | None:
    if not status_callback:
        return None
    values = parse_qs(urlsplit(status_callback).query).get("nid")
    return values[0] if values else None


async def _harness_messages(request: Request) -> Response:
    standin: Standin = request.app.state.standin
    return JSONResponse(
        [
            {
                "sid": message.sid,
                "seq": message.seq,
                "to": message.to,
                "body": message.body,
                "nid": notification_id(message.status_callback),
                "date_created": message.date_created.isoformat(),
            }
            for message in standin.messages.values()
        ]
    )


def serve(port: int, account_sid: str, auth_token: str) -> None:
    app = create_app(account_sid, auth_token)
    app.add_route("/_harness/messages", _harness_messages, methods=["GET"])

    async def main() -> None:
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_config=None,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
            )
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
                return
            await asyncio.sleep(0.01)
        print(f"carehub twilio-standin ready http://127.0.0.1:{port}", flush=True)
        try:
            await task
        finally:
            await app.state.standin.aclose()

    asyncio.run(main())


class StandinProcess:
    """This module as a child process, its output in a log file."""

    def __init__(
        self, port: int, account_sid: str, auth_token: str, cwd: Path, env: dict[str, str]
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "tests.e2e.notifier_harness",
            "--port",
            str(port),
            "--account-sid",
            account_sid,
            "--auth-token",
            auth_token,
        ]
        self.cwd = cwd
        self.env = env
        self.log = cwd / "standin.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30) -> StandinProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text("utf-8", "replace")
            match = READY.search(text)
            if match:
                self.url = match.group(1)
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"the stand-in exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.05)
        raise AssertionError(f"the stand-in was not ready in {timeout}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    options = parser.parse_args()
    serve(options.port, options.account_sid, options.auth_token)
