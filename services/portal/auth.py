"""Staff sign-in: argon2 passwords, a TOTP second factor for everyone, database sessions, CSRF
tokens, API tokens and throttled sign-in attempts.

A browser holds one random token in an http-only cookie; the database keeps only its SHA-256, so
a copy of the database signs nobody in. A session is at the `password` stage until the second
factor is given, and only a `full` session reaches any page with personal data. Every form
carries the session's CSRF token; the sign-in form, which has no session yet, a double-submit one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m
from services.core.settings import Settings

SESSION_COOKIE = "carehub_session"
SIGN_IN_COOKIE = "carehub_sign_in"
_hasher = PasswordHasher()
# Verified against when the username is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password anyone has")


class Role(StrEnum):
    ADVOCATE = "advocate"
    SUPERVISOR = "supervisor"
    OPERATIONS = "operations"


@dataclass(frozen=True)
class Staff:
    """Who is asking: the signed-in account, as every page and API call sees it."""

    account_id: int
    username: str
    role: Role
    advocate_id: int | None
    csrf_token: str
    session_id: str | None  # None for an API token

    @property
    def actor(self) -> str:
        return f"staff:{self.account_id}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    if len(password) < 12:
        raise ValueError("a password needs at least 12 characters")
    return _hasher.hash(password)


def password_matches(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="carehub")


def accept_totp(account: m.StaffAccount, code: str, now: datetime) -> bool:
    """True once per code: the step a code was accepted at is kept, and no step at or before it
    is accepted again (a code seen over someone's shoulder is already spent)."""
    code = "".join(ch for ch in code if ch.isdigit())
    if len(code) != 6:
        return False
    totp = pyotp.TOTP(account.totp_secret)
    now_step = totp.timecode(now)
    for step in (now_step - 1, now_step, now_step + 1):  # one step of clock drift either way
        expected = totp.generate_otp(step)
        if hmac.compare_digest(expected, code):
            if account.totp_last_step is not None and step <= account.totp_last_step:
                return False
            account.totp_last_step = step
            return True
    return False


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


async def start_session(
    session: AsyncSession, account: m.StaffAccount, stage: str, now: datetime, settings: Settings
) -> tuple[str, m.StaffSession]:
    """A new session (a new token at every stage change, so a planted cookie is worth nothing)."""
    token = secrets.token_urlsafe(32)
    row = m.StaffSession(
        id=token_hash(token),
        account_id=account.id,
        csrf_token=secrets.token_urlsafe(24),
        stage=stage,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=settings.portal_session_max_s),
    )
    session.add(row)
    return token, row


def session_live(row: m.StaffSession, now: datetime, settings: Settings) -> bool:
    if row.ended_at is not None or now >= row.expires_at:
        return False
    idle = timedelta(seconds=settings.portal_session_idle_s)
    if row.stage != "full":
        idle = min(idle, timedelta(minutes=5))  # the code is owed within minutes
    return now - row.last_seen_at < idle


async def load_session(
    session: AsyncSession, token: str | None, now: datetime, settings: Settings
) -> tuple[m.StaffSession, m.StaffAccount] | None:
    if not token or len(token) > 200:
        return None
    row = await session.get(m.StaffSession, token_hash(token))
    if row is None or not session_live(row, now, settings):
        return None
    account = await session.get(m.StaffAccount, row.account_id)
    if account is None or account.disabled_at is not None:
        return None
    return row, account


async def account_for_token(
    session: AsyncSession, token: str, now: datetime
) -> m.StaffAccount | None:
    row = await session.scalar(
        select(m.ApiToken).where(
            m.ApiToken.token_hash == token_hash(token), m.ApiToken.revoked_at.is_(None)
        )
    )
    if row is None:
        return None
    account = await session.get(m.StaffAccount, row.account_id)
    if account is None or account.disabled_at is not None:
        return None
    row.last_used_at = now
    return account


async def issue_api_token(
    session: AsyncSession, account: m.StaffAccount, name: str, now: datetime
) -> str:
    token = "chk_" + secrets.token_urlsafe(32)
    session.add(
        m.ApiToken(token_hash=token_hash(token), account_id=account.id, name=name, created_at=now)
    )
    return token


# --- throttling ------------------------------------------------------------------------------


def _limits(settings: Settings) -> dict[str, int]:
    per_user = settings.portal_sign_in_failures
    return {"user": per_user, "ip": per_user * 4}


async def throttled(
    session: AsyncSession, keys: list[str], now: datetime, settings: Settings
) -> bool:
    """True when any of `keys` ("user:<name>", "ip:<address>") has used up its failures."""
    window = timedelta(seconds=settings.portal_sign_in_window_s)
    limits = _limits(settings)
    for key in keys:
        row = await session.get(m.SignInThrottle, key)
        if row is None or now - row.window_start >= window:
            continue
        if row.failures >= limits[key.split(":", 1)[0]]:
            return True
    return False


async def count_failure(
    session: AsyncSession, keys: list[str], now: datetime, settings: Settings
) -> None:
    window = timedelta(seconds=settings.portal_sign_in_window_s)
    for key in keys:
        row = await session.get(m.SignInThrottle, key, with_for_update=True)
        if row is None:
            session.add(m.SignInThrottle(key=key, window_start=now, failures=1))
        elif now - row.window_start >= window:
            row.window_start, row.failures = now, 1
        else:
            row.failures += 1


async def clear_failures(session: AsyncSession, key: str) -> None:
    row = await session.get(m.SignInThrottle, key)
    if row is not None:
        await session.delete(row)


def throttle_keys(username: str, address: str | None) -> list[str]:
    keys = [f"user:{username.strip().lower()[:64]}"]
    if address:
        keys.append(f"ip:{address[:64]}")
    return keys
