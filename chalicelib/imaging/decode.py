"""Opening and decoding: allow-list, pixel cap, draft, orientation.

Only the six accepted plugins are imported, and ``Image.open`` is told to try
only them, so the PSD, EPS, PDF, ... decoders are never reached (with every
allowed format registered, ``Image.open`` has no reason to call
``Image.init()`` and import the rest).
"""

from __future__ import annotations

import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO

from PIL import (
    BmpImagePlugin,  # noqa: F401  (registers BMP)
    GifImagePlugin,  # noqa: F401  (registers GIF)
    Image,
    JpegImagePlugin,
    PngImagePlugin,  # noqa: F401  (registers PNG)
    TiffImagePlugin,  # noqa: F401  (registers TIFF)
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401  (registers WEBP)
)

from .errors import ImageRejected
from .formats import ALLOWED_TEXT, SOURCE_FORMATS, sniff

NOT_AN_IMAGE = f"not an image this pipeline accepts (allowed: {ALLOWED_TEXT})"

# What Pillow's decoders raise on malformed input. MemoryError is not here: it
# is transient and must reach the caller so that the invocation is retried.
_DECODER_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    EOFError,
    ZeroDivisionError,
    OverflowError,
    struct.error,
)

_NAMES = {"WEBP": "WebP"}

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@contextmanager
def decoding(max_pixels: int) -> Iterator[None]:
    """Run decoder calls with Pillow's failures turned into ``ImageRejected``.

    ``DecompressionBombWarning`` is an error here (locally: the global warning
    filters are restored on exit).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(_bomb_message(exc, max_pixels)) from exc
        except ImageRejected:
            raise
        except _DECODER_ERRORS as exc:
            raise ImageRejected(f"image data is truncated or corrupt: {exc}") from exc


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Identify ``data`` among the accepted formats and check its pixel count.

    Nothing is decoded yet: only the header (and, for multi-frame files, the
    frame index) has been read. Call inside ``decoding()``.
    """
    if not data:
        raise ImageRejected(f"the file is empty: {NOT_AN_IMAGE}")
    try:
        img = Image.open(BytesIO(data), formats=list(SOURCE_FORMATS))
    except UnidentifiedImageError as exc:
        claimed = sniff(data)
        if claimed:
            raise ImageRejected(
                f"image data is truncated or corrupt: the {_NAMES.get(claimed, claimed)} "
                "header cannot be read"
            ) from exc
        raise ImageRejected(NOT_AN_IMAGE) from exc
    check_pixels(img, max_pixels)
    return img


def source_format(img: Image.Image) -> str:
    """Pillow's format name, with MPO (a JPEG with extra pictures) as JPEG."""
    return "JPEG" if img.format == "MPO" else str(img.format)


def check_pixels(img: Image.Image, max_pixels: int) -> None:
    """Reject before decoding when all frames together exceed ``max_pixels``."""
    width, height = img.size
    frames = 1
    if width * height <= max_pixels:
        frames = frame_count(img)
    total = width * height * frames
    if total > max_pixels:
        each = f" x {frames:,} frames" if frames > 1 else ""
        raise ImageRejected(
            f"image is {width}x{height}{each} = {total:,} pixels, "
            f"over MAX_SOURCE_PIXELS={max_pixels:,}"
        )


def frame_count(img: Image.Image) -> int:
    """Frames a decoder could be asked for; cheap (headers only).

    MPO counts one: its other pictures are separate JPEG streams never decoded.
    """
    if img.format == "MPO":
        return 1
    return int(getattr(img, "n_frames", 1))


def load(img: Image.Image, needed: tuple[int, int]) -> None:
    """Decode, for JPEG at the smallest DCT scale still at least ``needed``.

    ``needed`` is in stored (not yet oriented) pixels. libjpeg then decodes at
    1/2, 1/4 or 1/8 scale where it can, which saves time and most of the memory.
    """
    if isinstance(img, JpegImagePlugin.JpegImageFile):
        img.draft(img.mode, (max(1, needed[0]), max(1, needed[1])))
    img.load()


def oriented(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """Displayed size of a ``size`` image with EXIF ``orientation``."""
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def orient(img: Image.Image, orientation: int) -> Image.Image:
    """Apply EXIF ``orientation`` to the pixels.

    Not ``ImageOps.exif_transpose``: it re-reads and rewrites the EXIF, which
    can fail halfway on a broken block; the orientation is already known here,
    and renditions get their EXIF from the metadata step anyway.
    """
    method = _TRANSPOSE.get(orientation)
    return img if method is None else img.transpose(method)


def _bomb_message(exc: Exception, max_pixels: int) -> str:
    match = re.search(r"\((\d+) pixels\)", str(exc))
    if not match:
        return f"image is over the decoder's decompression-bomb limit: {exc}"
    pixels = int(match.group(1))
    if pixels > max_pixels:
        return f"image is {pixels:,} pixels, over MAX_SOURCE_PIXELS={max_pixels:,}"
    return (
        f"image is {pixels:,} pixels, over the decoder's decompression-bomb limit "
        f"(MAX_SOURCE_PIXELS={max_pixels:,} is set above it)"
    )
