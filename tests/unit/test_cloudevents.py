"""Canonical case events: schemas, examples, error pointers, and messages that never echo values.

All personal data here is fake: phones in +447700900000-+447700900999, e-mail at example.org.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from services.core import cloudevents
from services.core.cloudevents import (
    CanonicalEvent,
    FieldError,
    InvalidEvent,
    known_event_types,
    payload_hash,
    schemas_dir,
    validate_event,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
# Event examples are named <type>.json; other examples (a rules context) are not events.
EXAMPLES = sorted((SCHEMAS / "examples").glob("*.*.json"))
SCHEMA_FILES = sorted(SCHEMAS.glob("*.schema.json")) + sorted(
    (SCHEMAS / "data").glob("*.schema.json")
)
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
OUR_TYPES = {
    "police.crime_recorded",
    "police.suspect_arrested",
    "police.suspect_charged",
    "police.no_further_action",
    "police.suspect_bailed",
    "police.decision_not_to_investigate",
}
SECRET_PHONE = "+447700900123"
SECRET_EMAIL = "secret-name@example.org"


def victim(**overrides: Any) -> dict[str, Any]:
    party: dict[str, Any] = {
        "party_id": "P-1",
        "name": {"full": "Alex Example"},
        "contact": {"phone": "+447700900001", "email": "alex@example.org"},
        "consent_to_referral": True,
    }
    party.update(overrides)
    return party


MINIMAL_DATA: dict[str, dict[str, Any]] = {
    "police.crime_recorded": {
        "crime_reference": "CR-1",
        "offence_category": "theft",
        "victims": [{"party_id": "P-1", "consent_to_referral": False}],
    },
    "police.suspect_arrested": {},
    "police.suspect_charged": {"charges": [{"offence": "Theft"}]},
    "police.no_further_action": {"outcome_code": 18, "vrr_eligible": False},
    "police.suspect_bailed": {},
    "police.decision_not_to_investigate": {"reason": "No lines of enquiry."},
}


def event(event_type: str = "police.crime_recorded", **overrides: Any) -> dict[str, Any]:
    """A valid event of ``event_type``; overrides replace (or, with None, remove) attributes."""
    obj: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "police/01",
        "type": event_type,
        "subject": "01AB1234524",
        "time": "2026-11-20T14:05:00Z",
        "datacontenttype": "application/json",
        "data": copy.deepcopy(MINIMAL_DATA.get(event_type, {})),
    }
    if event_type == "police.crime_recorded":
        obj["data"]["victims"] = [victim()]
    for key, value in overrides.items():
        if value is None:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


def errors_of(obj: object, now: datetime = NOW) -> list[FieldError]:
    with pytest.raises(InvalidEvent) as info:
        validate_event(obj, now=now)
    return info.value.errors


def pointers(obj: object) -> list[str]:
    return [e.pointer for e in errors_of(obj)]


# --- schemas and examples ------------------------------------------------------------------------


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_files_are_valid_and_documented(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    relative = path.relative_to(SCHEMAS).as_posix()
    assert schema["$id"] == f"https://carehub.example.org/schemas/{relative}"
    assert schema["title"]
    assert schema["description"]
    if path.parent.name == "data":
        assert schema["additionalProperties"] is False


def test_every_type_we_own_has_a_schema_and_an_example() -> None:
    assert known_event_types() >= OUR_TYPES
    assert {p.stem for p in EXAMPLES} >= OUR_TYPES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_files_are_valid(path: Path) -> None:
    obj = json.loads(path.read_text(encoding="utf-8"))
    assert obj["type"] == path.stem
    result = validate_event(obj, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert result.type == path.stem
    assert result.raw is obj


@pytest.mark.parametrize("event_type", sorted(OUR_TYPES))
def test_minimal_event_of_each_type_is_valid(event_type: str) -> None:
    result = validate_event(event(event_type), now=NOW)
    assert result.type == event_type


def test_canonical_event_fields() -> None:
    obj = event(
        subject="01/ab/12345/24",
        time="2026-11-20T15:05:00+01:00",
        agencyreceivedat="2026-11-20t14:20:00.5z",
    )
    result = validate_event(obj, now=NOW)
    assert isinstance(result, CanonicalEvent)
    assert (result.specversion, result.id, result.source) == ("1.0", "evt-1", "police/01")
    assert result.subject == "01AB1234524"
    assert result.time == datetime(2026, 11, 20, 14, 5, tzinfo=UTC)
    assert result.time.tzinfo is UTC
    assert result.agencyreceivedat == datetime(2026, 11, 20, 14, 20, 0, 500000, UTC)
    assert result.data == obj["data"]
    assert result.raw is obj
    # repr is for logs: it must not carry the personal data in data/raw.
    assert "Alex" not in repr(result)


def test_absent_optional_attributes() -> None:
    obj = event("police.suspect_arrested", data=None, agencyreceivedat=None, datacontenttype=None)
    result = validate_event(obj, now=NOW)
    assert result.agencyreceivedat is None
    assert result.data == {}


def test_extension_attributes_are_allowed() -> None:
    obj = event(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", seq=3)
    validate_event(obj, now=NOW)


def test_known_event_types_is_a_frozenset() -> None:
    assert isinstance(known_event_types(), frozenset)


# --- envelope errors -----------------------------------------------------------------------------


def test_not_an_object() -> None:
    assert errors_of(["not", "an", "event"]) == [FieldError("", "must be an object")]


def test_missing_required_attributes_are_all_reported_sorted() -> None:
    obj = event(id=None, source=None, time=None)
    assert errors_of(obj) == [
        FieldError("/id", "is required"),
        FieldError("/source", "is required"),
        FieldError("/time", "is required"),
    ]


@pytest.mark.parametrize(
    ("override", "pointer", "message"),
    [
        ({"specversion": "0.3"}, "/specversion", 'must be "1.0"'),
        ({"id": ""}, "/id", "must not be empty"),
        ({"id": 7}, "/id", "must be a string"),
        ({"source": "x" * 201}, "/source", "is too long (max 200)"),
        ({"type": "Police.Arrest"}, "/type", "does not match the expected pattern"),
        ({"type": "fire.call_out"}, "/type", "does not match the expected pattern"),
        ({"type": "police.unheard_of"}, "/type", "unknown event type"),
        ({"subject": "01AB123"}, "/subject", None),
        ({"subject": "0" * 41}, "/subject", "is too long (max 40)"),
        ({"datacontenttype": "text/plain"}, "/datacontenttype", 'must be "application/json"'),
        ({"dataschema": "no scheme"}, "/dataschema", "does not match the expected pattern"),
        ({"data": []}, "/data", "must be an object"),
        ({"data": None, "type": "police.crime_recorded"}, "/data", "is required"),
        ({"Data_Base64": "AAAA"}, "/Data_Base64", None),
        ({"x" * 21: "v"}, "/" + "x" * 21, None),
        ({"ext": {"nested": "object"}}, "/ext", None),
    ],
)
def test_envelope_errors_point_at_the_attribute(
    override: dict[str, Any], pointer: str, message: str | None
) -> None:
    errors = errors_of(event(**override))
    assert [e.pointer for e in errors] == [pointer]
    if message is not None:
        assert errors[0].message == message


def test_urn_errors_name_the_problem() -> None:
    (error,) = errors_of(event(subject="01AB123"))
    assert error == FieldError(
        "/subject",
        "case reference must be 2-digit force code, 2-character unit, 5 or 7-digit serial,"
        " 2-digit year",
    )


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-20",
        "2026-11-20T14:05:00",  # no offset
        "2026-11-20 14:05:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-20T24:00:00Z",
        "yesterday",
        "",
    ],
)
@pytest.mark.parametrize("attribute", ["time", "agencyreceivedat"])
def test_date_times_are_checked(attribute: str, value: str) -> None:
    assert errors_of(event(**{attribute: value})) == [
        FieldError(f"/{attribute}", "does not match the expected format (date-time)")
    ]


def test_leap_second_is_accepted() -> None:
    result = validate_event(event(time="2016-12-31T23:59:60Z"), now=NOW)
    assert result.time == datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize("attribute", ["time", "agencyreceivedat"])
def test_future_times_are_rejected_beyond_the_allowed_skew(attribute: str) -> None:
    at_limit = (NOW + timedelta(minutes=5)).isoformat()
    validate_event(event(**{attribute: at_limit}), now=NOW)
    beyond = (NOW + timedelta(minutes=5, seconds=1)).isoformat()
    assert errors_of(event(**{attribute: beyond})) == [
        FieldError(f"/{attribute}", "is in the future")
    ]
    validate_event(event(**{attribute: beyond}), now=NOW, max_skew=timedelta(minutes=10))


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_event(event(), now=datetime(2026, 11, 20, 15, 0))


# --- data errors ---------------------------------------------------------------------------------


def crime(**party_overrides: Any) -> dict[str, Any]:
    obj = event()
    obj["data"]["victims"] = [victim(**party_overrides)]
    return obj


@pytest.mark.parametrize(
    ("obj", "pointer", "message"),
    [
        (
            crime(contact={"phone": "07700900123"}),
            "/data/victims/0/contact/phone",
            "does not match the expected pattern",
        ),
        (
            crime(contact={"email": "alex.example.org"}),
            "/data/victims/0/contact/email",
            "does not match the expected format (email)",
        ),
        (
            crime(contact={"email": "alex@" + "b" * 250 + ".org"}),
            "/data/victims/0/contact/email",
            "is too long (max 254)",
        ),
        (
            crime(contact={"language": "fr"}),
            "/data/victims/0/contact/language",
            "must be one of the allowed values",
        ),
        (
            crime(contact={"safe_to_text": "yes"}),
            "/data/victims/0/contact/safe_to_text",
            "must be a boolean",
        ),
        (crime(consent_to_referral=None), "/data/victims/0/consent_to_referral", "is required"),
        (crime(nmae={"full": "Typo"}), "/data/victims/0/nmae", "unexpected field"),
        (crime(name={}), "/data/victims/0/name/full", "is required"),
        (crime(relationship="friend"), "/data/victims/0/relationship", None),
        (crime(date_of_birth="2001-02-29"), "/data/victims/0/date_of_birth", None),
        (crime(date_of_birth="20010101"), "/data/victims/0/date_of_birth", None),
        (crime(flags=["ok", 3]), "/data/victims/0/flags/1", "must be a string"),
    ],
)
def test_victim_errors_point_at_the_field(
    obj: dict[str, Any], pointer: str, message: str | None
) -> None:
    # victim(consent_to_referral=None) sets None; a missing field is what we mean.
    for party in obj["data"]["victims"]:
        if party.get("consent_to_referral", False) is None:
            del party["consent_to_referral"]
    errors = errors_of(obj)
    assert [e.pointer for e in errors] == [pointer]
    if message is not None:
        assert errors[0].message == message


def test_victims_count_limits() -> None:
    none = event()
    none["data"]["victims"] = []
    assert errors_of(none) == [FieldError("/data/victims", "must have at least 1 item(s)")]
    many = event()
    many["data"]["victims"] = [victim(party_id=f"P-{i}") for i in range(21)]
    assert errors_of(many) == [FieldError("/data/victims", "must have at most 20 items")]


def test_crime_recorded_enums() -> None:
    obj = event()
    obj["data"]["offence_category"] = "shoplifting"
    obj["data"]["enhanced_reasons"] = ["vulnerable", "vulnerable"]
    assert pointers(obj) == ["/data/enhanced_reasons", "/data/offence_category"]


def test_an_unexpected_field_is_named_only_when_it_looks_like_a_field_name() -> None:
    obj = event()
    obj["data"]["a/b~c"] = 1  # not a field name: pointed at through its object, never named
    obj["data"]["+447700900123"] = 1
    obj["data"]["nmae"] = 1  # a typo upstream wants to see
    assert errors_of(obj) == [  # one error per place
        FieldError("/data", "unexpected field"),
        FieldError("/data/nmae", "unexpected field"),
    ]


VALID_OUTCOMES = [*range(2, 19), *range(20, 24)]


@pytest.mark.parametrize("code", range(0, 26))
def test_nfa_outcome_codes(code: int) -> None:
    obj = event("police.no_further_action")
    obj["data"]["outcome_code"] = code
    if code in VALID_OUTCOMES:
        validate_event(obj, now=NOW)
    else:
        assert pointers(obj) == ["/data/outcome_code"]


@pytest.mark.parametrize("code", ["15", 15.5, True])
def test_nfa_outcome_code_must_be_an_integer(code: object) -> None:
    obj = event("police.no_further_action")
    obj["data"]["outcome_code"] = code
    assert "/data/outcome_code" in pointers(obj)


def test_nfa_requires_vrr_eligibility_and_limits_reason() -> None:
    obj = event("police.no_further_action")
    del obj["data"]["vrr_eligible"]
    obj["data"]["reason"] = "x" * 2001
    assert errors_of(obj) == [
        FieldError("/data/reason", "is too long (max 2000)"),
        FieldError("/data/vrr_eligible", "is required"),
    ]


@pytest.mark.parametrize(
    ("hearing", "bad"),
    [
        ({"date": "2026-12-21", "time": "09:30", "court": "Example Court"}, []),
        ({"date": "2026-12-21", "court": "Example Court"}, []),
        ({"date": "2026-12-21", "time": "25:00", "court": "C"}, ["/data/first_hearing/time"]),
        ({"date": "2026-12-21", "time": "9:30", "court": "C"}, ["/data/first_hearing/time"]),
        ({"date": "21/12/2026", "court": "C"}, ["/data/first_hearing/date"]),
        ({"time": "09:30"}, ["/data/first_hearing/court", "/data/first_hearing/date"]),
    ],
)
def test_first_hearing(hearing: dict[str, str], bad: list[str]) -> None:
    obj = event("police.suspect_charged")
    obj["data"]["first_hearing"] = hearing
    if bad:
        assert pointers(obj) == bad
    else:
        validate_event(obj, now=NOW)


def test_charges_need_an_offence() -> None:
    obj = event("police.suspect_charged")
    obj["data"]["charges"] = [{"offence": "Theft"}, {"wording": "no offence"}]
    assert errors_of(obj) == [FieldError("/data/charges/1/offence", "is required")]


def test_bail_and_arrest_and_not_investigated() -> None:
    bailed = event("police.suspect_bailed", data={"conditions": [], "return_date": "2026-13-01"})
    assert pointers(bailed) == ["/data/return_date"]
    arrested = event("police.suspect_arrested", data={"arrested_at": "noon", "where": "home"})
    assert pointers(arrested) == ["/data/arrested_at", "/data/where"]
    not_investigated = event("police.decision_not_to_investigate", data={})
    assert errors_of(not_investigated) == [FieldError("/data/reason", "is required")]


def test_all_errors_are_collected_and_sorted() -> None:
    obj = event(subject="nope", time="2030-01-01T00:00:00Z", Bad="x")
    obj["data"]["victims"][0]["contact"]["phone"] = "12345"
    del obj["data"]["crime_reference"]
    found = pointers(obj)
    assert found == sorted(found)
    assert found == [
        "/Bad",
        "/data/crime_reference",
        "/data/victims/0/contact/phone",
        "/subject",
        "/time",
    ]


# --- messages never contain values ---------------------------------------------------------------


def assert_no_values(exc: InvalidEvent, secrets: list[str]) -> None:
    texts = [e.message for e in exc.errors] + [str(exc), repr(exc)]
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_messages_never_echo_bad_values() -> None:
    obj = event(
        subject=SECRET_PHONE,
        time=SECRET_PHONE,
        specversion=SECRET_EMAIL,
        datacontenttype=SECRET_EMAIL,
        dataschema=SECRET_PHONE,
        ext={"x": SECRET_EMAIL},
    )
    obj["data"]["offence_category"] = SECRET_PHONE
    obj["data"]["enhanced_reasons"] = [SECRET_EMAIL, SECRET_EMAIL]
    obj["data"]["victims"] = [
        {
            "party_id": SECRET_PHONE * 10,
            "relationship": SECRET_EMAIL,
            "name": SECRET_EMAIL,
            "date_of_birth": SECRET_PHONE,
            "contact": {
                "phone": SECRET_EMAIL,
                "email": SECRET_PHONE,
                "safe_to_text": SECRET_PHONE,
                "language": SECRET_EMAIL,
                "timezone": SECRET_EMAIL * 10,
            },
            "consent_to_referral": SECRET_EMAIL,
            "flags": SECRET_PHONE,
        }
    ]
    with pytest.raises(InvalidEvent) as info:
        validate_event(obj, now=NOW)
    assert len(info.value.errors) >= 15
    assert_no_values(info.value, [SECRET_PHONE, SECRET_EMAIL, "secret-name", "447700900123"])


def test_nfa_and_charge_messages_never_echo_values() -> None:
    nfa = event("police.no_further_action")
    nfa["data"] = {"outcome_code": SECRET_PHONE, "vrr_eligible": SECRET_EMAIL}
    with pytest.raises(InvalidEvent) as info:
        validate_event(nfa, now=NOW)
    assert_no_values(info.value, [SECRET_PHONE, SECRET_EMAIL])
    charged = event("police.suspect_charged")
    charged["data"] = {
        "charges": [{"offence": 1, "wording": SECRET_EMAIL * 100}],
        "first_hearing": {"date": SECRET_PHONE, "time": SECRET_PHONE, "court": ""},
    }
    with pytest.raises(InvalidEvent) as info:
        validate_event(charged, now=NOW)
    assert_no_values(info.value, [SECRET_PHONE, SECRET_EMAIL])


_FIELDS = [
    ("subject",),
    ("time",),
    ("type",),
    ("data", "crime_reference"),
    ("data", "offence_category"),
    ("data", "victims", 0, "contact", "phone"),
    ("data", "victims", 0, "contact", "email"),
    ("data", "victims", 0, "contact", "language"),
    ("data", "victims", 0, "date_of_birth"),
    ("data", "victims", 0, "name"),
    ("data", "victims", 0, "consent_to_referral"),
]


@given(
    field=st.sampled_from(_FIELDS),
    value=st.text(min_size=1, max_size=300).map(lambda s: "QZX" + s),
)
def test_no_message_echoes_an_arbitrary_value(field: tuple[Any, ...], value: str) -> None:
    obj = event()
    target: Any = obj
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    try:
        validate_event(obj, now=NOW)
    except InvalidEvent as exc:
        assert_no_values(exc, ["QZX"])


# --- payload hash and schema location ------------------------------------------------------------


def test_payload_hash_is_canonical() -> None:
    a = {"b": 1, "a": {"y": "é", "x": [1, 2]}}
    b = {"a": {"x": [1, 2], "y": "é"}, "b": 1}
    expected = hashlib.sha256('{"a":{"x":[1,2],"y":"é"},"b":1}'.encode()).hexdigest()
    assert payload_hash(a) == payload_hash(b) == expected
    assert payload_hash({"a": [2, 1]}) != payload_hash({"a": [1, 2]})


def test_schemas_dir_is_the_repository_one() -> None:
    assert schemas_dir() == SCHEMAS


def test_schemas_dir_falls_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Pretend to be installed: no schemas/ next to the code.
    monkeypatch.setattr(cloudevents, "__file__", str(tmp_path / "a" / "b" / "cloudevents.py"))
    monkeypatch.delenv(cloudevents.SCHEMAS_DIR_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=cloudevents.SCHEMAS_DIR_ENV):
        schemas_dir()
    monkeypatch.setenv(cloudevents.SCHEMAS_DIR_ENV, str(SCHEMAS))
    assert schemas_dir() == SCHEMAS
