"""The libvips engine on its own: what it takes, what it refuses, how it agrees with Pillow.

The behaviour both engines share (sizes, orientation, modes, formats, metadata,
rejections) is tested once for both: the ``process`` fixture runs each such
test on each engine.
"""

from __future__ import annotations

import io
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pyvips
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageFilter, ImageStat

from chalicelib.imaging import (
    ImageRejected,
    ImagingOptions,
    decode,
    parse_renditions,
    process_image,
    vips,
)
from chalicelib.imaging.pipeline import read_header, rendition_images
from tests import hostile_files as hostile
from tests.unit.conftest import Process

PROJECT = Path(__file__).resolve().parents[2]


def encoded(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo(width: int, height: int) -> Image.Image:
    """Soft shapes and grain: enough detail for two resamplers to differ visibly."""
    rng = random.Random(3)
    img = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    img = Image.blend(img, noise, 0.3)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(5, max(6, width // 5))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        img.paste(colour, (x, y, min(width, x + r), min(height, y + r)))
    return img.filter(ImageFilter.GaussianBlur(1))


def options(renditions: str, engine: str = "vips") -> ImagingOptions:
    return ImagingOptions(parse_renditions(renditions), engine=engine)


def taken(data: bytes, renditions: str = "t=40") -> bool:
    """Whether libvips makes the pixels (rather than handing the file to Pillow)."""
    opts = options(renditions)
    with decode.decoding(opts.max_pixels):
        return vips.render(data, read_header(data, opts)) is not None


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("JPEG", "RGB"),
        ("JPEG", "L"),
        ("PNG", "RGB"),
        ("PNG", "RGBA"),
        ("PNG", "LA"),
        ("PNG", "L"),
        ("WEBP", "RGB"),
        ("WEBP", "RGBA"),
    ],
)
def test_takes_8_bit_photographic_formats(fmt: str, mode: str) -> None:
    assert taken(encoded(Image.new(mode, (64, 48)), fmt))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("GIF", encoded(Image.new("RGB", (64, 48)), "GIF")),
        ("TIFF", encoded(Image.new("RGB", (64, 48)), "TIFF")),
        ("BMP", encoded(Image.new("RGB", (64, 48)), "BMP")),
        ("CMYK JPEG", encoded(Image.new("CMYK", (64, 48)), "JPEG")),
        ("palette PNG", encoded(Image.new("P", (64, 48)), "PNG")),
        ("16-bit PNG", encoded(Image.new("I;16", (64, 48)), "PNG")),
        ("RGB PNG with tRNS", encoded(Image.new("RGB", (64, 48)), "PNG", transparency=(0, 0, 0))),
        (
            "animated WebP",
            encoded(
                Image.new("RGB", (64, 48)),
                "WEBP",
                save_all=True,
                append_images=[Image.new("RGB", (64, 48), "red")],
            ),
        ),
    ],
)
def test_hands_the_rest_to_pillow(name: str, data: bytes) -> None:
    assert not taken(data), name
    # ... and the image is still processed, by the Pillow engine.
    assert rendition_images(data, options("t=40"))[0].width == 40


def test_the_result_names_the_engine_that_made_the_pixels() -> None:
    jpeg = encoded(Image.new("RGB", (64, 48)), "JPEG")
    gif = encoded(Image.new("RGB", (64, 48)), "GIF")
    assert process_image(jpeg, options("t=40")).engine == "vips"
    assert process_image(gif, options("t=40")).engine == "pillow"
    assert process_image(jpeg, options("t=40", "pillow")).engine == "pillow"


@pytest.mark.parametrize(
    ("size", "renditions", "engine"),
    [
        ((10, 300_000), "t=256x256", "pillow"),  # a shrink of 1,172 along the height
        ((300_000, 10), "t=256x256", "pillow"),
        ((10, 300_000), "t=x300", "vips"),  # 1,000: libvips is about as fast
        ((64, 47_000), "t=256x256", "vips"),
    ],
)
def test_a_shape_libvips_would_shrink_slowly_goes_to_pillow(
    size: tuple[int, int], renditions: str, engine: str
) -> None:
    """libvips took 35 s for a 1x49,000,000 PNG's renditions, Pillow 3 s."""
    result = process_image(hostile.png_size(*size), options(renditions))
    assert result.engine == engine
    assert (result.width, result.height) == size


def test_16_bit_rgb_png_goes_to_pillow_after_libvips_reads_its_header() -> None:
    # Pillow calls it plain RGB; libvips finds 16-bit samples and declines.
    rgb48 = pyvips.Image.black(64, 48, bands=3).cast("ushort").copy(interpretation="rgb16")
    data = bytes(rgb48.pngsave_buffer(bitdepth=16))
    assert Image.open(io.BytesIO(data)).mode == "RGB"
    assert not taken(data)
    assert rendition_images(data, options("t=40"))[0].size == (40, 30)


