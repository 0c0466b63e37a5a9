"""Retention and erasure: a survivor's personal data removed when its time is up, or on request.

`retention run` erases every survivor whose cases were all closed more than
`CAREHUB_RETENTION_DAYS` ago, blanks the event payloads of those cases, and empties rejected
records and unrouted inbound texts older than that (and erases again a contact preference
recorded by hand for someone erased before). `retention erase` does the same for one
survivor at once (their erasure request), even on an open case, and cancels what was still
waiting to go to them.

What is erased is found from the models, not from a list: every `Protected*` column of every
table is cleared for the rows that belong to the survivor (a table is theirs through
`survivor_id`, or through `notification_id` of one of their notifications), so a protected
column added later is covered at once. A table whose rows cannot be tied to a survivor that
way must be named below, or nothing runs.

Kept: the rows themselves with their ids, codes, statuses and times (a notification's `status`,
`due_by`, `informed_at`), so compliance figures do not change, and the audit log, which holds no
personal data and cannot be altered; each erasure adds a `survivor.erased` row to it.

A nullable value becomes NULL; a required one becomes an encrypted empty value (a payload the
marker `{"erased": true}`). Values are judged "already erased" from their stored bytes, so a run
never needs the key of a value it removes, and a second run changes nothing. Work goes in
batches, one transaction each: a survivor is erased whole or not at all, and an interrupted run
simply continues when started again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    LargeBinary,
    Table,
    and_,
    bindparam,
    exists,
    func,
    inspect,
    not_,
    or_,
    select,
    text,
    true,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from services.core import audit
from services.core.db import models as m
from services.core.db.engine import session_factory
from services.core.db.protected import (
    NONCE_BYTES,
    PROTECTED_TYPES,
    TAG_BYTES,
    ProtectedBytes,
    ProtectedJSON,
    UnreadableValue,
    stored_key_id,
    unseal,
)
from services.core.logs import get_logger
from services.core.notifications import move
from services.core.states import Status

ACTOR = "retention"
log = get_logger(ACTOR)
Progress = Callable[[str], None]

ERASED_PAYLOAD: dict[str, Any] = {"erased": True}
_ERASED_PAYLOAD_BYTES = json.dumps(ERASED_PAYLOAD, separators=(",", ":")).encode()
PENDING = (Status.PLANNED, Status.HELD, Status.SCHEDULED, Status.QUEUED)

# Protected columns that are staff's own details, not a survivor's: kept while they work here.
STAFF_TABLES = frozenset({"advocates", "staff_accounts"})
# Tables whose rows are tied to a survivor in their own way (everything else by its columns).
SURVIVORS, CASE_EVENTS, REJECTED, INBOUND = (
    "survivors",
    "case_events",
    "rejected_records",
    "inbound_messages",
)


class Reason(StrEnum):
    RETENTION = "retention"
    REQUEST = "request"


class RetentionError(RuntimeError):
    """Retention cannot run as asked (an unknown survivor, a table it cannot place)."""


class Owner(StrEnum):
    """How a table's rows are tied to the survivor they belong to."""

    SURVIVOR = "survivor"  # the survivors table itself
    SURVIVOR_ID = "survivor_id"  # a survivor_id column
    NOTIFICATION = "notification"  # a notification_id column: one of their notifications
    INBOUND = "inbound"  # inbound_messages.survivor_ids (JSON list)
    CASE = "case"  # case_events: by the case (urn), not by survivor
    AGE = "age"  # rejected_records: by age alone


@dataclass(frozen=True)
class Sweep:
    """One table's protected columns, and how its rows are tied to a survivor."""

    table: Table
    owner: Owner
    columns: tuple[Column[Any], ...]
    # Plain columns computed from a protected one (the phone's blind index): cleared with it.
    derived: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def key(self) -> Column[Any]:
        keys = list(self.table.primary_key.columns)
        if len(keys) != 1:
            raise RetentionError(f"{self.name}: retention needs a single-column primary key")
        return keys[0]


