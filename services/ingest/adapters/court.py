"""The court and witness care feed: listings, bail, warrants, witnesses, verdicts, sentences
and appeals.

Record types and the canonical events they become are listed in ``docs/feeds.md``; the JSON
Schema is ``schemas/feeds/court.schema.json``.
"""

from __future__ import annotations

import re
from typing import Any

from services.ingest.adapters.feedformat import FeedFormat
from services.ingest.adapters.native import NativeRecord, code_key, put

__all__ = ["FORMAT"]

HEARING_TYPES = {
    "FIRST_APPEARANCE": "first",
    "PTPH": "plea",  # plea and trial preparation hearing (Crown Court)
    "PLEA": "plea",
    "TRIAL": "trial",
    "SENTENCE": "sentence",
    "APPEAL": "appeal",
    "MENTION": "other",
    "BAIL_APPLICATION": "other",
    "NEWTON": "other",
    "OTHER": "other",
}
AMENDMENTS = {"ADJOURNED": "adjourned", "VACATED": "vacated", "RELISTED": "relisted"}
BAIL_RESULTS = {"GRANTED": "granted", "REMANDED": "refused", "VARIED": "varied"}
WARRANTS = {
    "ARREST": "arrest",
    "BACKED_FOR_BAIL": "arrest_with_bail",
    "NOT_BACKED_FOR_BAIL": "arrest_without_bail",
}
SPECIAL_MEASURES = {
    "SCREEN": "screen",
    "LIVE_LINK": "live_link",
    "EVIDENCE_IN_PRIVATE": "evidence_in_private",
    "WIGS_GOWNS": "removal_of_wigs",
    "VRI": "video_recorded_interview",  # a video-recorded (ABE) interview as evidence in chief
    "S28": "pre_recorded_cross_examination",  # s.28 Youth Justice and Criminal Evidence Act 1999
    "INTERMEDIARY": "intermediary",
    "COMMS_AIDS": "communication_aids",
}
COUNT_RESULTS = {
    "GUILTY": "guilty",
    "GUILTY_PLEA": "guilty",
    "NOT_GUILTY": "not_guilty",
    "DIRECTED_ACQUITTAL": "not_guilty",
    "JURY_DISAGREED": "no_verdict",
}
VERDICTS = {
    "GUILTY": "guilty",
    "NOT_GUILTY": "not_guilty",
    "MIXED": "mixed",
    "NO_VERDICT": "no_verdict",
}
APPELLANTS = {
    "DEFENDANT": "defendant",
    "PROSECUTION": "prosecution",
    "ATTORNEY_GENERAL": "prosecution",
}
APPEAL_AGAINST = {
    "CONVICTION": "conviction",
    "SENTENCE": "sentence",
    "CONVICTION_AND_SENTENCE": "conviction_and_sentence",
}
APPEAL_STAGES = {
    "LODGED": "permission_sought",
    "LEAVE_GRANTED": "permission_granted",
    "LEAVE_REFUSED": "permission_refused",
    "LISTED": "hearing_listed",
    "DETERMINED": "outcome",
}
APPEAL_RESULTS = {
    "DISMISSED": "dismissed",
    "ALLOWED": "allowed",
    "SENTENCE_REDUCED": "sentence_reduced",
    "SENTENCE_INCREASED": "sentence_increased",
    "CONVICTION_QUASHED": "conviction_quashed",
    "RETRIAL_ORDERED": "retrial_ordered",
}
_HEARING_FIELDS = (
    "hearing_type",
    "hearing_date",
    "hearing_start_time",
    "court_centre",
    "courtroom",
)


def _hearing(
    rec: NativeRecord, *, required: bool = False, default_kind: str | None = None
) -> dict[str, Any] | None:
    """The hearing in the ``hearing_*`` fields; a given hearing needs its date, court and type."""
    given = any(rec.has(name) for name in _HEARING_FIELDS)
    if not given and not required:
        return None
    hearing: dict[str, Any] = {}
    kind = rec.code("hearing_type", HEARING_TYPES, required=default_kind is None)
    put(hearing, "kind", kind or default_kind)
    put(hearing, "date", rec.date("hearing_date", required=True))
    put(hearing, "time", rec.clock("hearing_start_time"))
    put(hearing, "court", rec.text("court_centre", required=True, max_len=200))
    put(hearing, "courtroom", rec.text("courtroom", max_len=50))
    return hearing


def _conditions(rec: NativeRecord) -> list[str] | None:
    conditions = rec.texts("bail_conditions")
    if rec.flag("conditions_attached") is False:
        if conditions:
            rec.fail("bail_conditions", "must be empty when conditions_attached is N")
        return []
    return conditions


