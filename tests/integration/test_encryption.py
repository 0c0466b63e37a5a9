"""Field encryption end to end: nothing personal in a raw dump, keys rotate in resumable batches,
the blind index finds a survivor by phone, production refuses to start without keys."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.cli import SERVICES
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory, upgrade
from services.core.keys import blind_index, configure_keys
from services.core.rotation import protected_tables, rotate
from services.core.runner import running_stack
from services.core.settings import ConfigurationError, load_settings
from services.notifier.providers import _senders, handle_inbound
from tests.conftest import CLOCK_T0
from tests.e2e.processes import base_env
from tests.integration.test_pipeline import CE, crime_recorded, seed_team, wait_for_files

FULL_NAME = "Quenby Marchetti-Oyelaran"
PREFERRED = "Quenby"
PHONE = "+447700900987"
EMAIL = "quenby.marchetti@example.org"
BIRTH = "1991-07-23"
PERSONAL = (FULL_NAME, PREFERRED, PHONE, EMAIL, BIRTH, "Marchetti")


def b64key(size: int = 32) -> str:
    return base64.b64encode(os.urandom(size)).decode()


def write_keyring(path: Path, primary: str, keys: dict[str, str], index_key: str) -> Path:
    doc = {"primary": primary, "keys": keys, "blind_index_key": index_key}
    path.write_text(json.dumps(doc))
    return path


def quenby(urn: str, event_id: str) -> dict[str, Any]:
    event = crime_recorded(urn, event_id)
    party = event["data"]["victims"][0]
    party["name"] = {"full": FULL_NAME, "preferred": PREFERRED}
    party["date_of_birth"] = BIRTH
    party["contact"] = {
        "phone": PHONE,
        "safe_to_text": True,
        "email": EMAIL,
        "safe_to_email": True,
    }
    return event


def key_id(stored: bytes) -> str:
    return bytes(stored[2 : 2 + stored[1]]).decode()


async def raw_key_ids(engine: AsyncEngine) -> dict[str, list[set[str]]]:
    """Per table and row, the key ids of its stored protected values, read with plain SQL."""
    found: dict[str, list[set[str]]] = {}
    async with engine.connect() as conn:
        for spec in protected_tables():
            cols = ", ".join(spec.columns)
            rows = (await conn.execute(text(f"SELECT {cols} FROM {spec.name}"))).all()
            found[spec.name] = [{key_id(v) for v in row if v is not None} for row in rows]
    return found


def under(ids: dict[str, list[set[str]]]) -> set[str]:
    return {kid for rows in ids.values() for kids in rows for kid in kids}


class Interrupted(Exception):
    pass


async def seed_every_protected_table(session: AsyncSession, now: datetime, survivors: int) -> None:
    team = m.Team(name="Rotation team", is_default=True)
    session.add(team)
    await session.flush()
    isva = m.Advocate(
        staff_ref="R1", role="isva", team_id=team.id, display_name="Ira Isva",
        email="ira@example.org", phone="+447700900011", created_at=now,
    )  # fmt: skip
    case = m.Case(urn="01RT1234526", opened_at=now)
    session.add_all([isva, case])
    await session.flush()
    event = m.CaseEvent(
        source="police/01", event_id="r1", type="police.crime_recorded", urn=case.urn,
        event_time=now, received_at=now, payload={"victims": [{"name": FULL_NAME}]},
        payload_hash="0" * 64,
    )  # fmt: skip
    session.add(event)
    await session.flush()
    for n in range(survivors):
        survivor = m.Survivor(
            party_ref=f"r:{n}", full_name=f"{FULL_NAME} {n}", preferred_name=PREFERRED,
            date_of_birth=BIRTH, created_at=now,
        )  # fmt: skip
        session.add(survivor)
        await session.flush()
        session.add(
            m.ContactPreference(
                survivor_id=survivor.id, version=1, recorded_at=now, recorded_by="test",
                reason_code="test", phone=f"+4477009009{n:02d}", email=EMAIL,
                reason_note=None if n % 2 else "spoke on the phone",
            )
        )  # fmt: skip
    notification = m.Notification(
        id="00000000-0000-0000-0000-000000000001", case_event_id=event.id, case_id=case.id,
        event_source=event.source, event_id=event.event_id, recipient_role="survivor",
        template="survivor_case_update", rules_version="t", rule="t", status="sent",
        created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(notification)
    await session.flush()
    session.add_all(
        [
            m.DeliveryAttempt(
                notification_id=notification.id, attempt_no=1, channel="sms", started_at=now,
                to_address=PHONE, body=f"Hello {PREFERRED}",
            ),
            m.RejectedRecord(
                received_at=now, way_in="http", reason_code="invalid",
                original=json.dumps({"name": FULL_NAME}).encode(),
            ),
            m.InboundMessage(
                received_at=now, provider="twilio", provider_ref="SM1", from_address=PHONE,
                body="STOP", kind="stop",
            ),
            m.LetterTask(
                notification_id=notification.id, subject="An update", body_text=f"Dear {PREFERRED}",
                body_html=f"<p>Dear {PREFERRED}</p>", address=f"{FULL_NAME}\nZZ99 9ZZ",
                created_at=now,
            ),
            m.AdvocateAction(
                notification_id=notification.id, action="told_in_person",
                note=f"Told {PREFERRED} at the centre", requested_by="staff:1",
                requested_at=now,
            ),
            m.FeedbackQuestion(
                survivor_id=1, case_id=case.id, about_notification_id=notification.id,
                question_notification_id=notification.id, event_type=event.type, asked_at=now,
                expires_at=now, comment=f"{PREFERRED} says thank you",
            ),
        ]
    )  # fmt: skip
    session.add(
        m.StaffAccount(
            username="rotation-isva", role="advocate", advocate_id=isva.id,
            password_hash="argon2-hash", totp_secret="JBSWY3DPEHPK3PXP", failed_sign_ins=0,
            created_at=now,
        )
    )  # fmt: skip


async def test_rotation_reencrypts_every_value_in_resumable_batches(
    database_url: str, tmp_path: Path
) -> None:
    index_one, index_two = b64key(), b64key()
    k1, k2 = b64key(), b64key()
    first = write_keyring(tmp_path / "one.json", "k1", {"k1": k1}, index_one)
    second = write_keyring(tmp_path / "two.json", "k2", {"k1": k1, "k2": k2}, index_two)
    only_new = write_keyring(tmp_path / "three.json", "k2", {"k2": k2}, index_two)
    configure_keys(load_settings(keys_file=first))
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    try:
        await upgrade(engine)
        async with sessions.begin() as session:
            await seed_every_protected_table(session, CLOCK_T0, survivors=7)
        before = await raw_key_ids(engine)
        assert all(before.values()) and under(before) == {"k1"}, before
        total = sum(len(rows) for rows in before.values())

        configure_keys(load_settings(keys_file=second))
        async with sessions() as session:  # old values still read under the new primary
            names = (await session.scalars(select(m.Survivor.full_name))).all()
        assert sorted(names) == [f"{FULL_NAME} {n}" for n in range(7)]

        # Interrupted after two batches of at most two rows: what was committed stays rotated.
        calls: list[str] = []

        def stop_after_two(line: str) -> None:
            calls.append(line)
            if len(calls) == 2:
                raise Interrupted

        with pytest.raises(Interrupted):
            await rotate(engine, batch_size=2, progress=stop_after_two)
        halfway = await raw_key_ids(engine)
        pending = sum("k1" in kids for rows in halfway.values() for kids in rows)
        assert under(halfway) == {"k1", "k2"} and total - 4 <= pending < total

        lines: list[str] = []
        summary = await rotate(engine, batch_size=2, progress=lines.append)
        assert summary["primary"] == "k2"
        assert set(summary["tables"]) == {spec.name for spec in protected_tables()}
        assert sum(summary["tables"].values()) == pending  # it went on where it stopped
        assert summary["tables"]["contact_preferences"] == 7
        assert summary["phone_index_rebuilt"] == 7  # the blind index key changed too
        assert lines and not any(p in line for line in lines for p in PERSONAL)
        after = await raw_key_ids(engine)
        assert under(after) == {"k2"}
        assert {t: len(rows) for t, rows in after.items()} == {
            t: len(rows) for t, rows in before.items()
        }

        again = await rotate(engine, batch_size=2)
        assert set(again["tables"].values()) == {0} and again["phone_index_rebuilt"] == 0

        configure_keys(load_settings(keys_file=only_new))  # k1 gone: everything still reads
        async with sessions() as session:
            survivors = (await session.scalars(select(m.Survivor))).all()
            prefs = (await session.scalars(select(m.ContactPreference))).all()
            attempt = (await session.scalars(select(m.DeliveryAttempt))).one()
            event = (await session.scalars(select(m.CaseEvent))).one()
            rejected = (await session.scalars(select(m.RejectedRecord))).one()
            found = await _senders(session, "+44 7700 900903")
        assert {s.preferred_name for s in survivors} == {PREFERRED}
        assert {s.date_of_birth for s in survivors} == {BIRTH}
        assert all(p.phone_index == blind_index(p.phone or "") for p in prefs)
        assert attempt.to_address == PHONE and attempt.body == f"Hello {PREFERRED}"
        assert event.payload == {"victims": [{"name": FULL_NAME}]}
        assert json.loads(rejected.original) == {"name": FULL_NAME}
        assert [s.preference.phone for s in found] == ["+447700900903"]
    finally:
        await engine.dispose()


def _pg_dump(database_url: str) -> bytes:
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    done = subprocess.run(["pg_dump", "--no-owner", dsn], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


async def _every_value(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        values: list[Any] = []
        for table in tables:
            for row in (await conn.execute(text(f'SELECT * FROM "{table}"'))).all():
                values.extend(row)
    return values


def _holds(value: Any, needle: str) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return needle.encode() in raw or needle.encode().hex().encode() in raw
    return needle in str(value)


async def test_a_raw_dump_after_the_pipeline_holds_no_personal_value(
    stack: Any, database_url: str
) -> None:
    rt = stack.runtime
    await seed_team(stack)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        accepted = await client.post("/v1/events", json=quenby("01AB1234524", "q1"), headers=CE)
        rejected = await client.post(
            "/v1/events", json={**quenby("not a URN", "q2"), "subject": "?"}, headers=CE
        )
    assert accepted.status_code == 202, accepted.text
    assert rejected.status_code == 422
    files = await wait_for_files(rt.settings.resolved_outbox_dir, 2)
    assert any(f["to"] == PHONE for f in files)  # it went all the way through

    # An inbound STOP finds her through the blind index, also written with spaces.
    assert await handle_inbound(rt, "+44 7700 900987", "STOP", "SMq1") == "stop"
    async with rt.sessions() as session:
        survivor = (await session.scalars(select(m.Survivor))).one()
        prefs = (
            await session.scalars(select(m.ContactPreference).order_by(m.ContactPreference.version))
        ).all()
        inbound = (await session.scalars(select(m.InboundMessage))).one()
        attempts = (await session.scalars(select(m.DeliveryAttempt))).all()
    # The values are there, readable by the application...
    assert (survivor.full_name, survivor.date_of_birth) == (FULL_NAME, BIRTH)
    assert [p.opted_out for p in prefs] == [False, True]
    assert [p.phone for p in prefs] == [PHONE, PHONE] and prefs[1].email == EMAIL
    assert {p.phone_index for p in prefs} == {blind_index(PHONE)}
    assert inbound.survivor_ids == [survivor.id] and inbound.from_address == "+44 7700 900987"
    assert any(a.to_address == PHONE for a in attempts)

    # ...and nowhere in the database in plain text.
    values = await _every_value(rt.engine)
    assert values
    leaks = {needle for needle in PERSONAL for value in values if _holds(value, needle)}
    assert leaks == set()
    if rt.settings.is_sqlite:
        db_file = Path(rt.settings.resolved_database_url.split("///", 1)[1])
        dump = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
    else:
        dump = await asyncio.to_thread(_pg_dump, database_url)
    assert b"contact_preferences" in dump  # it is the database
    assert {n for n in PERSONAL if _holds(dump, n)} == set()


async def test_the_stack_refuses_to_start_in_production_without_keys(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(env="production", kafka_bootstrap="127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="CAREHUB_KEYS_FILE"):
        async with running_stack(settings, list(SERVICES.values()), own_broker=False):
            raise AssertionError("started")
    assert not (tmp_path / "var" / "keys.json").exists()


def _carehub(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_keys_generate_and_rotate_from_the_command_line(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    refused = _carehub(
        ["migrate"], base_env(CAREHUB_ENV="production", CAREHUB_DATABASE_URL=database), tmp_path
    )
    assert refused.returncode == 2
    assert "CAREHUB_KEYS_FILE" in refused.stderr and "error" in refused.stdout.splitlines()[-1]

    made = _carehub(["keys", "generate", "--key-id", "k1"], base_env(), tmp_path)
    assert made.returncode == 0, made.stderr
    first = tmp_path / "first.json"
    first.write_text(made.stdout.splitlines()[-1])
    grown = _carehub(["keys", "generate", "--add-to", str(first)], base_env(), tmp_path)
    assert grown.returncode == 0, grown.stderr
    second = tmp_path / "second.json"
    second.write_text(grown.stdout.splitlines()[-1])
    new_primary = json.loads(second.read_text())["primary"]
    assert new_primary != "k1" and "k1" in json.loads(second.read_text())["keys"]

    configure_keys(load_settings(keys_file=first, database_url=database))
    engine = make_engine(load_settings(database_url=database).resolved_database_url)
    try:
        await upgrade(engine)
        async with session_factory(engine).begin() as session:
            await seed_every_protected_table(session, CLOCK_T0 - timedelta(days=1), survivors=3)
        env = base_env(
            CAREHUB_ENV="production", CAREHUB_KEYS_FILE=str(second), CAREHUB_DATABASE_URL=database
        )
        done = _carehub(["keys", "rotate", "--batch-size", "2"], env, tmp_path)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.splitlines()[-1])
        assert summary["primary"] == new_primary and summary["tables"]["survivors"] == 3
        assert "contact_preferences: 3 rows read" in done.stderr
        assert not any(p in done.stdout + done.stderr for p in PERSONAL)
        assert k1_material(first) not in done.stdout + done.stderr
        after = await raw_key_ids(engine)
        assert under(after) == {new_primary}
        again = _carehub(["keys", "rotate"], env, tmp_path)
        assert set(json.loads(again.stdout.splitlines()[-1])["tables"].values()) == {0}
    finally:
        await engine.dispose()


def k1_material(path: Path) -> str:
    return str(json.loads(path.read_text())["keys"]["k1"])
