"""Sending a file drop to a running ingest (`carehub ingest FILE [--feed FEED]`).

Without `--feed`: a JSON-lines file of canonical CloudEvents, posted in batches to
`/v1/events`. With `--feed police|cps|court|probation`: that feed's records (canonical or its
native format), as JSON lines or CSV (by the file's extension, or `--format`), posted in signed
batches to `/v1/feeds/{feed}/events` with the feed's secret (`CAREHUB_FEED_SECRET_<FEED>`).

The file is streamed: memory stays bounded whatever its size. A line that is not JSON is still
sent, alone, so the service keeps it with its reason: nothing in the file is lost.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from services.ingest.feeds import sign

BATCH = "application/cloudevents-batch+json"


class Progress:
    """A progress bar on stderr, drawn only on a terminal; silent otherwise."""

    def __init__(self, total_bytes: int, enabled: bool | None = None) -> None:
        self.total = max(1, total_bytes)
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.last = 0.0

    def update(
        self, done_bytes: int, lines: int, counts: dict[str, int], force: bool = False
    ) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < 0.2):
            return
        self.last = now
        share = min(1.0, done_bytes / self.total)
        bar = "#" * int(share * 30)
        sys.stderr.write(
            f"\r[{bar:<30}] {share:6.1%} {lines:,} lines, {counts['accepted']:,} accepted, "
            f"{counts['rejected']:,} rejected, {counts['duplicates']:,} duplicates"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _csv_rows(handle: io.TextIOBase) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(handle)
    for row in reader:
        record: dict[str, Any] = {k: v for k, v in row.items() if k is not None}
        extra = row.get(None)
        if extra:
            record["_extra_columns"] = len(extra)
        yield reader.line_num, record


def _lines(handle: Any, limit: int) -> Iterator[bytes | None]:
    """The file's lines as bytes, never reading more than `limit` + 1 bytes of one at a time;
    None for a line longer than `limit` (the rest of it is skipped)."""
    while line := handle.readline(limit + 1):
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := handle.readline(limit + 1)) and not rest.endswith(b"\n"):
                pass
            yield None
            continue
        yield line


async def send_file(
    base_url: str,
    path: Path,
    *,
    feed: str | None = None,
    secret: str | None = None,
    file_format: str | None = None,
    batch_size: int = 100,
    progress: Progress | None = None,
    on_batch: Callable[[int], None] | None = None,
    max_line_bytes: int = 1_048_576,
) -> dict[str, int]:
    """Send every record of `path`; return the counts (accepted, rejected, duplicates, lines,
    and `too_long`: lines longer than `max_line_bytes` (CAREHUB_MAX_REQUEST_BYTES), which ingest
    could never take; they stay in the file, and every other line still goes).

    A JSON line that is not valid UTF-8 or JSON is sent as it is, alone, so ingest keeps it in
    its rejected records with the reason; nothing is repaired on the way."""
    counts = {"accepted": 0, "rejected": 0, "duplicates": 0, "lines": 0, "too_long": 0}
    fmt = file_format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    if fmt == "csv" and feed is None:
        raise ValueError("a CSV file needs --feed: canonical events come as JSON lines")
    endpoint = f"/v1/feeds/{feed}/events" if feed else "/v1/events"
    pending: list[Any] = []

    def tally(status: str) -> None:
        if status == "accepted":
            counts["accepted"] += 1
        elif status == "duplicate":
            counts["duplicates"] += 1
        else:
            counts["rejected"] += 1

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

        async def post(body: bytes, content_type: str) -> httpx.Response:
            headers = {"content-type": content_type}
            if secret is not None:
                stamp = str(int(time.time()))
                headers["x-carehub-timestamp"] = stamp
                headers["x-carehub-signature"] = sign(secret, stamp, body)
            response = await client.post(endpoint, content=body, headers=headers)
            if response.status_code in (401, 403, 404, 415):
                raise PermissionError(f"ingest refused the file: {response.status_code}")
            return response

        async def send_batch(records: list[Any]) -> None:
            body = json.dumps(records).encode()
            response = await post(body, BATCH if feed is None else "application/json")
            if response.status_code == 413 and len(records) > 1:
                half = len(records) // 2  # too big together: in two smaller batches
                await send_batch(records[:half])
                await send_batch(records[half:])
                return
            if response.status_code == 413:
                counts["too_long"] += 1
                counts["rejected"] += 1
                return
            if response.status_code != 207:
                raise OSError(f"ingest answered {response.status_code} to a batch")
            for item in response.json()["results"]:
                tally(item["status"])

        async def flush() -> None:
            if not pending:
                return
            await send_batch(list(pending))
            pending.clear()
            if on_batch is not None:
                on_batch(counts["lines"])

        with path.open("rb") as raw_handle:
            if fmt == "csv":
                text = io.TextIOWrapper(raw_handle, encoding="utf-8", errors="strict", newline="")
                for _, record in _csv_rows(text):
                    counts["lines"] += 1
                    pending.append(record)
                    if len(pending) >= batch_size:
                        await flush()
                        if progress is not None:
                            progress.update(raw_handle.tell(), counts["lines"], counts)
            else:
                for line in _lines(raw_handle, max_line_bytes):
                    if line is None:  # longer than ingest takes: left in the file, counted
                        counts["lines"] += 1
                        counts["too_long"] += 1
                        counts["rejected"] += 1
                        continue
                    if not line.strip():
                        continue
                    counts["lines"] += 1
                    try:
                        pending.append(json.loads(line.decode("utf-8")))
                    except ValueError:  # not UTF-8 or not JSON: ingest keeps it with its reason
                        response = await post(line.strip(), "application/json")
                        tally("invalid" if response.status_code >= 400 else "accepted")
                        continue
                    if len(pending) >= batch_size:
                        await flush()
                        if progress is not None:
                            progress.update(raw_handle.tell(), counts["lines"], counts)
            await flush()
    if progress is not None:
        progress.update(progress.total, counts["lines"], counts, force=True)
        progress.close()
    return counts
