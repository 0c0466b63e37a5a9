"""How satisfied survivors are with being kept informed: the answers to the one short feedback
question (services.core.feedback), by calendar quarter (UK time). Counts only, no personal data.

Per quarter of the question's `asked_at`: questions asked, answers, the response rate, the mean
score (1 = badly .. 5 = very well) and the share answering 4 or 5 ("satisfied", the way London's
victim satisfaction figures are reported).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.calendar import london_date
from services.core.db import models as m
from services.reports.compliance import london_day_bounds

COLUMNS = ("quarter", "asked", "answered", "response_rate", "mean_score", "satisfied_share")


def quarter_of(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


async def satisfaction(
    session: AsyncSession, *, start: date, end: date, team_id: int | None
) -> list[dict[str, Any]]:
    """One row per quarter with a question asked from `start` to `end` (London days)."""
    low, high = london_day_bounds(start, end)
    query = (
        select(m.FeedbackQuestion.asked_at, m.FeedbackQuestion.score)
        .join(m.Case, m.Case.id == m.FeedbackQuestion.case_id)
        .where(m.FeedbackQuestion.asked_at >= low, m.FeedbackQuestion.asked_at < high)
    )
    if team_id is not None:
        team = await session.get(m.Team, team_id)
        on_team = m.Case.team_id == team_id
        if team is not None and team.is_default:
            on_team = on_team | m.Case.team_id.is_(None)
        query = query.where(on_team)
    groups: dict[str, list[int | None]] = defaultdict(list)
    for asked_at, score in (await session.execute(query)).all():
        groups[quarter_of(london_date(asked_at))].append(score)
    rows = []
    for quarter in sorted(groups):
        scores = [s for s in groups[quarter] if s is not None]
        asked = len(groups[quarter])
        rows.append(
            {
                "quarter": quarter,
                "asked": asked,
                "answered": len(scores),
                "response_rate": round(len(scores) / asked, 4) if asked else None,
                "mean_score": round(sum(scores) / len(scores), 2) if scores else None,
                "satisfied_share": (
                    round(sum(s >= 4 for s in scores) / len(scores), 4) if scores else None
                ),
            }
        )
    return rows


def as_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow("" if row[c] is None else row[c] for c in COLUMNS)
    return out.getvalue()
