"""The injective rendition key layout, and the migration from the earlier one.

The earlier layout appended the output format's extension inside ``NAME/``,
so ``coll/a.jpg`` holding PNG bytes and ``coll/a.jpg.png`` both wrote
``resized/thumb/coll/a.jpg.png``. The current one writes the first to
``resized/thumb.png/coll/a.jpg.png``. Records of the earlier layout are
re-rendered by ``backfill --only-missing`` (the fingerprint names the layout),
which deletes the old renditions they own and nothing else; ``--prune`` then
removes leftovers.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from PIL import Image

from chalicelib import keys
from chalicelib.factory import build_pipeline, build_repository, s3_client
from chalicelib.models import EventKind, ImageRecord, ObjectEvent, Rendition, Status
from chalicelib.pipeline import Pipeline
from chalicelib.repositories.base import Repository
from chalicelib.storage import S3Storage
from devtools import backfill
from devtools.backfill import Options, Summary
from tests.integration.conftest import Stack
from tests.support import encoded, layout_1_fingerprint

NAMES = ("thumb", "medium", "large")
RED, GREEN, BLUE = (220, 30, 30), (30, 200, 30), (30, 30, 220)
MAGENTA, CYAN, YELLOW = (200, 30, 200), (30, 200, 200), (220, 220, 30)
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


def picture(fmt: str, size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    return encoded(Image.new("RGB", size, colour), fmt)


def shown(data: bytes) -> tuple[tuple[int, int], tuple[int, ...]]:
    """The size of the picture in ``data``, and the colour at its centre."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        return rgb.size, rgb.getpixel((rgb.width // 2, rgb.height // 2))  # type: ignore[return-value]


def assert_shows(stack: Stack, key: str, size: tuple[int, int], colour: tuple[int, ...]) -> None:
    """The rendition object at ``key`` shows a picture of that size and colour."""
    try:
        data = stack.s3.get_object(Bucket=stack.settings.dest_bucket, Key=key)["Body"].read()
    except stack.s3.exceptions.NoSuchKey:
        pytest.fail(f"{key} is missing")
    got_size, got_colour = shown(data)
    assert got_size == size, key
    assert all(abs(a - b) <= 8 for a, b in zip(got_colour, colour, strict=True)), (key, got_colour)


@pytest.fixture
def repository(stack: Stack) -> Iterator[Repository]:
    made = build_repository(stack.settings)
    yield made
    made.close()


# -- two look-alike sources ---------------------------------------------------


def test_look_alike_sources_keep_their_own_renditions(stack: Stack) -> None:
    """The finding: ``coll/a.jpg`` holding PNG bytes and ``coll/a.jpg.png``."""
    assert stack.upload("coll/a.jpg", picture("PNG", (400, 300), RED)) == ["processed"]
    assert stack.upload("coll/a.jpg.png", picture("PNG", (300, 400), BLUE)) == ["processed"]

    [first] = stack.images("?key=coll/a.jpg")
    [second] = stack.images("?key=coll/a.jpg.png")
    expected = {"thumb": (256, 192), "medium": (400, 300), "large": (400, 300)}
    for name, (width, height) in expected.items():
        mine, theirs = first["renditions"][name], second["renditions"][name]
        assert_shows(stack, mine["key"], (width, height), RED)
        assert_shows(stack, theirs["key"], (height, width), BLUE)
        assert mine["key"] == f"resized/{name}.png/coll/a.jpg.png"
        assert theirs["key"] == f"resized/{name}/coll/a.jpg.png"

    assert stack.delete("coll/a.jpg.png") == ["deleted"]

    assert [i["key"] for i in stack.images()] == ["coll/a.jpg"]
    assert stack.keys("resized/") == sorted(r["key"] for r in first["renditions"].values())
    for name, size in expected.items():
        assert_shows(stack, first["renditions"][name]["key"], size, RED)


