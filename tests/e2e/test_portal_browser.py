"""The advocate portal in a real browser: Debian's Chromium, headless, driven by Playwright
against `carehub run` as a child process on embedded defaults (SQLite, the tansu broker, outbox
files), one stack for the whole module.

The demo survivor's crime record and "no further action" arrive over HTTP, and her news is held
for her ISVA. The ISVA signs in (password, then a TOTP code), changes her contact preferences,
reads the held draft and releases it; the dispatcher and the notifier, not the portal, send it,
and it lands in the outbox. Another advocate gets a 404 for her. Every page visited is checked
with axe (no serious or critical violation; the rest are printed) and kept as a full-page
screenshot, with axe's findings beside it, under $CAREHUB_TEST_ARTIFACTS/portal (by default
build/test-artifacts/portal).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pyotp
import pytest
import pytest_asyncio
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import demo
from services.core.clock import write_clock_file
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory, upgrade
from services.core.embedded_broker import free_port
from services.core.keys import configure_keys, use_keyring
from services.core.settings import load_settings
from services.portal.auth import Role
from services.portal.cli import add_account
from tests.conftest import CLOCK_T0, REPO
from tests.e2e.processes import CarehubProcess, base_env

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Debian's package, launched by its path: no `playwright install` download. `make test`
# installs it where it is missing.
CHROMIUM = Path("/usr/bin/chromium")
WAIT_S = 60
SERIOUS = ("serious", "critical")
STEPS = demo.script()
CRIME, NFA = STEPS[0], STEPS[3]
SECRETS = {username: secret for username, _role, _ref, secret in demo.DEMO_STAFF}
OTHER_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXD"
T = TypeVar("T")


@dataclass
class Stack:
    url: str
    outbox: Path
    sessions: async_sessionmaker[AsyncSession]
    survivor_id: int
    other_survivor_id: int
    held_id: str
    # The case's messages once "no further action" was decided: template -> (status, hold reason).
    after_nfa: dict[str, tuple[str, str | None]]


async def eventually(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """The first truthy result of `check`, polled until WAIT_S have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {WAIT_S} s")
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """This run's screenshots, axe findings and the stack's log, the last run's cleared."""
    root = os.environ.get("CAREHUB_TEST_ARTIFACTS") or str(REPO / "build" / "test-artifacts")
    path = Path(root) / "portal"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


async def _seed(database_url: str, var: Path) -> tuple[int, int]:
    """The demo team, ISVA and survivor, and a second ISVA in another team with a survivor of
    their own; (the demo survivor's id, the other survivor's id)."""
    # The child process finds the same development keyring in the same var dir.
    configure_keys(load_settings(var_dir=var, env="test"), lazy=True)
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
        async with session_factory(engine).begin() as session:
            ids = await demo.seed(session, CRIME.at)
            team = m.Team(name="South team")
            session.add(team)
            await session.flush()
            other = m.Advocate(
                staff_ref="OTHER-ISVA",
                role="isva",
                team_id=team.id,
                display_name="Sam Other",
                created_at=CRIME.at,
            )
            stranger = m.Survivor(full_name="Alex Stranger", created_at=CRIME.at)
            session.add_all([other, stranger])
            await session.flush()
            session.add(
                m.AdvocateAssignment(
                    survivor_id=stranger.id, advocate_id=other.id, valid_from=CRIME.at
                )
            )
            await add_account(
                session,
                username="other-isva",
                role=Role.ADVOCATE,
                password=demo.DEMO_PASSWORD,
                advocate_ref="OTHER-ISVA",
                now=CRIME.at,
                totp_secret=OTHER_SECRET,
            )
            return ids["survivor_id"], stranger.id
    finally:
        await engine.dispose()
        use_keyring(None)


