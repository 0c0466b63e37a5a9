"""The portal over HTTP, on SQLite and PostgreSQL: sign-in with a password and a TOTP code,
sessions, CSRF, throttling, who may see whom (each role against each resource), preferences
versioned and validated, held-message actions recorded for the dispatcher, and the audit of
every view.

The held message is made the real way (the demo survivor's crime record and "no further action"
decided by the rules consumer); the app is the real FastAPI app with the portal mounted, called
in-process over ASGI.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pyotp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services import demo, portal
from services.core.calendar import load_calendar
from services.core.clock import FixedClock
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory, upgrade
from services.core.runner import base_app
from services.core.runtime import Runtime
from services.core.settings import Settings
from services.ingest.recording import record_event
from services.portal.auth import Role
from services.portal.cli import add_account
from services.rules.consumer import RulesConsumer
from services.rules.engine import Engine
from services.rules.ruleset import load_rules

STEPS = demo.script()
CRIME_AT, NFA_AT = STEPS[0].at, STEPS[3].at
NOW = NFA_AT + timedelta(hours=1)
SECRETS = {u: s for u, _r, _a, s in demo.DEMO_STAFF}
OTHER_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXD"


@dataclass
class Portal:
    rt: Runtime
    app: Any
    survivor_id: int
    other_survivor_id: int
    held_id: str

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=("192.0.2.10", 5000)),
            base_url="http://portal.test",
        )

    async def audit(self, action_prefix: str) -> list[m.AuditEntry]:
        async with self.rt.sessions() as session:
            rows = await session.scalars(
                select(m.AuditEntry).where(m.AuditEntry.action.startswith(action_prefix))
            )
            return list(rows)


async def sign_in(client: httpx.AsyncClient, username: str, secret: str) -> str:
    """Sign in through the two forms; return the session's CSRF token."""
    form = await client.get("/sign-in")
    token = _hidden(form.text, "csrf_token")
    done = await client.post(
        "/sign-in",
        data={"username": username, "password": demo.DEMO_PASSWORD, "csrf_token": token},
    )
    assert done.status_code == 303 and done.headers["location"] == "/sign-in/code", done.text
    page = await client.get("/sign-in/code")
    code = pyotp.TOTP(secret).now()
    signed = await client.post(
        "/sign-in/code", data={"code": code, "csrf_token": _hidden(page.text, "csrf_token")}
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/", signed.text
    home = await client.get("/")
    assert home.status_code == 200
    return _hidden(home.text, "csrf_token")


def _hidden(html: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


async def build_site(settings: Settings, engine: AsyncEngine | None = None) -> Portal:
    """The demo case with its held message, a second ISVA in another team with a survivor of
    their own, and the app with the portal mounted (on `engine`, or a new one)."""
    engine = engine or make_engine(settings.resolved_database_url)
    await upgrade(engine)
    clock = FixedClock(CRIME_AT)
    rt = Runtime(settings, engine, session_factory(engine), clock, load_calendar(None), None)  # type: ignore[arg-type]
    rules = RulesConsumer(rt, Engine(load_rules(), rt.calendar))
    async with rt.sessions.begin() as session:
        ids = await demo.seed(session, CRIME_AT)
        # A second ISVA with a survivor of their own, in another team.
        team = m.Team(name="South team")
        session.add(team)
        await session.flush()
        other = m.Advocate(
            staff_ref="OTHER-ISVA",
            role="isva",
            team_id=team.id,
            display_name="Sam Other",
            created_at=CRIME_AT,
        )
        stranger = m.Survivor(full_name="Alex Stranger", created_at=CRIME_AT)
        session.add_all([other, stranger])
        await session.flush()
        session.add(
            m.AdvocateAssignment(survivor_id=stranger.id, advocate_id=other.id, valid_from=CRIME_AT)
        )
        await add_account(
            session,
            username="other-isva",
            role=Role.ADVOCATE,
            password=demo.DEMO_PASSWORD,
            advocate_ref="OTHER-ISVA",
            now=CRIME_AT,
            totp_secret=OTHER_SECRET,
        )
        other_survivor = stranger.id
    for step in (STEPS[0], STEPS[3]):
        clock.set(step.at)
        async with rt.sessions.begin() as session:
            (event,) = step.events
            outcome = await record_event(
                session,
                event,
                json.dumps(event).encode(),
                now=step.at,
                way_in="http",
                max_skew=timedelta(minutes=5),
            )
            assert outcome.case_event_id is not None
            await rules.process(session, [outcome.case_event_id], step.at)
    async with rt.sessions() as session:
        held = await session.scalar(
            select(m.Notification).where(
                m.Notification.status == "held", m.Notification.recipient_role == "survivor"
            )
        )
        assert held is not None
    clock.set(NOW)
    app = base_app(rt, ["portal"])
    portal.mount(rt, app)
    return Portal(rt, app, ids["survivor_id"], other_survivor, held.id)


@pytest.fixture
async def site(make_settings: Any, database_url: str) -> AsyncIterator[Portal]:
    built = await build_site(make_settings(database_url=database_url))
    try:
        yield built
    finally:
        await built.rt.engine.dispose()


async def test_sign_in_needs_the_password_and_a_fresh_code(site: Portal) -> None:
    async with site.client() as client:
        assert (await client.get("/")).headers["location"] == "/sign-in"
        form = await client.get("/sign-in")
        assert "httponly" in form.headers["set-cookie"].lower()
        token = _hidden(form.text, "csrf_token")
        wrong = await client.post(
            "/sign-in", data={"username": "demo-isva", "password": "nope", "csrf_token": token}
        )
        assert wrong.status_code == 401
        assert "The username or password is not right" in wrong.text
        # A forged sign-in form (no matching cookie token) changes nothing.
        client.cookies.clear()
        forged = await client.post(
            "/sign-in",
            data={"username": "demo-isva", "password": demo.DEMO_PASSWORD, "csrf_token": "x"},
        )
        assert forged.status_code == 400
        # Password right, code not yet given: still no caseload.
        form = await client.get("/sign-in")
        await client.post(
            "/sign-in",
            data={
                "username": "demo-isva",
                "password": demo.DEMO_PASSWORD,
                "csrf_token": _hidden(form.text, "csrf_token"),
            },
        )
        assert (await client.get("/")).status_code == 303
        page = await client.get("/sign-in/code")
        bad = await client.post(
            "/sign-in/code", data={"code": "000000", "csrf_token": _hidden(page.text, "csrf_token")}
        )
        assert bad.status_code == 401
        code = pyotp.TOTP(SECRETS["demo-isva"]).now()
        ok = await client.post(
            "/sign-in/code", data={"code": code, "csrf_token": _hidden(page.text, "csrf_token")}
        )
        assert ok.status_code == 303
        home = await client.get("/")
        assert "Riley" in home.text and "1 held" in home.text
    # The same code is spent: it cannot sign anyone in a second time.
    async with site.client() as again:
        form = await again.get("/sign-in")
        await again.post(
            "/sign-in",
            data={
                "username": "demo-isva",
                "password": demo.DEMO_PASSWORD,
                "csrf_token": _hidden(form.text, "csrf_token"),
            },
        )
        page = await again.get("/sign-in/code")
        replay = await again.post(
            "/sign-in/code", data={"code": code, "csrf_token": _hidden(page.text, "csrf_token")}
        )
        assert replay.status_code == 401
    assert len(await site.audit("staff.signed_in")) == 1


async def test_sign_in_is_throttled_after_repeated_failures(site: Portal) -> None:
    async with site.client() as client:
        for _ in range(site.rt.settings.portal_sign_in_failures):
            form = await client.get("/sign-in")
            r = await client.post(
                "/sign-in",
                data={
                    "username": "demo-isva",
                    "password": "wrong password",
                    "csrf_token": _hidden(form.text, "csrf_token"),
                },
            )
            assert r.status_code == 401
        form = await client.get("/sign-in")
        blocked = await client.post(
            "/sign-in",
            data={
                "username": "demo-isva",
                "password": demo.DEMO_PASSWORD,  # even the right password now
                "csrf_token": _hidden(form.text, "csrf_token"),
            },
        )
        assert blocked.status_code == 429
        assert "Too many attempts" in blocked.text


async def test_each_role_sees_only_its_own_people(site: Portal) -> None:
    mine, theirs, held = (
        f"/survivors/{site.survivor_id}",
        f"/survivors/{site.other_survivor_id}",
        f"/messages/{site.held_id}",
    )
    expected = {
        # role: (own survivor, someone else's survivor, the held message)
        "demo-isva": (200, 404, 200),
        "demo-supervisor": (200, 404, 200),
        "other-isva": (404, 200, 404),
        "demo-ops": (404, 404, 404),
    }
    secrets = {**SECRETS, "other-isva": OTHER_SECRET}
    for username, (own, other, message) in expected.items():
        async with site.client() as client:
            await sign_in(client, username, secrets[username])
            got = (
                (await client.get(mine)).status_code,
                (await client.get(theirs)).status_code,
                (await client.get(held)).status_code,
            )
            assert got == (own, other, message), username
            api = (
                (await client.get(f"/api/v1{mine}")).status_code,
                (await client.get(f"/api/v1{theirs}")).status_code,
                (await client.get(f"/api/v1{held}")).status_code,
            )
            if username == "demo-ops":
                assert api == (403, 403, 403)  # no personal data at all
            else:
                assert api == got, username
    # Every view of a survivor is in the audit log, with who looked.
    viewed = await site.audit("portal.viewed.survivor")
    assert {(e.actor, e.codes["survivor_id"]) for e in viewed} >= {
        (e.actor, site.survivor_id) for e in viewed if e.codes["survivor_id"] == site.survivor_id
    }
    assert len({e.actor for e in viewed}) == 3


async def test_preferences_are_validated_and_versioned_with_a_reason(site: Portal) -> None:
    url = f"/survivors/{site.survivor_id}/preferences"
    async with site.client() as client:
        csrf = await sign_in(client, "demo-isva", SECRETS["demo-isva"])
        bad = await client.post(
            url,
            data={
                "csrf_token": csrf,
                "phone": "12345",
                "sms_safe": "yes",
                "email": "not-an-address",
                "email_safe": "yes",
                "email_safe_review_by": "2026-12-01",
                "safe_window_start": "09:00",
                "safe_window_end": "09:30",
                "language": "cy",
                "frequency": "all",
                "detail": "discreet",
            },
        )
        assert bad.status_code == 400
        for message in (
            "Enter a real phone number",
            "Enter an e-mail address",
            "at least an hour",
            "Say why the preferences are changing",
        ):
            assert message in bad.text
        good = await client.post(
            url,
            data={
                "csrf_token": csrf,
                "phone": "07700 900 456",
                "sms_safe": "yes",
                "sms_safe_review_by": (NOW.date() + timedelta(days=90)).isoformat(),
                "email": "riley.new@example.org",
                "safe_window_start": "10:00",
                "safe_window_end": "19:00",
                "language": "cy",
                "frequency": "key_stages",
                "detail": "discreet",
                "reason_code": "wrong_details",
            },
        )
        assert good.status_code == 303, good.text
        # Without the session's CSRF token nothing changes.
        forged = await client.post(url, data={"phone": "07700 900 999", "reason_code": "x"})
        assert forged.status_code == 403
    async with site.rt.sessions() as session:
        versions = (
            await session.scalars(
                select(m.ContactPreference)
                .where(m.ContactPreference.survivor_id == site.survivor_id)
                .order_by(m.ContactPreference.version)
            )
        ).all()
    assert [v.version for v in versions] == [1, 2]
    new = versions[-1]
    assert (new.phone, new.email, new.email_safe, new.language, new.frequency) == (
        "+447700900456",
        "riley.new@example.org",
        False,
        "cy",
        "key_stages",
    )
    assert new.recorded_by.startswith("staff:") and new.reason_code == "wrong_details"
    (changed,) = await site.audit("preferences.changed")
    assert "phone" in changed.codes["fields"] and "+44" not in json.dumps(changed.codes)


async def test_a_release_is_recorded_for_the_dispatcher_not_done_by_the_portal(
    site: Portal,
) -> None:
    async with site.client() as client:
        csrf = await sign_in(client, "demo-isva", SECRETS["demo-isva"])
        page = await client.get(f"/messages/{site.held_id}")
        assert page.status_code == 200
        assert "Riley" in page.text  # the drafted words, as the survivor would read them
        no_reason = await client.post(
            f"/messages/{site.held_id}/actions", data={"csrf_token": csrf, "action": "cancel"}
        )
        assert no_reason.status_code == 400 and "Say why" in no_reason.text
        # A reason is only asked for a cancel: whatever else comes with a release is dropped,
        # never written to the audit log (which holds codes, not free text).
        asked = await client.post(
            f"/messages/{site.held_id}/actions",
            data={"csrf_token": csrf, "action": "release", "reason_code": "Riley said so"},
        )
        assert asked.status_code == 303
        again = await client.get(f"/messages/{site.held_id}")
        assert "was recorded and is being carried out" in again.text
    async with site.rt.sessions() as session:
        held = await session.get_one(m.Notification, site.held_id)
        actions = (await session.scalars(select(m.AdvocateAction))).all()
        requested = (
            await session.scalars(
                select(m.AuditEntry).where(
                    m.AuditEntry.action == "advocate_action.requested.release"
                )
            )
        ).all()
    assert held.status == "held"  # the dispatcher moves it, not the portal
    assert [(a.action, a.carried_out_at, a.reason_code) for a in actions] == [
        ("release", None, None)
    ]
    assert [entry.codes.get("reason") for entry in requested] == [None]


async def test_the_api_takes_tokens_and_wants_csrf_from_browsers(site: Portal) -> None:
    async with site.rt.sessions.begin() as session:
        from services.portal.auth import issue_api_token

        account = await session.scalar(
            select(m.StaffAccount).where(m.StaffAccount.username == "demo-isva")
        )
        assert account is not None
        token = await issue_api_token(session, account, "test tool", datetime.now(UTC))
    async with site.client() as client:
        assert (await client.get("/api/v1/caseload")).status_code == 401
        bearer = {"authorization": f"Bearer {token}"}
        lines = (await client.get("/api/v1/caseload", headers=bearer)).json()
        assert [line["survivor_id"] for line in lines] == [site.survivor_id]
        put = await client.put(
            f"/api/v1/survivors/{site.survivor_id}/preferences",
            headers=bearer,
            json={"frequency": "none", "reason_code": "survivor_asked"},
        )
        assert put.status_code == 200 and put.json()["frequency"] == "none"
        invalid = await client.put(
            f"/api/v1/survivors/{site.survivor_id}/preferences",
            headers=bearer,
            json={"email": "nope", "reason_code": "survivor_asked"},
        )
        assert invalid.status_code == 422 and "email" in invalid.json()["detail"]
        # A browser session must send its CSRF token with a change.
        csrf = await sign_in(client, "demo-isva", SECRETS["demo-isva"])
        body = {"action": "release"}
        url = f"/api/v1/messages/{site.held_id}/actions"
        assert (await client.post(url, json=body)).status_code == 403
        assert (
            await client.post(url, json=body, headers={"x-csrf-token": csrf})
        ).status_code == 202
        document = (await client.get("/api/v1/openapi.json")).json()
        assert "/api/v1/survivors/{survivor_id}/preferences" in document["paths"]


async def test_an_idle_session_ends(site: Portal) -> None:
    async with site.client() as client:
        await sign_in(client, "demo-isva", SECRETS["demo-isva"])
        async with site.rt.sessions.begin() as session:
            rows = (await session.scalars(select(m.StaffSession))).all()
            for row in rows:
                row.last_seen_at = row.last_seen_at - timedelta(
                    seconds=site.rt.settings.portal_session_idle_s + 1
                )
        assert (await client.get(f"/survivors/{site.survivor_id}")).status_code == 303
    async with site.rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(m.StaffSession)) >= 2


async def test_operations_see_what_needs_them_and_no_personal_data(site: Portal) -> None:
    async with site.rt.sessions.begin() as session:
        session.add(
            m.RejectedRecord(
                received_at=NOW,
                way_in="http",
                feed="police",
                source="police/01",
                event_id="bad-1",
                reason_code="schema_invalid",
                errors=[{"pointer": "/data/victims/0/name", "message": "required"}],
                original=b'{"name": "Riley Example"}',
            )
        )
    async with site.client() as client:
        await sign_in(client, "demo-ops", SECRETS["demo-ops"])
        home = await client.get("/")
    assert home.status_code == 200
    assert "Rejected records not yet replayed (1)" in home.text
    assert "schema_invalid" in home.text and "bad-1" in home.text
    for personal in ("Riley", "Example", "+4477", "example.org"):
        assert personal not in home.text


async def test_supervisors_see_demand_and_export_subject_access(site: Portal) -> None:
    async with site.client() as client:
        await sign_in(client, "demo-isva", SECRETS["demo-isva"])
        assert (await client.get("/team")).status_code == 404
        assert (await client.get(f"/survivors/{site.survivor_id}/export")).status_code == 404
    async with site.client() as client:
        await sign_in(client, "demo-supervisor", SECRETS["demo-supervisor"])
        team = await client.get("/team")
        assert team.status_code == 200 and "Jordan Example" in team.text
        export = await client.get(f"/survivors/{site.survivor_id}/export")
        assert export.status_code == 200
        assert export.headers["cache-control"] == "no-store"
        data = export.json()
        assert data["survivor"]["full_name"] == "Riley Example"
        assert [c["urn"] for c in data["cases"]] == [demo.DEMO_URN]
        assert data["contact_preferences"][0]["phone"] == "+447700900123"
        assert {m_["template"] for m_ in data["messages"]} >= {"survivor_get_in_touch"}
        assert (await client.get(f"/survivors/{site.other_survivor_id}/export")).status_code == 404
    (exported,) = await site.audit("portal.subject_access_export")
    assert exported.codes == {"survivor_id": site.survivor_id}


async def test_compliance_figures_for_supervisors_and_operations(site: Portal) -> None:
    query = "/compliance?from=2026-11-01&to=2026-11-30"
    async with site.client() as client:
        await sign_in(client, "demo-isva", SECRETS["demo-isva"])
        assert (await client.get(query)).status_code == 404
    for username in ("demo-supervisor", "demo-ops"):
        async with site.client() as client:
            await sign_in(client, username, SECRETS[username])
            shown = await client.get(query)
            assert shown.status_code == 200 and "Code compliance</h1>" in shown.text
            assert "not yet due" in shown.text and "Riley" not in shown.text
            csv = await client.get(query + "&format=csv")
            assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
            header, *rows = csv.text.splitlines()
            assert header.startswith("scope,event_type,duty,owed")
            assert rows[-1].startswith("total,")
            bad = await client.get("/compliance?from=yesterday")
            assert bad.status_code == 200 and "Enter the first day as a date" in bad.text


async def test_told_in_person_earlier_is_when_the_survivor_was_informed(site: Portal) -> None:
    from services.rules.actions import carry_out_actions

    told = NOW - timedelta(minutes=40)
    async with site.client() as client:
        csrf = await sign_in(client, "demo-isva", SECRETS["demo-isva"])
        url = f"/messages/{site.held_id}/actions"
        future = await client.post(
            url,
            data={
                "csrf_token": csrf,
                "action": "told_in_person",
                "told_date": "2026-12-25",
                "told_time": "10:00",
            },
        )
        assert future.status_code == 400 and "cannot be in the future" in future.text
        london = told.astimezone(ZoneInfo("Europe/London"))
        done = await client.post(
            url,
            data={
                "csrf_token": csrf,
                "action": "told_in_person",
                "told_date": london.date().isoformat(),
                "told_time": london.strftime("%H:%M"),
            },
        )
        assert done.status_code == 303
    assert await carry_out_actions(site.rt) == 1
    async with site.rt.sessions() as session:
        held = await session.get_one(m.Notification, site.held_id)
    assert held.status == "told_in_person"
    assert held.informed_at == told.replace(second=0, microsecond=0)


async def test_while_the_advocate_is_away_the_supervisor_has_the_holds(site: Portal) -> None:
    async with site.rt.sessions.begin() as session:
        isva = await session.scalar(select(m.Advocate).where(m.Advocate.staff_ref == "DEMO-ISVA-1"))
        assert isva is not None
        isva.active = False  # away: leave, illness
        # The case belongs to no team here, and the supervisor's team is not the default one.
        team = await session.get_one(m.Team, isva.team_id)
        team.is_default = False
        await session.execute(m.Case.__table__.update().values(team_id=None))
    async with site.client() as client:
        await sign_in(client, "demo-supervisor", SECRETS["demo-supervisor"])
        caseload = await client.get("/")
        assert "Riley" in caseload.text and "1 held" in caseload.text
        assert (await client.get(f"/messages/{site.held_id}")).status_code == 200


async def test_letters_are_listed_printed_and_posted_by_the_advocate(site: Portal) -> None:
    async with site.rt.sessions.begin() as session:
        held = await session.get_one(m.Notification, site.held_id)
        letter = m.Notification(
            id="00000000-0000-0000-0000-00000000c0de",
            case_event_id=held.case_event_id,
            case_id=held.case_id,
            event_source=held.event_source,
            event_id=held.event_id,
            recipient_role="survivor",
            survivor_id=site.survivor_id,
            channel="letter_task",
            template="survivor_case_update",
            rules_version=held.rules_version,
            rule=held.rule,
            status="sent",
            due_by=held.due_by,
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(letter)
        await session.flush()
        task = m.LetterTask(
            notification_id=letter.id,
            subject="An update about your case",
            body_text="Dear Riley,\nThere is news about your case.",
            body_html="<p>Dear Riley,</p>",
            address="Riley Example\n1 Example Road\nZZ99 9ZZ",
            created_at=NOW,
        )
        session.add(task)
        await session.flush()
        task_id = task.id
    async with site.client() as client:
        await sign_in(client, "other-isva", OTHER_SECRET)
        assert "No letters are waiting" in (await client.get("/letters")).text
        assert (await client.get(f"/letters/{task_id}")).status_code == 404
    async with site.client() as client:
        csrf = await sign_in(client, "demo-isva", SECRETS["demo-isva"])
        listed = await client.get("/letters")
        assert "Riley" in listed.text and f"/letters/{task_id}" in listed.text
        shown = await client.get(f"/letters/{task_id}")
        assert "1 Example Road" in shown.text and "There is news about your case." in shown.text
        posted = await client.post(f"/letters/{task_id}/posted", data={"csrf_token": csrf})
        assert posted.status_code == 303
        assert "No letters are waiting" in (await client.get("/letters?posted=1")).text
    async with site.rt.sessions() as session:
        row = await session.get_one(m.Notification, letter.id)
        done = await session.get_one(m.LetterTask, task_id)
    assert row.status == "delivered" and row.informed_at is not None and row.informed_at > NOW
    assert done.posted_by is not None and done.posted_by.startswith("staff:")


async def test_a_supervisor_closes_and_reopens_a_case(site: Portal) -> None:
    async with site.rt.sessions() as session:
        case = await session.scalar(select(m.Case).where(m.Case.urn == demo.DEMO_URN))
        assert case is not None and case.closed_at is None
    async with site.client() as client:
        csrf = await sign_in(client, "demo-isva", SECRETS["demo-isva"])
        assert (
            await client.post(f"/cases/{case.id}/close", data={"csrf_token": csrf})
        ).status_code == 404
    async with site.client() as client:
        csrf = await sign_in(client, "demo-supervisor", SECRETS["demo-supervisor"])
        closed = await client.post(f"/cases/{case.id}/close", data={"csrf_token": csrf})
        assert closed.status_code == 303
        page = await client.get(closed.headers["location"])
        assert f"Reopen case {demo.DEMO_URN}" in page.text
        async with site.rt.sessions() as session:
            assert (await session.get_one(m.Case, case.id)).closed_at == NOW
        await client.post(f"/cases/{case.id}/reopen", data={"csrf_token": csrf})
        async with site.rt.sessions() as session:
            assert (await session.get_one(m.Case, case.id)).closed_at is None
    assert [e.action for e in await site.audit("case.")] == ["case.close", "case.reopen"]


async def test_a_released_message_can_carry_the_advocates_own_line(site: Portal) -> None:
    from services.core.message_variables import draft
    from services.rules.actions import carry_out_actions

    url = f"/messages/{site.held_id}/actions"
    async with site.client() as client:
        csrf = await sign_in(client, "demo-isva", SECRETS["demo-isva"])
        page = await client.get(f"/messages/{site.held_id}")
        assert 'name="personal_line"' in page.text
        for line, problem in (
            ("The court date has moved.", "cannot say"),  # Riley chose discreet messages
            ("See https://example.org/x", "web address"),
            ("x" * 161, "160 characters"),
            # Within 160, but a letter with no GSM form (ŵ) makes the whole text UCS-2: too long.
            (
                "Rwy'n flin iawn. Dewch i'r ganolfan ddydd Mawrth, neu ffoniwch fi pan fydd yn "
                "gyfleus. Mae croeso i chi ddod â ffrind gyda chi: bydd dŵr a the yno.",
                "parts long",
            ),
        ):
            refused = await client.post(
                url, data={"csrf_token": csrf, "action": "release", "personal_line": line}
            )
            assert refused.status_code == 400 and problem in refused.text, line
        told = await client.post(
            url,
            data={"csrf_token": csrf, "action": "told_in_person", "personal_line": "Hello"},
        )
        assert told.status_code == 400 and "Only a message you release" in told.text
        ok = await client.post(
            url,
            data={
                "csrf_token": csrf,
                "action": "release",
                "personal_line": "I am so sorry. Call me when you can, any time this week.",
            },
        )
        assert ok.status_code == 303
    assert await carry_out_actions(site.rt) == 1
    async with site.rt.sessions() as session:
        held = await session.get_one(m.Notification, site.held_id)
        assert held.status == "scheduled"
        words = await draft(session, held, NOW)
    assert words is not None
    assert "I am so sorry. Call me when you can, any time this week." in words[1]


async def test_the_deadline_gauges_count_what_is_owed_and_not_yet_told(site: Portal) -> None:
    from prometheus_client import REGISTRY

    from services.core import gauges

    async with site.rt.sessions() as session:
        held = await session.get_one(m.Notification, site.held_id)
        assert held.due_by is not None
        before = await gauges.sample(session, held.due_by - timedelta(hours=30))
        close = await gauges.sample(session, held.due_by - timedelta(hours=1))
        after = await gauges.sample(session, held.due_by + timedelta(hours=1))
    # The held news is not within a day of its deadline 30 hours out; an hour out it is within
    # 4 and 24 hours; an hour after, it is overdue.
    assert close["owed"]["4h"] > before["owed"]["4h"]
    assert close["owed"]["24h"] > before["owed"]["24h"]
    assert after["owed"]["overdue"] > close["owed"]["overdue"]
    for figures in (before, close, after):  # the windows nest: past due is within 4 h, ...
        owed = figures["owed"]
        assert owed["overdue"] <= owed["4h"] <= owed["24h"]
    assert after["by_status"]["held"] >= 1
    assert (
        REGISTRY.get_sample_value("carehub_owed_near_deadline", {"window": "overdue"})
        == (after["owed"]["overdue"])
    )
    assert (
        REGISTRY.get_sample_value("carehub_notifications_by_status", {"status": "held"})
        == (after["by_status"]["held"])
    )
