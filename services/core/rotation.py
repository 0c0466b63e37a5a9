"""`carehub keys rotate`: every protected value re-encrypted under the primary key.

Table by table, in primary-key order, one batch per transaction: a batch's rows are locked (on
PostgreSQL; SQLite takes its write lock at BEGIN), each value not yet under the primary key is
decrypted with the key it names and encrypted again under the primary, and the batch commits.
Rows already under the primary are skipped, so a run that was interrupted simply continues
when started again, and a second run changes nothing. Contact preferences whose `phone_index`
does not match the current blind index key are re-indexed in the same pass.

Works on the raw bytes (the stored format of `services/core/db/protected.py`), so a value is
never decoded into text and nothing personal is ever logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import LargeBinary, String, bindparam, column, select, update
from sqlalchemy import table as raw_table
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import TableClause

from services.core.db.models import Base, ContactPreference
from services.core.db.protected import PROTECTED_TYPES, UnreadableValue, seal, stored_key_id, unseal
from services.core.keys import Keyring, current_keyring

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProtectedTable:
    name: str
    key: str  # the primary key column
    columns: tuple[str, ...]  # the protected columns


def protected_tables() -> list[ProtectedTable]:
    """Every table with a protected column, from the models (a new column is covered at once)."""
    found: list[ProtectedTable] = []
    for table in Base.metadata.sorted_tables:
        columns = tuple(c.name for c in table.columns if isinstance(c.type, PROTECTED_TYPES))
        if not columns:
            continue
        keys = list(table.primary_key.columns)
        if len(keys) != 1:
            raise RuntimeError(f"{table.name}: rotation needs a single-column primary key")
        found.append(ProtectedTable(table.name, keys[0].name, columns))
    return found


def _raw(spec: ProtectedTable, with_index: bool) -> TableClause:
    """The table as plain bytes: no TypeDecorator, so what is read is what is stored."""
    cols: list[Any] = [column(spec.key), *(column(c, LargeBinary()) for c in spec.columns)]
    if with_index:
        cols.append(column("phone_index", String()))
    return raw_table(spec.name, *cols)


def _reseal(stored: bytes | None, keyring: Keyring) -> bytes | None:
    """The value under the primary key, or None if it is there already (or NULL)."""
    if stored is None or stored_key_id(bytes(stored)) == keyring.primary:
        return None
    return seal(unseal(bytes(stored), keyring), keyring)


@dataclass
class _Change:
    params: dict[str, Any]
    resealed: bool
    reindexed: bool


def _change(spec: ProtectedTable, row: Any, keyring: Keyring, indexed: bool) -> _Change | None:
    """What one row needs, or None when it is as it should be already."""
    params: dict[str, Any] = {"k_row": row[spec.key]}
    resealed = reindexed = False
    try:
        for name in spec.columns:
            new = _reseal(row[name], keyring)
            params[f"v_{name}"] = row[name] if new is None else new
            resealed = resealed or new is not None
        if indexed:
            phone = row["phone"]
            plain = None if phone is None else unseal(bytes(phone), keyring).decode()
            params["v_phone_index"] = None if plain is None else keyring.blind_index(plain)
            reindexed = params["v_phone_index"] != row["phone_index"]
    except UnreadableValue as exc:
        raise UnreadableValue(f"{spec.name} {spec.key}={row[spec.key]}: {exc}") from None
    return _Change(params, resealed, reindexed) if resealed or reindexed else None


async def rotate_table(
    engine: AsyncEngine,
    spec: ProtectedTable,
    *,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Re-encrypt one table; return (rows re-encrypted, rows re-indexed)."""
    keyring = current_keyring()
    indexed = spec.name == ContactPreference.__tablename__
    raw = _raw(spec, indexed)
    key = raw.c[spec.key]
    values: dict[str, Any] = {c: bindparam(f"v_{c}") for c in spec.columns}
    if indexed:
        values["phone_index"] = bindparam("v_phone_index")
    write = update(raw).where(key == bindparam("k_row")).values(values)
    lock = engine.dialect.name == "postgresql"
    last: Any = None
    scanned = rewritten = reindexed = 0
    while True:
        query = select(raw).order_by(key).limit(batch_size)
        if last is not None:
            query = query.where(key > last)
        if lock:
            query = query.with_for_update()
        async with engine.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
            changes = [c for c in (_change(spec, row, keyring, indexed) for row in rows) if c]
            if changes:
                await conn.execute(write, [c.params for c in changes])
            rewritten += sum(c.resealed for c in changes)
            reindexed += sum(c.reindexed for c in changes)
        if not rows:
            break
        scanned += len(rows)
        last = rows[-1][spec.key]
        if progress is not None:
            progress(
                f"{spec.name}: {scanned} rows read, {rewritten} re-encrypted"
                + (f", {reindexed} re-indexed" if indexed else "")
            )
    return rewritten, reindexed


async def rotate(
    engine: AsyncEngine, *, batch_size: int = 500, progress: Progress | None = None
) -> dict[str, Any]:
    """Re-encrypt every protected value under the primary key; the summary for the CLI."""
    tables: dict[str, int] = {}
    reindexed = 0
    for spec in protected_tables():
        tables[spec.name], indexed = await rotate_table(
            engine, spec, batch_size=batch_size, progress=progress
        )
        reindexed += indexed
    return {
        "tables": tables,
        "primary": current_keyring().primary,
        "phone_index_rebuilt": reindexed,
    }
