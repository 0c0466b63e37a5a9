"""Shared plumbing of the portal's pages and API: templates, who is asking, security headers."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    PrefixLoader,
    select_autoescape,
)

from services.core.db import models as m
from services.core.runtime import Runtime
from services.portal.auth import SESSION_COOKIE, Role, Staff, account_for_token, load_session

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
LONDON = ZoneInfo("Europe/London")


def real_now() -> datetime:
    """Sessions and second factors live in real time, whatever the application clock says."""
    return datetime.now(UTC)


def _when(value: str | datetime | None, fmt: str = "%-d %B %Y, %H:%M") -> str:
    if not value:  # None, "" or undefined
        return "—"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.astimezone(LONDON).strftime(fmt)


def _time_left(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    if seconds <= 0:
        return "overdue"
    hours, rest = divmod(seconds, 3600)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours} h"
    return f"{hours} h {rest // 60} min"


def _choices(pairs: list[list[str]], current: Any, mark: str = "checked") -> list[dict[str, Any]]:
    """(value, label) pairs as GOV.UK radio or select items, the current one marked."""
    return [{"value": k, "text": label, mark: k == current} for k, label in pairs]


def _scores(pairs: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """Feedback answers, best first, each with its number (as a texted answer would give it)."""
    return [{"value": str(k), "text": f"{k} – {label}"} for k, label in sorted(pairs, reverse=True)]


def _errors_in(errors: dict[str, str], order: list[str]) -> list[dict[str, str]]:
    """An error summary in the order the fields appear on the page (GOV.UK guidance)."""
    rank = {name: i for i, name in enumerate(order)}
    names = sorted(errors, key=lambda n: (rank.get(n, len(rank)), n))
    return [{"text": errors[n], "href": f"#{n}"} for n in names]


def environment() -> Environment:
    env = Environment(
        loader=ChoiceLoader(
            [
                FileSystemLoader(HERE / "templates"),
                PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
            ]
        ),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["when"] = _when
    env.filters["time_left"] = _time_left
    env.filters["carehub_choices"] = _choices
    env.filters["carehub_errors_in"] = _errors_in
    env.filters["carehub_scores"] = _scores
    return env


ENV = environment()


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    staff: Staff | None = getattr(request.state, "staff", None)
    nonce = secrets.token_urlsafe(16)
    html = ENV.get_template(template).render(
        staff=staff,
        csrf_token=staff.csrf_token if staff else context.pop("csrf_token", ""),
        cspNonce=nonce,
        assets_ready=(STATIC_DIR / "govuk" / "govuk-frontend.min.css").exists(),
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    secure_headers(response, nonce)
    return response


def secure_headers(response: Any, nonce: str | None = None) -> None:
    script = f"'self' 'nonce-{nonce}'" if nonce else "'self'"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src {script}; style-src 'self'; img-src 'self' data:; "
        "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    # Pages carry personal data: never kept by a browser or a proxy.
    response.headers["Cache-Control"] = "no-store"


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def identify(request: Request, *, api: bool) -> Staff | None:
    """The signed-in staff member (a full session, or an API bearer token), or None."""
    rt = runtime(request)
    now = real_now()
    async with rt.sessions.begin() as session:
        if api:
            header = request.headers.get("authorization", "")
            if header.lower().startswith("bearer "):
                account = await account_for_token(session, header[7:].strip(), now)
                return _staff(account, "", None) if account else None
        found = await load_session(session, request.cookies.get(SESSION_COOKIE), now, rt.settings)
        if found is None or found[0].stage != "full":
            return None
        row, account = found
        row.last_seen_at = now
        return _staff(account, row.csrf_token, row.id)


def _staff(account: m.StaffAccount, csrf: str, session_id: str | None) -> Staff:
    return Staff(
        account_id=account.id,
        username=account.username,
        role=Role(account.role),
        advocate_id=account.advocate_id,
        csrf_token=csrf,
        session_id=session_id,
    )


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None
