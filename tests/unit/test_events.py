from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.events import (
    MalformedEvent,
    parse_body,
    parse_notification,
    parse_record,
    sources,
)
from chalicelib.models import EventKind
from chalicelib.settings import Settings


def record(key: str, name: str = "ObjectCreated:Put", **obj: Any) -> dict[str, Any]:
    return {
        "eventSource": "aws:s3",
        "eventName": name,
        "eventTime": "2026-11-21T21:00:00.000Z",
        "s3": {
            "bucket": {"name": "src"},
            "object": {"key": key, "size": 10, "eTag": "abc", "sequencer": "0A"} | obj,
        },
    }


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("my+cat+%281%29.jpg", "my cat (1).jpg"),
        ("a%2Bb.jpg", "a+b.jpg"),
        ("f%C3%BCr/%E6%9D%B1%E4%BA%AC.jpg", "für/東京.jpg"),
        ("50%25.jpg", "50%.jpg"),
        ("x%252B.jpg", "x%2B.jpg"),  # decoded once only
    ],
)
def test_keys_are_url_decoded_exactly_once(raw: str, decoded: str) -> None:
    event = parse_record(record(raw))
    assert event is not None
    assert event.key == decoded


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("ObjectCreated:Put", EventKind.CREATED),
        ("ObjectCreated:Post", EventKind.CREATED),
        ("ObjectCreated:Copy", EventKind.CREATED),
        ("ObjectCreated:CompleteMultipartUpload", EventKind.CREATED),
        ("ObjectRemoved:Delete", EventKind.REMOVED),
        ("ObjectRemoved:DeleteMarkerCreated", EventKind.REMOVED),
        ("LifecycleExpiration:Delete", EventKind.REMOVED),
        ("LifecycleExpiration:DeleteMarkerCreated", EventKind.REMOVED),
        ("s3:ObjectCreated:Put", EventKind.CREATED),
    ],
)
def test_event_names(name: str, kind: EventKind) -> None:
    event = parse_record(record("k.jpg", name))
    assert event is not None and event.kind is kind


@pytest.mark.parametrize("name", ["ObjectRestore:Completed", "ObjectTagging:Put", "Replication:x"])
def test_other_event_types_are_skipped(name: str) -> None:
    assert parse_record(record("k.jpg", name)) is None


def test_fields() -> None:
    event = parse_record(record("a/b/", eTag='"q"', size=0, versionId="v1"))
    assert event is not None
    assert (event.bucket, event.key, event.is_folder) == ("src", "a/b/", True)
    assert (event.etag, event.size, event.sequencer, event.version_id) == ("q", 0, "0A", "v1")
    assert event.event_time == "2026-11-21T21:00:00.000Z"
    removed = parse_record(record("a.jpg", "ObjectRemoved:Delete"))
    assert removed is not None and removed.size is None and not removed.is_folder


def test_sqs_bodies_direct_test_event_and_sns_envelope() -> None:
    notification = {"Records": [record("a.jpg"), record("b.jpg", "ObjectRemoved:Delete")]}
    assert [e.key for e in parse_body(json.dumps(notification))] == ["a.jpg", "b.jpg"]
    assert parse_body(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    envelope = {"Type": "Notification", "Message": json.dumps(notification)}
    assert [e.key for e in parse_body(json.dumps(envelope))] == ["a.jpg", "b.jpg"]


@pytest.mark.parametrize("body", ["not json", "[]", '{"Records": "x"}', '{"hello": 1}'])
def test_malformed_bodies(body: str) -> None:
    with pytest.raises(MalformedEvent):
        parse_body(body)


def test_record_without_s3_part_is_malformed() -> None:
    with pytest.raises(MalformedEvent):
        list(parse_notification({"Records": [{"eventName": "ObjectCreated:Put"}]}))


def test_only_uploads_the_pipeline_decodes_count_as_sources() -> None:
    settings = Settings.from_env({"SOURCE_BUCKET": "src", "DDB_TABLE": "t"})
    found = list(
        parse_notification(
            {
                "Records": [
                    record("a.jpg"),
                    record("b/c.png", "ObjectCreated:CompleteMultipartUpload"),
                    record("gone.jpg", "ObjectRemoved:Delete"),
                    record("resized/thumb/a.jpg"),  # a rendition
                    record("notes.txt"),
                    record("folder/"),
                    record("x.jpg") | {"s3": {"bucket": {"name": "other"}, "object": {"key": "x"}}},
                ]
            }
        )
    )
    assert len(found) == 7
    assert sources(found, settings) == 2
    assert sources([], settings) == 0
