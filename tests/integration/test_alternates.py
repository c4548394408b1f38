"""``FORMATS``: every rendition also written as AVIF and WebP, at the contract's
keys, listed in the record as ``alternates``, removed with the source; and the
``placeholder`` every processed record carries. On both backends, against the
emulator over a socket."""

from __future__ import annotations

import io
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from chalicelib.factory import build_pipeline
from devtools import backfill
from devtools.backfill import Options
from tests.integration.conftest import Stack, make_stack
from tests.support import jpeg

SIZES = {"thumb": (256, 256), "medium": (800, 600), "large": (1200, 900)}
RENDITIONS = "thumb=256x256#,medium=800x800,large=1600x1600"


@pytest.fixture
def stack(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Stack:
    env = base_env | {"FORMATS": "avif,webp", "RENDITIONS": RENDITIONS}
    return make_stack(env, tmp_path, monkeypatch)


def fetch(stack: Stack, key: str) -> tuple[bytes, str, dict[str, str]]:
    """Bytes, Content-Type and user metadata of a rendition object."""
    got = stack.s3.get_object(Bucket=stack.settings.dest_bucket, Key=key)
    return got["Body"].read(), got["ContentType"], got["Metadata"]


def picture(data: bytes) -> tuple[str, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return str(image.format), image.size


def test_each_rendition_is_also_written_as_avif_and_webp(stack: Stack) -> None:
    etag = stack.put("photos/cat.jpg", jpeg(1200, 900))
    stack.deliver(stack.record("photos/cat.jpg"))

    [image] = stack.images()
    for name, size in SIZES.items():
        rendition = image["renditions"][name]
        assert rendition["key"] == f"resized/{name}/photos/cat.jpg"
        assert [a["key"] for a in rendition["alternates"]] == [
            f"resized/{name}.avif/photos/cat.jpg.avif",
            f"resized/{name}.webp/photos/cat.jpg.webp",
        ]
        for alternate, fmt in zip(rendition["alternates"], ("AVIF", "WEBP"), strict=True):
            data, content_type, metadata = fetch(stack, alternate["key"])
            assert picture(data) == (fmt, size)  # an alternate shares its rendition's size
            assert content_type == alternate["content_type"] == f"image/{fmt.lower()}"
            assert alternate["size_bytes"] == len(data)
            assert metadata == {"source-key": "photos/cat.jpg", "source-etag": etag}
            with urllib.request.urlopen(alternate["url"]) as response:
                assert response.read() == data
        # At the same closeness to the source the alternates are the smaller files.
        assert rendition["alternates"][0]["size_bytes"] < rendition["size_bytes"]


def test_an_alternate_in_the_renditions_own_format_is_not_written_twice(stack: Stack) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (1200, 900), (40, 120, 200)).save(buffer, "WEBP")
    stack.upload("a.webp", buffer.getvalue())

    [image] = stack.images()
    thumb = image["renditions"]["thumb"]
    assert thumb["key"] == "resized/thumb/a.webp"
    assert thumb["content_type"] == "image/webp"
    assert [a["key"] for a in thumb["alternates"]] == ["resized/thumb.avif/a.webp.avif"]
    assert stack.keys("resized/") == sorted(
        [f"resized/{n}/a.webp" for n in SIZES] + [f"resized/{n}.avif/a.webp.avif" for n in SIZES]
    )


def test_deleting_the_source_removes_its_alternates(stack: Stack) -> None:
    stack.upload("photos/cat.jpg", jpeg(1200, 900))
    stack.upload("photos/dog.jpg", jpeg(1200, 900))
    assert len(stack.keys("resized/")) == 2 * 3 * 3

    stack.delete("photos/cat.jpg")

    assert stack.keys("resized/") == sorted(
        [f"resized/{n}/photos/dog.jpg" for n in SIZES]
        + [f"resized/{n}.{f}/photos/dog.jpg.{f}" for n in SIZES for f in ("avif", "webp")]
    )


def test_a_stage_that_drops_a_format_removes_those_alternates_on_reprocessing(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.upload("photos/cat.jpg", jpeg(1200, 900))
    later = make_stack(stack.env | {"FORMATS": "webp"}, tmp_path / "later", monkeypatch)
    later._sequence = stack._sequence  # the bucket's events go on in order

    later.upload("photos/cat.jpg", jpeg(1200, 900, quality=80))

    [image] = later.images()
    assert [a["content_type"] for a in image["renditions"]["large"]["alternates"]] == ["image/webp"]
    assert not [k for k in later.keys("resized/") if ".avif/" in k]
    assert len(later.keys("resized/")) == 3 * 2


def test_processed_records_carry_a_placeholder_failed_ones_none(stack: Stack) -> None:
    stack.upload("photos/cat.jpg", jpeg(1200, 900))
    stack.upload("photos/broken.jpg", b"\xff\xd8\xff not a picture")

    [image] = stack.images()
    placeholder = image["placeholder"]
    assert set(placeholder) == {"blurhash", "color"}
    assert len(placeholder["blurhash"]) >= 6
    assert placeholder["color"].startswith("#") and len(placeholder["color"]) == 7
    [failed] = stack.images("?status=failed")
    assert "placeholder" not in failed
    assert failed["renditions"] == {}


def test_backfill_adds_alternates_to_old_records_and_prune_keeps_only_listed_ones(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stage that turns FORMATS on: ``--only-missing`` re-renders what was
    made without them (a settings change), ``--prune`` removes alternates no
    record lists and keeps those that one does."""
    before = make_stack(stack.env | {"FORMATS": ""}, tmp_path / "before", monkeypatch)
    before.upload("photos/cat.jpg", jpeg(1200, 900))
    assert not [k for k in before.keys("resized/") if ".avif/" in k or ".webp/" in k]
    orphan = "resized/thumb.avif/photos/gone.jpg.avif"
    stack.s3.put_object(Bucket=stack.settings.dest_bucket, Key=orphan, Body=b"left over")

    summary = backfill.run(
        stack.settings,
        Options(only_missing=True, prune=True, progress=False, prune_grace=timedelta(0)),
        lambda: build_pipeline(stack.settings),
        stack.s3,
    )

    assert summary.processed == 1
    [image] = stack.images()
    listed = {a["key"] for r in image["renditions"].values() for a in r["alternates"]}
    assert len(listed) == 6
    assert orphan not in stack.keys("resized/")
    assert listed <= set(stack.keys("resized/"))
    again = backfill.run(
        stack.settings,
        Options(only_missing=True, progress=False),
        lambda: build_pipeline(stack.settings),
        stack.s3,
    )
    assert again.processed == 0  # up to date now