def _hearing_listed(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    return "court.hearing_scheduled", {"hearing": _hearing(rec, required=True)}


def _hearing_amended(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    change = rec.code("amendment_type", AMENDMENTS, required=True)
    data: dict[str, Any] = {}
    put(data, "change", change)
    put(data, "previous_date", rec.date("original_hearing_date"))
    put(data, "hearing", _hearing(rec, required=change == "relisted"))
    put(data, "reason", rec.text("amendment_reason", max_len=2000))
    return "court.hearing_changed", data


def _bail_decision(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    decision = rec.code("bail_result", BAIL_RESULTS, required=True)
    data: dict[str, Any] = {}
    put(data, "decision", decision)
    conditions = _conditions(rec)
    if decision == "refused" and conditions:
        # Remanded in custody: the victim must never be told that bail conditions apply.
        rec.fail("bail_conditions", "must be empty when the defendant is remanded")
    put(data, "conditions", conditions)
    return "court.bail_decision", data


def _warrant(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "kind", rec.code("warrant_type", WARRANTS))
    return "court.warrant_issued", data


def _witness_warned(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "party_id", rec.text("witness_party_ref", max_len=100))
    put(data, "hearing", _hearing(rec))
    measures: dict[str, Any] = {}
    put(measures, "requested", rec.flag("sm_applied"))
    put(measures, "granted", rec.flag("sm_granted"))
    codes = rec.texts("special_measures", max_items=20, max_len=40)
    if codes is not None:
        mapped = [SPECIAL_MEASURES.get(code_key(code)) for code in codes]
        if None in mapped:
            rec.fail("special_measures", "must list codes from: " + ", ".join(SPECIAL_MEASURES))
        measures["measures"] = list(dict.fromkeys(m for m in mapped if m))
    if measures:
        data["special_measures"] = measures
    return "court.witness_required", data


def _overall(counts: list[dict[str, Any]]) -> str:
    results = {count["verdict"] for count in counts}
    return results.pop() if len(results) == 1 else "mixed"


def _verdict(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    overall = rec.code("overall_verdict", VERDICTS)
    items = rec.items("counts")
    counts: list[dict[str, Any]] = []
    for item in items or []:
        count: dict[str, Any] = {}
        put(count, "offence", item.text("offence_title", required=True, max_len=200))
        put(count, "verdict", item.code("count_result", COUNT_RESULTS, required=True))
        counts.append(count)
    if overall is None and not rec.has("overall_verdict"):
        if not counts:
            rec.fail("overall_verdict", "is required when no counts are given")
        elif all("verdict" in count for count in counts):
            overall = _overall(counts)
    put(data, "verdict", overall)
    if items is not None:
        data["counts"] = counts
    put(data, "reasons", rec.text("verdict_reasons", max_len=2000))
    return "court.verdict", data


def _sentence(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "sentence", rec.text("sentence_description", required=True, max_len=1000))
    put(data, "explanation", rec.text("sentence_explanation", max_len=2000))
    put(data, "custodial", rec.flag("immediate_custody"))
    put(data, "length_months", rec.integer("term_months"))
    put(data, "orders", rec.texts("ancillary_orders"))
    return "court.sentence", data


def _appeal(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    stage = rec.code("appeal_stage", APPEAL_STAGES, required=True)
    data: dict[str, Any] = {}
    put(data, "party", rec.code("appellant", APPELLANTS, required=True))
    put(data, "against", rec.code("appeal_against", APPEAL_AGAINST))
    put(data, "stage", stage)
    put(data, "hearing", _hearing(rec, required=stage == "hearing_listed", default_kind="appeal"))
    put(data, "outcome", rec.code("appeal_result", APPEAL_RESULTS, required=stage == "outcome"))
    put(data, "explanation", rec.text("result_explanation", max_len=2000))
    return "court.appeal", data


FORMAT = FeedFormat(
    feed="court",
    record_type="message_type",
    record_id="message_id",
    system="originating_system",
    unit="originating_system",
    unit_shape=re.compile(r"[A-Za-z0-9][A-Za-z0-9 _\-]{0,39}"),
    unit_hint="must be 1 to 40 letters, digits, spaces, hyphens or underscores",
    urn="prosecution_case_ref",
    occurred="occurred_at",
    received="wcu_received_at",
    mappers={
        "HEARING_LISTED": _hearing_listed,
        "HEARING_AMENDED": _hearing_amended,
        "BAIL_DECISION": _bail_decision,
        "WARRANT_ISSUED": _warrant,
        "WITNESS_WARNED": _witness_warned,
        "VERDICT": _verdict,
        "SENTENCE": _sentence,
        "APPEAL": _appeal,
    },
)
