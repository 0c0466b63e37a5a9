"""Retention and erasure on SQLite and PostgreSQL: a survivor past retention loses every protected
value that was theirs (found by scanning every Protected column of the models, so a column added
later cannot be forgotten), a survivor on an open case keeps theirs, compliance figures and the
audit chain survive, a second run changes nothing, and an erasure request works on an open case.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services import demo
from services.core import audit
from services.core.audit_seal import seal_pending, verify
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory, upgrade
from services.core.db.protected import PROTECTED_TYPES
from services.core.retention import STAFF_TABLES, RetentionError, erase_one, run, sweeps
from tests.conftest import CLOCK_T0
from tests.e2e.processes import base_env

T0 = CLOCK_T0
DAYS = 2555
LONG_AGO = T0 - timedelta(days=DAYS + 45)
REPO = Path(__file__).resolve().parents[2]

# Every value seeded for a survivor holds one of their markers (case-insensitive).
MARKS = {
    "Alpha": ("alpha", "+447700900111"),
    "Bravo": ("bravo", "+447700900222"),
    "Charlie": ("charlie", "+447700900333"),
}
# Staff's own details (advocates, portal accounts) are not a survivor's: not retention's.
STAFF = {"advocates", "staff_accounts"}


@dataclass
class Seeded:
    alpha: int  # every case closed long ago
    bravo: int  # on an open case
    charlie: int  # on the same open case as bravo
    riley: int  # demo survivor, no case, recorded recently
    alpha_case: int
    bravo_case: int
    bravo_case_event: int


def _nid() -> str:
    return str(uuid.uuid4())


async def _survivor(
    session: AsyncSession, tag: str, case: m.Case, opened: datetime, advocate_id: int
) -> int:
    phone = MARKS[tag][1]
    survivor = m.Survivor(
        party_ref=f"police/01:P-{tag}", full_name=f"{tag} Example", preferred_name=tag,
        date_of_birth="1990-01-01" if tag != "Alpha" else "Alpha-1980", created_at=opened,
    )  # fmt: skip
    session.add(survivor)
    await session.flush()
    session.add(m.CaseSurvivor(case_id=case.id, survivor_id=survivor.id, added_at=opened))
    for version in (1, 2):
        session.add(
            m.ContactPreference(
                survivor_id=survivor.id, version=version, recorded_at=opened,
                recorded_by="police/01", reason_code="recorded_by_police", phone=phone,
                email=f"{tag.lower()}.v{version}@example.org",
                postal_address=f"{version} {tag} Street, Exampletown",
                reason_note=f"{tag} asked for texts only", sms_safe=True, letter_safe=True,
            )
        )  # fmt: skip
    return survivor.id


async def _messages(
    session: AsyncSession,
    tag: str,
    survivor_id: int,
    case: m.Case,
    event: m.CaseEvent,
    at: datetime,
    advocate_id: int,
) -> None:
    """A text sent, a letter posted, a held message with an advocate's note, a reply passed on."""
    phone = MARKS[tag][1]

    def note(role: str, channel: str, status: str, **more: Any) -> m.Notification:
        return m.Notification(
            id=_nid(), case_event_id=event.id, case_id=case.id, event_source=event.source,
            event_id=event.event_id, recipient_role=role, survivor_id=survivor_id,
            channel=channel, template="survivor_case_update", rules_version="t",
            rule=f"t.{role}.{channel}.{status}", status=status, due_by=at + timedelta(days=1),
            created_at=at, updated_at=at, **more,
        )  # fmt: skip

    text = note("survivor", "sms", "delivered", informed_at=at + timedelta(hours=1))
    letter = note("survivor", "letter_task", "sent")
    held = note(
        "survivor", "sms", "held", hold_reason="advocate_first",
        personal_line=f"{tag}, I am sorry. Call me.",
    )  # fmt: skip
    reply = note("advocate", "email", "delivered", advocate_id=advocate_id)
    session.add_all([text, letter, held, reply])
    await session.flush()
    inbound = m.InboundMessage(
        received_at=at, provider="twilio", provider_ref=f"SM{tag}", from_address=phone,
        body=f"{tag} here, is there news?", kind="safety", survivor_ids=[survivor_id],
    )  # fmt: skip
    session.add(inbound)
    session.add_all(
        [
            m.DeliveryAttempt(
                notification_id=text.id, attempt_no=1, channel="sms", started_at=at,
                to_address=phone, subject=f"{tag}", body=f"Hello {tag}, there is news.",
            ),
            m.DeliveryAttempt(
                notification_id=reply.id, attempt_no=1, channel="email", started_at=at,
                to_address="jordan.isva@example.org", subject=f"{tag} replied",
                body=f"{tag} wrote: is there news?",
            ),
            m.LetterTask(
                notification_id=letter.id, subject=f"About your case, {tag}",
                body_text=f"Dear {tag}", body_html=f"<p>Dear {tag}</p>",
                address=f"1 {tag} Street, Exampletown", created_at=at,
            ),
            m.AdvocateAction(
                notification_id=held.id, action="told_in_person",
                note=f"Told {tag} at the clinic", requested_by="staff:1", requested_at=at,
                personal_line=f"{tag}, I am sorry. Call me.",
            ),
            m.FeedbackQuestion(
                survivor_id=survivor_id, case_id=case.id, about_notification_id=text.id,
                question_notification_id=_nid(), event_type=event.type, asked_at=at,
                expires_at=at + timedelta(days=28), answered_at=at, score=2,
                comment=f"{tag}: nobody called me back", answered_via="link",
            ),
        ]
    )  # fmt: skip


