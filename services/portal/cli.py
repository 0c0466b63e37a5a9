"""`carehub staff …`: portal accounts, from the command line of someone who runs carehub.

`add` prints the new account's TOTP secret once (as an otpauth:// address an authenticator app
takes); `token` prints an API token once. Neither is ever shown again: only hashes are kept.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from typing import Any

import pyotp
import typer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory
from services.core.keys import configure_keys
from services.core.settings import Settings, load_settings
from services.portal.auth import (
    Role,
    hash_password,
    issue_api_token,
    new_totp_secret,
    totp_uri,
)

staff_app = typer.Typer(
    help="Portal staff accounts: add, disable, API tokens.", no_args_is_help=True
)


def _settings() -> Settings:
    try:
        return load_settings()
    except Exception as exc:  # noqa: BLE001 - a configuration problem, said plainly
        typer.echo(f"carehub: {exc}", err=True)
        raise typer.Exit(2) from exc


def _run(settings: Settings, work: Any) -> Any:
    async def main() -> Any:
        configure_keys(settings)
        engine = make_engine(settings.resolved_database_url)
        try:
            async with session_factory(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


async def add_account(
    session: AsyncSession,
    *,
    username: str,
    role: Role,
    password: str,
    advocate_ref: str | None,
    now: datetime,
    totp_secret: str | None = None,
) -> tuple[m.StaffAccount, str]:
    """Create an account; (account, TOTP secret). ValueError names what is wrong."""
    username = username.strip().lower()
    if (
        not username
        or len(username) > 64
        or not username.replace("-", "").replace(".", "").isalnum()
    ):
        raise ValueError("a username is 1–64 letters, digits, '.' or '-'")
    if await session.scalar(select(m.StaffAccount.id).where(m.StaffAccount.username == username)):
        raise ValueError(f"there is already an account called {username}")
    advocate_id = None
    if role is not Role.OPERATIONS:
        if not advocate_ref:
            raise ValueError("an advocate or supervisor account needs --advocate (a staff_ref)")
        advocate_id = await session.scalar(
            select(m.Advocate.id).where(m.Advocate.staff_ref == advocate_ref)
        )
        if advocate_id is None:
            raise ValueError(f"no advocate has the staff reference {advocate_ref}")
    secret = totp_secret or new_totp_secret()
    account = m.StaffAccount(
        username=username,
        role=role.value,
        advocate_id=advocate_id,
        password_hash=hash_password(password),
        totp_secret=secret,
        failed_sign_ins=0,
        created_at=now,
    )
    session.add(account)
    await session.flush()
    audit.record(
        session, at=now, actor="cli", action="staff.added", account_id=account.id, role=role.value
    )
    return account, secret


@staff_app.command("add")
def staff_add(
    username: str = typer.Argument(..., help="The sign-in name."),
    role: Role = typer.Option(..., "--role", help="advocate, supervisor or operations."),
    advocate: str | None = typer.Option(
        None, "--advocate", help="The advocate's staff_ref (advocates and supervisors)."
    ),
) -> None:
    """Add a staff account. The password is read from CAREHUB_NEW_PASSWORD or asked for."""
    password = os.environ.get("CAREHUB_NEW_PASSWORD") or typer.prompt(
        "Password (12 characters or more)", hide_input=True, confirmation_prompt=True
    )
    settings = _settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        account, secret = await add_account(
            session,
            username=username,
            role=role,
            password=password,
            advocate_ref=advocate,
            now=datetime.now(UTC),
        )
        return {
            "account_id": account.id,
            "username": account.username,
            "totp_uri": totp_uri(secret, account.username),
        }

    try:
        out = _run(settings, work)
    except ValueError as exc:
        typer.echo(f"carehub: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo("Add the totp_uri to an authenticator app now: it is not shown again.", err=True)
    typer.echo(json.dumps(out))


@staff_app.command("disable")
def staff_disable(username: str = typer.Argument(...)) -> None:
    """Disable an account at once: its sessions and API tokens stop working."""
    settings = _settings()

    async def work(session: AsyncSession) -> int:
        now = datetime.now(UTC)
        account = await session.scalar(
            select(m.StaffAccount).where(m.StaffAccount.username == username.lower())
        )
        if account is None:
            return 0
        account.disabled_at = now
        await session.execute(
            update(m.StaffSession)
            .where(m.StaffSession.account_id == account.id, m.StaffSession.ended_at.is_(None))
            .values(ended_at=now)
        )
        audit.record(session, at=now, actor="cli", action="staff.disabled", account_id=account.id)
        return account.id

    if not _run(settings, work):
        typer.echo(f"carehub: no account called {username}", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps({"disabled": username.lower()}))


@staff_app.command("token")
def staff_token(
    username: str = typer.Argument(...),
    name: str = typer.Option(..., "--name", help="What the token is for (kept with it)."),
) -> None:
    """Issue an API token acting as this account (printed once; only its hash is kept)."""
    settings = _settings()

    async def work(session: AsyncSession) -> str | None:
        account = await session.scalar(
            select(m.StaffAccount).where(m.StaffAccount.username == username.lower())
        )
        if account is None or account.disabled_at is not None:
            return None
        return await issue_api_token(session, account, name[:80], datetime.now(UTC))

    token = _run(settings, work)
    if token is None:
        typer.echo(f"carehub: no active account called {username}", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps({"username": username.lower(), "token": token}))


@staff_app.command("code")
def staff_code(username: str = typer.Argument(...)) -> None:
    """Print an account's current sign-in code: for demo and test accounts, never production."""
    settings = _settings()
    if settings.env.value == "production":
        typer.echo("carehub: `staff code` is refused in production", err=True)
        raise typer.Exit(2)

    async def work(session: AsyncSession) -> str | None:
        account = await session.scalar(
            select(m.StaffAccount).where(m.StaffAccount.username == username.lower())
        )
        return None if account is None else pyotp.TOTP(account.totp_secret).now()

    code = _run(settings, work)
    if code is None:
        typer.echo(f"carehub: no account called {username}", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps({"username": username.lower(), "code": code}))
