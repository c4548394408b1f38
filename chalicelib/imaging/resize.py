"""Rendition sizes and the resize cascade.

Sizes come from the geometry applied to the displayed size of the source as
its header gives it; the decoded base may be smaller (JPEG draft) and is
resized to those exact sizes. Renditions are made largest first, each from the
smallest image already made that is still at least twice its size, so the
Lanczos filter always has enough pixels to work with and never more than it
needs.

A cover (``#``) rendition resizes only the region its centre crop keeps (Pillow's
``box``), rather than scaling the whole frame and cropping: same pixels, and a
very long, thin source cannot blow up into a huge intermediate image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from .geometry import Mode, RenditionSpec

# reduce() by whole factors first while keeping at least this margin for
# Lanczos: near-identical to a full Lanczos pass, much faster for big ratios.
REDUCING_GAP = 3.0
# An image already made serves as the source of a smaller rendition when it is
# at least this many times the rendition's size in both dimensions.
SOURCE_MARGIN = 2.0


@dataclass(frozen=True)
class Target:
    size: tuple[int, int]
    """Size to resize to, before any crop."""
    crop: tuple[int, int, int, int] | None
    """Centre crop after resizing (cover geometry)."""
    keeps_aspect: bool
    """Whether the resized image shows the whole frame undistorted."""


def plan(specs: Sequence[RenditionSpec], size: tuple[int, int]) -> list[Target]:
    """One target per spec, in the specs' order, for a source of displayed ``size``."""
    width, height = size
    return [
        Target(
            size=spec.geometry.resize_size(width, height),
            crop=spec.geometry.crop_box(width, height),
            keeps_aspect=spec.geometry.mode is not Mode.EXACT,
        )
        for spec in specs
    ]


def needed_size(targets: Sequence[Target]) -> tuple[int, int]:
    """Smallest size the decoded base must have so no target is made from less."""
    return (
        max((t.size[0] for t in targets), default=1),
        max((t.size[1] for t in targets), default=1),
    )


def render(base: Image.Image, targets: Sequence[Target]) -> list[Image.Image]:
    """The rendition images, in the order of ``targets``."""
    results: list[Image.Image | None] = [None] * len(targets)
    sources: list[Image.Image] = []  # whole-frame downscales made so far
    order = sorted(range(len(targets)), key=lambda i: -targets[i].size[0] * targets[i].size[1])
    for i in order:
        target = targets[i]
        source = _source_for(target.size, base, sources)
        if target.crop is not None:
            results[i] = _resize_region(source, target.size, target.crop)
            continue
        resized = results[i] = _resize(source, target.size)
        if target.keeps_aspect and _fits(target.size, base.size):
            sources.append(resized)
    return [image for image in results if image is not None]


def _source_for(
    size: tuple[int, int], base: Image.Image, sources: Sequence[Image.Image]
) -> Image.Image:
    usable = [
        s
        for s in sources
        if s.width >= SOURCE_MARGIN * size[0] and s.height >= SOURCE_MARGIN * size[1]
    ]
    return min(usable, key=lambda s: s.width * s.height, default=base)


def _resize(source: Image.Image, size: tuple[int, int]) -> Image.Image:
    if source.size == size:
        return source
    return source.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)


def _resize_region(
    source: Image.Image, size: tuple[int, int], crop: tuple[int, int, int, int]
) -> Image.Image:
    """The ``crop`` of ``source`` scaled to ``size``, without scaling the rest."""
    sx, sy = source.width / size[0], source.height / size[1]
    left, top, right, bottom = crop
    box = (left * sx, top * sy, right * sx, bottom * sy)
    return source.resize(
        (right - left, bottom - top), Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP
    )


def _fits(size: tuple[int, int], within: tuple[int, int]) -> bool:
    return size[0] <= within[0] and size[1] <= within[1]
