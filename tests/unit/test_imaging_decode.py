"""The decode step on its own: allow-list registration, draft, frames, orientation."""

from __future__ import annotations

import io
from typing import Any, cast

import pytest
from PIL import Image

from chalicelib.imaging import (
    SOURCE_FORMATS,
    decode,
    parse_renditions,
    resize,
)
from chalicelib.imaging.formats import output_format, sniff
from tests.unit.conftest import Process


def encoded(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


BIG_JPEG = encoded(Image.new("RGB", (4000, 3000), "teal"), "JPEG")


def test_every_allowed_format_is_registered() -> None:
    # Otherwise Image.open would call Image.init() and import every plugin.
    assert set(SOURCE_FORMATS) <= set(Image.OPEN)


@pytest.mark.parametrize(
    ("needed", "decoded"),
    [
        ((256, 192), (500, 375)),  # 1/8
        ((256, 256), (500, 375)),  # 1/8: 375 >= 256 still
        ((600, 400), (1000, 750)),  # 1/4: 1/8 would be 500 < 600
        ((800, 600), (1000, 750)),  # 1/4
        ((1600, 1200), (2000, 1500)),  # 1/2
        ((2001, 10), (4000, 3000)),  # full size
        ((4000, 3000), (4000, 3000)),
    ],
)
def test_jpeg_draft_decodes_at_reduced_scale(
    needed: tuple[int, int], decoded: tuple[int, int]
) -> None:
    img = decode.open_image(BIG_JPEG, 50_000_000)
    decode.load(img, needed)
    assert img.size == decoded
    assert img.size[0] >= needed[0] and img.size[1] >= needed[1]


def test_draft_respects_orientation_and_cover() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(Image.new("RGB", (4000, 2000)), "JPEG", exif=exif)
    img = decode.open_image(data, 50_000_000)
    displayed = decode.oriented(img.size, 6)
    assert displayed == (2000, 4000)
    cases = [
        ("t=256", (1000, 500)),  # needs 256x512 displayed = 512x256 stored
        ("t=600x600", (1000, 500)),  # fits in 300x600
        ("t=600x600#", (2000, 1000)),  # covers at 600x1200: needs more
        ("t=x900", (1000, 500)),  # 450x900 displayed
        ("t=x1100", (2000, 1000)),  # 550x1100 displayed: 1/4 would be too small
        # the largest need per side, over all renditions, in displayed terms:
        ("a=x900,b=1500x10!", (4000, 2000)),  # 1500 displayed wide = stored tall
        ("a=100,b=10x1500!", (2000, 1000)),
    ]
    for spec, decoded in cases:
        img = decode.open_image(data, 50_000_000)
        targets = resize.plan(parse_renditions(spec), displayed)
        decode.load(img, decode.oriented(resize.needed_size(targets), 6))
        assert img.size == decoded, spec


def test_png_is_never_drafted() -> None:
    img = decode.open_image(encoded(Image.new("RGB", (400, 300)), "PNG"), 1_000_000)
    decode.load(img, (10, 10))
    assert img.size == (400, 300)


def test_large_jpeg_small_rendition_only(process: Process) -> None:
    result = process(BIG_JPEG, "t=256")
    assert (result.width, result.height) == (4000, 3000)
    assert (result.renditions[0].width, result.renditions[0].height) == (256, 192)


def test_mpo_is_a_jpeg_of_one_frame(process: Process) -> None:
    first, second = Image.new("RGB", (400, 300), "red"), Image.new("RGB", (400, 300), "blue")
    data = encoded(first, "MPO", save_all=True, append_images=[second])
    img = decode.open_image(data, 120_000)  # one frame fits, two would not
    assert img.format == "MPO"
    assert decode.source_format(img) == "JPEG"
    result = process(data, "t=40", max_pixels=120_000)
    out = Image.open(io.BytesIO(result.renditions[0].data)).convert("RGB")
    red, _, blue = cast("tuple[int, int, int]", out.getpixel((20, 15)))
    assert red > 200 and blue < 50  # the first picture, not the second
    assert (result.format, result.content_type) == ("JPEG", "image/jpeg")
    assert result.renditions[0].format == "JPEG"


@pytest.mark.parametrize(
    ("orientation", "size"), [(1, (4, 2)), (3, (4, 2)), (6, (2, 4)), (8, (2, 4))]
)
def test_orient(orientation: int, size: tuple[int, int]) -> None:
    assert decode.oriented((4, 2), orientation) == size
    assert decode.orient(Image.new("L", (4, 2)), orientation).size == size


@pytest.mark.parametrize(
    ("requested", "source", "alpha", "expected"),
    [
        ("auto", "JPEG", False, "JPEG"),
        ("auto", "PNG", False, "PNG"),
        ("auto", "WEBP", True, "WEBP"),
        ("auto", "GIF", False, "PNG"),
        ("auto", "TIFF", False, "JPEG"),
        ("auto", "TIFF", True, "PNG"),
        ("auto", "BMP", False, "JPEG"),
        ("auto", "BMP", True, "PNG"),
        ("jpeg", "PNG", True, "JPEG"),
        ("WebP", "JPEG", False, "WEBP"),
        ("png", "JPEG", False, "PNG"),
    ],
)
def test_output_format(requested: str, source: str, alpha: bool, expected: str) -> None:
    assert output_format(requested, source, alpha) == expected


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\xff\xd8\xff\xe0", "JPEG"),
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"GIF89a", "GIF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WEBP"),
        (b"II*\x00", "TIFF"),
        (b"MM\x00*", "TIFF"),
        (b"BM", "BMP"),
        (b"%PDF-1.4", None),
        (b"RIFF\x00\x00\x00\x00WAVE", None),
        (b"", None),
    ],
)
def test_sniff(head: bytes, fmt: str | None) -> None:
    assert sniff(head) == fmt
