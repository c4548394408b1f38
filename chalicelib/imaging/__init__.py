"""Decode, orient, resize, encode and describe images: pure functions of bytes.

``process_image`` and ``read_metadata`` load Pillow on first use, so code that
only needs the settings' geometry parser (the REST API function) starts
without importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ImageRejected
from .formats import SOURCE_FORMATS
from .geometry import Geometry, GeometryError, RenditionSpec, parse_renditions
from .model import EncodedRendition, ImagingOptions, ProcessedImage

if TYPE_CHECKING:
    from .pipeline import process_image, read_metadata

__all__ = [
    "SOURCE_FORMATS",
    "EncodedRendition",
    "Geometry",
    "GeometryError",
    "ImageRejected",
    "ImagingOptions",
    "ProcessedImage",
    "RenditionSpec",
    "parse_renditions",
    "process_image",
    "read_metadata",
]


def __getattr__(name: str) -> Any:
    if name in ("process_image", "read_metadata"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
