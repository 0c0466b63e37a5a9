"""The audit hash chain on SQLite and PostgreSQL: every committed row sealed once, in one chain,
whatever order transactions commit in and however many sealers run; tampering is named."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.core import audit
from services.core.audit_seal import (
    FULL_SWEEP_EVERY,
    HORIZON,
    ROW_FIELDS,
    UNSEALED_GRACE,
    SealCursor,
    seal_hash,
    seal_pending,
    verify,
)
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory, upgrade
from tests.conftest import CLOCK_T0

T0 = CLOCK_T0
Sessions = async_sessionmaker[AsyncSession]


class Db:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions: Sessions = session_factory(engine)
        self.pg = engine.dialect.name == "postgresql"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Db]:
    engine = make_engine(database_url)
    await upgrade(engine)
    try:
        yield Db(engine)
    finally:
        await engine.dispose()


def _entry(session: AsyncSession, i: int, *, at: datetime = T0) -> m.AuditEntry:
    return audit.record(
        session,
        at=at,
        actor="rules",
        action="notification.planned",
        case_id=i,
        notification_id=str(uuid.uuid5(uuid.NAMESPACE_URL, str(i))),
        rule="vc.suspect_arrested.survivor",
        channel="sms",
        n=i,
    )


async def write(sessions: Sessions, count: int, *, at: datetime = T0) -> list[int]:
    async with sessions() as session, session.begin():
        entries = [_entry(session, i, at=at) for i in range(count)]
    return [entry.seq for entry in entries]


async def write_at(sessions: Sessions, seqs: list[int], *, at: datetime = T0) -> None:
    """Rows with chosen sequence numbers: a row that commits later than higher ones, simulated."""
    async with sessions() as session, session.begin():
        for seq in seqs:
            _entry(session, seq, at=at).seq = seq


async def seal_all(sessions: Sessions, now: datetime, batch: int = 5000) -> int:
    total = 0
    while (sealed := await seal_pending(sessions, now=now, batch=batch)) > 0:
        total += sealed
        if sealed < batch:
            break
    return total


async def chain(sessions: Sessions) -> list[tuple[int, int]]:
    """(position, seq) of every seal, in chain order."""
    async with sessions() as session:
        rows = await session.execute(
            select(m.AuditSeal.position, m.AuditSeal.seq).order_by(m.AuditSeal.position)
        )
        return [(position, seq) for position, seq in rows]


async def all_seqs(sessions: Sessions) -> set[int]:
    async with sessions() as session:
        return set((await session.scalars(select(m.AuditEntry.seq))).all())


async def assert_one_good_chain(sessions: Sessions) -> None:
    links = await chain(sessions)
    seqs = await all_seqs(sessions)
    assert [position for position, _ in links] == list(range(1, len(links) + 1))
    assert sorted(seq for _, seq in links) == sorted(seqs)  # every row, each exactly once
    report = await verify(sessions, now=T0)
    assert report.ok, report.as_json()
    assert report.rows_checked == report.seals_checked == len(seqs)
    assert report.unsealed == 0
    assert report.first_problem is None


# -- sealing -----------------------------------------------------------------------------------


async def test_an_empty_log_verifies(db: Db) -> None:
    assert await seal_pending(db.sessions, now=T0) == 0
    report = await verify(db.sessions, now=T0)
    assert report.ok and report.rows_checked == 0 and report.seals_checked == 0


async def test_rows_of_concurrent_transactions_are_all_sealed_exactly_once(db: Db) -> None:
    writers, transactions, per_transaction = 8, 12, 3
    rng = random.Random(7)
    writing = True

    async def writer(w: int) -> None:
        for t in range(transactions):
            async with db.sessions() as session, session.begin():
                for i in range(per_transaction):
                    _entry(session, w * 1000 + t * 10 + i)
                await session.flush()  # the seq is taken here ...
                await asyncio.sleep(rng.random() * 0.02)  # ... the commit comes later

    async def sealer() -> int:
        total, tick = 0, 0
        while writing:
            tick += 1
            total += await seal_pending(db.sessions, now=T0 + timedelta(seconds=tick), batch=50)
            await asyncio.sleep(0.002)
        return total

    sealing = asyncio.create_task(sealer())
    await asyncio.gather(*(writer(w) for w in range(writers)))
    writing = False
    sealed = await sealing + await seal_all(db.sessions, T0 + timedelta(hours=2))

    assert sealed == writers * transactions * per_transaction
    await assert_one_good_chain(db.sessions)
    if db.pg:  # the case this is about did happen: a lower seq was sealed after a higher one
        links = await chain(db.sessions)
        assert any(b < a for (_, a), (_, b) in zip(links, links[1:], strict=False))


async def test_a_row_that_commits_after_higher_ones_were_sealed_joins_the_chain_later(
    db: Db,
) -> None:
    await write(db.sessions, 3)
    if db.pg:
        # Really out of order: a transaction takes its seq, another commits higher ones and
        # they are sealed, then the first commits.
        async with db.sessions() as late, late.begin():
            held = _entry(late, 99)
            await late.flush()
            higher = await write(db.sessions, 2)
            assert min(higher) > held.seq
            assert await seal_pending(db.sessions, now=T0) == 5
        late_seq = held.seq
    else:
        # SQLite writes one transaction at a time: simulate the late commit with a chosen seq.
        await write_at(db.sessions, [20, 21])
        assert await seal_pending(db.sessions, now=T0) == 5
        late_seq = 10
        await write_at(db.sessions, [late_seq])

    assert await seal_pending(db.sessions, now=T0 + timedelta(seconds=5)) == 1
    links = await chain(db.sessions)
    assert links[-1] == (6, late_seq)  # at the end of the chain, carrying its own seq
    await assert_one_good_chain(db.sessions)


async def test_a_round_that_is_behind_carries_on_where_the_last_one_stopped(db: Db) -> None:
    """A backlog is sealed in one walk: a round after a full batch starts after that batch's
    last row, not again from the marks past every row just sealed. A row that commits below it
    meanwhile is sealed by the next round from the marks (at once here: `every=0`), and only
    such a round moves the marks."""
    await write_at(db.sessions, [2, 4, 6, 8, 10, 12])
    cursor = SealCursor(every=0)
    assert await seal_pending(db.sessions, now=T0, batch=4, cursor=cursor) == 4
    assert cursor.after == 8 and cursor.behind
    await write_at(db.sessions, [5])  # commits late, below where the round stopped
    assert await seal_pending(db.sessions, now=T0, batch=4, cursor=cursor) == 2  # 10 and 12
    assert cursor.after == 12 and not cursor.behind
    report = await verify(db.sessions, now=T0)
    assert report.unsealed == 1 and report.oldest_unsealed_seq == 5
    async with db.sessions() as session:
        head = await session.get(m.AuditChainHead, 1)
        assert head is not None and head.candidate_seq is None and head.full_sweep_at is None
    assert await seal_pending(db.sessions, now=T0, batch=4, cursor=cursor) == 1
    assert (await chain(db.sessions))[-1] == (7, 5)
    async with db.sessions() as session:
        head = await session.get(m.AuditChainHead, 1)
        assert head is not None and head.candidate_seq == 12 and head.full_sweep_at is not None
    await assert_one_good_chain(db.sessions)


async def test_caught_up_a_round_looks_behind_it_once_a_minute(db: Db) -> None:
    """Caught up, rounds carry on after the last row sealed; the walk from the marks, which
    finds a row that committed after higher ones were sealed, comes once every `every`."""
    cursor = SealCursor()  # every 60 s
    await write_at(db.sessions, [2, 4])
    assert await seal_pending(db.sessions, now=T0, cursor=cursor) == 2  # from the marks
    await write_at(db.sessions, [3, 6])  # 3 commits late
    assert await seal_pending(db.sessions, now=T0, cursor=cursor) == 1  # 6, after 4
    assert (await verify(db.sessions, now=T0)).oldest_unsealed_seq == 3
    assert cursor.marks_at is not None
    cursor.marks_at -= cursor.every  # a minute on
    assert await seal_pending(db.sessions, now=T0, cursor=cursor) == 1  # 3, from the marks
    await assert_one_good_chain(db.sessions)


async def test_a_round_from_the_marks_that_is_behind_still_counts_as_the_minute_s_walk(
    db: Db,
) -> None:
    """During a replay a round from the marks may seal a full batch: the rounds after it carry
    on from where it stopped, and the next walk from the marks comes a minute later, not as
    soon as they catch up (on a new database that walk is the whole log)."""
    await write_at(db.sessions, [2, 4, 6, 8, 10])
    cursor = SealCursor()  # every 60 s
    assert await seal_pending(db.sessions, now=T0, batch=4, cursor=cursor) == 4  # from the marks
    assert cursor.behind and cursor.marks_at is not None
    await write_at(db.sessions, [3])  # commits late
    assert await seal_pending(db.sessions, now=T0, batch=4, cursor=cursor) == 1  # 10, carrying on
    await write_at(db.sessions, [12])
    assert await seal_pending(db.sessions, now=T0, batch=4, cursor=cursor) == 1  # 12, not 3
    cursor.marks_at -= cursor.every  # a minute on
    assert await seal_pending(db.sessions, now=T0, batch=4, cursor=cursor) == 1  # 3
    await assert_one_good_chain(db.sessions)


async def age_marks(sessions: Sessions, **by: timedelta) -> None:
    """Move the sealer's sweep marks back, as if that much real time had passed."""
    async with sessions() as session, session.begin():
        head = await session.get(m.AuditChainHead, 1)
        assert head is not None
        for mark, delta in by.items():
            setattr(head, mark, getattr(head, mark) - delta)


