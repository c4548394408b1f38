"""``CROP_GRAVITY=attention``: where a cover (``WxH#``) crop keeps the most salient part.

The crop window keeps its size and scale; only its offset moves, towards
what draws the eye, as libvips's ``smartcrop`` with ``interesting=attention``
(after smartcrop.js) scores it: detail, skin tones and saturation.

Everything is computed on a small copy of the whole frame, about
``ANALYSIS_SIDE`` pixels on its long side, that the engine makes from the
image the crop is cut from (``Sampling``), with Pillow's C operations for the
per-pixel work and pure Python only over its grid of some 7,500 cells, once
per source whatever the number of cover renditions: a few ms per crop, within
the 10 ms budget at 12 MP (``bench/results/attention.md``). Detail finer than
the small copy shows is ignored on purpose: a 256 px thumbnail cannot show
it either, and sensor grain or JPEG noise then never looks like a subject.

Per pixel of the small copy, three scores of 0..255:

- detail: ``|L - box3x3(L)|`` of the luma (a high-pass, like libvips's
  Laplacian edge score), times ``DETAIL_GAIN``;
- skin: closeness of (Cb, Cr) to the skin-tone cluster (Cb about 98, Cr
  about 155 in JPEG's YCbCr for light to dark skin), faded out in dark areas,
  as smartcrop.js and libvips ignore dark pixels for it;
- saturation: chroma, ``max(R, G, B) - min(R, G, B)`` (HSV ``S * V``), so a
  dark pixel's noisy hue does not count as colour.

They are summed with ``WEIGHTS``, each weight first scaled by how much its
score stands out from the frame's average (``_uniqueness``: texture or
colour all over the frame tells no place from another), clipped at 255, and
multiplied by the alpha of a transparent image.

Unlike libvips, which centres the window on the peak of a blurred 32x32
map, the window is placed where it holds the most saliency (window sums from
a summed-area table), plus ``INNER_BONUS`` times what its central half holds,
so a subject smaller than the window ends up in its middle rather than on an
edge. Offsets scoring within ``TIE`` and ``FLOOR`` of the best are equal, and
of those the one nearest the centre crop wins: a flat or evenly busy picture
keeps its centre crop exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from operator import add

from PIL import Image, ImageChops, ImageFilter, ImageStat

# The small copy's long side: about this (2/3 to 4/3 of it), unless the image is smaller.
ANALYSIS_SIDE = 96
# Box average of about this many picked pixels a side per small-copy pixel.
BOX = 4
# Weights of (detail, skin, saturation) in the saliency, each score 0..255.
WEIGHTS = (0.45, 0.35, 0.3)
# |L - box3x3(L)| is rarely over 60 even at strong edges on the small copy.
DETAIL_GAIN = 4.0
# Skin-tone cluster in (Cb, Cr): centre and spread (JPEG YCbCr, 0..255).
SKIN_CB, SKIN_CB_SPREAD = 98.0, 16.0
SKIN_CR, SKIN_CR_SPREAD = 155.0, 10.0
# Luma under which skin tones fade out (0 at DARK_LUMA, full at LIGHT_LUMA).
DARK_LUMA, LIGHT_LUMA = 30, 60
# The quantile of a score taken as its high value (``_uniqueness``).
PEAK = 0.99
# What a window's central half adds to its score, per unit of saliency.
INNER_BONUS = 0.5
# Offsets scoring within this share of the spread of all scores are equal, and
# within FLOOR saliency per grid cell of the window (noise on a flat picture).
TIE = 0.02
FLOOR = 0.1

Point = tuple[int, int]


@dataclass(frozen=True)
class Sampling:
    """How an engine makes the small copy of an image: it picks the pixels
    (``i * step[0]``, ``j * step[1]``), ``picked`` of them, and averages each
    ``box`` block of those.

    Picking first bounds the cost by the copy's size, not the image's: a box
    reduce of a 12 MP base took 10 to 30 ms here, more than the whole budget.
    Averaging ``BOX`` x ``BOX`` picks still smooths grain and JPEG noise away.
    Both engines pick the very same pixels (libvips's ``subsample``, Pillow's
    nearest-neighbour affine ``transform``) and average whole blocks, so their
    copies agree to rounding.
    """

    step: tuple[int, int]
    box: tuple[int, int]
    picked: tuple[int, int]
    span: tuple[float, float]
    """The share of the image's width and height the copy covers, from the
    top left: all of it but less than a ``step * box`` at the right and the bottom."""


def sampling(size: tuple[int, int]) -> Sampling:
    """The ``Sampling`` of an image of ``size``: about ``ANALYSIS_SIDE`` on its
    long side, each axis shrunk by the same factor (or by its whole length)."""
    factor = max(1, round(max(size) / ANALYSIS_SIDE))
    steps, boxes, picked, span = [], [], [], []
    for length in size:
        shrink = min(factor, length)
        step = max(1, round(shrink / BOX))
        box = max(1, shrink // step)
        count = length // step // box * box
        steps.append(step)
        boxes.append(box)
        picked.append(count)
        span.append(count * step / length)
    return Sampling(
        (steps[0], steps[1]), (boxes[0], boxes[1]), (picked[0], picked[1]), (span[0], span[1])
    )


def small_copy(image: Image.Image, plan: Sampling) -> Image.Image:
    """Pillow's small copy of ``image`` (``Sampling``)."""
    (sx, sy), (width, height) = plan.step, plan.picked
    if (sx, sy) == (1, 1):
        picked = image if image.size == plan.picked else image.crop((0, 0, width, height))
    else:
        # Output pixel (i, j) samples at (sx * (i + 0.5) + cx, ...), floored:
        # cx = 0.5 - sx / 2 picks exactly (sx * i, sy * j).
        matrix = (sx, 0, 0.5 - sx / 2, 0, sy, 0.5 - sy / 2)
        picked = image.transform(
            plan.picked, Image.Transform.AFFINE, matrix, Image.Resampling.NEAREST
        )
    return picked if plan.box == (1, 1) else picked.reduce(plan.box)


