"""Whatever arrives on a feed, an adapter answers with canonical events or a refusal with a
reason: never another exception, and never an event that fails the canonical schemas."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.cloudevents import InvalidEvent, validate_event
from services.ingest.adapters import (
    FEEDS,
    REASON_CODES,
    AdapterError,
    csv_records,
    from_bytes,
    from_record,
)
from tests.conftest import REPO

# Far enough ahead that no generated time is "in the future", near enough that now + skew fits.
LATE = datetime(9999, 12, 30, tzinfo=UTC)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEED_EXAMPLES = REPO / "schemas" / "examples" / "feeds"
EXAMPLES = {
    feed: [json.loads(line) for line in (FEED_EXAMPLES / f"{feed}.jsonl").read_text().splitlines()]
    for feed in FEEDS
}
CSV_LINES = {
    feed: (FEED_EXAMPLES / f"{feed}.csv").read_text().splitlines(keepends=True) for feed in FEEDS
}
FIELD_NAMES = {
    feed: sorted(
        json.loads((REPO / "schemas" / "feeds" / f"{feed}.schema.json").read_text())["properties"]
    )
    for feed in FEEDS
}

feeds = st.sampled_from(FEEDS)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=15,
)
# Values an upstream system might plausibly send, right or nearly right for some field.
plausible = st.sampled_from(
    [
        "",
        " ",
        "Y",
        "n",
        "maybe",
        "0",
        "1A",
        "19",
        "23",
        "-1",
        "999999999999999999",
        "2026-11-02",
        "2026-02-30",
        "31/12/2026",
        "2026-11-02T09:30:00Z",
        "2026-11-02T09:30:00",
        "31/12/2026 23:59",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "25:00",
        "10:30",
        "07700 900123",
        "+44 (0)7700 900123",
        "alex@example.org",
        "01 ab/12345 24",
        "01AB12345",
        "TRIAL",
        "GUILTY",
        "PCB",
        "RUI",
        "CANCELLED",
        "REMANDED",
        "x" * 3000,
    ]
)


def assert_answered(feed: str, result: Any) -> None:
    """A canonical event (native ones valid outright), or a refusal with a known reason."""
    if isinstance(result, AdapterError):
        assert result.reason_code in REASON_CODES
        assert all(e.pointer == "" or e.pointer.startswith("/") for e in result.errors)
        return
    assert isinstance(result, dict) and "specversion" in result
    assert isinstance(result.get("type"), str) and result["type"].startswith(f"{feed}.")


def map_one(feed: str, record: Any) -> dict[str, Any] | AdapterError:
    try:
        return from_record(feed, record)
    except AdapterError as exc:
        return exc


@FAST
@given(feeds, st.binary(max_size=2000))
def test_arbitrary_bytes_are_mapped_or_refused(feed: str, raw: bytes) -> None:
    try:
        events = from_bytes(feed, raw)
    except AdapterError as exc:
        assert_answered(feed, exc)
    else:
        for event in events:
            assert_answered(feed, event)


@FAST
@given(feeds, json_values)
def test_arbitrary_json_is_mapped_or_refused_as_a_record_and_as_bytes(
    feed: str, value: Any
) -> None:
    assert_answered(feed, map_one(feed, value))
    try:
        events = from_bytes(feed, json.dumps(value).encode())
    except AdapterError as exc:
        assert_answered(feed, exc)
    else:
        for event in events:
            assert_answered(feed, event)


@FAST
@given(
    feeds,
    st.dictionaries(
        st.sampled_from(["specversion", "type", "subject", "id", "source", "time"]),
        json_values | st.sampled_from(["1.0", "police.suspect_arrested", "court.verdict"]),
    ),
)
def test_anything_that_claims_to_be_canonical_is_passed_or_refused(
    feed: str, record: dict[str, Any]
) -> None:
    assert_answered(feed, map_one(feed, {"specversion": "1.0", **record}))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a record where a value could be changed."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(record: dict[str, Any], path: tuple[Any, ...], new: Any, delete: bool) -> None:
    node: Any = record
    for step in path[:-1]:
        node = node[step]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = new


@FAST
@given(st.data())
def test_a_mutated_native_record_is_refused_or_maps_to_a_valid_event(data: st.DataObject) -> None:
    feed = data.draw(feeds)
    record = copy.deepcopy(data.draw(st.sampled_from(EXAMPLES[feed])))
    for _ in range(data.draw(st.integers(1, 3))):
        known = [(name,) for name in FIELD_NAMES[feed]]
        path = data.draw(st.sampled_from(_paths(record) + known))
        parent: Any = record
        for step in path[:-1]:
            parent = parent[step]
        present = path[-1] < len(parent) if isinstance(parent, list) else path[-1] in parent
        delete = present and data.draw(st.booleans())
        _mutate(record, path, data.draw(plausible | json_values), delete)
    result = map_one(feed, record)
    assert_answered(feed, result)
    if isinstance(result, dict):
        assert map_one(feed, copy.deepcopy(record)) == result  # the same record, the same event
        try:
            validate_event(result, now=LATE)
        except InvalidEvent as exc:  # only the clock is validate_event's alone to judge
            assert {e.message for e in exc.errors} == {"is in the future"}, exc.errors


@FAST
@given(st.data())
def test_a_mutated_csv_file_yields_an_answer_for_every_row(data: st.DataObject) -> None:
    feed = data.draw(feeds)
    header, *rows = CSV_LINES[feed]
    cells = st.text(alphabet=st.sampled_from(list(',"\n\r ;aY0/:') + ["é", "\x00"]), max_size=40)
    for _ in range(data.draw(st.integers(0, 4))):
        index = data.draw(st.integers(0, len(rows)))
        rows.insert(index, data.draw(cells | plausible.map(lambda text: text + "\n")))
    if data.draw(st.booleans()):
        header = data.draw(cells)
    lines = [header, *rows]
    results = list(csv_records(feed, lines))
    numbers = [line for line, _ in results]
    assert numbers == sorted(set(numbers))
    assert all(1 <= n <= len(lines) for n in numbers)
    for _, result in results:
        assert_answered(feed, result)
        if isinstance(result, dict):
            try:
                validate_event(result, now=LATE)
            except InvalidEvent as exc:
                assert {e.message for e in exc.errors} == {"is in the future"}, exc.errors
