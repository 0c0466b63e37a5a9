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
    # The provider's own word for what happened ("queued", "accepted", "250 OK"), kept beside ours.
    provider_status: str | None = None


class DeliveryChannel(Protocol):
    name: str
    # True when `lookup` can tell whether a cut-off attempt reached the provider (Twilio, the
    # outbox). False for SMTP: an ambiguous e-mail becomes `unknown`, never resent blindly.
    verifiable: bool
    # True when `lookup` finds messages by address and words (Twilio), which the same words to
    # the same person twice make ambiguous; False when it finds them by our notification id (the
    # outbox, letters). On such a channel a person has one unresolved message at most.
    finds_by_words: bool

    async def send(self, message: OutgoingMessage, now: datetime) -> SendResult:
        """Hand the message over; raise `PermanentFailure`, `TemporaryFailure` or
        `AmbiguousFailure` if it fails."""
        ...

    # A channel may also take a run of one person's messages at once, in order:
    # `async def send_run(messages, now) -> list[SendResult]`, which hands them over in order and
    # raises what the first that failed raised (those before it handed over, those after it not
    # begun). Only where a hand-over cannot fail but by raising (the outbox): a run that needs a
    # look-up first, or a rate limit, goes one message at a time through `send`.

    async def lookup(self, message: OutgoingMessage, since: datetime) -> list[SendResult]:
        """Messages the provider holds to this address with these words, sent at or after
        `since`, newest first (empty if none). The same words can go to the same person more
        than once (two updates), so the caller decides which, if any, is this notification's."""
        ...

    async def close(self) -> None:
        """Release connections; called once when the notifier stops."""
        ...


class ChannelFailure(Exception):
    """Our code (`code`) beside the provider's own (`provider_code`, `provider_status`)."""

    def __init__(
        self,
        code: str,
        *,
        provider_code: str | None = None,
        provider_status: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.provider_code = provider_code
        self.provider_status = provider_status
        self.retry_after = retry_after


class PermanentFailure(ChannelFailure):
    """The provider refused for good (an invalid or unsubscribed number): never retry."""


class TemporaryFailure(ChannelFailure):
    """Worth trying again later (connection error, timeout, 5xx, 429)."""


class AmbiguousFailure(ChannelFailure):
    """The message may or may not have gone (a connection cut after the data was sent), and the
    provider cannot be asked: never resend blindly."""
