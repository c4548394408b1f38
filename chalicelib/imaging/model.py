"""The values going into and coming out of the imaging package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .formats import OUTPUT_FORMATS
from .geometry import RenditionSpec

ENGINES = ("pillow", "vips")


@dataclass(frozen=True)
class ImagingOptions:
    renditions: tuple[RenditionSpec, ...]
    output_format: str = "auto"  # "auto" | "jpeg" | "png" | "webp"
    jpeg_quality: int = 85  # 1..95, also the WebP quality
    strip_metadata: bool = True
    max_pixels: int = 50_000_000
    engine: str = "pillow"  # "pillow" | "vips": what decodes and resizes (pipeline.py)

    def __post_init__(self) -> None:
        if self.output_format.lower() not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError("jpeg_quality must be between 1 and 95")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}")
        if self.max_pixels < 1:
            raise ValueError("max_pixels must be positive")


@dataclass(frozen=True)
class EncodedRendition:
    name: str
    data: bytes
    width: int
    height: int
    format: str  # "JPEG" | "PNG" | "WEBP" (keys of keys.EXTENSIONS)
    content_type: str  # "image/jpeg" | "image/png" | "image/webp"


@dataclass(frozen=True)
class ProcessedImage:
    format: str  # source format as Pillow names it
    content_type: str  # of the source
    width: int  # displayed size: after EXIF orientation
    height: int
    metadata: dict[str, Any]
    renditions: tuple[EncodedRendition, ...]  # in the order of options.renditions
    engine: str = "pillow"  # what made the pixels: "vips" hands some files to Pillow
