"""Accepted source formats, output formats and the ``OUTPUT_FORMAT=auto`` rule.

Source formats are named as Pillow names them: "HEIF" is pi-heif's plugin
(libheif, HEVC-coded HEIF: HEIC), "AVIF" Pillow's own (libavif).
"""

from __future__ import annotations

SOURCE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "HEIF", "AVIF")
ALLOWED_TEXT = "JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC/HEIF, AVIF"

SOURCE_CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    # The format's own type: right for every HEIF file, whatever codes its
    # pictures; ``source_content_type`` gives HEVC-branded files image/heic.
    "HEIF": "image/heif",
    "AVIF": "image/avif",
}
OUTPUT_CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
}
OUTPUT_FORMATS = ("auto", "jpeg", "png", "webp", "avif")

_AUTO = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "AVIF": "AVIF", "GIF": "PNG"}

# ISOBMFF files (HEIF, AVIF) by the major brand of their ``ftyp`` box, as
# pi-heif's and Pillow's AVIF plugin accept them (their ``_accept``).
# HEVC-coded HEIF (HEIC): stills, then sequences (ISO/IEC 23008-12 Annex B).
HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
AVIF_BRANDS = frozenset({b"avif", b"avis"})
# HEIF of any codec (still, sequence): the compatible brands say which.
# libavif reads only files that list "avif" or "avis" among them.
MIAF_BRANDS = frozenset({b"mif1", b"msf1"})
# Compatible brands looked at: files list 2 to 8 (the walk refuses more: structure.MAX_BRANDS).
MAX_BRANDS_READ = 64

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

    ``auto``: JPEG, PNG, WebP and AVIF keep their format, GIF becomes PNG,
    TIFF, BMP and HEIF (HEIC) become JPEG, or PNG when they have an alpha
    channel.
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
    if isobmff := isobmff_format(data):
        return isobmff
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def isobmff_format(data: bytes) -> str | None:
    """The format (HEIF or AVIF) of an ISOBMFF file of an accepted brand, else None.

    A generic (``mif1``, ``msf1``) file is AVIF when it lists an AVIF brand,
    as libavif requires, and otherwise HEIF, whose reader (libheif) takes
    any; the structure then says whether its pictures are coded as the
    format's decoder needs (``structure.isobmff``).
    """
    if data[4:8] != b"ftyp":
        return None
    major = data[8:12]
    if major in HEIC_BRANDS:
        return "HEIF"
    if major in AVIF_BRANDS:
        return "AVIF"
    if major in MIAF_BRANDS:
        return "AVIF" if AVIF_BRANDS.intersection(compatible_brands(data)) else "HEIF"
    return None


def compatible_brands(data: bytes) -> list[bytes]:
    """The first ``MAX_BRANDS_READ`` compatible brands of the ``ftyp`` box at the start."""
    size = int.from_bytes(data[:4], "big")
    end = min(len(data), size, 16 + 4 * MAX_BRANDS_READ)
    return [data[at : at + 4] for at in range(16, end - 3, 4)]


def source_content_type(fmt: str, data: bytes) -> str:
    """The content type of a ``fmt`` source, for HEIF by its major brand as
    ISO/IEC 23008-12 Annex C registers them (pi-heif's reading too):
    image/heic for HEVC stills (iPhones' files), image/heif for generic
    ones, and their ``-sequence`` types; for the rest, the format's own."""
    if fmt == "HEIF" and data[4:8] == b"ftyp":
        return _HEIF_CONTENT_TYPES.get(data[8:12], SOURCE_CONTENT_TYPES[fmt])
    return SOURCE_CONTENT_TYPES[fmt]


_HEIF_CONTENT_TYPES = {
    **dict.fromkeys((b"heic", b"heix", b"heim", b"heis"), "image/heic"),
    **dict.fromkeys((b"hevc", b"hevx", b"hevm", b"hevs"), "image/heic-sequence"),
    b"mif1": "image/heif",
    b"msf1": "image/heif-sequence",
}
