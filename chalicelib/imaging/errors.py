"""The one exception the imaging package raises for files no retry can fix."""

from __future__ import annotations


class ImageRejected(Exception):
    """A file no retry can fix.

    ``str(exc)`` is a sentence a person can act on, e.g. "not an image this
    pipeline accepts (allowed: JPEG, PNG, WebP, GIF, TIFF, BMP)" or "image is
    12000x9000 = 108,000,000 pixels, over MAX_SOURCE_PIXELS=50,000,000".
    Transient faults (``MemoryError``) are never turned into this.
    """
