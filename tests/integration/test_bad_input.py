"""Files no retry can fix become failed records with a reason; nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import Stack, make_stack
from tests.support import jpeg, png_claiming


def failed(stack: Stack, key: str) -> dict[str, object]:
    [image] = [i for i in stack.images("?status=failed") if i["key"] == key]
    assert image["status"] == "failed"
    assert image["renditions"] == {}
    assert stack.images(f"?key={key}") == []  # not listed as processed
    return image


@pytest.mark.parametrize(
    ("key", "data", "reason"),
    [
        ("text.jpg", b"this is a text file, not a photo\n" * 20, "not an image"),
        ("empty.jpg", b"", "not an image"),
        ("cut.jpg", jpeg(800, 600)[:2000], "truncated"),
        ("doc.jpg", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 10, "not an image"),
        ("eps.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n" * 10, "not an image"),
        ("layers.jpg", b"8BPS\x00\x01" + b"\x00" * 200, "not an image"),
    ],
)
def test_bad_files_become_failed_records(stack: Stack, key: str, data: bytes, reason: str) -> None:
    assert stack.upload(key, data) == ["failed"]

    image = failed(stack, key)
    assert reason in str(image["error"]).lower()
    assert stack.keys("resized/") == []


def test_decompression_bomb_is_refused_from_its_header(stack: Stack) -> None:
    assert stack.upload("bomb.png", png_claiming(30000, 30000)) == ["failed"]

    error = str(failed(stack, "bomb.png")["error"])
    assert "900,000,000 pixels" in error and "MAX_SOURCE_PIXELS=50,000,000" in error


def test_too_many_pixels_is_refused(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(base_env | {"MAX_SOURCE_PIXELS": "100000"}, tmp_path, monkeypatch)

    assert stack.upload("huge.jpg", jpeg(800, 600)) == ["failed"]
    assert "MAX_SOURCE_PIXELS" in str(failed(stack, "huge.jpg")["error"])


def test_too_many_bytes_is_not_downloaded(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(base_env | {"MAX_SOURCE_BYTES": "100000"}, tmp_path, monkeypatch)
    stack.put("heavy.jpg", jpeg(300, 200))
    # The event's size decides, before any GET: were the object downloaded,
    # these few kilobytes would have been processed.
    record = stack.record("heavy.jpg", size=250_000)

    assert stack.deliver(record) == ["failed"]
    error = str(failed(stack, "heavy.jpg")["error"])
    assert "MAX_SOURCE_BYTES=100,000" in error and "250,000 bytes" in error


def test_rendition_key_over_1024_bytes_fails_cleanly(stack: Stack) -> None:
    key = "deep/" + "é" * 505 + ".jpg"  # 1019 bytes: fits S3, its renditions do not
    assert len(key.encode()) <= 1024

    assert stack.upload(key, jpeg(300, 200)) == ["failed"]
    assert "1024" in str(failed(stack, key)["error"])
    assert stack.keys("resized/") == []


def test_good_file_replacing_a_failed_one_is_processed(stack: Stack) -> None:
    stack.upload("fix.jpg", b"not yet")
    assert stack.upload("fix.jpg", jpeg(300, 200)) == ["processed"]

    assert stack.images("?status=failed") == []
    assert [i["key"] for i in stack.images()] == ["fix.jpg"]


def test_an_archived_object_is_a_failed_record(stack: Stack) -> None:
    stack.s3.put_object(
        Bucket="uploads", Key="cold.jpg", Body=jpeg(120, 80), StorageClass="GLACIER"
    )

    assert stack.deliver(stack.record("cold.jpg")) == ["failed"]
    assert "restore it" in str(failed(stack, "cold.jpg")["error"])
