"""Encoding renditions: JPEG, PNG, WebP or AVIF, with the ICC profile and chosen EXIF."""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import Any

from PIL import Image

from .modes import WORKING_MODES, icc_fits

# Writes an 8-bit L, LA, RGB or RGBA image as PNG with the ICC profile and
# EXIF given (both already chosen by ``encode``), and nothing else.
PngWriter = Callable[[Image.Image, bytes | None, bytes | None], bytes]

# PNG: zlib level 3 where Pillow's default is 6 (both with Pillow's Z_FILTERED
# and adaptive row filters; the zlib-ng in Pillow's wheels). Measured on the
# three default renditions (bench/results/png.md) of a 12 MP photo, a 12 MP
# illustration and eight photographs: 0.90-1.10x level 6's bytes (worst
# 1.098x, a photograph) in 0.27-0.53x its CPU time. Levels 1 and 2 write up
# to 1.15x and 1.13x, level 4 up to 1.13x (1.08x with Z_DEFAULT_STRATEGY, for
# more time). The whole call on the Pillow engine: 0.69-0.76x on the 12 MP
# inputs, mostly Pillow's PNG decode and resize. Palette and 1-bit images
# (never a rendition: those are L, LA, RGB or RGBA) keep level 6. ``png``,
# the vips engine's writer (``vips.write_png``), takes the 8-bit modes.
PNG_COMPRESS_LEVEL = 3
PNG_PALETTE_LEVEL = 6
PNG_FAST_MODES = frozenset({"L", "LA", "RGB", "RGBA", "I;16"})
PNG_WRITER_MODES = WORKING_MODES
# Measured in bench/formats.py (bench/results/formats.md) on eight
# photographs: WebP method 2 writes 0.77x the JPEG's bytes where method 0
# writes 0.93x, for a few milliseconds more; 3-6 save up to 6 % more at 2-8x
# the time. AVIF speed 9 (10 writes the same bytes): 0.68x; speed 8 reaches
# 0.59x but takes 2.5-3.5x as long, beyond the handler's budget of 3x the
# time without alternates. One thread per AVIF encode: the encodes already
# run two at a time.
WEBP_METHOD = 2
AVIF_SPEED = 9
AVIF_THREADS = 1
# Baseline Huffman tables, sequential, 4:2:0 chroma. Measured on the 1600 px
# rendition (bench/results/imaging.md): optimize=True costs about 3x the encode
# time for 2-3 % smaller files, progressive about 7x for 6 %, and 4:4:4 is 7 %
# larger; at 85 none is worth it for renditions that are fetched many times.
JPEG_PARAMS: dict[str, Any] = {"optimize": False, "progressive": False, "subsampling": "4:2:0"}


def encode(
    img: Image.Image,
    fmt: str,
    quality: int,
    icc: bytes | None,
    exif: bytes | None,
    *,
    png: PngWriter | None = None,
) -> bytes:
    """``img`` written as ``fmt``; a PNG of an 8-bit mode by ``png`` when given.

    The ICC profile is embedded when it describes the pixels' colour space,
    the EXIF whenever given, whichever encoder writes the file. Every keyword
    is explicit: Pillow would otherwise fall back to what ``img.info`` holds
    (the source's EXIF with GPS, say).
    """
    img = _for_format(img, fmt)
    icc = icc if icc and icc_fits(icc, img.mode) else None
    exif = exif or None
    if fmt == "PNG" and png is not None and img.mode in PNG_WRITER_MODES:
        return png(img, icc, exif)
    params: dict[str, Any] = {}
    if fmt == "JPEG":
        params.update(JPEG_PARAMS, quality=quality)
    elif fmt == "PNG":
        fast = img.mode in PNG_FAST_MODES
        params.update(compress_level=PNG_COMPRESS_LEVEL if fast else PNG_PALETTE_LEVEL)
        params["optimize"] = False
    elif fmt == "AVIF":
        params.update(quality=quality, speed=AVIF_SPEED, max_threads=AVIF_THREADS)
    else:
        params.update(quality=quality, method=WEBP_METHOD)
    if icc:
        params["icc_profile"] = icc
    if exif:
        params["exif"] = exif
    buffer = BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def _for_format(img: Image.Image, fmt: str) -> Image.Image:
    if fmt == "JPEG" and img.mode in ("LA", "RGBA"):
        return flatten(img)
    if fmt in ("WEBP", "AVIF") and img.mode in ("L", "LA"):
        return img.convert("RGBA" if img.mode == "LA" else "RGB")
    return img


def flatten(img: Image.Image) -> Image.Image:
    """Composite an LA / RGBA image onto white (transparent never turns black)."""
    mode = img.mode[:-1]
    background = Image.new(mode, img.size, "white")
    background.paste(img, mask=img.getchannel("A"))
    return background
