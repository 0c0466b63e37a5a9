"""Every event type in the Victims' Code table has a data schema in the house style, an example
that validates, and errors that point at the field concerned.

The examples carry no personal data: party details only ever come on police.crime_recorded.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.core.cloudevents import FieldError, InvalidEvent, known_event_types, validate_event

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
VICTIMS_CODE = Path("/work/shared/domain/victims-code.md")
NOW = datetime(2026, 11, 23, tzinfo=UTC)
# Examples describe things that have already happened by the demo's "today".
EXAMPLES_BEFORE = datetime(2026, 11, 20, tzinfo=UTC)

# The first column of the table in domain/victims-code.md, transcribed so the suite still runs
# where the shared notes are not available; test_transcription_matches_the_table keeps it honest.
CODE_TYPES = frozenset(
    {
        "police.crime_recorded",
        "police.decision_not_to_investigate",
        "police.suspect_arrested",
        "police.suspect_interviewed",
        "police.suspect_bailed",
        "police.suspect_released_under_investigation",
        "police.bail_conditions_changed",
        "police.suspect_charged",
        "police.out_of_court_disposal",
        "police.no_further_action",
        "cps.charging_decision",
        "cps.case_discontinued",
        "cps.charges_altered",
        "police.vrr_outcome",
        "cps.vrr_outcome",
        "court.hearing_scheduled",
        "court.hearing_changed",
        "court.bail_decision",
        "court.warrant_issued",
        "court.witness_required",
        "court.verdict",
        "court.sentence",
        "court.appeal",
        "probation.victim_contact_scheme_eligible",
        "probation.release_planned",
        "probation.released",
        "probation.recalled",
    }
)
# Types whose schemas are checked here (the first six are covered by test_cloudevents.py).
NEW_TYPES = CODE_TYPES - {
    "police.crime_recorded",
    "police.decision_not_to_investigate",
    "police.suspect_arrested",
    "police.suspect_bailed",
    "police.suspect_charged",
    "police.no_further_action",
}
# Field names that would mean personal data has crept into an event other than crime_recorded.
PERSONAL_FIELDS = {"name", "full", "preferred", "address", "postcode", "phone", "email"}
PERSONAL_FIELDS |= {"date_of_birth", "dob", "contact", "victims"}


def table_types(markdown: str) -> set[str]:
    """The event types named in the first column of the table's rows."""
    found: set[str] = set()
    for line in markdown.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            found.update(re.findall(r"`((?:police|cps|court|probation)\.[a-z_]+)`", first_cell))
    return found


def schema_of(event_type: str) -> dict[str, Any]:
    path = SCHEMAS / "data" / f"{event_type}.schema.json"
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def example(event_type: str) -> dict[str, Any]:
    path = SCHEMAS / "examples" / f"{event_type}.json"
    obj: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return obj


