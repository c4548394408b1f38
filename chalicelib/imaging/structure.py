"""Structural caps, read from the bytes before any decoder sees them.

A file can be small, inside the byte and pixel caps, and still make a decoder
work for minutes: a progressive JPEG whose scan is repeated ten thousand
times, millions of GIF frames or PNG chunks, a TIFF of a hundred thousand
pages (Pillow counts them in quadratic time), an RLE BMP (Pillow decodes RLE
in pure Python). Each function here walks one format's structure, refuses
with ``ImageRejected`` once a count passes its cap, and returns the frames
the pixel cap must count. Every loop stops at its cap, so a check costs what
its cap allows, whatever the file; the bytes in between are skipped by
offset or searched in C (``re``).

A damaged structure is not judged here: the walk stops where the bytes end
or stop making sense, and the decoder then says what is wrong.

Each cap was chosen by measurement: CPU time of ``process_image`` on one
x86-64 core (Pillow 13, libvips 8.18), for the worst file at the cap, made
by ``tests/hostile_files.py``. "Honest" files are those cameras, editors and
encoders write, up to the default ``MAX_SOURCE_BYTES`` (50 MB).

HEIF and AVIF (ISOBMFF boxes, ``isobmff``) are walked further: what the
primary picture is coded as (the allow-list goes down to the codec), its
declared size (``ispe``), a grid's tiles, and its EXIF item, so that the
pixel cap applies before libheif or libavif parse the file.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field

from .errors import ImageRejected
from .formats import MAX_BRANDS_READ, isobmff_format

# JPEG scans (SOS segments). libjpeg decodes each scan of a progressive JPEG
# over every block of the components it names, however few bytes it has: a
# 2048x2048 JPEG whose 12-byte scan is repeated 1,000 times took 4.7 s,
# 10,000 times 49 s (here, as below, CPU time). The cost is scans x
# pixels: 1.2 ms a scan and megapixel for a luma refinement scan, 2.3 ms for
# a first DC scan of three full-resolution components (the worst). Encoders
# write 10 or 11 scans (libjpeg's and mozjpeg's scripts), Photoshop 3 to 5.
# So a JPEG may have MAX_JPEG_SCAN_MEGAPIXELS / its megapixels scans, at
# least MIN_JPEG_SCANS and at most MAX_JPEG_SCANS: 20 at 50 MP, 100 up to
# 10 MP. At the cap, the worst files (20 first DC scans at 50 MP, 100 at
# 10 MP) take 2.2 and 2.6 s, the repeated 12-byte scan 1.0 and 1.3 s; an
# honest 50 MP progressive JPEG (10 scans, 4:4:4, 27 MB) takes 2.1 s.
MAX_JPEG_SCANS = 100
MIN_JPEG_SCANS = 20
MAX_JPEG_SCAN_MEGAPIXELS = 1000
# Segments (APPn, COM, DQT, DHT, SOS, ...) of the first picture: Pillow reads
# those before the first scan in Python. Files have a few dozen (one or two
# per scan); 990 empty COM segments take Pillow 4 ms.
MAX_JPEG_SEGMENTS = 1000
# Bytes before the first scan that belong to no segment (junk, fill bytes):
# Pillow skips them one at a time in Python, 0.2 s a megabyte; libjpeg warns
# about any. 64 KB take Pillow 11 ms.
MAX_JPEG_STRAY_BYTES = 65_536

# PNG chunks. Pillow reads each chunk in Python (3 million empty private
# chunks: 21 s and 400 MB). Encoders cut the pixel data (IDAT) into chunks
# of 8 KB (libpng's default) or more, so a 50 MB file has about 6,400; a
# file of 50,000 would need 1 KB chunks. A 64x64 PNG of 50,000 chunks takes
# Pillow 0.35 s, libvips 0.14 s.
MAX_PNG_CHUNKS = 50_000
# Ancillary chunks other than frame parts (text, colour, private data):
# files have a handful, a few dozen with much text. 1,000 empty private
# chunks take Pillow 16 ms.
MAX_PNG_ANCILLARY_CHUNKS = 1000
# An animated PNG's frame parts: as many as its frames and IDAT-sized
# pieces, counted by MAX_PNG_CHUNKS only.
_PNG_FRAME_CHUNKS = frozenset({b"fcTL", b"fdAT"})

# Frames of an animation (GIF, WebP, APNG): only the first is decoded, but
# the pixel cap counts every frame, so they are counted here rather than by
# Pillow (which walks GIF frames in Python: 2 million took 6 s). Long honest
# animations have a few thousand frames (and the pixel cap limits them by
# their size). A 10,000-frame GIF takes 14 ms in all, a 10,000-frame WebP
# 16 ms.
MAX_FRAMES = 10_000
# GIF data sub-blocks (at most 255 bytes each: a 50 MB GIF has at least
# 205,000) and stray bytes between blocks (Pillow skips them one at a time),
# over the whole file. 250,000 one-byte sub-blocks take 0.1 s in all.
MAX_GIF_BLOCKS = 250_000

# TIFF pages (IFDs): Pillow's ``n_frames`` walks the chain in quadratic time
# (40,000 1x1 pages: 29 s; 300,000 did not end in 120 s of wall time). Multi-page
# files are scanned documents, whose pages the pixel cap limits to a few
# dozen. 1,000 pages take 6 ms in all.
MAX_TIFF_PAGES = 1000
# Tags in one IFD: Pillow parses the first page's in Python, twice at open
# and once more for EXIF (65,535 tags: 1.2 s). Files have 10 to 100, DNG a
# few hundred; 1,000 take 7 ms in all.
MAX_TIFF_TAGS = 1000

# WebP chunks: libwebp's demuxer indexes every chunk when Pillow opens the
# file. Files have one a frame and a few more.
MAX_WEBP_CHUNKS = MAX_FRAMES + 100

# BMP: Pillow decodes RLE4 and RLE8 in Python, a pixel at a time where a
# row ends early or the pixels are 4-bit: a 7071x7071 RLE8 BMP of 29 KB took
# 8.6 s and 160 MB. RLE was made for small
# palette images (icons, Windows 3 screens). An RLE8 BMP of 1024x1024 whose
# rows all end early (the worst) takes 0.24 s, RLE4 runs 0.19 s.
MAX_BMP_RLE_PIXELS = 1024 * 1024

# HEIF and AVIF (ISOBMFF): boxes, each a size, a type and a payload, some of
# them containers. libheif (pi-heif) and libavif (Pillow) read every box at
# the top level (6.5 million 8-byte boxes, a 52 MB file: 0.3 s each) and
# build objects for the items, properties and references ``meta`` declares.
# Files have a few dozen boxes and one per item: a few hundred, about 1,100
# at MAX_ITEMS.
MAX_BOXES = 10_000
# Brands in the ``ftyp`` box (major, version, compatible ones): files list 2
# to 8; libavif compares each (12 million in a 45 MB ftyp: 0.13 s; libheif
# refused that file). Also all that ``formats.isobmff_format`` reads of them.
MAX_BRANDS = MAX_BRANDS_READ
# Nesting of the boxes walked here: files nest 6 deep (moov, trak, mdia,
# minf, stbl, stsz), and this walk recurses once a level. libheif refuses
# boxes more than 21 levels deep; libavif only descends where a box belongs.
MAX_BOX_DEPTH = 16
# Items (pictures, tiles, thumbnails, EXIF, XMP) in ``iinf``, ``iloc`` and
# ``ipma``. libavif's parse takes time quadratic in them (1,000 EXIF items:
# 3 ms, 5,000: 38 ms, 20,000: 1.3 s, 60,000: 4.2 s), and libheif refuses
# over 1,000 (its default security limit). A 48 MP iPhone photo has about
# 200 (192 tiles of 512x512, a thumbnail, EXIF, XMP, a gain map).
MAX_ITEMS = 1000
# Item properties (``ipco``: coding configuration, size, colour, transforms):
# files have 5 to 40, shared by the items; libheif refuses over 100 children
# in a box, so no HEIF file has more. libavif reads 100,000 in 18 ms.
MAX_PROPERTIES = 100
# Associations of items with properties (``ipma``): a few per item. libavif
# reads 1,000 items x 255 associations in 17 ms, 5,000 x 255 in 0.14 s.
MAX_ASSOCIATIONS = 16 * MAX_ITEMS
# References between items (``iref``: tiles of a grid, thumbnail, EXIF, alpha
# of a picture): one or two per item; libheif refuses over 1,000.
MAX_REFERENCES = 1000
# Tiles of a grid (the inputs of a derived picture): each is its own HEVC or
# AV1 stream, decoded with its own set-up. 2048x1984 pixels in 992 tiles of
# 64x64 took libheif 0.54 s of CPU, as one picture 0.27 s (in 512 px tiles
# 0.29 s). Phones write 512x512 tiles: 192 for 48 MP; 256 px tiles would
# make 763 at the pixel cap's 50 MP.
MAX_GRID_TILES = 1000
# Derived pictures made of derived pictures: a grid of coded tiles is one
# level, an ``iden`` (a rotated or cropped view) of a grid two.
MAX_DERIVATION_DEPTH = 2
# Extents (pieces) of one item's data: files write one; libheif refuses over 32.
MAX_ITEM_EXTENTS = 32
# The EXIF item read for its orientation tag: a few KB, 64 KB with maker notes.
MAX_EXIF_ITEM_BYTES = 1 << 20

NAMES = {
    "JPEG": "JPEG",
    "PNG": "PNG",
    "GIF": "GIF",
    "TIFF": "TIFF",
    "WEBP": "WebP",
    "BMP": "BMP",
    "HEIF": "HEIF",
    "AVIF": "AVIF",
}

# Pillow's TIFF prefixes, the odd ones included (it opens those too).
_TIFF_PREFIXES = (
    b"MM\x00\x2a",
    b"II\x2a\x00",
    b"MM\x2a\x00",
    b"II\x00\x2a",
    b"MM\x00\x2b",
    b"II\x2b\x00",
)
_WEBP_KINDS = (b"VP8 ", b"VP8X", b"VP8L")


def identify(data: bytes) -> str | None:
    """The Pillow format ``data`` will be opened as, by the same tests Pillow's
    plugins apply to its first bytes (``_accept``), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith(_TIFF_PREFIXES):
        return "TIFF"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP" and data[12:16] in _WEBP_KINDS:
        return "WEBP"
    if data.startswith(b"BM"):
        return "BMP"
    return isobmff_format(data)


