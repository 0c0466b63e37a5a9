"""The rules data file: the packaged one loads and covers the Code; a bad one names its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.core.rendering import catalogue
from services.rules.ruleset import (
    DEFAULT_RULES,
    DOCUMENTED_TYPES,
    RulesError,
    load_rules,
)

# The event types of the table in the shared domain notes (domain/victims-code.md), transcribed
# here so the test does not depend on a file outside the repository.
VICTIMS_CODE_TYPES = frozenset(
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
SHARED_DOC = Path("/work/shared/domain/victims-code.md")

RULES = load_rules()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# -- the packaged rules -----------------------------------------------------------------------


def test_the_packaged_rules_load_with_a_version() -> None:
    assert RULES.version == "vc2021.1"
    assert RULES.events


def test_the_default_path_is_the_packaged_file() -> None:
    assert load_rules(DEFAULT_RULES) == RULES


@pytest.mark.parametrize("etype", sorted(VICTIMS_CODE_TYPES))
def test_every_victims_code_event_type_has_a_rule(etype: str) -> None:
    assert etype in RULES.events


def test_the_rules_cover_exactly_the_documented_types() -> None:
    assert set(RULES.events) == VICTIMS_CODE_TYPES == DOCUMENTED_TYPES


@pytest.mark.skipif(not SHARED_DOC.exists(), reason="shared domain notes not present")
def test_the_transcribed_list_matches_the_victims_code_table() -> None:
    rows = [
        line.split("|")[1]
        for line in SHARED_DOC.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
    ]
    found = {t for cell in rows for t in re.findall(r"`([a-z]+\.[a-z_]+)`", cell)}
    assert found == VICTIMS_CODE_TYPES


def test_every_notify_template_is_in_the_catalogue() -> None:
    known = catalogue()
    for rule in RULES.events.values():
        for notify in rule.notify:
            assert notify.template in known
            assert notify.to in {"survivor", "advocate"}


def test_notify_ids_are_unique_and_prefixed_by_their_event_type() -> None:
    ids = [n.id for rule in RULES.events.values() for n in rule.notify]
    assert len(ids) == len(set(ids))
    for rule in RULES.events.values():
        assert all(n.id.startswith(rule.type + ".") for n in rule.notify)


def test_every_deadline_is_positive_and_enhanced_is_never_longer() -> None:
    for rule in RULES.events.values():
        assert rule.standard_wd >= 1
        assert 1 <= rule.enhanced_wd <= rule.standard_wd


@pytest.mark.parametrize(
    "etype",
    [
        "court.hearing_scheduled",
        "court.hearing_changed",
        "court.bail_decision",
        "court.witness_required",
        "court.verdict",
        "court.sentence",
    ],
)
def test_duties_after_receipt_start_the_clock_on_receipt(etype: str) -> None:
    assert RULES.events[etype].clock_from == "receipt"


def test_the_referral_duty_is_two_working_days_for_everyone() -> None:
    rule = RULES.events["police.crime_recorded"]
    assert (rule.standard_wd, rule.enhanced_wd) == (2, 2)


def test_rule_names_carry_the_version() -> None:
    assert RULES.rule_name("x.y") == "vc2021.1:x.y"


# -- bad files name the file and the line -----------------------------------------------------

HEADER = 'version: "test.1"\nevents:\n'
ARREST = (
    "  police.suspect_arrested:\n"  # line 3
    '    duty: "R6 police"\n'  # line 4
    "    deadline: {standard: 5, enhanced: 1, from: event}\n"  # line 5
)

UNKNOWN_TEMPLATE = (
    HEADER
    + ARREST
    + "    notify:\n"  # line 6
    + "      - {id: a, to: survivor, template: survivor_case_update}\n"  # line 7
    + "      - {id: b, to: survivor, template: no_such_template}\n"  # line 8
)
UNKNOWN_TYPE = (
    HEADER
    + ARREST
    + "  police.made_up_event:\n"  # line 6
    + '    duty: "R6 police"\n'
    + "    deadline: {standard: 5, enhanced: 1, from: event}\n"
)
UNKNOWN_FIELD = HEADER + ARREST + "    colour: blue\n"  # line 6
BAD_DEADLINE = (
    HEADER
    + "  police.suspect_arrested:\n"  # line 3
    + '    duty: "R6 police"\n'  # line 4
    + "    deadline: {standard: five, enhanced: 1, from: event}\n"  # line 5
)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(UNKNOWN_TEMPLATE, "no_such_template", id="unknown-template"),
        pytest.param(UNKNOWN_TYPE, "police.made_up_event", id="unknown-type"),
        pytest.param(UNKNOWN_FIELD, "colour", id="unknown-field"),
        pytest.param(BAD_DEADLINE, "deadline", id="bad-deadline"),
    ],
)
def test_a_bad_rules_file_raises_rules_error_naming_the_file_and_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    message = str(info.value)
    assert str(path) in message
    assert problem in message
    assert re.search(r", line \d+: ", message)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(UNKNOWN_TYPE, 6, id="unknown-type"),
        pytest.param(
            UNKNOWN_TEMPLATE,
            8,
            id="unknown-template",
        ),
        pytest.param(
            UNKNOWN_FIELD,
            6,
            id="unknown-field",
        ),
        pytest.param(
            BAD_DEADLINE,
            5,
            id="bad-deadline",
        ),
    ],
)
def test_a_bad_rules_file_names_the_line_of_the_problem(
    tmp_path: Path, text: str, line: int
) -> None:
    with pytest.raises(RulesError, match=rf", line {line}: "):
        load_rules(write(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [UNKNOWN_TEMPLATE, UNKNOWN_FIELD, BAD_DEADLINE],
    ids=["unknown-template", "unknown-field", "bad-deadline"],
)
def test_a_problem_inside_a_rule_points_into_that_rule(tmp_path: Path, text: str) -> None:
    # At least the error lands inside the offending event's block (lines 3 to 8 here).
    with pytest.raises(RulesError) as info:
        load_rules(write(tmp_path, text))
    found = re.search(r", line (\d+): ", str(info.value))
    assert found is not None
    assert 3 <= int(found.group(1)) <= 8


def test_an_unknown_top_level_field_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, 'version: "t"\ncolour: blue\nevents: {}\n')
    with pytest.raises(RulesError, match="unknown field 'colour'"):
        load_rules(path)


def test_a_missing_version_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="'version' is required"):
        load_rules(write(tmp_path, "events: {}\n"))


def test_a_missing_file_is_a_rules_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RulesError, match="nope.yaml"):
        load_rules(missing)


def test_invalid_yaml_is_a_rules_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot be read"):
        load_rules(write(tmp_path, "version: [unclosed\n"))


def test_a_bad_recipient_is_rejected(tmp_path: Path) -> None:
    text = (
        HEADER + ARREST + "    notify:\n      - {id: a, to: police, template: survivor_welcome}\n"
    )
    with pytest.raises(RulesError, match="survivor or advocate"):
        load_rules(write(tmp_path, text))


def test_a_bad_clock_start_is_rejected(tmp_path: Path) -> None:
    text = (
        HEADER + "  court.verdict:\n" + "    deadline: {standard: 1, enhanced: 1, from: tomorrow}\n"
    )
    with pytest.raises(RulesError, match="event or receipt"):
        load_rules(write(tmp_path, text))


def test_a_valid_minimal_file_loads(tmp_path: Path) -> None:
    text = (
        HEADER
        + ARREST
        + "    notify:\n      - {id: a, to: survivor, template: survivor_case_update}\n"
    )
    rules = load_rules(write(tmp_path, text))
    rule = rules.events["police.suspect_arrested"]
    assert rules.version == "test.1"
    assert (rule.standard_wd, rule.enhanced_wd, rule.clock_from) == (5, 1, "event")
    assert [n.id for n in rule.notify] == ["police.suspect_arrested.a"]


# -- inputs the validator lets through (see the report) ---------------------------------------


def test_a_negative_deadline_is_rejected(tmp_path: Path) -> None:
    text = HEADER + "  police.suspect_arrested:\n    deadline: {standard: -1, enhanced: 1}\n"
    with pytest.raises(RulesError):
        load_rules(write(tmp_path, text))


def test_a_fractional_deadline_is_rejected(tmp_path: Path) -> None:
    text = HEADER + "  police.suspect_arrested:\n    deadline: {standard: 1.5, enhanced: 1}\n"
    with pytest.raises(RulesError):
        load_rules(write(tmp_path, text))


def test_a_non_scalar_clock_start_is_a_rules_error(tmp_path: Path) -> None:
    text = HEADER + "  court.verdict:\n    deadline: {standard: 1, enhanced: 1, from: [a]}\n"
    with pytest.raises(RulesError):
        load_rules(write(tmp_path, text))


def test_a_notify_entry_without_an_id_is_a_rules_error(tmp_path: Path) -> None:
    text = HEADER + ARREST + "    notify:\n      - {to: survivor, template: survivor_welcome}\n"
    with pytest.raises(RulesError):
        load_rules(write(tmp_path, text))


def test_duplicate_notify_ids_in_one_event_are_rejected(tmp_path: Path) -> None:
    text = (
        HEADER
        + ARREST
        + "    notify:\n"
        + "      - {id: a, to: survivor, template: survivor_case_update}\n"
        + "      - {id: a, to: survivor, template: survivor_welcome}\n"
    )
    with pytest.raises(RulesError):
        load_rules(write(tmp_path, text))
