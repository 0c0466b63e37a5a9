"""The tamper-evident audit trail: a sealer chains committed audit rows, a verifier walks the chain.

Writers never wait on this: `services.core.audit.record` inserts a row in the writer's own
transaction, as before. Later a sealer (`seal_pending`, run periodically by a background loop)
appends one *seal* per committed, not yet sealed row to `audit_seals`:

    position   1, 2, 3, ... (the chain order, no gaps)
    seq        the audit row it seals (unique: a row is sealed once)
    prev_hash  the hash of the seal at position - 1 (64 zeros before the first)
    hash       SHA-256 of the canonical document below
    sealed_at  when it was sealed

The canonical document is JSON with sorted keys, no whitespace, UTF-8, no NaN:

    {"v": 1, "prev": prev_hash, "position": position, "sealed_at": "...Z",
     "row": {"seq", "at" (UTC, "YYYY-MM-DDTHH:MM:SS.ffffffZ"), "actor", "action", "case_id",
             "case_event_id", "notification_id", "rule", "codes" (an object)}}

Changing any field of a sealed row, deleting it, or changing, removing or reordering a seal
breaks a hash or a link, and `verify` names the first one that does not fit.

**Order and concurrent writers.** Each sealing round seals the pending rows in `seq` order, so
the chain follows the sequence order. But `seq` is handed out at INSERT and rows become visible at
COMMIT, so a transaction can commit a lower seq after a higher one was sealed. Such a row is not
lost and does not break the chain: it is appended at the end of the chain in a later round, its
seal recording its own seq (the chain order is the sealing order; `seq` says which row). A row
therefore never waits longer than one sealing round after its commit, and is sealed exactly once
(the unique `seq`, under the chain-head lock).

**Finding pending rows cheaply.** Rows are found with an anti-join (rows with no seal). To avoid
scanning the whole log each round, the chain head keeps `swept_to`: every row with seq at or
below it is sealed. It advances in two steps: a round that has caught up notes the highest
visible seq as a candidate, and a round that has caught up at least `HORIZON` later promotes it.
A row at or below the candidate that was not yet visible belongs to a transaction that had
started before the candidate was noted (sequences are monotonic), so only a transaction open for
longer than `HORIZON` can slip below the mark; for those, a full sweep runs every
`FULL_SWEEP_EVERY`.

The full sweep does not go back to seq 0, which would read the whole log (years of it) every
hour: it goes back to `sweep_floor`, the `swept_to` the sweep before last found. A row below
that belongs to a transaction that took its seq before that mark's candidate was noted and
committed after the last sweep began: open for longer than `FULL_SWEEP_EVERY` plus `HORIZON`.
The sweeps do not look for those; `verify` reports them (unsealed past `UNSEALED_GRACE`), and
`carehub audit verify` first seals from seq 0 (`from_start`). The first sweep of a chain, and
one after the database clock went back, start from 0 too.

**One sealer at a time.** A round runs in one transaction that first locks the single
`audit_chain_head` row (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's write lock, taken by
`BEGIN IMMEDIATE`, does the same), so sealers in several processes take turns: each sees the
seals of the one before it. Writers never touch that row.

**Append-only.** Migration 0005 installs triggers that refuse UPDATE and DELETE on `audit_log`
and `audit_seals` (on PostgreSQL for every role, the application's included). The chain is what
catches someone who switches them off. The chain cannot by itself reveal the removal of the
newest rows together with their seals and a rewound head: the sealer logs the head
(`audit.sealed` with `position` and `head_hash`), and that log kept elsewhere is the anchor.

`sealed_at` is the caller's `now` (the application clock, which tests drive); the sweep marks
(`candidate_at`, `full_sweep_at`) measure how long a transaction may have stayed open, which is
real time, so they use the database's clock, the one clock every sealer shares.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, exists, func, insert, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.db.models import AuditChainHead, AuditEntry, AuditSeal
from services.core.db.types import UTCDateTime
from services.core.logs import get_logger

GENESIS = "0" * 64
HASH_VERSION = 1
HEAD_ID = 1
# A transaction open longer than this may slip below `swept_to`; the full sweep catches it.
HORIZON = timedelta(minutes=10)
FULL_SWEEP_EVERY = timedelta(hours=1)
# An unsealed row older than this (by its `at`) fails verification: the sealer is not running.
UNSEALED_GRACE = timedelta(minutes=15)
VERIFY_CHUNK = 5000
MAX_LISTED_PROBLEMS = 20

log = get_logger("audit")

ROW_FIELDS = (
    "seq",
    "at",
    "actor",
    "action",
    "case_id",
    "case_event_id",
    "notification_id",
    "rule",
    "codes",
)
_ROW_COLUMNS = [getattr(AuditEntry, name) for name in ROW_FIELDS]
_SEALS = cast(Table, AuditSeal.__table__)


def _utc_iso(at: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC (`isoformat`: what `strftime` gave, at a fraction of
    its cost, and the sealer formats two of these a row)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a timezone-aware datetime is required")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_document(
    *, prev_hash: str, position: int, sealed_at: datetime, row: Mapping[str, Any]
) -> bytes:
    """The bytes a seal's hash is taken over (see the module docstring)."""
    document = {
        "v": HASH_VERSION,
        "prev": prev_hash,
        "position": position,
        "sealed_at": _utc_iso(sealed_at),
        "row": {
            "seq": row["seq"],
            "at": _utc_iso(row["at"]),
            "actor": row["actor"],
            "action": row["action"],
            "case_id": row["case_id"],
            "case_event_id": row["case_event_id"],
            "notification_id": row["notification_id"],
            "rule": row["rule"],
            "codes": row["codes"] if row["codes"] is not None else {},
        },
    }
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def seal_hash(*, prev_hash: str, position: int, sealed_at: datetime, row: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of the canonical document: what `audit_seals.hash` holds."""
    return hashlib.sha256(
        canonical_document(prev_hash=prev_hash, position=position, sealed_at=sealed_at, row=row)
    ).hexdigest()


def _unsealed() -> Any:
    return ~exists().where(AuditSeal.seq == AuditEntry.seq)


@dataclass
class SealCursor:
    """Where one process's sealing rounds have got to, so that the next need not walk again,
    from the marks, past every row already sealed.

    - While a backlog is sealed (a round sealed a full batch) each round carries on after the
      last: without that a backlog of N rows costs N²/batch row visits (a million rows on a new
      database: most of an hour); with it, N.
    - Otherwise too, a round starts from the marks at most once every `every` seconds (a
      round from the marks counts whether or not it caught up), and after the last row sealed
      between: a walk from the marks covers `HORIZON` to twice that of rows (a replay writes
      hundreds a second; on a new database, whose marks are 0 for `HORIZON`, the whole log),
      and it is only needed for a row that committed after higher ones were sealed, which then
      waits up to `every` seconds.

    Only a hint, kept in one process: only a round from the marks moves them.
    """

    after: int | None = None
    behind: bool = False
    marks_at: float | None = None  # time.monotonic() of the last round from the marks
    every: float = 60.0

    def carries_on(self, lower: int) -> bool:
        """Whether the next round starts after `after` rather than from the marks (`lower`)."""
        if self.after is None or self.after <= lower:
            return False
        recent = self.marks_at is not None and time.monotonic() - self.marks_at < self.every
        return self.behind or recent

    def moved(self, *, start: int, sealed: list[int], batch: int, from_marks: bool) -> None:
        """Note a round that stood: it started after `start` and sealed `sealed` (in order)."""
        if sealed:
            self.after = max(self.after or 0, sealed[-1])
        elif not from_marks:
            self.after = start
        self.behind = len(sealed) == batch
        if from_marks:  # behind or not, it walked from the marks
            self.marks_at = time.monotonic()


async def seal_pending(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    batch: int = 5000,
    cursor: SealCursor | None = None,
    from_start: bool = False,
) -> int:
    """Seal up to `batch` committed, unsealed audit rows in one transaction; return how many.

    Safe to call from several processes at once (they take turns on the chain head). A return
    value equal to `batch` means more may be waiting: call again. `from_start` looks at every
    row, as a full sweep from seq 0 (`carehub audit verify` does, before it checks).
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    _utc_iso(now)  # refuse a naive `now` before touching the database
    async with sessions() as session, session.begin():
        head = (
            await session.execute(
                select(AuditChainHead).where(AuditChainHead.id == HEAD_ID).with_for_update()
            )
        ).scalar_one()
        # The marks measure how long transactions may stay open: real time, on the one clock
        # every sealer shares (the database's), not the application clock tests move about.
        clock = await session.scalar(select(type_coerce(func.current_timestamp(), UTCDateTime())))
        assert clock is not None
        trust_none = (
            from_start
            or head.full_sweep_at is None
            or clock < head.full_sweep_at  # the clock went back: trust no mark
        )
        full = trust_none or clock - head.full_sweep_at >= FULL_SWEEP_EVERY
        lower = 0 if trust_none else head.sweep_floor if full else head.swept_to
        from_marks = cursor is None or not cursor.carries_on(lower)
        start = lower if from_marks or cursor is None or cursor.after is None else cursor.after
        rows = (
            await session.execute(
                select(*_ROW_COLUMNS)
                .where(AuditEntry.seq > start, _unsealed())
                .order_by(AuditEntry.seq)
                .limit(batch)
            )
        ).all()

        position, prev = head.position, head.hash
        seals: list[dict[str, Any]] = []
        for row in rows:
            position += 1
            fields = cast(Mapping[str, Any], row._mapping)
            digest = seal_hash(prev_hash=prev, position=position, sealed_at=now, row=fields)
            seals.append(
                {
                    "position": position,
                    "seq": row.seq,
                    "prev_hash": prev,
                    "hash": digest,
                    "sealed_at": now,
                }
            )
            prev = digest
        changed = bool(seals)
        if seals:
            # The table, not the mapped class: one executemany, without the ORM's bulk path.
            await session.execute(insert(_SEALS), seals)
            head.position, head.hash = position, prev

        if len(rows) < batch and from_marks:  # caught up: the marks may move
            if full:
                head.full_sweep_at = clock
                # The next sweep goes back to where this one's predecessor found the marks.
                head.sweep_floor, head.sweep_next_floor = head.sweep_next_floor, head.swept_to
                changed = True
            candidate, noted = head.candidate_seq, head.candidate_at
            if candidate is not None and noted is not None:
                if clock - noted >= HORIZON:  # matured: promote it
                    head.swept_to = max(head.swept_to, candidate)
                if clock < noted or clock - noted >= HORIZON:  # (or the clock went back: drop it)
                    head.candidate_seq = head.candidate_at = None
                    changed = True
            if head.candidate_seq is None:
                top = await session.scalar(select(func.max(AuditEntry.seq)))
                if top is not None and top > head.swept_to:
                    head.candidate_seq, head.candidate_at = top, clock
                    changed = True
        if changed:
            head.updated_at = clock
    if cursor is not None:  # once the round stands
        cursor.moved(
            start=start, sealed=[row.seq for row in rows], batch=batch, from_marks=from_marks
        )
    if seals:
        log.info("audit.sealed", count=len(seals), position=position, head_hash=prev)
    return len(seals)


@dataclass
class VerifyReport:
    """What `verify` found. `ok` is false when anything does not fit (`first_problem` says what)."""

    ok: bool
    rows_checked: int
    seals_checked: int
    unsealed: int
    first_problem: str | None
    first_problem_seq: int | None = None
    first_problem_position: int | None = None
    problem_count: int = 0
    problems: list[str] = field(default_factory=list)  # the first MAX_LISTED_PROBLEMS
    oldest_unsealed_seq: int | None = None
    head_position: int = 0
    head_hash: str = GENESIS

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


class _Findings:
    def __init__(self) -> None:
        self.count = 0
        self.listed: list[str] = []
        self.first_seq: int | None = None
        self.first_position: int | None = None

    def add(self, message: str, *, seq: int | None = None, position: int | None = None) -> None:
        if self.count == 0:
            self.first_seq, self.first_position = seq, position
        self.count += 1
        if len(self.listed) < MAX_LISTED_PROBLEMS:
            self.listed.append(message)


async def verify(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    unsealed_grace: timedelta = UNSEALED_GRACE,
    chunk: int = VERIFY_CHUNK,
) -> VerifyReport:
    """Walk the whole chain and check every seal and the row it seals.

    Reads in short transactions (the sealer and writers carry on meanwhile): the walk covers the
    seals up to the head as read at the start. Unsealed rows are counted; one whose `at` is older
    than `now - unsealed_grace` is a problem (pass the application clock's `now`; without it,
    unsealed rows are only counted).
    """
    found = _Findings()
    async with sessions() as session, session.begin():
        head = (
            await session.execute(
                select(AuditChainHead.position, AuditChainHead.hash).where(
                    AuditChainHead.id == HEAD_ID
                )
            )
        ).one()
        twice = set(
            (
                await session.scalars(
                    select(AuditSeal.seq)
                    .where(AuditSeal.position <= head.position)
                    .group_by(AuditSeal.seq)
                    .having(func.count() > 1)
                )
            ).all()
        )
    first_sealed_at: dict[int, int] = {}  # for rows sealed twice: seq -> first position

    row_labels = [column.label(f"row_{column.key}") for column in _ROW_COLUMNS]
    rows_checked = seals_checked = 0
    expected, prev_stored = 1, GENESIS
    # A seal whose hash does not match: decided by its successor's prev_hash (or the head).
    pending: tuple[int, int, str] | None = None  # (position, seq, recomputed hash)
    last = 0
    while last < head.position:
        async with sessions() as session, session.begin():
            batch = (
                await session.execute(
                    select(
                        AuditSeal.position,
                        AuditSeal.seq,
                        AuditSeal.prev_hash,
                        AuditSeal.hash,
                        AuditSeal.sealed_at,
                        *row_labels,
                    )
                    .select_from(AuditSeal)
                    .outerjoin(AuditEntry, AuditEntry.seq == AuditSeal.seq)
                    .where(AuditSeal.position > last, AuditSeal.position <= head.position)
                    .order_by(AuditSeal.position)
                    .limit(chunk)
                )
            ).all()
        if not batch:
            break
        for seal in batch:
            seals_checked += 1
            last = seal.position
            link_explained = False
            if pending is not None:
                p_position, p_seq, recomputed = pending
                if seal.prev_hash == recomputed and seal.position == p_position + 1:
                    found.add(
                        f"seal {p_position} (row seq {p_seq}): its stored hash was altered",
                        seq=p_seq,
                        position=p_position,
                    )
                    link_explained = True
                else:
                    found.add(
                        f"row seq {p_seq} does not match its seal at position {p_position} "
                        "(hash mismatch): the row or the seal was altered",
                        seq=p_seq,
                        position=p_position,
                    )
                pending = None
            if seal.position != expected:
                found.add(
                    f"seal {expected}"
                    + (f"..{seal.position - 1}" if seal.position - 1 > expected else "")
                    + f" missing (the chain jumps to seal {seal.position}, row seq {seal.seq})",
                    position=expected,
                )
                link_explained = True
            if seal.prev_hash != prev_stored and not link_explained:
                found.add(
                    f"seal {seal.position} (row seq {seal.seq}): broken link, its prev_hash "
                    f"is not the hash of seal {seal.position - 1}",
                    seq=seal.seq,
                    position=seal.position,
                )
            expected, prev_stored = seal.position + 1, seal.hash
            if seal.seq in twice:
                if seal.seq in first_sealed_at:
                    found.add(
                        f"row seq {seal.seq} sealed twice (seals {first_sealed_at[seal.seq]} "
                        f"and {seal.position})",
                        seq=seal.seq,
                        position=seal.position,
                    )
                    continue
                first_sealed_at[seal.seq] = seal.position
            if seal.row_seq is None:
                found.add(
                    f"row seq {seal.seq} missing: sealed at position {seal.position} but no "
                    "longer in audit_log",
                    seq=seal.seq,
                    position=seal.position,
                )
                continue
            rows_checked += 1
            row = {name: getattr(seal, f"row_{name}") for name in ROW_FIELDS}
            recomputed = seal_hash(
                prev_hash=seal.prev_hash,
                position=seal.position,
                sealed_at=seal.sealed_at,
                row=row,
            )
            if recomputed != seal.hash:
                pending = (seal.position, seal.seq, recomputed)

    head_explained = False
    if pending is not None:
        p_position, p_seq, recomputed = pending
        if p_position == head.position and head.hash == recomputed:
            found.add(
                f"seal {p_position} (row seq {p_seq}): its stored hash was altered",
                seq=p_seq,
                position=p_position,
            )
            head_explained = True
        else:
            found.add(
                f"row seq {p_seq} does not match its seal at position {p_position} "
                "(hash mismatch): the row or the seal was altered",
                seq=p_seq,
                position=p_position,
            )
    if last != head.position:
        found.add(
            f"seal {last + 1}"
            + (f"..{head.position}" if head.position > last + 1 else "")
            + f" missing (the chain head is at seal {head.position})",
            position=last + 1,
        )
    elif prev_stored != head.hash and not head_explained:
        found.add(
            f"the chain head does not match seal {head.position}: its hash differs",
            position=head.position,
        )

    async with sessions() as session, session.begin():
        # Read the seals before the head: a sealer commits both at once, so a seal beyond the
        # head read after it was written outside the sealer.
        top = await session.scalar(select(func.max(AuditSeal.position)))
        head_now = await session.scalar(
            select(AuditChainHead.position).where(AuditChainHead.id == HEAD_ID)
        )
        if top is not None and head_now is not None and top > head_now:
            found.add(
                f"seal {top} lies beyond the chain head (seal {head_now}): not written by "
                "the sealer",
                position=top,
            )
        counts = (
            await session.execute(select(func.count(), func.min(AuditEntry.seq)).where(_unsealed()))
        ).one()
        unsealed, oldest_unsealed = int(counts[0]), counts[1]
        if now is not None and unsealed:
            stale = (
                await session.execute(
                    select(AuditEntry.seq, AuditEntry.at)
                    .where(_unsealed(), AuditEntry.at < now - unsealed_grace)
                    .order_by(AuditEntry.seq)
                    .limit(1)
                )
            ).first()
            if stale is not None:
                found.add(
                    f"row seq {stale.seq} unsealed since {_utc_iso(stale.at)}, longer than "
                    f"{int(unsealed_grace.total_seconds())} s: is the sealer running?",
                    seq=stale.seq,
                )

    return VerifyReport(
        ok=found.count == 0,
        rows_checked=rows_checked,
        seals_checked=seals_checked,
        unsealed=unsealed,
        first_problem=found.listed[0] if found.listed else None,
        first_problem_seq=found.first_seq,
        first_problem_position=found.first_position,
        problem_count=found.count,
        problems=found.listed,
        oldest_unsealed_seq=oldest_unsealed,
        head_position=head.position,
        head_hash=head.hash,
    )


__all__ = [
    "FULL_SWEEP_EVERY",
    "GENESIS",
    "HORIZON",
    "ROW_FIELDS",
    "UNSEALED_GRACE",
    "VerifyReport",
    "canonical_document",
    "seal_hash",
    "SealCursor",
    "seal_pending",
    "verify",
]
