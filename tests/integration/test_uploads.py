"""Uploads and deletions end to end: handlers, S3 and DynamoDB over sockets."""

from __future__ import annotations

import json
import logging
import urllib.request
from io import BytesIO
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image

from chalicelib import keys
from tests.integration.conftest import Stack, make_stack
from tests.support import encoded, format_of, jpeg, png, size_of, without_urls

KEYS_WITH_CHARACTERS = [
    "plain.jpg",
    "photos/my cat (1).jpg",
    "photos/a+b=c.jpg",
    "fotos/Zürich straße/über 東京.jpg",
    "odd/50% off & 'quotes'.JPG",
]


@pytest.mark.parametrize("key", KEYS_WITH_CHARACTERS)
def test_upload_becomes_renditions_and_a_record(stack: Stack, key: str) -> None:
    outcome = stack.upload(key, jpeg(1200, 900))

    assert outcome == ["processed"]
    [image] = stack.images(f"?key={quote(key)}")
    assert image["key"] == key
    assert image["folder"] == keys.folder_of(key)
    assert (image["status"], image["error"]) == ("processed", None)
    assert (image["width"], image["height"], image["format"]) == (1200, 900, "JPEG")
    assert image["id"] == keys.image_id("uploads", key)
    expected = {"thumb": (256, 192), "medium": (800, 600), "large": (1200, 900)}
    assert set(image["renditions"]) == set(expected)
    for name, (width, height) in expected.items():
        rendition = image["renditions"][name]
        assert rendition["key"] == f"resized/{name}/{key}"
        obj = stack.s3.get_object(Bucket="uploads", Key=rendition["key"])
        data = obj["Body"].read()
        assert size_of(data) == (width, height) == (rendition["width"], rendition["height"])
        assert format_of(data) == "JPEG"
        assert obj["ContentType"] == "image/jpeg"
        assert obj["CacheControl"] == "no-cache"
        assert obj["Metadata"]["source-etag"] == image["etag"]
        assert obj["Metadata"]["source-key"] == quote(key, safe="/")
        assert rendition["size_bytes"] == len(data)
        with urllib.request.urlopen(rendition["url"], timeout=10) as response:
            assert response.read() == data


def test_get_image_by_id_and_404(stack: Stack) -> None:
    stack.upload("a/b.jpg", jpeg(300, 200))
    image_id = keys.image_id("uploads", "a/b.jpg")

    status, body = stack.get(f"/images/{image_id}")
    assert status == 200
    assert body["key"] == "a/b.jpg"
    status, body = stack.get("/images/AAAAAAAAAAAAAAAAAAAAAA")
    assert status == 404
    assert body["Code"] == "NotFoundError"


def test_exif_orientation_gives_displayed_size(stack: Stack) -> None:
    stack.upload("rotated.jpg", jpeg(1200, 900, orientation=6))

    [image] = stack.images()
    assert (image["width"], image["height"]) == (900, 1200)
    assert image["metadata"]["orientation"] == 6
    thumb = stack.s3.get_object(Bucket="uploads", Key="resized/thumb/rotated.jpg")["Body"].read()
    assert size_of(thumb) == (192, 256)


def test_png_stays_png_and_gif_gets_png_extension(stack: Stack) -> None:
    stack.upload("logo.png", png(640, 480))
    buffer = BytesIO()
    Image.new("P", (100, 50)).save(buffer, "GIF")
    stack.upload("anim.gif", buffer.getvalue())

    thumbs = stack.keys("resized/thumb")
    assert thumbs == ["resized/thumb.png/anim.gif.png", "resized/thumb/logo.png"]
    data = stack.s3.get_object(Bucket="uploads", Key=thumbs[0])["Body"].read()
    assert format_of(data) == "PNG"


def test_duplicate_event_changes_nothing(stack: Stack) -> None:
    stack.put("dup.jpg", jpeg(400, 300))
    record = stack.record("dup.jpg")

    assert stack.deliver(record) == ["processed"]
    [first] = stack.images()
    assert stack.deliver(record) == ["duplicate"]
    [again] = stack.images()
    assert without_urls(again) == without_urls(first)  # not even updated_at moved


