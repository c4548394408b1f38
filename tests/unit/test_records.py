"""Records in and out of storage: alternates and placeholders, and records
stored before either existed."""

from __future__ import annotations

import json

import pytest

from chalicelib.models import Alternate, ImageRecord, Rendition, Status
from chalicelib.repositories import codec

THUMB = Rendition(
    "thumb", "dst", "resized/thumb/a.jpg", 256, 192, 9000, "image/jpeg",
    (Alternate("resized/thumb.avif/a.jpg.avif", 4000, "image/avif"),
     Alternate("resized/thumb.webp/a.jpg.webp", 7000, "image/webp")),
)  # fmt: skip
PLACEHOLDER = {"blurhash": "LEHV6nWB2yk8pyo0adR*.7kCMdnj", "color": "#8a7f6b"}
RECORD = ImageRecord(
    id="x", bucket="src", key="a.jpg", folder="", status=Status.PROCESSED, etag="e",
    size_bytes=1, uploaded_at="2026-01-01T00:00:00Z", created_at="2026-01-01T00:00:00Z",
    updated_at="2026-01-01T00:00:00Z", renditions={"thumb": THUMB}, placeholder=PLACEHOLDER,
)  # fmt: skip


def test_alternates_and_placeholder_survive_storage() -> None:
    assert codec.loads(codec.dumps(RECORD)) == RECORD


def test_the_api_shape_lists_alternates_in_order() -> None:
    body = RECORD.to_api()
    assert body["placeholder"] == PLACEHOLDER
    assert body["renditions"]["thumb"]["alternates"] == [
        {"key": "resized/thumb.avif/a.jpg.avif", "size_bytes": 4000, "content_type": "image/avif"},
        {"key": "resized/thumb.webp/a.jpg.webp", "size_bytes": 7000, "content_type": "image/webp"},
    ]
    assert THUMB.object_keys == [
        "resized/thumb/a.jpg",
        "resized/thumb.avif/a.jpg.avif",
        "resized/thumb.webp/a.jpg.webp",
    ]


def test_a_record_stored_before_alternates_and_placeholders_reads_as_empty() -> None:
    doc = json.loads(codec.dumps(RECORD))
    del doc["placeholder"]
    del doc["renditions"]["thumb"]["alternates"]
    old = codec.record_from_doc(doc)
    assert old.renditions["thumb"].alternates == ()
    assert old.placeholder is None
    assert old.to_api()["renditions"]["thumb"]["alternates"] == []
    assert old.to_api()["placeholder"] is None


def test_a_failed_record_has_no_placeholder() -> None:
    failed = RECORD.with_(status=Status.FAILED, error="broken", renditions={}, placeholder=None)
    assert "placeholder" not in failed.to_api()


@pytest.mark.parametrize(
    "stored",
    [
        {"blurhash": "x" * 300, "color": "#8a7f6b"},
        {"blurhash": "LEHV6nWB2yk8", "color": "red"},
        {"blurhash": "<script>", "color": "#8a7f6b"},
        {"blurhash": 5, "color": "#8a7f6b"},
        "LEHV6nWB2yk8",
    ],
)
def test_a_malformed_placeholder_is_never_shown(stored: object) -> None:
    record = RECORD.with_(placeholder=stored)
    assert record.to_api()["placeholder"] is None
