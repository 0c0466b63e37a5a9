"""The notification state machine: final states stay final, nothing moves backwards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.states import (
    FINAL,
    TRANSITIONS,
    IllegalTransition,
    Status,
    can_transition,
    check_transition,
)


def _reachable_from(start: Status) -> set[Status]:
    """Every status reachable from `start` in one or more steps of TRANSITIONS."""
    seen: set[Status] = set()
    frontier = [start]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def test_every_status_has_an_entry_in_the_table() -> None:
    assert set(TRANSITIONS) == set(Status)


def test_every_target_in_the_table_is_a_status() -> None:
    for targets in TRANSITIONS.values():
        assert targets <= set(Status)


def test_final_statuses_are_exactly_those_with_no_exits() -> None:
    assert {s for s, nxt in TRANSITIONS.items() if not nxt} == FINAL
    assert {
        Status.DELIVERED,
        Status.FAILED,
        Status.SUPPRESSED,
        Status.CANCELLED,
        Status.EXPIRED,
        Status.TOLD_IN_PERSON,
    } == FINAL


@pytest.mark.parametrize("final", sorted(FINAL))
@pytest.mark.parametrize("target", list(Status))
def test_a_final_status_never_moves(final: Status, target: Status) -> None:
    assert not can_transition(final, target)
    with pytest.raises(IllegalTransition):
        check_transition(final, target)


@pytest.mark.parametrize("done", [Status.DELIVERED, Status.FAILED])
@pytest.mark.parametrize(
    "earlier",
    [Status.PLANNED, Status.HELD, Status.SCHEDULED, Status.QUEUED, Status.SENDING, Status.SENT],
)
def test_a_late_receipt_never_moves_delivered_or_failed_backwards(
    done: Status, earlier: Status
) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(done, earlier)


def test_delivered_and_failed_do_not_flip_into_each_other() -> None:
    assert not can_transition(Status.DELIVERED, Status.FAILED)
    assert not can_transition(Status.FAILED, Status.DELIVERED)


def test_sent_can_only_go_forward_to_a_receipt() -> None:
    assert TRANSITIONS[Status.SENT] == {Status.DELIVERED, Status.FAILED}


def test_nothing_after_sending_leads_back_to_the_queue() -> None:
    for status in (Status.SENT, Status.DELIVERED, Status.FAILED, Status.UNKNOWN):
        back = {Status.PLANNED, Status.HELD, Status.SCHEDULED, Status.QUEUED, Status.SENDING}
        assert not (_reachable_from(status) & back)


def test_illegal_transition_message_names_both_states() -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(Status.DELIVERED, Status.QUEUED)
    assert "delivered" in str(info.value)
    assert "queued" in str(info.value)
    assert info.value.current is Status.DELIVERED
    assert info.value.target is Status.QUEUED


def test_illegal_transition_is_a_value_error() -> None:
    assert issubclass(IllegalTransition, ValueError)


def test_check_transition_accepts_plain_strings_and_returns_a_status() -> None:
    result = check_transition("queued", "sending")
    assert result is Status.SENDING


def test_check_transition_rejects_an_unknown_status_name() -> None:
    with pytest.raises(ValueError):
        check_transition("queued", "teleported")


@pytest.mark.parametrize(
    ("current", "target"),
    [(s, t) for s, targets in TRANSITIONS.items() for t in sorted(targets)],
)
def test_every_listed_transition_is_allowed(current: Status, target: Status) -> None:
    assert check_transition(current, target) is target


def test_the_happy_path_of_the_design_is_allowed() -> None:
    path = [
        Status.PLANNED,
        Status.HELD,
        Status.SCHEDULED,
        Status.QUEUED,
        Status.SENDING,
        Status.SENT,
        Status.DELIVERED,
    ]
    for current, target in zip(path, path[1:], strict=False):
        check_transition(current, target)


@given(st.lists(st.sampled_from(list(Status)), max_size=40))
def test_a_random_walk_only_reaches_statuses_reachable_from_planned(
    attempts: list[Status],
) -> None:
    allowed = _reachable_from(Status.PLANNED) | {Status.PLANNED}
    current = Status.PLANNED
    for target in attempts:
        try:
            current = check_transition(current, target)
        except IllegalTransition:
            assert target not in TRANSITIONS[current]
            continue
        assert current in allowed
    if current in FINAL:
        assert all(not can_transition(current, s) for s in Status)


@given(st.sampled_from(list(Status)), st.sampled_from(list(Status)))
def test_check_transition_agrees_with_the_table(current: Status, target: Status) -> None:
    if target in TRANSITIONS[current]:
        assert check_transition(current, target) is target
    else:
        with pytest.raises(IllegalTransition):
            check_transition(current, target)
