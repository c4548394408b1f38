"""Opening and decoding: allow-list, structural caps, pixel cap, draft, orientation.

Only the accepted plugins are imported, and ``Image.open`` is told to try
only them, so the PSD, EPS, PDF, ... decoders are never reached (with every
allowed format registered, ``Image.open`` has no reason to call
``Image.init()`` and import the rest). Before Pillow opens anything, the
file's structure passes the caps of ``structure.py``.

HEIF is pi-heif's plugin (libheif with libde265 only: it decodes HEVC and
carries no encoder), registered here under Pillow's name "HEIF"; it
registers no other format, so the allow-list stays what ``SOURCE_FORMATS``
says. AVIF is Pillow's own plugin (libavif with dav1d). A HEIF or AVIF file
is opened by its own plugin only: both accept the generic ``mif1`` brand,
and the walk (``structure.isobmff``) decided which of the two it is, how
its picture is coded and how many pixels its decoder would make, so the
pixel cap applies to the declared size before either library parses it.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from io import BytesIO

import pi_heif  # type: ignore[import-untyped]  # no py.typed marker
from PIL import (
    AvifImagePlugin,  # noqa: F401  (registers AVIF)
    BmpImagePlugin,  # noqa: F401  (registers BMP)
    GifImagePlugin,  # noqa: F401  (registers GIF)
    Image,
    JpegImagePlugin,
    PngImagePlugin,  # noqa: F401  (registers PNG)
    TiffImagePlugin,  # noqa: F401  (registers TIFF)
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401  (registers WEBP)
)

from . import structure
from .errors import ImageRejected
from .formats import ALLOWED_TEXT, SOURCE_FORMATS, sniff
from .metadata import stored_orientation

# pi-heif's opener, without what the pipeline never uses: thumbnails, depth
# and auxiliary images are not listed (or read) at open. DECODE_THREADS:
# libheif decodes a grid's tiles on that many threads. On 2 cores 2 threads
# cut a 12 MP grid's decode by a third (4 no further); on one core (a Lambda
# function of up to 1,769 MB) threads gain nothing and cost 40 to 60 MB of
# tile buffers; a single HEVC picture decodes no faster on more
# (bench/results/heif.md).
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
HEIF_DECODE_THREADS = min(2, _CORES or 1)
pi_heif.register_heif_opener(
    thumbnails=False, depth_images=False, aux_images=False, decode_threads=HEIF_DECODE_THREADS
)

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
# Formats whose decoder applies the container's own transforms as it decodes:
# libheif applies HEIF's irot and imir (which the standard puts before any
# EXIF tag: the tag is information only), and pi-heif resets the EXIF tag
# to 1. Nothing is left to apply, whatever the tag says.
_DECODER_TRANSFORMS = frozenset({"HEIF"})

# The longest side accepted, whatever the pixel count. Pillow keeps a row
# pointer (8 bytes) and does some work for every row of every image it
# makes, and an orientation turns a wide image into a tall one: a 1x49,000,000
# PNG took 3 s of CPU and 440 MB in RGB, 10 s and 1.7 GB in RGBA (a
# 7000x7000 RGBA one: 1.9 s, 415 MB), and libvips 35 to 40 s (its shrink in
# one axis is the slow part). 1x1,000,000 RGBA takes Pillow 0.17 s and 55 MB.
# Photoshop's largest side is 300,000 pixels.
MAX_SIDE = 1_000_000

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
    """``open_source(data, max_pixels)``'s image."""
    return open_source(data, max_pixels)[0]


def open_source(data: bytes, max_pixels: int) -> tuple[Image.Image, int]:
    """Identify ``data`` among the accepted formats, check its structure and
    its pixel count: the image, and its number of frames (pages).

    Nothing is decoded yet: only the header has been read, and the frames
    were counted from the bytes (``structure.py``), not by Pillow. Call
    inside ``decoding()``.
    """
    if not data:
        raise ImageRejected(f"the file is empty: {NOT_AN_IMAGE}")
    claimed = structure.identify(data)
    formats = list(SOURCE_FORMATS)
    declared = None
    if claimed in ("HEIF", "AVIF"):
        declared = structure.isobmff(data, claimed)
        frames, formats = declared.frames, [claimed]
        check_declared(declared, max_pixels)
    else:
        frames = structure.frames(data, claimed)
    try:
        img = Image.open(BytesIO(data), formats=formats)
    except RuntimeError as exc:  # libavif's failures, at open
        raise _decoder_failure(exc) from exc
    except UnidentifiedImageError as exc:
        claimed = sniff(data)
        if claimed:
            raise ImageRejected(
                f"image data is truncated or corrupt: the {_NAMES.get(claimed, claimed)} "
                "header cannot be read"
            ) from exc
        raise ImageRejected(NOT_AN_IMAGE) from exc
    if source_format(img) != claimed:  # not expected: Pillow identifies by the same bytes
        frames = structure.frames(data, source_format(img))
    if declared is not None:
        # The tag as the file stores it, for the record: the EXIF the plugins
        # give says what is left to apply (pi-heif: 1; Pillow's AVIF: irot
        # and imir as a tag), not what the camera wrote.
        img.info["original_orientation"] = stored_orientation(declared.exif)
    check_pixels(img, max_pixels, frames)
    return img, frames


