"""process_image end to end: sizes, orientation, modes and formats."""

from __future__ import annotations

import io
from typing import Any, cast

import pytest
from PIL import Image

from chalicelib.imaging import (
    EncodedRendition,
    Geometry,
    ImagingOptions,
    parse_renditions,
    read_metadata,
)
from tests.unit.conftest import Process

RED = (200, 30, 30)
BLUE = (30, 30, 220)


def px(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """A pixel as a tuple, whatever the mode."""
    value = img.getpixel(xy)
    assert isinstance(value, int | tuple)
    return value if isinstance(value, tuple) else (value,)


def encoded(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def opened(rendition: EncodedRendition) -> Image.Image:
    img = Image.open(io.BytesIO(rendition.data))
    img.load()
    assert img.format == rendition.format
    assert img.size == (rendition.width, rendition.height)
    return img


def marked(width: int, height: int) -> Image.Image:
    """Red, with a blue top-left quarter: shows where the stored corner lands."""
    img = Image.new("RGB", (width, height), RED)
    img.paste(BLUE, (0, 0, width // 4, height // 4))
    return img


def close(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


ALL_FORMS = "w=100,h=x60,fit=100x100,cover=64x64#,exact=50x70!,pct=25%,big=1000,tall=x1000"


@pytest.mark.parametrize(
    ("fmt", "size"), [("JPEG", (400, 300)), ("PNG", (400, 300)), ("JPEG", (300, 400))]
)
def test_every_geometry_gives_its_exact_size(
    fmt: str, size: tuple[int, int], process: Process
) -> None:
    result = process(encoded(marked(*size), fmt), ALL_FORMS)
    assert (result.width, result.height) == size
    assert [r.name for r in result.renditions] == ALL_FORMS.replace("=", ",").split(",")[::2]
    got = {r.name: (r.width, r.height) for r in result.renditions}
    if size == (400, 300):
        assert got == {
            "w": (100, 75),
            "h": (80, 60),
            "fit": (100, 75),
            "cover": (64, 64),
            "exact": (50, 70),
            "pct": (100, 75),
            "big": (400, 300),
            "tall": (400, 300),
        }
    for rendition in result.renditions:
        assert rendition.format == fmt
        opened(rendition)


@pytest.mark.parametrize(
    ("size", "spec"),
    [
        ((4000, 3000), "256x256"),
        ((3999, 2999), "37%"),
        ((4001, 1333), "x97"),
        ((2500, 2500), "333x333#"),
        ((2048, 1024), "100x700!"),
        ((1921, 1081), "1919"),
    ],
)
def test_drafted_jpeg_still_gives_exact_sizes(
    size: tuple[int, int], spec: str, process: Process
) -> None:
    result = process(encoded(marked(*size), "JPEG"), f"one={spec},two=64")
    expected = Geometry.parse(spec).output_size(*size)
    assert (result.renditions[0].width, result.renditions[0].height) == expected
    assert (result.renditions[1].width, result.renditions[1].height) == (
        Geometry.parse("64").output_size(*size)
    )
    for rendition in result.renditions:
        opened(rendition)


# Where the stored top-left corner is displayed, for each EXIF orientation.
CORNER = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("stored", [(400, 200), (1600, 800)])
@pytest.mark.parametrize("strip", [True, False])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(
    orientation: int, stored: tuple[int, int], strip: bool, fmt: str, process: Process
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    params = {"quality": 95} if fmt == "JPEG" else {}
    data = encoded(marked(*stored), fmt, exif=exif, **params)
    result = process(data, "full=100%,small=100", strip_metadata=strip)

    swapped = orientation >= 5
    displayed = (stored[1], stored[0]) if swapped else stored
    assert (result.width, result.height) == displayed
    assert result.metadata["orientation"] == orientation
    full, small = (opened(r) for r in result.renditions)
    assert full.size == displayed
    assert small.width == 100
    for img in (full, small):
        assert 0x0112 not in img.getexif()
        assert_marked_corner(img, orientation)


def assert_marked_corner(img: Image.Image, orientation: int) -> None:
    """The marked (blue) corner is where ``orientation`` puts it; the others are red."""
    rgb = img.convert("RGB")
    w, h = rgb.size
    points = {
        "tl": (w // 16, h // 16),
        "tr": (w - 1 - w // 16, h // 16),
        "bl": (w // 16, h - 1 - h // 16),
        "br": (w - 1 - w // 16, h - 1 - h // 16),
    }
    for corner, point in points.items():
        colour = BLUE if corner == CORNER[orientation] else RED
        assert close(px(rgb, point), colour, 40), (corner, px(rgb, point))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(
    "compression", ["raw", "tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg"]
)
def test_tiff_orientation_is_applied_exactly_once(
    orientation: int, compression: str, process: Process
) -> None:
    """Pillow applies a TIFF's Orientation tag itself as it decodes (and gives
    the displayed size at open): the pipeline must neither turn the pixels
    again nor swap the size again."""
    stored = (96, 48)
    exif = {0x0112: orientation}
    data = encoded(marked(*stored), "TIFF", compression=compression, tiffinfo=exif)
    result = process(data, "full=100%,small=32")

    swapped = orientation >= 5
    displayed = (stored[1], stored[0]) if swapped else stored
    assert (result.width, result.height) == displayed
    assert result.metadata["orientation"] == orientation
    assert read_metadata(data, 50_000_000)[1:3] == displayed
    full, small = (opened(r) for r in result.renditions)
    assert full.size == displayed
    assert small.size == ((32, 64) if swapped else (32, 16))
    for img in (full, small):
        assert_marked_corner(img, orientation)


def test_cmyk_jpeg_becomes_rgb_with_its_colours(process: Process) -> None:
    img = Image.new("CMYK", (64, 32), (255, 0, 0, 0))  # cyan
    img.paste((0, 255, 255, 0), (32, 0, 64, 32))  # red
    result = process(encoded(img, "JPEG", quality=95), "t=32")
    assert result.format == "JPEG"
    assert result.metadata["mode"] == "CMYK"
    out = opened(result.renditions[0])
    assert out.mode == "RGB"
    assert close(px(out, (4, 8)), (0, 255, 255), 20)
    assert close(px(out, (28, 8)), (255, 0, 0), 20)


def test_16_bit_png_is_scaled_not_clipped(process: Process) -> None:
    ramp = Image.linear_gradient("L").rotate(90).resize((256, 32))  # 255 left .. 0 right
    sixteen = ramp.convert("I").point(lambda v: v * 257).convert("I;16")
    data = encoded(sixteen, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    result = process(data, "t=128")
    assert result.metadata["mode"] == "I;16"
    out = opened(result.renditions[0])
    assert out.mode == "L"
    low, high = cast("tuple[int, int]", out.getextrema())
    assert low < 10 and high > 245
    assert 100 < px(out, (64, 8))[0] < 156


def test_palette_png_with_transparency_keeps_alpha(process: Process) -> None:
    img = Image.new("P", (40, 40), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(0, (0, 0, 20, 40))
    result = process(encoded(img, "PNG", transparency=0), "t=40")
    assert result.metadata["has_alpha"] is True
    assert result.metadata["mode"] == "P"
    out = opened(result.renditions[0])
    assert out.format == "PNG" and out.mode == "RGBA"
    assert px(out, (5, 20))[3] == 0
    assert px(out, (35, 20)) == (255, 0, 0, 255)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_alpha_flattens_onto_white_for_jpeg(fmt: str, process: Process) -> None:
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent *black*
    img.paste((200, 0, 0, 255), (20, 0, 40, 40))
    result = process(encoded(img, fmt, lossless=True), "t=40", output_format="jpeg")
    out = opened(result.renditions[0])
    assert out.mode == "RGB" and result.renditions[0].content_type == "image/jpeg"
    assert close(px(out, (5, 20)), (255, 255, 255), 3)
    assert close(px(out, (35, 20)), (200, 0, 0), 10)


def test_grey_with_alpha_flattens_to_grey_jpeg(process: Process) -> None:
    img = Image.new("LA", (40, 40), (0, 0))
    img.paste((50, 255), (20, 0, 40, 40))
    result = process(encoded(img, "PNG"), "t=40", output_format="jpeg")
    out = opened(result.renditions[0])
    assert out.mode == "L"
    assert px(out, (5, 20))[0] >= 252
    assert close(px(out, (35, 20)), (50,), 6)


def test_greyscale_stays_greyscale(process: Process) -> None:
    result = process(encoded(Image.linear_gradient("L"), "JPEG"), "t=64")
    assert opened(result.renditions[0]).mode == "L"


def test_gif_becomes_png_of_its_first_frame(process: Process) -> None:
    frames = [Image.new("RGB", (30, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    result = process(data, "t=30")
    assert (result.format, result.content_type) == ("GIF", "image/gif")
    rendition = result.renditions[0]
    assert (rendition.format, rendition.content_type) == ("PNG", "image/png")
    out = opened(rendition)
    assert close(px(out.convert("RGB"), (15, 10)), (255, 0, 0), 2)


@pytest.mark.parametrize(
    ("fmt", "mode", "source_type", "out_format", "out_type"),
    [
        ("TIFF", "RGB", "image/tiff", "JPEG", "image/jpeg"),
        ("TIFF", "RGBA", "image/tiff", "PNG", "image/png"),
        ("TIFF", "L", "image/tiff", "JPEG", "image/jpeg"),
        ("BMP", "RGB", "image/bmp", "JPEG", "image/jpeg"),
        ("BMP", "P", "image/bmp", "JPEG", "image/jpeg"),
        ("WEBP", "RGB", "image/webp", "WEBP", "image/webp"),
        ("WEBP", "RGBA", "image/webp", "WEBP", "image/webp"),
        ("PNG", "RGB", "image/png", "PNG", "image/png"),
        ("PNG", "1", "image/png", "PNG", "image/png"),
        ("JPEG", "RGB", "image/jpeg", "JPEG", "image/jpeg"),
    ],
)
def test_auto_output_format(
    fmt: str, mode: str, source_type: str, out_format: str, out_type: str, process: Process
) -> None:
    img = marked(60, 40).convert(mode)
    result = process(encoded(img, fmt), "t=30")
    assert (result.format, result.content_type) == (fmt, source_type)
    rendition = result.renditions[0]
    assert (rendition.format, rendition.content_type) == (out_format, out_type)
    assert (rendition.width, rendition.height) == (30, 20)
    opened(rendition)


@pytest.mark.parametrize(
    ("requested", "out_format", "out_type"),
    [("jpeg", "JPEG", "image/jpeg"), ("png", "PNG", "image/png"), ("webp", "WEBP", "image/webp")],
)
@pytest.mark.parametrize("source", ["JPEG", "PNG", "GIF", "WEBP"])
def test_explicit_output_format(
    source: str, requested: str, out_format: str, out_type: str, process: Process
) -> None:
    result = process(encoded(marked(60, 40), source), "a=30,b=20x20#", output_format=requested)
    for rendition in result.renditions:
        assert (rendition.format, rendition.content_type) == (out_format, out_type)
        opened(rendition)


def test_quality_is_applied(process: Process) -> None:
    noisy = Image.effect_noise((200, 200), 80).convert("RGB")
    data = encoded(noisy, "JPEG", quality=95)
    low = process(data, "t=200", jpeg_quality=20).renditions[0].data
    high = process(data, "t=200", jpeg_quality=95).renditions[0].data
    assert len(low) < len(high) / 2


@pytest.mark.parametrize(
    "options",
    [
        {"output_format": "gif"},
        {"jpeg_quality": 0},
        {"jpeg_quality": 96},
        {"max_pixels": 0},
    ],
)
def test_options_are_validated(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"output_format|jpeg_quality|max_pixels"):
        ImagingOptions(parse_renditions("t=10"), **options)
