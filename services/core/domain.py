"""Pure domain types shared by every service: no SQLAlchemy, no I/O.

The rules engine takes an `EventFacts`, a `CaseContext` and `now`, and returns `Decision`s.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    SEND = "send"
    HOLD = "hold"
    SUPPRESS = "suppress"
    MERGE = "merge"
    ESCALATE = "escalate"
    TASK = "task"


class Role(StrEnum):
    SURVIVOR = "survivor"
    ADVOCATE = "advocate"
    SUPERVISOR = "supervisor"


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    LETTER_TASK = "letter_task"
    ADVOCATE_TASK = "advocate_task"


class Relationship(StrEnum):
    VICTIM = "victim"
    PARENT_GUARDIAN = "parent_guardian"
    BEREAVED_FAMILY = "bereaved_family"


class Frequency(StrEnum):
    ALL = "all"
    KEY_STAGES = "key_stages"
    NONE = "none"


class Detail(StrEnum):
    DISCREET = "discreet"
    DETAILED = "detailed"


class EventStatus(StrEnum):
    """Where a recorded case event is in its life (`case_events.status`)."""

    PENDING = "pending"
    PROCESSED = "processed"
    AWAITING_CONTEXT = "awaiting_context"
    FAILED = "failed"


# Notifications ids are uuid5 in this namespace, so reprocessing an event never makes a second one.
NOTIFICATION_NAMESPACE = uuid.UUID("6f1d8a52-3c1e-5b7a-9d0e-2a4b6c8d0e1f")


def notification_id(source: str, event_id: str, recipient: str, rule: str) -> str:
    """The deterministic id of the notification `rule` makes for `recipient` from one event."""
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, "\x1f".join((source, event_id, recipient, rule))))


@dataclass(frozen=True)
class EventFacts:
    """What the rules engine needs of a case event (never the victims' contact details)."""

    source: str
    event_id: str
    type: str
    urn: str
    time: datetime
    agency_received_at: datetime | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContactPreference:
    """The current version of a survivor's contact preferences (ids and flags, no values)."""

    version: int
    has_phone: bool
    has_email: bool
    sms_safe: bool
    sms_safe_review_by: date | None
    email_safe: bool
    email_safe_review_by: date | None
    language: str = "en"
    timezone: str = "Europe/London"
    safe_window_start: time = time(9, 0)
    safe_window_end: time = time(20, 0)
    frequency: Frequency = Frequency.ALL
    detail: Detail = Detail.DISCREET
    opted_out: bool = False
    # A postal address is on file, and letters to it are recorded as safe (no one else opens
    # the post). The record has no review date for letters yet.
    has_address: bool = False
    letter_safe: bool = False
    letter_safe_review_by: date | None = None


# --- which channel is safe (trauma-informed rule 1), shared by the rules, the dispatcher's
# actions and the notifier's last look and fallback, so the rule is written once ---------------


def safe_channel(pref: ContactPreference | None, today: date) -> Channel | None:
    """The digital channel recorded as safe today (SMS first, then e-mail), or None.

    A safety check past its review date no longer counts (trauma-informed rule 1). A letter is
    the last resort, not a digital channel: see `letter_is_safe`.
    """
    for channel in (Channel.SMS, Channel.EMAIL):
        if channel_is_safe(pref, channel, today):
            return channel
    return None


def letter_is_safe(pref: ContactPreference | None, today: date | None = None) -> bool:
    """A postal address is on file and letters to it are recorded as safe, and (given `today`)
    the safety check is not past its review date."""
    if pref is None or not (pref.has_address and pref.letter_safe):
        return False
    return today is None or _current(pref.letter_safe_review_by, today)


def channel_is_safe(pref: ContactPreference | None, channel: Channel | str, today: date) -> bool:
    """Whether `channel` is recorded as safe for this survivor today (rule 1), for any channel."""
    if pref is None:
        return False
    if channel == Channel.SMS:
        return pref.has_phone and pref.sms_safe and _current(pref.sms_safe_review_by, today)
    if channel == Channel.EMAIL:
        return pref.has_email and pref.email_safe and _current(pref.email_safe_review_by, today)
    if channel == Channel.LETTER_TASK:
        return letter_is_safe(pref, today)
    return False


def _current(review_by: date | None, today: date) -> bool:
    return review_by is None or review_by >= today


@dataclass(frozen=True)
class Person:
    """A recipient known by id and role; the notifier looks up how to reach them."""

    id: int
    role: Role


@dataclass(frozen=True)
class SurvivorContext:
    survivor: Person
    relationship: Relationship
    preference: ContactPreference | None
    advocate: Person | None  # the assigned advocate, or the team's supervisor standing in
    supervisor: Person | None = None  # alerted when held news waits too long


@dataclass(frozen=True)
class CaseContext:
    case_id: int
    urn: str
    enhanced_rights: bool
    survivors: tuple[SurvivorContext, ...]


@dataclass(frozen=True)
class Decision:
    """One thing the engine decided about one recipient, with the rule that made it."""

    outcome: Outcome
    recipient: Person
    channel: Channel | None
    template: str | None
    send_at: datetime | None
    due_by: datetime | None
    rule: str  # "<rules_version>:<rule_id>"
    hold_reason: str | None = None
    detail: Detail = Detail.DISCREET
    language: str = "en"
    survivor_id: int | None = None  # the survivor this decision is about
    # The rule of the survivor's held message this decision is about (an alert, a tell-first).
    related_rule: str | None = None
    # "while_held": send only if that held message is still waiting when this one is due.
    condition: str | None = None
    # A survivor message in this group replaces their unsent older ones of the same case.
    coalesce_key: str | None = None

    @property
    def makes_notification(self) -> bool:
        return self.outcome in (Outcome.SEND, Outcome.HOLD, Outcome.TASK)
