"""Feed adapters: every native example maps to a valid canonical event, and every refusal says
where and why without repeating what was sent."""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from services.core.cloudevents import known_event_types, payload_hash, validate_event
from services.ingest.adapters import (
    FEEDS,
    MAX_RECORD_BYTES,
    REASON_CODES,
    AdapterError,
    csv_records,
    decode_body,
    feed_allows,
    from_body,
    from_bytes,
    from_record,
    record_types,
)
from services.ingest.adapters.native import unflatten
from services.ingest.adapters.police import HO_OUTCOMES, NFA_VRR_DEFAULT
from tests.conftest import REPO

NOW = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
FEED_EXAMPLES = REPO / "schemas" / "examples" / "feeds"
CANONICAL_EXAMPLES = sorted(
    p for p in (REPO / "schemas" / "examples").glob("*.json") if p.stem in known_event_types()
)


def jsonl(feed: str) -> list[dict[str, Any]]:
    lines = (FEED_EXAMPLES / f"{feed}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def csv_lines(feed: str) -> list[str]:
    return (FEED_EXAMPLES / f"{feed}.csv").read_text().splitlines(keepends=True)


def native(feed: str, record_type: str, index: int = 0) -> dict[str, Any]:
    """A copy of the index-th JSON lines example of that record type."""
    kind_field = {"police": "record_type", "cps": "msg_type", "court": "message_type"}
    found = [r for r in jsonl(feed) if r[kind_field.get(feed, "record_type")] == record_type]
    return copy.deepcopy(found[index])


def refusal(feed: str, record: Any) -> AdapterError:
    with pytest.raises(AdapterError) as caught:
        from_record(feed, record)
    assert caught.value.reason_code in REASON_CODES
    return caught.value


def pointers(error: AdapterError) -> list[str]:
    return [e.pointer for e in error.errors]


def assert_value_not_leaked(error: AdapterError, *values: str) -> None:
    text = str(error) + repr(error) + json.dumps([[e.pointer, e.message] for e in error.errors])
    for value in values:
        assert value not in text


# --- examples ----------------------------------------------------------------------------------


def mapped_examples(feed: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, record in enumerate(jsonl(feed), start=1):
        yield f"{feed}.jsonl:{number}", from_record(feed, record)
    for line, result in csv_records(feed, csv_lines(feed)):
        assert not isinstance(result, AdapterError), (f"{feed}.csv:{line}", result)
        yield f"{feed}.csv:{line}", result


@pytest.mark.parametrize("feed", FEEDS)
def test_every_native_example_maps_to_a_valid_canonical_event(feed: str) -> None:
    seen = 0
    for where, event in mapped_examples(feed):
        validated = validate_event(event, now=NOW)
        assert validated.type.startswith(f"{feed}."), where
        assert event["source"].startswith(f"{feed}/"), where
        seen += 1
    assert seen >= 8


@pytest.mark.parametrize("feed", FEEDS)
def test_each_example_file_covers_every_event_type_of_its_feed(feed: str) -> None:
    own = {t for t in known_event_types() if t.startswith(f"{feed}.")}
    from_jsonl = {from_record(feed, r)["type"] for r in jsonl(feed)}
    from_csv = {e["type"] for _, e in csv_records(feed, csv_lines(feed)) if isinstance(e, dict)}
    assert from_jsonl == own
    assert from_csv == own


def test_the_four_feeds_cover_all_27_event_types() -> None:
    covered = {event["type"] for feed in FEEDS for _, event in mapped_examples(feed)}
    assert covered == known_event_types()
    assert len(covered) == 27


@pytest.mark.parametrize("feed", FEEDS)
def test_the_feed_schema_describes_every_example_and_every_record_type(feed: str) -> None:
    schema = json.loads((REPO / "schemas" / "feeds" / f"{feed}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    kind_field = schema["required"][0]
    assert schema["properties"][kind_field]["enum"] == list(record_types(feed))
    for record in jsonl(feed):
        assert not list(validator.iter_errors(record))
    for row in csv.DictReader(csv_lines(feed)):
        assert not list(validator.iter_errors(_as_lists(unflatten(row))))


def _as_lists(value: Any) -> Any:
    """A CSV row's digit-keyed objects (parties.0.surname) as the lists the schema describes."""
    if isinstance(value, dict):
        if value and all(k.isdigit() for k in value):
            return [_as_lists(v) for _, v in sorted(value.items(), key=lambda kv: int(kv[0]))]
        return {k: _as_lists(v) for k, v in value.items()}
    return value


def test_a_record_sent_again_gets_the_same_source_id_and_payload() -> None:
    record = native("police", "CRIME_RECORDED")
    reordered = dict(reversed(list(record.items())))
    first, again = from_record("police", record), from_record("police", reordered)
    assert (first["source"], first["id"]) == (again["source"], again["id"])
    assert (first["source"], first["id"]) == ("police/01", "niche:OCC-0001-CR")
    assert payload_hash(first) == payload_hash(again)


def test_only_the_people_to_keep_informed_are_carried_never_the_suspect() -> None:
    event = from_record("police", native("police", "CRIME_RECORDED"))
    victims = event["data"]["victims"]
    assert [v["relationship"] for v in victims] == ["victim", "parent_guardian"]
    assert "Sample" not in json.dumps(event)  # the suspect's surname
    assert victims[0]["contact"]["phone"] == "+447700900123"  # from 07700 900123


def test_a_language_other_than_english_or_welsh_is_flagged_not_dropped() -> None:
    record = native("police", "CRIME_RECORDED")
    record["parties"][0]["preferred_language"] = "pol"
    victim = from_record("police", record)["data"]["victims"][0]
    assert "language" not in victim["contact"]
    assert "language:pol" in victim["flags"]


def test_local_times_are_uk_time_and_become_utc() -> None:
    record = native("police", "ARREST")
    record["event_dt"] = "15/07/2026 14:05"  # British Summer Time
    record["arrest_dt"] = "2026-07-15 13:50:00"
    event = from_record("police", record)
    assert event["time"] == "2026-07-15T13:05:00Z"
    assert event["data"]["arrested_at"] == "2026-07-15T12:50:00Z"


# --- feeds may send only their own types -------------------------------------------------------


@pytest.mark.parametrize(
    ("feed", "event_type", "allowed"),
    [
        ("police", "police.suspect_charged", True),
        ("police", "court.verdict", False),
        ("court", "court.verdict", True),
        ("cps", "police.vrr_outcome", False),
        ("probation", "probation.recalled", True),
        ("probation", "court.sentence", False),
        ("police", "police.", False),
        ("police", "police", False),
        ("nobody", "police.suspect_charged", False),
    ],
)
def test_feed_allows_only_the_feeds_own_types(feed: str, event_type: str, allowed: bool) -> None:
    assert feed_allows(feed, event_type) is allowed


@pytest.mark.parametrize("path", CANONICAL_EXAMPLES, ids=lambda p: p.stem)
def test_a_canonical_event_passes_through_its_own_feed_and_no_other(path: Path) -> None:
    event = json.loads(path.read_text())
    own = event["type"].split(".")[0]
    passed = from_record(own, event)
    expected = {**event, "subject": passed["subject"]}
    assert passed == expected
    validate_event(passed, now=datetime(2027, 1, 1, tzinfo=UTC))
    for other in FEEDS:
        if other != own:
            error = refusal(other, event)
            assert error.reason_code == "type_not_allowed_for_feed"
            assert pointers(error) == ["/type"]


def test_the_police_feed_cannot_send_a_verdict_natively_either() -> None:
    verdict = native("court", "VERDICT")
    verdict["record_type"] = verdict.pop("message_type")
    assert refusal("police", verdict).reason_code == "unknown_record_type"
    with pytest.raises(AdapterError):
        from_record("police", native("court", "VERDICT"))


@pytest.mark.parametrize("feed", FEEDS)
def test_no_feed_maps_another_feeds_native_records(feed: str) -> None:
    for other in FEEDS:
        if other != feed:
            for record in jsonl(other):
                assert refusal(feed, record).reason_code in {"unknown_record_type", "invalid_field"}


def test_a_canonical_event_without_a_string_type_is_refused() -> None:
    assert pointers(refusal("police", {"specversion": "1.0"})) == ["/type"]
    assert refusal("police", {"specversion": "1.0", "type": 5}).reason_code == "invalid_field"


def test_an_unknown_feed_is_refused() -> None:
    assert refusal("fire", native("police", "ARREST")).reason_code == "unknown_feed"


# --- URNs --------------------------------------------------------------------------------------


def test_urns_are_normalised_in_native_and_canonical_records() -> None:
    record = native("police", "ARREST")
    record["urn"] = "01 ab/12345 24"
    assert from_record("police", record)["subject"] == "01AB1234524"
    canonical = json.loads((REPO / "schemas/examples/police.suspect_arrested.json").read_text())
    canonical["subject"] = "01 ab/12345 24"
    assert from_record("police", canonical)["subject"] == "01AB1234524"


def test_a_urn_that_does_not_fit_is_refused_at_its_native_field_without_echoing_it() -> None:
    record = native("court", "VERDICT")
    record["prosecution_case_ref"] = "01 AB 99 SECRET"
    error = refusal("court", record)
    assert error.reason_code == "invalid_field"
    assert pointers(error) == ["/prosecution_case_ref"]
    assert_value_not_leaked(error, "SECRET", "01AB99")


# --- missing and malformed native fields -------------------------------------------------------

MALFORMED: list[tuple[str, str, list[Any], Any, str]] = [
    ("police", "CRIME_RECORDED", ["occurrence_ref"], None, "/occurrence_ref"),
    ("police", "CRIME_RECORDED", ["offence_group"], "ARSON-ISH", "/offence_group"),
    ("police", "CRIME_RECORDED", ["parties", 0, "mobile"], "not a phone 123", "/parties/0/mobile"),
    ("police", "CRIME_RECORDED", ["parties", 0, "dob"], "31/02/1990", "/parties/0/dob"),
    ("police", "CRIME_RECORDED", ["parties", 0, "email"], "alex at example", "/parties/0/email"),
    (
        "police",
        "CRIME_RECORDED",
        ["parties", 1, "consent_to_refer"],
        None,
        "/parties/1/consent_to_refer",
    ),
    ("police", "CRIME_RECORDED", ["parties", 0, "ok_to_text"], "perhaps", "/parties/0/ok_to_text"),
    ("police", "CRIME_RECORDED", ["parties"], [], "/parties"),
    ("police", "ARREST", ["event_dt"], "yesterday teatime", "/event_dt"),
    ("police", "ARREST", ["force_code"], "Met", "/force_code"),
    ("police", "ARREST", ["record_id"], None, "/record_id"),
    ("police", "BAIL", ["bail_status"], "ON_A_PROMISE", "/bail_status"),
    ("police", "BAIL", ["answer_bail_date"], "2026-13-01", "/answer_bail_date"),
    ("police", "CHARGED", ["charges", 1, "offence_desc"], None, "/charges/1/offence_desc"),
    ("police", "CHARGED", ["first_appearance_time"], "25:00", "/first_appearance_time"),
    ("police", "OUTCOME", ["HO_outcome_code"], "19", "/HO_outcome_code"),
    ("police", "OUTCOME", ["HO_outcome_code"], "15A", "/HO_outcome_code"),
    ("police", "VRR_RESULT", ["vrr_decision"], "MAYBE", "/vrr_decision"),
    ("cps", "CHARGING_DECISION", ["charges"], None, "/charges"),
    ("cps", "DISCONTINUANCE", ["discontinuance_reason"], None, "/discontinuance_reason"),
    ("cps", "CHARGES_ALTERED", ["charges", 0], "Assault", "/charges/0"),
    ("cps", "VRR_DECISION", ["case_urn"], None, "/case_urn"),
    ("court", "HEARING_LISTED", ["hearing_date"], None, "/hearing_date"),
    ("court", "HEARING_LISTED", ["hearing_type"], "PICNIC", "/hearing_type"),
    ("court", "HEARING_AMENDED", ["amendment_type"], "POSTPONED", "/amendment_type"),
    ("court", "WITNESS_WARNED", ["special_measures", 1], "SOUNDPROOF", "/special_measures"),
    ("court", "VERDICT", ["counts", 1, "count_result"], "UNSURE", "/counts/1/count_result"),
    ("court", "SENTENCE", ["term_months"], "thirty", "/term_months"),
    ("court", "SENTENCE", ["term_months"], 5000, "/term_months"),
    ("court", "APPEAL", ["appellant"], None, "/appellant"),
    ("probation", "RELEASED", ["release_date"], "31/02/2026", "/release_date"),
    ("probation", "VCS_ELIGIBLE", ["sentence_date"], None, "/sentence_date"),
    ("probation", "RECALLED", ["received_datetime"], "2026-11-06T25:00:00Z", "/received_datetime"),
]


def _set(record: dict[str, Any], path: list[Any], value: Any) -> None:
    node: Any = record
    for step in path[:-1]:
        node = node[step]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value


@pytest.mark.parametrize(("feed", "kind", "path", "value", "pointer"), MALFORMED)
def test_a_missing_or_malformed_field_is_refused_at_its_native_pointer(
    feed: str, kind: str, path: list[Any], value: Any, pointer: str
) -> None:
    record = native(feed, kind)
    _set(record, path, value)
    error = refusal(feed, record)
    assert error.reason_code == "invalid_field"
    assert pointers(error) == [pointer]
    if isinstance(value, str):
        assert_value_not_leaked(error, value)


def test_every_problem_in_a_record_is_reported_at_once() -> None:
    record = native("police", "CRIME_RECORDED")
    record["parties"][0]["dob"] = "soon"
    record["parties"][1]["mobile"] = "call me"
    del record["occurrence_ref"]
    assert pointers(refusal("police", record)) == [
        "/occurrence_ref",
        "/parties/0/dob",
        "/parties/1/mobile",
    ]


def test_an_unknown_record_type_is_named_as_such() -> None:
    record = native("probation", "RECALLED")
    record["record_type"] = "PAROLE_HEARING_SECRET"
    error = refusal("probation", record)
    assert (error.reason_code, pointers(error)) == ("unknown_record_type", ["/record_type"])
    assert_value_not_leaked(error, "SECRET")


@pytest.mark.parametrize(
    ("feed", "kind", "change", "pointer"),
    [
        ("police", "BAIL", {"bail_status": "RUI"}, "/bail_status"),
        ("police", "BAIL_VARIATION", {"variation_type": "CANCELLED"}, "/bail_conditions"),
        ("court", "BAIL_DECISION", {"bail_result": "REMANDED"}, "/bail_conditions"),
        ("police", "OUTCOME", {"HO_outcome_code": "15", "screened_out": "Y"}, "/screened_out"),
        ("court", "BAIL_DECISION", {"conditions_attached": "N"}, "/bail_conditions"),
    ],
)
def test_a_victim_is_never_told_of_conditions_that_do_not_apply(
    feed: str, kind: str, change: dict[str, Any], pointer: str
) -> None:
    record = {**native(feed, kind), **change}
    assert pointers(refusal(feed, record)) == [pointer]


def test_a_charge_is_not_refused_because_its_first_hearing_is_not_fully_known() -> None:
    record = native("police", "CHARGED")
    del record["first_appearance_date"]
    data = from_record("police", record)["data"]
    assert "first_hearing" not in data and len(data["charges"]) == 2


def test_a_verdict_is_worked_out_from_the_counts_when_not_given() -> None:
    record = native("court", "VERDICT")
    for count in record["counts"]:
        count["count_result"] = "GUILTY_PLEA"
    assert from_record("court", record)["data"]["verdict"] == "guilty"
    del record["counts"]
    assert pointers(refusal("court", record)) == ["/overall_verdict"]


# --- Home Office outcome codes -----------------------------------------------------------------


@pytest.mark.parametrize("code", [*range(1, 19), *range(20, 24), "1A", "2A", "3a", "8A"])
def test_every_home_office_outcome_code_maps_to_a_valid_event(code: int | str) -> None:
    record = native("police", "OUTCOME", 0)  # carries charges, needed for outcome 1
    record["HO_outcome_code"] = code
    record["outcome_rationale"] = "The reasons, in plain words."
    event = from_record("police", record)
    validate_event(event, now=NOW)
    base = int(str(code).rstrip("Aa"))
    assert event["type"] == HO_OUTCOMES[base]
    if event["type"] == "police.no_further_action":
        assert event["data"]["outcome_code"] == base
        assert event["data"]["vrr_eligible"] is NFA_VRR_DEFAULT[base]
    if event["type"] == "police.out_of_court_disposal":
        assert event["data"]["outcome_code"] == base


def test_the_outcome_mapping_follows_the_canonical_schemas() -> None:
    disposal = {code for code, kind in HO_OUTCOMES.items() if kind.endswith("disposal")}
    nfa = {code for code, kind in HO_OUTCOMES.items() if kind.endswith("no_further_action")}
    data_schemas = REPO / "schemas" / "data"
    schema = json.loads((data_schemas / "police.out_of_court_disposal.schema.json").read_text())
    assert disposal == set(schema["properties"]["outcome_code"]["enum"])
    schema = json.loads((data_schemas / "police.no_further_action.schema.json").read_text())
    assert nfa < set(schema["properties"]["outcome_code"]["enum"])
    assert {1} | disposal | nfa == set(range(1, 24)) - {19}
    assert {code for code, vrr in NFA_VRR_DEFAULT.items() if vrr} == {10, 15, 21}


def test_the_force_can_say_whether_a_review_applies() -> None:
    record = {**native("police", "OUTCOME", 3), "HO_outcome_code": "18", "vrr_applicable": "Y"}
    assert from_record("police", record)["data"]["vrr_eligible"] is True


def test_a_decision_not_to_charge_with_an_empty_list_of_charges_is_a_valid_event() -> None:
    """Charges are optional on a decision not to charge; given as an empty list they are left
    out, as the canonical schema wants at least one where there are any (found by
    `test_adapters_properties`)."""
    record = {**native("cps", "CHARGING_DECISION", 1), "decision_code": "NFA", "charges": []}
    event = from_record("cps", record)
    assert event["data"]["decision"] == "no_charge" and "charges" not in event["data"]
    validate_event(event, now=datetime(9999, 12, 30, tzinfo=UTC))


def test_a_screened_out_crime_is_a_decision_not_to_investigate_with_reasons() -> None:
    record = native("police", "OUTCOME", 5)
    assert from_record("police", record)["type"] == "police.decision_not_to_investigate"
    del record["outcome_rationale"]
    assert pointers(refusal("police", record)) == ["/outcome_rationale"]


# --- bytes -------------------------------------------------------------------------------------


def test_from_bytes_maps_one_object_or_an_array() -> None:
    records = jsonl("cps")[:2]
    assert len(from_bytes("cps", json.dumps(records[0]).encode())) == 1
    assert [e["id"] for e in from_bytes("cps", json.dumps(records).encode())] == [
        "cms:CMS-0001-CD",
        "cms:CMS-0002-CD",
    ]
    assert from_bytes("cps", b"[]") == []
    assert len(from_bytes("cps", b"\xef\xbb\xbf" + json.dumps(records[0]).encode())) == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "malformed_json"),
        (b'{"msg_type": ', "malformed_json"),
        (b'{"x": NaN}', "malformed_json"),
        (b'{"x": 1e400}', "malformed_json"),
        (b"5", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"[5]", "not_an_object"),
        (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
        (b'{"a":' * 20_000 + b"1" + b"}" * 20_000, "too_deep"),
        (b'{"x": "' + b"a" * MAX_RECORD_BYTES + b'"}', "oversized"),
        (b'[{"x": "' + b"a" * MAX_RECORD_BYTES + b'"}]', "oversized"),
        (b'{"record_type": "ARREST\\u0000"}', "invalid_text"),
        (b'{"record_type": "\\ud800"}', "invalid_text"),
    ],
)
def test_unusable_bytes_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(AdapterError) as caught:
        from_bytes("police", raw)
    assert caught.value.reason_code == reason


def test_a_bad_item_in_an_array_is_pointed_at_by_its_index() -> None:
    records = jsonl("probation")[:2]
    del records[1]["case_urn"]
    with pytest.raises(AdapterError) as caught:
        from_bytes("probation", json.dumps(records).encode())
    assert pointers(caught.value) == ["/1/case_urn"]
    results = from_body("probation", json.dumps([*records, 7]).encode())
    assert isinstance(results[0], dict)
    assert isinstance(results[1], AdapterError) and pointers(results[1]) == ["/case_urn"]
    assert isinstance(results[2], AdapterError) and results[2].reason_code == "not_an_object"
    assert len(decode_body(json.dumps(records).encode())) == 2


def test_absurd_records_passed_directly_are_refused_not_raised() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100_000):
        node["a"] = {}
        node = node["a"]
    assert refusal("police", deep).reason_code == "too_deep"
    assert refusal("police", [1, 2]).reason_code == "not_an_object"
    assert refusal("police", {"x": float("nan")}).reason_code == "malformed_json"
    assert refusal("police", {"x": b"bytes"}).reason_code == "malformed_json"
    big = {**native("police", "ARREST"), "notes": "a" * MAX_RECORD_BYTES}
    assert refusal("police", big).reason_code == "oversized"


# --- CSV ---------------------------------------------------------------------------------------


def _results(feed: str, lines: list[str]) -> dict[int, dict[str, Any] | AdapterError]:
    return dict(csv_records(feed, lines))


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        ("CHARGED,OCC-9,NICHE,01\n", "malformed_csv"),  # too few cells
        ('BAIL,"OCC-9,NICHE\n', "malformed_csv"),  # a quote never closed
        (None, "invalid_field"),  # the right shape, a malformed date
        ("x" * (MAX_RECORD_BYTES + 1) + "\n", "oversized"),
    ],
)
def test_a_bad_csv_row_in_the_middle_is_an_error_for_that_line_only(
    bad_row: str | None, reason: str
) -> None:
    header, *rows = csv_lines("police")
    if bad_row is None:
        bad_row = rows[2].replace("03/11/2026 18:40", "31/11/2026 18:40")
        assert bad_row != rows[2]
    lines = [header, *rows[:5], bad_row, *rows[5:]]
    results = _results("police", lines)
    assert sorted(results) == list(range(2, len(lines) + 1))
    errors = {line: r for line, r in results.items() if isinstance(r, AdapterError)}
    assert list(errors) == [7]
    assert errors[7].reason_code == reason
    if reason != "oversized":
        assert errors[7].original == header + bad_row
    good = [r for r in results.values() if isinstance(r, dict)]
    assert len(good) == len(rows)
    for event in good:
        validate_event(event, now=NOW)


