"""Test images made in code: no binary fixtures in the repository."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import Image

from chalicelib.settings import Settings


def jpeg(width: int, height: int, *, orientation: int | None = None, quality: int = 90) -> bytes:
    image = Image.new("RGB", (width, height), (200, 40, 40))
    # A distinct top-left corner, so orientation can be checked in outputs.
    image.paste((20, 20, 220), (0, 0, max(1, width // 4), max(1, height // 4)))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()


def encoded(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png(width: int, height: int, mode: str = "RGBA") -> bytes:
    image = Image.new(mode, (width, height))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def format_of(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        return str(image.format)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR (with a correct CRC) claims another size:
    the shape of a decompression bomb, without the bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def without_urls(image: dict[str, Any]) -> dict[str, Any]:
    """A REST record without its presigned URLs (they carry the time they were made)."""
    renditions = {
        name: {k: v for k, v in rendition.items() if k != "url"}
        for name, rendition in image["renditions"].items()
    }
    return image | {"renditions": renditions}


def layout_1_fingerprint(s: Settings) -> str:
    """The settings fingerprint records got before the key layout joined it."""
    text = "|".join(
        [",".join(map(str, s.renditions)), s.output_format, str(s.jpeg_quality),
         str(s.strip_metadata), s.rendition_prefix, s.dest_bucket]
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def process_gone(pid: int) -> bool:
    """Not running: no such process (Linux's /proc), or a zombie not yet reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")
