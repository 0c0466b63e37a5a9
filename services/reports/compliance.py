"""Victims' Code compliance: for the duties that fell due in a date range, how many survivors were
told on time, late (and by how much) or not at all, per event type and per agency duty.

The compliance clock stops at `informed_at` (design.md, "Data model essentials"). What counts is
written out in docs/compliance.md and repeated in the report's notes (`NOTES`); in short:

- A **duty** is one survivor's right to be told of one case event: every `survivor` notification
  carrying a `due_by`, grouped by (case event, survivor), so a fallback on another channel
  (`supersedes_id`) or a second message never counts one duty twice. A survivor whose choices
  stopped the message when it was decided (opted out, no updates, key stages only) has no
  notification, only a `suppress` decision: that duty counts too, as `opted_out`.
- Its **due_by** falls in the range when its Europe/London calendar day is between `start` and
  `end`, both included.
- **on_time** / **late**: the earliest instant any of its messages informed the survivor is at or
  before / after `due_by`; **opted_out** / **moot**: withdrawn by the survivor's choice / made
  moot (newer news replaced it, a duplicate) no later than `due_by`, nobody informed;
  **pending**: nobody informed yet and `due_by` still ahead; **missed**: anything else.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.calendar import LONDON, WorkingDayCalendar, london_date
from services.core.db import models as m
from services.core.db.types import UTCDateTime
from services.core.states import FINAL, Status
from services.rules.ruleset import RuleSet, load_rules

# Withdrawn by the survivor's own choices: the engine's and the last look's reason codes, and
# an advocate's cancel because the survivor asked (services/rules/actions.py).
CHOICE_REASONS = ("opted_out", "frequency_none", "not_a_key_stage", "survivor_asked")
# Made moot: newer news of the same group replaced it, or an advocate found it a duplicate. Any
# other cancel ("wrong_details", "other") leaves the duty owed: someone must still tell them.
MOOT_REASONS = ("superseded_by_newer_event", "duplicate", "hold_resolved")
# Still in play: it may yet inform the survivor ("sent" waits for its receipt).
OPEN_STATUSES = tuple(sorted(s.value for s in Status if s not in FINAL))
# Final states that mean the survivor was told; when `informed_at` was not recorded, the time the
# state was recorded (`updated_at`) stands in: the telling happened no later than that.
TOLD_STATUSES = (Status.DELIVERED.value, Status.TOLD_IN_PERSON.value)
UNKNOWN_DUTY = "(not in the rules)"

NOTES = (
    "A duty is one survivor's right to be told of one case event: survivor notifications with a "
    "due_by, counted once per (case event, survivor) however many messages (fallbacks, "
    "corrections) it took; a suppress decision for a survivor's choice counts as a duty too.",
    "The range selects duties by the Europe/London calendar day of due_by, both ends included.",
    "Told = the earliest informed_at of the duty's messages (a message that failed is not "
    "evidence); a delivered or told_in_person message without informed_at counts from when that "
    "status was recorded. on_time: told at or before due_by; late: told after it.",
    "opted_out: the survivor's choice (opted out, no updates, key stages only, or asked an "
    "advocate to cancel it) stopped it, no later than due_by. moot: cancelled no later than "
    "due_by because newer news replaced it or it duplicated another. Any other cancel, and "
    "anything withdrawn after due_by, leaves it pending or missed.",
    "pending: not told yet and due_by is still ahead of generated_at. missed: due_by has passed "
    "and nobody was told (sent without a delivery receipt is not told).",
    "owed = on_time + late + missed + pending + opted_out + moot; on_time_rate = on_time / "
    "(on_time + late + missed).",
    "Lateness in hours after due_by, and in England-and-Wales working days from the due day to "
    "the day told (0: told on a weekend or bank holiday before the next working day); p50 is "
    "the median of the late duties.",
    "Duties are grouped by the case event's type and by the agency duty the rules file gives "
    "that type (the current rules file). No personal data: counts and codes only.",
)

COLUMNS = (
    "scope",
    "event_type",
    "duty",
    "owed",
    "on_time",
    "late",
    "missed",
    "pending",
    "opted_out",
    "moot",
    "on_time_rate",
    "late_hours_p50",
    "late_hours_max",
    "late_working_days_p50",
    "late_working_days_max",
)


class Outcome(StrEnum):
    """What became of one duty."""

    ON_TIME = "on_time"
    LATE = "late"
    MISSED = "missed"
    PENDING = "pending"
    OPTED_OUT = "opted_out"
    MOOT = "moot"


def classify(
    *,
    due_by: datetime,
    informed: datetime | None,
    open_messages: int,
    withdrawn_at: datetime | None,
    by_choice: bool,
    now: datetime,
) -> Outcome:
    """The outcome of one duty from what its messages say (pure; see the module docstring)."""
    if informed is not None:
        return Outcome.ON_TIME if informed <= due_by else Outcome.LATE
    # A duty withdrawn only after its deadline had passed was already broken by then.
    if open_messages == 0 and withdrawn_at is not None and withdrawn_at <= due_by:
        return Outcome.OPTED_OUT if by_choice else Outcome.MOOT
    return Outcome.PENDING if now <= due_by else Outcome.MISSED


@dataclass
class _Tally:
    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    late_hours: list[float] = field(default_factory=list)
    late_working_days: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Figures:
    """The counts of one group (an event type, a duty, or all of them)."""

    scope: str  # event_type, duty or total
    event_type: str
    duty: str
    on_time: int
    late: int
    missed: int
    pending: int
    opted_out: int
    moot: int
    late_hours_p50: float | None
    late_hours_max: float | None
    late_working_days_p50: float | None
    late_working_days_max: int | None

    @property
    def owed(self) -> int:
        return self.on_time + self.late + self.missed + self.pending + self.opted_out + self.moot

    @property
    def on_time_rate(self) -> float | None:
        """On time out of the duties whose outcome is known (None when there are none)."""
        decided = self.on_time + self.late + self.missed
        return round(self.on_time / decided, 4) if decided else None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in COLUMNS}

    @classmethod
    def of(cls, scope: str, event_type: str, duty: str, tally: _Tally) -> Figures:
        hours, days = tally.late_hours, tally.late_working_days
        return cls(
            scope=scope,
            event_type=event_type,
            duty=duty,
            on_time=tally.counts[Outcome.ON_TIME],
            late=tally.counts[Outcome.LATE],
            missed=tally.counts[Outcome.MISSED],
            pending=tally.counts[Outcome.PENDING],
            opted_out=tally.counts[Outcome.OPTED_OUT],
            moot=tally.counts[Outcome.MOOT],
            late_hours_p50=round(statistics.median(hours), 1) if hours else None,
            late_hours_max=round(max(hours), 1) if hours else None,
            late_working_days_p50=float(statistics.median(days)) if days else None,
            late_working_days_max=max(days) if days else None,
        )


@dataclass(frozen=True)
class ComplianceReport:
    """The figures for one date range (and team), ready for CSV, JSON or a chart."""

    start: date
    end: date
    team_id: int | None
    team_name: str | None
    generated_at: datetime
    rules_version: str
    by_event_type: tuple[Figures, ...]
    by_duty: tuple[Figures, ...]
    total: Figures

    def rows(self) -> list[Figures]:
        return [*self.by_event_type, *self.by_duty, self.total]

    def as_csv(self) -> str:
        """One header line, then a row per event type, per duty, and the total."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.rows():
            writer.writerow(_cell(value) for value in row.as_dict().values())
        return out.getvalue()

    def as_json(self) -> dict[str, Any]:
        """A JSON-able dict: the range, the groups, the total and the definitions used."""
        team = None if self.team_id is None else {"id": self.team_id, "name": self.team_name}
        return {
            "report": "compliance",
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "timezone": "Europe/London",
            "team": team,
            "generated_at": self.generated_at.isoformat().replace("+00:00", "Z"),
            "rules_version": self.rules_version,
            "by_event_type": [_without_scope(f) for f in self.by_event_type],
            "by_duty": [_without_scope(f) for f in self.by_duty],
            "total": _without_scope(self.total),
            "notes": list(NOTES),
        }