def sweeps(existing: set[str] | None = None) -> list[Sweep]:
    """Every table with a protected column, from the models; `existing` limits it to the tables
    the database has (a table added by a migration not yet run is skipped)."""
    found: list[Sweep] = []
    for table in m.Base.metadata.sorted_tables:
        columns = tuple(c for c in table.columns if isinstance(c.type, PROTECTED_TYPES))
        if not columns or table.name in STAFF_TABLES:
            continue
        owner = {
            SURVIVORS: Owner.SURVIVOR,
            CASE_EVENTS: Owner.CASE,
            REJECTED: Owner.AGE,
            INBOUND: Owner.INBOUND,
        }.get(table.name)
        if owner is None and "survivor_id" in table.c:
            owner = Owner.SURVIVOR_ID
        elif owner is None and "notification_id" in table.c:
            owner = Owner.NOTIFICATION
        if owner is None:
            raise RetentionError(
                f"{table.name} has protected columns but no survivor_id or notification_id: "
                "say in services/core/retention.py whose data it holds"
            )
        derived = ("phone_index",) if table.name == m.ContactPreference.__tablename__ else ()
        if existing is None or table.name in existing:
            found.append(Sweep(table, owner, columns, derived))
    return found


def is_erased(stored: bytes | None, column: Column[Any]) -> bool:
    """Whether a stored protected value is already gone: NULL, an encrypted empty value, or the
    erased-payload marker. Judged from the stored format, so no key is needed for most values."""
    if stored is None:
        return True
    raw = bytes(stored)
    try:
        kid = stored_key_id(raw)
    except UnreadableValue:
        return False  # damaged: overwrite it
    plain = len(raw) - 2 - len(kid) - NONCE_BYTES - TAG_BYTES
    if plain == 0:
        return True
    if isinstance(column.type, ProtectedJSON) and plain == len(_ERASED_PAYLOAD_BYTES):
        try:
            return unseal(raw) == _ERASED_PAYLOAD_BYTES
        except UnreadableValue:
            return False
    return False


def erased_value(column: Column[Any]) -> Any:
    """What an erased value is written as (the column type encrypts it)."""
    if column.nullable:
        return None
    if isinstance(column.type, ProtectedJSON):
        return dict(ERASED_PAYLOAD)
    return b"" if isinstance(column.type, ProtectedBytes) else ""


@dataclass
class Summary:
    """What a run or an erasure did (or, dry, would do): counts only, never a value."""

    reason: Reason
    dry_run: bool
    cutoff: datetime
    survivors_erased: int = 0
    notifications_cancelled: int = 0
    tables: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason.value,
            "dry_run": self.dry_run,
            "cutoff": self.cutoff.isoformat(),
            "survivors_erased": self.survivors_erased,
            "notifications_cancelled": self.notifications_cancelled,
            "tables": dict(sorted(self.tables.items())),
        }


async def _clear(session: AsyncSession, sweep: Sweep, where: ColumnElement[bool]) -> list[Any]:
    """Erase the protected values of the rows `where` selects; the keys of the rows changed."""
    key = sweep.key
    query = select(
        key,
        *(type_coerce(c, LargeBinary()).label(c.name) for c in sweep.columns),
        *(sweep.table.c[d] for d in sweep.derived),
    ).where(where)
    if _postgres(session):
        query = query.with_for_update()
    rows = (await session.execute(query.order_by(key))).mappings().all()
    changed = [
        row[key.name]
        for row in rows
        if not all(is_erased(row[c.name], c) for c in sweep.columns)
        or any(row[d] is not None for d in sweep.derived)
    ]
    if changed:
        values: dict[str, Any] = {c.name: erased_value(c) for c in sweep.columns}
        values.update(dict.fromkeys(sweep.derived))
        for start in range(0, len(changed), 1000):
            chunk = changed[start : start + 1000]
            await session.execute(update(sweep.table).where(key.in_(chunk)).values(values))
    return changed


def _postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _inbound_from(session: AsyncSession, survivor_ids: Sequence[int]) -> ColumnElement[bool]:
    """Inbound texts attributed to any of these survivors (a JSON list of ids)."""
    if _postgres(session):
        clause = text(
            "EXISTS (SELECT 1 FROM json_array_elements_text(inbound_messages.survivor_ids) "
            "AS e(v) WHERE e.v IN :sids)"
        ).bindparams(bindparam("sids", [str(s) for s in survivor_ids], expanding=True))
    else:
        clause = text(
            "EXISTS (SELECT 1 FROM json_each(inbound_messages.survivor_ids) AS e "
            "WHERE e.value IN :sids)"
        ).bindparams(bindparam("sids", list(survivor_ids), expanding=True))
    return clause  # type: ignore[return-value]