async def test_a_transaction_open_past_the_horizon_is_caught_by_the_full_sweep(db: Db) -> None:
    await write_at(db.sessions, [1002, 1003, 1004, 1005])
    assert await seal_pending(db.sessions, now=T0) == 4  # notes 1005 as the candidate mark
    assert await seal_pending(db.sessions, now=T0) == 0
    async with db.sessions() as session:
        head = await session.get(m.AuditChainHead, 1)
        assert head is not None and (head.swept_to, head.candidate_seq) == (0, 1005)
    await age_marks(db.sessions, candidate_at=HORIZON)
    assert await seal_pending(db.sessions, now=T0) == 0  # promotes it
    async with db.sessions() as session:
        head = await session.get(m.AuditChainHead, 1)
        assert head is not None and head.swept_to == 1005

    await write_at(db.sessions, [1001])  # its transaction was open for longer than HORIZON
    later = T0 + timedelta(minutes=1)
    assert await seal_pending(db.sessions, now=later) == 0  # below the mark: not looked at
    report = await verify(db.sessions, now=later)
    assert report.ok and report.unsealed == 1 and report.oldest_unsealed_seq == 1001

    stale = T0 + UNSEALED_GRACE + timedelta(seconds=1)
    report = await verify(db.sessions, now=stale)
    assert not report.ok and report.first_problem_seq == 1001
    assert report.first_problem is not None and "unsealed" in report.first_problem

    await age_marks(db.sessions, full_sweep_at=FULL_SWEEP_EVERY)
    assert await seal_pending(db.sessions, now=stale) == 1  # the full sweep finds it
    await assert_one_good_chain(db.sessions)