def source_format(img: Image.Image) -> str:
    """Pillow's format name, with MPO (a JPEG with extra pictures) as JPEG."""
    return "JPEG" if img.format == "MPO" else str(img.format)


def check_pixels(img: Image.Image, max_pixels: int, frames: int) -> None:
    """Reject before decoding when all ``frames`` together exceed ``max_pixels``,
    or a side ``MAX_SIDE``.

    A multi-frame file counts its first frame's size for each (only the first
    is decoded). MPO counts one: its other pictures are separate JPEG streams
    never decoded, and ``structure`` stops at the first's end.
    """
    check_size(img.size, max_pixels, frames)


def check_declared(declared: structure.Isobmff, max_pixels: int) -> None:
    """``check_pixels`` for a HEIF or AVIF file from its boxes, before it is
    opened: the primary picture's declared size, and for a grid the tiles
    its decoder would make (as many and as large as the file likes, however
    small the grid's own size)."""
    if declared.size is not None:
        check_size(declared.size, max_pixels, declared.frames)
    total = declared.tile_pixels * declared.frames
    if total > max_pixels:
        raise ImageRejected(
            f"image is a grid of {declared.tiles:,} tiles of {total:,} pixels in all, "
            f"over MAX_SOURCE_PIXELS={max_pixels:,}"
        )


def check_size(size: tuple[int, int], max_pixels: int, frames: int) -> None:
    """``check_pixels`` for a picture of ``size``."""
    width, height = size
    total = width * height * frames
    if total > max_pixels:
        each = f" x {frames:,} frames" if frames > 1 else ""
        raise ImageRejected(
            f"image is {width}x{height}{each} = {total:,} pixels, "
            f"over MAX_SOURCE_PIXELS={max_pixels:,}"
        )
    if max(width, height) > MAX_SIDE:
        raise ImageRejected(
            f"image is {width}x{height}, over {MAX_SIDE:,} pixels on a side; "
            "crop it or cut it into parts"
        )


def load(img: Image.Image, needed: tuple[int, int]) -> None:
    """Decode, for JPEG at the smallest DCT scale still at least ``needed``.

    ``needed`` is in stored (not yet oriented) pixels. libjpeg then decodes at
    1/2, 1/4 or 1/8 scale where it can, which saves time and most of the memory.
    """
    if isinstance(img, JpegImagePlugin.JpegImageFile):
        img.draft(img.mode, (max(1, needed[0]), max(1, needed[1])))
    try:
        img.load()
    except RuntimeError as exc:  # how pi-heif and Pillow's AVIF plugin report a failed decode
        raise _decoder_failure(exc) from exc


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


def pending_orientation(fmt: str, orientation: int) -> int:
    """The part of EXIF ``orientation`` still to apply to what Pillow decodes
    from a ``fmt`` file: 1 when its decoder applies the tag itself, or the
    container's transforms instead (HEIF).

    Pillow's AVIF plugin leaves the pixels as stored and gives the file's
    irot and imir as the EXIF tag (in place of the file's own), so for AVIF
    the tag is what is left to apply, once.
    """
    if fmt in _DECODER_TRANSFORMS:
        return 1
    return 1 if orientation != 1 and decoder_orients(fmt) else orientation


@cache
def decoder_orients(fmt: str) -> bool:
    """Whether Pillow's ``fmt`` decoder applies the orientation tag itself.

    Asked once per process, of a 2x1 picture tagged "rotate 90" (6): such a
    decoder reports the displayed size, 1x2, at open, and transposes the
    pixels as it loads them (Pillow 13 does so for TIFF, for every
    compression). Applying the tag again would turn the picture twice.
    """
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = BytesIO()
    try:
        Image.new("L", (2, 1)).save(buffer, fmt, exif=exif.tobytes())
        with Image.open(buffer, formats=[fmt]) as probe:
            at_open = probe.size
            probe.load()
            return at_open == probe.size == (1, 2)
    except (OSError, ValueError, KeyError):  # a format Pillow cannot write with EXIF
        return False


def _decoder_failure(exc: RuntimeError) -> Exception:
    """What libheif's or libavif's error, as the bindings raise it, means here.

    libheif names its refusals "Security limit exceeded" (a file past its
    own caps: permanent); an allocation that failed is transient, as
    ``MemoryError`` is everywhere else.
    """
    text = str(exc)
    if "Security limit" in text:
        return ImageRejected(f"image is over libheif's limits: {text}")
    if text.startswith("Memory allocation error"):
        return MemoryError(text)
    return ImageRejected(f"image data is truncated or corrupt: {text}")


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