def _owned_by(session: AsyncSession, sweep: Sweep, ids: Sequence[int]) -> ColumnElement[bool]:
    c = sweep.table.c
    if sweep.owner is Owner.SURVIVOR:
        return c.id.in_(ids)
    if sweep.owner is Owner.SURVIVOR_ID:
        return c.survivor_id.in_(ids)
    if sweep.owner is Owner.NOTIFICATION:
        theirs = select(m.Notification.id).where(m.Notification.survivor_id.in_(ids))
        return c.notification_id.in_(theirs)
    assert sweep.owner is Owner.INBOUND
    return _inbound_from(session, ids)


async def _cancel_pending(
    session: AsyncSession, ids: Sequence[int], now: datetime, reason: Reason
) -> int:
    """Cancel what still waits to go to them, or to staff about them: nothing is sent after."""
    rows = (
        await session.scalars(
            select(m.Notification)
            .where(m.Notification.survivor_id.in_(ids), m.Notification.status.in_(PENDING))
            .order_by(m.Notification.id)
            .with_for_update()
        )
    ).all()
    for row in rows:
        move(
            session,
            row,
            Status.CANCELLED,
            now=now,
            actor=ACTOR,
            reason="erased",
            erasure=reason.value,
        )
    return len(rows)


def _without_party(payload: Any, party_ref: str, source: str) -> Any:
    """The payload with this party's own entries taken out (their victim entry), the erased
    marker if the whole event is about them, or `payload` itself if it does not name them."""
    if not party_ref.startswith(f"{source}:") or not isinstance(payload, dict):
        return payload
    party_id = party_ref[len(source) + 1 :]
    data = payload.get("data")
    if not isinstance(data, dict):
        return payload
    if data.get("party_id") == party_id:
        return dict(ERASED_PAYLOAD)
    victims = data.get("victims")
    if not isinstance(victims, list):
        return payload
    kept = [v for v in victims if not (isinstance(v, dict) and v.get("party_id") == party_id)]
    if len(kept) == len(victims):
        return payload
    return {**payload, "data": {**data, "victims": kept}}


async def _erase_case_payloads(
    session: AsyncSession, survivor: int, party_ref: str | None, cutoff: datetime, now: datetime
) -> int:
    """The event payloads of an erased survivor's cases. A case with nobody else whose data is
    kept (or past its own retention) is blanked; a case shared with a survivor still supported
    keeps its events' other facts, which their messages are still written from (a review right,
    a reason), and loses only this survivor's own entries."""
    sweep = next(s for s in sweeps() if s.owner is Owner.CASE)
    other = aliased(m.CaseSurvivor)
    others = (
        exists()
        .where(
            other.case_id == m.Case.id,
            other.survivor_id != survivor,
            other.survivor_id == m.Survivor.id,
            m.Survivor.erased_at.is_(None),
        )
        .correlate(m.Case)
        .label("shared")
    )
    cases = (
        await session.execute(
            select(m.Case.id, m.Case.urn, _closed_before(cutoff).label("past"), others)
            .join(m.CaseSurvivor, m.CaseSurvivor.case_id == m.Case.id)
            .where(m.CaseSurvivor.survivor_id == survivor)
            .order_by(m.Case.id)
        )
    ).all()
    total = 0
    for case_id, urn, past, shared in cases:
        if past or not shared:
            changed = await _clear(session, sweep, sweep.table.c.urn == urn)
        else:
            changed = await _scrub(session, urn, party_ref)
        if changed:
            _audit_case(session, case_id, len(changed), Reason.REQUEST, now)
        total += len(changed)
    return total


async def _scrub(session: AsyncSession, urn: str, party_ref: str | None) -> list[int]:
    if party_ref is None:
        return []
    query = (
        select(m.CaseEvent.id, m.CaseEvent.source, type_coerce(m.CaseEvent.payload, LargeBinary()))
        .where(m.CaseEvent.urn == urn)
        .order_by(m.CaseEvent.id)
    )
    changed: list[int] = []
    for event_id, source, stored in (await session.execute(_lock(session, query))).all():
        try:
            payload = json.loads(unseal(bytes(stored)))
        except (UnreadableValue, ValueError):
            scrubbed: Any = dict(ERASED_PAYLOAD)  # cannot be read, so cannot be scrubbed
        else:
            scrubbed = _without_party(payload, party_ref, source)
            if scrubbed is payload:
                continue
        await session.execute(
            update(m.CaseEvent).where(m.CaseEvent.id == event_id).values(payload=scrubbed)
        )
        changed.append(event_id)
    return changed


