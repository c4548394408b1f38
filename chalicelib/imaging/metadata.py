"""EXIF reading, the record's ``metadata`` fields, and the EXIF renditions keep.

Broken EXIF never fails an image: a field that cannot be read is left out.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from PIL import ExifTags, Image

from ..bounds import bounded_metadata

_ORIENTATION = ExifTags.Base.Orientation
# A JPEG APP1 segment holds at most 65,533 bytes; larger EXIF is not carried.
MAX_EXIF_BYTES = 65_000
_DATE = re.compile(r"^\s*(\d{4})[:-](\d\d)[:-](\d\d)[ T](\d\d):(\d\d):(\d\d)")

# IFD0 tags worth keeping on a rendition; the rest describe the source's
# layout (strips, tiles, bit depth, thumbnail, orientation) and would lie.
_IFD0_KEEP = (
    ExifTags.Base.ImageDescription,
    ExifTags.Base.Make,
    ExifTags.Base.Model,
    ExifTags.Base.XResolution,
    ExifTags.Base.YResolution,
    ExifTags.Base.ResolutionUnit,
    ExifTags.Base.Software,
    ExifTags.Base.DateTime,
    ExifTags.Base.Artist,
    ExifTags.Base.Copyright,
)
# Exif sub-IFD tags dropped: stale sizes, a pointer that would dangle, and
# maker notes whose internal offsets break once moved (and can be large).
_EXIF_DROP = frozenset(
    {
        ExifTags.Base.ExifImageWidth,
        ExifTags.Base.ExifImageHeight,
        ExifTags.Base.ExifInteroperabilityOffset,
        ExifTags.Base.MakerNote,
    }
)


def read_exif(img: Image.Image, data: bytes) -> Image.Exif:
    """The source's EXIF, or an empty one when it cannot be parsed.

    A PNG may keep its eXIf chunk after the pixel data, where Pillow only finds
    it by decoding the image; the chunk is looked up in ``data`` instead, so
    reading EXIF never decodes pixels. Only EXIF parse errors are swallowed.
    """
    try:
        exif = Image.Image.getexif(img)  # not PngImageFile.getexif(): that decodes
        if img.format == "PNG" and not len(exif):
            chunk = png_chunk(data, b"eXIf")
            if chunk:
                exif.load(chunk)
        return exif
    except MemoryError:
        raise
    except Exception:
        return Image.Exif()


def png_chunk(data: bytes, kind: bytes) -> bytes | None:
    """The first ``kind`` chunk's payload, found by skipping from chunk to chunk."""
    at = 8  # after the signature
    while at + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, at)
        if data[at + 4 : at + 8] == kind:
            return data[at + 8 : at + 8 + length]
        if data[at + 4 : at + 8] == b"IEND":
            break
        at += 12 + length
    return None


def orientation_of(exif: Image.Exif) -> int:
    """EXIF orientation 1..8; 1 when absent or invalid."""
    return _orientation(exif) or 1


def stored_orientation(tiff: bytes | None) -> int | None:
    """The orientation tag of EXIF data (from its TIFF header on), if valid.

    For HEIF and AVIF, whose plugins give an EXIF whose tag says what is left
    to apply, not what the file holds (``decode.open_source``).
    """
    if not tiff:
        return None
    try:
        exif = Image.Exif()
        exif.load(tiff)
        return _orientation(exif)
    except MemoryError:
        raise
    except Exception:
        return None


