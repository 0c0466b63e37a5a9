"""Recording case events: validate, deduplicate, keep party details protected, never lose a record.

A valid new event becomes a `case_events` row (and, for `police.crime_recorded`, the case, its
survivors and their first contact preferences); a duplicate is acknowledged and not recorded
again; anything else is kept in `rejected_records` with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit
from services.core.cloudevents import (
    CanonicalEvent,
    FieldError,
    InvalidEvent,
    payload_hash,
    validate_event,
)
from services.core.db import models as m
from services.core.domain import EventStatus

ACTOR = "ingest"
POLICE_SAFETY_CHECK_VALID = timedelta(days=28)

# Victims of these are entitled to enhanced rights (victims-code.md, "Enhanced rights").
MOST_SERIOUS = frozenset(
    {
        "sexual_offence",
        "domestic_abuse",
        "hate_crime",
        "terrorism",
        "human_trafficking",
        "kidnap_false_imprisonment",
        "arson_endangering_life",
        "attempted_murder",
        "wounding_gbh_intent",
        "homicide",
    }
)


@dataclass
class Outcome:
    """What became of one offered record."""

    status: str  # accepted | duplicate | conflict | invalid
    case_event_id: int | None = None
    rejected_id: int | None = None
    event: CanonicalEvent | None = None
    errors: list[FieldError] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status}
        if self.event is not None:
            body["id"] = self.event.id
            body["source"] = self.event.source
        if self.errors:
            body["errors"] = [{"pointer": e.pointer, "message": e.message} for e in self.errors]
        return body


async def record_event(
    session: AsyncSession,
    obj: object,
    original: bytes,
    *,
    now: datetime,
    way_in: str,
    max_skew: timedelta,
    feed: str | None = None,
) -> Outcome:
    """Validate and record one offered event inside the caller's transaction."""
    try:
        event = validate_event(obj, now=now, max_skew=max_skew)
    except InvalidEvent as exc:
        ids = _ids_of(obj)
        rejected = await reject(
            session,
            original,
            now=now,
            way_in=way_in,
            feed=feed,
            reason_code="invalid",
            errors=exc.errors,
            source=ids[0],
            event_id=ids[1],
        )
        return Outcome("invalid", rejected_id=rejected.id, errors=list(exc.errors))

    digest = payload_hash(event.raw)
    if event.type != "police.crime_recorded":
        # One statement for the common case: insert unless the (source, id) is there already.
        row_id = (await _insert_new(session, [(event, digest)], now)).get((event.source, event.id))
        if row_id is not None:
            _audit_recorded(session, row_id, event, now, way_in)
            return Outcome("accepted", case_event_id=row_id, event=event)
        existing = await _existing(session, event)
        if existing is None:  # pragma: no cover - the conflict that made the insert do nothing
            raise RuntimeError("a conflicting case event vanished within its transaction")
    else:
        existing = await _existing(session, event)
    if existing is None:
        try:
            async with session.begin_nested():
                row = _new_row(event, digest, now)
                session.add(row)
                await session.flush()
                if event.type == "police.crime_recorded":
                    await _record_case(session, event, now)
        except IntegrityError:
            # Another request recorded the same (source, id) a moment ago.
            existing = await _existing(session, event)
            if existing is None:
                raise
        else:
            _audit_recorded(session, row.id, event, now, way_in)
            return Outcome("accepted", case_event_id=row.id, event=event)
    if existing.payload_hash == digest:
        return Outcome("duplicate", case_event_id=existing.id, event=event)
    errors = [FieldError("/id", "was already received from this source with a different payload")]
    rejected = await reject(
        session,
        original,
        now=now,
        way_in=way_in,
        feed=feed,
        reason_code="conflicting_duplicate",
        errors=errors,
        source=event.source,
        event_id=event.id,
    )
    return Outcome("conflict", rejected_id=rejected.id, event=event, errors=errors)


async def record_event_safely(
    session: AsyncSession,
    obj: object,
    original: bytes,
    *,
    now: datetime,
    way_in: str,
    max_skew: timedelta,
    feed: str | None = None,
) -> Outcome:
    """`record_event` in a savepoint: a valid event the database still cannot store (a value
    longer than its column) is rejected on its own with a reason, never failing its batch."""
    try:
        async with session.begin_nested():
            return await record_event(
                session, obj, original, now=now, way_in=way_in, max_skew=max_skew, feed=feed
            )
    except DBAPIError as exc:
        # Not even its (source, id) is stored as text: they may be what could not be stored.
        errors = [FieldError("", f"cannot be stored ({type(exc.orig).__name__})")]
        rejected = await reject(
            session,
            original,
            now=now,
            way_in=way_in,
            feed=feed,
            reason_code="unstorable",
            errors=errors,
        )
        return Outcome("invalid", rejected_id=rejected.id, errors=errors)


