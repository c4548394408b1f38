"""Rendition geometry in ImageMagick / Paperclip notation.

=========  =============================================  =========
geometry   result                                         enlarges?
=========  =============================================  =========
``800``    width 800, height by aspect ratio              no
``x600``   height 600, width by aspect ratio              no
``800x600`` fits inside 800x600, aspect kept              no
``256x256#`` covers 256x256, cropped to it (gravity)      yes
``256x256!`` exactly 256x256, aspect ignored              yes
``50%``    scaled to half                                 no
=========  =============================================  =========
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class GeometryError(ValueError):
    """A geometry or rendition list that cannot be parsed."""


class Mode(Enum):
    WIDTH = "width"
    HEIGHT = "height"
    FIT = "fit"
    COVER = "cover"
    EXACT = "exact"
    PERCENT = "percent"


_BOX = re.compile(r"^(\d+)x(\d+)([#!]?)$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MAX_SIDE = 20000


@dataclass(frozen=True)
class Geometry:
    mode: Mode
    width: int = 0
    height: int = 0
    percent: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Geometry:
        spec = text.strip()
        if m := _PERCENT.match(spec):
            pct = float(m.group(1))
            if not 0 < pct <= 100:
                raise GeometryError(f"{text!r}: a percentage must be above 0 and at most 100")
            return cls(Mode.PERCENT, percent=pct)
        if spec.isdigit():
            return cls(Mode.WIDTH, width=_side(spec, text))
        if spec.startswith("x") and spec[1:].isdigit():
            return cls(Mode.HEIGHT, height=_side(spec[1:], text))
        if m := _BOX.match(spec):
            mode = {"": Mode.FIT, "#": Mode.COVER, "!": Mode.EXACT}[m.group(3)]
            return cls(mode, width=_side(m.group(1), text), height=_side(m.group(2), text))
        raise GeometryError(
            f"{text!r} is not a geometry: use 800, x600, 800x600, 256x256#, 256x256! or 50%"
        )

    def resize_size(self, width: int, height: int) -> tuple[int, int]:
        """Size to scale a ``width`` x ``height`` image to, before any crop."""
        if self.mode is Mode.EXACT:
            return self.width, self.height
        if self.mode is Mode.COVER:
            scale = max(self.width / width, self.height / height)
            return max(self.width, round(width * scale)), max(self.height, round(height * scale))
        if self.mode is Mode.WIDTH:
            scale = self.width / width
        elif self.mode is Mode.HEIGHT:
            scale = self.height / height
        elif self.mode is Mode.FIT:
            scale = min(self.width / width, self.height / height)
        else:
            scale = self.percent / 100
        scale = min(scale, 1.0)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """Final size of the rendition of a ``width`` x ``height`` image."""
        if self.mode is Mode.COVER:
            return self.width, self.height
        return self.resize_size(width, height)

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """Centre crop to apply to an image already scaled to ``resize_size``.

        With ``CROP_GRAVITY=attention`` the crop keeps this size and the
        renderer moves it (``resize.render_with``, ``attention.py``).
        """
        if self.mode is not Mode.COVER:
            return None
        rw, rh = self.resize_size(width, height)
        left, top = (rw - self.width) // 2, (rh - self.height) // 2
        return left, top, left + self.width, top + self.height

    def __str__(self) -> str:
        if self.mode is Mode.PERCENT:
            return f"{self.percent:g}%"
        if self.mode is Mode.WIDTH:
            return str(self.width)
        if self.mode is Mode.HEIGHT:
            return f"x{self.height}"
        suffix = {Mode.FIT: "", Mode.COVER: "#", Mode.EXACT: "!"}[self.mode]
        return f"{self.width}x{self.height}{suffix}"


@dataclass(frozen=True)
class RenditionSpec:
    name: str
    geometry: Geometry

    def __str__(self) -> str:
        return f"{self.name}={self.geometry}"


def parse_renditions(text: str) -> tuple[RenditionSpec, ...]:
    """Parse ``RENDITIONS``: comma-separated ``name=geometry`` pairs."""
    specs: list[RenditionSpec] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, geometry = part.partition("=")
        name = name.strip()
        if not sep:
            raise GeometryError(f"{part!r}: write each rendition as name=geometry")
        if not _NAME.match(name):
            raise GeometryError(
                f"{name!r}: rendition names are lower-case letters, digits, '-' and '_'"
            )
        if any(s.name == name for s in specs):
            raise GeometryError(f"rendition {name!r} is listed twice")
        specs.append(RenditionSpec(name, Geometry.parse(geometry)))
    if not specs:
        raise GeometryError("no renditions given")
    return tuple(specs)


def _side(digits: str, text: str) -> int:
    value = int(digits)
    if not 1 <= value <= MAX_SIDE:
        raise GeometryError(f"{text!r}: sides must be between 1 and {MAX_SIDE}")
    return value