def with_data(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    obj = example(event_type)
    obj["data"] = copy.deepcopy(data)
    return obj


def errors_of(obj: dict[str, Any]) -> list[FieldError]:
    with pytest.raises(InvalidEvent) as info:
        validate_event(obj, now=NOW)
    return info.value.errors


def subschemas(node: object, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object inside ``node`` (including itself), with where it sits."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key in {"properties", "$defs"}:
                for name, sub in value.items():
                    yield from subschemas(sub, f"{path}/{key}/{name}")
            elif key in {"items", "if", "then", "else", "not"}:
                yield from subschemas(value, f"{path}/{key}")
            elif key in {"allOf", "anyOf", "oneOf"}:
                for i, sub in enumerate(value):
                    yield from subschemas(sub, f"{path}/{key}/{i}")


# --- coverage of the Code ------------------------------------------------------------------------


def test_transcription_matches_the_table() -> None:
    if not VICTIMS_CODE.is_file():
        pytest.skip("shared domain notes not available")
    assert table_types(VICTIMS_CODE.read_text(encoding="utf-8")) == CODE_TYPES


def test_table_parser_reads_shared_rows() -> None:
    row = "| `police.vrr_outcome` / `cps.vrr_outcome` | upheld / not upheld, `x.y` | R6 | 5 / 1 |"
    assert table_types(f"| event `type` | data |\n| --- | --- |\n{row}\n") == {
        "police.vrr_outcome",
        "cps.vrr_outcome",
    }


@pytest.mark.parametrize("event_type", sorted(CODE_TYPES))
def test_every_code_event_type_has_a_schema_and_an_example(event_type: str) -> None:
    assert event_type in known_event_types()
    assert (SCHEMAS / "examples" / f"{event_type}.json").is_file()


# --- house style ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(NEW_TYPES))
def test_schema_follows_the_house_style(event_type: str) -> None:
    schema = schema_of(event_type)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://carehub.example.org/schemas/data/{event_type}.schema.json"
    assert schema["title"] == f"{event_type} data"
    assert schema["type"] == "object"
    for where, sub in subschemas(schema):
        for name in sub.get("properties", {}):
            assert name not in PERSONAL_FIELDS, f"{where}: {name}"
        if re.search(r"/(if|then)(/|$)", where):
            continue  # conditions refine properties declared (and documented) elsewhere
        if "properties" in sub:
            assert sub.get("additionalProperties") is False, where
        if sub.get("type") == "string" and not {"format", "pattern", "enum"} & set(sub):
            assert "maxLength" in sub, where
        if sub.get("type") == "array":
            assert "maxItems" in sub, where
        if where.count("/properties/") and not where.endswith("/items"):
            assert sub.get("description"), where


# --- examples ------------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(NEW_TYPES))
def test_example_validates(event_type: str) -> None:
    obj = example(event_type)
    assert obj["type"] == event_type
    result = validate_event(obj, now=NOW)
    assert result.type == event_type
    assert result.time < EXAMPLES_BEFORE
    if "dataschema" in obj:
        assert obj["dataschema"] == schema_of(event_type)["$id"]


# Smallest valid data for each type; None means data may be left out entirely.
MINIMAL_DATA: dict[str, dict[str, Any] | None] = {
    "police.suspect_interviewed": None,
    "police.suspect_released_under_investigation": None,
    "police.bail_conditions_changed": None,
    "police.out_of_court_disposal": {"kind": "caution"},
    "police.vrr_outcome": {"outcome": "upheld"},
    "cps.vrr_outcome": {"outcome": "not_upheld"},
    "cps.charging_decision": {"decision": "further_evidence_requested"},
    "cps.case_discontinued": {"reason": "Not enough evidence.", "vrr_eligible": True},
    "cps.charges_altered": {"charges": [{"offence": "Assault by beating"}]},
    "court.hearing_scheduled": {
        "hearing": {"kind": "first", "date": "2026-12-01", "court": "Example Court"}
    },
    "court.hearing_changed": {"change": "vacated"},
    "court.bail_decision": {"decision": "refused"},
    "court.warrant_issued": None,
    "court.witness_required": None,
    "court.verdict": {"verdict": "not_guilty"},
    "court.sentence": {"sentence": "A community order"},
    "court.appeal": {"party": "prosecution", "stage": "permission_sought"},
    "probation.victim_contact_scheme_eligible": {"sentence_date": "2026-11-18"},
    "probation.release_planned": None,
    "probation.released": {"released_on": "2026-11-19"},
    "probation.recalled": {"recalled_on": "2026-11-19"},
}


def test_minimal_data_covers_every_new_type() -> None:
    assert set(MINIMAL_DATA) == NEW_TYPES


@pytest.mark.parametrize("event_type", sorted(MINIMAL_DATA))
def test_minimal_data_is_valid(event_type: str) -> None:
    data = MINIMAL_DATA[event_type]
    obj = example(event_type)
    if data is None:
        del obj["data"]
        validate_event(obj, now=NOW)
        data = {}
    validate_event(with_data(event_type, data), now=NOW)


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("police.bail_conditions_changed", {"cancelled": True}),
        ("police.bail_conditions_changed", {"cancelled": True, "conditions": []}),
        ("police.bail_conditions_changed", {"cancelled": False, "conditions": ["No contact"]}),
        ("police.out_of_court_disposal", {"kind": "penalty_notice", "outcome_code": 6}),
        ("cps.charging_decision", {"decision": "charge", "charges": [{"offence": "Theft"}]}),
        ("cps.charging_decision", {"decision": "no_charge", "vrr_eligible": False}),
        ("cps.case_discontinued", {"reason": "R", "vrr_eligible": True, "stage": "left_on_file"}),
        ("court.hearing_changed", {"change": "adjourned", "previous_date": "2026-12-01"}),
        (
            "court.hearing_changed",
            {
                "change": "relisted",
                "hearing": {"kind": "trial", "date": "2027-01-11", "court": "C", "time": "23:59"},
            },
        ),
        (
            "court.verdict",
            {"verdict": "no_verdict", "counts": [{"offence": "O", "verdict": "no_verdict"}]},
        ),
        ("court.sentence", {"sentence": "Life imprisonment", "custodial": True}),
        ("court.appeal", {"party": "defendant", "stage": "outcome", "outcome": "dismissed"}),
        ("court.witness_required", {"special_measures": {"requested": True}}),
    ],
)
def test_conditional_shapes_that_are_valid(event_type: str, data: dict[str, Any]) -> None:
    validate_event(with_data(event_type, data), now=NOW)