async def test_the_full_sweep_goes_back_to_the_marks_of_the_sweep_before_last(db: Db) -> None:
    """The hourly sweep does not read the whole log: it starts where the sweep before last
    found the marks. A row below that (a transaction open for more than an hour) is left to
    `verify`, which names it, and to a sweep from the start, which seals it."""
    await write_at(db.sessions, [1002, 1003, 1004, 1005])
    assert await seal_pending(db.sessions, now=T0) == 4  # the first sweep, from 0
    await age_marks(db.sessions, candidate_at=HORIZON)
    assert await seal_pending(db.sessions, now=T0) == 0  # promotes 1005
    floors = []
    for _ in range(2):
        await age_marks(db.sessions, full_sweep_at=FULL_SWEEP_EVERY)
        assert await seal_pending(db.sessions, now=T0) == 0
        async with db.sessions() as session:
            head = await session.get(m.AuditChainHead, 1)
            assert head is not None and head.swept_to == 1005
            floors.append((head.sweep_floor, head.sweep_next_floor))
    assert floors == [(0, 1005), (1005, 1005)]

    await write_at(db.sessions, [1001])  # its transaction was open for over an hour
    await age_marks(db.sessions, full_sweep_at=FULL_SWEEP_EVERY)
    assert await seal_pending(db.sessions, now=T0) == 0  # a sweep from 1005 does not see it
    stale = T0 + UNSEALED_GRACE + timedelta(seconds=1)
    report = await verify(db.sessions, now=stale)
    assert not report.ok and report.first_problem_seq == 1001
    assert await seal_pending(db.sessions, now=stale, from_start=True) == 1
    await assert_one_good_chain(db.sessions)


# -- tampering -----------------------------------------------------------------------------


async def _refused(db: Db, sql: str) -> str:
    with pytest.raises(DBAPIError) as refused:
        async with db.engine.begin() as conn:
            await conn.execute(text(sql))
    return str(refused.value)