def test_delete_removes_record_and_renditions(stack: Stack) -> None:
    stack.upload("gone/cat.jpg", jpeg(400, 300))
    assert len(stack.keys("resized/")) == 3

    assert stack.delete("gone/cat.jpg") == ["deleted"]

    assert stack.images() == []
    assert stack.keys("resized/") == []
    assert stack.get(f"/images/{keys.image_id('uploads', 'gone/cat.jpg')}")[0] == 404


def test_delete_before_create_leaves_a_tombstone(stack: Stack) -> None:
    """S3 reorders: a delete arrives before the older create of the same key."""
    stack.put("race.jpg", jpeg(400, 300))
    old_create = stack.record("race.jpg")  # sequencer 1
    stack.s3.delete_object(Bucket="uploads", Key="race.jpg")
    delete = stack.record("race.jpg", "ObjectRemoved:Delete")  # sequencer 2
    stack.put("race.jpg", jpeg(400, 300))  # re-uploaded, same bytes and ETag
    new_create = stack.record("race.jpg")  # sequencer 3

    stack.s3.delete_object(Bucket="uploads", Key="race.jpg")
    assert stack.deliver(delete) == ["deleted"]
    stack.put("race.jpg", jpeg(400, 300))
    assert stack.deliver(old_create) == ["stale"]
    assert stack.images() == []
    assert stack.keys("resized/") == []

    assert stack.deliver(new_create) == ["processed"]
    assert [i["key"] for i in stack.images()] == ["race.jpg"]


def test_older_create_after_newer_create_is_stale(stack: Stack) -> None:
    stack.put("twice.jpg", jpeg(400, 300))
    first = stack.record("twice.jpg")
    second = stack.record("twice.jpg")

    assert stack.deliver(second) == ["processed"]
    assert stack.deliver(first) == ["stale"]


def test_replaced_object_supersedes_the_old_event(stack: Stack) -> None:
    stack.put("swap.jpg", jpeg(400, 300))
    old = stack.record("swap.jpg")
    stack.put("swap.jpg", jpeg(640, 480))
    new = stack.record("swap.jpg")

    assert stack.deliver(old) == ["superseded"]
    assert stack.images() == []
    assert stack.deliver(new) == ["processed"]
    [image] = stack.images()
    assert (image["width"], image["height"]) == (640, 480)


def test_created_event_for_a_gone_object_changes_nothing(stack: Stack) -> None:
    stack.put("brief.jpg", jpeg(400, 300))
    created = stack.record("brief.jpg")
    stack.s3.delete_object(Bucket="uploads", Key="brief.jpg")

    assert stack.deliver(created) == ["superseded"]
    assert stack.images() == [] and stack.keys("resized/") == []


def test_removed_event_while_object_exists_changes_nothing(stack: Stack) -> None:
    """A non-current version was deleted, or the key was uploaded again."""
    stack.upload("keep.jpg", jpeg(400, 300))

    assert stack.deliver(stack.record("keep.jpg", "ObjectRemoved:Delete")) == ["superseded"]
    assert [i["key"] for i in stack.images()] == ["keep.jpg"]
    assert len(stack.keys("resized/")) == 3


def test_reupload_with_other_format_cleans_old_renditions(stack: Stack) -> None:
    stack.upload("shape.png", png(300, 300))
    assert stack.upload("shape.png", jpeg(300, 300)) == ["processed"]

    assert stack.keys("resized/thumb") == ["resized/thumb.jpg/shape.png.jpg"]


def test_rendition_and_foreign_keys_are_ignored(stack: Stack) -> None:
    stack.put("resized/thumb/x.jpg", jpeg(100, 100))
    stack.put("notes.txt", b"hello")

    assert stack.deliver(stack.record("resized/thumb/x.jpg")) == ["ignored"]
    assert stack.deliver(stack.record("notes.txt")) == ["ignored"]
    assert stack.images() == [] and stack.images("?status=failed") == []


