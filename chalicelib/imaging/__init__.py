"""Decode, orient, resize, encode and describe images: pure functions of bytes."""

from .errors import ImageRejected
from .formats import SOURCE_FORMATS
from .geometry import Geometry, GeometryError, RenditionSpec, parse_renditions
from .model import EncodedRendition, ImagingOptions, ProcessedImage
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