@dataclass(frozen=True)
class Saliency:
    """A frame's saliency on a grid of ``width`` x ``height`` cells, as a
    summed-area table: ``table[y][x]`` is the sum of the cells above and left
    of grid point (x, y). The grid covers ``span`` of the frame's width and
    height, from its top left."""

    width: int
    height: int
    table: tuple[tuple[int, ...], ...]
    span: tuple[float, float] = (1.0, 1.0)

    @classmethod
    def of(cls, small: Image.Image, span: tuple[float, float] = (1.0, 1.0)) -> Saliency:
        """The saliency of ``small``, a copy of ``span`` of the frame (any working mode)."""
        scores = saliency_image(small)
        width, height = scores.size
        data = scores.tobytes()
        rows: list[tuple[int, ...]] = [(0,) * (width + 1)]
        for y in range(height):
            line = accumulate(data[y * width : (y + 1) * width], initial=0)
            rows.append(tuple(map(add, rows[-1], line)))
        return cls(width, height, tuple(rows), span)

    def area(self, left: float, top: float, right: float, bottom: float) -> float:
        """Saliency inside a box in grid coordinates (fractional: cells count in part)."""
        return (
            self._at(right, bottom) - self._at(left, bottom) - self._at(right, top)
            + self._at(left, top)
        )  # fmt: skip

    def _at(self, x: float, y: float) -> float:
        """The table at a fractional point: exact, as the table of cells with a
        constant density is bilinear inside each cell."""
        x, y = min(max(x, 0.0), self.width), min(max(y, 0.0), self.height)
        i, j = min(int(x), self.width - 1), min(int(y), self.height - 1)
        u, v = x - i, y - j
        above, below = self.table[j], self.table[j + 1]
        return (above[i] * (1 - u) + above[i + 1] * u) * (1 - v) + (
            below[i] * (1 - u) + below[i + 1] * u
        ) * v


