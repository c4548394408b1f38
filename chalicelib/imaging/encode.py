"""Encoding renditions: JPEG, PNG, WebP or AVIF, with the ICC profile and chosen EXIF."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from PIL import Image

from .modes import icc_fits

PNG_COMPRESS_LEVEL = 6
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
    img: Image.Image, fmt: str, quality: int, icc: bytes | None, exif: bytes | None
) -> bytes:
    """``img`` written as ``fmt``.

    Every keyword is explicit: Pillow would otherwise fall back to what
    ``img.info`` holds (the source's EXIF with GPS, say).
    """
    img = _for_format(img, fmt)
    params: dict[str, Any] = {}
    if fmt == "JPEG":
        params.update(JPEG_PARAMS, quality=quality)
    elif fmt == "PNG":
        params.update(compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    elif fmt == "AVIF":
        params.update(quality=quality, speed=AVIF_SPEED, max_threads=AVIF_THREADS)
    else:
        params.update(quality=quality, method=WEBP_METHOD)
    if icc and icc_fits(icc, img.mode):
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
