"""Feedback: a survivor's opt-in to one short question after a key stage, and the questions.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("contact_preferences", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("feedback_opt_in", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "feedback_questions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("survivor_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("about_notification_id", sa.String(length=36), nullable=False),
        sa.Column("question_notification_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=80), nullable=False),
        sa.Column("asked_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("answered_at", WHEN, nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("comment", sa.LargeBinary(), nullable=True),
        sa.Column("answered_via", sa.String(length=8), nullable=True),
        sa.ForeignKeyConstraint(
            ["about_notification_id"],
            ["notifications.id"],
            name=op.f("fk_feedback_questions_about_notification_id_notifications"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_feedback_questions_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["survivor_id"],
            ["survivors.id"],
            name=op.f("fk_feedback_questions_survivor_id_survivors"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_questions")),
        sa.UniqueConstraint(
            "survivor_id",
            "about_notification_id",
            name=op.f("uq_feedback_questions_survivor_id_about_notification_id"),
        ),
    )
    with op.batch_alter_table("feedback_questions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feedback_questions_asked_at"), ["asked_at"])


def downgrade() -> None:
    with op.batch_alter_table("feedback_questions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_questions_asked_at"))
    op.drop_table("feedback_questions")
    with op.batch_alter_table("contact_preferences", schema=None) as batch_op:
        batch_op.drop_column("feedback_opt_in")
