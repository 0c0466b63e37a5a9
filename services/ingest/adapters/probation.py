"""The probation victim liaison feed: Victim Contact Scheme eligibility, release and recall.

Record types and the canonical events they become are listed in ``docs/feeds.md``; the JSON
Schema is ``schemas/feeds/probation.schema.json``.
"""

from __future__ import annotations

import re
from typing import Any

from services.ingest.adapters.feedformat import FeedFormat
from services.ingest.adapters.native import NativeRecord, put

__all__ = ["FORMAT"]


def _licence_conditions(rec: NativeRecord) -> list[str] | None:
    conditions = rec.texts("licence_conditions")
    if rec.flag("conditions_attached") is False:
        if conditions:
            rec.fail("licence_conditions", "must be empty when conditions_attached is N")
        return []
    return conditions


def _vcs_eligible(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "sentence_date", rec.date("sentence_date", required=True))
    put(data, "sentence_length_months", rec.integer("sentence_months"))
    put(data, "hospital_order", rec.flag("hospital_order"))
    put(data, "offence_specified", rec.flag("specified_offence"))
    return "probation.victim_contact_scheme_eligible", data


def _release_planned(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "expected_date", rec.date("expected_release_date"))
    put(data, "licence_conditions", _licence_conditions(rec))
    return "probation.release_planned", data


def _released(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "released_on", rec.date("release_date", required=True))
    put(data, "licence_conditions", _licence_conditions(rec))
    return "probation.released", data


def _recalled(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "recalled_on", rec.date("recall_date", required=True))
    put(data, "reason", rec.text("recall_reason", max_len=2000))
    return "probation.recalled", data


FORMAT = FeedFormat(
    feed="probation",
    record_type="record_type",
    record_id="record_id",
    system="system",
    unit="probation_region",
    unit_shape=re.compile(r"[A-Za-z][A-Za-z _\-]{0,39}"),
    unit_hint="must be the probation region name (letters, spaces, hyphens or underscores)",
    urn="case_urn",
    occurred="event_datetime",
    received="received_datetime",
    mappers={
        "VCS_ELIGIBLE": _vcs_eligible,
        "RELEASE_PLANNED": _release_planned,
        "RELEASED": _released,
        "RECALLED": _recalled,
    },
)
