"""The rules data file: the packaged one loads and covers the Code; a bad one names its line."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from services.core.rendering import catalogue
from services.rules.ruleset import (
    DEFAULT_RULES,
    DOCUMENTED_TYPES,
    SENSITIVITIES,
    EventRule,
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
    assert RULES.version == "vc2021.2"
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
    assert RULES.rule_name("x.y") == "vc2021.2:x.y"


# -- what is distressing, and who is told (vc2021.2) -------------------------------------------

# Every ending other than a charge is distressing (trauma-informed rule 3): police NFA, out-of-court
# disposals, a decision not to investigate, CPS discontinuance, release of the offender...
ALWAYS_DISTRESSING = frozenset(
    {
        "police.decision_not_to_investigate",
        "police.out_of_court_disposal",
        "police.no_further_action",
        "cps.case_discontinued",
        "probation.release_planned",
        "probation.released",
        # Whether an appeal outcome is good news depends on who appealed: always advocate first.
        "court.appeal",
    }
)
# ...and, depending on the data: CPS no charge, not-guilty or mixed verdicts, a review not upheld,
# a sentence reduced (or a conviction quashed) on appeal. Since vc2021.2 the rules data lists the
# values that are NOT distressing (`distressing_unless`): anything else, or a missing field, is
# distressing, so an unexpected ending fails safe.
CONDITIONAL = frozenset(
    {
        "cps.charging_decision",
        "court.verdict",
        "police.vrr_outcome",
        "cps.vrr_outcome",
    }
)
DISTRESSING_DATA = [
    ("cps.charging_decision", {"decision": "no_charge"}),
    ("court.verdict", {"verdict": "not_guilty"}),
    ("court.verdict", {"verdict": "mixed"}),
    ("police.vrr_outcome", {"outcome": "not_upheld"}),
    ("cps.vrr_outcome", {"outcome": "not_upheld"}),
    ("court.appeal", {"outcome": "sentence_reduced"}),
    ("court.appeal", {"outcome": "conviction_quashed"}),
    # Unexpected values fail safe.
    ("court.verdict", {"verdict": "Not Guilty"}),
    ("court.verdict", {"verdict": "hung_jury"}),
    ("cps.charging_decision", {"decision": "nfa"}),
    # So does a missing field, where the outcome is the point of the event.
    ("court.verdict", {}),
    ("cps.charging_decision", {}),
    ("police.vrr_outcome", {}),
    ("cps.vrr_outcome", {}),
]
ROUTINE_DATA = [
    ("cps.charging_decision", {"decision": "charge"}),
    ("cps.charging_decision", {"decision": "further_evidence_requested"}),
    ("court.verdict", {"verdict": "guilty"}),
    ("police.vrr_outcome", {"outcome": "upheld"}),
    ("cps.vrr_outcome", {"outcome": "upheld"}),
]
# What a survivor who chose "key stages only" is not told about.
NOT_KEY_STAGES = frozenset(
    {
        "police.suspect_arrested",
        "police.suspect_interviewed",
        "police.suspect_released_under_investigation",
        "court.warrant_issued",
    }
)


def test_the_distressing_templates_are_named_and_catalogued() -> None:
    known = catalogue()
    chosen = RULES.distressing
    assert (chosen.advocate, chosen.survivor, chosen.supervisor) == (
        "advocate_tell_first",
        "survivor_get_in_touch",
        "supervisor_hold_alert",
    )
    assert known[chosen.advocate].audience == "advocate"
    assert known[chosen.supervisor].audience == "advocate"
    assert known[chosen.survivor].audience == "survivor"
    # The survivor's fallback can go by whichever channel is safe for them, the post included.
    assert set(known[chosen.survivor].channels) == {"sms", "email", "letter"}


@pytest.mark.parametrize("etype", sorted(VICTIMS_CODE_TYPES))
def test_every_event_type_tells_the_advocate_and_the_survivor(etype: str) -> None:
    rule = RULES.events[etype]
    by_recipient = {n.to: n for n in rule.notify}
    assert set(by_recipient) == {"advocate", "survivor"}
    assert len(rule.notify) == 2
    assert by_recipient["advocate"].id == f"{etype}.advocate" or etype == "police.crime_recorded"
    advocate_template = by_recipient["advocate"].template
    survivor_template = by_recipient["survivor"].template
    if etype == "police.crime_recorded":
        assert (advocate_template, survivor_template) == (
            "advocate_new_referral",
            "survivor_welcome",
        )
    else:
        assert (advocate_template, survivor_template) == (
            "advocate_case_update",
            "survivor_case_update",
        )


def test_every_sensitivity_is_known() -> None:
    assert SENSITIVITIES == ("routine", "significant", "distressing")
    for rule in RULES.events.values():
        assert rule.sensitivity in SENSITIVITIES


def test_the_always_distressing_outcomes_are_the_endings_other_than_a_charge() -> None:
    found = {t for t, rule in RULES.events.items() if rule.sensitivity == "distressing"}
    assert found >= ALWAYS_DISTRESSING
    # Outcomes that depend on their data are not marked distressing whatever the data.
    assert not found & CONDITIONAL
    assert "police.suspect_charged" not in found


def test_the_outcomes_that_depend_on_their_data() -> None:
    found = {t for t, rule in RULES.events.items() if rule.distressing_unless}
    assert found == CONDITIONAL


@pytest.mark.parametrize("etype", sorted(ALWAYS_DISTRESSING))
def test_an_always_distressing_outcome_is_distressing_whatever_the_data(etype: str) -> None:
    rule = RULES.events[etype]
    assert rule.is_distressing({})
    assert rule.is_distressing({"outcome": "upheld", "decision": "charge", "verdict": "guilty"})


@pytest.mark.parametrize(
    ("etype", "data"), [pytest.param(t, d, id=f"{t}-{d}") for t, d in DISTRESSING_DATA]
)
def test_a_conditional_outcome_is_distressing_for_these_data(
    etype: str, data: dict[str, object]
) -> None:
    assert RULES.events[etype].is_distressing(data)


@pytest.mark.parametrize(
    ("etype", "data"), [pytest.param(t, d, id=f"{t}-{d}") for t, d in ROUTINE_DATA]
)
def test_a_conditional_outcome_is_not_distressing_for_these_data(
    etype: str, data: dict[str, object]
) -> None:
    assert not RULES.events[etype].is_distressing(data)


@pytest.mark.parametrize(
    "etype", sorted(set(VICTIMS_CODE_TYPES) - ALWAYS_DISTRESSING - CONDITIONAL)
)
def test_the_other_outcomes_are_never_distressing(etype: str) -> None:
    rule = RULES.events[etype]
    assert not rule.is_distressing({})
    assert not rule.is_distressing({"outcome": "not_upheld", "verdict": "not_guilty"})


def test_a_charge_is_never_distressing() -> None:
    charged = RULES.events["police.suspect_charged"]
    assert charged.sensitivity != "distressing"
    assert not charged.distressing_unless
    assert not charged.is_distressing({})


def test_an_arrest_and_a_charge_are_normal_updates_to_the_advocate_and_the_survivor() -> None:
    for etype in ("police.suspect_arrested", "police.suspect_charged"):
        notify = {(n.to, n.template) for n in RULES.events[etype].notify}
        assert notify == {
            ("advocate", "advocate_case_update"),
            ("survivor", "survivor_case_update"),
        }


def test_the_updates_a_key_stages_survivor_does_not_get() -> None:
    found = {t for t, rule in RULES.events.items() if not rule.key_stage}
    assert found == NOT_KEY_STAGES


def test_every_outcome_that_can_be_distressing_is_a_key_stage() -> None:
    for rule in RULES.events.values():
        if rule.sensitivity == "distressing" or rule.distressing_unless:
            assert rule.key_stage, rule.type


def test_is_distressing_on_a_rule_built_directly() -> None:
    rule = EventRule(
        type="court.verdict",
        duty="",
        standard_wd=1,
        enhanced_wd=1,
        clock_from="receipt",
        notify=(),
        sensitivity="routine",
        distressing_unless=(("verdict", ("guilty",)), ("appeal", (None, "dismissed"))),
    )
    assert not rule.is_distressing({"verdict": "guilty"})
    assert not rule.is_distressing({"verdict": "guilty", "appeal": "dismissed"})
    assert rule.is_distressing({"verdict": "not_guilty"})
    assert rule.is_distressing({"verdict": "guilty", "appeal": "allowed"})
    # A field missing from the data is distressing unless null is listed.
    assert rule.is_distressing({})
    assert rule.is_distressing({"appeal": "dismissed"})
    assert replace(rule, sensitivity="distressing").is_distressing({"verdict": "guilty"})
    assert not replace(rule, distressing_unless=()).is_distressing({})


# -- bad files name the file and the line -----------------------------------------------------

DISTRESSING_BLOCK = (
    "distressing:\n"  # line 2
    "  advocate_template: advocate_tell_first\n"  # line 3
    "  survivor_template: survivor_get_in_touch\n"  # line 4
    "  supervisor_template: supervisor_hold_alert\n"  # line 5
)
HEADER = 'version: "test.1"\n' + DISTRESSING_BLOCK + "events:\n"  # events: line 6
ARREST = (
    "  police.suspect_arrested:\n"  # line 7
    '    duty: "R6 police"\n'  # line 8
    "    deadline: {standard: 5, enhanced: 1, from: event}\n"  # line 9
    "    sensitivity: significant\n"  # line 10
)

UNKNOWN_TEMPLATE = (
    HEADER
    + ARREST
    + "    notify:\n"  # line 11
    + "      - {id: a, to: survivor, template: survivor_case_update}\n"  # line 12
    + "      - {id: b, to: survivor, template: no_such_template}\n"  # line 13
)
UNKNOWN_TYPE = (
    HEADER
    + ARREST
    + "  police.made_up_event:\n"  # line 11
    + '    duty: "R6 police"\n'
    + "    deadline: {standard: 5, enhanced: 1, from: event}\n"
    + "    sensitivity: routine\n"
)
UNKNOWN_FIELD = HEADER + ARREST + "    colour: blue\n"  # line 11
BAD_DEADLINE = (
    HEADER
    + "  police.suspect_arrested:\n"  # line 7
    + '    duty: "R6 police"\n'  # line 8
    + "    deadline: {standard: five, enhanced: 1, from: event}\n"  # line 9
    + "    sensitivity: significant\n"  # line 10
)


def line_of(text: str, fragment: str) -> int:
    """The 1-based number of the only line of `text` containing `fragment`."""
    found = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    assert len(found) == 1, (fragment, found)
    return found[0]


def test_the_line_numbers_in_these_tests_are_right() -> None:
    assert line_of(UNKNOWN_TEMPLATE, "no_such_template") == 13
    assert line_of(UNKNOWN_TYPE, "made_up_event") == 11
    assert line_of(UNKNOWN_FIELD, "colour") == 11
    assert line_of(BAD_DEADLINE, "five") == 9


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
        pytest.param(UNKNOWN_TYPE, 11, id="unknown-type"),
        pytest.param(UNKNOWN_TEMPLATE, 13, id="unknown-template"),
        pytest.param(UNKNOWN_FIELD, 11, id="unknown-field"),
        pytest.param(BAD_DEADLINE, 9, id="bad-deadline"),
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
    # At least the error lands inside the offending event's block (lines 7 to 13 here).
    with pytest.raises(RulesError) as info:
        load_rules(write(tmp_path, text))
    found = re.search(r", line (\d+): ", str(info.value))
    assert found is not None
    assert 7 <= int(found.group(1)) <= 13


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
    with pytest.raises(RulesError, match=r"line 12: .*survivor or advocate"):
        load_rules(write(tmp_path, text))


def test_a_bad_clock_start_is_rejected(tmp_path: Path) -> None:
    text = (
        HEADER
        + "  court.verdict:\n"  # line 7
        + "    sensitivity: significant\n"  # line 8
        + "    deadline: {standard: 1, enhanced: 1, from: tomorrow}\n"  # line 9
    )
    with pytest.raises(RulesError, match=r"line 9: .*event or receipt"):
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
    assert rule.sensitivity == "significant"
    # key_stage defaults to true, distressing_unless to nothing.
    assert rule.key_stage is True
    assert rule.distressing_unless == ()
    assert rules.distressing.advocate == "advocate_tell_first"
    assert rules.distressing.survivor == "survivor_get_in_touch"
    assert rules.distressing.supervisor == "supervisor_hold_alert"


def test_key_stage_and_distressing_unless_are_read(tmp_path: Path) -> None:
    text = (
        HEADER
        + "  court.verdict:\n"
        + "    deadline: {standard: 1, enhanced: 1, from: receipt}\n"
        + "    sensitivity: significant\n"
        + "    key_stage: false\n"
        + "    distressing_unless: {verdict: [guilty], appeal: [null, dismissed]}\n"
    )
    rule = load_rules(write(tmp_path, text)).events["court.verdict"]
    assert rule.key_stage is False
    assert dict(rule.distressing_unless) == {"verdict": ("guilty",), "appeal": (None, "dismissed")}
    assert rule.is_distressing({"verdict": "mixed"})
    assert rule.is_distressing({})
    assert not rule.is_distressing({"verdict": "guilty"})


# -- the distressing block and the new per-event fields (vc2021.2) ----------------------------


def error_line(tmp_path: Path, text: str, *, match: str) -> int:
    """Load `text`, expect a RulesError matching `match`, and return the line it names."""
    path = write(tmp_path, text)
    with pytest.raises(RulesError, match=match) as info:
        load_rules(path)
    message = str(info.value)
    assert str(path) in message
    found = re.search(r", line (\d+): ", message)
    assert found is not None, message
    return int(found.group(1))


def test_a_missing_distressing_block_is_rejected_at_the_top(tmp_path: Path) -> None:
    text = 'version: "test.1"\nevents:\n' + ARREST
    assert error_line(tmp_path, text, match="'distressing'.*is required") == 1


def test_a_distressing_block_that_is_not_a_mapping_is_rejected_at_its_line(
    tmp_path: Path,
) -> None:
    text = 'version: "test.1"\ndistressing: advocate_tell_first\nevents:\n' + ARREST
    assert error_line(tmp_path, text, match="distressing: expected a mapping") == 2


def test_an_unknown_field_in_the_distressing_block_names_its_line(tmp_path: Path) -> None:
    text = HEADER.replace(DISTRESSING_BLOCK, DISTRESSING_BLOCK + "  police_template: x\n") + ARREST
    line = error_line(tmp_path, text, match="distressing: unknown field 'police_template'")
    assert line == line_of(text, "police_template") == 6


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("advocate_template", "advocate_tell_first_typo"),
        ("survivor_template", "survivor_get_in_touch_typo"),
        ("supervisor_template", "supervisor_hold_alert_typo"),
    ],
)
def test_an_unknown_distressing_template_is_rejected_inside_the_block(
    tmp_path: Path, field: str, bad: str
) -> None:
    text = HEADER.replace(f"{field}: {bad.removesuffix('_typo')}", f"{field}: {bad}") + ARREST
    line = error_line(tmp_path, text, match=f"distressing: unknown template '{bad}'")
    assert line == line_of(text, bad)


@pytest.mark.parametrize("field", ["advocate_template", "survivor_template", "supervisor_template"])
def test_a_distressing_block_missing_a_template_is_rejected(tmp_path: Path, field: str) -> None:
    text = "".join(line + "\n" for line in HEADER.splitlines() if field not in line) + ARREST
    line = error_line(tmp_path, text, match=f"distressing: '{field}' is required")
    assert 2 <= line <= 4


def test_an_unknown_distressing_template_names_its_own_line(tmp_path: Path) -> None:
    text = (
        HEADER.replace("supervisor_template: supervisor_hold_alert", "supervisor_template: nope")
        + ARREST
    )
    assert error_line(tmp_path, text, match="unknown template 'nope'") == 5


def test_a_missing_sensitivity_is_rejected_inside_its_rule(tmp_path: Path) -> None:
    text = HEADER + ARREST.replace("    sensitivity: significant\n", "")
    line = error_line(
        tmp_path,
        text,
        match="police.suspect_arrested: sensitivity must be one of routine, significant, "
        "distressing",
    )
    assert 7 <= line <= 9


@pytest.mark.parametrize("bad", ["sad", "Distressing", "null", "[distressing]", "1"])
def test_an_unknown_sensitivity_names_its_line(tmp_path: Path, bad: str) -> None:
    text = HEADER + ARREST.replace("sensitivity: significant", f"sensitivity: {bad}")
    line = error_line(tmp_path, text, match="sensitivity must be one of")
    assert line == 10


@pytest.mark.parametrize("bad", ["sometimes", "1", "0", "null", "[true]"])
def test_a_key_stage_that_is_not_true_or_false_names_its_line(tmp_path: Path, bad: str) -> None:
    text = HEADER + ARREST + f"    key_stage: {bad}\n"  # line 11
    line = error_line(tmp_path, text, match="police.suspect_arrested: key_stage must be true")
    assert line == 11


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("[no_charge]", id="a-list"),
        pytest.param("no_charge", id="a-scalar"),
        pytest.param("{decision: no_charge}", id="a-scalar-value"),
        pytest.param("{decision: []}", id="an-empty-list"),
        pytest.param("{decision: {no_charge: true}}", id="a-mapping-value"),
        pytest.param("{}", id="an-empty-mapping-is-allowed"),
    ],
)
def test_a_bad_distressing_unless_names_its_line(tmp_path: Path, bad: str) -> None:
    text = (
        HEADER
        + "  cps.charging_decision:\n"  # line 7
        + "    deadline: {standard: 5, enhanced: 1, from: event}\n"  # line 8
        + "    sensitivity: significant\n"  # line 9
        + f"    distressing_unless: {bad}\n"  # line 10
    )
    if bad == "{}":
        rule = load_rules(write(tmp_path, text)).events["cps.charging_decision"]
        assert rule.distressing_unless == ()
        return
    line = error_line(
        tmp_path,
        text,
        match="cps.charging_decision: distressing_unless maps a data field to a list of values",
    )
    assert line == 10


def test_the_old_distressing_when_field_is_an_unknown_field(tmp_path: Path) -> None:
    text = HEADER + ARREST + "    distressing_when: {outcome: [not_upheld]}\n"  # line 11
    assert error_line(tmp_path, text, match="unknown field 'distressing_when'") == 11


def test_an_unknown_field_next_to_the_new_ones_is_still_rejected(tmp_path: Path) -> None:
    text = HEADER + ARREST + "    key_stages: true\n"  # line 11: a typo for key_stage
    assert error_line(tmp_path, text, match="unknown field 'key_stages'") == 11


@pytest.mark.parametrize(
    ("text", "fragment", "audience"),
    [
        pytest.param(
            HEADER.replace(
                "survivor_template: survivor_get_in_touch", "survivor_template: advocate_tell_first"
            )
            + ARREST,
            "survivor_template: advocate_tell_first",
            "advocates",
            id="distressing-survivor-template",
        ),
        pytest.param(
            HEADER.replace(
                "advocate_template: advocate_tell_first", "advocate_template: survivor_get_in_touch"
            )
            + ARREST,
            "advocate_template: survivor_get_in_touch",
            "survivors",
            id="distressing-advocate-template",
        ),
        pytest.param(
            HEADER.replace(
                "supervisor_template: supervisor_hold_alert",
                "supervisor_template: survivor_welcome",
            )
            + ARREST,
            "supervisor_template: survivor_welcome",
            "survivors",
            id="distressing-supervisor-template",
        ),
        pytest.param(
            HEADER
            + ARREST
            + "    notify:\n      - {id: a, to: survivor, template: advocate_case_update}\n",
            "advocate_case_update",
            "advocates",
            id="notify-survivor-template",
        ),
        pytest.param(
            HEADER
            + ARREST
            + "    notify:\n      - {id: a, to: advocate, template: survivor_case_update}\n",
            "to: advocate, template: survivor_case_update",
            "survivors",
            id="notify-advocate-template",
        ),
    ],
)
def test_a_template_for_the_wrong_audience_is_rejected_at_its_line(
    tmp_path: Path, text: str, fragment: str, audience: str
) -> None:
    # A survivor must never get an advocate's template, which names the outcome.
    line = error_line(tmp_path, text, match=f"is written for {audience}")
    assert line == line_of(text, fragment)


# -- inputs the validator lets through (see the report) ---------------------------------------


def test_a_negative_deadline_is_rejected(tmp_path: Path) -> None:
    text = (
        HEADER
        + "  police.suspect_arrested:\n    sensitivity: routine\n"
        + "    deadline: {standard: -1, enhanced: 1}\n"
    )
    with pytest.raises(RulesError, match="deadline standard must be 0-60 working days"):
        load_rules(write(tmp_path, text))


def test_a_fractional_deadline_is_rejected(tmp_path: Path) -> None:
    text = (
        HEADER
        + "  police.suspect_arrested:\n    sensitivity: routine\n"
        + "    deadline: {standard: 1.5, enhanced: 1}\n"
    )
    with pytest.raises(RulesError, match="deadline standard must be 0-60 working days"):
        load_rules(write(tmp_path, text))


def test_a_non_scalar_clock_start_is_a_rules_error(tmp_path: Path) -> None:
    text = (
        HEADER
        + "  court.verdict:\n    sensitivity: routine\n"
        + "    deadline: {standard: 1, enhanced: 1, from: [a]}\n"
    )
    with pytest.raises(RulesError, match="event or receipt"):
        load_rules(write(tmp_path, text))


def test_a_notify_entry_without_an_id_is_a_rules_error(tmp_path: Path) -> None:
    text = HEADER + ARREST + "    notify:\n      - {to: survivor, template: survivor_welcome}\n"
    with pytest.raises(RulesError, match="needs an 'id'"):
        load_rules(write(tmp_path, text))


def test_duplicate_notify_ids_in_one_event_are_rejected(tmp_path: Path) -> None:
    text = (
        HEADER
        + ARREST
        + "    notify:\n"
        + "      - {id: a, to: survivor, template: survivor_case_update}\n"
        + "      - {id: a, to: survivor, template: survivor_welcome}\n"
    )
    with pytest.raises(RulesError, match="notify id 'a' is used twice"):
        load_rules(write(tmp_path, text))


def test_silence_has_defaults_and_the_packaged_rules_set_them() -> None:
    assert load_rules().silence.after_days == {"all": 28, "key_stages": 56, "none": 91}
    assert load_rules().silence.template == "advocate_check_in"


def test_silence_can_be_set_and_bad_values_name_their_line(tmp_path: Path) -> None:
    good = (
        "silence:\n  template: advocate_check_in\n"
        "  after_days: {all: 7, key_stages: 14, none: 30}\n"
    )
    rules = load_rules(write(tmp_path, good + HEADER + ARREST))
    assert rules.silence.after_days == {"all": 7, "key_stages": 14, "none": 30}
    bad_days = good.replace("none: 30", "none: 0")
    with pytest.raises(RulesError, match=r"line 3: silence: after_days 'none' must be 1-366"):
        load_rules(write(tmp_path, bad_days + HEADER + ARREST))
    survivor_template = good.replace("advocate_check_in", "survivor_get_in_touch")
    with pytest.raises(RulesError, match="written for survivors"):
        load_rules(write(tmp_path, survivor_template + HEADER + ARREST))
