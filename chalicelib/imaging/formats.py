"""Accepted source formats, output formats and the ``OUTPUT_FORMAT=auto`` rule."""

from __future__ import annotations

SOURCE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
ALLOWED_TEXT = "JPEG, PNG, WebP, GIF, TIFF, BMP"

SOURCE_CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}
OUTPUT_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
OUTPUT_FORMATS = ("auto", "jpeg", "png", "webp")

_AUTO = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "GIF": "PNG"}

# Magic numbers, to tell a damaged file of an accepted format from a foreign one.
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
)


def output_format(requested: str, source_format: str, has_alpha: bool) -> str:
    """Pillow name of the format renditions are written in.

    ``auto``: JPEG, PNG and WebP keep their format, GIF becomes PNG, TIFF and
    BMP become JPEG, or PNG when they have an alpha channel.
    """
    requested = requested.lower()
    if requested != "auto":
        return requested.upper()
    if source_format in _AUTO:
        return _AUTO[source_format]
    return "PNG" if has_alpha else "JPEG"


def sniff(data: bytes) -> str | None:
    """The accepted format ``data`` claims to be by its first bytes, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None
