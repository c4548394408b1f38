"""Pixel modes: bring any decoded mode to L, LA, RGB or RGBA, keeping ICC honest.

Resizing needs one of those four: Pillow resizes "1" and "P" with nearest
neighbour only, and 16-bit or float data would be clipped by a plain convert.
"""

from __future__ import annotations

from functools import cache
from io import BytesIO
from typing import cast

from PIL import Image, ImageCms

from .errors import ImageRejected

WORKING_MODES = frozenset({"L", "LA", "RGB", "RGBA"})
ALPHA_MODES = frozenset({"LA", "RGBA"})
_16BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_SIMPLE = {"PA": "RGBA", "RGBa": "RGBA", "La": "LA", "RGBX": "RGB", "YCbCr": "RGB"}


def to_working_mode(img: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """``img`` in a working mode, and the ICC profile that describes the result.

    A profile whose colour space no longer matches the pixels is dropped; a
    CMYK image with a CMYK profile is colour-managed to sRGB and gets sRGB's.
    """
    mode = img.mode
    transparent = "transparency" in img.info
    try:
        if mode == "CMYK":
            return _cmyk_to_rgb(img, icc)
        if mode in ("1", "L", "RGB") and transparent:
            img = img.convert("RGBA" if mode == "RGB" else "LA")
        elif mode == "1":
            img = img.convert("L")
        elif mode == "P":
            img = img.convert("RGBA" if img.has_transparency_data else "RGB")
        elif mode in _16BIT or mode in ("I", "F"):
            img = _to_8bit(img)
        elif mode not in WORKING_MODES:
            img = img.convert(_SIMPLE.get(mode, "RGB"))
    except ValueError as exc:
        raise ImageRejected(f"images in colour mode {mode} are not supported: {exc}") from exc
    return img, icc if icc_fits(icc, img.mode) else None


def icc_fits(icc: bytes | None, mode: str) -> bool:
    """Whether ``icc`` describes pixels of ``mode`` (its data colour space)."""
    if not icc or len(icc) < 20:
        return False
    space = icc[16:20]
    return space == (b"GRAY" if mode in ("L", "LA") else b"RGB ")


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit (or wider, or float) greyscale to L, scaled rather than clipped."""
    if img.mode != "I" and img.mode != "F":
        img = img.convert("I")
    low, high = cast("tuple[float, float]", img.getextrema())
    if img.mode == "F" and low >= 0 and high <= 1.0:
        scale = 255.0
    elif high <= 65535:
        scale = 255 / 65535
    else:
        scale = 255 / high
    return img.point(lambda v: v * scale).convert("L")


def _cmyk_to_rgb(img: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    if icc and icc[16:20] == b"CMYK":
        try:
            source = ImageCms.ImageCmsProfile(BytesIO(icc))
            rgb = ImageCms.profileToProfile(img, source, _srgb(), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass  # a broken profile: convert without it
        else:
            if rgb is not None:
                return rgb, _srgb().tobytes()
    return img.convert("RGB"), None


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