def test_a_quoted_line_break_keeps_later_line_numbers_right() -> None:
    header, *rows = csv_lines("cps")
    cells = next(csv.reader([rows[0]]))
    reason = header.split(",").index("decision_rationale")
    cells[reason] += "\nsplit over two lines"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    spread = buffer.getvalue()
    assert spread.count("\n") == 2
    results = _results("cps", [header, *spread.splitlines(keepends=True), *rows[1:]])
    assert sorted(results) == [2, *range(4, len(rows) + 3)]
    first = results[2]
    assert isinstance(first, dict)
    assert "\nsplit over two lines" in first["data"]["reason"]


def test_a_stray_quote_does_not_swallow_the_rows_after_it() -> None:
    header, *rows = csv_lines("court")
    stray = rows[0].replace("Example Magistrates' Court", 'Example "Magistrates Court')
    results = _results("court", [header, stray, *rows[1:]])
    assert isinstance(results[2], AdapterError)
    assert all(isinstance(results[n], dict) for n in range(3, len(rows) + 2))


@pytest.mark.parametrize(
    "header", ["record_type,,urn\n", "record_type,urn,urn\n", '"record_type\n']
)
def test_an_unusable_header_makes_every_row_an_error(header: str) -> None:
    rows = csv_lines("police")[1:4]
    results = list(csv_records("police", [header, *rows]))
    assert [r.reason_code for _, r in results if isinstance(r, AdapterError)] == [
        "malformed_csv"
    ] * (len(rows) + 1)


def test_blank_lines_and_a_byte_order_mark_are_fine() -> None:
    header, *rows = csv_lines("probation")
    results = _results("probation", ["\ufeff" + header, "\n", rows[0], "   \n", *rows[1:]])
    assert all(isinstance(r, dict) for r in results.values())
    assert sorted(results) == [3, *range(5, len(rows) + 4)]


def test_csv_errors_never_contain_the_row() -> None:
    header, row = csv_lines("police")[:2]
    bad = row.replace("07700 900321", "07700 SECRET")
    [(line, error)] = list(csv_records("police", [header, bad]))
    assert isinstance(error, AdapterError)
    assert pointers(error) == ["/parties/0/mobile"]
    assert_value_not_leaked(error, "SECRET", "Robin", "Sample", "54321")
