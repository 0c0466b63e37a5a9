"""An SMTP server (aiosmtpd) in its own process that accepts every message and journals it, for
the end-to-end tests of the e-mail channel.

Each accepted message adds one JSON line to the journal — the notification id from its
Message-ID (the SMTP channel derives it from the notification: `<id@domain>`) and the
recipients — written before the server answers 250, so a message is journaled exactly when the
sender could have been told it was taken. A test counts what reached the server per
notification by reading the journal.

    python -m tests.e2e.smtp_sink --port P --journal PATH
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP


class Journal:
    """An aiosmtpd handler: journal, then accept."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        headers = BytesHeaderParser(policy=default).parsebytes(envelope.content)
        message_id = str(headers.get("Message-ID", "")).strip().strip("<>")
        line = {"nid": message_id.split("@", 1)[0], "rcpt": list(envelope.rcpt_tos)}
        # One write of a short line with O_APPEND: whole lines, even if this process is killed.
        os.write(self.fd, (json.dumps(line) + "\n").encode())
        return "250 OK"


def journaled(path: Path) -> list[dict[str, Any]]:
    """The journal's lines (none if nothing came yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def serve(port: int, journal: Path) -> None:
    async def main() -> None:
        handler = Journal(journal)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="mx.example.org"), "127.0.0.1", port
        )
        print(f"carehub smtp-sink ready smtp://127.0.0.1:{port}", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--journal", type=Path, required=True)
    options = parser.parse_args()
    serve(options.port, options.journal)
