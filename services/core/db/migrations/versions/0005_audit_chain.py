"""The audit hash chain: seals in their own table, and an append-only audit log.

- `audit_seals`: one link per sealed audit row (position, seq, prev_hash, hash, sealed_at).
- `audit_chain_head`: the single row (id 1) the sealer locks to extend the chain.
- `audit_log` loses the never-used `prev_hash`/`seal_hash`/`sealed_at` columns (rows are never
  updated, so the seal cannot live in them).
- Triggers refuse UPDATE and DELETE (and, on PostgreSQL, TRUNCATE) on `audit_log` and
  `audit_seals`: on PostgreSQL for every role, the application's included; only a superuser or
  the table owner can switch them off (ALTER TABLE ... DISABLE TRIGGER), which the verifier
  then catches through the chain.

SQLite drops a table's triggers when batch mode rebuilds the table: a later migration that
batch-alters `audit_log` or `audit_seals` must drop the triggers first and create them again
afterwards (`_create_triggers` / `_drop_triggers` here show how).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
PROTECTED_TABLES = ("audit_log", "audit_seals")
PG_FUNCTION = "carehub_audit_append_only"


def _create_triggers() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$
            """
        )
        for table in PROTECTED_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()"
            )
    else:
        for table in PROTECTED_TABLES:
            for verb in ("update", "delete"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb.upper()} "
                    "refused'); END"
                )


def _drop_triggers() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in PROTECTED_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")
    else:
        for table in PROTECTED_TABLES:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")


def upgrade() -> None:
    op.create_table(
        "audit_seals",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_audit_seals")),
        sa.UniqueConstraint("seq", name=op.f("uq_audit_seals_seq")),
    )
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("swept_to", sa.BigInteger(), nullable=False),
        sa.Column("candidate_seq", sa.BigInteger(), nullable=True),
        sa.Column("candidate_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("full_sweep_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    op.bulk_insert(head, [{"id": 1, "position": 0, "hash": GENESIS, "swept_to": 0}])
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("sealed_at")
        batch_op.drop_column("seal_hash")
        batch_op.drop_column("prev_hash")
    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("seal_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_table("audit_chain_head")
    op.drop_table("audit_seals")
