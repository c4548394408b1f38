"""Rendition sizes and the resize cascade.

Sizes come from the geometry applied to the displayed size of the source as
its header gives it; the decoded base may be smaller (JPEG draft) and is
resized to those exact sizes. Renditions are made largest first, each from the
smallest image already made that is still at least twice its size, so the
Lanczos filter always has enough pixels to work with and never more than it
needs.

A cover (``#``) rendition resizes only the region its crop keeps (Pillow's
``box``), rather than scaling the whole frame and cropping: same pixels, and a
very long, thin source cannot blow up into a huge intermediate image. Where
the crop sits is the target's ``gravity``: the centre, decided from the
header's sizes alone, or ``attention`` (``attention.py``), decided from the
pixels as the rendition is made, from one saliency map per source that every
cover rendition shares.

Speed (numbers in ``bench/results/imaging.md``): once the JPEG draft has cut
the decode, resampling is most of the work. Pillow releases the GIL while it
resamples, so each resize is cut into ``STRIPES`` horizontal bands made on as
many threads: on two cores the resizes take about half the time, on one core
(a Lambda function at 1,769 MB or less) about as long as unbanded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Protocol

from PIL import Image

from . import attention
from .geometry import Mode, RenditionSpec

# Every resize: Lanczos-3. BICUBIC takes about 20 % less time in all, but the
# 800 px rendition's SSIM against a full-size Lanczos resize falls to 0.986.
FILTER = Image.Resampling.LANCZOS
# reduce() by whole factors first while keeping at least this margin for
# Lanczos: indistinguishable from a full Lanczos pass, much faster for big ratios.
REDUCING_GAP = 3.0
# The decoded base is first reduce()d by the largest whole factor that leaves it
# at least this many times the size the renditions need (so from 2.5x up): what
# the JPEG draft does in the DCT, for formats without one (PNG, WebP, TIFF, ...),
# at the same cost in quality (SSIM of the 1600 px rendition 0.9964 either way).
BASE_REDUCING_GAP = 1.25
# An image already made serves as the source of a smaller rendition when it is
# at least this many times the rendition's size in both dimensions.
SOURCE_MARGIN = 2.0
# Horizontal bands per resize, each on its own thread. A fixed count, not the
# machine's cores, so that the same input always gives the same pixels.
STRIPES = 2
# Resizes with fewer output rows than this are not worth a thread hand-off.
MIN_STRIPE_ROWS = 64

Box = tuple[float, float, float, float]
Crop = tuple[int, int, int, int]


@dataclass(frozen=True)
class Target:
    size: tuple[int, int]
    """Size to resize to, before any crop."""
    crop: Crop | None
    """Centre crop after resizing (cover geometry): with ``gravity``
    "attention", the size of the crop, which ``render_with`` moves."""
    keeps_aspect: bool
    """Whether the resized image shows the whole frame undistorted."""
    gravity: str = "centre"
    """Where ``crop`` sits: "centre" or "attention" (``CROP_GRAVITY``)."""


def plan(
    specs: Sequence[RenditionSpec], size: tuple[int, int], gravity: str = "centre"
) -> list[Target]:
    """One target per spec, in the specs' order, for a source of displayed
    ``size``, cover crops placed at ``gravity``."""
    width, height = size
    return [
        Target(
            size=spec.geometry.resize_size(width, height),
            crop=spec.geometry.crop_box(width, height),
            keeps_aspect=spec.geometry.mode is not Mode.EXACT,
            gravity=gravity if spec.geometry.mode is Mode.COVER else "centre",
        )
        for spec in specs
    ]


def needed_size(targets: Sequence[Target]) -> tuple[int, int]:
    """Smallest size the decoded base must have so no target is made from less."""
    return (
        max((t.size[0] for t in targets), default=1),
        max((t.size[1] for t in targets), default=1),
    )


def reduce_base(base: Image.Image, needed: tuple[int, int]) -> Image.Image:
    """``base`` reduced by the largest whole factor that leaves ``BASE_REDUCING_GAP``."""
    ratio = min(base.width / max(1, needed[0]), base.height / max(1, needed[1]))
    factor = int(ratio / BASE_REDUCING_GAP)
    if factor < 2:
        return base
    if base.mode in ("LA", "RGBA"):  # reduce() premultiplies the whole image at each call
        return base.reduce(factor)
    width, height = base.width, base.height

    def band(top: int, bottom: int) -> Image.Image:
        # Bands start on multiples of the factor: the same blocks as one reduce().
        return base.reduce(factor, box=(0, top * factor, width, min(bottom * factor, height)))

    return _in_bands(base.mode, (-(-width // factor), -(-height // factor)), band)


class Resampler[Img](Protocol):
    """How an engine resizes its images; ``render`` decides what from what."""

    def size(self, image: Img) -> tuple[int, int]: ...

    def resize(self, source: Img, size: tuple[int, int]) -> Img:
        """``source`` scaled to exactly ``size``."""
        ...

    def resize_region(self, source: Img, size: tuple[int, int], crop: Crop) -> Img:
        """The ``crop`` of ``source`` scaled to ``size``: a ``size``-d ``source``
        cropped to ``crop``, without scaling the rest."""
        ...

    def small(self, source: Img, sampling: attention.Sampling) -> Image.Image:
        """The small Pillow copy of ``source`` that ``attention`` looks at."""
        ...


def render(base: Image.Image, targets: Sequence[Target]) -> list[Image.Image]:
    """The rendition images, in the order of ``targets``."""
    return render_with(PILLOW, base, targets)


def render_with[Img](engine: Resampler[Img], base: Img, targets: Sequence[Target]) -> list[Img]:
    """``render`` for any engine's images: the one cascade both engines share."""
    results: dict[int, Img] = {}
    saliency: attention.Saliency | None = None  # of the whole frame, made once
    for i, source in cascade(targets, engine.size(base)):
        image = base if source is None else results[source]
        target = targets[i]
        crop = target.crop
        if crop is None:
            results[i] = engine.resize(image, target.size)
            continue
        if target.gravity == "attention":
            # From the image this crop is cut from: the smallest one made so
            # far that is big enough for it (the cascade goes largest first).
            if saliency is None:
                sampling = attention.sampling(engine.size(image))
                saliency = attention.Saliency.of(engine.small(image, sampling), sampling.span)
            crop = attended(saliency, target.size, crop)
        results[i] = engine.resize_region(image, target.size, crop)
    return [results[i] for i in range(len(targets))]