def frames(data: bytes, fmt: str | None) -> int:
    """Frames (pages) of ``data`` as ``fmt`` once its structure passed its caps:
    at least 1, and 1 for formats this module does not know.

    Raises ``ImageRejected`` naming the cap passed.
    """
    check = _CHECKS.get(fmt or "")
    if check is None:
        return 1
    try:
        return max(1, check(data))
    except (IndexError, struct.error):  # a header cut short: the decoder will say so
        return 1


# --- JPEG ---------------------------------------------------------------------

# A marker among segments: 0xFF, then neither 0x00 (a stuffed byte, skipped
# as junk) nor 0xFF (a fill byte: the marker is at the next one).
_JPEG_SEGMENT_MARKER = re.compile(rb"\xff[^\x00\xff]")
# A marker after a scan's header, in entropy-coded data: also not a restart
# marker (RST0-RST7), which belongs to the data.
_JPEG_DATA_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Markers without a length: TEM, RSTn, SOI (EOI ends the walk).
_JPEG_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD9)})
# Start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC), which give the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_frames(data: bytes) -> int:
    """1 (a second picture, as in MPO, is never decoded), once the first
    picture's structure passed its caps (``jpeg_scans``)."""
    jpeg_scans(data)
    return 1


def jpeg_scans(data: bytes) -> int:
    """Scans of the first picture, once they, its segments and its stray
    bytes passed their caps.

    Segments are followed by their lengths; after a scan's header, the next
    marker is searched for (in C). A second picture after the end marker
    (MPO, an appended thumbnail) is never decoded, so not read.
    """
    scans = segments = stray = 0
    allowed = MAX_JPEG_SCANS
    megapixels = 0.0
    at, size = 2, len(data)  # after SOI
    while at + 4 <= size:
        if scans:
            found = _JPEG_DATA_MARKER.search(data, at)
        else:
            found = _JPEG_SEGMENT_MARKER.search(data, at)
            stray += (found.start() if found else size) - at
            _check_jpeg_stray(stray)
        if found is None:
            break
        marker, at = data[found.start() + 1], found.start() + 2
        if marker == 0xD9:  # EOI
            break
        if marker in _JPEG_NO_LENGTH:
            continue
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise ImageRejected(
                f"the JPEG has over {MAX_JPEG_SEGMENTS:,} segments (markers); re-save it"
            )
        if marker in _JPEG_SOF and at + 7 <= size:
            height, width = struct.unpack_from(">HH", data, at + 3)
            megapixels = width * height / 1e6
            allowed = jpeg_scans_allowed(width * height)
        elif marker == 0xDA:  # SOS
            scans += 1
            if scans > allowed:
                raise ImageRejected(_too_many_scans(allowed, megapixels))
        (length,) = struct.unpack_from(">H", data, at)
        at += length
    return scans


