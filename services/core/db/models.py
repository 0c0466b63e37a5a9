"""The database model: PostgreSQL in production, SQLite embedded; the same migrations on both.

Every personal field is a `Protected*` column. The audit log holds ids, codes and rule names
only, so erasing a survivor never breaks it.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Time,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.core.db.protected import Protected, ProtectedBytes, ProtectedJSON
from services.core.db.types import UTCDateTime
from services.core.keys import blind_index
from services.core.states import NOT_TOLD

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A 64-bit key on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    # The supervisor stands in for an advocate when a survivor has none (trauma-informed 15).
    # An advocate id; not a foreign key because advocates also point at their team, and a
    # cycle of keys cannot be created the same way on SQLite and PostgreSQL.
    supervisor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)


class Advocate(Base):
    __tablename__ = "advocates"
    id: Mapped[int] = mapped_column(primary_key=True)
    staff_ref: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))  # isva, idva, witness_care, supervisor
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), nullable=True)
    display_name: Mapped[str] = mapped_column(Protected())
    email: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    phone: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(primary_key=True)
    urn: Mapped[str] = mapped_column(String(16), unique=True)
    crime_reference: Mapped[str | None] = mapped_column(String(100), nullable=True)
    offence_category: Mapped[str | None] = mapped_column(String(48), nullable=True)
    enhanced_rights: Mapped[bool] = mapped_column(Boolean, default=False)
    enhanced_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Survivor(Base):
    __tablename__ = "survivors"
    id: Mapped[int] = mapped_column(primary_key=True)
    # The upstream system's reference for the person (source + party id), to recognise them again.
    party_ref: Mapped[str | None] = mapped_column(String(420), unique=True, nullable=True)
    full_name: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    preferred_name: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    date_of_birth: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    consent_to_referral: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    erased_at: Mapped[datetime | None] = mapped_column(nullable=True)


class CaseSurvivor(Base):
    """Cases and survivors, many to many: several victims, a guardian, bereaved family."""

    __tablename__ = "case_survivors"
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("survivors.id"), primary_key=True)
    relationship: Mapped[str] = mapped_column(String(24), default="victim")
    added_at: Mapped[datetime]


class AdvocateAssignment(Base):
    """Which advocate supports a survivor, and when (holds follow a reassignment)."""

    __tablename__ = "advocate_assignments"
    __table_args__ = (Index(None, "survivor_id", "valid_from"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("survivors.id"))
    advocate_id: Mapped[int] = mapped_column(ForeignKey("advocates.id"))
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None] = mapped_column(nullable=True)
    reason: Mapped[str] = mapped_column(String(48), default="referral")


class ContactPreference(Base):
    """One version of a survivor's contact preferences; the highest version is current."""

    __tablename__ = "contact_preferences"
    __table_args__ = (UniqueConstraint("survivor_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("survivors.id"))
    version: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(200))  # "advocate:<id>" or an event source
    reason_code: Mapped[str] = mapped_column(String(48))
    reason_note: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    phone: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    # Keyed blind index of `phone` (HMAC-SHA256 hex): how an inbound text finds its survivor.
    # Set from `phone` at every ORM insert and update (`_index_phone`, below).
    phone_index: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    email: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    postal_address: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    sms_safe: Mapped[bool] = mapped_column(Boolean, default=False)
    sms_safe_review_by: Mapped[date | None] = mapped_column(Date, nullable=True)
    email_safe: Mapped[bool] = mapped_column(Boolean, default=False)
    email_safe_review_by: Mapped[date | None] = mapped_column(Date, nullable=True)
    letter_safe: Mapped[bool] = mapped_column(Boolean, default=False)
    letter_safe_review_by: Mapped[date | None] = mapped_column(Date, nullable=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/London")
    safe_window_start: Mapped[time] = mapped_column(Time, default=time(9, 0))
    safe_window_end: Mapped[time] = mapped_column(Time, default=time(20, 0))
    frequency: Mapped[str] = mapped_column(String(16), default="all")
    detail: Mapped[str] = mapped_column(String(16), default="discreet")
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    # One short, optional question after a key stage ("how well were you kept informed?").
    feedback_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)


@event.listens_for(ContactPreference, "before_insert")
@event.listens_for(ContactPreference, "before_update")
def _index_phone(_mapper: Any, _connection: Any, preference: ContactPreference) -> None:
    # At every ORM write, whoever writes the row: an index nobody has to remember to set.
    phone = preference.phone
    preference.phone_index = blind_index(phone) if phone else None


class CaseEvent(Base):
    """One row per (source, id). The payload is protected: it can carry victims' details."""

    __tablename__ = "case_events"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index(None, "status", "received_at"),
        Index(None, "urn"),
        # The re-drive's "has the rules consumer processed anything lately" (max of processed_at).
        Index(None, "processed_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(80))
    urn: Mapped[str] = mapped_column(String(16))
    event_time: Mapped[datetime]
    agency_received_at: Mapped[datetime | None] = mapped_column(nullable=True)
    received_at: Mapped[datetime]
    payload: Mapped[Any] = mapped_column(ProtectedJSON())
    payload_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24), default="pending")
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)
    processed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rules_version: Mapped[str | None] = mapped_column(String(32), nullable=True)