def _audit_case(
    session: AsyncSession, case_id: int, events: int, reason: Reason, at: datetime
) -> None:
    audit.record(
        session,
        at=at,
        actor=ACTOR,
        action="case.payloads_erased",
        case_id=case_id,
        events=events,
        reason=reason.value,
    )


def _squeeze(value: str) -> str:
    return "".join(ch for ch in value.lower() if not ch.isspace() and ch not in "-()")


async def _identifiers(session: AsyncSession, ids: Sequence[int]) -> set[str]:
    """Their full names, numbers and e-mail addresses (every version), squeezed for matching;
    short values are left out, so a match is theirs and not a coincidence."""
    found: set[str] = set()
    for name in (
        await session.scalars(select(m.Survivor.full_name).where(m.Survivor.id.in_(ids)))
    ).all():
        found.add(name or "")
    contacts = await session.execute(
        select(m.ContactPreference.phone, m.ContactPreference.email).where(
            m.ContactPreference.survivor_id.in_(ids)
        )
    )
    for phone, email in contacts.all():
        found.update((phone or "", email or ""))
        if phone and phone.startswith("+44"):
            found.add("0" + phone[3:])  # as a UK form would write it
    return {_squeeze(v) for v in found if len(_squeeze(v)) >= 8}


async def _erase_mentions(
    session: AsyncSession, existing: set[str], marks: set[str], summary: Summary, now: datetime
) -> None:
    """Rejected records and unrouted inbound texts are tied to nobody by a key: those that
    hold one of the survivor's identifiers go with the rest of their data."""
    if not marks:
        return
    for sweep in sweeps(existing):
        if sweep.owner is Owner.AGE:
            where: ColumnElement[bool] = true()
        elif sweep.owner is Owner.INBOUND:
            where = func.json_array_length(sweep.table.c.survivor_ids) == 0
        else:
            continue
        key = sweep.key
        last: Any = None
        while True:
            raw = (type_coerce(c, LargeBinary()) for c in sweep.columns)
            query = select(key, *raw).where(where).order_by(key).limit(500)
            if last is not None:
                query = query.where(key > last)
            rows = (await session.execute(query)).all()
            if not rows:
                break
            last = rows[-1][0]
            hits = [row[0] for row in rows if any(_holds(v, marks) for v in row[1:])]
            if hits:
                changed = await _clear(session, sweep, key.in_(hits))
                summary.tables[sweep.name] += len(changed)
                if sweep.owner is Owner.AGE:
                    await _audit_rejected(session, changed, now, Reason.REQUEST)


def _holds(stored: bytes | None, marks: set[str]) -> bool:
    """Whether a stored value holds one of `marks`; a value that cannot be read is left."""
    if stored is None:
        return False
    try:
        plain = unseal(bytes(stored)).decode("utf-8", "replace")
    except UnreadableValue:
        return False
    squeezed = _squeeze(plain)
    return any(mark in squeezed for mark in marks)


async def erase_survivors(
    session: AsyncSession,
    ids: Sequence[int],
    *,
    reason: Reason,
    now: datetime,
    cutoff: datetime,
    existing: set[str],
    summary: Summary,
) -> None:
    """Erase these survivors in the caller's transaction: cancel what still waits to go to them,
    clear every protected value of theirs, mark them erased, and audit it. Their rows locked."""
    if not ids:
        return
    survivors = (
        await session.execute(
            select(m.Survivor.id, m.Survivor.party_ref, m.Survivor.erased_at)
            .where(m.Survivor.id.in_(ids))
            .order_by(m.Survivor.id)
            .with_for_update()
        )
    ).all()
    before = sum(summary.tables.values()) + summary.notifications_cancelled
    # Read before they go: what identifies them in records not tied to them by a key.
    marks = await _identifiers(session, ids) if reason is Reason.REQUEST else set()
    summary.notifications_cancelled += await _cancel_pending(session, ids, now, reason)
    for sweep in sweeps(existing):
        if sweep.owner not in (Owner.CASE, Owner.AGE):
            rows = await _clear(session, sweep, _owned_by(session, sweep, ids))
            summary.tables[sweep.name] += len(rows)
    if reason is Reason.REQUEST:
        # A retention run blanks whole cases afterwards (every case of theirs is past it), and
        # old rejected records and unrouted texts by their age.
        for survivor_id, party_ref, _erased_at in survivors:
            summary.tables[CASE_EVENTS] += await _erase_case_payloads(
                session, survivor_id, party_ref, cutoff, now
            )
        await _erase_mentions(session, existing, marks, summary, now)
    anything = sum(summary.tables.values()) + summary.notifications_cancelled > before
    for survivor_id, _party_ref, erased_at in survivors:
        if erased_at is not None and not anything:
            continue  # erased before, and nothing of theirs was left
        summary.survivors_erased += 1
        audit.record(
            session,
            at=now,
            actor=ACTOR,
            action="survivor.erased",
            survivor_id=survivor_id,
            reason=reason.value,
        )
        log.info("survivor.erased", survivor_id=survivor_id, reason=reason.value)
    values: dict[str, Any] = {"erased_at": now}
    if reason is Reason.RETENTION:
        # A survivor who reports again later starts afresh instead of being matched to an
        # erased record that the rules skip. After an erasure request the upstream reference
        # stays: a feed that re-sends their record must not bring their data back.
        values["party_ref"] = None
    await session.execute(
        update(m.Survivor)
        .where(m.Survivor.id.in_(ids), m.Survivor.erased_at.is_(None))
        .values(values)
    )


