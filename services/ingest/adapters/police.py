"""The police case-update export: one record per change to a crime, its suspect or its outcome.

Record types and the canonical events they become are listed in ``docs/feeds.md``; the JSON
Schema is ``schemas/feeds/police.schema.json``.
"""

from __future__ import annotations

import re
from typing import Any

from services.ingest.adapters.feedformat import FeedFormat
from services.ingest.adapters.native import NativeRecord, code_key, put

__all__ = ["FORMAT", "HO_OUTCOMES", "NFA_VRR_DEFAULT"]

OFFENCE_GROUPS = {
    "SXO": "sexual_offence",
    "DA": "domestic_abuse",
    "HATE": "hate_crime",
    "TERR": "terrorism",
    "MSHT": "human_trafficking",
    "KIDNAP": "kidnap_false_imprisonment",
    "ARSON_LIFE": "arson_endangering_life",
    "ATT_MURDER": "attempted_murder",
    "GBH_S18": "wounding_gbh_intent",
    "HOMICIDE": "homicide",
    "VAP": "violence",
    "BURGLARY": "burglary",
    "ROBBERY": "robbery",
    "THEFT": "theft",
    "CDA": "criminal_damage",
    "FRAUD": "fraud",
    "OTHER": "other",
}
ENTITLEMENTS = {
    "SERIOUS": "most_serious_crime",
    "PERSIST": "persistently_targeted",
    "VULN": "vulnerable",
    "INTIM": "intimidated",
    "BEREAVED": "bereaved",
}
# Parties of any other role (suspect, witness, reporting person) are left out of the event.
PARTY_ROLES = {
    "VICTIM": "victim",
    "PARENT_GUARDIAN": "parent_guardian",
    "BEREAVED_FAMILY": "bereaved_family",
}
OTHER_ROLES = ("SUSPECT", "WITNESS", "REPORTING_PERSON", "OTHER")
_ANY_ROLE = {**PARTY_ROLES, **dict.fromkeys(OTHER_ROLES, "")}
LANGUAGES = {
    **dict.fromkeys(("EN", "ENG", "ENGLISH"), "en"),
    **dict.fromkeys(("CY", "CYM", "WEL", "WELSH"), "cy"),
}
_LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}")

BAIL_STATES = {
    "PRE_CHARGE_BAIL": "police.suspect_bailed",
    "PCB": "police.suspect_bailed",
    "RUI": "police.suspect_released_under_investigation",
    # Released without bail is in law what "released under investigation" describes: free, with
    # no conditions, while the investigation continues. The victim is told the same thing.
    "RELEASED_NO_BAIL": "police.suspect_released_under_investigation",
}
BAIL_VARIATIONS = {"VARIED": False, "CANCELLED": True}
VRR_RESULTS = {"UPHELD": "upheld", "NOT_UPHELD": "not_upheld"}

# Home Office outcome code -> canonical event. "A" (an alternative offence) maps like its base.
CHARGED = "police.suspect_charged"
DISPOSAL = "police.out_of_court_disposal"
NFA = "police.no_further_action"
HO_OUTCOMES: dict[int, str] = {1: CHARGED}
HO_OUTCOMES.update(dict.fromkeys((2, 3, 6, 7, 8, 22), DISPOSAL))
HO_OUTCOMES.update(dict.fromkeys((4, 5, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 23), NFA))
ALTERNATIVE_OFFENCE_CODES = frozenset({1, 2, 3, 6, 7, 8})
# Whether a police Victims' Right to Review applies, when the force does not say: it applies to a
# police decision not to charge an identified suspect (10, 15, 21); not where no suspect was
# identified (18), the victim withdrew support (14, 16), the law prevents a prosecution (5, 11-13,
# 17), the decision was the CPS's (9: the CPS feed carries the CPS review) or another body's (20),
# or the offence was dealt with otherwise (4 taken into consideration, 23 deferred prosecution).
NFA_VRR_DEFAULT = {code: code in (10, 15, 21) for code, kind in HO_OUTCOMES.items() if kind == NFA}
_DISPOSAL_KINDS = {
    2: ("youth_caution", "youth_conditional_caution"),
    3: ("caution", "conditional_caution"),
    6: ("penalty_notice", "penalty_notice"),
    7: ("cannabis_khat_warning", "cannabis_khat_warning"),
    8: ("community_resolution", "community_resolution"),
    22: ("diversionary_activity", "diversionary_activity"),
}
_OUTCOME_CODE = re.compile(r"([0-9]{1,2})(A?)")
OUTCOME_HINT = "must be a Home Office outcome code (1 to 18 or 20 to 23; 1A, 2A, 3A, 6A, 7A or 8A)"


