"""The notification state machine: which status may follow which.

Every change of `notifications.status` goes through `check_transition`, under a row lock, so a
duplicate or late receipt can never move a notification backwards.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PLANNED = "planned"
    HELD = "held"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    TOLD_IN_PERSON = "told_in_person"


S = Status
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.PLANNED: frozenset({S.HELD, S.SCHEDULED, S.SUPPRESSED, S.CANCELLED}),
    S.HELD: frozenset({S.SCHEDULED, S.CANCELLED, S.EXPIRED, S.TOLD_IN_PERSON, S.SUPPRESSED}),
    S.SCHEDULED: frozenset({S.QUEUED, S.HELD, S.CANCELLED, S.SUPPRESSED, S.EXPIRED}),
    # queued -> queued: the dispatcher re-drives a notification the broker never delivered.
    # queued -> scheduled: the notifier's last look puts off a message a backlog delayed into
    # the survivor's quiet hours.
    # queued -> failed: it cannot even be attempted (no address, no channel, a template error).
    S.QUEUED: frozenset({S.QUEUED, S.SCHEDULED, S.SENDING, S.CANCELLED, S.SUPPRESSED, S.FAILED}),
    # sending -> sending: a notifier that crashed mid-send tries again after asking the channel.
    # sending -> scheduled: a provider that was down or busy is tried again after a back-off.
    S.SENDING: frozenset({S.SENDING, S.SCHEDULED, S.SENT, S.DELIVERED, S.FAILED, S.UNKNOWN}),
    S.SENT: frozenset({S.DELIVERED, S.FAILED}),
    S.UNKNOWN: frozenset({S.SENT, S.DELIVERED, S.FAILED, S.TOLD_IN_PERSON}),
    S.DELIVERED: frozenset(),
    S.FAILED: frozenset(),
    S.SUPPRESSED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
    S.TOLD_IN_PERSON: frozenset(),
}

FINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
# Where a message nobody has been told of yet can be: every status but the final ones (`sent`
# among them: a text sent is not yet delivered). In the order of `Status`.
NOT_TOLD = tuple(s.value for s in Status if s not in FINAL)


class IllegalTransition(ValueError):
    def __init__(self, current: Status, target: Status) -> None:
        super().__init__(f"notification cannot move from {current.value} to {target.value}")
        self.current = current
        self.target = target


def can_transition(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: Status | str, target: Status | str) -> Status:
    """Return `target` as a Status if the move is allowed, else raise IllegalTransition."""
    cur, tgt = Status(current), Status(target)
    if not can_transition(cur, tgt):
        raise IllegalTransition(cur, tgt)
    return tgt