async def _existing_tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names)


def _lock(session: AsyncSession, query: Any) -> Any:
    return query.with_for_update() if _postgres(session) else query


async def _finish(session: AsyncSession, dry_run: bool) -> None:
    if dry_run:
        await session.rollback()
    else:
        await session.commit()


async def erase_one(
    engine: AsyncEngine, survivor_id: int, *, now: datetime, retention_days: int, dry_run: bool
) -> Summary:
    """A survivor's erasure request, at once and whatever their cases' state."""
    cutoff = now - timedelta(days=retention_days)
    summary = Summary(Reason.REQUEST, dry_run, cutoff)
    existing = await _existing_tables(engine)
    async with session_factory(engine)() as session:
        await session.begin()
        if await session.get(m.Survivor, survivor_id) is None:
            await session.rollback()
            raise RetentionError(f"no survivor {survivor_id}")
        await erase_survivors(
            session,
            [survivor_id],
            reason=Reason.REQUEST,
            now=now,
            cutoff=cutoff,
            existing=existing,
            summary=summary,
        )
        await _finish(session, dry_run)
    return summary


def _closed_before(cutoff: datetime) -> ColumnElement[bool]:
    """A case closed before the cutoff and quiet since: an event received after the cutoff (a
    review, a release years after sentence under the Victim Contact Scheme) keeps it live."""
    later = aliased(m.CaseEvent)  # its own alias: never the event row an outer query is on
    recent = (
        exists().where(later.urn == m.Case.urn, later.received_at >= cutoff).correlate_except(later)
    )
    return and_(m.Case.closed_at.is_not(None), m.Case.closed_at < cutoff, not_(recent))


def _past_retention(cutoff: datetime) -> ColumnElement[bool]:
    """Survivors not yet erased whose every case closed before the cutoff (one with no case at
    all once their record is older than the cutoff): a survivor on any open case keeps theirs."""
    live_case = exists().where(
        m.CaseSurvivor.survivor_id == m.Survivor.id,
        m.CaseSurvivor.case_id == m.Case.id,
        not_(_closed_before(cutoff)),
    )
    any_case = exists().where(m.CaseSurvivor.survivor_id == m.Survivor.id)
    return and_(
        m.Survivor.erased_at.is_(None),
        not_(live_case),
        or_(any_case, m.Survivor.created_at < cutoff),
    )


