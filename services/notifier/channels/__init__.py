"""Delivery channels, one module per provider, behind `DeliveryChannel` (base.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.settings import EmailChannel, Settings, SmsChannel
from services.notifier.channels.base import DeliveryChannel
from services.notifier.channels.letter import LetterChannel
from services.notifier.channels.outbox import OutboxChannel


def channels_from_settings(
    settings: Settings, sessions: async_sessionmaker[AsyncSession] | None = None
) -> dict[str, DeliveryChannel]:
    """The channel for each kind of message, chosen explicitly by settings (never inferred).

    Letters (`letter_task`) are always stored in the database for a person to post, so the
    letter channel needs `sessions`; without them there is none (a letter then fails and its
    survivor is handed to their advocate).
    """
    settings.check_channels()
    outbox = settings.resolved_outbox_dir
    channels: dict[str, DeliveryChannel] = {
        "sms": OutboxChannel(outbox, "sms"),
        "email": OutboxChannel(outbox, "email"),
    }
    if sessions is not None:
        channels["letter_task"] = LetterChannel(sessions)
    if settings.sms_channel is SmsChannel.TWILIO:
        from services.notifier.channels.twilio import TwilioChannel

        assert settings.twilio_account_sid and settings.twilio_auth_token  # check_channels
        assert settings.public_base_url
        channels["sms"] = TwilioChannel(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            messaging_service_sid=settings.twilio_messaging_service_sid,
            sender=settings.twilio_from,
            public_base_url=settings.public_base_url,
            base_url=settings.twilio_base_url,
            allowlist=settings.allowlist,
            timeout_s=settings.twilio_timeout_s,
        )
    if settings.email_channel is EmailChannel.SMTP:
        from services.notifier.channels.smtp import SmtpChannel

        assert settings.smtp_host and settings.smtp_from
        channels["email"] = SmtpChannel(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            sender=settings.smtp_from,
            sender_name=settings.email_sender_name,
            security=settings.smtp_security,
            timeout_s=settings.smtp_timeout_s,
        )
    return channels
