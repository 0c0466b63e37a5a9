"""An advocate's own line in a held message they release.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("notifications", "advocate_actions"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("personal_line", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    for table in ("advocate_actions", "notifications"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("personal_line")