def jpeg_scans_allowed(pixels: int) -> int:
    """Scans a JPEG of ``pixels`` may have: the more pixels, the fewer."""
    by_size = int(MAX_JPEG_SCAN_MEGAPIXELS * 1e6 / max(1, pixels))
    return max(MIN_JPEG_SCANS, min(MAX_JPEG_SCANS, by_size))


def _too_many_scans(allowed: int, megapixels: float) -> str:
    size = "" if allowed == MAX_JPEG_SCANS else f" for its {megapixels:.1f} megapixels"
    return f"the JPEG has over {allowed:,} scans (progressive passes){size}; re-save it"


def _check_jpeg_stray(stray: int) -> None:
    if stray > MAX_JPEG_STRAY_BYTES:
        raise ImageRejected(
            f"the JPEG has over {MAX_JPEG_STRAY_BYTES:,} bytes outside its segments "
            "before the image data; re-save it"
        )


# --- PNG ----------------------------------------------------------------------


def png_frames(data: bytes) -> int:
    """Frames an animated PNG declares (its acTL chunk; 1 for a still image),
    once its chunks passed their caps."""
    chunks = ancillary = 0
    declared = 1
    at, size = 8, len(data)  # after the signature
    while at + 8 <= size:
        length, kind = struct.unpack_from(">I4s", data, at)
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise ImageRejected(
                f"the PNG has over {MAX_PNG_CHUNKS:,} chunks; re-save it "
                "(its pixel data is cut into tiny pieces)"
            )
        if kind[0] & 0x20 and kind not in _PNG_FRAME_CHUNKS:  # lower case: ancillary
            ancillary += 1
            if ancillary > MAX_PNG_ANCILLARY_CHUNKS:
                raise ImageRejected(
                    f"the PNG has over {MAX_PNG_ANCILLARY_CHUNKS:,} ancillary chunks "
                    "(text, private data); re-save it without them"
                )
        if kind == b"acTL" and at + 12 <= size:
            (declared,) = struct.unpack_from(">I", data, at + 8)
            if declared > MAX_FRAMES:
                raise ImageRejected(_too_many_frames("PNG", declared))
        if kind == b"IEND":
            break
        at += 12 + length
    return declared


