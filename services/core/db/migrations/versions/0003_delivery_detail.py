"""Delivery detail: what each attempt sent and what the provider said; a shared send rate;
replays of rejected records.

Inbound texts are kept (protected) for the advocate. Each attempt keeps the address and text
it handed over (protected), so a notifier that crashed mid-send asks the provider about exactly
that message and, if it must send again, sends the same words; and the provider's own status
and error code beside ours. `send_rates` holds one row per sender so the provider's rate limit
holds across notifier processes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("to_address", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("subject", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("body", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("template_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("provider_status", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("provider_code", sa.String(length=16), nullable=True))
    op.create_table(
        "inbound_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("provider_ref", sa.String(length=64), nullable=False),
        sa.Column("from_address", sa.LargeBinary(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("survivor_ids", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inbound_id", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("rejected_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replays", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("replay_outcome", sa.String(length=16), nullable=True))
    op.create_table(
        "send_rates",
        sa.Column("sender", sa.String(length=128), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sender", name=op.f("pk_send_rates")),
    )


def downgrade() -> None:
    op.drop_table("send_rates")
    op.drop_table("inbound_messages")
    with op.batch_alter_table("rejected_records", schema=None) as batch_op:
        batch_op.drop_column("replay_outcome")
        batch_op.drop_column("replayed_at")
        batch_op.drop_column("replays")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("inbound_id")
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        for column in (
            "provider_code",
            "provider_status",
            "template_version",
            "language",
            "body",
            "subject",
            "to_address",
        ):
            batch_op.drop_column(column)
