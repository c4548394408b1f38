"""Bounds: hostile files are refused from their structure, before a decoder
spends minutes on them, on both engines and in ``read_metadata``; honest
files near the caps still process; the metadata a record keeps is bounded."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from PIL import GifImagePlugin, Image, TiffImagePlugin

from chalicelib.bounds import MAX_METADATA_BYTES, bounded_metadata, bounded_text
from chalicelib.imaging import ImageRejected, read_metadata, structure
from chalicelib.models import ImageRecord, Status
from tests import hostile_files as hostile
from tests.unit.conftest import Process

Rejected = Callable[..., str]


@pytest.fixture
def rejected(process: Process) -> Rejected:
    """``rejected(data)``: the message ``process_image`` refuses ``data`` with,
    after checking that ``read_metadata`` refuses it with the same."""

    def check(data: bytes, max_pixels: int = 50_000_000) -> str:
        with pytest.raises(ImageRejected) as caught:
            process(data, "t=64", max_pixels=max_pixels)
        with pytest.raises(ImageRejected) as caught_again:
            read_metadata(data, max_pixels)
        assert str(caught_again.value) == str(caught.value)
        return str(caught.value)

    return check


def encoded(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def frames(n: int, size: tuple[int, int] = (40, 30)) -> list[Image.Image]:
    return [Image.new("RGB", size, (i * 37 % 256, i * 91 % 256, 128)) for i in range(n)]


# --- hostile files, each just over its cap ------------------------------------

HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "jpeg scans": (
        lambda: hostile.progressive_jpeg_repeated_scan(101, 64, 64),
        "the JPEG has over 100 scans (progressive passes); re-save it",
    ),
    "jpeg scans of a large picture": (
        lambda: hostile.progressive_jpeg_repeated_scan(51, 4472, 4472),
        "the JPEG has over 50 scans (progressive passes) for its 20.0 megapixels; re-save it",
    ),
    "jpeg segments": (
        lambda: hostile.jpeg_comments(1001),
        "the JPEG has over 1,000 segments (markers); re-save it",
    ),
    "jpeg stray bytes": (
        lambda: hostile.jpeg_stray_bytes(65_537),
        "the JPEG has over 65,536 bytes outside its segments before the image data; re-save it",
    ),
    "png ancillary chunks": (
        lambda: hostile.png_private_chunks(1001),
        "the PNG has over 1,000 ancillary chunks (text, private data); re-save it without them",
    ),
    "png chunks": (
        lambda: hostile.png_idat_chunks(50_001),
        "the PNG has over 50,000 chunks; re-save it (its pixel data is cut into tiny pieces)",
    ),
    "apng frames": (
        lambda: hostile.apng_declaring(10_001),
        "the PNG has 10,001 frames, over 10,000; only the first is used: save it alone",
    ),
    "gif frames": (
        lambda: hostile.gif_frames(10_001),
        "the GIF has over 10,000 frames; only the first is used: save it alone",
    ),
    "gif blocks": (
        lambda: hostile.gif_comment_blocks(250_001),
        "the GIF is cut into over 250,000 blocks (data in pieces of a few bytes, "
        "or stray bytes); re-save it",
    ),
    "tiff pages": (
        lambda: hostile.tiff_pages(1001),
        "the TIFF has over 1,000 pages; only the first is used: save it alone",
    ),
    "tiff tags": (
        lambda: hostile.tiff_tags(1001),
        "page 1 of the TIFF has 1,001 tags, over 1,000; re-save it",
    ),
    "webp frames": (
        lambda: hostile.webp_frames(10_001),
        "the WebP has over 10,000 frames; only the first is used: save it alone",
    ),
    "bmp rle8": (
        lambda: hostile.bmp_rle8(1025, 1024),
        "the BMP is RLE-compressed and 1025x1024 = 1,049,600 pixels, over the 1,048,576 "
        "accepted with RLE; save it uncompressed or as PNG",
    ),
    "bmp rle4": (
        lambda: hostile.bmp_rle4(1024, 1025),
        "the BMP is RLE-compressed and 1024x1025 = 1,049,600 pixels, over the 1,048,576 "
        "accepted with RLE; save it uncompressed or as PNG",
    ),
    "tall": (
        lambda: hostile.png_size(1, 1_000_001),
        "image is 1x1000001, over 1,000,000 pixels on a side; crop it or cut it into parts",
    ),
    "wide": (
        lambda: hostile.png_size(1_000_001, 1),
        "image is 1000001x1, over 1,000,000 pixels on a side; crop it or cut it into parts",
    ),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file_is_refused_by_its_structure(name: str, rejected: Rejected) -> None:
    make, message = HOSTILE[name]
    assert rejected(make()) == message


def test_findings_at_their_sizes_are_refused_in_the_walk() -> None:
    """The files that took minutes, at their sizes: the walk stops at the cap."""
    cases = [
        (hostile.progressive_jpeg_repeated_scan(10_000), "JPEG", "over 100 scans"),
        (hostile.tiff_pages(40_000), "TIFF", "over 1,000 pages"),
        (hostile.bmp_rle8(7071, 7071), "BMP", "7071x7071 = 49,999,041 pixels"),
        (hostile.gif_frames(2_000_000), "GIF", "over 10,000 frames"),
        (hostile.png_private_chunks(3_000_000), "PNG", "over 1,000 ancillary chunks"),
    ]
    for data, fmt, part in cases:
        assert structure.identify(data) == fmt
        with pytest.raises(ImageRejected, match=part):
            structure.frames(data, fmt)


def test_frames_are_counted_from_the_bytes_not_by_pillow(
    monkeypatch: pytest.MonkeyPatch, process: Process
) -> None:
    """Pillow's ``n_frames`` walks every frame (GIF in Python, TIFF in
    quadratic time): it is never asked, and all frames still count."""

    def counted(self: Image.Image) -> int:
        raise AssertionError("n_frames was asked")

    for plugin in (GifImagePlugin.GifImageFile, TiffImagePlugin.TiffImageFile):
        monkeypatch.setattr(plugin, "n_frames", property(counted))
    gif = encoded(frames(1)[0], "GIF", save_all=True, append_images=frames(30)[1:])
    tiff = encoded(frames(1)[0], "TIFF", save_all=True, append_images=frames(30)[1:])
    for data in (gif, tiff):
        assert process(data, "t=20", max_pixels=36_000).renditions[0].width == 20
        with pytest.raises(ImageRejected, match=r"^image is 40x30 x 30 frames = 36,000 pixels"):
            process(data, "t=20", max_pixels=35_999)


# --- honest files near the caps -----------------------------------------------

HONEST: dict[str, Callable[[], bytes]] = {
    "progressive jpeg": lambda: encoded(
        Image.effect_noise((320, 240), 40).convert("RGB"), "JPEG", progressive=True
    ),
    "progressive jpeg with restart markers": lambda: encoded(
        Image.effect_noise((320, 240), 40).convert("RGB"),
        "JPEG",
        progressive=True,
        restart_marker_blocks=1,
    ),
    "jpeg of 100 scans": lambda: hostile.progressive_jpeg_repeated_scan(100, 64, 64),
    "jpeg of 990 comments": lambda: hostile.jpeg_comments(990),
    "jpeg with 64 KB of stray bytes": lambda: hostile.jpeg_stray_bytes(65_536),
    "png of 49,999 chunks": lambda: hostile.png_idat_chunks(49_997),
    "png of 1,000 private chunks": lambda: hostile.png_private_chunks(1000),
    "100-frame gif": lambda: encoded(
        frames(1)[0], "GIF", save_all=True, append_images=frames(100)[1:], duration=40
    ),
    "10,000-frame gif": lambda: hostile.gif_frames(10_000),
    "100-frame webp": lambda: encoded(
        frames(1)[0], "WEBP", save_all=True, append_images=frames(100)[1:], lossless=True
    ),
    "10,000-frame webp": lambda: hostile.webp_frames(10_000),
    "1,000-page tiff": lambda: hostile.tiff_pages(1000),
    "tiff of 1,000 tags": lambda: hostile.tiff_tags(1000),
    "rle8 bmp of 1024x1024": lambda: hostile.bmp_rle8(1024, 1024),
    "1x1,000,000 png": lambda: hostile.png_size(1, 1_000_000),
}


@pytest.mark.parametrize("name", HONEST)
def test_honest_file_near_the_caps_is_processed(name: str, process: Process) -> None:
    data = HONEST[name]()
    result = process(data, "t=16")
    assert result.renditions[0].width <= 16
    fmt, width, height, _ = read_metadata(data, 50_000_000)
    assert (fmt, width, height) == (result.format, result.width, result.height)


def test_tiff_whose_pages_loop_counts_each_once(process: Process) -> None:
    data = hostile.tiff_ifd_loop()
    assert structure.tiff_pages(data) == 2
    assert process(data, "t=1", max_pixels=2).width == 1
    with pytest.raises(ImageRejected, match=r"^image is 1x1 x 2 frames = 2 pixels"):
        process(data, "t=1", max_pixels=1)


# --- the walks on their own ---------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("JPEG", encoded(Image.new("RGB", (8, 8)), "JPEG")),
        ("PNG", encoded(Image.new("RGB", (8, 8)), "PNG")),
        ("GIF", encoded(Image.new("RGB", (8, 8)), "GIF")),
        ("TIFF", encoded(Image.new("RGB", (8, 8)), "TIFF")),
        ("TIFF", b"MM\x2a\x00" + bytes(8)),  # an odd header Pillow opens too
        ("WEBP", encoded(Image.new("RGB", (8, 8)), "WEBP")),
        ("BMP", encoded(Image.new("RGB", (8, 8)), "BMP")),
        (None, b"%PDF-1.4\n"),
        (None, b""),
    ],
)
def test_identify_as_pillow_does(fmt: str | None, data: bytes) -> None:
    assert structure.identify(data) == fmt


def test_jpeg_scans_skip_restart_markers_and_stuffed_bytes() -> None:
    noise = Image.effect_noise((64, 64), 60).convert("RGB")
    progressive = encoded(noise, "JPEG", progressive=True, restart_marker_blocks=1)
    assert progressive.count(b"\xff\xd0") > 10 and b"\xff\x00" in progressive
    assert structure.jpeg_scans(progressive) == 10
    assert structure.jpeg_scans(encoded(noise, "JPEG", restart_marker_blocks=1)) == 1


def test_jpeg_scans_allowed_shrink_with_the_pictures_size() -> None:
    assert structure.jpeg_scans_allowed(640 * 480) == 100
    assert structure.jpeg_scans_allowed(20_000_000) == 50
    assert structure.jpeg_scans_allowed(50_000_000) == 20
    assert structure.jpeg_scans_allowed(400_000_000) == 20  # what encoders write, at least


def test_counts() -> None:
    gif = encoded(frames(1)[0], "GIF", save_all=True, append_images=frames(7)[1:])
    assert structure.gif_frames(gif) == 7
    webp = encoded(frames(1)[0], "WEBP", save_all=True, append_images=frames(7)[1:])
    assert structure.webp_frames(webp) == 7
    assert structure.frames(encoded(frames(1)[0], "WEBP"), "WEBP") == 1
    assert structure.png_frames(hostile.apng_declaring(5)) == 5
    big = encoded(frames(1)[0], "TIFF", save_all=True, append_images=frames(3)[1:], big_tiff=True)
    assert big[:4] == b"II+\x00"
    assert structure.tiff_pages(big) == 3


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("JPEG", hostile.progressive_jpeg_repeated_scan(12, 16, 16)),
        ("PNG", hostile.apng_declaring(3)),
        ("GIF", hostile.gif_frames(3)),
        ("TIFF", hostile.tiff_pages(3)),
        ("WEBP", hostile.webp_frames(3)),
        ("BMP", hostile.bmp_rle8(4, 4)),
    ],
)
def test_a_structure_cut_short_is_left_to_the_decoder(fmt: str, data: bytes) -> None:
    for end in range(len(data)):
        assert structure.frames(data[:end], fmt) >= 1


# --- bounded metadata ---------------------------------------------------------


def json_bytes(metadata: dict[str, Any]) -> int:
    return len(json.dumps(metadata, ensure_ascii=False).encode())


@pytest.mark.parametrize("nbytes", [2_000_000, 300_000])
def test_huge_exif_make_is_cut_to_256_characters(nbytes: int, process: Process) -> None:
    """2 MB made DynamoDB refuse the item, 300 KB SNS the message."""
    data = hostile.png_with_exif_make(nbytes)
    metadata = process(data).metadata
    assert metadata["camera_make"] == "M" * 256
    assert json_bytes(metadata) <= MAX_METADATA_BYTES
    assert read_metadata(data, 50_000_000)[3] == metadata


def test_text_loses_its_control_characters() -> None:
    assert bounded_text("Can\x00on\x1b[31m\x7f\x9b EOS\t\n") == "Canon[31m EOS"
    assert bounded_text("  \x01\x02 ") == ""
    assert bounded_text("x\ud800y") == "xy"  # a lone surrogate: no UTF-8 for it


def test_text_is_cut_to_256_characters_not_bytes() -> None:
    assert bounded_text("é" * 300) == "é" * 256
    assert bounded_text("🙂" * 300) == "🙂" * 256
    assert bounded_text("\x00" * 5000 + "abc") == "abc"


def test_metadata_fits_4096_bytes_longest_text_first() -> None:
    numbers = {"iso": 100, "f_number": 2.8, "has_gps": True, "orientation": 6}
    texts = {f"field_{i}": "€" * (240 + i) for i in range(8)}  # 3 bytes each: 5.8 KB
    bounded = bounded_metadata(texts | numbers)
    assert json_bytes(bounded) == MAX_METADATA_BYTES
    assert numbers.items() <= bounded.items()
    # The longest two dropped, the next shortened, the rest whole.
    assert "field_7" not in bounded and "field_6" not in bounded
    assert bounded["field_5"] == "€" * 104
    assert all(bounded[f"field_{i}"] == texts[f"field_{i}"] for i in range(5))


def test_metadata_within_bounds_is_unchanged() -> None:
    metadata = {"camera_make": "Canon", "iso": 100, "has_gps": False, "exposure_time": "1/250"}
    assert bounded_metadata(metadata) == metadata


def test_records_stored_before_the_bounds_are_bounded_when_shown() -> None:
    record = ImageRecord(
        id="a",
        bucket="b",
        key="k.png",
        folder="",
        status=Status.PROCESSED,
        etag="e",
        size_bytes=1,
        uploaded_at="2024-01-01T00:00:00Z",
        created_at="2024-01-01T00:00:00Z",
        updated_at="2024-01-01T00:00:00Z",
        metadata={"camera_make": "M" * 7_000_000, "camera_model": "X\x00Y", "iso": 100},
    )
    assert record.to_api()["metadata"] == {
        "camera_make": "M" * 256,
        "camera_model": "XY",
        "iso": 100,
    }
