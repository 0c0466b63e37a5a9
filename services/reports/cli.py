"""`carehub report ...`: reports as CSV or JSON on stdout; a summary for people on stderr.

Self-contained (its own three output helpers) because `services/cli.py` mounts it: importing
that module back from here would load it twice under `python -m services.cli`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date
from enum import StrEnum
from typing import Any, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from services.core.calendar import CalendarFileError, load_calendar
from services.core.clock import ClockFileError, clock_from_settings
from services.core.db.engine import make_engine, session_factory
from services.core.settings import ConfigurationError, load_settings
from services.reports.compliance import ComplianceReport, compliance_report, team_id_named
from services.reports.satisfaction import as_csv as satisfaction_csv
from services.reports.satisfaction import satisfaction
from services.rules.ruleset import RulesError, load_rules

report_app = typer.Typer(
    help="Reports: counts and codes, never personal data.", no_args_is_help=True
)


class ReportFormat(StrEnum):
    csv = "csv"
    json = "json"


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fail(message: str, code: int = 2) -> NoReturn:
    _err(f"carehub: {message}")
    print(json.dumps({"error": message}), flush=True)
    raise typer.Exit(code)


def _day(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"--{name} must be a date like 2026-11-30")


@report_app.command("compliance")
def compliance(
    start: str = typer.Option(..., "--from", help="First day of due_by (YYYY-MM-DD, UK time)."),
    end: str = typer.Option(..., "--to", help="Last day of due_by, included (YYYY-MM-DD)."),
    team: str | None = typer.Option(None, "--team", help="Only this team's cases (its name)."),
    output: ReportFormat = typer.Option(ReportFormat.json, "--format", help="csv or json."),
) -> None:
    """Victims' Code duties due in a range: told on time, late, missed, pending or withdrawn,
    per event type and per agency duty (definitions: docs/compliance.md)."""
    first, last = _day("from", start), _day("to", end)
    if last < first:
        _fail("--to is before --from")
    try:
        settings = load_settings()
        rules = load_rules(settings.rules_file)
        calendar = load_calendar(settings.holidays_file)
        now = clock_from_settings(settings.clock_file).now()
    except (ConfigurationError, RulesError, CalendarFileError, ClockFileError) as exc:
        _fail(f"configuration error: {exc}")
    # No keyring is needed: the report reads no protected column.
    found: list[ComplianceReport] = []
    feedback: list[list[dict[str, Any]]] = []

    async def main() -> None:
        engine = make_engine(settings.resolved_database_url)
        try:
            async with session_factory(engine)() as session:
                team_id = None
                if team is not None:
                    team_id = await team_id_named(session, team)
                    if team_id is None:
                        _fail(f"no team named {team!r}")
                found.append(
                    await compliance_report(
                        session,
                        start=first,
                        end=last,
                        team_id=team_id,
                        now=now,
                        rules=rules,
                        calendar=calendar,
                    )
                )
                feedback.append(await satisfaction(session, start=first, end=last, team_id=team_id))
        finally:
            await engine.dispose()

    try:
        asyncio.run(main())
    except (SQLAlchemyError, OSError) as exc:
        # The type only: a driver's message can carry the connection string.
        _fail(f"cannot read the database ({type(exc).__name__})", code=1)
    report = found[0]
    total = report.total
    _err(
        f"{report.start}..{report.end}: {total.owed} owed, {total.on_time} on time, "
        f"{total.late} late, {total.missed} missed, {total.pending} pending, "
        f"{total.opted_out} opted out, {total.moot} moot"
    )
    if output is ReportFormat.csv:
        sys.stdout.write(report.as_csv())
        sys.stdout.flush()
        return
    result: dict[str, Any] = report.as_json()
    # Survivors' answers to the feedback question, by quarter (docs/compliance.md).
    result["satisfaction"] = feedback[0]
    print(json.dumps(result), flush=True)


@report_app.command("satisfaction")
def satisfaction_command(
    start: str = typer.Option(..., "--from", help="First day a question was asked (YYYY-MM-DD)."),
    end: str = typer.Option(..., "--to", help="Last day, included (YYYY-MM-DD)."),
    team: str | None = typer.Option(None, "--team", help="Only this team's cases (its name)."),
    output: ReportFormat = typer.Option(ReportFormat.json, "--format", help="csv or json."),
) -> None:
    """Survivors' answers to "how well have we kept you up to date?", by quarter."""
    first, last = _day("from", start), _day("to", end)
    if last < first:
        _fail("--to is before --from")
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        _fail(f"configuration error: {exc}")
    rows: list[list[dict[str, Any]]] = []

    async def main() -> None:
        engine = make_engine(settings.resolved_database_url)
        try:
            async with session_factory(engine)() as session:
                team_id = None
                if team is not None:
                    team_id = await team_id_named(session, team)
                    if team_id is None:
                        _fail(f"no team named {team!r}")
                rows.append(await satisfaction(session, start=first, end=last, team_id=team_id))
        finally:
            await engine.dispose()

    try:
        asyncio.run(main())
    except (SQLAlchemyError, OSError) as exc:
        _fail(f"cannot read the database ({type(exc).__name__})", code=1)
    if output is ReportFormat.csv:
        sys.stdout.write(satisfaction_csv(rows[0]))
        sys.stdout.flush()
        return
    print(json.dumps({"report": "satisfaction", "quarters": rows[0]}), flush=True)