def test_current_layout_keys_are_deleted_without_a_head(stack: Stack) -> None:
    """Re-rendering and deleting records of the current layout cost no HEAD
    of a rendition; a record of the earlier layout costs one per rendition."""
    heads: list[str] = []
    client = s3_client()
    client.meta.events.register(
        "provide-client-params.s3.HeadObject",
        lambda params, **_: heads.append(params["Key"]) if params["Key"].startswith("resized/")
        else None,
    )  # fmt: skip
    repository = build_repository(stack.settings)
    pipeline = Pipeline(stack.settings, S3Storage(client), repository)
    try:

        def upload(key: str, data: bytes) -> str:
            etag = stack.put(key, data)
            created = ObjectEvent(
                "uploads", key, EventKind.CREATED, "ObjectCreated:Put", len(data), etag,
                stack.sequencer(), "2026-11-21T21:00:00Z",
            )  # fmt: skip
            return pipeline.handle(created).value

        def delete(key: str) -> str:
            stack.s3.delete_object(Bucket="uploads", Key=key)
            removed = ObjectEvent("uploads", key, EventKind.REMOVED, "ObjectRemoved:Delete")
            return pipeline.handle(replace(removed, sequencer=stack.sequencer())).value

        assert upload("shape.png", picture("PNG", (60, 40), GREEN)) == "processed"
        assert stack.keys("resized/") == [f"resized/{n}/shape.png" for n in sorted(NAMES)]
        assert upload("shape.png", picture("JPEG", (60, 40), GREEN)) == "processed"
        assert stack.keys("resized/") == [f"resized/{n}.jpg/shape.png.jpg" for n in sorted(NAMES)]
        assert delete("shape.png") == "deleted"
        assert stack.keys("resized/") == [] and heads == []

        write_old_record(stack, repository, "old.gif", picture("GIF", (60, 40), GREEN))
        assert delete("old.gif") == "deleted"
        assert stack.keys("resized/") == []
        assert sorted(heads) == [f"resized/{n}/old.gif.png" for n in sorted(NAMES)]
    finally:
        repository.close()


class WrittenAfterHead(S3Storage):
    """Another source writes its rendition at the old key right after the HEAD
    that found the old one: the race a conditional delete closes."""

    def __init__(self, client: object, stack: Stack, data: bytes) -> None:
        super().__init__(client)  # type: ignore[arg-type]
        self._stack, self._data = stack, data

    def rendition_source(self, bucket: str, key: str) -> tuple[str, str] | None:
        found = super().rendition_source(bucket, key)
        self._stack.s3.put_object(
            Bucket=bucket, Key=key, Body=self._data, Metadata={"source-key": "a.gif.png"}
        )
        return found


def test_a_rendition_written_between_head_and_delete_is_kept(stack: Stack) -> None:
    repository = build_repository(stack.settings)
    try:
        write_old_record(stack, repository, "a.gif", picture("GIF", (60, 40), GREEN))
        theirs = picture("PNG", (40, 60), BLUE)
        pipeline = Pipeline(
            stack.settings, WrittenAfterHead(s3_client(), stack, theirs), repository
        )
        stack.s3.delete_object(Bucket="uploads", Key="a.gif")
        removed = ObjectEvent("uploads", "a.gif", EventKind.REMOVED, "ObjectRemoved:Delete")

        assert pipeline.handle(replace(removed, sequencer=stack.sequencer())).value == "deleted"

        for name in NAMES:
            assert_shows(stack, f"resized/{name}/a.gif.png", (40, 60), BLUE)
    finally:
        repository.close()


# -- migration ------------------------------------------------------------------


def layout_1_key(prefix: str, name: str, source_key: str, output_format: str) -> str:
    """Where the earlier code wrote a rendition: extension appended in ``NAME/``."""
    extension = keys.EXTENSIONS[output_format]
    source_ext = source_key[source_key.rfind(".") :].lower() if "." in source_key else ""
    if {".jpeg": ".jpg"}.get(source_ext, source_ext) == extension:
        extension = ""
    return f"{prefix}{name}/{source_key}{extension}"


