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
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

from .errors import ImageRejected

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

NAMES = {"JPEG": "JPEG", "PNG": "PNG", "GIF": "GIF", "TIFF": "TIFF", "WEBP": "WebP", "BMP": "BMP"}

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
    return None


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
}
