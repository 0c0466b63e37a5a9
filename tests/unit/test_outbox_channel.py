"""The outbox channel on a real directory: files written by its own thread, runs in order, a
failure stopping the rest of its run, and a cancelled send still finished."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.notifier.channels.base import OutgoingMessage
from services.notifier.channels.outbox import JOURNAL, OUTBOX_KEYS, OutboxChannel

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def message(n: int, who: str = "a") -> OutgoingMessage:
    return OutgoingMessage(
        notification_id=f"n-{who}-{n:03d}",
        event_id=f"e-{n}",
        case_urn="01AB2345678",
        recipient_role="advocate",
        channel="email",
        to=f"isva-{who}@example.org",
        language="en",
        template="advocate_case_update",
        template_version=1,
        subject="A case update",
        body=f"Update {n} — 日本語 too",
        send_at=None,
        due_by=NOW,
    )


def journal(directory: Path) -> list[str]:
    return [line.split()[0] for line in (directory / JOURNAL).read_text().splitlines()]


async def test_a_run_is_written_in_order_with_every_key(tmp_path: Path) -> None:
    channel = OutboxChannel(tmp_path, "email")
    try:
        results = await channel.send_run([message(n) for n in range(5)], NOW)
    finally:
        await channel.close()
    ids = [f"n-a-{n:03d}" for n in range(5)]
    assert [r.provider_ref for r in results] == [f"outbox:{i}" for i in ids]
    assert all(r.delivered and r.provider_status == "written" for r in results)
    assert journal(tmp_path) == ids
    written = json.loads((tmp_path / "n-a-003.json").read_text(encoding="utf-8"))
    assert set(written) == set(OUTBOX_KEYS)
    assert written["body"] == "Update 3 — 日本語 too"
    assert written["written_at"] == "2026-12-02T10:00:00Z"
    assert not list(tmp_path.glob(".*.tmp"))  # every temporary name was renamed


async def test_runs_at_once_each_keep_their_order(tmp_path: Path) -> None:
    channel = OutboxChannel(tmp_path, "email")
    try:
        await asyncio.gather(
            *(channel.send_run([message(n, who) for n in range(6)], NOW) for who in "abcd"),
            channel.send(message(0, "single"), NOW),
        )
        found = await channel.lookup(message(0, "single"), NOW)
    finally:
        await channel.close()
    lines = journal(tmp_path)
    assert len(lines) == len(set(lines)) == 25
    for who in "abcd":
        assert [i for i in lines if i.startswith(f"n-{who}-")] == [
            f"n-{who}-{n:03d}" for n in range(6)
        ]
    assert [r.provider_ref for r in found] == ["outbox:n-single-000"]


async def test_a_file_that_cannot_be_written_stops_the_rest_of_its_run(tmp_path: Path) -> None:
    (tmp_path / "n-a-002.json").mkdir(parents=True)  # the rename onto it fails
    channel = OutboxChannel(tmp_path, "email")
    try:
        with pytest.raises(OSError):
            await channel.send_run([message(n) for n in range(5)], NOW)
        # Another run is not held up by it.
        await channel.send_run([message(n, "b") for n in range(2)], NOW)
    finally:
        await channel.close()
    assert journal(tmp_path) == ["n-a-000", "n-a-001", "n-b-000", "n-b-001"]
    assert not (tmp_path / "n-a-003.json").exists()
    assert not (tmp_path / "n-a-004.json").exists()


async def test_a_send_cancelled_at_shutdown_is_still_written(tmp_path: Path) -> None:
    channel = OutboxChannel(tmp_path, "email")
    sending = asyncio.create_task(channel.send_run([message(n) for n in range(8)], NOW))
    await asyncio.sleep(0)  # handed to the writer
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    await channel.close()  # waits for the group in hand
    assert journal(tmp_path) == [f"n-a-{n:03d}" for n in range(8)]
    assert all((tmp_path / f"n-a-{n:03d}.json").is_file() for n in range(8))