async def run(
    engine: AsyncEngine,
    *,
    now: datetime,
    retention_days: int,
    dry_run: bool = False,
    batch_size: int = 100,
    progress: Progress | None = None,
) -> Summary:
    """One retention pass: survivors past retention, then the payloads of cases closed before
    the cutoff (and of events whose case never appeared), rejected records and unrouted inbound
    texts older than it. Resumable and idempotent; `dry_run` rolls every batch back."""
    cutoff = now - timedelta(days=retention_days)
    summary = Summary(Reason.RETENTION, dry_run, cutoff)
    existing = await _existing_tables(engine)
    found = {s.owner: s for s in sweeps(existing)}
    for sweep in found.values():
        summary.tables[sweep.name] += 0
    sessions = session_factory(engine)
    say = progress or (lambda _text: None)

    # Survivors past retention; then survivors erased before with something of theirs recorded
    # since (a preference saved by hand after the erasure), erased again.
    since = exists().where(
        m.ContactPreference.survivor_id == m.Survivor.id,
        m.ContactPreference.recorded_at > m.Survivor.erased_at,
    )
    for who in (_past_retention(cutoff), and_(m.Survivor.erased_at.is_not(None), since)):
        last = 0
        while True:
            async with sessions() as session:
                await session.begin()
                query = (
                    select(m.Survivor.id)
                    .where(who, m.Survivor.id > last)
                    .order_by(m.Survivor.id)
                    .limit(batch_size)
                )
                ids = list((await session.scalars(_lock(session, query))).all())
                await erase_survivors(
                    session,
                    ids,
                    reason=Reason.RETENTION,
                    now=now,
                    cutoff=cutoff,
                    existing=existing,
                    summary=summary,
                )
                await _finish(session, dry_run)
            if not ids:
                break
            last = ids[-1]
            say(f"survivors: {summary.survivors_erased} erased")

    aged = _Aged(sessions, summary, now, batch_size, say)
    if (events := found.get(Owner.CASE)) is not None:
        t = events.table.c
        old_case = select(m.Case.urn).where(_closed_before(cutoff))
        no_case = ~exists().where(m.Case.urn == t.urn)
        await aged.erase(
            events, or_(t.urn.in_(old_case), and_(t.received_at < cutoff, no_case)), _audit_events
        )
    if (rejected := found.get(Owner.AGE)) is not None:
        await aged.erase(rejected, rejected.table.c.received_at < cutoff, _audit_rejected)
    if (inbound := found.get(Owner.INBOUND)) is not None:
        t = inbound.table.c
        # A text nobody could be found for is kept for operations until the cutoff; one from a
        # survivor goes with the rest of their data.
        nobody = func.json_array_length(t.survivor_ids) == 0
        await aged.erase(inbound, and_(t.received_at < cutoff, nobody), None)
    return summary


AuditRows = Callable[[AsyncSession, list[Any], datetime], Awaitable[None]]


@dataclass
class _Aged:
    """Erasing rows by age, in key order, one batch per transaction."""

    sessions: async_sessionmaker[AsyncSession]
    summary: Summary
    now: datetime
    batch_size: int
    say: Progress

    async def erase(
        self, sweep: Sweep, where: ColumnElement[bool], audit_rows: AuditRows | None
    ) -> None:
        key = sweep.key
        last: Any = None
        while True:
            async with self.sessions() as session:
                await session.begin()
                query = select(key).where(where).order_by(key).limit(self.batch_size)
                if last is not None:
                    query = query.where(key > last)
                batch = list((await session.scalars(query)).all())
                changed = await _clear(session, sweep, key.in_(batch)) if batch else []
                self.summary.tables[sweep.name] += len(changed)
                if changed and audit_rows is not None:
                    await audit_rows(session, changed, self.now)
                await _finish(session, self.summary.dry_run)
            if not batch:
                return
            last = batch[-1]
            self.say(f"{sweep.name}: {self.summary.tables[sweep.name]} erased")


async def _audit_events(session: AsyncSession, ids: list[Any], now: datetime) -> None:
    """One row per case whose payloads went; one per event that never had a case."""
    rows = (
        await session.execute(
            select(m.CaseEvent.id, m.Case.id)
            .outerjoin(m.Case, m.Case.urn == m.CaseEvent.urn)
            .where(m.CaseEvent.id.in_(ids))
        )
    ).all()
    per_case = Counter(case_id for _event, case_id in rows if case_id is not None)
    for case_id, events in sorted(per_case.items()):
        _audit_case(session, case_id, events, Reason.RETENTION, now)
    for event_id, case_id in rows:
        if case_id is None:
            audit.record(
                session,
                at=now,
                actor=ACTOR,
                action="case_event.payload_erased",
                case_event_id=event_id,
                reason=Reason.RETENTION.value,
            )


async def _audit_rejected(
    session: AsyncSession, ids: list[Any], now: datetime, reason: Reason = Reason.RETENTION
) -> None:
    for record_id in ids:
        audit.record(
            session,
            at=now,
            actor=ACTOR,
            action="rejected_record.erased",
            rejected_record_id=record_id,
            reason=reason.value,
        )
