"""Delivery channels, one module per provider, behind `DeliveryChannel` (base.py)."""

from __future__ import annotations

from services.core.settings import Settings
from services.notifier.channels.base import DeliveryChannel
from services.notifier.channels.outbox import OutboxChannel


def channels_from_settings(settings: Settings) -> dict[str, DeliveryChannel]:
    """The channel for each kind of message, chosen explicitly by settings (never inferred)."""
    settings.check_channels()
    outbox = settings.resolved_outbox_dir
    return {"sms": OutboxChannel(outbox, "sms"), "email": OutboxChannel(outbox, "email")}
