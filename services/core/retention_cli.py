"""`carehub retention ...`: personal data removed when its time is up, or at a survivor's request.

Self-contained (its own output helpers) because `services/cli.py` mounts it: importing that
module back from here would load it twice under `python -m services.cli`. Progress goes to
stderr; the JSON summary (counts per table, never a value) is the last line of stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
from enum import StrEnum
from typing import Any, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from services.core.clock import ClockFileError, clock_from_settings
from services.core.db.engine import make_engine
from services.core.keys import configure_keys
from services.core.retention import RetentionError, Summary, erase_one, run
from services.core.settings import ConfigurationError, Settings, load_settings

retention_app = typer.Typer(
    help="Retention and erasure of survivors' personal data.", no_args_is_help=True
)


class RequestReason(StrEnum):
    request = "request"


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fail(message: str, code: int = 2) -> NoReturn:
    _err(f"carehub: {message}")
    print(json.dumps({"error": message}), flush=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        _fail(f"configuration error: {exc}")


def _carry_out(settings: Settings, work: Any) -> Summary:
    """Run `work(engine, now)` with the keyring installed and the engine disposed after."""

    async def main() -> Summary:
        configure_keys(settings)
        engine = make_engine(settings.resolved_database_url)
        try:
            now = clock_from_settings(settings.clock_file).now()
            summary: Summary = await work(engine, now)
            return summary
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (ConfigurationError, ClockFileError) as exc:
        _fail(f"configuration error: {exc}")
    except RetentionError as exc:
        _fail(str(exc))
    except (SQLAlchemyError, OSError) as exc:
        # The type only: a database error's text can quote the values of a statement.
        _fail(f"database error ({type(exc).__name__}); nothing after the last batch was changed")


def _report(summary: Summary) -> None:
    tables = ", ".join(f"{name} {n}" for name, n in sorted(summary.tables.items()) if n)
    verb = "would erase" if summary.dry_run else "erased"
    _err(
        f"{verb}: {summary.survivors_erased} survivors, "
        f"{summary.notifications_cancelled} notifications cancelled; rows: {tables or 'none'}"
    )
    print(json.dumps(summary.as_dict()), flush=True)


@retention_app.command("run")
def retention_run(
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; change nothing."),
    batch_size: int = typer.Option(100, min=1, max=5_000, help="Survivors or rows per batch."),
) -> None:
    """Erase personal data past CAREHUB_RETENTION_DAYS (survivors whose cases all closed).

    Also the payloads of those cases, and rejected records and unrouted texts as old. Safe to
    re-run and to interrupt: each batch is one transaction, and what is erased already is
    skipped. Run it daily (cron, a Kubernetes CronJob)."""
    settings = _settings()

    async def work(engine: Any, now: Any) -> Summary:
        return await run(
            engine,
            now=now,
            retention_days=settings.retention_days,
            dry_run=dry_run,
            batch_size=batch_size,
            progress=_err if sys.stderr.isatty() else None,
        )

    _report(_carry_out(settings, work))


@retention_app.command("erase")
def retention_erase(
    survivor: int = typer.Option(..., "--survivor", help="The survivor's id."),
    reason: RequestReason = typer.Option(..., "--reason", help="Why: request (theirs)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; change nothing."),
) -> None:
    """Erase one survivor's personal data now, at their request, even on an open case.

    Their pending messages are cancelled, and nothing is sent to them afterwards."""
    settings = _settings()

    async def work(engine: Any, now: Any) -> Summary:
        return await erase_one(
            engine, survivor, now=now, retention_days=settings.retention_days, dry_run=dry_run
        )

    _report(_carry_out(settings, work))
