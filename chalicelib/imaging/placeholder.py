"""The record's ``placeholder``: a BlurHash of a rendition and its average colour.

Standard BlurHash (https://blurha.sh), so any decoder paints it. It is made
from pixels already decoded for a rendition, never from a new decode, in
about half a millisecond whatever the rendition's size
(``bench/results/placeholder.md``):

- **Downscale.** The encoder sums every pixel once per component, so it runs
  on a copy at most ``SIZE`` px on the long side (aspect kept): plenty for at
  most 6 cosine components. An image more than ``GRID`` times that size is
  first sampled to a grid of ``GRID`` x ``GRID`` pixels per output pixel
  (nearest neighbour, which reads only those pixels) and that grid box-averaged:
  a plain box average of a 1600x1200 rendition alone would read all of its
  2 million pixels and take longer than the whole budget. Renditions are
  already Lanczos-filtered, so 64 samples per cell are a faithful mean; only
  a pattern finer than the sampling step (a 1-pixel pinstripe) can alias.
  Given a small rendition (up to 256 px), every pixel is averaged.
- **Alpha.** LA and RGBA are composited onto white before averaging, as the
  JPEG renditions are (transparent never turns black); L becomes grey RGB.
- **Components.** ``components(width, height)``: 4 to 6 on the long side
  and the short side in proportion, so cells stay about square; never more
  than the downscaled image has pixels on that axis (a 1-pixel strip has one
  row of components, not aliases of it).
- **Encoding.** The reference encoder's: its basis cos(pi i x / width) at
  whole pixels, sRGB <-> linear, AC maximum and square-root quantisation,
  base83; so for the same pixels the hash is the one other standard encoders
  give (the PyPI ``blurhash`` package's, in the tests), including their faint
  ripple towards the top and left edges of a flat area.
- **Speed, without numpy.** sRGB to linear is a 256-entry table, the cosines
  are tables per (length, count), and the transform is separable: each row is
  reduced against the horizontal cosines, then each column of those sums
  against the vertical ones, with ``math.sumprod`` doing the inner loops in C.

The input image is only read: not closed, converted in place or otherwise changed.
"""

from __future__ import annotations

import math
from functools import cache

from PIL import Image

from .encode import flatten
from .modes import ALPHA_MODES, WORKING_MODES

# Long side of the image the BlurHash is computed on.
SIZE = 32
# Samples per output pixel and axis taken from a larger image before averaging.
GRID = 8
# Components on the long side: ``LONG_BASE`` times the aspect ratio, within
# ``MIN_LONG``..``MAX_LONG``; at most ``MAX_SHORT`` on the short side.
LONG_BASE = 4
MIN_LONG = 4
MAX_LONG = 6
MAX_SHORT = 4

_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"


def _srgb_to_linear(value: int) -> float:
    v = value / 255
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


_LINEAR = tuple(_srgb_to_linear(v) for v in range(256))


def placeholder(image: Image.Image) -> dict[str, str]:
    """``{"blurhash": ..., "color": "#rrggbb"}`` of ``image`` (L, LA, RGB or RGBA).

    Components as ``components`` gives them for ``image``'s size, at most the
    downscaled image's pixels on each axis. ``color`` is the BlurHash's DC
    term: the mean colour in linear light, as sRGB. Other modes and empty
    images raise ValueError.
    """
    small = downscale(image)
    x_count, y_count = components(image.width, image.height)
    blurhash = encode_blurhash(small, min(x_count, small.width), min(y_count, small.height))
    return {"blurhash": blurhash, "color": average_color(blurhash)}


def components(width: int, height: int) -> tuple[int, int]:
    """BlurHash components (x, y) for an image of ``width`` x ``height``.

    Long side: ``LONG_BASE`` x aspect ratio, rounded (halves up), kept within
    4..6; short side: the long side's count / aspect ratio, rounded, within
    1..4. Square 4x4, 4:3 5x4, 3:2 6x4, 16:9 and 2:1 6x3, 3:1 6x2, 1:10 1x6.
    """
    if width < 1 or height < 1:
        raise ValueError("an empty image has no placeholder")
    aspect = max(width, height) / min(width, height)
    long = min(MAX_LONG, max(MIN_LONG, int(LONG_BASE * aspect + 0.5)))
    short = min(MAX_SHORT, max(1, int(long / aspect + 0.5)))
    return (long, short) if width >= height else (short, long)


