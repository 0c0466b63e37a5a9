"""Letter tasks: rendered letters queued for a person to print and post; a review date for the
safety of letters.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A letter's safety check has a review date, like a text's or an e-mail's (rule 1).
    with op.batch_alter_table("contact_preferences", schema=None) as batch_op:
        batch_op.add_column(sa.Column("letter_safe_review_by", sa.Date(), nullable=True))
    op.create_table(
        "letter_tasks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("notification_id", sa.String(length=36), nullable=False),
        sa.Column("subject", sa.LargeBinary(), nullable=False),
        sa.Column("body_text", sa.LargeBinary(), nullable=False),
        sa.Column("body_html", sa.LargeBinary(), nullable=False),
        sa.Column("address", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("printed_at", WHEN, nullable=True),
        sa.Column("posted_at", WHEN, nullable=True),
        sa.Column("posted_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_letter_tasks_notification_id_notifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_letter_tasks")),
        sa.UniqueConstraint("notification_id", name=op.f("uq_letter_tasks_notification_id")),
    )
    with op.batch_alter_table("letter_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_letter_tasks_posted_at"), ["posted_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("letter_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_letter_tasks_posted_at"))
    op.drop_table("letter_tasks")
    with op.batch_alter_table("contact_preferences", schema=None) as batch_op:
        batch_op.drop_column("letter_safe_review_by")