# --- GIF ----------------------------------------------------------------------


def gif_frames(data: bytes) -> int:
    """Frames of a GIF, once they and its blocks passed their caps."""
    count = blocks = 0
    at, size = 13, len(data)  # after the header and the logical screen descriptor
    if size > 10 and data[10] & 0x80:
        at += 3 << ((data[10] & 7) + 1)  # the global colour table
    while at < size:
        kind = data[at]
        at += 1
        if kind == 0x3B:  # trailer
            break
        if kind == 0x21:  # extension: a label, then sub-blocks
            at, blocks = _gif_sub_blocks(data, at + 1, blocks)
        elif kind == 0x2C:  # image descriptor
            count += 1
            if count > MAX_FRAMES:
                raise ImageRejected(_too_many_frames("GIF"))
            if at + 9 > size:
                break
            flags = data[at + 8]
            at += 9 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # and a local table
            at, blocks = _gif_sub_blocks(data, at + 1, blocks)  # after the LZW code size
        else:  # a stray byte, which Pillow skips
            blocks += 1
            _check_gif_blocks(blocks)
    return count


def _gif_sub_blocks(data: bytes, at: int, blocks: int) -> tuple[int, int]:
    """Where the sub-blocks starting at ``at`` end (after the empty one), and
    ``blocks`` plus their number."""
    size = len(data)
    while at < size:
        length = data[at]
        at += length + 1
        blocks += 1
        if length == 0:
            break
        _check_gif_blocks(blocks)
    return at, blocks


def _check_gif_blocks(blocks: int) -> None:
    if blocks > MAX_GIF_BLOCKS:
        raise ImageRejected(
            f"the GIF is cut into over {MAX_GIF_BLOCKS:,} blocks (data in pieces of "
            "a few bytes, or stray bytes); re-save it"
        )


# --- TIFF ---------------------------------------------------------------------


def tiff_pages(data: bytes) -> int:
    """Pages (IFDs) of a TIFF, once they and their tags passed their caps.

    The chain of IFDs is followed as Pillow follows it (BigTIFF when the third
    byte is 43). An IFD already visited ends it, as in Pillow, so a loop
    counts each page once.
    """
    endian = "<" if data[:2] == b"II" else ">"
    if data[2] == 43:  # BigTIFF: 8-byte counts and offsets, 20-byte entries
        count_format, entry_size, offset_format, first_at = "Q", 20, "Q", 8
    else:
        count_format, entry_size, offset_format, first_at = "H", 12, "I", 4
    count_size, offset_size = struct.calcsize(count_format), struct.calcsize(offset_format)
    (offset,) = struct.unpack_from(endian + offset_format, data, first_at)
    seen: set[int] = set()
    while offset and offset not in seen and offset + count_size <= len(data):
        seen.add(offset)
        if len(seen) > MAX_TIFF_PAGES:
            raise ImageRejected(
                f"the TIFF has over {MAX_TIFF_PAGES:,} pages; only the first is used: save it alone"
            )
        (tags,) = struct.unpack_from(endian + count_format, data, offset)
        if tags > MAX_TIFF_TAGS:
            raise ImageRejected(
                f"page {len(seen)} of the TIFF has {tags:,} tags, over {MAX_TIFF_TAGS:,}; "
                "re-save it"
            )
        at = offset + count_size + tags * entry_size
        if at + offset_size > len(data):
            break
        (offset,) = struct.unpack_from(endian + offset_format, data, at)
    return len(seen)


