"""Say when a preference cannot be met (trauma-informed rule 8): a survivor whose language we
cannot write in yet still gets their updates, in English, and their advocate is told once."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.test_pipeline import CE, arrested, crime_recorded, seed_team, wait_for_files


async def test_a_language_we_cannot_write_in_goes_to_the_advocate_once(stack: Any) -> None:
    await seed_team(stack)
    event = crime_recorded("01AB1234524", "p1")
    event["data"]["victims"][0]["flags"] = ["language:pl"]
    async with httpx.AsyncClient(base_url=stack.url) as client:
        assert (await client.post("/v1/events", json=event, headers=CE)).status_code == 202
        outbox = stack.runtime.settings.resolved_outbox_dir
        files = await wait_for_files(outbox, 3)
        by_template = {f["template"]: f for f in files}
        welcome = by_template["survivor_welcome"]
        assert welcome["language"] == "en" and "Casey" in welcome["body"]
        told = by_template["advocate_preference_not_met"]
        assert told["recipient_role"] == "supervisor" and "language pl" in told["body"]

        later = arrested("01AB1234524", "p2")
        assert (await client.post("/v1/events", json=later, headers=CE)).status_code == 202
        files = await wait_for_files(outbox, 4)
    templates = sorted(f["template"] for f in files)
    assert templates.count("advocate_preference_not_met") == 1  # once, not with every update
    assert "survivor_case_update" in templates


async def test_a_message_that_cannot_be_attempted_fails_and_never_stalls_the_notifier(
    stack: Any,
) -> None:
    from sqlalchemy import select, update

    from services.core.db import models as m

    supervisor_id, _ = await seed_team(stack)
    async with stack.runtime.sessions.begin() as session:
        await session.execute(
            update(m.Advocate).where(m.Advocate.id == supervisor_id).values(email=None)
        )
    async with httpx.AsyncClient(base_url=stack.url) as client:
        for n in range(2):
            event = crime_recorded(f"01AB12345{24 + n}", f"na{n}")
            assert (await client.post("/v1/events", json=event, headers=CE)).status_code == 202
    # Both survivors' texts still go: the supervisor's unaddressable e-mails did not block them.
    files = await wait_for_files(stack.runtime.settings.resolved_outbox_dir, 2)
    assert sorted(f["template"] for f in files) == ["survivor_welcome", "survivor_welcome"]
    async with stack.runtime.sessions() as session:
        staff = (
            await session.scalars(
                select(m.Notification).where(m.Notification.recipient_role == "supervisor")
            )
        ).all()
    assert staff and all((n.status, n.status_reason) == ("failed", "no_address") for n in staff)