def _without_scope(figures: Figures) -> dict[str, Any]:
    values = figures.as_dict()
    del values["scope"]
    return values


def _cell(value: object) -> object:
    # Text from the rules file goes into spreadsheets: never let a cell start a formula.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


class UnknownTeam(LookupError):
    """No team has this id."""


def london_day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[from, to) in UTC covering the Europe/London days `start` to `end`, both included."""
    # Midnight always exists exactly once in Europe/London (the clocks change at 01:00 UTC).
    low = datetime.combine(start, time(0), tzinfo=LONDON).astimezone(UTC)
    high = datetime.combine(end + timedelta(days=1), time(0), tzinfo=LONDON).astimezone(UTC)
    return low, high


async def team_id_named(session: AsyncSession, name: str) -> int | None:
    """The id of the team called `name`, or None."""
    return await session.scalar(select(m.Team.id).where(m.Team.name == name))


async def compliance_report(
    session: AsyncSession,
    *,
    start: date,
    end: date,
    team_id: int | None,
    now: datetime,
    rules: RuleSet | None = None,
    calendar: WorkingDayCalendar | None = None,
) -> ComplianceReport:
    """The compliance figures of the duties falling due from `start` to `end` (London days,
    inclusive), for one team's cases or all; judged at `now` (what is pending). `rules` maps
    event types to duties (default: the packaged rules file); `calendar` counts working days.

    Raises ValueError when `end` is before `start` or `now` is naive, UnknownTeam for a team
    id that does not exist.
    """
    if end < start:
        raise ValueError("the range ends before it starts")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    rules = rules or load_rules()
    calendar = calendar or WorkingDayCalendar()
    team: m.Team | None = None
    if team_id is not None:
        team = await session.get(m.Team, team_id)
        if team is None:
            raise UnknownTeam(f"no team {team_id}")
    low, high = london_day_bounds(start, end)
    duties = [d async for d in _duties(session, low, high, team, now)]

    by_type: dict[str, _Tally] = {}
    by_duty: dict[str, _Tally] = {}
    total = _Tally()
    for event_type, due, outcome, told in duties:
        duty = _duty_of(rules, event_type)
        for tally in (
            by_type.setdefault(event_type, _Tally()),
            by_duty.setdefault(duty, _Tally()),
            total,
        ):
            tally.counts[outcome] += 1
            if outcome is Outcome.LATE and told is not None:
                tally.late_hours.append((told - due).total_seconds() / 3600)
                tally.late_working_days.append(
                    calendar.working_days_between(london_date(due), london_date(told))
                )
    return ComplianceReport(
        start=start,
        end=end,
        team_id=team_id,
        team_name=team.name if team is not None else None,
        generated_at=now.astimezone(UTC),
        rules_version=rules.version,
        by_event_type=tuple(
            Figures.of("event_type", t, _duty_of(rules, t), by_type[t]) for t in sorted(by_type)
        ),
        by_duty=tuple(Figures.of("duty", "", d, by_duty[d]) for d in sorted(by_duty)),
        total=Figures.of("total", "", "", total),
    )


def _duty_of(rules: RuleSet, event_type: str) -> str:
    rule = rules.events.get(event_type)
    return rule.duty if rule is not None and rule.duty else UNKNOWN_DUTY


def _on_team(team: m.Team | None) -> ColumnElement[bool] | None:
    if team is None:
        return None
    # A case with no team is the default team's (services/core/db/queries.py does the same).
    own = m.Case.team_id == team.id
    return or_(own, m.Case.team_id.is_(None)) if team.is_default else own


async def _duties(
    session: AsyncSession, low: datetime, high: datetime, team: m.Team | None, now: datetime
) -> AsyncIterator[tuple[str, datetime, Outcome, datetime | None]]:
    """(event type, due_by, outcome, told at) for every duty due in [low, high)."""
    n = m.Notification
    status = n.status
    withdrawn = and_(
        status.in_((Status.SUPPRESSED.value, Status.CANCELLED.value)),
        n.status_reason.in_(CHOICE_REASONS + MOOT_REASONS),
    )
    by_choice = and_(
        status.in_((Status.SUPPRESSED.value, Status.CANCELLED.value)),
        n.status_reason.in_(CHOICE_REASONS),
    )
    told = case(
        (status == Status.FAILED.value, None),
        (n.informed_at.is_not(None), n.informed_at),
        (status.in_(TOLD_STATUSES), n.updated_at),
        else_=None,
    )
    query = (
        select(
            n.case_event_id,
            n.survivor_id,
            m.CaseEvent.type,
            func.min(n.due_by, type_=UTCDateTime()),
            func.min(told, type_=UTCDateTime()),
            func.sum(case((status.in_(OPEN_STATUSES), 1), else_=0)),
            func.max(case((withdrawn, n.updated_at), else_=None), type_=UTCDateTime()),
            func.sum(case((by_choice, 1), else_=0)),
        )
        .join(m.CaseEvent, m.CaseEvent.id == n.case_event_id)
        .join(m.Case, m.Case.id == n.case_id)
        .where(
            n.recipient_role == "survivor",
            n.due_by.is_not(None),
            n.due_by >= low,
            n.due_by < high,
        )
        .group_by(n.case_event_id, n.survivor_id, m.CaseEvent.type)
    )
    on_team = _on_team(team)
    if on_team is not None:
        query = query.where(on_team)
    seen: set[tuple[int, int | None]] = set()
    for event_id, survivor_id, etype, due, informed, open_rows, gone_at, chosen in (
        await session.execute(query)
    ).all():
        seen.add((event_id, survivor_id))
        outcome = classify(
            due_by=due,
            informed=informed,
            open_messages=int(open_rows or 0),
            withdrawn_at=gone_at,
            by_choice=bool(chosen),
            now=now,
        )
        yield etype, due, outcome, informed
    for etype, due in await _chosen_at_decision(session, low, high, on_team, seen):
        yield etype, due, Outcome.OPTED_OUT, None


async def _chosen_at_decision(
    session: AsyncSession,
    low: datetime,
    high: datetime,
    on_team: ColumnElement[bool] | None,
    seen: Iterable[tuple[int, int | None]],
) -> list[tuple[str, datetime]]:
    """Duties with no survivor message because the survivor's choices stopped it when the event
    was decided (the engine writes a `suppress` decision and no notification)."""
    d = m.DecisionRow
    query = (
        select(d.case_event_id, d.survivor_id, m.CaseEvent.type, func.min(d.due_by))
        .join(m.CaseEvent, m.CaseEvent.id == d.case_event_id)
        .join(m.Case, m.Case.id == d.case_id)
        .where(
            d.outcome == "suppress",
            d.recipient_role == "survivor",
            d.hold_reason.in_(CHOICE_REASONS),
            d.due_by.is_not(None),
            d.due_by >= low,
            d.due_by < high,
        )
        .group_by(d.case_event_id, d.survivor_id, m.CaseEvent.type)
    )
    if on_team is not None:
        query = query.where(on_team)
    known = set(seen)
    return [
        (etype, due)
        for event_id, survivor_id, etype, due in (await session.execute(query)).all()
        if due is not None and (event_id, survivor_id) not in known
    ]


__all__ = [
    "COLUMNS",
    "NOTES",
    "ComplianceReport",
    "Figures",
    "Outcome",
    "UnknownTeam",
    "classify",
    "compliance_report",
    "london_day_bounds",
    "team_id_named",
]