# --- WebP ---------------------------------------------------------------------


def webp_frames(data: bytes) -> int:
    """Frames (ANMF chunks) of an animated WebP, 0 for a still one, once its
    chunks passed their caps."""
    count = chunks = 0
    at, end = 12, min(len(data), 8 + struct.unpack_from("<I", data, 4)[0])
    while at + 8 <= end:
        kind, length = struct.unpack_from("<4sI", data, at)
        chunks += 1
        if chunks > MAX_WEBP_CHUNKS:
            raise ImageRejected(f"the WebP has over {MAX_WEBP_CHUNKS:,} chunks; re-save it")
        if kind == b"ANMF":
            count += 1
            if count > MAX_FRAMES:
                raise ImageRejected(_too_many_frames("WEBP"))
        at += 8 + length + (length & 1)  # chunks are padded to an even size
    return count


# --- BMP ----------------------------------------------------------------------


def bmp_frames(data: bytes) -> int:
    """1, once an RLE-compressed BMP's pixel count passed its cap."""
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size < 40:  # OS/2 1.x: never compressed
        return 1
    width, height, _, _, compression = struct.unpack_from("<iiHHI", data, 18)
    width, height = abs(width), abs(height)
    if compression in (1, 2) and width * height > MAX_BMP_RLE_PIXELS:  # RLE8, RLE4
        raise ImageRejected(
            f"the BMP is RLE-compressed and {width}x{height} = {width * height:,} pixels, "
            f"over the {MAX_BMP_RLE_PIXELS:,} accepted with RLE; "
            "save it uncompressed or as PNG"
        )
    return 1


# --- HEIF and AVIF (ISOBMFF) --------------------------------------------------