def test_lifecycle_expiration_removes(stack: Stack) -> None:
    stack.upload("old.jpg", jpeg(300, 200))
    stack.s3.delete_object(Bucket="uploads", Key="old.jpg")

    assert stack.deliver(stack.record("old.jpg", "LifecycleExpiration:Delete")) == ["deleted"]
    assert stack.images() == []


def test_copy_and_multipart_events_are_creations(stack: Stack) -> None:
    stack.put("copied.jpg", jpeg(300, 200))
    outcome = stack.deliver(stack.record("copied.jpg", "ObjectCreated:Copy"))
    assert outcome == ["processed"]
    stack.put("big.jpg", jpeg(300, 200, quality=50))
    assert stack.deliver(stack.record("big.jpg", "ObjectCreated:CompleteMultipartUpload")) == [
        "processed"
    ]


def test_each_event_logs_one_line_with_its_reason(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack.put("notes.txt", b"hello")
    caplog.set_level(logging.INFO, logger="image_pipeline")

    stack.deliver(stack.record("notes.txt"))

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "image_pipeline"]
    assert len(lines) == 1
    assert lines[0]["key"] == "notes.txt"
    assert lines[0]["outcome"] == "ignored"
    assert lines[0]["detail"] == "suffix not in IMAGE_SUFFIXES"
    assert lines[0]["Ignored"] == 1 and "_aws" in lines[0]  # also an EMF metrics record
    assert lines[0]["request_id"]  # the Lambda invocation's


@pytest.mark.parametrize("engine", ["pillow", "vips"])
def test_image_engine_setting_picks_the_engine(
    aws: str,
    base_env: dict[str, str],
    engine: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stack = make_stack(base_env | {"IMAGE_ENGINE": engine}, tmp_path, monkeypatch)
    caplog.set_level(logging.INFO, logger="image_pipeline")

    assert stack.upload("rotated.jpg", jpeg(1200, 900, orientation=6)) == ["processed"]
    assert stack.upload("anim.gif", encoded(Image.new("P", (64, 48)), "GIF")) == ["processed"]

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "image_pipeline"]
    # A GIF is always Pillow's: libvips is given JPEG, PNG and WebP only.
    assert [(line["key"], line["engine"]) for line in lines] == [
        ("rotated.jpg", engine),
        ("anim.gif", "pillow"),
    ]
    thumb = stack.s3.get_object(Bucket="uploads", Key="resized/thumb/rotated.jpg")["Body"].read()
    assert size_of(thumb) == (192, 256)
    shown = Image.open(BytesIO(thumb)).convert("RGB")
    # The stored top-left corner (blue) is shown top right; the rest is red.
    assert shown.getpixel((180, 12)) == pytest.approx((20, 20, 220), abs=40)
    assert shown.getpixel((12, 12)) == pytest.approx((200, 40, 40), abs=40)


def test_versioned_bucket_old_version_deleted_and_delete_marker(stack: Stack) -> None:
    stack.s3.put_bucket_versioning(Bucket="uploads", VersioningConfiguration={"Status": "Enabled"})
    stack.upload("v.jpg", jpeg(300, 200))
    old_version = stack.s3.head_object(Bucket="uploads", Key="v.jpg")["VersionId"]
    assert stack.upload("v.jpg", jpeg(640, 480)) == ["processed"]

    # Deleting the non-current version leaves the image in place.
    stack.s3.delete_object(Bucket="uploads", Key="v.jpg", VersionId=old_version)
    removed = stack.record("v.jpg", "ObjectRemoved:Delete")
    removed["s3"]["object"]["versionId"] = old_version
    assert stack.deliver(removed) == ["superseded"]
    [image] = stack.images()
    assert (image["width"], image["height"]) == (640, 480)

    # A plain delete creates a delete marker: the image is gone.
    stack.s3.delete_object(Bucket="uploads", Key="v.jpg")
    assert stack.deliver(stack.record("v.jpg", "ObjectRemoved:DeleteMarkerCreated")) == ["deleted"]
    assert stack.images() == [] and stack.keys("resized/") == []