# Rows in one multi-row insert at most (PostgreSQL takes 32,767 parameters, 13 a row).
RUN_ROWS = 500


async def record_run(
    session: AsyncSession,
    run: list[tuple[object, CanonicalEvent, bytes, str | None]],
    *,
    now: datetime,
    way_in: str,
    max_skew: timedelta,
) -> list[Outcome]:
    """Record valid events that create no case — (offered object, validated event, original
    bytes, feed) each — in a multi-row insert that skips any (source, id) already recorded,
    under one savepoint: one statement for the run, not a savepoint and an insert each.

    What it did not insert (a duplicate, a conflict, the same pair twice in the run) is then
    recorded on its own, as is every one of them if the database refuses the statement (a
    value it cannot store): the outcomes, row ids and audit rows are those that recording each
    on its own in turn would give."""
    first: dict[tuple[str, str], int] = {}
    for n, (_, event, _, _) in enumerate(run):
        first.setdefault((event.source, event.id), n)
    unique = [(run[n][1], payload_hash(run[n][1].raw)) for n in first.values()]  # in order
    inserted: dict[tuple[str, str], int] = {}
    try:
        async with session.begin_nested():
            for start in range(0, len(unique), RUN_ROWS):
                inserted |= await _insert_new(session, unique[start : start + RUN_ROWS], now)
    except DBAPIError:
        inserted = {}  # one of them cannot be stored: each on its own finds which
    outcomes: list[Outcome] = []
    for n, (obj, event, original, feed) in enumerate(run):
        key = (event.source, event.id)
        row_id = inserted.get(key) if first[key] == n else None
        if row_id is not None:
            _audit_recorded(session, row_id, event, now, way_in)
            outcomes.append(Outcome("accepted", case_event_id=row_id, event=event))
        else:
            outcomes.append(
                await record_event_safely(
                    session, obj, original, now=now, way_in=way_in, max_skew=max_skew, feed=feed
                )
            )
    return outcomes


async def reject(
    session: AsyncSession,
    original: bytes,
    *,
    now: datetime,
    way_in: str,
    reason_code: str,
    errors: list[FieldError],
    feed: str | None = None,
    source: str | None = None,
    event_id: str | None = None,
) -> m.RejectedRecord:
    """Keep a record that could not be accepted, with its reason (the bytes stay protected)."""
    row = m.RejectedRecord(
        received_at=now,
        way_in=way_in,
        feed=feed,
        source=source,
        event_id=event_id,
        reason_code=reason_code,
        errors=[{"pointer": e.pointer, "message": e.message} for e in errors],
        original=original,
    )
    session.add(row)
    await session.flush()
    audit.record(
        session,
        at=now,
        actor=ACTOR,
        action="event.rejected",
        rejected_id=row.id,
        reason=reason_code,
        way_in=way_in,
    )
    return row


def _ids_of(obj: object) -> tuple[str | None, str | None]:
    """(source, id) of an invalid record when they are plausible strings, for the operator."""
    if not isinstance(obj, dict):
        return None, None

    def plausible(value: object) -> str | None:
        return value if isinstance(value, str) and 0 < len(value) <= 200 else None

    return plausible(obj.get("source")), plausible(obj.get("id"))


async def _existing(session: AsyncSession, event: CanonicalEvent) -> m.CaseEvent | None:
    return await session.scalar(
        select(m.CaseEvent).where(
            m.CaseEvent.source == event.source, m.CaseEvent.event_id == event.id
        )
    )


def _new_row(event: CanonicalEvent, digest: str, now: datetime) -> m.CaseEvent:
    return m.CaseEvent(**_new_values(event, digest, now))


def _new_values(event: CanonicalEvent, digest: str, now: datetime) -> dict[str, Any]:
    return {
        "source": event.source,
        "event_id": event.id,
        "type": event.type,
        "urn": event.subject,
        "event_time": event.time,
        "agency_received_at": event.agencyreceivedat,
        "received_at": now,
        "payload": event.raw,
        "payload_hash": digest,
        "status": EventStatus.PENDING,
        # Marked in the recording transaction, published right after it commits: a second
        # transaction to mark it would lock the row just as the rules consumer claims it. If
        # the publish fails, the re-drive republishes it once `published_at` is old enough.
        "published_at": now,
    }


