"""The per-event log line: readable, and valid CloudWatch EMF."""

from __future__ import annotations

from typing import Any

from chalicelib.models import EventKind, ObjectEvent
from chalicelib.observability import (
    METRICS,
    NAMESPACE,
    measure_source,
    note,
    outcome_line,
    phase,
    request_id,
    watching,
)

EVENT = ObjectEvent("src", "photos/cat.jpg", EventKind.CREATED, "ObjectCreated:Put")


def assert_valid_emf(line: dict[str, Any]) -> None:
    """What CloudWatch requires of an EMF record."""
    meta = line["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    for directive in meta["CloudWatchMetrics"]:
        assert directive["Namespace"] == NAMESPACE
        for dimension_set in directive["Dimensions"]:
            for dimension in dimension_set:
                assert isinstance(line[dimension], str)
        for metric in directive["Metrics"]:
            assert metric["Unit"] == METRICS[metric["Name"]]
            assert isinstance(line[metric["Name"]], int | float)


def test_processed_event_line() -> None:
    token = request_id.set("req-1")
    try:
        with watching() as watch:
            with phase("process"):
                measure_source(4000, 3000, "vips")
            note("fine")
        line = outcome_line(EVENT, "processed", watch)
    finally:
        request_id.reset(token)

    assert_valid_emf(line)
    assert (line["Processed"], line["Failed"], line["Ignored"]) == (1, 0, 0)
    assert line["SourceMegapixels"] == 12.0
    assert line["engine"] == "vips"
    assert line["ProcessingMilliseconds"] == watch.ms["process"]
    assert set(watch.ms) == {"process", "total"}
    assert (line["key"], line["outcome"], line["request_id"], line["detail"]) == (
        "photos/cat.jpg",
        "processed",
        "req-1",
        "fine",
    )


def test_ignored_event_line_has_counts_only() -> None:
    token = request_id.set(None)  # outside any invocation
    try:
        with watching() as watch:
            pass
        line = outcome_line(EVENT, "ignored", watch)
    finally:
        request_id.reset(token)

    assert_valid_emf(line)
    assert line["Ignored"] == 1 and line["Processed"] == 0
    names = [m["Name"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names == ["Processed", "Failed", "Ignored"]
    assert line["request_id"] is None
    assert "engine" not in line