def _party(tag: str) -> dict[str, Any]:
    return {
        "party_id": f"P-{tag}",
        "relationship": "victim",
        "name": {"full": f"{tag} Example", "preferred": tag},
        "contact": {"phone": MARKS[tag][1]},
    }


async def _case(
    session: AsyncSession, urn: str, opened: datetime, closed: datetime | None, tags: list[str]
) -> tuple[m.Case, m.CaseEvent]:
    case = m.Case(
        urn=urn, opened_at=opened, closed_at=closed, status="closed" if closed else "open"
    )
    session.add(case)
    await session.flush()
    event = m.CaseEvent(
        source="police/01", event_id=f"{urn}-1", type="police.crime_recorded", urn=urn,
        event_time=opened, received_at=opened, payload_hash="0" * 64, status="processed",
        payload={
            "specversion": "1.0", "id": f"{urn}-1", "source": "police/01",
            "type": "police.crime_recorded", "subject": urn,
            "data": {"offence_category": "sexual_offence", "victims": [_party(t) for t in tags]},
        },
    )  # fmt: skip
    session.add(event)
    await session.flush()
    return case, event


async def seed(session: AsyncSession) -> Seeded:
    ids = await demo.seed(session, T0)
    isva = int(ids["isva_id"])
    old_case, old_event = await _case(
        session, "01AL1111126", LONG_AGO - timedelta(days=400), LONG_AGO, ["Alpha"]
    )
    alpha = await _survivor(session, "Alpha", old_case, old_case.opened_at, isva)
    await _messages(session, "Alpha", alpha, old_case, old_event, old_case.opened_at, isva)

    opened = T0 - timedelta(days=20)
    open_case, open_event = await _case(session, "01BR2222226", opened, None, ["Bravo", "Charlie"])
    bravo = await _survivor(session, "Bravo", open_case, opened, isva)
    charlie = await _survivor(session, "Charlie", open_case, opened, isva)
    await _messages(session, "Bravo", bravo, open_case, open_event, opened, isva)
    await _messages(session, "Charlie", charlie, open_case, open_event, opened, isva)
    # A parked event whose case never came, rejected bytes and a text nobody was found for, all
    # older than the cutoff; and a recent rejected record, which stays.
    session.add_all(
        [
            m.CaseEvent(
                source="police/01", event_id="orphan-1", type="police.suspect_arrested",
                urn="01OR0000026", event_time=LONG_AGO, received_at=LONG_AGO,
                payload={"data": {"note": "Alpha's neighbour"}}, payload_hash="1" * 64,
                status="awaiting_context",
            ),
            m.RejectedRecord(
                received_at=LONG_AGO, way_in="http", reason_code="invalid",
                original=b'{"name": "Alpha Example"}',
            ),
            m.RejectedRecord(
                received_at=T0 - timedelta(days=1), way_in="http", reason_code="invalid",
                original=b'{"name": "Bravo Example"}',
            ),
            m.InboundMessage(
                received_at=LONG_AGO, provider="twilio", provider_ref="SMold",
                from_address="+447700900111", body="Alpha: who is this?", kind="safety",
                survivor_ids=[],
            ),
        ]
    )  # fmt: skip
    audit.record(session, at=T0, actor="test", action="test.seeded", case_id=old_case.id)
    return Seeded(
        alpha, bravo, charlie, int(ids["survivor_id"]), old_case.id, open_case.id, open_event.id
    )


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


