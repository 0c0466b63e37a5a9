"""The CPS case management feed: charging decisions, discontinuance, altered charges, reviews.

Record types and the canonical events they become are listed in ``docs/feeds.md``; the JSON
Schema is ``schemas/feeds/cps.schema.json``.
"""

from __future__ import annotations

import re
from typing import Any

from services.ingest.adapters.feedformat import FeedFormat
from services.ingest.adapters.native import NativeRecord, put

__all__ = ["FORMAT"]

DECISIONS = {
    "CHARGE": "charge",
    "NFA": "no_charge",
    "NO_FURTHER_ACTION": "no_charge",
    # Under the Director's Guidance on Charging an action plan asks the police for more evidence.
    "ACTION_PLAN": "further_evidence_requested",
}
STAGES = {
    # A notice under s.23 (magistrates' court) or s.23A (Crown Court) Prosecution of Offences Act.
    "S23": "discontinued",
    "S23A": "discontinued",
    "NEO": "no_evidence_offered",
    "LOF": "left_on_file",
}
REVIEW_RESULTS = {"UPHELD": "upheld", "NOT_UPHELD": "not_upheld"}


def _charges(rec: NativeRecord, *, required: bool) -> list[dict[str, Any]] | None:
    items = rec.items("charges", required=required)
    if not items:
        return None  # absent, or given empty where they are optional: no charges to tell of
    charges: list[dict[str, Any]] = []
    for item in items:
        charge: dict[str, Any] = {}
        put(charge, "offence", item.text("offence_description", required=True, max_len=200))
        put(charge, "wording", item.text("charge_wording", max_len=2000))
        charges.append(charge)
    return charges


def _vrr_eligible(rec: NativeRecord) -> bool:
    # Every decision this feed reports as stopping a case (no charge, discontinuance, no evidence
    # offered, all charges left on file) is one the CPS scheme covers, so a victim is told about
    # a review unless the CPS says it does not apply (for example other charges go ahead).
    eligible = rec.flag("vrr_eligible")
    return True if eligible is None else eligible


def _charging_decision(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    decision = rec.code("decision_code", DECISIONS, required=True)
    data: dict[str, Any] = {}
    put(data, "decision", decision)
    put(data, "charges", _charges(rec, required=decision == "charge"))
    put(data, "reason", rec.text("decision_rationale", max_len=2000))
    if decision == "no_charge":
        data["vrr_eligible"] = _vrr_eligible(rec)
    else:
        put(data, "vrr_eligible", rec.flag("vrr_eligible"))
    put(data, "meeting_offered", rec.flag("victim_meeting_offered"))
    return "cps.charging_decision", data


def _discontinuance(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "reason", rec.text("discontinuance_reason", required=True, max_len=2000))
    data["vrr_eligible"] = _vrr_eligible(rec)
    put(data, "stage", rec.code("discontinuance_type", STAGES))
    put(data, "meeting_offered", rec.flag("victim_meeting_offered"))
    return "cps.case_discontinued", data


def _charges_altered(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "charges", _charges(rec, required=True))
    put(data, "reason", rec.text("alteration_rationale", max_len=2000))
    put(data, "meeting_offered", rec.flag("victim_meeting_offered"))
    return "cps.charges_altered", data


def _vrr_decision(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "outcome", rec.code("vrr_result", REVIEW_RESULTS, required=True))
    put(data, "explanation", rec.text("vrr_explanation", max_len=2000))
    return "cps.vrr_outcome", data


FORMAT = FeedFormat(
    feed="cps",
    record_type="msg_type",
    record_id="msg_id",
    system="system",
    unit="cps_area",
    unit_shape=re.compile(r"[A-Za-z][A-Za-z _\-]{0,39}"),
    unit_hint="must be the CPS area name (letters, spaces, hyphens or underscores)",
    urn="case_urn",
    occurred="event_timestamp",
    received="received_timestamp",
    mappers={
        "CHARGING_DECISION": _charging_decision,
        "DISCONTINUANCE": _discontinuance,
        "CHARGES_ALTERED": _charges_altered,
        "VRR_DECISION": _vrr_decision,
    },
)
