"""The compliance report on a real database: every outcome, a fallback chain counted once, the
team filter, the edges of the range in UK time (summer, so UTC dates would be wrong), and
`carehub report compliance` end to end."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.clock import write_clock_file
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory, upgrade
from services.reports.compliance import COLUMNS, UnknownTeam, compliance_report
from services.rules.ruleset import load_rules
from tests.e2e.processes import base_env

LONDON = ZoneInfo("Europe/London")
START, END = date(2026, 6, 1), date(2026, 6, 5)  # Monday to Friday, British Summer Time
NOW = datetime(2026, 6, 4, 12, 0, tzinfo=UTC)  # Thursday noon
URNS = ("01NO1234526", "01SO1234526", "01XX1234526")


def uk(day: int, hour: int, minute: int = 0, second: int = 0, month: int = 6) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=LONDON).astimezone(UTC)


def end_of(day: int) -> datetime:
    return uk(day, 23, 59, 59)


class Seeder:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.serial = 0

    async def add(self, row: Any) -> Any:
        self.session.add(row)
        await self.session.flush()
        return row

    async def event(self, case: m.Case, etype: str) -> m.CaseEvent:
        self.serial += 1
        at = uk(1, 9, month=5)
        return await self.add(  # type: ignore[no-any-return]
            m.CaseEvent(
                source="police/01", event_id=f"e{self.serial}", type=etype, urn=case.urn,
                event_time=at, received_at=at, payload={}, payload_hash="0" * 64,
                status="processed",
            )
        )  # fmt: skip

    async def notify(
        self,
        event: m.CaseEvent,
        case: m.Case,
        survivor: m.Survivor,
        status: str,
        due: datetime,
        *,
        informed: datetime | None = None,
        updated: datetime | None = None,
        reason: str | None = None,
        role: str = "survivor",
        supersedes: m.Notification | None = None,
        channel: str = "sms",
    ) -> m.Notification:
        self.serial += 1
        created = uk(1, 8, month=5)
        return await self.add(  # type: ignore[no-any-return]
            m.Notification(
                id=f"00000000-0000-0000-0000-{self.serial:012d}", case_event_id=event.id,
                case_id=case.id, event_source=event.source, event_id=event.event_id,
                recipient_role=role, survivor_id=survivor.id, channel=channel,
                template="survivor_case_update", rules_version="t", rule=f"t:{event.type}",
                status=status, status_reason=reason, due_by=due, informed_at=informed,
                supersedes_id=supersedes.id if supersedes else None,
                created_at=created, updated_at=updated or created,
            )
        )  # fmt: skip


async def seed(session: AsyncSession) -> dict[str, int]:
    """20 duties due from Monday 1 to Friday 5 June 2026, and 2 just outside."""
    s = Seeder(session)
    at = uk(1, 8, month=5)
    north = await s.add(m.Team(name="North ISVA service"))
    south = await s.add(m.Team(name="South ISVA service", is_default=True))
    n1 = await s.add(m.Case(urn=URNS[0], team_id=north.id, opened_at=at))
    s1 = await s.add(m.Case(urn=URNS[1], team_id=south.id, opened_at=at))
    x = await s.add(m.Case(urn=URNS[2], team_id=None, opened_at=at))  # the default team's
    a, b, c, d = [await s.add(m.Survivor(created_at=at)) for _ in range(4)]
    for case, survivor in ((n1, a), (n1, b), (s1, c), (x, d)):
        await s.add(m.CaseSurvivor(case_id=case.id, survivor_id=survivor.id, added_at=at))

    arrested = await s.event(n1, "police.suspect_arrested")  # two survivors, two duties
    await s.notify(arrested, n1, a, "delivered", end_of(1), informed=uk(1, 15))
    await s.notify(arrested, n1, b, "delivered", end_of(1), informed=uk(1, 16))
    charged = await s.event(n1, "police.suspect_charged")  # 11 hours late
    await s.notify(charged, n1, a, "delivered", end_of(1), informed=uk(2, 11))
    charged2 = await s.event(n1, "police.suspect_charged")  # 6 hours late
    await s.notify(charged2, n1, a, "delivered", end_of(2), informed=uk(3, 5, 59, 59))
    hearing = await s.event(n1, "court.hearing_scheduled")  # held, nobody told: missed
    await s.notify(hearing, n1, a, "held", end_of(2), reason="no_safe_channel")
    hearing2 = await s.event(n1, "court.hearing_scheduled")  # not due yet: pending
    await s.notify(hearing2, n1, a, "scheduled", end_of(4))
    nfa = await s.event(n1, "police.no_further_action")  # told in person in time
    await s.notify(nfa, n1, a, "told_in_person", end_of(3), informed=uk(3, 10))
    await s.notify(nfa, n1, a, "delivered", end_of(3), informed=uk(2, 9), role="advocate")
    # A bounced e-mail (accepted, then failed) and its fallback text: one duty, late.
    decision = await s.event(n1, "cps.charging_decision")
    bounced = await s.notify(
        decision, n1, a, "failed", end_of(3), informed=uk(3, 9), channel="email"
    )
    await s.notify(decision, n1, a, "delivered", end_of(3), informed=uk(4, 9), supersedes=bounced)
    # Opted out before it went (the last look): the advocate's hand-over task tells nobody.
    arrested2 = await s.event(n1, "police.suspect_arrested")
    stopped = await s.notify(
        arrested2, n1, b, "suppressed", end_of(3), updated=uk(2, 10), reason="opted_out"
    )
    await s.notify(
        arrested2, n1, b, "delivered", end_of(3), informed=uk(2, 10), role="advocate",
        supersedes=stopped,
    )  # fmt: skip
    await s.add(_suppressed(arrested2, n1, b, end_of(3), "opted_out"))  # never counted twice
    # "No updates" when the event was decided: no notification at all, only the decision.
    interviewed = await s.event(n1, "police.suspect_interviewed")
    await s.add(_suppressed(interviewed, n1, b, end_of(4), "frequency_none"))
    moot = await s.event(n1, "court.hearing_scheduled")  # replaced by newer news in time
    await s.notify(
        moot, n1, b, "cancelled", end_of(1), updated=uk(1, 10), reason="superseded_by_newer_event"
    )
    too_late = await s.event(n1, "court.hearing_changed")  # replaced only after its deadline
    await s.notify(
        too_late, n1, b, "cancelled", end_of(1), updated=uk(3, 10),
        reason="superseded_by_newer_event",
    )  # fmt: skip
    bailed = await s.event(n1, "police.suspect_bailed")  # sent, no receipt: nobody known told
    await s.notify(bailed, n1, b, "sent", end_of(2))
    # An advocate cancelled them: because the survivor asked (their choice), and because the
    # details were wrong (they still had to be told: missed).
    verdict = await s.event(n1, "court.verdict")
    await s.notify(
        verdict, n1, b, "cancelled", end_of(3), updated=uk(2, 10), reason="survivor_asked"
    )
    sentence = await s.event(n1, "court.sentence")
    await s.notify(
        sentence, n1, b, "cancelled", end_of(2), updated=uk(2, 10), reason="wrong_details"
    )
    disposal = await s.event(n1, "police.out_of_court_disposal")  # told, time not recorded
    await s.notify(disposal, n1, b, "told_in_person", end_of(4), updated=uk(3, 11))
    last_day = await s.event(n1, "police.suspect_arrested")  # 23:30 UK on the last day
    await s.notify(last_day, n1, a, "scheduled", uk(5, 23, 30))
    after = await s.event(n1, "police.suspect_arrested")  # 00:30 UK the day after: out
    await s.notify(after, n1, a, "scheduled", uk(6, 0, 30))
    first_day = await s.event(n1, "police.suspect_arrested")  # 00:30 UK on the first day
    await s.notify(first_day, n1, a, "delivered", uk(1, 0, 30), informed=uk(31, 21, month=5))
    before = await s.event(n1, "police.suspect_arrested")  # 23:30 UK the day before: out
    may31 = uk(31, 23, 30, month=5)
    await s.notify(before, n1, a, "delivered", may31, informed=uk(31, 21, month=5))

    south_news = await s.event(s1, "police.suspect_arrested")
    await s.notify(south_news, s1, c, "delivered", end_of(2), informed=uk(2, 9))
    no_team = await s.event(x, "police.suspect_arrested")
    await s.notify(no_team, x, d, "failed", end_of(1), reason="no_address")
    return {"north": north.id, "south": south.id}


def _suppressed(
    event: m.CaseEvent, case: m.Case, survivor: m.Survivor, due: datetime, reason: str
) -> m.DecisionRow:
    return m.DecisionRow(
        case_event_id=event.id, case_id=case.id, outcome="suppress", recipient_role="survivor",
        recipient_id=survivor.id, survivor_id=survivor.id, due_by=due, hold_reason=reason,
        rule=f"t:{event.type}.survivor", decided_at=uk(1, 8, month=5),
    )  # fmt: skip


async def seeded(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        await upgrade(engine)
        async with session_factory(engine).begin() as session:
            return await seed(session)
    finally:
        await engine.dispose()


async def report_on(url: str, team_id: int | None) -> Any:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            return await compliance_report(session, start=START, end=END, team_id=team_id, now=NOW)
    finally:
        await engine.dispose()


def counts(figures: dict[str, Any]) -> dict[str, Any]:
    keys = ("owed", "on_time", "late", "missed", "pending", "opted_out", "moot")
    return {k: figures[k] for k in keys}


async def test_every_outcome_counted_once_per_duty(database_url: str) -> None:
    await seeded(database_url)
    report = (await report_on(database_url, None)).as_json()

    total = report["total"]
    assert counts(total) == {
        "owed": 20, "on_time": 6, "late": 3, "missed": 5, "pending": 2, "opted_out": 3, "moot": 1,
    }  # fmt: skip
    assert total["on_time_rate"] == round(6 / 14, 4)
    assert (total["late_hours_p50"], total["late_hours_max"]) == (9.0, 11.0)
    assert (total["late_working_days_p50"], total["late_working_days_max"]) == (1.0, 1)

    by_type = {row["event_type"]: row for row in report["by_event_type"]}
    assert counts(by_type["police.suspect_arrested"]) == {
        "owed": 7, "on_time": 4, "late": 0, "missed": 1, "pending": 1, "opted_out": 1, "moot": 0,
    }  # fmt: skip
    charged = by_type["police.suspect_charged"]
    assert (charged["late"], charged["late_hours_p50"], charged["late_hours_max"]) == (2, 8.5, 11.0)
    assert counts(by_type["cps.charging_decision"])["owed"] == 1  # bounce + fallback: one duty
    assert by_type["cps.charging_decision"]["late"] == 1  # the bounced e-mail told nobody
    assert counts(by_type["court.hearing_scheduled"]) == {
        "owed": 3, "on_time": 0, "late": 0, "missed": 1, "pending": 1, "opted_out": 0, "moot": 1,
    }  # fmt: skip
    assert by_type["court.hearing_changed"]["missed"] == 1  # withdrawn after its deadline
    assert by_type["police.suspect_bailed"]["missed"] == 1  # sent is not told
    assert by_type["police.no_further_action"]["on_time"] == 1
    assert by_type["police.out_of_court_disposal"]["on_time"] == 1
    assert by_type["police.suspect_interviewed"]["opted_out"] == 1
    assert by_type["police.suspect_arrested"]["duty"] == "R6 police"
    assert by_type["court.verdict"]["opted_out"] == 1  # the survivor asked
    assert by_type["court.sentence"]["missed"] == 1  # wrong details: still owed
    assert sum(row["owed"] for row in by_type.values()) == 20

    rules = load_rules()
    by_duty = {row["duty"]: row for row in report["by_duty"]}
    r6 = rules.events["police.suspect_arrested"].duty
    assert counts(by_duty[r6]) == {  # arrested, charged, interviewed, out-of-court disposal
        "owed": 11, "on_time": 5, "late": 2, "missed": 1, "pending": 1, "opted_out": 2, "moot": 0,
    }  # fmt: skip
    assert sum(row["owed"] for row in by_duty.values()) == 20
    assert report["from"] == "2026-06-01" and report["to"] == "2026-06-05"
    assert report["team"] is None and report["rules_version"] == rules.version
    assert report["notes"] and report["generated_at"] == "2026-06-04T12:00:00Z"
    assert not any(urn in json.dumps(report) for urn in URNS)


async def test_the_team_filter_and_the_default_team(database_url: str) -> None:
    teams = await seeded(database_url)
    north = (await report_on(database_url, teams["north"])).as_json()
    assert north["team"] == {"id": teams["north"], "name": "North ISVA service"}
    assert counts(north["total"])["owed"] == 18
    south = (await report_on(database_url, teams["south"])).as_json()
    # Its own case, and the case with no team (the default team's).
    assert counts(south["total"]) == {
        "owed": 2, "on_time": 1, "late": 0, "missed": 1, "pending": 0, "opted_out": 0, "moot": 0,
    }  # fmt: skip
    assert [row["event_type"] for row in south["by_event_type"]] == ["police.suspect_arrested"]
    with pytest.raises(UnknownTeam):
        await report_on(database_url, 999)


async def test_the_range_is_uk_days_both_ends_included(database_url: str) -> None:
    await seeded(database_url)
    engine = make_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            friday = await compliance_report(session, start=END, end=END, team_id=None, now=NOW)
            monday = await compliance_report(session, start=START, end=START, team_id=None, now=NOW)
            saturday = await compliance_report(
                session, start=date(2026, 6, 6), end=date(2026, 6, 6), team_id=None, now=NOW
            )
            with pytest.raises(ValueError):
                await compliance_report(session, start=END, end=START, team_id=None, now=NOW)
    finally:
        await engine.dispose()
    assert counts(friday.total.as_dict())["pending"] == 1  # due 23:30 UK on Friday
    assert friday.total.owed == 1
    assert saturday.total.owed == 1  # due 00:30 UK on Saturday (23:30 UTC on Friday)
    # Monday: 00:30 UK (Sunday 23:30 UTC) is in; Sunday 23:30 UK is not.
    assert monday.total.owed == 7
    assert monday.by_event_type[-1].event_type == "police.suspect_charged"
    assert friday.as_csv().splitlines()[0] == ",".join(COLUMNS)


def carehub(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_command_prints_json_and_csv(database_url: str, tmp_path: Path) -> None:
    await seeded(database_url)
    clock = tmp_path / "clock"
    write_clock_file(clock, NOW)
    env = base_env(
        CAREHUB_DATABASE_URL=database_url,
        CAREHUB_CLOCK_FILE=str(clock),
        CAREHUB_VAR_DIR=str(tmp_path / "var"),
    )
    rng = ["report", "compliance", "--from", "2026-06-01", "--to", "2026-06-05"]

    done = carehub([*rng, "--format", "json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.splitlines()[-1])
    assert counts(figures["total"]) == {
        "owed": 20, "on_time": 6, "late": 3, "missed": 5, "pending": 2, "opted_out": 3, "moot": 1,
    }  # fmt: skip
    assert "20 owed" in done.stderr

    done = carehub([*rng, "--team", "South ISVA service", "--format", "csv"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert done.stdout.splitlines()[0] == ",".join(COLUMNS)
    assert [(r["scope"], r["event_type"], r["owed"]) for r in rows] == [
        ("event_type", "police.suspect_arrested", "2"),
        ("duty", "", "2"),
        ("total", "", "2"),
    ]
    assert rows[-1]["missed"] == "1" and rows[-1]["late_hours_p50"] == ""

    unknown = carehub([*rng, "--team", "Nobody"], env, tmp_path)
    assert unknown.returncode == 2
    assert json.loads(unknown.stdout.splitlines()[-1]) == {"error": "no team named 'Nobody'"}
    bad = carehub(["report", "compliance", "--from", "1 June", "--to", "2026-06-05"], env, tmp_path)
    assert bad.returncode == 2 and "--from" in json.loads(bad.stdout.splitlines()[-1])["error"]