def write_old_renditions(
    stack: Stack, key: str, picture_data: bytes, etag: str
) -> dict[str, Rendition]:
    """The renditions the earlier code wrote for ``key``: the picture in its
    output format (GIF and PNG: PNG, others: JPEG), at the earlier keys, with
    the metadata it wrote."""
    s = stack.settings
    with Image.open(io.BytesIO(picture_data)) as image:
        fmt = "PNG" if image.format in ("PNG", "GIF") else "JPEG"
        rgb = image.convert("RGB")
        data = encoded(rgb, fmt)
    renditions = {}
    for name in NAMES:
        old_key = layout_1_key(s.rendition_prefix, name, key, fmt)
        S3Storage(stack.s3).write_rendition(
            s.dest_bucket, old_key, data,
            content_type=CONTENT_TYPES[fmt], source_key=key, source_etag=etag,
        )  # fmt: skip
        renditions[name] = Rendition(
            name, s.dest_bucket, old_key, rgb.width, rgb.height, len(data), CONTENT_TYPES[fmt]
        )
    return renditions


def write_old_record(stack: Stack, repository: Repository, key: str, source: bytes) -> ImageRecord:
    """Upload ``source`` and leave what the earlier code left: its renditions
    at the earlier keys, and a processed record with the earlier fingerprint,
    saved through the repository."""
    s = stack.settings
    etag = stack.put(key, source)
    renditions = write_old_renditions(stack, key, source, etag)
    thumb = renditions["thumb"]
    fmt = "PNG" if thumb.content_type == "image/png" else "JPEG"
    width, height = thumb.width, thumb.height
    now = "2025-01-01T00:00:00Z"
    record = ImageRecord(
        id=keys.image_id(s.source_bucket, key), bucket=s.source_bucket, key=key,
        folder=keys.folder_of(key), status=Status.PROCESSED, etag=etag, size_bytes=len(source),
        uploaded_at=now, created_at=now, updated_at=now, format=fmt,
        content_type=CONTENT_TYPES[fmt], width=width, height=height, renditions=renditions,
        sequencer=keys.normalise_sequencer(stack.sequencer()),
        fingerprint=layout_1_fingerprint(s),
    )  # fmt: skip
    repository.save(record, None)
    repository.touch_folders(keys.ancestors(record.folder), now)
    return record


def run(stack: Stack, options: Options) -> Summary:
    return backfill.run(
        stack.settings, replace(options, progress=False, prune_grace=timedelta(0)),
        lambda: build_pipeline(stack.settings), stack.s3,
    )  # fmt: skip


def objects(stack: Stack) -> dict[str, str]:
    """Every rendition object, with its ETag."""
    listing = stack.s3.list_objects_v2(Bucket=stack.settings.dest_bucket, Prefix="resized/")
    return {o["Key"]: o["ETag"] for o in listing.get("Contents", [])}


# What each source shows: its format, size and colour.
SOURCES: dict[str, tuple[str, tuple[int, int], tuple[int, int, int]]] = {
    "a.gif": ("PNG", (60, 40), GREEN),
    "a.gif.png": ("PNG", (40, 60), BLUE),
    "photos/cat.jpg": ("JPEG", (50, 30), RED),
    "scan.tiff": ("JPEG", (30, 50), YELLOW),
    "coll/b.jpg": ("PNG", (70, 20), MAGENTA),
    "coll/b.jpg.png": ("PNG", (20, 70), CYAN),
}


