"""Consumer lag arithmetic and which groups a process samples (no broker)."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.structs import TopicPartition

from services.core.consumer_lag import consumed_groups, lag_by_topic

A0, A1, B0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)


def test_lag_is_end_minus_committed_summed_per_topic() -> None:
    lags = lag_by_topic(
        [A0, A1, B0],
        committed={A0: 7, A1: 3, B0: 4},
        beginning={A0: 0, A1: 0, B0: 0},
        end={A0: 10, A1: 3, B0: 9},
    )
    assert lags == {"a": 3, "b": 5}


def test_no_commit_counts_from_the_beginning_and_retention_moves_the_beginning() -> None:
    lags = lag_by_topic(
        [A0, A1, B0],
        committed={A0: -1, B0: 2},  # A1 not even listed: never committed either
        beginning={A0: 4, A1: 0, B0: 5},  # B0's committed records were deleted
        end={A0: 10, A1: 2, B0: 8},
    )
    assert lags == {"a": 6 + 2, "b": 3}


def test_lag_is_never_negative() -> None:
    assert lag_by_topic([A0], {A0: 12}, {A0: 0}, {A0: 10}) == {"a": 0}


def test_groups_come_from_subscribers_with_a_group_and_topics() -> None:
    subscribers = [
        SimpleNamespace(group_id="carehub.ingest", topic_names_for_subscribe=["feeds.cps"]),
        SimpleNamespace(group_id="carehub.ingest", topic_names_for_subscribe=["feeds.court"]),
        SimpleNamespace(group_id="carehub.rules", topic_names_for_subscribe=["case-events"]),
        SimpleNamespace(group_id=None, topic_names_for_subscribe=["x"]),
        SimpleNamespace(group_id="carehub.assigned", topic_names_for_subscribe=[]),
    ]
    assert consumed_groups(subscribers) == {
        "carehub.ingest": ("feeds.court", "feeds.cps"),
        "carehub.rules": ("case-events",),
    }
