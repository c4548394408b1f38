"""The values going into and coming out of the imaging package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .formats import OUTPUT_FORMATS
from .geometry import RenditionSpec

ENGINES = ("pillow", "vips")


def default_engine() -> str:
    """``IMAGE_ENGINE``'s default: the vips engine where pyvips is installed
    (requirements.txt installs it). It takes 0.5-0.7x the Pillow engine's CPU
    per JPEG and about 0.4x its time per 12 MP PNG, with the same bounds on
    every source (README "Imaging engines"; bench/results/imaging.md, png.md,
    cost.md)."""
    import importlib.util

    return "vips" if importlib.util.find_spec("pyvips") is not None else "pillow"


GRAVITIES = ("centre", "attention")
# Formats an alternate may be written in (``FORMATS``), as Pillow names them.
ALTERNATE_FORMATS = ("AVIF", "WEBP")


@dataclass(frozen=True)
class ImagingOptions:
    renditions: tuple[RenditionSpec, ...]
    output_format: str = "auto"  # "auto" | "jpeg" | "png" | "webp" | "avif"
    jpeg_quality: int = 85  # 1..95
    strip_metadata: bool = True
    max_pixels: int = 50_000_000
    engine: str = "pillow"  # "pillow" | "vips": what decodes and resizes (pipeline.py)
    # Alternates written beside every rendition, in order of preference
    # ("AVIF", "WEBP"); one in the rendition's own format is not written twice.
    formats: tuple[str, ...] = ()
    avif_quality: int = 74  # 1..100, for AVIF renditions and alternates
    webp_quality: int = 87  # 1..100, for WebP renditions and alternates
    crop_gravity: str = "centre"  # "centre" | "attention": where a cover (#) crop sits

    def __post_init__(self) -> None:
        if self.output_format.lower() not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError("jpeg_quality must be between 1 and 95")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}")
        if self.max_pixels < 1:
            raise ValueError("max_pixels must be positive")
        if any(f not in ALTERNATE_FORMATS for f in self.formats):
            raise ValueError(f"formats must be among {', '.join(ALTERNATE_FORMATS)}")
        if not (1 <= self.avif_quality <= 100 and 1 <= self.webp_quality <= 100):
            raise ValueError("avif_quality and webp_quality must be between 1 and 100")
        if self.crop_gravity not in GRAVITIES:
            raise ValueError(f"crop_gravity must be one of {', '.join(GRAVITIES)}")


@dataclass(frozen=True)
class EncodedAlternate:
    """The rendition's pixels in one of ``ImagingOptions.formats``."""

    data: bytes
    format: str  # "AVIF" | "WEBP"
    content_type: str


@dataclass(frozen=True)
class EncodedRendition:
    name: str
    data: bytes
    width: int
    height: int
    format: str  # "JPEG" | "PNG" | "WEBP" | "AVIF" (keys of keys.EXTENSIONS)
    content_type: str  # "image/jpeg" | "image/png" | "image/webp" | "image/avif"
    alternates: tuple[EncodedAlternate, ...] = ()  # in the order of options.formats


@dataclass(frozen=True)
class ProcessedImage:
    format: str  # source format as Pillow names it
    content_type: str  # of the source
    width: int  # displayed size: after EXIF orientation
    height: int
    metadata: dict[str, Any]
    renditions: tuple[EncodedRendition, ...]  # in the order of options.renditions
    engine: str = "pillow"  # what made the pixels: "vips" hands some files to Pillow
    placeholder: dict[str, str] | None = None  # {"blurhash": ..., "color": "#rrggbb"}