def attended(saliency: attention.Saliency, size: tuple[int, int], crop: Crop) -> Crop:
    """``crop`` (a window of an image of ``size``) moved to where ``saliency``
    says the picture's most interesting part is."""
    width, height = crop[2] - crop[0], crop[3] - crop[1]
    left, top = attention.best_offset(saliency, size, (width, height))
    return left, top, left + width, top + height


def cascade(targets: Sequence[Target], base_size: tuple[int, int]) -> list[tuple[int, int | None]]:
    """The order renditions are made in: (target index, index of the target it
    is made from, or None for the base), largest first."""
    steps: list[tuple[int, int | None]] = []
    made: list[int] = []  # whole-frame downscales so far, as target indices
    for i in sorted(range(len(targets)), key=lambda i: -targets[i].size[0] * targets[i].size[1]):
        target = targets[i]
        found = _source_for(target.size, [targets[j].size for j in made])
        steps.append((i, None if found is None else made[found]))
        if target.crop is None and target.keeps_aspect and _fits(target.size, base_size):
            made.append(i)
    return steps


def _source_for(size: tuple[int, int], candidates: Sequence[tuple[int, int]]) -> int | None:
    """Index of the smallest candidate at least ``SOURCE_MARGIN`` times ``size``."""
    usable = [
        n
        for n, (width, height) in enumerate(candidates)
        if width >= SOURCE_MARGIN * size[0] and height >= SOURCE_MARGIN * size[1]
    ]
    return min(usable, key=lambda n: candidates[n][0] * candidates[n][1], default=None)


class _Pillow:
    def size(self, image: Image.Image) -> tuple[int, int]:
        return image.size

    def resize(self, source: Image.Image, size: tuple[int, int]) -> Image.Image:
        if source.size == size:
            return source
        return _resample(source, size, (0, 0, source.width, source.height))

    def resize_region(self, source: Image.Image, size: tuple[int, int], crop: Crop) -> Image.Image:
        sx, sy = source.width / size[0], source.height / size[1]
        left, top, right, bottom = crop
        box = (left * sx, top * sy, right * sx, bottom * sy)
        return _resample(source, (right - left, bottom - top), box)

    def small(self, source: Image.Image, sampling: attention.Sampling) -> Image.Image:
        return attention.small_copy(source, sampling)


PILLOW: Resampler[Image.Image] = _Pillow()


def _resample(source: Image.Image, size: tuple[int, int], box: Box) -> Image.Image:
    """Resize the ``box`` of ``source`` to ``size`` with ``FILTER``, in bands.

    Not banded when Pillow would reduce() first (a ratio of ``2 * REDUCING_GAP``
    or more): each band would then sample its own reduced grid. Such resizes
    are cheap anyway.
    """
    scale_x, scale_y = (box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1]

    def band(top: int, bottom: int) -> Image.Image:
        band_box = (box[0], box[1] + top * scale_y, box[2], box[1] + bottom * scale_y)
        return source.resize(
            (size[0], bottom - top), FILTER, box=band_box, reducing_gap=REDUCING_GAP
        )

    if min(scale_x, scale_y) >= 2 * REDUCING_GAP:
        return band(0, size[1])
    return _in_bands(source.mode, size, band)


def _in_bands(
    mode: str, size: tuple[int, int], band: Callable[[int, int], Image.Image]
) -> Image.Image:
    """A ``mode`` image of ``size`` whose rows ``top:bottom`` are ``band(top, bottom)``.

    ``STRIPES`` bands, made on the thread pool (Pillow releases the GIL in
    resize() and reduce()), then pasted together.
    """
    if size[1] < MIN_STRIPE_ROWS:
        return band(0, size[1])
    bounds = [round(size[1] * n / STRIPES) for n in range(STRIPES + 1)]
    futures = [_pool().submit(band, top, bottom) for top, bottom in pairwise(bounds)]
    image = Image.new(mode, size)
    for top, future in zip(bounds, futures, strict=False):
        image.paste(future.result(), (0, top))
    return image


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=STRIPES, thread_name_prefix="resize")


def _fits(size: tuple[int, int], within: tuple[int, int]) -> bool:
    return size[0] <= within[0] and size[1] <= within[1]