async def protected_values(
    sessions: async_sessionmaker[AsyncSession],
) -> dict[tuple[str, ...], str]:
    """Every protected value in the database, decrypted: (table, key, column) -> text."""
    found: dict[tuple[str, ...], str] = {}
    async with sessions() as session:
        for table in m.Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, PROTECTED_TYPES)]
            if not columns:
                continue
            key = list(table.primary_key.columns)[0]
            for row in (await session.execute(select(key, *columns))).all():
                for column, value in zip(columns, row[1:], strict=True):
                    found[(table.name, str(row[0]), column.name)] = _as_text(value)
    return found


def holding(values: dict[tuple[str, ...], str], tag: str) -> dict[tuple[str, ...], str]:
    marks = MARKS[tag]
    return {k: v for k, v in values.items() if any(mark in v.lower() for mark in marks)}


async def audit_rows(sessions: async_sessionmaker[AsyncSession]) -> list[m.AuditEntry]:
    async with sessions() as session:
        return list((await session.scalars(select(m.AuditEntry).order_by(m.AuditEntry.seq))).all())


async def chain_verifies(sessions: async_sessionmaker[AsyncSession]) -> None:
    while await seal_pending(sessions, now=T0) > 0:
        pass
    report = await verify(sessions, now=T0)
    assert report.ok, report.as_json()
    assert report.unsealed == 0


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[tuple[AsyncEngine, Seeded]]:
    engine = make_engine(database_url)
    await upgrade(engine)
    async with session_factory(engine).begin() as session:
        seeded = await seed(session)
    try:
        yield engine, seeded
    finally:
        await engine.dispose()


def test_every_protected_table_is_placed() -> None:
    """A protected table retention cannot tie to a survivor stops it (RetentionError), so one
    added later is either covered or noticed; staff tables are the only ones left out."""
    placed = {s.name for s in sweeps()}
    protected = {
        t.name
        for t in m.Base.metadata.sorted_tables
        if any(isinstance(c.type, PROTECTED_TYPES) for c in t.columns)
    }
    assert placed | STAFF == protected
    assert set(STAFF_TABLES) == STAFF


async def test_retention_erases_a_survivor_past_it_and_keeps_one_on_an_open_case(
    db: tuple[AsyncEngine, Seeded],
) -> None:
    engine, seeded = db
    sessions = session_factory(engine)
    await chain_verifies(sessions)
    before = await protected_values(sessions)
    alpha_before = holding(before, "Alpha")
    # The seed puts Alpha's data in every protected column a survivor's data can be in: a new
    # protected column fails here until the seed (and so this test) covers it.
    columns = {(t, c) for t, _k, c in before if t not in STAFF}
    assert columns == {(t, c) for t, _k, c in alpha_before}, "seed Alpha into every column"
    audit_before = len(await audit_rows(sessions))

    dry = await run(engine, now=T0, retention_days=DAYS, dry_run=True)
    assert await protected_values(sessions) == before, "a dry run changes nothing"

    done = await run(engine, now=T0, retention_days=DAYS)
    assert {**dry.as_dict(), "dry_run": False} == done.as_dict()
    assert done.survivors_erased == 1
    assert done.notifications_cancelled == 1  # Alpha's held message
    assert done.tables == {
        "survivors": 1,
        "contact_preferences": 2,
        "delivery_attempts": 2,
        "letter_tasks": 1,
        "advocate_actions": 1,
        "notifications": 1,  # the advocate's own line in the held message
        "feedback_questions": 1,
        "inbound_messages": 2,  # Alpha's reply, and the old unrouted text
        "case_events": 2,  # Alpha's case, and the event whose case never came
        "rejected_records": 1,
    }

    after = await protected_values(sessions)
    assert holding(after, "Alpha") == {}, "nothing of Alpha's is left in any protected column"
    for tag in ("Bravo", "Charlie"):
        assert holding(after, tag) == holding(before, tag), f"{tag} is on an open case"
    # A row of Alpha's is cleared whole (an advocate's address on a message about Alpha too).
    alpha_rows = {(t, k) for t, k, _c in alpha_before}
    untouched = {key: v for key, v in before.items() if key[:2] not in alpha_rows}
    assert {k: after[k] for k in untouched} == untouched

    async with sessions() as session:
        alpha = await session.get_one(m.Survivor, seeded.alpha)
        assert alpha.erased_at == T0 and alpha.party_ref is None
        assert alpha.full_name is None and alpha.date_of_birth is None
        prefs = (
            await session.scalars(
                select(m.ContactPreference).where(m.ContactPreference.survivor_id == seeded.alpha)
            )
        ).all()
        assert len(prefs) == 2 and all(p.phone is None and p.phone_index is None for p in prefs)
        # Compliance figures survive: status, due_by and informed_at of Alpha's messages.
        figures = (
            await session.execute(
                select(m.Notification.status, m.Notification.due_by, m.Notification.informed_at)
                .where(m.Notification.survivor_id == seeded.alpha)
                .order_by(m.Notification.rule)
            )
        ).all()
        assert [f.status for f in figures] == ["delivered", "sent", "delivered", "cancelled"]
        assert all(f.due_by is not None for f in figures)
        assert sum(f.informed_at is not None for f in figures) == 1  # the text they were sent
        for kept in (seeded.bravo, seeded.charlie, seeded.riley):
            survivor = await session.get_one(m.Survivor, kept)
            assert survivor.erased_at is None and survivor.full_name
        event = await session.scalar(select(m.CaseEvent).where(m.CaseEvent.urn == "01AL1111126"))
        assert event is not None and event.payload == {"erased": True}
        assert event.type == "police.crime_recorded" and event.payload_hash == "0" * 64

    rows = await audit_rows(sessions)
    new = [(r.action, r.codes) for r in rows[audit_before:]]
    assert ("survivor.erased", {"survivor_id": seeded.alpha, "reason": "retention"}) in new
    assert ("case.payloads_erased", {"events": 1, "reason": "retention"}) in new
    assert sum(a == "rejected_record.erased" for a, _ in new) == 1
    assert ("notification.cancelled", {"reason": "erased", "erasure": "retention"}) in new
    assert all(r.actor == "retention" for r in rows[audit_before:])
    await chain_verifies(sessions)

    again = await run(engine, now=T0, retention_days=DAYS)
    assert again.survivors_erased == again.notifications_cancelled == 0
    assert set(again.tables.values()) == {0}
    assert await protected_values(sessions) == after
    assert len(await audit_rows(sessions)) == len(rows)

    # Something of theirs recorded after the erasure (a preference saved by hand) goes next run.
    async with sessions.begin() as session:
        session.add(
            m.ContactPreference(
                survivor_id=seeded.alpha, version=3, recorded_at=T0 + timedelta(hours=1),
                recorded_by="advocate:1", reason_code="agreed_with_survivor",
                phone=MARKS["Alpha"][1],
            )
        )  # fmt: skip
    later = await run(engine, now=T0 + timedelta(hours=2), retention_days=DAYS)
    assert later.survivors_erased == 1 and later.tables["contact_preferences"] == 1
    assert holding(await protected_values(sessions), "Alpha") == {}
    async with sessions() as session:
        alpha = await session.get_one(m.Survivor, seeded.alpha)
        assert alpha.erased_at == T0  # when they were first erased


