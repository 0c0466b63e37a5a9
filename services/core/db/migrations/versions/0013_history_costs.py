"""Partial indexes for the dispatcher's periodic questions, so that their cost follows the work
in hand rather than the years of history the table keeps:

- `ix_notifications_not_told`: what nobody has been told of yet (the gauges, every beat);
- `ix_notifications_survivor_informed_at`: what survivors were told, by when (the feedback
  question's look-back);
- `ix_audit_log_parked_alerts`: which parked events operations were already warned of;
- `ix_notifications_failed_at`: deliveries that failed or are in doubt, latest first (the
  portal's Operations page);
- `ix_notifications_due_by`, `ix_decisions_due_by` (BRIN on PostgreSQL): the compliance
  report's duties falling due in a period;
- `ix_decisions_case_id`: a case's decisions (a survivor's timeline in the portal);

and the audit sealer's sweep floors (`audit_chain_head.sweep_floor`, `sweep_next_floor`), so
that its hourly full sweep goes back to the marks of the sweep before last, not to seq 0.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in services.core.states.NOT_TOLD when this was written: every status that is not final.
NOT_TOLD_WHERE = (
    "informed_at IS NULL AND status IN "
    "('planned', 'held', 'scheduled', 'queued', 'sending', 'sent', 'unknown')"
)
SURVIVOR_TOLD_WHERE = "recipient_role = 'survivor' AND informed_at IS NOT NULL"
PARKED_ALERT_WHERE = "action = 'event.parked_too_long'"
FAILED_WHERE = "status IN ('failed', 'unknown')"


def upgrade() -> None:
    # Plain CREATE INDEX, not batch mode: SQLite's batch mode may copy a table, and audit_log's
    # triggers (append-only) must stay as they are. On a big database an operator may build
    # these beforehand with CREATE INDEX CONCURRENTLY, the same names and conditions.
    op.create_index(
        "ix_notifications_not_told",
        "notifications",
        ["status", "recipient_role", "due_by"],
        unique=False,
        if_not_exists=True,  # built beforehand, CONCURRENTLY (docs/deploy.md)
        postgresql_where=sa.text(NOT_TOLD_WHERE),
        sqlite_where=sa.text(NOT_TOLD_WHERE),
    )
    op.create_index(
        "ix_notifications_survivor_informed_at",
        "notifications",
        ["informed_at"],
        unique=False,
        if_not_exists=True,  # built beforehand, CONCURRENTLY (docs/deploy.md)
        postgresql_where=sa.text(SURVIVOR_TOLD_WHERE),
        sqlite_where=sa.text(SURVIVOR_TOLD_WHERE),
    )
    op.create_index(
        "ix_notifications_failed_at",
        "notifications",
        ["updated_at"],
        unique=False,
        if_not_exists=True,  # built beforehand, CONCURRENTLY (docs/deploy.md)
        postgresql_where=sa.text(FAILED_WHERE),
        sqlite_where=sa.text(FAILED_WHERE),
    )
    op.create_index(
        "ix_decisions_case_id", "decisions", ["case_id"], unique=False, if_not_exists=True
    )
    for table in ("notifications", "decisions"):
        op.create_index(
            f"ix_{table}_due_by",
            table,
            ["due_by"],
            unique=False,
            if_not_exists=True,
            postgresql_using="brin",
        )
    op.create_index(
        "ix_audit_log_parked_alerts",
        "audit_log",
        ["case_event_id"],
        unique=False,
        if_not_exists=True,  # built beforehand, CONCURRENTLY (docs/deploy.md)
        postgresql_where=sa.text(PARKED_ALERT_WHERE),
        sqlite_where=sa.text(PARKED_ALERT_WHERE),
    )

    with op.batch_alter_table("audit_chain_head", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sweep_floor", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("sweep_next_floor", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_chain_head", schema=None) as batch_op:
        batch_op.drop_column("sweep_next_floor")
        batch_op.drop_column("sweep_floor")
    op.drop_index("ix_audit_log_parked_alerts", table_name="audit_log")
    op.drop_index("ix_notifications_failed_at", table_name="notifications")
    op.drop_index("ix_decisions_due_by", table_name="decisions")
    op.drop_index("ix_decisions_case_id", table_name="decisions")
    op.drop_index("ix_notifications_due_by", table_name="notifications")
    op.drop_index("ix_notifications_survivor_informed_at", table_name="notifications")
    op.drop_index("ix_notifications_not_told", table_name="notifications")