def test_every_loader_but_png_is_blocked() -> None:
    taken(encoded(Image.new("RGB", (8, 8)), "JPEG"))  # the engine has been set up
    assert vips.DECODERS == {"JPEG": "pillow", "WEBP": "pillow", "PNG": "libvips"}
    for fmt in ("GIF", "JPEG", "WEBP", "TIFF"):
        data = encoded(Image.new("RGB", (8, 8)), fmt)
        with pytest.raises(pyvips.Error, match=r"blocked|not in a known format"):
            pyvips.Image.new_from_buffer(data, "").avg()
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    with pytest.raises(pyvips.Error, match="blocked"):
        pyvips.Image.svgload_buffer(svg).avg()
    png = encoded(Image.new("RGB", (8, 8), "red"), "PNG")
    assert pyvips.Image.pngload_buffer(png).avg() == 255 / 3


@given(
    width=st.integers(1, 600),
    height=st.integers(1, 600),
    need_w=st.integers(1, 600),
    need_h=st.integers(1, 600),
)
def test_draft_scale_is_pillows(width: int, height: int, need_w: int, need_h: int) -> None:
    img = Image.open(io.BytesIO(encoded(Image.new("RGB", (width, height)), "JPEG")))
    img.draft("RGB", (need_w, need_h))
    scale = vips.draft_scale((width, height), (need_w, need_h))
    assert img.size == (-(-width // scale), -(-height // scale))


@pytest.mark.parametrize(
    ("fmt", "size", "renditions"),
    [
        ("JPEG", (1200, 900), "a=600,b=300,c=100,sq=120x120#,ex=200x50!"),
        ("PNG", (900, 1200), "a=600,b=300,c=100,sq=120x120#"),
        ("WEBP", (1000, 700), "a=500,c=90"),
    ],
)
def test_both_engines_make_the_same_picture(
    fmt: str, size: tuple[int, int], renditions: str
) -> None:
    data = encoded(photo(*size), fmt, quality=95)
    by_pillow = rendition_images(data, options(renditions, "pillow"))
    by_vips = rendition_images(data, options(renditions, "vips"))
    for a, b in zip(by_pillow, by_vips, strict=True):
        assert (a.size, a.mode) == (b.size, b.mode)
        difference = ImageStat.Stat(ImageChops.difference(a, b)).mean
        assert max(difference) < 2.5, (a.size, difference)


@pytest.mark.parametrize(
    ("renditions", "orientation", "streamed"),
    [
        ("a=600,b=300,c=100", 1, True),  # b from a, c from b: the base is read once
        ("a=600,b=300,c=100", 2, True),  # a mirror keeps the rows in order
        ("a=600,b=300,c=100", 6, False),  # a turn reads the base column by column
        ("a=600,b=500", 1, False),  # b is not half a: both read the base
    ],
)
def test_base_is_streamed_only_when_read_once_in_order(
    renditions: str, orientation: int, streamed: bool
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(Image.new("RGB", (1200, 900)), "PNG", exif=exif)
    opts = options(renditions)
    with decode.decoding(opts.max_pixels):
        header = read_header(data, opts)
    assert vips._read_once(header, header.image.size) is streamed


def test_transparent_pixels_do_not_bleed_into_their_neighbours(process: Process) -> None:
    img = Image.new("RGBA", (200, 200), (255, 0, 0, 255))
    img.paste((0, 255, 0, 0), (0, 0, 100, 200))  # fully transparent green, left half
    (rendition,) = process(encoded(img, "PNG"), "t=50").renditions
    out = Image.open(io.BytesIO(rendition.data))
    for x in (24, 25):  # the half-transparent edge
        r, g, _, a = out.getpixel((x, 25))  # type: ignore[misc]
        assert a > 0 and g < 5 and r > 240, (x, out.getpixel((x, 25)))


def test_libvips_errors_become_rejections_or_memory_errors() -> None:
    broken = pyvips.Error("unable to call jpegload_buffer", "VipsJpeg: Corrupt data\nload error")
    assert str(vips._translated(broken)) == (
        "image data is truncated or corrupt: VipsJpeg: Corrupt data"
    )
    assert isinstance(vips._translated(broken), ImageRejected)
    assert isinstance(vips._translated(pyvips.Error("x", "vips: out of memory")), MemoryError)


FAULTS = """
import io, resource, sys
from PIL import Image
from chalicelib.imaging import ImagingOptions, parse_renditions, process_image, vips
vips.KEEP_BUFFERS = sys.argv[1] == "keep"
img = Image.effect_noise((3000, 2000), 40).convert("RGB")
buffer = io.BytesIO()
img.save(buffer, "JPEG")
options = ImagingOptions(parse_renditions("a=2400,b=1200,c=300"), engine="vips")
for _ in range(3):
    process_image(buffer.getvalue(), options)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
process_image(buffer.getvalue(), options)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_big_buffers_are_kept_for_the_next_image() -> None:
    """A warm function's next image reuses the last one's memory instead of
    page-faulting its buffers in anew."""

    def faults(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", FAULTS, mode],
            cwd=PROJECT, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return int(done.stdout)

    kept, default = faults("keep"), faults("default")
    assert default > 2000  # the base alone is 4,400 pages
    assert kept < default / 4, (kept, default)