def downscale(image: Image.Image) -> Image.Image:
    """A new RGB image at most ``SIZE`` px on the long side, alpha composited onto white."""
    if image.mode not in WORKING_MODES:
        raise ValueError(f"placeholders need an L, LA, RGB or RGBA image, not {image.mode}")
    width, height = image.size
    target = _fit(width, height, SIZE)
    grid = (min(width, GRID * target[0]), min(height, GRID * target[1]))
    small = image
    if grid != small.size:
        small = small.resize(grid, Image.Resampling.NEAREST)
    if small.mode in ALPHA_MODES:
        small = flatten(small)
    if target != small.size:
        small = small.resize(target, Image.Resampling.BOX)
    # Always a new image: the caller's is never handed back to be changed.
    return small if small.mode == "RGB" and small is not image else small.convert("RGB")


def encode_blurhash(rgb: Image.Image, x_count: int, y_count: int) -> str:
    """The BlurHash of every pixel of the RGB image ``rgb``, with these components.

    ``rgb`` should be small (``downscale``): the cost grows with its pixels.
    """
    if rgb.mode != "RGB":
        raise ValueError(f"encode_blurhash needs an RGB image, not {rgb.mode}")
    if not (1 <= x_count <= 9 and 1 <= y_count <= 9):
        raise ValueError("BlurHash components must be between 1 and 9 on each axis")
    width, height = rgb.size
    data = rgb.tobytes()
    cos_x, cos_y = _cosines(width, x_count), _cosines(height, y_count)
    # factors[channel][j * x_count + i]: the (i, j) component, unnormalised.
    factors = [_transform([_LINEAR[v] for v in data[c::3]], width, cos_x, cos_y) for c in range(3)]
    scale = 1 / (width * height)
    dc = [f[0] * scale for f in factors]
    ac = [[f[k] * 2 * scale for f in factors] for k in range(1, x_count * y_count)]

    if ac:
        largest = max(abs(v) for channels in ac for v in channels)
        quantised_max = max(0, min(82, math.floor(largest * 166 - 0.5)))
        maximum = (quantised_max + 1) / 166
    else:
        quantised_max, maximum = 0, 1.0
    red, green, blue = (_linear_to_srgb(v) for v in dc)
    parts = [
        _base83((x_count - 1) + (y_count - 1) * 9, 1),
        _base83(quantised_max, 1),
        _base83(red << 16 | green << 8 | blue, 4),
    ]
    for r, g, b in ac:
        value = _quantise(r, maximum) * 361 + _quantise(g, maximum) * 19 + _quantise(b, maximum)
        parts.append(_base83(value, 2))
    return "".join(parts)


def average_color(blurhash: str) -> str:
    """The ``#rrggbb`` a BlurHash's DC term encodes (its characters 3 to 6)."""
    value = 0
    for char in blurhash[2:6]:
        value = value * 83 + _BASE83.index(char)
    return f"#{value:06x}"


def _transform(
    channel: list[float],
    width: int,
    cos_x: tuple[tuple[float, ...], ...],
    cos_y: tuple[tuple[float, ...], ...],
) -> list[float]:
    """Sum of pixel x cos_x[i][x] x cos_y[j][y] for each (i, j), j-major.

    Separable: (rows x x_count) sums, then (x_count x y_count) column sums, rather
    than a pass over every pixel for every component.
    """
    rows = [channel[y : y + width] for y in range(0, len(channel), width)]
    by_i = [[math.sumprod(cx, row) for row in rows] for cx in cos_x]
    return [math.sumprod(cy, column) for cy in cos_y for column in by_i]


@cache
def _cosines(length: int, count: int) -> tuple[tuple[float, ...], ...]:
    """cos(pi k x / length) for k < count (rows) and x < length (columns)."""
    return tuple(
        tuple(math.cos(math.pi * k * x / length) for x in range(length)) for k in range(count)
    )


def _fit(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) scaled down to at most ``longest`` on the long side, never up."""
    if width < 1 or height < 1:
        raise ValueError("an empty image has no placeholder")
    scale = longest / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _linear_to_srgb(value: float) -> int:
    v = max(0.0, min(1.0, value))
    if v <= 0.0031308:
        return int(v * 12.92 * 255 + 0.5)
    return int((1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5)


def _quantise(value: float, maximum: float) -> int:
    """An AC value as 0..18: the square root (sign kept) of its share of ``maximum``."""
    root = math.copysign(math.sqrt(abs(value / maximum)), value)
    return max(0, min(18, math.floor(root * 9 + 9.5)))


def _base83(value: int, length: int) -> str:
    return "".join(_BASE83[value // 83 ** (length - 1 - n) % 83] for n in range(length))