async def test_an_erasure_request_on_an_open_case(db: tuple[AsyncEngine, Seeded]) -> None:
    from services.core.message_variables import draft
    from services.notifier.last_look import no_longer_wanted
    from services.rules.context import load_case_context

    engine, seeded = db
    sessions = session_factory(engine)
    before = await protected_values(sessions)

    done = await erase_one(engine, seeded.bravo, now=T0, retention_days=DAYS, dry_run=False)
    assert done.survivors_erased == 1
    assert done.notifications_cancelled == 1
    assert done.tables["case_events"] == 1  # scrubbed: Charlie is still on the case
    assert done.tables["rejected_records"] == 1  # a rejected record that named them

    after = await protected_values(sessions)
    assert holding(after, "Bravo") == {}
    shared = ("case_events", str(seeded.bravo_case_event), "payload")  # scrubbed, below
    for tag in ("Alpha", "Charlie"):
        kept = {k: v for k, v in holding(before, tag).items() if k != shared}
        assert {k: v for k, v in holding(after, tag).items() if k != shared} == kept

    async with sessions() as session:
        bravo = await session.get_one(m.Survivor, seeded.bravo)
        # The upstream reference stays, so a feed re-sending their record cannot revive them.
        assert bravo.erased_at == T0 and bravo.party_ref == "police/01:P-Bravo"
        event = await session.scalar(select(m.CaseEvent).where(m.CaseEvent.urn == "01BR2222226"))
        assert event is not None
        assert event.payload["data"]["victims"] == [_party("Charlie")]
        assert event.payload["data"]["offence_category"] == "sexual_offence"
        theirs = (
            await session.scalars(
                select(m.Notification).where(m.Notification.survivor_id == seeded.bravo)
            )
        ).all()
        held = [n for n in theirs if n.hold_reason == "advocate_first"]
        assert [(n.status, n.status_reason) for n in held] == [("cancelled", "erased")]
        # Nothing can message them later: the rules no longer see them on the case, and the
        # notifier finds no address and no safe channel (and does not fail on the empty record).
        case = await session.get_one(m.Case, seeded.bravo_case)
        context = await load_case_context(session, case, T0)
        assert [s.survivor.id for s in context.survivors] == [seeded.charlie]
        sms = next(n for n in theirs if n.channel == "sms" and n.status == "delivered")
        assert await no_longer_wanted(session, sms, T0) == "channel_no_longer_safe"
        assert await draft(session, sms, T0) is None
    # A message that was already being sent when they were erased comes back undeliverable: no
    # other channel is tried and nobody is given a task about them.
    from services.notifier.fallback import fall_back
    from services.notifier.last_look import hand_to_advocate

    async with sessions.begin() as session:
        case = await session.get_one(m.Case, seeded.bravo_case)
        sms = await session.get_one(m.Notification, sms.id)
        assert await fall_back(session, sms, case, "no_address", T0) is None
        assert await hand_to_advocate(session, sms, case, "no_address", T0) is None
        tasks = await session.scalar(
            select(func.count())
            .select_from(m.Notification)
            .where(m.Notification.survivor_id == seeded.bravo, m.Notification.created_at > T0)
        )
        assert tasks == 0

    entries = await audit_rows(sessions)
    assert ("survivor.erased", {"survivor_id": seeded.bravo, "reason": "request"}) in [
        (r.action, r.codes) for r in entries
    ]
    await chain_verifies(sessions)

    again = await erase_one(engine, seeded.bravo, now=T0, retention_days=DAYS, dry_run=False)
    assert again.survivors_erased == 0 and set(again.tables.values()) <= {0}
    assert len(await audit_rows(sessions)) == len(entries)
    with pytest.raises(RetentionError):
        await erase_one(engine, 999_999, now=T0, retention_days=DAYS, dry_run=False)