def assert_records_in_current_layout(stack: Stack, repository: Repository) -> set[str]:
    """Every source's record lists its renditions at the current keys, each
    object holding that source's picture; returns the keys they list."""
    listed = set()
    for key, (fmt, size, colour) in SOURCES.items():
        record = repository.get(keys.image_id("uploads", key))
        assert record is not None and record.fingerprint == stack.settings.fingerprint, key
        assert {n: r.key for n, r in record.renditions.items()} == {
            n: keys.rendition_key("resized/", n, key, fmt) for n in NAMES
        }
        for r in record.renditions.values():
            assert_shows(stack, r.key, size, colour)
            meta = stack.s3.head_object(Bucket=r.bucket, Key=r.key)["Metadata"]
            assert keys.metadata_text(meta["source-key"]) == key
            listed.add(r.key)
    return listed


def test_backfill_migrates_old_layout_records_and_loses_nothing(
    stack: Stack, repository: Repository
) -> None:
    def source(key: str) -> bytes:
        fmt, size, colour = SOURCES[key]
        return picture({"a.gif": "GIF", "scan.tiff": "TIFF"}.get(key, fmt), size, colour)

    # What a deployment of the earlier code left behind.
    for key in ("a.gif", "photos/cat.jpg", "scan.tiff", "coll/b.jpg.png"):
        write_old_record(stack, repository, key, source(key))
    # coll/b.jpg (PNG bytes) and coll/b.jpg.png shared resized/*/coll/b.jpg.png;
    # coll/b.jpg wrote last, so both records show its picture.
    write_old_record(stack, repository, "coll/b.jpg", source("coll/b.jpg"))
    # Renditions whose record was never saved (an attempt that crashed).
    write_old_renditions(stack, "lost.gif", picture("PNG", (10, 10), GREEN), "e")
    # After the upgrade, a.gif.png is uploaded: its current keys are the
    # earlier keys of a.gif, whose record still lists them.
    assert stack.upload("a.gif.png", source("a.gif.png")) == ["processed"]
    old_a_gif = repository.get(keys.image_id("uploads", "a.gif"))
    assert old_a_gif is not None
    assert old_a_gif.renditions["thumb"].key == "resized/thumb/a.gif.png"
    assert_shows(stack, "resized/thumb/a.gif.png", (40, 60), BLUE)  # a.gif.png's picture
    leftovers = {f"resized/{n}/lost.gif.png" for n in NAMES}
    before = objects(stack)

    # 1. --only-missing --dry-run: every record of the earlier layout, nothing done.
    dry = run(stack, Options(only_missing=True, dry_run=True))
    assert sorted(dry.actions) == [
        f"would process {k}" for k in sorted(SOURCES) if k != "a.gif.png"
    ]
    assert dry.skipped == 1 and objects(stack) == before

    # 2. --only-missing: re-rendered at the current keys; old renditions they
    # own are deleted, a.gif.png's objects at a.gif's old keys are kept. (One
    # worker, so that the order of the steps is the same on every run.)
    migrated = run(stack, Options(only_missing=True, workers=1))
    assert (migrated.processed, migrated.skipped, migrated.failed) == (5, 1, 0)
    listed = assert_records_in_current_layout(stack, repository)
    assert set(objects(stack)) == listed | leftovers
    for name in NAMES:
        assert f"resized/{name}/scan.tiff.jpg" not in objects(stack)
        assert_shows(stack, f"resized/{name}/a.gif.png", (40, 60), BLUE)
        assert_shows(stack, f"resized/{name}/coll/b.jpg.png", (20, 70), CYAN)

    # 3. --prune --dry-run: the leftovers only, nothing done.
    before = objects(stack)
    dry = run(stack, Options(only_missing=True, prune=True, dry_run=True))
    assert sorted(dry.actions) == sorted(f"would delete {k}" for k in leftovers)
    assert objects(stack) == before

    # 4. --prune: leftovers gone, everything a record lists kept.
    pruned = run(stack, Options(only_missing=True, prune=True))
    assert (pruned.pruned, pruned.processed) == (len(leftovers), 0)
    assert set(objects(stack)) == listed
    assert assert_records_in_current_layout(stack, repository) == listed
