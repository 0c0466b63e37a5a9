"""Foundations: cases, survivors, advocates, preferences, events, notifications, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "audit_log",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("case_event_id", sa.BigInteger(), nullable=True),
        sa.Column("notification_id", sa.String(length=36), nullable=True),
        sa.Column("rule", sa.String(length=96), nullable=True),
        sa.Column("codes", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=True),
        sa.Column("seal_hash", sa.String(length=64), nullable=True),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_log_notification_id"), ["notification_id"], unique=False
        )

    op.create_table(
        "case_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=80), nullable=False),
        sa.Column("urn", sa.String(length=16), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agency_received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("rules_version", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_events")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_case_events_source_event_id")),
    )
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_case_events_status_received_at"), ["status", "received_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_case_events_urn"), ["urn"], unique=False)

    op.create_table(
        "rejected_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("way_in", sa.String(length=16), nullable=False),
        sa.Column("feed", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("reason_code", sa.String(length=48), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("original", sa.LargeBinary(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_records")),
    )
    op.create_table(
        "survivors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("party_ref", sa.String(length=240), nullable=True),
        sa.Column("full_name", sa.LargeBinary(), nullable=True),
        sa.Column("preferred_name", sa.LargeBinary(), nullable=True),
        sa.Column("date_of_birth", sa.LargeBinary(), nullable=True),
        sa.Column("consent_to_referral", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survivors")),
        sa.UniqueConstraint("party_ref", name=op.f("uq_survivors_party_ref")),
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("supervisor_id", sa.Integer(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    op.create_table(
        "advocates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("staff_ref", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("display_name", sa.LargeBinary(), nullable=False),
        sa.Column("email", sa.LargeBinary(), nullable=True),
        sa.Column("phone", sa.LargeBinary(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f("fk_advocates_team_id_teams")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_advocates")),
        sa.UniqueConstraint("staff_ref", name=op.f("uq_advocates_staff_ref")),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("urn", sa.String(length=16), nullable=False),
        sa.Column("crime_reference", sa.String(length=64), nullable=True),
        sa.Column("offence_category", sa.String(length=48), nullable=True),
        sa.Column("enhanced_rights", sa.Boolean(), nullable=False),
        sa.Column("enhanced_reasons", sa.JSON(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f("fk_cases_team_id_teams")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("urn", name=op.f("uq_cases_urn")),
    )
    op.create_table(
        "contact_preferences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survivor_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("reason_code", sa.String(length=48), nullable=False),
        sa.Column("reason_note", sa.LargeBinary(), nullable=True),
        sa.Column("phone", sa.LargeBinary(), nullable=True),
        sa.Column("email", sa.LargeBinary(), nullable=True),
        sa.Column("postal_address", sa.LargeBinary(), nullable=True),
        sa.Column("sms_safe", sa.Boolean(), nullable=False),
        sa.Column("sms_safe_review_by", sa.Date(), nullable=True),
        sa.Column("email_safe", sa.Boolean(), nullable=False),
        sa.Column("email_safe_review_by", sa.Date(), nullable=True),
        sa.Column("letter_safe", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("safe_window_start", sa.Time(), nullable=False),
        sa.Column("safe_window_end", sa.Time(), nullable=False),
        sa.Column("frequency", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=16), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["survivor_id"],
            ["survivors.id"],
            name=op.f("fk_contact_preferences_survivor_id_survivors"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_preferences")),
        sa.UniqueConstraint(
            "survivor_id", "version", name=op.f("uq_contact_preferences_survivor_id_version")
        ),
    )
    op.create_table(
        "advocate_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survivor_id", sa.Integer(), nullable=False),
        sa.Column("advocate_id", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=48), nullable=False),
        sa.ForeignKeyConstraint(
            ["advocate_id"],
            ["advocates.id"],
            name=op.f("fk_advocate_assignments_advocate_id_advocates"),
        ),
        sa.ForeignKeyConstraint(
            ["survivor_id"],
            ["survivors.id"],
            name=op.f("fk_advocate_assignments_survivor_id_survivors"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_advocate_assignments")),
    )
    with op.batch_alter_table("advocate_assignments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_advocate_assignments_survivor_id_valid_from"),
            ["survivor_id", "valid_from"],
            unique=False,
        )

    op.create_table(
        "case_survivors",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("survivor_id", sa.Integer(), nullable=False),
        sa.Column("relationship", sa.String(length=24), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_survivors_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["survivor_id"], ["survivors.id"], name=op.f("fk_case_survivors_survivor_id_survivors")
        ),
        sa.PrimaryKeyConstraint("case_id", "survivor_id", name=op.f("pk_case_survivors")),
    )
    op.create_table(
        "decisions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "case_event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("recipient_role", sa.String(length=16), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("survivor_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("template", sa.String(length=80), nullable=True),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hold_reason", sa.String(length=64), nullable=True),
        sa.Column("rule", sa.String(length=96), nullable=False),
        sa.Column("notification_id", sa.String(length=36), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_event_id"],
            ["case_events.id"],
            name=op.f("fk_decisions_case_event_id_case_events"),
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_decisions_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_decisions_case_event_id"), ["case_event_id"], unique=False
        )

    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column(
            "case_event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("event_source", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("recipient_role", sa.String(length=16), nullable=False),
        sa.Column("survivor_id", sa.Integer(), nullable=True),
        sa.Column("advocate_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("detail", sa.String(length=16), nullable=False),
        sa.Column("template", sa.String(length=80), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("rules_version", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.String(length=96), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=64), nullable=True),
        sa.Column("hold_reason", sa.String(length=64), nullable=True),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("supersedes_id", sa.String(length=36), nullable=True),
        sa.Column("coalesce_key", sa.String(length=120), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("informed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_ref", sa.String(length=128), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["advocate_id"], ["advocates.id"], name=op.f("fk_notifications_advocate_id_advocates")
        ),
        sa.ForeignKeyConstraint(
            ["case_event_id"],
            ["case_events.id"],
            name=op.f("fk_notifications_case_event_id_case_events"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_notifications_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"],
            ["notifications.id"],
            name=op.f("fk_notifications_supersedes_id_notifications"),
        ),
        sa.ForeignKeyConstraint(
            ["survivor_id"], ["survivors.id"], name=op.f("fk_notifications_survivor_id_survivors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_notifications_status_send_at"), ["status", "send_at"], unique=False
        )

    op.create_table(
        "delivery_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("notification_id", sa.String(length=36), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("provider_ref", sa.String(length=128), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_delivery_attempts_notification_id_notifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
        sa.UniqueConstraint(
            "notification_id",
            "attempt_no",
            name=op.f("uq_delivery_attempts_notification_id_attempt_no"),
        ),
    )


def downgrade() -> None:

    op.drop_table("delivery_attempts")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_status_send_at"))
        batch_op.drop_index(batch_op.f("ix_notifications_case_id"))

    op.drop_table("notifications")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_case_event_id"))

    op.drop_table("decisions")
    op.drop_table("case_survivors")
    with op.batch_alter_table("advocate_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_advocate_assignments_survivor_id_valid_from"))

    op.drop_table("advocate_assignments")
    op.drop_table("contact_preferences")
    op.drop_table("cases")
    op.drop_table("advocates")
    op.drop_table("teams")
    op.drop_table("survivors")
    op.drop_table("rejected_records")
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_events_urn"))
        batch_op.drop_index(batch_op.f("ix_case_events_status_received_at"))

    op.drop_table("case_events")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_notification_id"))
        batch_op.drop_index(batch_op.f("ix_audit_log_case_id"))

    op.drop_table("audit_log")