def saliency_image(small: Image.Image) -> Image.Image:
    """Per-pixel saliency of ``small`` (mode L, same size): see the module's docstring."""
    rgb = small.convert("RGB")
    luma, cb, cr = rgb.convert("YCbCr").split()
    detail = ImageChops.difference(luma, luma.filter(ImageFilter.BoxBlur(1)))
    detail = detail.point(_DETAIL)
    skin = ImageChops.multiply(cb.point(_SKIN_CB), cr.point(_SKIN_CR))
    skin = ImageChops.multiply(skin, luma.point(_LIGHT))
    _, saturation, value = rgb.convert("HSV").split()
    chroma = ImageChops.multiply(saturation, value)  # S * V / 255 = max - min
    bands = (detail, skin, chroma)
    weights = [w * _uniqueness(band) for w, band in zip(WEIGHTS, bands, strict=True)]
    scores = Image.merge("RGB", bands).convert("L", (*weights, 0.0))
    if small.mode in ("LA", "RGBA"):
        scores = ImageChops.multiply(scores, small.getchannel("A"))
    return scores


def _uniqueness(band: Image.Image) -> float:
    """How much a score stands out where it is high: ``(1 - mean / high)**2``,
    ``high`` its ``PEAK`` quantile. A score high all over the frame (a busy
    texture everywhere, a blue sky) tells no place from another, so it is
    weighted down, and the others decide."""
    histogram = band.histogram()
    total, mean = sum(histogram), ImageStat.Stat(band).mean[0]
    seen, high = 0, 0
    for value, count in enumerate(histogram):
        seen += count
        if seen >= PEAK * total:
            high = value
            break
    return 0.0 if high == 0 else max(0.0, 1 - mean / high) ** 2


def best_offset(saliency: Saliency, frame: tuple[int, int], window: tuple[int, int]) -> Point:
    """Top-left corner of the ``window``-sized crop of a ``frame``-sized picture
    (both in the same pixels, those of the picture being cropped) that keeps
    the most of ``saliency``, the saliency of the whole frame."""
    sx = saliency.width / (frame[0] * saliency.span[0])
    sy = saliency.height / (frame[1] * saliency.span[1])
    ww, wh = window[0] * sx, window[1] * sy

    def score(offset: Point) -> float:
        left, top = offset[0] * sx, offset[1] * sy
        whole = saliency.area(left, top, left + ww, top + wh)
        inner = saliency.area(left + ww / 4, top + wh / 4, left + ww * 3 / 4, top + wh * 3 / 4)
        return whole + INNER_BONUS * inner

    centre = ((frame[0] - window[0]) // 2, (frame[1] - window[1]) // 2)
    lefts = _offsets(frame[0] - window[0], sx, centre[0])
    tops = _offsets(frame[1] - window[1], sy, centre[1])
    scores = {(x, y): score((x, y)) for x in lefts for y in tops}
    best, worst = max(scores.values()), min(scores.values())
    tolerance = TIE * (best - worst) + FLOOR * ww * wh
    near = [offset for offset, value in scores.items() if value >= best - tolerance]
    return min(near, key=lambda o: ((o[0] - centre[0]) ** 2 + (o[1] - centre[1]) ** 2, o))


def offset_in(image: Image.Image, frame: tuple[int, int], window: tuple[int, int]) -> Point:
    """``best_offset`` straight from a Pillow image of the whole frame, of any size."""
    plan = sampling(image.size)
    return best_offset(Saliency.of(small_copy(image, plan), plan.span), frame, window)


def _offsets(slack: int, cells: float, centre: int) -> list[int]:
    """Offsets from 0 to ``slack`` to try, ``cells`` grid cells a pixel: one
    every half cell, and the centre crop's."""
    if slack <= 0:
        return [0]
    count = min(slack, math.ceil(slack * cells * 2))
    return sorted({round(slack * n / count) for n in range(count + 1)} | {centre})


def _table(function: Callable[[int], float]) -> list[int]:
    """A ``point()`` table: ``function`` of 0..255, rounded and clipped to 0..255."""
    return [min(255, max(0, round(function(v)))) for v in range(256)]


def _bell(centre: float, spread: float) -> list[int]:
    return _table(lambda v: 255 * math.exp(-(((v - centre) / spread) ** 2) / 2))


_DETAIL = _table(lambda v: v * DETAIL_GAIN)
_SKIN_CB = _bell(SKIN_CB, SKIN_CB_SPREAD)
_SKIN_CR = _bell(SKIN_CR, SKIN_CR_SPREAD)
_LIGHT = _table(lambda v: 255 * (v - DARK_LUMA) / (LIGHT_LUMA - DARK_LUMA))
