"""Columns as wide as the schemas allow: a valid event must always be storable.

`cases.crime_reference` 64 -> 100 (the crime_recorded schema allows 100),
`contact_preferences.recorded_by` 64 -> 200 (it can hold an event source, up to 200),
`survivors.party_ref` 240 -> 420 (source, ":" and a party id).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WIDER = (
    ("cases", "crime_reference", 64, 100),
    ("contact_preferences", "recorded_by", 64, 200),
    ("survivors", "party_ref", 240, 420),
)


def upgrade() -> None:
    for table, column, old, new in WIDER:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column, existing_type=sa.String(length=old), type_=sa.String(length=new)
            )


def downgrade() -> None:
    for table, column, old, new in WIDER:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column, existing_type=sa.String(length=new), type_=sa.String(length=old)
            )
