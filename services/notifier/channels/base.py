"""The one small interface every delivery channel implements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class OutgoingMessage:
    """A rendered message, ready for a channel. Holds personal data: never log it."""

    notification_id: str
    event_id: str
    case_urn: str
    recipient_role: str
    channel: str
    to: str
    language: str
    template: str
    template_version: int
    subject: str | None
    body: str
    send_at: datetime | None
    due_by: datetime | None


@dataclass(frozen=True)
class SendResult:
    provider_ref: str
    # True when handing over is itself delivery (the outbox); a provider reports it later.
    delivered: bool
    at: datetime


class DeliveryChannel(Protocol):
    name: str

    async def send(self, message: OutgoingMessage, now: datetime) -> SendResult:
        """Hand the message over; raise `PermanentFailure` or `TemporaryFailure` if it fails."""
        ...

    async def lookup(self, notification_id: str) -> SendResult | None:
        """What the channel knows of an earlier attempt (after a crash), or None."""
        ...


class PermanentFailure(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class TemporaryFailure(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code