def extract_metadata(img: Image.Image, exif: Image.Exif) -> dict[str, Any]:
    """The record's ``metadata``: camera fields when known, image facts always.

    Bounded (``chalicelib.bounds``): a text field is at most 256 characters,
    the whole at most 4096 bytes of JSON, whatever the EXIF holds.
    """
    meta: dict[str, Any] = {}
    main = _ifd(exif, None)
    sub = _ifd(exif, ExifTags.IFD.Exif)
    gps = _ifd(exif, ExifTags.IFD.GPSInfo)
    _put(meta, "taken_at", _taken_at, sub.get(ExifTags.Base.DateTimeOriginal))
    _put(meta, "camera_make", _text, main.get(ExifTags.Base.Make))
    _put(meta, "camera_model", _text, main.get(ExifTags.Base.Model))
    _put(meta, "lens_model", _text, sub.get(ExifTags.Base.LensModel))
    _put(meta, "exposure_time", _exposure, sub.get(ExifTags.Base.ExposureTime))
    _put(meta, "f_number", _decimal, sub.get(ExifTags.Base.FNumber))
    _put(meta, "iso", _iso, sub.get(ExifTags.Base.ISOSpeedRatings))
    _put(meta, "focal_length", _decimal, sub.get(ExifTags.Base.FocalLength))
    if orientation := _source_orientation(img, main):
        meta["orientation"] = orientation
    meta["has_gps"] = any(tag != ExifTags.GPS.GPSVersionID for tag in gps)
    meta["has_icc"] = bool(img.info.get("icc_profile"))
    meta["mode"] = img.mode
    meta["has_alpha"] = img.has_transparency_data
    return bounded_metadata(meta)


def exif_for_output(exif: Image.Exif) -> bytes | None:
    """EXIF for renditions when metadata is kept: no Orientation, no layout tags."""
    try:
        out = Image.Exif()
        for tag in _IFD0_KEEP:
            if tag in exif:
                out[tag] = exif[tag]
        sub = {k: v for k, v in _ifd(exif, ExifTags.IFD.Exif).items() if k not in _EXIF_DROP}
        if sub:
            out[ExifTags.IFD.Exif] = sub
        gps = _ifd(exif, ExifTags.IFD.GPSInfo)
        if gps:
            out[ExifTags.IFD.GPSInfo] = gps
        data = out.tobytes() if len(out) else b""
        return data if 0 < len(data) <= MAX_EXIF_BYTES else None
    except MemoryError:
        raise
    except Exception:
        return None


def _ifd(exif: Image.Exif, ifd: ExifTags.IFD | None) -> dict[int, Any]:
    try:
        return dict(exif) if ifd is None else dict(exif.get_ifd(ifd))
    except MemoryError:
        raise
    except Exception:
        return {}


def _put(meta: dict[str, Any], key: str, convert: Callable[[Any], Any], raw: Any) -> None:
    if raw is None:
        return
    try:
        value = convert(raw)
    except MemoryError:
        raise
    except Exception:
        return
    if value is not None:
        meta[key] = value


def _source_orientation(img: Image.Image, main: Mapping[int, Any]) -> int | None:
    """The orientation tag as the file stores it.

    HEIF and AVIF: as ``decode`` read it from the file's EXIF item (libheif
    applies the file's transforms instead and pi-heif resets the tag; Pillow's
    AVIF plugin puts the transforms in its place), whatever was applied.
    """
    if "original_orientation" in img.info:
        value = img.info["original_orientation"]
        return value if isinstance(value, int) and 1 <= value <= 8 else None
    return _orientation(main)


def _orientation(exif: Mapping[int, Any]) -> int | None:
    try:
        value = int(exif.get(_ORIENTATION, 0))
    except (TypeError, ValueError):
        return None
    return value if 1 <= value <= 8 else None


def _text(raw: Any) -> str | None:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        return None
    return raw.split("\x00", 1)[0].strip() or None


def _taken_at(raw: Any) -> str | None:
    text = _text(raw)
    match = _DATE.match(text or "")
    if not match:
        return None
    year, month, day, hour, minute, second = map(int, match.groups())
    return datetime(year, month, day, hour, minute, second).isoformat()


def _number(raw: Any) -> float | None:
    if isinstance(raw, tuple | list) and raw:
        raw = raw[0]  # several values (e.g. two ISO speeds): the first
    value = float(raw)
    return value if math.isfinite(value) and value > 0 else None


def _decimal(raw: Any) -> float | None:
    value = _number(raw)
    return None if value is None else round(value, 2)


def _iso(raw: Any) -> int | None:
    value = _number(raw)
    return None if value is None else round(value)


def _exposure(raw: Any) -> str | None:
    """``1/250`` for short exposures, else the seconds as a decimal (``2``, ``0.3``)."""
    value = _number(raw)
    if value is None:
        return None
    if value < 1:
        inverse = 1 / value
        whole = round(inverse)
        if whole >= 2 and abs(inverse - whole) <= 0.01 * inverse:
            return f"1/{whole}"
    return f"{value:.4g}"