async def as_attacker(db: Db, table: str, *statements: str) -> None:
    """Run `statements` with the append-only triggers out of the way, as someone with full rights
    would (PostgreSQL: a superuser; SQLite: anyone who can write the file), then restore them."""
    async with db.engine.begin() as conn:
        if db.pg:
            await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER ALL"))
            for sql in statements:
                await conn.execute(text(sql))
            await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER ALL"))
        else:
            triggers = (
                await conn.execute(
                    text(
                        "SELECT name, sql FROM sqlite_master "
                        "WHERE type = 'trigger' AND tbl_name = :table"
                    ),
                    {"table": table},
                )
            ).all()
            assert triggers
            for name, _ in triggers:
                await conn.execute(text(f"DROP TRIGGER {name}"))
            for sql in statements:
                await conn.execute(text(sql))
            for _, sql in triggers:
                await conn.execute(text(sql))


@pytest.fixture
async def sealed_ten(db: Db) -> Db:
    assert await write(db.sessions, 10) == list(range(1, 11))
    assert await seal_pending(db.sessions, now=T0) == 10
    assert (await verify(db.sessions, now=T0)).ok
    return db


async def test_nobody_updates_or_deletes_audit_rows_or_seals(sealed_ten: Db) -> None:
    db = sealed_ten
    for table in ("audit_log", "audit_seals"):
        assert "append-only" in await _refused(db, f"UPDATE {table} SET seq = seq")
        assert "append-only" in await _refused(db, f"DELETE FROM {table}")
    if db.pg:
        assert "append-only" in await _refused(db, "TRUNCATE audit_log")
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(m.AuditEntry)) == 10


async def test_a_changed_row_is_named(sealed_ten: Db) -> None:
    db = sealed_ten
    await as_attacker(
        db, "audit_log", """UPDATE audit_log SET codes = '{"channel": "email"}' WHERE seq = 4"""
    )
    report = await verify(db.sessions, now=T0)
    assert not report.ok
    assert report.first_problem_seq == 4
    assert report.first_problem is not None
    assert report.first_problem.startswith("row seq 4 does not match its seal")
    assert report.problem_count == 1  # the links after it still hold


async def test_a_deleted_sealed_row_is_named(sealed_ten: Db) -> None:
    db = sealed_ten
    await as_attacker(db, "audit_log", "DELETE FROM audit_log WHERE seq = 6")
    report = await verify(db.sessions, now=T0)
    assert not report.ok and report.first_problem_seq == 6
    assert report.first_problem is not None and report.first_problem.startswith("row seq 6 missing")


@pytest.mark.parametrize(
    ("statements", "expected", "position"),
    [
        (
            ["UPDATE audit_seals SET hash = '" + "ab" * 32 + "' WHERE position = 3"],
            "seal 3 (row seq 3): its stored hash was altered",
            3,
        ),
        (
            ["UPDATE audit_seals SET hash = '" + "ab" * 32 + "' WHERE position = 10"],
            "seal 10 (row seq 10): its stored hash was altered",
            10,
        ),
        (
            ["UPDATE audit_seals SET prev_hash = '" + "cd" * 32 + "' WHERE position = 3"],
            "seal 3 (row seq 3): broken link",
            3,
        ),
        (
            ["UPDATE audit_seals SET sealed_at = sealed_at - interval '1 hour' WHERE position = 3"],
            "row seq 3 does not match its seal at position 3",
            3,
        ),
        (["DELETE FROM audit_seals WHERE position = 3"], "seal 3 missing", 3),
        (["DELETE FROM audit_seals WHERE position = 10"], "seal 10 missing", 10),
        (["UPDATE audit_seals SET seq = 11 WHERE position = 3"], "row seq 11 does not match", 3),
    ],
)
async def test_an_altered_or_removed_seal_is_named(
    sealed_ten: Db, statements: list[str], expected: str, position: int
) -> None:
    db = sealed_ten
    await write(db.sessions, 1)  # seq 11, not sealed yet
    if not db.pg:
        statements = [
            s.replace("sealed_at - interval '1 hour'", "datetime(sealed_at, '-1 hour')")
            for s in statements
        ]
    await as_attacker(db, "audit_seals", *statements)
    report = await verify(db.sessions, now=T0)
    assert not report.ok
    assert report.first_problem is not None and report.first_problem.startswith(expected), (
        report.as_json()
    )
    assert report.first_problem_position == position