# The coding of pictures each format's decoder is given: pi-heif's libheif
# decodes HEVC (libde265), Pillow's libavif AV1 (dav1d). libheif's other
# codecs (uncompressed, JPEG, JPEG 2000, ...) are kept out as the other
# Pillow plugins are: such a file is refused here, before libheif parses it.
CODECS = {"HEIF": frozenset({b"hvc1"}), "AVIF": frozenset({b"av01"})}
_CODEC_NAMES = {"HEIF": "HEVC (HEIC)", "AVIF": "AV1"}
# Derived pictures, made of the pictures their ``dimg`` references name.
_DERIVED = frozenset({b"grid", b"iden", b"iovl"})
# Items that are no picture (metadata), and infe boxes of versions 0 and 1,
# which name no item type.
_NOT_PICTURES = frozenset({b"Exif", b"mime", b"uri ", b""})
# Plain containers: their payload is boxes.
_CONTAINERS = frozenset(
    {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf", b"edts", b"udta", b"iprp", b"grpl"}
    | {b"mvex", b"moof", b"traf"}
)
# A track's sample tables: a count of entries after the version and flags.
_SAMPLE_TABLES = frozenset({b"stts", b"stsc", b"stco", b"co64", b"stss", b"ctts"})


@dataclass(frozen=True)
class Isobmff:
    """What a HEIF or AVIF file declares about its primary picture, once its
    boxes passed their caps."""

    size: tuple[int, int] | None  # its ``ispe``: as coded, before crop and transforms
    tiles: int  # the pictures it is derived from (a grid's tiles); 0 when it is coded
    tile_pixels: int  # their pixels together, each as coded
    frames: int  # pictures at the top level or a sequence's samples, whichever more
    exif: bytes | None  # its EXIF item from the TIFF header on, as stored


def isobmff(data: bytes, fmt: str) -> Isobmff:
    """Walk the boxes of a ``fmt`` ("HEIF" or "AVIF") file within the caps and
    check how its primary picture is coded.

    Only the file's ``meta`` box declares items; boxes are followed by their
    sizes and entered only where the format puts boxes inside, so a walk
    costs what MAX_BOXES allows. Raises ``ImageRejected`` naming the cap
    passed, or the coding this pipeline does not decode.
    """
    walk = _Walk(data, fmt)
    with suppress(_Short):  # a field past its box's end: the decoder will say what is wrong
        walk.walk(0, len(data), 1, items=False)
    return walk.summary()


class _Short(Exception):
    """A box's fields run past its end."""


class _Fields:
    """Big-endian fields of one box, read in order."""

    def __init__(self, data: bytes, at: int, end: int) -> None:
        self.data, self.at, self.end = data, at, end

    def uint(self, size: int) -> int:
        at = self.at + size
        if at > self.end:
            raise _Short
        value = int.from_bytes(self.data[self.at : at], "big")
        self.at = at
        return value

    def full(self) -> tuple[int, int]:
        """A full box's version and flags."""
        return self.uint(1), self.uint(3)

    def fourcc(self) -> bytes:
        at = self.at + 4
        if at > self.end:
            raise _Short
        value, self.at = self.data[self.at : at], at
        return value


@dataclass
class _Walk:
    data: bytes
    fmt: str
    boxes: int = 0
    meta_seen: bool = False
    primary: int | None = None
    items: int = 0
    types: dict[int, bytes] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)
    properties: list[tuple[bytes, int, int]] = field(default_factory=list)
    associations: dict[int, list[int]] = field(default_factory=dict)
    association_count: int = 0
    references: list[tuple[bytes, int, tuple[int, ...]]] = field(default_factory=list)
    reference_count: int = 0
    locations: dict[int, tuple[int, list[tuple[int, int]]]] = field(default_factory=dict)
    idat: tuple[int, int] | None = None
    samples: int = 0

    @property
    def name(self) -> str:
        return NAMES[self.fmt]

    def children(self, at: int, end: int, depth: int) -> Iterator[tuple[bytes, int, int]]:
        """(type, payload start, end) of the boxes in ``at:end``, ``depth`` deep."""
        data = self.data
        while at + 8 <= end:
            size, kind = struct.unpack_from(">I4s", data, at)
            header = 8
            if size == 1 and at + 16 <= end:
                (size,) = struct.unpack_from(">Q", data, at + 8)
                header = 16
            elif size == 0:  # to the end
                size = end - at
            if size < header or at + size > end:
                return
            self.boxes += 1
            if self.boxes > MAX_BOXES:
                raise ImageRejected(f"the {self.name} has over {MAX_BOXES:,} boxes; re-save it")
            if depth > MAX_BOX_DEPTH:
                raise ImageRejected(
                    f"the {self.name} nests boxes over {MAX_BOX_DEPTH} deep; re-save it"
                )
            yield kind, at + header, at + size
            at += size

    def walk(self, at: int, end: int, depth: int, items: bool) -> None:
        """The boxes in ``at:end``; ``items``: they are the file's ``meta`` box's."""
        for kind, start, stop in self.children(at, end, depth):
            if kind == b"ftyp" and (stop - start - 8) // 4 > MAX_BRANDS:
                raise ImageRejected(
                    f"the {self.name} lists {(stop - start - 8) // 4:,} brands, over "
                    f"{MAX_BRANDS}; re-save it"
                )
            if kind == b"meta":
                mine = depth == 1 and not self.meta_seen
                self.meta_seen = self.meta_seen or depth == 1
                self.walk(start + 4, stop, depth + 1, mine)  # after the version and flags
            elif kind in _CONTAINERS:
                self.walk(start, stop, depth + 1, items)
            elif kind in (b"stsz", b"stz2"):
                self.sample_sizes(kind, _Fields(self.data, start, stop))
            elif kind in _SAMPLE_TABLES:
                self.sample_table(_Fields(self.data, start, stop))
            elif items and kind in _ITEM_BOXES:
                _ITEM_BOXES[kind](self, _Fields(self.data, start, stop), depth)

    # -- the boxes of meta: items, their properties, references and data

    def pitm(self, fields: _Fields, depth: int) -> None:
        version, _ = fields.full()
        if self.primary is None:
            self.primary = fields.uint(2 if version == 0 else 4)

    def iinf(self, fields: _Fields, depth: int) -> None:
        version, _ = fields.full()
        self.check_items(fields.uint(2 if version == 0 else 4), declared=True)
        for kind, start, stop in self.children(fields.at, fields.end, depth + 1):
            if kind == b"infe":
                self.infe(_Fields(self.data, start, stop))

    def infe(self, fields: _Fields) -> None:
        self.items += 1
        self.check_items(self.items)
        version, flags = fields.full()
        if version >= 2:
            item = fields.uint(2 if version == 2 else 4)
            fields.uint(2)  # protection index
            kind = fields.fourcc()
        else:
            item, kind = fields.uint(2), b""
        self.types.setdefault(item, kind)
        if flags & 1:
            self.hidden.add(item)

    def iloc(self, fields: _Fields, depth: int) -> None:
        version, _ = fields.full()
        sizes, more = fields.uint(1), fields.uint(1)
        offset_size, length_size, base_size = sizes >> 4, sizes & 15, more >> 4
        index_size = more & 15 if version in (1, 2) else 0
        count = fields.uint(2 if version < 2 else 4)
        self.check_items(count, declared=True)
        for _ in range(count):
            item = fields.uint(2 if version < 2 else 4)
            method = fields.uint(2) & 15 if version in (1, 2) else 0
            fields.uint(2)  # data reference index
            base = fields.uint(base_size)
            extents = fields.uint(2)
            if extents > MAX_ITEM_EXTENTS:
                raise ImageRejected(
                    f"an item of the {self.name} is cut into {extents:,} pieces, over "
                    f"{MAX_ITEM_EXTENTS}; re-save it"
                )
            pieces = []
            for _ in range(extents):
                fields.uint(index_size)
                pieces.append((base + fields.uint(offset_size), fields.uint(length_size)))
            self.locations.setdefault(item, (method, pieces))

    def iref(self, fields: _Fields, depth: int) -> None:
        version, _ = fields.full()
        id_size = 2 if version == 0 else 4
        for kind, start, stop in self.children(fields.at, fields.end, depth + 1):
            reference = _Fields(self.data, start, stop)
            source, count = reference.uint(id_size), reference.uint(2)
            if kind == b"dimg" and count > MAX_GRID_TILES:
                raise ImageRejected(
                    f"the {self.name} is a grid of {count:,} tiles, over {MAX_GRID_TILES:,}; "
                    "re-save it"
                )
            self.reference_count += count
            if self.reference_count > MAX_REFERENCES:
                raise ImageRejected(
                    f"the {self.name} has over {MAX_REFERENCES:,} references between its "
                    "items; re-save it"
                )
            targets = tuple(reference.uint(id_size) for _ in range(count))
            self.references.append((kind, source, targets))

    def ipco(self, fields: _Fields, depth: int) -> None:
        for kind, start, stop in self.children(fields.at, fields.end, depth + 1):
            self.properties.append((kind, start, stop))
            if len(self.properties) > MAX_PROPERTIES:
                raise ImageRejected(
                    f"the {self.name} has over {MAX_PROPERTIES:,} item properties; re-save it"
                )

    def ipma(self, fields: _Fields, depth: int) -> None:
        version, flags = fields.full()
        entries = fields.uint(4)
        self.check_items(entries, declared=True)
        wide = flags & 1  # 15-bit property indices
        mask = 0x7FFF if wide else 0x7F
        for _ in range(entries):
            item, count = fields.uint(2 if version < 1 else 4), fields.uint(1)
            self.association_count += count
            if self.association_count > MAX_ASSOCIATIONS:
                raise ImageRejected(
                    f"the {self.name} has over {MAX_ASSOCIATIONS:,} associations of items "
                    "with properties; re-save it"
                )
            indices = [fields.uint(2 if wide else 1) & mask for _ in range(count)]
            self.associations.setdefault(item, indices)

    def idat_box(self, fields: _Fields, depth: int) -> None:
        if self.idat is None:
            self.idat = (fields.at, fields.end)

    def check_items(self, count: int, declared: bool = False) -> None:
        if count > MAX_ITEMS:
            what = f"declares {count:,} items" if declared else "has over"
            over = f", over {MAX_ITEMS:,}" if declared else f" {MAX_ITEMS:,} items"
            raise ImageRejected(
                f"the {self.name} {what}{over} (pictures, tiles, metadata); re-save it"
            )

    # -- tracks (sequences)

    def sample_sizes(self, kind: bytes, fields: _Fields) -> None:
        fields.full()
        fields.uint(4)  # stsz: the sample size; stz2: reserved and the field size
        count = fields.uint(4)
        if count > MAX_FRAMES:
            raise ImageRejected(_too_many_frames(self.fmt, count))
        self.samples = max(self.samples, count)

    def sample_table(self, fields: _Fields) -> None:
        fields.full()
        count = fields.uint(4)
        if count > MAX_FRAMES:  # never more entries than samples
            raise ImageRejected(
                f"a frame table of the {self.name} has {count:,} entries, over "
                f"{MAX_FRAMES:,}; only the first frame is used: save it alone"
            )

    # -- after the walk

    def summary(self) -> Isobmff:
        dimg: dict[int, tuple[int, ...]] = {}
        for kind, source, targets in self.references:
            if kind == b"dimg":
                dimg.setdefault(source, targets)
        frames = self.frames(dimg)
        primary = self.primary
        if primary is None or primary not in self.types:
            return Isobmff(None, 0, 0, frames, None)  # the decoder will say
        coded, pixels = self.decoded(primary, dimg, {}, 0)
        if not coded <= CODECS[self.fmt]:
            names = ", ".join(sorted(_fourcc(kind) for kind in coded))
            raise ImageRejected(
                f"the {self.name}'s picture is coded as {names}, not "
                f"{_CODEC_NAMES[self.fmt]}; re-save it as HEIC, AVIF or JPEG"
            )
        derived = self.types[primary] in _DERIVED
        tiles = len(dimg.get(primary, ())) if derived else 0
        return Isobmff(
            self.ispe(primary), tiles, pixels if derived else 0, frames, self.exif(primary)
        )

    def decoded(
        self,
        item: int,
        dimg: dict[int, tuple[int, ...]],
        memo: dict[int, tuple[frozenset[bytes], int]],
        depth: int,
    ) -> tuple[frozenset[bytes], int]:
        """The codings ``item`` is made of, and the pixels decoded to make it."""
        if item in memo:
            return memo[item]
        kind = self.types.get(item, b"")
        if kind not in _DERIVED:
            size = self.ispe(item)
            result = frozenset({kind}), size[0] * size[1] if size else 0
        else:
            if depth >= MAX_DERIVATION_DEPTH:  # also where references loop
                raise ImageRejected(
                    f"the {self.name}'s picture is derived from derived pictures over "
                    f"{MAX_DERIVATION_DEPTH} levels deep; re-save it"
                )
            kinds: set[bytes] = set()
            pixels = 0
            for source in dimg.get(item, ()):
                source_kinds, source_pixels = self.decoded(source, dimg, memo, depth + 1)
                kinds |= source_kinds
                pixels += source_pixels
            result = frozenset(kinds), pixels
        memo[item] = result
        return result

    def ispe(self, item: int) -> tuple[int, int] | None:
        """``item``'s size as coded (its ``ispe`` property), if it has one."""
        for index in self.associations.get(item, ()):
            if 1 <= index <= len(self.properties) and self.properties[index - 1][0] == b"ispe":
                _, start, stop = self.properties[index - 1]
                fields = _Fields(self.data, start, stop)
                try:
                    fields.full()
                    return fields.uint(4), fields.uint(4)
                except _Short:
                    return None
        return None

    def frames(self, dimg: dict[int, tuple[int, ...]]) -> int:
        """Pictures at the top level (not hidden, not a tile, thumbnail or
        alpha or depth map of another), or a track's samples, at least 1."""
        below: set[int] = {t for targets in dimg.values() for t in targets}
        below.update(source for kind, source, _ in self.references if kind in (b"thmb", b"auxl"))
        pictures = sum(
            1
            for item, kind in self.types.items()
            if kind not in _NOT_PICTURES and item not in self.hidden and item not in below
        )
        return max(1, pictures, self.samples)

    def exif(self, primary: int) -> bytes | None:
        """The primary picture's EXIF item (``cdsc``), from its TIFF header on."""
        for kind, source, targets in self.references:
            if kind == b"cdsc" and primary in targets and self.types.get(source) == b"Exif":
                payload = self.item_data(source)
                if payload is None or len(payload) < 4:
                    return None
                return payload[4 + int.from_bytes(payload[:4], "big") :] or None
        return None

    def item_data(self, item: int) -> bytes | None:
        """An item's data (in the file or the ``idat`` box), up to ``MAX_EXIF_ITEM_BYTES``."""
        method, pieces = self.locations.get(item, (-1, []))
        if method == 0:
            base, limit = 0, len(self.data)
        elif method == 1 and self.idat is not None:
            base, limit = self.idat
        else:
            return None
        spans: list[tuple[int, int]] = []
        for offset, length in pieces:
            start = base + offset
            stop = limit if length == 0 else start + length  # 0: to the end
            if stop > limit or sum(b - a for a, b in spans) + stop - start > MAX_EXIF_ITEM_BYTES:
                return None
            spans.append((start, stop))
        return b"".join(self.data[a:b] for a, b in spans)


