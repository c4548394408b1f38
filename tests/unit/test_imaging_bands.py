"""Resizing in bands on threads, the base reduce() and the encoder settings."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageChops, JpegImagePlugin

from chalicelib.imaging import ImagingOptions, parse_renditions, process_image, resize


def noisy(size: tuple[int, int], mode: str = "RGB", seed: int = 3) -> Image.Image:
    """Smooth gradients with per-pixel noise: every band boundary would show."""
    rng = random.Random(seed)
    bands = len(mode)
    noise = Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * bands))
    ramp = Image.linear_gradient("L").resize(size).convert(mode)
    return Image.blend(ramp, noise, 0.3)


def difference(a: Image.Image, b: Image.Image) -> tuple[int, float]:
    """Largest and mean absolute difference over all channels."""
    assert a.size == b.size and a.mode == b.mode
    histogram = ImageChops.difference(a, b).histogram()
    counts = [sum(histogram[v::256]) for v in range(256)]  # all bands together
    largest = max(v for v, n in enumerate(counts) if n)
    return largest, sum(v * n for v, n in enumerate(counts)) / sum(counts)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize(
    ("source", "size"),
    [((2000, 1500), (1600, 1200)), ((1600, 1200), (800, 600)), ((999, 777), (321, 250))],
)
def test_bands_match_one_lanczos_resize(
    mode: str, source: tuple[int, int], size: tuple[int, int]
) -> None:
    img = noisy(source, mode)
    banded = resize._resample(img, size, (0, 0, *source))
    whole = img.resize(size, Image.Resampling.LANCZOS)
    assert banded.size == size and banded.mode == mode
    # Pillow may run a band's two passes in the other order (8-bit intermediate):
    # a rounding step apart, a few more where Lanczos ringing is clipped.
    largest, mean = difference(banded, whole)
    assert largest <= 12 and mean < 0.5


def test_bands_of_a_cover_region_match() -> None:
    img = noisy((1200, 900))
    box = (150.5, 0.0, 1050.5, 900.0)
    banded = resize._resample(img, (400, 400), box)
    whole = img.resize((400, 400), Image.Resampling.LANCZOS, box=box)
    largest, mean = difference(banded, whole)
    assert largest <= 12 and mean < 0.5


def test_large_ratios_are_not_banded() -> None:
    # Pillow reduce()s first at 2 x REDUCING_GAP or more; bands would each
    # reduce on their own grid, so such a resize is done in one piece.
    img = noisy((1600, 1200))
    once = img.resize((160, 120), Image.Resampling.LANCZOS, reducing_gap=resize.REDUCING_GAP)
    assert resize._resample(img, (160, 120), (0, 0, 1600, 1200)).tobytes() == once.tobytes()


@pytest.mark.parametrize(
    ("size", "needed", "reduced"),
    [
        ((4000, 3000), (1600, 1200), (2000, 1500)),  # 2.5x: by 2, 1.25x left for Lanczos
        ((4000, 3000), (1700, 1275), (4000, 3000)),  # 2.35x: by 2 would leave under 1.25x
        ((4000, 3000), (256, 192), (334, 250)),  # by 12
        ((4000, 1000), (1600, 800), (4000, 1000)),  # the short side decides
        ((300, 200), (300, 200), (300, 200)),
    ],
)
def test_base_is_reduced_like_a_jpeg_draft(
    size: tuple[int, int], needed: tuple[int, int], reduced: tuple[int, int]
) -> None:
    out = resize.reduce_base(Image.new("RGB", size), needed)
    assert out.size == reduced
    assert out.width >= needed[0] and out.height >= needed[1]


def test_png_source_is_reduced_before_resizing_and_keeps_exact_sizes() -> None:
    buffer = io.BytesIO()
    noisy((2600, 1950)).save(buffer, "PNG", compress_level=1)
    result = process_image(buffer.getvalue(), ImagingOptions(parse_renditions("l=1000,m=500")))
    assert [(r.width, r.height) for r in result.renditions] == [(1000, 750), (500, 375)]


def test_same_input_same_bytes() -> None:
    buffer = io.BytesIO()
    noisy((1800, 1200)).save(buffer, "JPEG", quality=90)
    options = ImagingOptions(parse_renditions("l=1200,m=600,t=100x100#"))
    first = process_image(buffer.getvalue(), options)
    second = process_image(buffer.getvalue(), options)
    assert [r.data for r in first.renditions] == [r.data for r in second.renditions]


def test_jpeg_renditions_are_baseline_with_420_chroma() -> None:
    buffer = io.BytesIO()
    noisy((800, 600)).save(buffer, "JPEG", quality=90)
    (rendition,) = process_image(
        buffer.getvalue(), ImagingOptions(parse_renditions("m=400"))
    ).renditions
    out = Image.open(io.BytesIO(rendition.data))
    assert isinstance(out, JpegImagePlugin.JpegImageFile)
    assert "progressive" not in out.info and "progression" not in out.info
    assert JpegImagePlugin.get_sampling(out) == 2  # 4:2:0


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(2600, 1950), (2601, 1951), (1003, 3001)])
def test_banded_base_reduce_is_one_reduce(mode: str, size: tuple[int, int]) -> None:
    img = noisy(size, mode)
    needed = (size[0] // 3, size[1] // 3)  # 3x: reduce by 2
    out = resize.reduce_base(img, needed)
    assert out.tobytes() == img.reduce(2).tobytes()