async def test_a_rewound_chain_head_is_named(sealed_ten: Db) -> None:
    db = sealed_ten
    ninth = select(m.AuditSeal.hash).where(m.AuditSeal.position == 9).scalar_subquery()
    async with db.sessions() as session, session.begin():
        await session.execute(update(m.AuditChainHead).values(position=9, hash=ninth))
    report = await verify(db.sessions, now=T0)
    assert not report.ok
    assert report.first_problem is not None and "beyond the chain head" in report.first_problem


# -- PostgreSQL: the application role, a row sealed twice, two sealers --------------------------


async def _pg(pg_url: str) -> Db:
    engine = make_engine(pg_url)
    await upgrade(engine)
    return Db(engine)


async def test_postgresql_app_role_cannot_change_or_unprotect_the_audit(pg_url: str) -> None:
    db = await _pg(pg_url)
    role = f"carehub_app_{uuid.uuid4().hex[:8]}"
    app: AsyncEngine | None = None
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text(f"CREATE ROLE {role} LOGIN"))
            await conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
            # Even careless grants do not let the application rewrite history: the trigger does.
            await conn.execute(text(f"GRANT ALL ON audit_log, audit_seals TO {role}"))
            await conn.execute(text(f"GRANT ALL ON SEQUENCE audit_log_seq_seq TO {role}"))
        app = make_engine(make_url(pg_url).set(username=role).render_as_string(False))
        app_db = Db(app)
        await write(app_db.sessions, 3)  # the application writes as before
        for sql in (
            "UPDATE audit_log SET codes = '{}' WHERE seq = 2",
            "DELETE FROM audit_log WHERE seq = 2",
            "TRUNCATE audit_log",
        ):
            assert "audit_log is append-only" in await _refused(app_db, sql)
        for sql in (
            "ALTER TABLE audit_log DISABLE TRIGGER ALL",
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
            "DROP TRIGGER audit_log_append_only ON audit_log",
        ):
            assert "must be owner" in await _refused(app_db, sql)
        async with db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(m.AuditEntry)) == 3
    finally:
        if app is not None:
            await app.dispose()
        async with db.engine.begin() as conn:
            await conn.execute(text(f"DROP OWNED BY {role}"))
            await conn.execute(text(f"DROP ROLE {role}"))
        await db.engine.dispose()


async def test_postgresql_a_row_sealed_twice_is_named(pg_url: str) -> None:
    db = await _pg(pg_url)
    try:
        await write(db.sessions, 5)
        await seal_pending(db.sessions, now=T0)
        async with db.sessions() as session:
            head = await session.get(m.AuditChainHead, 1)
            row = (
                await session.execute(
                    select(*(getattr(m.AuditEntry, f) for f in ROW_FIELDS)).where(
                        m.AuditEntry.seq == 3
                    )
                )
            ).one()
        assert head is not None
        forged = seal_hash(
            prev_hash=head.hash,
            position=6,
            sealed_at=T0,
            row=dict(zip(ROW_FIELDS, row, strict=True)),
        )
        await as_attacker(
            db,
            "audit_seals",
            "ALTER TABLE audit_seals DROP CONSTRAINT uq_audit_seals_seq",
            "INSERT INTO audit_seals (position, seq, prev_hash, hash, sealed_at) "
            f"VALUES (6, 3, '{head.hash}', '{forged}', '{T0.isoformat()}')",
            f"UPDATE audit_chain_head SET position = 6, hash = '{forged}'",
        )
        report = await verify(db.sessions, now=T0)
        assert not report.ok
        assert report.first_problem == "row seq 3 sealed twice (seals 3 and 6)"
        assert report.problem_count == 1
    finally:
        await db.engine.dispose()


async def test_postgresql_two_sealers_at_once_make_one_chain(pg_url: str) -> None:
    one, two = await _pg(pg_url), Db(make_engine(pg_url))
    writing = True

    async def writer() -> None:
        for _ in range(40):
            await write(one.sessions, 25)

    def sealer(db: Db) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            total, tick = 0, 0
            while True:
                tick += 1
                done = not writing  # read before the round: every row is committed by now
                sealed = await seal_pending(db.sessions, now=T0 + timedelta(seconds=tick), batch=30)
                total += sealed
                if done and sealed == 0:
                    return total
                await asyncio.sleep(0)

        return run

    try:
        sealers = asyncio.gather(sealer(one)(), sealer(two)())
        await writer()
        writing = False
        counts = await sealers
        assert sum(counts) == 1000
        assert all(counts)  # both took turns on the chain head
        await assert_one_good_chain(one.sessions)
    finally:
        await one.engine.dispose()
        await two.engine.dispose()
