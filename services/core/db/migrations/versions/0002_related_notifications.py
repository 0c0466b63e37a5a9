"""Related notifications: a tell-first or a supervisor alert points at the held message.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("related_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("send_condition", sa.String(length=16), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_notifications_related_id_notifications"),
            "notifications",
            ["related_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_notifications_related_id_notifications"), type_="foreignkey"
        )
        batch_op.drop_column("send_condition")
        batch_op.drop_column("related_id")
