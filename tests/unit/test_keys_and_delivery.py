from __future__ import annotations

import pytest

from chalicelib import keys
from chalicelib.delivery import Decision, decide
from chalicelib.models import EventKind, ImageRecord, Status
from chalicelib.repositories.base import StoredImage, Tombstone


@pytest.mark.parametrize(
    ("source", "fmt", "expected"),
    [
        ("photos/cat.jpg", "JPEG", "resized/thumb/photos/cat.jpg"),
        ("photos/cat.JPEG", "JPEG", "resized/thumb/photos/cat.JPEG"),
        ("anim.gif", "PNG", "resized/thumb/anim.gif.png"),
        ("scan.tiff", "JPEG", "resized/thumb/scan.tiff.jpg"),
        ("logo.PNG", "PNG", "resized/thumb/logo.PNG"),
        ("pic.jpg", "WEBP", "resized/thumb/pic.jpg.webp"),
    ],
)
def test_rendition_keys(source: str, fmt: str, expected: str) -> None:
    assert keys.rendition_key("resized/", "thumb", source, fmt) == expected


def test_folders_and_ids() -> None:
    assert keys.folder_of("a/b/c.jpg") == "a/b/"
    assert keys.folder_of("c.jpg") == ""
    assert keys.ancestors("a/b/c/") == ["a/", "a/b/", "a/b/c/"]
    assert keys.ancestors("") == []
    ident = keys.image_id("bucket", "a/b.jpg")
    assert ident == keys.image_id("bucket", "a/b.jpg") != keys.image_id("bucket2", "a/b.jpg")
    assert len(ident) == 22 and all(c.isalnum() or c in "-_" for c in ident)


def test_metadata_values_are_ascii() -> None:
    assert keys.metadata_value("für/東京 1.jpg") == "f%C3%BCr/%E6%9D%B1%E4%BA%AC%201.jpg"


def test_sequencers_compare_after_right_padding() -> None:
    short, long_ = (
        keys.normalise_sequencer("0055AED6DCD9028"),
        keys.normalise_sequencer("0055AED6DCD90281E5"),
    )
    assert short < long_
    assert keys.normalise_sequencer(None) == ""


def live(seq: str, etag: str = "e1") -> StoredImage:
    record = ImageRecord(
        id="i", bucket="b", key="k.jpg", folder="", status=Status.PROCESSED, etag=etag,
        size_bytes=1, uploaded_at="t", created_at="t", updated_at="t", sequencer=seq,
    )  # fmt: skip
    return StoredImage("i", 1, live=record)


def tomb(seq: str) -> StoredImage:
    return StoredImage("i", 2, tombstone=Tombstone(sequencer=seq, deleted_at="t"))


C, R = EventKind.CREATED, EventKind.REMOVED


@pytest.mark.parametrize(
    ("stored", "kind", "seq", "etag", "decision"),
    [
        (None, C, "B", "e1", Decision.APPLY),
        (live("B"), C, "C", "e2", Decision.APPLY),
        (live("B"), C, "B", "e1", Decision.DUPLICATE),
        (live("B"), C, "A", "e0", Decision.STALE),
        (tomb("B"), C, "A", "e1", Decision.STALE),  # a late create cannot resurrect
        (tomb("B"), C, "C", "e1", Decision.APPLY),
        (tomb("B"), R, "B", None, Decision.DUPLICATE),
        (live("B"), R, "C", None, Decision.APPLY),
        (live("B"), R, "A", None, Decision.STALE),
        # events without a sequencer (emulators, backfill)
        (live(""), C, "", "e2", Decision.APPLY),
        (live(""), C, "A", "e2", Decision.APPLY),
        (live("B"), C, "", "e1", Decision.APPLY),  # same content: re-process
        (live("B"), C, "", "e2", Decision.STALE),  # other content: leave to real events
        (tomb("B"), C, "", "e1", Decision.STALE),
        (live("B"), R, "", None, Decision.APPLY),
        (tomb("B"), R, "", None, Decision.DUPLICATE),
    ],
)
def test_delivery_rules(
    stored: StoredImage | None, kind: EventKind, seq: str, etag: str | None, decision: Decision
) -> None:
    assert decide(stored, kind, seq, etag) is decision