async def _nfa_messages(
    sessions: async_sessionmaker[AsyncSession],
) -> dict[str, tuple[str, str, str | None]]:
    """template -> (id, status, hold reason) of the messages decided on "no further action"."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(
                    m.Notification.template,
                    m.Notification.id,
                    m.Notification.status,
                    m.Notification.hold_reason,
                ).where(m.Notification.event_id == NFA.events[0]["id"])
            )
        ).all()
    return {template: (nid, status, reason) for template, nid, status, reason in rows}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> AsyncIterator[Stack]:
    home = tmp_path_factory.mktemp("portal-stack")
    var, clock = home / "var", home / "clock"
    database_url = f"sqlite+aiosqlite:///{var / 'carehub.db'}"
    write_clock_file(clock, CRIME.at)
    survivor_id, other_survivor_id = await _seed(database_url, var)
    env = base_env(
        CAREHUB_VAR_DIR=str(var),
        CAREHUB_CLOCK_FILE=str(clock),
        CAREHUB_EMBEDDED_BROKER_PORT=str(free_port()),
        CAREHUB_HTTP_PORT="0",
        CAREHUB_KAFKA_SESSION_TIMEOUT_MS="3000",
        CAREHUB_DISPATCH_INTERVAL_MS="50",
    )
    process = CarehubProcess("run", ["run"], env, home)
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    try:
        await asyncio.to_thread(process.start)
        assert process.address is not None
        # The case as it happened: each event under the clock of its own moment.
        for step in (CRIME, NFA):
            write_clock_file(clock, step.at)
            answers = await demo.post_events(process.address, step.events)
            assert [code for _id, code, _status in answers] == [202] * len(answers), answers

            async def settled(at: datetime = step.at) -> bool:
                return await demo.settled(sessions, demo.DEMO_URN, at)

            await eventually(settled, f"the case settled at {step.title}")

        async def held() -> dict[str, tuple[str, str, str | None]] | None:
            rows = await _nfa_messages(sessions)
            found = rows.get("survivor_get_in_touch")
            return rows if found and found[1] == "held" else None

        after_nfa = await eventually(held, "the survivor's message held")
        # The browser's part happens on a Wednesday late morning, inside her safe window.
        write_clock_file(clock, CLOCK_T0, ticking=True)
        yield Stack(
            url=process.address,
            outbox=var / "outbox",
            sessions=sessions,
            survivor_id=survivor_id,
            other_survivor_id=other_survivor_id,
            held_id=after_nfa["survivor_get_in_touch"][0],
            after_nfa={t: (status, reason) for t, (_id, status, reason) in after_nfa.items()},
        )
    finally:
        process.stop()
        await engine.dispose()
        if process.log.exists():
            shutil.copy(process.log, artifacts / "carehub-run.log")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    expect.set_options(timeout=WAIT_S * 1000)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class PageChecks:
    """What is done to every page a test visits: axe, then a full-page screenshot."""

    page: Page
    directory: Path
    serious: list[str] = field(default_factory=list)

    async def check(self, name: str) -> None:
        results = await Axe().run(self.page)
        violations: list[dict[str, Any]] = results.response["violations"]
        (self.directory / f"{name}.axe.json").write_text(
            json.dumps(violations, indent=2), encoding="utf-8"
        )
        for violation in violations:
            where = ", ".join(json.dumps(node["target"]) for node in violation["nodes"])
            line = (
                f"{name} {self.page.url}: {violation['id']} ({violation['impact']}): "
                f"{violation['help']} at {where}"
            )
            if violation["impact"] in SERIOUS:
                self.serious.append(line)
            else:
                print(f"axe: {line}")
        await self.page.screenshot(path=self.directory / f"{name}.png", full_page=True)

    def assert_accessible(self) -> None:
        assert not self.serious, "serious accessibility violations:\n" + "\n".join(self.serious)


@pytest_asyncio.fixture(loop_scope="module")
async def pages(browser: Browser, stack: Stack, artifacts: Path) -> AsyncIterator[PageChecks]:
    """A fresh browser context (no cookies) with one page on the stack."""
    context = await browser.new_context(
        base_url=stack.url, viewport={"width": 1100, "height": 800}, locale="en-GB"
    )
    context.set_default_timeout(WAIT_S * 1000)
    try:
        yield PageChecks(await context.new_page(), artifacts)
    finally:
        await context.close()


async def sign_in(checks: PageChecks, username: str, secret: str, names: tuple[str, str]) -> None:
    """Through the two forms, as a person would, checking each (`names`: their screenshots)."""
    page = checks.page
    await page.goto("/sign-in")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    await checks.check(names[0])
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password", exact=True).fill(demo.DEMO_PASSWORD)
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    await checks.check(names[1])
    await page.get_by_label("Security code").fill(pyotp.TOTP(secret).now())
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text(f"Signed in as {username}")).to_be_visible()


def summary_row(page: Page, key: str) -> Any:
    return page.locator(".govuk-summary-list__row").filter(
        has=page.locator(".govuk-summary-list__key", has_text=key)
    )


async def test_the_demo_case_holds_the_survivors_news(stack: Stack) -> None:
    # As the stack decided it: her ISVA told at once, her own message held for the ISVA to give.
    assert stack.after_nfa["advocate_tell_first"][0] == "delivered"
    assert stack.after_nfa["survivor_get_in_touch"] == ("held", "advocate_first")
    sent = await _nfa_messages(stack.sessions)
    assert (stack.outbox / f"{sent['advocate_tell_first'][0]}.json").exists()


async def test_an_advocate_sets_preferences_and_releases_held_news(
    stack: Stack, pages: PageChecks
) -> None:
    page = pages.page
    await sign_in(pages, "demo-isva", SECRETS["demo-isva"], ("01-sign-in", "02-code"))

    # The caseload: Riley first, with her held news.
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your caseload")
    riley = page.locator("#caseload tbody tr").filter(has_text="Riley")
    await expect(riley).to_contain_text("1 held")
    await pages.check("03-caseload")

    await riley.get_by_role("link", name="Riley").click()
    await expect(page).to_have_url(re.compile(rf"/survivors/{stack.survivor_id}$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Riley")
    await expect(page.locator("#held")).to_contain_text("survivor get in touch")
    await pages.check("04-survivor")

    # Contact preferences: a mistake first (the form says what is wrong and keeps the answers).
    await page.get_by_role("link", name="Change contact preferences").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Contact preferences")
    await pages.check("05-preferences")
    await page.get_by_label("Safe to contact from").fill("10:00")
    await page.get_by_label("Safe to contact until").fill("10:30")
    await page.get_by_label("Key stages only").check()
    # Each change needs its own reason: the last one's is not offered again.
    await expect(page.get_by_label("Why are these changing?")).to_have_value("")
    await page.get_by_role("button", name="Save preferences").click()
    problems = page.locator(".govuk-error-summary")
    await expect(problems).to_contain_text("at least an hour after it starts")
    await expect(problems).to_contain_text("Say why the preferences are changing")
    await expect(page.get_by_label("Key stages only")).to_be_checked()
    await expect(page.get_by_label("Safe to contact from")).to_have_value("10:00")
    await pages.check("06-preferences-errors")

    await page.get_by_label("Safe to contact until").fill("19:00")
    await page.get_by_label("Why are these changing?").select_option("agreed_with_survivor")
    await page.get_by_label("Note (optional)").fill("Agreed on the phone: mornings are busy.")
    await page.get_by_role("button", name="Save preferences").click()
    await expect(page).to_have_url(re.compile(rf"/survivors/{stack.survivor_id}\?saved=1$"))
    await expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
        "Contact preferences saved"
    )
    await expect(summary_row(page, "Safe times")).to_contain_text("10:00 to 19:00")
    await expect(summary_row(page, "Updates")).to_contain_text("Key stages only")
    await expect(page.get_by_text("version 2")).to_be_visible()
    await pages.check("07-survivor-preferences-saved")

    # The held message: read the draft, then release it.
    await page.locator("#held").get_by_role("link", name="survivor get in touch").click()
    await expect(page).to_have_url(re.compile(rf"/messages/{stack.held_id}$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Survivor get in touch")
    await expect(summary_row(page, "Status")).to_contain_text("held")
    await expect(summary_row(page, "Time left")).not_to_contain_text("—")
    await expect(page.locator("#draft")).to_contain_text("Riley")
    await pages.check("08-held-message")

    await page.get_by_label("Release it now").check()
    await page.get_by_role("button", name="Confirm").click()
    await expect(page).to_have_url(re.compile(rf"/survivors/{stack.survivor_id}\?asked=1$"))
    await expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
        "Your decision was recorded"
    )
    await pages.check("09-survivor-decision-recorded")

    # The dispatcher carries the release out and the notifier sends it: it is in the outbox.
    outbox_file = stack.outbox / f"{stack.held_id}.json"

    async def arrived() -> dict[str, Any] | None:
        if not outbox_file.exists():
            return None
        sent: dict[str, Any] = json.loads(outbox_file.read_text(encoding="utf-8"))
        return sent

    sent = await eventually(arrived, "the released message in the outbox")
    assert (sent["template"], sent["recipient_role"], sent["channel"]) == (
        "survivor_get_in_touch",
        "survivor",
        "sms",
    )
    assert sent["to"] == "+447700900123" and "Riley" in sent["body"]
    async with stack.sessions() as session:
        outcomes = (
            await session.execute(
                select(m.AdvocateAction.action, m.AdvocateAction.outcome).where(
                    m.AdvocateAction.notification_id == stack.held_id
                )
            )
        ).all()
    assert [tuple(o) for o in outcomes] == [("release", "done")]

    # Nothing is held any more, on her page or on the caseload.
    await page.goto(f"/survivors/{stack.survivor_id}")
    await expect(page.locator("#held")).to_have_count(0)
    await page.goto("/")
    await expect(page.locator("#caseload tbody tr").filter(has_text="Riley")).not_to_contain_text(
        "held"
    )
    await pages.check("10-caseload-after-release")
    pages.assert_accessible()


async def test_another_advocate_gets_404_for_someone_elses_survivor(
    stack: Stack, pages: PageChecks
) -> None:
    page = pages.page
    await sign_in(pages, "other-isva", OTHER_SECRET, ("other-sign-in", "other-code"))
    caseload = page.locator("#caseload")
    await expect(caseload).to_contain_text("Alex Stranger")
    await expect(caseload).not_to_contain_text("Riley")
    for path in (
        f"/survivors/{stack.survivor_id}",
        f"/survivors/{stack.survivor_id}/preferences",
        f"/messages/{stack.held_id}",
    ):
        response = await page.goto(path)
        assert response is not None and response.status == 404, path
        await expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
        await expect(page.locator("main")).not_to_contain_text("Riley")
    await pages.check("other-not-found")
    # Their own survivor opens.
    response = await page.goto(f"/survivors/{stack.other_survivor_id}")
    assert response is not None and response.status == 200
    await expect(page.get_by_role("heading", level=1)).to_have_text("Alex Stranger")
    pages.assert_accessible()
