"""Sending a JSON-lines file of CloudEvents to a running ingest (`carehub ingest FILE`).

Valid JSON lines go in batches; a line that is not JSON is still sent, alone, so the service
keeps it with its reason: nothing in the file is lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BATCH = "application/cloudevents-batch+json"


async def send_file(
    base_url: str,
    path: Path,
    *,
    batch_size: int = 100,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    counts = {"accepted": 0, "rejected": 0, "duplicates": 0}
    pending: list[Any] = []

    def tally(status: str) -> None:
        if status == "accepted":
            counts["accepted"] += 1
        elif status == "duplicate":
            counts["duplicates"] += 1
        else:
            counts["rejected"] += 1

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

        async def flush() -> None:
            if not pending:
                return
            response = await client.post(
                "/v1/events", content=json.dumps(pending), headers={"content-type": BATCH}
            )
            if response.status_code != 207:
                raise OSError(f"ingest answered {response.status_code} to a batch")
            for item in response.json()["results"]:
                tally(item["status"])
            pending.clear()

        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    pending.append(json.loads(line))
                except ValueError:
                    response = await client.post(
                        "/v1/events", content=line, headers={"content-type": "application/json"}
                    )
                    tally("invalid" if response.status_code >= 400 else "accepted")
                    continue
                if len(pending) >= batch_size:
                    await flush()
                    if progress is not None:
                        progress(f"line {number}: {counts}")
            await flush()
    return counts
