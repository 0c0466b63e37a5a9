"""The outbox channel: one JSON file per notification, for development and demos.

`$CAREHUB_OUTBOX_DIR/<notification_id>.json`, written to a temporary name and renamed, so a
reader never sees half a file and sending the same notification twice writes the same file.
The files hold personal data in plain text: never use this channel in production.
`journal.log` beside them gets one line (id, time) per hand-over.

Files are written by a thread of the channel's own (`_GroupWriter`), while the event loop gets
on with other work: on the loop, creating a file and its `fsync` took about 0.7 ms of the
notifier's 1.6-2.3 ms a message. A run of one person's messages (`send_run`) is handed over in one
go, and whatever comes in while a group is being written goes in the next group, so the loop
hands work to the thread once a group, not once a message (a hand-off to a thread and back
costs more than a small file: see docs/performance.md). Within a run each file is on disk and
renamed before the next is begun, so a run is handed over in order.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from services.notifier.channels.base import OutgoingMessage, SendResult

JOURNAL = "journal.log"
OUTBOX_KEYS = (
    "notification_id",
    "event_id",
    "case_urn",
    "recipient_role",
    "channel",
    "to",
    "language",
    "template",
    "template_version",
    "subject",
    "body",
    "send_at",
    "due_by",
    "written_at",
)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


_Run = list[tuple[str, str]]  # (notification id, the file's text), in order


class _GroupWriter:
    """Writes outbox files in a thread of its own, the runs that came in meanwhile together."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._pending: list[tuple[_Run, str, asyncio.Future[None]]] = []
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None  # held: the loop keeps tasks weakly
        self._thread: ThreadPoolExecutor | None = None

    async def write(self, run: _Run, written_at: str) -> None:
        """Return once every file of `run` is on disk; else raise what writing the first one
        that failed raised (those before it are written, those after it are not begun)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((run, written_at, done))
        if not self._busy:
            self._busy = True
            self._drainer = loop.create_task(self._drain())
        # Shielded: a send cancelled now (a shutdown) leaves its files to be finished; the
        # re-drive finds each by its notification id, as after a crash.
        await asyncio.shield(done)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                group, self._pending = self._pending, []
                if self._thread is None:
                    self._thread = ThreadPoolExecutor(1, thread_name_prefix="carehub-outbox")
                runs = [(run, at) for run, at, _ in group]
                try:
                    errors = await loop.run_in_executor(self._thread, self._write_group, runs)
                except BaseException as exc:  # noqa: BLE001 - each waiting send gets it
                    errors = [exc] * len(group)
                for (*_, done), error in zip(group, errors, strict=True):
                    if done.done():
                        continue
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
        finally:
            self._busy = False

    def _write_group(self, runs: list[tuple[_Run, str]]) -> list[BaseException | None]:
        """In the writer's thread: each run's files in order, each to a temporary name,
        `fsync`ed and renamed (a run stops at its first failure); then the directory `fsync`ed
        once, so the renames last; then a journal line for each file written."""
        self.directory.mkdir(parents=True, exist_ok=True)
        errors: list[BaseException | None] = []
        lines: list[str] = []
        for run, written_at in runs:
            error: BaseException | None = None
            for notification_id, text in run:
                try:
                    self._write_file(notification_id, text)
                except OSError as exc:
                    error = exc
                    break
                lines.append(f"{notification_id} {written_at}\n")
            errors.append(error)
        if lines:
            try:
                directory = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
                # One line per hand-over, so an operator (or a test) can see that nothing was
                # sent twice.
                with open(self.directory / JOURNAL, "a", encoding="utf-8") as journal:
                    journal.write("".join(lines))
            except OSError as exc:
                errors = [error or exc for error in errors]
        return errors

    def _write_file(self, notification_id: str, text: str) -> None:
        final = self.directory / f"{notification_id}.json"
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)

    async def close(self) -> None:
        """Finish what was handed over (sends cancelled meanwhile included), then stop the
        thread. Nothing is handed over after this (the consumers have stopped)."""
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)
            self._drainer = None
        if self._thread is not None:
            await asyncio.to_thread(self._thread.shutdown, wait=True)
            self._thread = None


class OutboxChannel:
    verifiable = True
    finds_by_words = False

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self._writer = _GroupWriter(directory)

    def path_for(self, notification_id: str) -> Path:
        return self.directory / f"{notification_id}.json"

    async def send(self, message: OutgoingMessage, now: datetime) -> SendResult:
        return (await self.send_run([message], now))[0]

    async def send_run(
        self, messages: Sequence[OutgoingMessage], now: datetime
    ) -> list[SendResult]:
        """Hand over several messages, in order, in one go (`DeliveryChannel.send_run`)."""
        written_at = _iso(now)
        run = [(m.notification_id, self._document(m, written_at)) for m in messages]
        await self._writer.write(run, str(written_at))
        return [
            SendResult(
                provider_ref=f"outbox:{m.notification_id}",
                delivered=True,
                at=now,
                provider_status="written",
            )
            for m in messages
        ]

    @staticmethod
    def _document(message: OutgoingMessage, written_at: str | None) -> str:
        document = {
            "notification_id": message.notification_id,
            "event_id": message.event_id,
            "case_urn": message.case_urn,
            "recipient_role": message.recipient_role,
            "channel": message.channel,
            "to": message.to,
            "language": message.language,
            "template": message.template,
            "template_version": message.template_version,
            "subject": message.subject,
            "body": message.body,
            "send_at": _iso(message.send_at),
            "due_by": _iso(message.due_by),
            "written_at": written_at,
        }
        return json.dumps(document, ensure_ascii=False, indent=2)

    async def lookup(self, message: OutgoingMessage, since: datetime) -> list[SendResult]:
        notification_id = message.notification_id
        path = self.path_for(notification_id)
        try:
            written = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return []
        at = datetime.fromisoformat(str(written.get("written_at")).replace("Z", "+00:00"))
        return [
            SendResult(
                provider_ref=f"outbox:{notification_id}",
                delivered=True,
                at=at,
                provider_status="written",
            )
        ]

    async def close(self) -> None:
        await self._writer.close()
