"""The topic registry: every Kafka topic carehub uses, its partitions and its key.

Topics are created at start-up (`ensure_topics`); consumers with no committed offset start from
the earliest record, so nothing published before a consumer first joined is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    key: str  # what the record key is, for operators and the AsyncAPI document
    description: str


FEEDS_POLICE = Topic("feeds.police", 4, "upstream record id", "Raw police records.")
FEEDS_CPS = Topic("feeds.cps", 4, "upstream record id", "Raw CPS records.")
FEEDS_COURT = Topic("feeds.court", 4, "upstream record id", "Raw court / witness care records.")
FEEDS_PROBATION = Topic("feeds.probation", 4, "upstream record id", "Raw probation records.")
CASE_EVENTS = Topic(
    "case-events", 4, "URN", "References to recorded canonical case events (no personal data)."
)
CASE_EVENTS_DLQ = Topic(
    "case-events.dlq", 4, "source/id", "Rejected records: a reference and the reason."
)
NOTIFICATIONS_DUE = Topic(
    "notifications.due", 4, "recipient", "Notification ids released by the dispatcher."
)
NOTIFICATIONS_STATUS = Topic(
    "notifications.status",
    4,
    "URN",
    "CloudEvents of delivery progress, subject = URN, no personal data.",
)

REGISTRY: tuple[Topic, ...] = (
    FEEDS_POLICE,
    FEEDS_CPS,
    FEEDS_COURT,
    FEEDS_PROBATION,
    CASE_EVENTS,
    CASE_EVENTS_DLQ,
    NOTIFICATIONS_DUE,
    NOTIFICATIONS_STATUS,
)