class RejectedRecord(Base):
    """A record that could not be accepted, kept with its reason: nothing is lost."""

    __tablename__ = "rejected_records"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime]
    way_in: Mapped[str] = mapped_column(String(16))  # http, kafka, file
    feed: Mapped[str | None] = mapped_column(String(32), nullable=True)
    source: Mapped[str | None] = mapped_column(String(200), nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason_code: Mapped[str] = mapped_column(String(48))
    # Pointers and our own messages only: never a value from the record.
    errors: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    original: Mapped[bytes] = mapped_column(ProtectedBytes())
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # `carehub dlq replay`: how often it was tried again, and when it finally went through.
    replays: Mapped[int] = mapped_column(Integer, default=0)
    replayed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    replay_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)


class DecisionRow(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        Index(None, "case_event_id"),
        # A case's decisions: the survivor's timeline in the portal.
        Index(None, "case_id"),
        # The compliance report's duties falling due in a period (see Notification).
        Index("ix_decisions_due_by", "due_by", postgresql_using="brin"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_event_id: Mapped[int] = mapped_column(ForeignKey("case_events.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    recipient_role: Mapped[str] = mapped_column(String(16))
    recipient_id: Mapped[int] = mapped_column(Integer)
    survivor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channel: Mapped[str | None] = mapped_column(String(16), nullable=True)
    template: Mapped[str | None] = mapped_column(String(80), nullable=True)
    send_at: Mapped[datetime | None] = mapped_column(nullable=True)
    due_by: Mapped[datetime | None] = mapped_column(nullable=True)
    hold_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rule: Mapped[str] = mapped_column(String(96))
    notification_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    decided_at: Mapped[datetime]


# The partial indexes' conditions. A query that wants one of them says the same in literals
# (`services.core.db.queries.not_told`): a bound parameter would not prove it to the planner.
NOT_TOLD_WHERE = "informed_at IS NULL AND status IN ({})".format(
    ", ".join(f"'{status}'" for status in NOT_TOLD)
)
SURVIVOR_TOLD_WHERE = "recipient_role = 'survivor' AND informed_at IS NOT NULL"
FAILED = ("failed", "unknown")  # a delivery that failed, or that nobody knows went
FAILED_WHERE = "status IN ({})".format(", ".join(f"'{status}'" for status in FAILED))
PARKED_ALERT = "event.parked_too_long"
PARKED_ALERT_WHERE = f"action = '{PARKED_ALERT}'"


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        Index(None, "status", "send_at"),
        Index(None, "case_id"),
        # The letter and decision look-ups of an event's messages (the notifier, the portal).
        Index(None, "case_event_id"),
        # What nobody has been told yet: the gauges count it every beat. Partial, so it stays
        # as small as the work in hand while the table holds years of history.
        Index(
            "ix_notifications_not_told",
            "status",
            "recipient_role",
            "due_by",
            postgresql_where=text(NOT_TOLD_WHERE),
            sqlite_where=text(NOT_TOLD_WHERE),
        ),
        # The compliance report's duties falling due in a period. BRIN: `due_by` follows the
        # order rows are written in, so a few pages of summaries find a quarter among years
        # (a B-tree on SQLite, which has no BRIN).
        Index("ix_notifications_due_by", "due_by", postgresql_using="brin"),
        # Deliveries that failed or are in doubt, latest first: the portal's Operations page.
        Index(
            "ix_notifications_failed_at",
            "updated_at",
            postgresql_where=text(FAILED_WHERE),
            sqlite_where=text(FAILED_WHERE),
        ),
        # What survivors were told, by when: the feedback question's look-back.
        Index(
            "ix_notifications_survivor_informed_at",
            "informed_at",
            postgresql_where=text(SURVIVOR_TOLD_WHERE),
            sqlite_where=text(SURVIVOR_TOLD_WHERE),
        ),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid5, deterministic
    case_event_id: Mapped[int] = mapped_column(ForeignKey("case_events.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    event_source: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[str] = mapped_column(String(200))
    recipient_role: Mapped[str] = mapped_column(String(16))
    survivor_id: Mapped[int | None] = mapped_column(ForeignKey("survivors.id"), nullable=True)
    advocate_id: Mapped[int | None] = mapped_column(ForeignKey("advocates.id"), nullable=True)
    # None while held for want of a safe channel: the advocate finds one first.
    channel: Mapped[str | None] = mapped_column(String(16), nullable=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    detail: Mapped[str] = mapped_column(String(16), default="discreet")
    template: Mapped[str] = mapped_column(String(80))
    template_version: Mapped[int] = mapped_column(Integer, default=1)
    rules_version: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(96))
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hold_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    send_at: Mapped[datetime | None] = mapped_column(nullable=True)
    due_by: Mapped[datetime | None] = mapped_column(nullable=True)
    supersedes_id: Mapped[str | None] = mapped_column(ForeignKey("notifications.id"), nullable=True)
    coalesce_key: Mapped[str | None] = mapped_column(String(120), nullable=True)
    # The survivor's held message this one is about (a tell-first, a supervisor alert).
    related_id: Mapped[str | None] = mapped_column(ForeignKey("notifications.id"), nullable=True)
    # "while_held": only sent if the related message is still held when this one falls due.
    send_condition: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The survivor's text this one passes to their advocate (advocate_survivor_replied).
    inbound_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    queued_at: Mapped[datetime | None] = mapped_column(nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    informed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    provider_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The advocate's own line, added when they released a held message (within the bounds of
    # services.core.discreet).
    personal_line: Mapped[str | None] = mapped_column(Protected(), nullable=True)


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"
    __table_args__ = (
        UniqueConstraint("notification_id", "attempt_no"),
        # The re-drive's "has the notifier sent anything lately" (max of started_at).
        Index(None, "started_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notifications.id"))
    attempt_no: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    provider_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # What was handed over, so a resumed attempt asks about (and if need be sends) the same words.
    to_address: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    subject: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    body: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)
    template_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The provider's own words beside ours: its status ("queued", "250 OK") and error code.
    provider_status: Mapped[str | None] = mapped_column(String(64), nullable=True)
    provider_code: Mapped[str | None] = mapped_column(String(16), nullable=True)


class InboundMessage(Base):
    """A text a survivor (or anyone) sent to our number: kept for the advocate, protected."""

    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime]
    provider: Mapped[str] = mapped_column(String(16))
    provider_ref: Mapped[str] = mapped_column(String(64))
    from_address: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    body: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    # stop, start, help or safety (anything else: passed to the advocate at once)
    kind: Mapped[str] = mapped_column(String(16))
    survivor_ids: Mapped[list[int]] = mapped_column(JSON, default=list)


class SendRate(Base):
    """One row per sender: the earliest Unix time its next message may go (a shared limit)."""

    __tablename__ = "send_rates"
    sender: Mapped[str] = mapped_column(String(128), primary_key=True)
    next_at: Mapped[float] = mapped_column(Float)


class AuditEntry(Base):
    """An append-only record of a decision or a delivery step: ids and codes, no free text.

    `seq` orders the rows; the sealer chains them later in `audit_seals` (see
    `services.core.audit_seal`), so writers never wait on one another. A trigger refuses UPDATE
    and DELETE on this table (migration 0005).
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index(None, "notification_id"),
        Index(None, "case_id"),
        # Which parked events operations were already warned of (`alert_parked`, every beat):
        # partial, so the question does not read the whole log.
        Index(
            "ix_audit_log_parked_alerts",
            "case_event_id",
            postgresql_where=text(PARKED_ALERT_WHERE),
            sqlite_where=text(PARKED_ALERT_WHERE),
        ),
    )
    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))  # service name or "advocate:<id>"
    action: Mapped[str] = mapped_column(String(64))  # stable dotted code: notification.sent
    case_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    case_event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    notification_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    rule: Mapped[str | None] = mapped_column(String(96), nullable=True)
    codes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditSeal(Base):
    """One link of the audit hash chain: seals the audit row `seq` at chain `position`.

    Append-only (a trigger refuses UPDATE and DELETE); written only by the sealer.
    """

    __tablename__ = "audit_seals"
    __table_args__ = (UniqueConstraint("seq"),)  # a row is sealed once
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime]


class AuditChainHead(Base):
    """The one row (id 1) the sealer locks to extend the chain: its last link and sweep marks."""

    __tablename__ = "audit_chain_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    # Every row with seq <= swept_to is sealed (rows of transactions open past the horizon are
    # caught by the periodic full sweep, from `sweep_floor`).
    swept_to: Mapped[int] = mapped_column(BigInteger)
    candidate_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # These three are the database's clock (real time), not the application clock.
    candidate_at: Mapped[datetime | None] = mapped_column(nullable=True)
    full_sweep_at: Mapped[datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Where the next full sweep starts (the `swept_to` the sweep before last found), and what it
    # will be after the next one.
    sweep_floor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    sweep_next_floor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class LetterTask(Base):
    """A letter for a person to print and post: the notifier's `letter_task` channel.

    One per notification (storing it twice is a no-op), holding the rendered letter as plain
    text and HTML and the address it goes to, all protected. `posted_at` is set when staff mark
    it posted; the notification then counts as informed two working days later.
    """

    __tablename__ = "letter_tasks"
    __table_args__ = (Index(None, "posted_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notifications.id"), unique=True)
    subject: Mapped[str] = mapped_column(Protected())
    body_text: Mapped[str] = mapped_column(Protected())
    body_html: Mapped[str] = mapped_column(Protected())
    address: Mapped[str] = mapped_column(Protected())
    created_at: Mapped[datetime]
    printed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    posted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    posted_by: Mapped[str | None] = mapped_column(String(64), nullable=True)  # "staff:<id>"


class FeedbackQuestion(Base):
    """One short question to a survivor who opted in, after a key stage of their case: how well
    were they kept informed? Answered by a text reply (a number 1-5) or through a link."""

    __tablename__ = "feedback_questions"
    __table_args__ = (
        UniqueConstraint("survivor_id", "about_notification_id"),
        Index(None, "asked_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("survivors.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    # The key-stage message it asks about, and the message that asks.
    about_notification_id: Mapped[str] = mapped_column(ForeignKey("notifications.id"))
    question_notification_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(80))
    asked_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    answered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    score: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1 (badly) .. 5 (very well)
    comment: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    answered_via: Mapped[str | None] = mapped_column(String(8), nullable=True)  # sms, link


class StaffAccount(Base):
    """A person who signs in to the portal: an advocate, a supervisor or operations.

    Advocates and supervisors are linked to their `advocates` row (what they may see follows
    from it); operations staff see no personal data and have none. The password is an argon2
    hash; the TOTP secret is protected like every other secret a database dump must not give away.
    """

    __tablename__ = "staff_accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # advocate, supervisor, operations
    advocate_id: Mapped[int | None] = mapped_column(ForeignKey("advocates.id"), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str] = mapped_column(Protected())
    # The last TOTP time step accepted: a code is good once (a replayed code is refused).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]


class StaffSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "staff_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256(token) hex
    account_id: Mapped[int] = mapped_column(ForeignKey("staff_accounts.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    # "password": the password was right, the second factor is still owed; "full": signed in.
    stage: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ApiToken(Base):
    """A bearer token for upstream and operations tooling, acting as one staff account."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256(token) hex
    account_id: Mapped[int] = mapped_column(ForeignKey("staff_accounts.id"))
    name: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class SignInThrottle(Base):
    """Failed sign-ins per key ("user:<name>", "ip:<address>") in a fixed window, shared by
    every portal process through the database."""

    __tablename__ = "sign_in_throttle"
    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    window_start: Mapped[datetime]
    failures: Mapped[int] = mapped_column(Integer, default=0)


class AdvocateAction(Base):
    """What an advocate asked for about a held message; the dispatcher carries it out.

    The portal never moves a notification itself (design: it writes actions, the dispatcher
    acts), so an action on a message that has since moved on is recorded as moot, not lost.
    """

    __tablename__ = "advocate_actions"
    __table_args__ = (Index(None, "carried_out_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notifications.id"), index=True)
    # release, told_in_person, cancel
    action: Mapped[str] = mapped_column(String(24))
    reason_code: Mapped[str | None] = mapped_column(String(48), nullable=True)
    note: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(64))  # "staff:<id>"
    requested_at: Mapped[datetime]
    # told_in_person: when the advocate actually told the survivor (recorded afterwards).
    told_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # release: a line of the advocate's own, for the message (services.core.discreet).
    personal_line: Mapped[str | None] = mapped_column(Protected(), nullable=True)
    carried_out_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # done, or why not: moot (the message had moved on), refused (not allowed any more)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    outcome_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)


__all__ = [
    "AdvocateAction",
    "ApiToken",
    "SignInThrottle",
    "StaffAccount",
    "StaffSession",
    "AdvocateAssignment",
    "Advocate",
    "AuditChainHead",
    "AuditEntry",
    "AuditSeal",
    "Base",
    "Case",
    "CaseEvent",
    "CaseSurvivor",
    "ContactPreference",
    "DecisionRow",
    "DeliveryAttempt",
    "FeedbackQuestion",
    "InboundMessage",
    "LetterTask",
    "Notification",
    "RejectedRecord",
    "SendRate",
    "Survivor",
    "Team",
]