async def _insert_new(
    session: AsyncSession, events: list[tuple[CanonicalEvent, str]], now: datetime
) -> dict[tuple[str, str], int]:
    """Insert each (event, payload hash)'s row unless its (source, id) is recorded already, in
    one statement; the ids of those inserted, by (source, id).

    `ON CONFLICT DO NOTHING` (PostgreSQL and SQLite alike) replaces a look-up, a savepoint and
    an insert: a request that recorded the same pair a moment ago makes this one a duplicate,
    with no integrity error to recover from."""
    dialect = session.get_bind().dialect.name
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    table = m.CaseEvent.__table__
    assert isinstance(table, Table)
    # One statement with its rows as parameters (the driver sends them as multi-row VALUES):
    # compiled once and cached, where rows written into the statement made a new statement,
    # compiled afresh, for every batch.
    statement = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(table.c.id, table.c.source, table.c.event_id)
    )
    params = [_new_values(event, digest, now) for event, digest in events]
    # Nothing this session holds back changes the answer (audit rows, at most): they go in one
    # flush with the transaction, not one before every event.
    with session.no_autoflush:
        rows = (await session.execute(statement, params)).all()
    return {(source, event_id): row_id for row_id, source, event_id in rows}


def _audit_recorded(
    session: AsyncSession, row_id: int, event: CanonicalEvent, now: datetime, way_in: str
) -> None:
    audit.record(
        session,
        at=now,
        actor=ACTOR,
        action="event.recorded",
        case_event_id=row_id,
        type=event.type,
        way_in=way_in,
    )


async def _record_case(session: AsyncSession, event: CanonicalEvent, now: datetime) -> None:
    """Create or extend the case and its survivors from a crime record's victim parties."""
    data = event.data
    category = data.get("offence_category")
    reasons = sorted(set(data.get("enhanced_reasons") or []))
    if category in MOST_SERIOUS and "most_serious_crime" not in reasons:
        reasons.append("most_serious_crime")
    case = await session.scalar(select(m.Case).where(m.Case.urn == event.subject))
    if case is None:
        case = m.Case(urn=event.subject, opened_at=now, enhanced_reasons=[])
        session.add(case)
    case.crime_reference = data.get("crime_reference") or case.crime_reference
    case.offence_category = category or case.offence_category
    case.enhanced_reasons = sorted(set(case.enhanced_reasons or []) | set(reasons))
    case.enhanced_rights = bool(case.enhanced_reasons)
    await session.flush()
    for party in data.get("victims") or []:
        await _record_party(session, event, case, party, now)


async def _record_party(
    session: AsyncSession, event: CanonicalEvent, case: m.Case, party: dict[str, Any], now: datetime
) -> None:
    party_ref = f"{event.source}:{party['party_id']}"
    survivor = await session.scalar(select(m.Survivor).where(m.Survivor.party_ref == party_ref))
    name = party.get("name") or {}
    if survivor is None:
        survivor = m.Survivor(
            party_ref=party_ref,
            full_name=name.get("full"),
            preferred_name=name.get("preferred"),
            date_of_birth=party.get("date_of_birth"),
            consent_to_referral=bool(party.get("consent_to_referral")),
            created_at=now,
        )
        session.add(survivor)
        await session.flush()
    link = await session.get(m.CaseSurvivor, (case.id, survivor.id))
    if link is None:
        session.add(
            m.CaseSurvivor(
                case_id=case.id,
                survivor_id=survivor.id,
                relationship=party.get("relationship") or "victim",
                added_at=now,
            )
        )
    contact = party.get("contact") or {}
    has_version = await session.scalar(
        select(func.count()).where(m.ContactPreference.survivor_id == survivor.id)
    )
    review_by = (now + POLICE_SAFETY_CHECK_VALID).date()
    if contact and not has_version:
        # What the police recorded is the starting point; the advocate's word replaces it.
        session.add(
            m.ContactPreference(
                survivor_id=survivor.id,
                version=1,
                recorded_at=now,
                recorded_by=event.source,
                reason_code="recorded_by_police",
                phone=contact.get("phone"),
                email=contact.get("email"),
                sms_safe=bool(contact.get("safe_to_text")),
                email_safe=bool(contact.get("safe_to_email")),
                # A safety check recorded by the police at the report is only a starting point:
                # it lapses unless the advocate confirms it with the survivor (rule 1).
                sms_safe_review_by=review_by,
                email_safe_review_by=review_by,
                language=contact.get("language") or _flagged_language(party) or "en",
                timezone=contact.get("timezone") or "Europe/London",
            )
        )


def _flagged_language(party: dict[str, Any]) -> str | None:
    """A language the police flagged (`language:pl`) that we cannot write in yet: kept as the
    survivor's choice, so the notifier writes in English and tells their advocate (rule 8)."""
    for flag in party.get("flags") or ():
        if isinstance(flag, str) and flag.startswith("language:"):
            code = flag.split(":", 1)[1].strip().lower()
            if 2 <= len(code) <= 3 and code.isalpha():
                return code
    return None