def _crime_recorded(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "crime_reference", rec.text("occurrence_ref", required=True, max_len=100))
    put(data, "offence_category", rec.code("offence_group", OFFENCE_GROUPS, required=True))
    entitlements = rec.texts("enhanced_entitlement", max_items=10)
    if entitlements is not None:
        reasons = [ENTITLEMENTS.get(code_key(code)) for code in entitlements]
        if None in reasons:
            rec.fail("enhanced_entitlement", "must list codes from: " + ", ".join(ENTITLEMENTS))
        data["enhanced_reasons"] = list(dict.fromkeys(r for r in reasons if r))
    parties = rec.items("parties", required=True, max_items=50)
    if parties is not None:
        victims = [v for v in (_party(p) for p in parties) if v is not None]
        if not victims and parties:
            rec.fail("parties", "must include a victim, parent or guardian, or bereaved relative")
        elif len(victims) > 20:
            rec.fail("parties", "must include at most 20 people to keep informed")
        data["victims"] = victims
    return "police.crime_recorded", data


def _party(rec: NativeRecord) -> dict[str, Any] | None:
    """A person to keep informed, or None for a party of another role (never carried on)."""
    relationship = rec.code("party_role", _ANY_ROLE, required=True)
    if not relationship:  # another role, or a role that is missing or unknown
        return None
    party: dict[str, Any] = {}
    put(party, "party_id", rec.text("party_ref", required=True, max_len=100))
    put(party, "relationship", relationship)
    names = [n for n in (rec.text("forenames", max_len=100), rec.text("surname", max_len=99)) if n]
    if names:
        name: dict[str, Any] = {"full": " ".join(names)}
        put(name, "preferred", rec.text("known_as", max_len=100))
        party["name"] = name
    put(party, "date_of_birth", rec.date("dob"))
    contact: dict[str, Any] = {}
    put(contact, "phone", rec.phone("mobile"))
    put(contact, "email", rec.email("email"))
    put(contact, "safe_to_text", rec.flag("ok_to_text"))
    put(contact, "safe_to_email", rec.flag("ok_to_email"))
    flags = rec.texts("markers", max_items=49, max_len=64) or []
    language = rec.text("preferred_language", max_len=20)
    if language is not None:
        if code_key(language) in LANGUAGES:
            contact["language"] = LANGUAGES[code_key(language)]
        elif _LANGUAGE_CODE.fullmatch(language):
            # Written contact is in English or Welsh; another language is flagged for the
            # advocate to arrange, never dropped.
            flags.append(f"language:{language.lower()}")
        else:
            rec.fail("preferred_language", "must be a two or three-letter language code")
    if contact:
        party["contact"] = contact
    put(party, "consent_to_referral", rec.flag("consent_to_refer", required=True))
    if flags:
        party["flags"] = flags
    return party


def _arrest(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "arrested_at", rec.timestamp("arrest_dt"))
    return "police.suspect_arrested", data


def _interview(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "under_caution", rec.flag("under_caution"))
    return "police.suspect_interviewed", data


def _conditions(rec: NativeRecord) -> list[str] | None:
    """Bail conditions: ``[]`` when the record says none are attached (CSV cannot send [])."""
    conditions = rec.texts("bail_conditions")
    attached = rec.flag("conditions_attached")
    if attached is False:
        if conditions:
            rec.fail("bail_conditions", "must be empty when conditions_attached is N")
        return []
    return conditions