# --- errors point at the field -------------------------------------------------------------------

HEARING = {"kind": "trial", "date": "2027-03-08", "time": "10:00", "court": "Example Court"}
ENUM = "must be one of the allowed values"
REQUIRED = "is required"

NEGATIVE_CASES: list[tuple[str, dict[str, Any], list[FieldError]]] = [
    (
        "police.suspect_interviewed",
        {"under_caution": "yes"},
        [FieldError("/data/under_caution", "must be a boolean")],
    ),
    (
        "police.suspect_released_under_investigation",
        {"released_at": "2026-11-16T21:10:00Z"},
        [FieldError("/data/released_at", "unexpected field")],
    ),
    (
        "police.bail_conditions_changed",
        {"cancelled": True, "conditions": ["Not to contact the victim"]},
        [FieldError("/data/conditions", "must have at most 0 items")],
    ),
    (
        "police.bail_conditions_changed",
        {"conditions": [""], "return_date": "2026-02-30"},
        [
            FieldError("/data/conditions/0", "must not be empty"),
            FieldError("/data/return_date", "does not match the expected format (date)"),
        ],
    ),
    ("police.out_of_court_disposal", {}, [FieldError("/data/kind", REQUIRED)]),
    (
        "police.out_of_court_disposal",
        {"kind": "warning", "outcome_code": 14},
        [FieldError("/data/kind", ENUM), FieldError("/data/outcome_code", ENUM)],
    ),
    ("police.vrr_outcome", {"outcome": "overturned"}, [FieldError("/data/outcome", ENUM)]),
    ("cps.vrr_outcome", {"explanation": "x"}, [FieldError("/data/outcome", REQUIRED)]),
    ("cps.charging_decision", {"decision": "charged"}, [FieldError("/data/decision", ENUM)]),
    ("cps.charging_decision", {"decision": "charge"}, [FieldError("/data/charges", REQUIRED)]),
    (
        "cps.charging_decision",
        {"decision": "no_charge"},
        [FieldError("/data/vrr_eligible", REQUIRED)],
    ),
    (
        "cps.case_discontinued",
        {"stage": "dropped"},
        [
            FieldError("/data/reason", REQUIRED),
            FieldError("/data/stage", ENUM),
            FieldError("/data/vrr_eligible", REQUIRED),
        ],
    ),
    (
        "cps.charges_altered",
        {"charges": []},
        [FieldError("/data/charges", "must have at least 1 item(s)")],
    ),
    (
        "cps.charges_altered",
        {"charges": [{"wording": "no offence"}]},
        [FieldError("/data/charges/0/offence", REQUIRED)],
    ),
    ("court.hearing_scheduled", {}, [FieldError("/data/hearing", REQUIRED)]),
    (
        "court.hearing_scheduled",
        {"hearing": {"kind": "mention", "time": "9:30", "court": "Example Court"}},
        [
            FieldError("/data/hearing/date", REQUIRED),
            FieldError("/data/hearing/kind", ENUM),
            FieldError("/data/hearing/time", "does not match the expected pattern"),
        ],
    ),
    ("court.hearing_changed", {"change": "postponed"}, [FieldError("/data/change", ENUM)]),
    ("court.hearing_changed", {"change": "relisted"}, [FieldError("/data/hearing", REQUIRED)]),
    ("court.bail_decision", {"conditions": []}, [FieldError("/data/decision", REQUIRED)]),
    ("court.warrant_issued", {"kind": "bench"}, [FieldError("/data/kind", ENUM)]),
    (
        "court.witness_required",
        {"special_measures": {"measures": ["screen", "screen", "wig"]}, "hearing": {}},
        [
            FieldError("/data/hearing/court", REQUIRED),
            FieldError("/data/hearing/date", REQUIRED),
            FieldError("/data/hearing/kind", REQUIRED),
            FieldError("/data/special_measures/measures", "must not contain duplicates"),
            FieldError("/data/special_measures/measures/2", ENUM),
        ],
    ),
    ("court.verdict", {"verdict": "hung"}, [FieldError("/data/verdict", ENUM)]),
    (
        "court.verdict",
        {"verdict": "mixed", "counts": [{"offence": "Theft"}]},
        [FieldError("/data/counts/0/verdict", REQUIRED)],
    ),
    (
        "court.sentence",
        {"length_months": -1},
        [
            FieldError("/data/length_months", "must be at least 0"),
            FieldError("/data/sentence", REQUIRED),
        ],
    ),
    (
        "court.appeal",
        {"party": "victim", "stage": "outcome"},
        [FieldError("/data/outcome", REQUIRED), FieldError("/data/party", ENUM)],
    ),
    (
        "court.appeal",
        {"party": "defendant", "stage": "hearing_listed"},
        [FieldError("/data/hearing", REQUIRED)],
    ),
    (
        "court.appeal",
        {"party": "defendant", "stage": "outcome", "outcome": "quashed", "hearing": HEARING},
        [FieldError("/data/outcome", ENUM)],
    ),
    (
        "probation.victim_contact_scheme_eligible",
        {"sentence_date": "18/11/2026", "sentence_length_months": 12.5},
        [
            FieldError("/data/sentence_date", "does not match the expected format (date)"),
            FieldError("/data/sentence_length_months", "must be an integer"),
        ],
    ),
    (
        "probation.release_planned",
        {"expected_date": "soon", "licence_conditions": "No contact"},
        [
            FieldError("/data/expected_date", "does not match the expected format (date)"),
            FieldError("/data/licence_conditions", "must be an array"),
        ],
    ),
    ("probation.released", {"licence_conditions": []}, [FieldError("/data/released_on", REQUIRED)]),
    ("probation.recalled", {"reason": "A breach"}, [FieldError("/data/recalled_on", REQUIRED)]),
]


def test_every_new_type_has_a_negative_case() -> None:
    assert {event_type for event_type, _, _ in NEGATIVE_CASES} == NEW_TYPES


@pytest.mark.parametrize(
    ("event_type", "data", "expected"),
    NEGATIVE_CASES,
    ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(NEGATIVE_CASES)],
)
def test_errors_point_at_the_field(
    event_type: str, data: dict[str, Any], expected: list[FieldError]
) -> None:
    assert errors_of(with_data(event_type, data)) == expected


SECRET = "Alex Example +447700900123"


@pytest.mark.parametrize("event_type", sorted(NEW_TYPES))
def test_messages_never_echo_values(event_type: str) -> None:
    # Every top-level field gets a value of the wrong shape, so each one fails.
    properties = schema_of(event_type)["properties"]
    data = {name: SECRET * 100 for name in properties} | {"unknown": SECRET}
    with pytest.raises(InvalidEvent) as info:
        validate_event(with_data(event_type, data), now=NOW)
    assert info.value.errors
    for text in [e.message for e in info.value.errors] + [str(info.value)]:
        assert "Alex" not in text
        assert "447700900123" not in text