def _carehub(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_line_end_to_end(database_url: str, tmp_path: Path, clock_file: Path) -> None:
    async def prepare() -> Seeded:
        engine = make_engine(database_url)
        try:
            await upgrade(engine)
            async with session_factory(engine).begin() as session:
                return await seed(session)
        finally:
            await engine.dispose()

    seeded = asyncio.run(prepare())
    env = base_env(
        CAREHUB_DATABASE_URL=database_url,
        CAREHUB_VAR_DIR=str(tmp_path / "var"),
        CAREHUB_CLOCK_FILE=str(clock_file),
        CAREHUB_RETENTION_DAYS=str(DAYS),
        CAREHUB_LOG_LEVEL="WARNING",
    )

    def carehub(*args: str, code: int = 0) -> dict[str, Any]:
        done = _carehub(list(args), env, tmp_path)
        assert done.returncode == code, done.stderr
        last: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return last

    dry = carehub("retention", "run", "--dry-run")
    assert dry["dry_run"] is True and dry["survivors_erased"] == 1
    done = carehub("retention", "run", "--batch-size", "1")
    assert dry["tables"] == done["tables"] and done["survivors_erased"] == 1
    assert carehub("retention", "run")["survivors_erased"] == 0
    erased = carehub("retention", "erase", "--survivor", str(seeded.bravo), "--reason", "request")
    assert erased["reason"] == "request" and erased["survivors_erased"] == 1
    assert erased["notifications_cancelled"] == 1
    assert "error" in carehub(
        "retention", "erase", "--survivor", "999999", "--reason", "request", code=2
    )
    assert carehub("audit", "verify")["ok"] is True

    async def left() -> int:
        engine = make_engine(database_url)
        try:
            values = await protected_values(session_factory(engine))
            return len(holding(values, "Alpha")) + len(holding(values, "Bravo"))
        finally:
            await engine.dispose()

    assert asyncio.run(left()) == 0


async def test_news_after_the_cutoff_keeps_a_closed_case(db: tuple[AsyncEngine, Seeded]) -> None:
    """A case closed long ago that hears again (a release, years on, under the Victim Contact
    Scheme) is live: its survivor keeps their data until it has been quiet long enough."""
    engine, seeded = db
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        case = await session.get_one(m.Case, seeded.alpha_case)
        session.add(
            m.CaseEvent(
                source="probation/01", event_id="late-1", type="probation.released",
                urn=case.urn, event_time=T0 - timedelta(days=2),
                received_at=T0 - timedelta(days=2), payload={"data": {}},
                payload_hash="1" * 64, status="processed",
            )
        )  # fmt: skip
    done = await run(engine, now=T0, retention_days=DAYS)
    assert done.survivors_erased == 0
    async with sessions() as session:
        alpha = await session.get_one(m.Survivor, seeded.alpha)
        assert alpha.erased_at is None and alpha.full_name is not None