def _bail(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    event_type = rec.code("bail_status", BAIL_STATES, required=True) or "police.suspect_bailed"
    data: dict[str, Any] = {}
    if event_type == "police.suspect_bailed":
        put(data, "conditions", _conditions(rec))
        put(data, "return_date", rec.date("answer_bail_date"))
    elif rec.has("bail_conditions") or rec.has("answer_bail_date"):
        # Released with no bail: the victim must never be told that conditions apply.
        rec.fail("bail_status", "a release without bail cannot carry bail conditions or a date")
    return event_type, data


def _bail_variation(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    cancelled = rec.code("variation_type", BAIL_VARIATIONS, required=True)
    data: dict[str, Any] = {}
    conditions = _conditions(rec)
    if cancelled and conditions:
        rec.fail("bail_conditions", "must be empty when bail is cancelled")
    put(data, "conditions", [] if cancelled else conditions)
    put(data, "cancelled", cancelled)
    put(data, "return_date", rec.date("answer_bail_date"))
    return "police.bail_conditions_changed", data


def _charged(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    charges = rec.items("charges", required=True)
    if charges is not None:
        listed: list[dict[str, Any]] = []
        for item in charges:
            charge: dict[str, Any] = {}
            put(charge, "offence", item.text("offence_desc", required=True, max_len=200))
            put(charge, "wording", item.text("charge_wording", max_len=2000))
            listed.append(charge)
        data["charges"] = listed
    date = rec.date("first_appearance_date")
    court = rec.text("first_appearance_court", max_len=200)
    time = rec.clock("first_appearance_time")
    # A charge is never refused because its listing is not complete yet: a hearing is sent on
    # only when both its date and its court are known.
    if date is not None and court is not None:
        hearing = {"date": date, "court": court}
        put(hearing, "time", time)
        data["first_hearing"] = hearing
    return CHARGED, data


def _outcome_code(rec: NativeRecord) -> int | None:
    """The ``HO_outcome_code`` as its base number (1A -> 1), or None after recording why."""
    text = rec.text("HO_outcome_code", required=True, max_len=10)
    if text is None:
        return None
    m = _OUTCOME_CODE.fullmatch(text.upper())
    code = int(m.group(1)) if m else None
    if (
        m is None
        or code not in HO_OUTCOMES
        or (m.group(2) and code not in ALTERNATIVE_OFFENCE_CODES)
    ):
        rec.fail("HO_outcome_code", OUTCOME_HINT)
        return None
    return code


def _outcome(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    code = _outcome_code(rec)
    screened_out = rec.flag("screened_out")
    if screened_out and code is not None and code != 18:
        rec.fail("screened_out", "applies only with outcome code 18")
    if code is None:
        return NFA, {}
    kind = HO_OUTCOMES[code]
    if kind == CHARGED:
        return _charged(rec)
    reason = rec.text("outcome_rationale", max_len=2000)
    if screened_out and code == 18:
        # Screened out at assessment: finalised as outcome 18, but what the victim must hear is
        # that the crime will not be investigated, with the reasons.
        if reason is None:
            rec.fail("outcome_rationale", "is required when the crime was screened out")
        return "police.decision_not_to_investigate", {"reason": reason}
    if kind == DISPOSAL:
        conditional = rec.flag("conditional") or False
        data: dict[str, Any] = {"kind": _DISPOSAL_KINDS[code][conditional], "outcome_code": code}
        put(data, "conditions", rec.texts("disposal_conditions"))
        return DISPOSAL, data
    vrr = rec.flag("vrr_applicable")
    data = {"outcome_code": code, "vrr_eligible": NFA_VRR_DEFAULT[code] if vrr is None else vrr}
    put(data, "reason", reason)
    return NFA, data


def _vrr_result(rec: NativeRecord) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    put(data, "outcome", rec.code("vrr_decision", VRR_RESULTS, required=True))
    put(data, "explanation", rec.text("vrr_rationale", max_len=2000))
    return "police.vrr_outcome", data


FORMAT = FeedFormat(
    feed="police",
    record_type="record_type",
    record_id="record_id",
    system="source_system",
    unit="force_code",
    unit_shape=re.compile(r"[0-9]{2}"),
    unit_hint="must be the two-digit force code",
    urn="urn",
    occurred="event_dt",
    received="received_dt",
    mappers={
        "CRIME_RECORDED": _crime_recorded,
        "ARREST": _arrest,
        "INTERVIEW": _interview,
        "BAIL": _bail,
        "BAIL_VARIATION": _bail_variation,
        "CHARGED": _charged,
        "OUTCOME": _outcome,
        "VRR_RESULT": _vrr_result,
    },
)
