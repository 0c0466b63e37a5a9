"""A keyed blind index of each contact phone number, for lookups that encryption would defeat.

An inbound text (STOP, a reply) finds its survivor by phone number; once phone numbers are
encrypted with a random nonce, equality on the column no longer works. `phone_index` holds
HMAC-SHA256(CAREHUB_BLIND_INDEX_KEY, normalised number) in hex.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contact_preferences", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_index", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_contact_preferences_phone_index"), ["phone_index"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("contact_preferences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_preferences_phone_index"))
        batch_op.drop_column("phone_index")