_ITEM_BOXES: dict[bytes, Callable[[_Walk, _Fields, int], None]] = {
    b"pitm": _Walk.pitm,
    b"iinf": _Walk.iinf,
    b"iloc": _Walk.iloc,
    b"iref": _Walk.iref,
    b"ipco": _Walk.ipco,
    b"ipma": _Walk.ipma,
    b"idat": _Walk.idat_box,
}


def _fourcc(kind: bytes) -> str:
    text = kind.decode("latin-1")
    return f"'{text}'" if text.isprintable() and text.isascii() else f"0x{kind.hex()}"


def _too_many_frames(fmt: str, declared: int | None = None) -> str:
    """The message for over ``MAX_FRAMES`` frames, or for ``declared`` ones."""
    if declared is None:
        count = f"over {MAX_FRAMES:,} frames"
    else:
        count = f"{declared:,} frames, over {MAX_FRAMES:,}"
    return f"the {NAMES[fmt]} has {count}; only the first is used: save it alone"


_CHECKS: dict[str, Callable[[bytes], int]] = {
    "JPEG": jpeg_frames,
    "PNG": png_frames,
    "GIF": gif_frames,
    "TIFF": tiff_pages,
    "WEBP": webp_frames,
    "BMP": bmp_frames,
    "HEIF": lambda data: isobmff(data, "HEIF").frames,
    "AVIF": lambda data: isobmff(data, "AVIF").frames,
}
