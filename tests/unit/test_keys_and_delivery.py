from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chalicelib import keys
from chalicelib.delivery import Decision, decide
from chalicelib.models import EventKind, ImageRecord, Status
from chalicelib.repositories.base import StoredImage, Tombstone


@pytest.mark.parametrize(
    ("source", "fmt", "expected"),
    [
        # the extension already names the format: the source key, in NAME/
        ("photos/cat.jpg", "JPEG", "resized/thumb/photos/cat.jpg"),
        ("photos/cat.JPEG", "JPEG", "resized/thumb/photos/cat.JPEG"),
        ("photos/cat.jpeg", "JPEG", "resized/thumb/photos/cat.jpeg"),
        ("logo.PNG", "PNG", "resized/thumb/logo.PNG"),
        ("pic.WebP", "WEBP", "resized/thumb/pic.WebP"),
        ("pic.avif", "AVIF", "resized/thumb/pic.avif"),
        ("a.b.c.jpg", "JPEG", "resized/thumb/a.b.c.jpg"),
        ("coll/a.jpg.png", "PNG", "resized/thumb/coll/a.jpg.png"),
        # otherwise: the extension appended, in NAME.ext/
        ("anim.gif", "PNG", "resized/thumb.png/anim.gif.png"),
        ("IMG_1.HEIC", "JPEG", "resized/thumb.jpg/IMG_1.HEIC.jpg"),
        ("photos/cat.jpg", "AVIF", "resized/thumb.avif/photos/cat.jpg.avif"),
        ("photos/cat.jpg", "WEBP", "resized/thumb.webp/photos/cat.jpg.webp"),
        ("coll/a.jpg", "PNG", "resized/thumb.png/coll/a.jpg.png"),
        ("scan.tiff", "JPEG", "resized/thumb.jpg/scan.tiff.jpg"),
        ("a.jpeg", "PNG", "resized/thumb.png/a.jpeg.png"),
        ("noext", "JPEG", "resized/thumb.jpg/noext.jpg"),
        ("trailing.", "JPEG", "resized/thumb.jpg/trailing..jpg"),
        ("trailing.jpg.", "JPEG", "resized/thumb.jpg/trailing.jpg..jpg"),
        ("dir.jpg/file", "JPEG", "resized/thumb.jpg/dir.jpg/file.jpg"),
        ("a.jpgx", "JPEG", "resized/thumb.jpg/a.jpgx.jpg"),
    ],
)
def test_rendition_keys(source: str, fmt: str, expected: str) -> None:
    assert keys.rendition_key("resized/", "thumb", source, fmt) == expected


def test_the_finding_two_sources_two_rendition_keys() -> None:
    """``coll/a.jpg`` holding PNG bytes and ``coll/a.jpg.png`` once shared one key."""
    first = keys.rendition_key("resized/", "thumb", "coll/a.jpg", "PNG")
    second = keys.rendition_key("resized/", "thumb", "coll/a.jpg.png", "PNG")
    assert first != second


def test_format_named_by_a_key() -> None:
    assert [keys.format_named_by(k) for k in ("a.JPG", "a.jpeg", "b.png", "c.gif", "d", "e.")] == [
        "JPEG", "JPEG", "PNG", None, None, None,
    ]  # fmt: skip
    assert keys.format_named_by("dir.jpg/file") is None


# Keys built from pieces that make collisions likely: dots, extensions of
# every output format in any case, nested folders, trailing dots.
_piece = st.sampled_from(
    ["a", "b", ".", "/", ".jpg", ".JPG", ".jpeg", ".png", ".webp", ".avif", ".gif", ".heic"]
)
_source_keys = st.lists(_piece, min_size=1, max_size=5).map("".join)
_names = st.builds(str.__add__, st.sampled_from("ab0"), st.text("ab0_-", max_size=3))


@settings(max_examples=100, deadline=None)
@example(["coll/a.jpg"], ["thumb"])
@given(st.lists(_source_keys, min_size=1, max_size=8), st.lists(_names, min_size=1, max_size=3))
def test_rendition_keys_are_injective(drawn: list[str], names: list[str]) -> None:
    """Distinct (name, source key, format) never share a rendition key, among
    random keys and their look-alikes (each with every extension appended)."""
    sources = set(drawn) | {k + ext for k in drawn for ext in keys.EXTENSIONS.values()}
    seen: dict[str, tuple[str, str, str]] = {}
    for made_from in {(n, k, f) for n in names for k in sources for f in keys.EXTENSIONS}:
        key = keys.rendition_key("resized/", *made_from)
        assert key not in seen, f"{made_from} and {seen[key]} both write {key}"
        seen[key] = made_from


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
    for text in ("für/東京 1.jpg", "50% off+%2F.jpg", "a%20b.jpg"):
        assert keys.metadata_text(keys.metadata_value(text)) == text


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
