"""The portal's pages: sign-in, caseload, a survivor's preferences and timeline, held messages.

Server-rendered with the GOV.UK Design System's macros, usable without JavaScript. Every page with
personal data is audited (who saw what, when); a survivor outside the staff member's caseload is
a 404, indistinguishable from one that does not exist. The portal only records an advocate's
action on a held message: the dispatcher carries it out (design.md).
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit
from services.core.db import models as m
from services.core.db.queries import current_preferences
from services.core.discreet import PERSONAL_LINE_TEMPLATES
from services.core.http_limits import read_form
from services.core.logs import get_logger
from services.core.message_variables import draft
from services.core.states import Status
from services.portal import access, views
from services.portal import preferences as prefs
from services.portal.auth import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Role,
    Staff,
    accept_totp,
    clear_failures,
    count_failure,
    csrf_ok,
    load_session,
    password_matches,
    start_session,
    throttle_keys,
    throttled,
)
from services.portal.web import (
    client_address,
    identify,
    page,
    real_now,
    runtime,
    secure_headers,
)

log = get_logger("portal")
router = APIRouter(include_in_schema=False)
ACTIONS = {
    "release": "Release it now (it goes at the next safe time)",
    "told_in_person": "I told them in person",
    "cancel": "Cancel it",
}


def _signed_out(request: Request) -> Response:
    return RedirectResponse("/sign-in", status_code=303)


def _not_found(request: Request) -> HTMLResponse:
    return page(request, "portal/not_found.html", status_code=404)


def _too_big(request: Request) -> HTMLResponse:
    return page(request, "portal/too_big.html", status_code=413)


async def _staff_form(request: Request, staff: Staff) -> dict[str, str] | Response:
    """A signed-in staff member's form: bounded in size, and carrying their session's CSRF
    token; else the page that says why nothing was changed."""
    form = await read_form(request)
    if form is None:
        return _too_big(request)
    if not csrf_ok(staff.csrf_token, str(form.get("csrf_token") or "")):
        return page(request, "portal/forbidden.html", status_code=403)
    return form


def real_id(value: int) -> bool:
    """An id a row could have (a 32-bit key): anything else is a page that does not exist."""
    return 0 < value < 2**31


NOTIFICATION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    secure = runtime(request).settings.env.value == "production"
    response.set_cookie(name, value, httponly=True, secure=secure, samesite="strict", path="/")


async def _staff_or_none(request: Request) -> Staff | None:
    staff = await identify(request, api=False)
    request.state.staff = staff
    return staff


def _viewed(session: AsyncSession, staff: Staff, now: datetime, what: str, **codes: Any) -> None:
    audit.record(session, at=now, actor=staff.actor, action=f"portal.viewed.{what}", **codes)


# --- signing in ------------------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(request, "portal/sign_in.html", csrf_token=token, errors={})
    _set_cookie(response, request, SIGN_IN_COOKIE, token)
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    rt = runtime(request)
    form = await read_form(request)
    if form is None:
        return _too_big(request)
    username = str(form.get("username") or "").strip()[:64]
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in username):
        username = ""  # no account has such a name: an ordinary failed sign-in
    password = str(form.get("password") or "")[:1024]
    if not csrf_ok(request.cookies.get(SIGN_IN_COOKIE), str(form.get("csrf_token") or "")):
        return await _sign_in_again(request, "Your sign-in form expired. Try again.", 400)
    now = real_now()
    keys = throttle_keys(username, client_address(request))
    async with rt.sessions.begin() as session:
        if await throttled(session, keys, now, rt.settings):
            log.info("portal.sign_in_throttled")
            return await _sign_in_again(
                request, "Too many attempts. Wait 15 minutes, then try again.", 429
            )
        account = await session.scalar(
            select(m.StaffAccount).where(m.StaffAccount.username == username.lower())
        )
        ok = password_matches(account.password_hash if account else None, password)
        if not ok or account is None or account.disabled_at is not None:
            await count_failure(session, keys, now, rt.settings)
            log.info("portal.sign_in_failed")
            failed = True
        else:
            failed = False
            token, _row = await start_session(session, account, "password", now, rt.settings)
    if failed:
        return await _sign_in_again(request, "The username or password is not right.", 401)
    response = RedirectResponse("/sign-in/code", status_code=303)
    _set_cookie(response, request, SESSION_COOKIE, token)
    response.delete_cookie(SIGN_IN_COOKIE, path="/")
    return response


async def _sign_in_again(request: Request, message: str, status: int) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        "portal/sign_in.html",
        status_code=status,
        csrf_token=token,
        errors={"username": message},
    )
    _set_cookie(response, request, SIGN_IN_COOKIE, token)
    return response


async def _half_signed_in(
    request: Request, session: AsyncSession
) -> tuple[m.StaffSession, m.StaffAccount] | None:
    rt = runtime(request)
    found = await load_session(
        session, request.cookies.get(SESSION_COOKIE), real_now(), rt.settings
    )
    if found is None or found[0].stage != "password":
        return None
    return found


@router.get("/sign-in/code", response_class=HTMLResponse)
async def code_form(request: Request) -> Response:
    async with runtime(request).sessions.begin() as session:
        found = await _half_signed_in(request, session)
    if found is None:
        return _signed_out(request)
    return page(request, "portal/code.html", csrf_token=found[0].csrf_token, errors={})


@router.post("/sign-in/code", response_class=HTMLResponse)
async def code(request: Request) -> Response:
    rt = runtime(request)
    form = await read_form(request)
    if form is None:
        return _too_big(request)
    now = real_now()
    async with rt.sessions.begin() as session:
        found = await _half_signed_in(request, session)
        if found is None:
            return _signed_out(request)
        half, account = found
        if not csrf_ok(half.csrf_token, str(form.get("csrf_token") or "")):
            return page(
                request,
                "portal/code.html",
                status_code=400,
                csrf_token=half.csrf_token,
                errors={"code": "Your form expired. Enter the code again."},
            )
        keys = throttle_keys(account.username, client_address(request))
        if await throttled(session, keys, now, rt.settings):
            half.ended_at = now
            return _signed_out(request)
        if not accept_totp(account, str(form.get("code") or ""), now):
            await count_failure(session, keys, now, rt.settings)
            csrf = half.csrf_token
            failed = True
        else:
            failed = False
            half.ended_at = now
            await clear_failures(session, keys[0])
            token, _row = await start_session(session, account, "full", now, rt.settings)
            audit.record(
                session, at=rt.clock.now(), actor=f"staff:{account.id}", action="staff.signed_in"
            )
    if failed:
        return page(
            request,
            "portal/code.html",
            status_code=401,
            csrf_token=csrf,
            errors={"code": "That code is not right. Enter the 6 numbers your app shows now."},
        )
    response = RedirectResponse("/", status_code=303)
    _set_cookie(response, request, SESSION_COOKIE, token)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    rt = runtime(request)
    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    form = await _staff_form(request, staff)
    if isinstance(form, Response):
        return form
    async with rt.sessions.begin() as session:
        row = await session.get(m.StaffSession, staff.session_id)
        if row is not None:
            row.ended_at = real_now()
        audit.record(session, at=rt.clock.now(), actor=staff.actor, action="staff.signed_out")
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- caseload and survivors ------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def caseload(request: Request) -> Response:
    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    rt = runtime(request)
    now = rt.clock.now()
    if staff.role is Role.OPERATIONS:
        async with rt.sessions.begin() as session:
            ops = await views.operations(session, now)
        return page(request, "portal/operations.html", ops=ops)
    async with rt.sessions.begin() as session:
        ids = await access.visible_survivors(session, staff, now)
        lines = await views.caseload(session, ids, now)
        _viewed(session, staff, now, "caseload", survivors=len(ids))
    return page(request, "portal/caseload.html", lines=lines, now=now)


async def _survivor_for(
    request: Request, session: AsyncSession, staff: Staff, survivor_id: int, now: datetime
) -> m.Survivor | None:
    if not real_id(survivor_id) or not await access.may_see(session, staff, survivor_id, now):
        return None
    return await session.get(m.Survivor, survivor_id)


@router.get("/survivors/{survivor_id}", response_class=HTMLResponse)
async def survivor(request: Request, survivor_id: int) -> Response:
    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        if await _survivor_for(request, session, staff, survivor_id, now) is None:
            return _not_found(request)
        data = await views.survivor_page(session, survivor_id, now)
        events = await views.timeline(session, survivor_id, now)
        _viewed(session, staff, now, "survivor", survivor_id=survivor_id)
    return page(
        request,
        "portal/survivor.html",
        s=data,
        timeline=events,
        saved=request.query_params.get("saved"),
        asked=request.query_params.get("asked"),
        labels={
            "language": views.LANGUAGES,
            "frequency": views.FREQUENCIES,
            "detail": views.DETAILS,
        },
    )


def _form_values(pref: dict[str, Any] | None, consent: bool) -> dict[str, Any]:
    values = dict(pref or {})
    # A change needs its own reason: the last one's is never offered again.
    values.pop("reason_code", None)
    values.pop("reason_note", None)
    values.setdefault("safe_window_start", "09:00")
    values.setdefault("safe_window_end", "20:00")
    values["consent_to_referral"] = consent
    return values


@router.get("/survivors/{survivor_id}/preferences", response_class=HTMLResponse)
async def preferences_form(request: Request, survivor_id: int) -> Response:
    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        found = await _survivor_for(request, session, staff, survivor_id, now)
        if found is None:
            return _not_found(request)
        current = (await current_preferences(session, [survivor_id])).get(survivor_id)
        _viewed(session, staff, now, "preferences", survivor_id=survivor_id)
        values = _form_values(views.preference_dict(current), found.consent_to_referral)
        name = views.name_of(found)
    return _preferences_page(request, survivor_id, name, values, {}, 200)


def _preferences_page(
    request: Request,
    survivor_id: int,
    name: str,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int,
) -> HTMLResponse:
    return page(
        request,
        "portal/preferences.html",
        status_code=status,
        survivor_id=survivor_id,
        name=name,
        v=values,
        errors=errors,
        reasons=views.REASON_CODES,
        languages=views.LANGUAGES,
        frequencies=views.FREQUENCIES,
        details=views.DETAILS,
        order=list(prefs.FIELDS),
    )


@router.post("/survivors/{survivor_id}/preferences", response_class=HTMLResponse)
async def preferences_save(request: Request, survivor_id: int) -> Response:
    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    form = await _staff_form(request, staff)
    if isinstance(form, Response):
        return form
    raw: dict[str, Any] = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    for flag in (
        "sms_safe",
        "email_safe",
        "letter_safe",
        "opted_out",
        "feedback_opt_in",
        "consent_to_referral",
    ):
        raw.setdefault(flag, "no")  # an unticked box is not sent at all
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        found = await _survivor_for(request, session, staff, survivor_id, now)
        if found is None:
            return _not_found(request)
        if found.erased_at is not None:
            return _not_found(request)  # erased: nothing may be recorded about them again
        current = (await current_preferences(session, [survivor_id])).get(survivor_id)
        checked = prefs.check(
            raw, current, now.date(), production=rt.settings.env.value == "production"
        )
        if not checked.errors:
            await prefs.save(session, found, current, checked.values, actor=staff.actor, now=now)
        name = views.name_of(found)
    if checked.errors:
        shown = {**raw}
        return _preferences_page(request, survivor_id, name, shown, checked.errors, 400)
    return RedirectResponse(f"/survivors/{survivor_id}?saved=1", status_code=303)


@router.get("/team", response_class=HTMLResponse)
async def team(request: Request) -> Response:
    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    if staff.role is not Role.SUPERVISOR:
        return _not_found(request)
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        ids = await access.visible_survivors(session, staff, now)
        data = await views.team_view(session, ids, now)
        _viewed(session, staff, now, "team", survivors=len(ids))
    return page(request, "portal/team.html", team=data)


@router.get("/survivors/{survivor_id}/export")
async def subject_access(request: Request, survivor_id: int) -> Response:
    """A subject access export: supervisors only, audited, never cached."""
    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        if (
            staff.role is not Role.SUPERVISOR
            or not real_id(survivor_id)
            or not await access.may_see(session, staff, survivor_id, now)
        ):
            return _not_found(request)
        data = await views.subject_access(session, survivor_id)
        if data is None:
            return _not_found(request)
        audit.record(
            session,
            at=now,
            actor=staff.actor,
            action="portal.subject_access_export",
            survivor_id=survivor_id,
        )
    data["produced_at"] = now.isoformat()
    data["produced_by"] = staff.actor
    response = Response(
        json.dumps(data, indent=2, ensure_ascii=False),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="subject-access-{survivor_id}.json"'
        },
    )
    secure_headers(response)
    return response


@router.get("/compliance", response_class=HTMLResponse)
async def compliance(request: Request) -> Response:
    """Victims' Code compliance for a date range: a supervisor's team, or every team for
    operations (the figures carry no personal data). `?format=csv` downloads the same."""
    from datetime import date, timedelta

    from services.reports.compliance import compliance_report
    from services.reports.satisfaction import satisfaction

    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    if staff.role is Role.ADVOCATE:
        return _not_found(request)
    rt = runtime(request)
    now = rt.clock.now()
    today = now.date()
    errors: dict[str, str] = {}
    try:
        start = date.fromisoformat(request.query_params.get("from") or "")
    except ValueError:
        start = today - timedelta(days=90)
        if request.query_params.get("from"):
            errors["from"] = "Enter the first day as a date, like 2026-09-01"
    try:
        end = date.fromisoformat(request.query_params.get("to") or "")
    except ValueError:
        end = today
        if request.query_params.get("to"):
            errors["to"] = "Enter the last day as a date, like 2026-11-30"
    if end < start:
        errors["to"] = "The last day must not be before the first"
        end = start
    async with rt.sessions.begin() as session:
        team_id = None
        if staff.role is Role.SUPERVISOR:
            advocate = await session.get(m.Advocate, staff.advocate_id)
            team_id = advocate.team_id if advocate else None
            if team_id is None:
                return _not_found(request)
        report = await compliance_report(
            session, start=start, end=end, team_id=team_id, now=now, calendar=rt.calendar
        )
        feedback = await satisfaction(session, start=start, end=end, team_id=team_id)
        audit.record(session, at=now, actor=staff.actor, action="portal.viewed.compliance")
    if request.query_params.get("format") == "csv" and not errors:
        response = Response(
            report.as_csv(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": (
                    f'attachment; filename="compliance-{start.isoformat()}-{end.isoformat()}.csv"'
                )
            },
        )
        secure_headers(response)
        return response
    return page(
        request,
        "portal/compliance.html",
        report=report.as_json(),
        satisfaction=feedback,
        errors=errors,
        start=start.isoformat(),
        end=end.isoformat(),
    )


@router.post("/cases/{case_id}/{step}", response_class=HTMLResponse)
async def case_status(request: Request, case_id: int, step: str) -> Response:
    """A supervisor closes a case (nothing more is owed to its survivors: the retention clock
    starts, docs/security.md) or reopens it. Audited."""
    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    if staff.role is not Role.SUPERVISOR or step not in ("close", "reopen") or not real_id(case_id):
        return _not_found(request)
    form = await _staff_form(request, staff)
    if isinstance(form, Response):
        return form
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        case = await session.get(m.Case, case_id, with_for_update=True)
        members = list(
            await session.scalars(
                select(m.CaseSurvivor.survivor_id).where(m.CaseSurvivor.case_id == case_id)
            )
        )
        visible = set(await access.visible_survivors(session, staff, now))
        if case is None or not visible.intersection(members):
            return _not_found(request)
        if step == "close" and case.closed_at is None:
            case.status, case.closed_at = "closed", now
        elif step == "reopen" and case.closed_at is not None:
            case.status, case.closed_at = "open", None
        audit.record(session, at=now, actor=staff.actor, action=f"case.{step}", case_id=case.id)
        back = next(s for s in members if s in visible)
    return RedirectResponse(f"/survivors/{back}", status_code=303)


# --- letters to post ------------------------------------------------------------------------


async def _letters_for(
    session: AsyncSession, staff: Staff, now: datetime
) -> list[tuple[m.LetterTask, m.Notification]]:
    ids = await access.visible_survivors(session, staff, now)
    if not ids:
        return []
    rows = await session.execute(
        select(m.LetterTask, m.Notification)
        .join(m.Notification, m.Notification.id == m.LetterTask.notification_id)
        .where(m.LetterTask.posted_at.is_(None), m.Notification.survivor_id.in_(ids))
        .order_by(m.LetterTask.created_at)
    )
    return [(task, n) for task, n in rows.all()]


@router.get("/letters", response_class=HTMLResponse)
async def letters(request: Request) -> Response:
    """Letters waiting to be printed and posted, for my survivors (my team's)."""
    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    if staff.role is Role.OPERATIONS:
        return _not_found(request)
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        found = await _letters_for(session, staff, now)
        names = {
            s.id: views.name_of(s)
            for s in await session.scalars(
                select(m.Survivor).where(
                    m.Survivor.id.in_([n.survivor_id for _t, n in found if n.survivor_id])
                )
            )
        }
        _viewed(session, staff, now, "letters", letters=len(found))
        lines = [
            {
                "id": task.id,
                "name": names.get(n.survivor_id or 0, ""),
                "survivor_id": n.survivor_id,
                "template": n.template,
                "queued_at": task.created_at.isoformat(),
                "printed": task.printed_at is not None,
                "due_by": n.due_by.isoformat() if n.due_by else None,
            }
            for task, n in found
        ]
    return page(
        request, "portal/letters.html", lines=lines, posted=request.query_params.get("posted")
    )


async def _letter_for(
    session: AsyncSession, staff: Staff, task_id: int, now: datetime
) -> tuple[m.LetterTask, m.Notification] | None:
    if not real_id(task_id):
        return None
    task = await session.get(m.LetterTask, task_id)
    if task is None:
        return None
    n = await session.get_one(m.Notification, task.notification_id)
    if n.survivor_id is None or not await access.may_see(session, staff, n.survivor_id, now):
        return None
    return task, n


@router.get("/letters/{task_id}", response_class=HTMLResponse)
async def letter(request: Request, task_id: int) -> Response:
    """The letter as it prints, and the buttons to record it printed and posted."""
    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        found = await _letter_for(session, staff, task_id, now)
        if found is None:
            return _not_found(request)
        task, n = found
        _viewed(session, staff, now, "letter", letter_task_id=task.id, notification_id=n.id)
        data = {
            "id": task.id,
            "address": task.address,
            "subject": task.subject,
            "body_text": task.body_text,
            "printed_at": task.printed_at,
            "posted_at": task.posted_at,
            "survivor_id": n.survivor_id,
        }
    return page(request, "portal/letter.html", letter=data)


@router.post("/letters/{task_id}/{step}", response_class=HTMLResponse)
async def letter_step(request: Request, task_id: int, step: str) -> Response:
    """Record the letter printed or posted (the survivor counts as informed two working days
    after posting; services.core.letters)."""
    from services.core.letters import mark_posted, mark_printed

    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    if step not in ("printed", "posted"):
        return _not_found(request)
    form = await _staff_form(request, staff)
    if isinstance(form, Response):
        return form
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        if await _letter_for(session, staff, task_id, now) is None:
            return _not_found(request)
        if step == "printed":
            await mark_printed(session, task_id, staff.actor, now)
        else:
            await mark_posted(session, task_id, staff.actor, now, calendar=rt.calendar)
    if step == "printed":
        return RedirectResponse(f"/letters/{task_id}", status_code=303)
    return RedirectResponse("/letters?posted=1", status_code=303)


# --- held messages ---------------------------------------------------------------------------


async def _message_for(
    session: AsyncSession, staff: Staff, notification_id: str, now: datetime
) -> m.Notification | None:
    if not NOTIFICATION_ID.fullmatch(notification_id):
        return None
    row = await session.get(m.Notification, notification_id)
    if row is None or not await access.may_act_on(session, staff, row, now):
        return None
    return row


@router.get("/messages/{notification_id}", response_class=HTMLResponse)
async def message(request: Request, notification_id: str) -> Response:
    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        row = await _message_for(session, staff, notification_id, now)
        if row is None:
            return _not_found(request)
        words = await draft(session, row, now, base_url=rt.settings.public_base_url)
        pending = await session.scalar(
            select(m.AdvocateAction).where(
                m.AdvocateAction.notification_id == row.id,
                m.AdvocateAction.carried_out_at.is_(None),
            )
        )
        survivor = await session.get(m.Survivor, row.survivor_id) if row.survivor_id else None
        _viewed(session, staff, now, "message", notification_id=row.id)
        data = views.notification_dict(row, now)
        name = views.name_of(survivor) if survivor else None
    return page(
        request,
        "portal/message.html",
        n=data,
        subject=words[0] if words else None,
        body=words[1] if words else None,
        survivor_name=name,
        survivor_id=row.survivor_id,
        personal_line_ok=row.template in PERSONAL_LINE_TEMPLATES,
        pending=pending.action if pending else None,
        actions=ACTIONS,
        reason_items=[{"value": "", "text": "Choose a reason"}]
        + [{"value": k, "text": v} for k, v in views.CANCEL_REASONS.items()],
        errors={},
    )


@router.post("/messages/{notification_id}/actions", response_class=HTMLResponse)
async def message_action(request: Request, notification_id: str) -> Response:
    staff = await _staff_or_none(request)
    if staff is None:
        return _signed_out(request)
    form = await _staff_form(request, staff)
    if isinstance(form, Response):
        return form
    rt = runtime(request)
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        row = await _message_for(session, staff, notification_id, now)
        if row is None:
            return _not_found(request)
        told_at, problem = told_time(
            str(form.get("told_date") or ""), str(form.get("told_time") or ""), row, now
        )
        if problem is None:
            problem = await record_action(
                session,
                staff,
                row,
                str(form.get("action") or ""),
                str(form.get("reason_code") or "") or None,
                str(form.get("note") or "").strip() or None,
                now,
                told_at=told_at,
                personal_line=str(form.get("personal_line") or "").strip() or None,
            )
        survivor_id = row.survivor_id
    if problem:
        return page(
            request,
            "portal/bad_action.html",
            status_code=400,
            problem=problem,
            notification_id=notification_id,
        )
    target = f"/survivors/{survivor_id}?asked=1" if survivor_id else "/"
    return RedirectResponse(target, status_code=303)


def told_time(
    day: str, clock: str, row: m.Notification, now: datetime
) -> tuple[datetime | None, str | None]:
    """When the advocate says they told the survivor (London time), checked: (at, problem)."""
    from datetime import date, time

    from services.portal.web import LONDON

    if not day and not clock:
        return None, None
    try:
        at = datetime.combine(
            date.fromisoformat(day or now.astimezone(LONDON).date().isoformat()),
            time.fromisoformat(clock or "00:00"),
            tzinfo=LONDON,
        )
    except ValueError:
        return None, "Enter when you told them as a date and a time, like 2026-11-18 and 14:30."
    return told_at_problem(at, row, now)


def told_at_problem(
    at: datetime, row: m.Notification, now: datetime
) -> tuple[datetime | None, str | None]:
    if at.tzinfo is None:
        return None, "Give the time you told them with its time zone."
    if at > now:
        return None, "The time you told them cannot be in the future."
    if at < row.created_at:
        return None, "The time you told them cannot be before the news arrived."
    return at, None


async def personal_line_check(
    session: AsyncSession, row: m.Notification, action: str, line: str | None, now: datetime
) -> str | None:
    """What is wrong with an advocate's own line for this message, or None. Within the
    template's bounds: only where the template has a place for it, never naming anything a
    discreet message must not, and never making a text longer than its segment limit."""
    from services.core.discreet import PERSONAL_LINE_TEMPLATES, personal_line_problem
    from services.core.sms import inspect
    from services.core.template_docs import SMS_SEGMENT_LIMIT

    if line is None:
        return None
    if action != "release":
        return "Only a message you release can carry your own line."
    if row.template not in PERSONAL_LINE_TEMPLATES:
        return "This message has no place for a line of your own."
    if problem := personal_line_problem(line, detail=row.detail):
        return problem
    if row.channel == "sms":
        row.personal_line = line
        try:
            words = await draft(session, row, now)
        finally:
            row.personal_line = None
        if words is not None and (parts := inspect(words[1]).segments) > SMS_SEGMENT_LIMIT:
            return (
                f"With your line the text would be {parts} parts long (at most "
                f"{SMS_SEGMENT_LIMIT}): please shorten it."
            )
    return None


async def record_action(
    session: AsyncSession,
    staff: Staff,
    row: m.Notification,
    action: str,
    reason_code: str | None,
    note: str | None,
    now: datetime,
    *,
    told_at: datetime | None = None,
    personal_line: str | None = None,
) -> str | None:
    """Record what the advocate asked for; the dispatcher carries it out. A problem, or None."""
    if action not in ACTIONS:
        return "Choose what to do with the message."
    if action == "cancel" and reason_code not in views.CANCEL_REASONS:
        return "Say why the message is cancelled."
    if row.status != Status.HELD:
        return f"This message is no longer held (it is {row.status.replace('_', ' ')})."
    if note and len(note) > 500:
        return "The note must be 500 characters or fewer."
    if problem := await personal_line_check(session, row, action, personal_line, now):
        return problem
    session.add(
        m.AdvocateAction(
            notification_id=row.id,
            action=action,
            reason_code=reason_code if action == "cancel" else None,
            note=note,
            requested_by=staff.actor,
            requested_at=now,
            told_at=told_at if action == "told_in_person" else None,
            personal_line=personal_line,
        )
    )
    audit.record(
        session,
        at=now,
        actor=staff.actor,
        action=f"advocate_action.requested.{action}",
        case_id=row.case_id,
        notification_id=row.id,
        reason=reason_code if action == "cancel" else None,
    )
    log.info("portal.action_recorded", notification_id=row.id, action=action)
    return None
