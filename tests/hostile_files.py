"""Hostile files, crafted from parameters: small ones for the tests (just over
a cap), big ones for a benchmark (the sizes that once took minutes).

Each is valid enough for the decoders to accept it and spend their time on
it. They are written with struct and zlib where Pillow would not write them
(a scan repeated, empty chunks, RLE8), and fast to make at any size; HEIF
and AVIF ones box by box (``tests/heif_files.py``) around a picture coded
by pillow-heif or Pillow.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache
from typing import Any

from PIL import Image

from tests import heif_files


def progressive_jpeg_repeated_scan(scans: int, width: int = 2048, height: int = 2048) -> bytes:
    """A grey progressive JPEG with ``scans`` scans in all: Pillow's own, then
    its last (an AC refinement of 12 bytes, which still visits every block of
    the image) repeated until there are ``scans``."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    starts = _jpeg_scan_starts(data)
    if scans < len(starts):
        raise ValueError(f"a progressive JPEG has at least {len(starts)} scans")
    end = data.rindex(b"\xff\xd9")
    last = data[starts[-1] : end]
    return data[:end] + last * (scans - len(starts)) + data[end:]


def _small_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, "JPEG")
    return buffer.getvalue()


def jpeg_comments(segments: int) -> bytes:
    """A small JPEG with ``segments`` empty comment (COM) segments after its SOI."""
    data = _small_jpeg()
    return data[:2] + b"\xff\xfe\x00\x02" * segments + data[2:]


def jpeg_stray_bytes(count: int) -> bytes:
    """A small JPEG with ``count`` bytes of no segment after its first segment."""
    data = _small_jpeg()
    at = 4 + struct.unpack_from(">H", data, 4)[0]  # after SOI and APP0
    return data[:at] + b"\x00" * count + data[at:]


def _jpeg_scan_starts(data: bytes) -> list[int]:
    """Offsets of the SOS markers of a JPEG without restart markers."""
    starts, at = [], 2
    while data[at + 1] != 0xD9:
        marker = data[at + 1]
        (length,) = struct.unpack_from(">H", data, at + 2)
        at += 2 + length
        if marker == 0xDA:
            starts.append(at - 2 - length)
            at = data.index(b"\xff", at)  # the entropy-coded data ends at a marker
            while data[at + 1] == 0:  # a stuffed 0xFF byte
                at = data.index(b"\xff", at + 2)
    return starts


def tiff_pages(pages: int) -> bytes:
    """A little-endian TIFF of ``pages`` 1x1 grey pages, sharing one strip."""
    entries = (
        (256, 3, 1),  # ImageWidth
        (257, 3, 1),  # ImageLength
        (258, 3, 8),  # BitsPerSample
        (259, 3, 1),  # Compression: none
        (262, 3, 1),  # PhotometricInterpretation: black is zero
        (273, 4, 8),  # StripOffsets: the byte after the header
        (278, 3, 1),  # RowsPerStrip
        (279, 4, 1),  # StripByteCounts
    )
    ifd_size = 2 + 12 * len(entries) + 4
    first = 10  # header (8), the strip (1), a pad byte
    body = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in entries
    )
    nexts = [first + ifd_size * (i + 1) for i in range(pages - 1)] + [0]
    out = [b"II*\x00", struct.pack("<I", first), b"\x80\x00"]
    out.extend(body + struct.pack("<I", following) for following in nexts)
    return b"".join(out)


def tiff_tags(tags: int) -> bytes:
    """A 1x1 TIFF whose one IFD has ``tags`` entries (private tag 65000 repeated)."""
    entries = [(256, 3, 1), (257, 3, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1)]
    entries += [(273, 4, 8), (278, 3, 1), (279, 4, 1)]
    entries += [(65000, 3, 0)] * (tags - len(entries))
    body = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in entries
    )
    return b"II*\x00" + struct.pack("<I", 10) + b"\x80\x00" + body + b"\x00" * 4


def tiff_ifd_loop() -> bytes:
    """A TIFF whose second page points back at the first."""
    data = bytearray(tiff_pages(2))
    ifd_size = 2 + 12 * 8 + 4
    struct.pack_into("<I", data, 10 + 2 * ifd_size - 4, 10)
    return bytes(data)


def bmp_rle8(width: int, height: int) -> bytes:
    """An RLE8 BMP: each row one pixel, then end-of-line (Pillow pads the rest
    of the row a byte at a time), then end-of-bitmap: 4 bytes a row."""
    palette = b"".join(struct.pack("<BBBx", i, i, i) for i in range(256))
    pixels = b"\x01\x01\x00\x00" * height + b"\x00\x01"
    offset = 14 + 40 + len(palette)
    file_header = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return file_header + info + palette + pixels


def bmp_rle4(width: int, height: int) -> bytes:
    """An RLE4 BMP: each row runs of 255 pixels (Pillow writes RLE4 runs a
    pixel at a time), then end-of-bitmap."""
    palette = b"".join(struct.pack("<BBBx", i * 17, i * 17, i * 17) for i in range(16))
    full, rest = divmod(width, 255)
    row = b"\xff\x12" * full + (bytes([rest, 0x12]) if rest else b"") + b"\x00\x00"
    pixels = row * height + b"\x00\x01"
    offset = 14 + 40 + len(palette)
    file_header = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 4, 2, len(pixels), 2835, 2835, 16, 0)
    return file_header + info + palette + pixels


# One 1x1 frame: image descriptor, LZW minimum code size 2, one data
# sub-block (clear code, index 0, end code), block terminator.
_GIF_FRAME = b",\x00\x00\x00\x00\x01\x00\x01\x00\x00" + b"\x02" + b"\x02\x44\x01" + b"\x00"


def gif_frames(frames: int) -> bytes:
    """A GIF of ``frames`` 1x1 frames (15 bytes each)."""
    header = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    return header + _GIF_FRAME * frames + b";"


def gif_comment_blocks(blocks: int) -> bytes:
    """A 1x1 GIF with a comment of ``blocks`` one-byte sub-blocks before its frame."""
    header = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    comment = b"!\xfe" + b"\x01x" * blocks + b"\x00"
    return header + comment + _GIF_FRAME + b";"


def _png_chunk(kind: bytes, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _png(width: int, height: int, idat: list[bytes], before: bytes = b"") -> bytes:
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    chunks = b"".join(_png_chunk(b"IDAT", part) for part in idat)
    return b"\x89PNG\r\n\x1a\n" + ihdr + before + chunks + _png_chunk(b"IEND")


def png_private_chunks(chunks: int, kind: bytes = b"prVt") -> bytes:
    """A 1x1 grey PNG with ``chunks`` empty chunks of ``kind`` before its pixels."""
    return _png(1, 1, [zlib.compress(b"\x00\x00")], _png_chunk(kind) * chunks)


def png_idat_chunks(chunks: int, width: int = 64, height: int = 64) -> bytes:
    """A grey PNG whose compressed pixels are split into ``chunks`` IDAT chunks
    (the last ones empty when the stream is shorter than ``chunks`` bytes)."""
    stream = zlib.compress(b"".join(b"\x00" + bytes([y % 256]) * width for y in range(height)))
    step = max(1, -(-len(stream) // chunks))
    parts = [stream[i : i + step] for i in range(0, len(stream), step)]
    return _png(width, height, parts + [b""] * (chunks - len(parts)))


def png_size(width: int, height: int) -> bytes:
    """A real, valid grey PNG of ``width`` x ``height``: a ramp across (of at
    most 256 steps, repeated), the same on every row (compresses to about
    1/1000)."""
    steps = min(width, 256)
    ramp = bytes(x * 255 // max(1, steps - 1) for x in range(steps))
    row = b"\x00" + (ramp * -(-width // steps))[:width]
    rows_per_block = max(1, (1 << 20) // len(row))
    compressor = zlib.compressobj(9)
    parts, left = [], height
    while left:
        count = min(left, rows_per_block)
        parts.append(compressor.compress(row * count))
        left -= count
    parts.append(compressor.flush())
    stream = b"".join(parts)
    step = 1 << 20
    return _png(width, height, [stream[i : i + step] for i in range(0, len(stream), step)])


def apng_declaring(frames: int) -> bytes:
    """A 2-frame 8x8 animated PNG whose acTL chunk declares ``frames`` frames."""
    images = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    images[0].save(buffer, "PNG", save_all=True, append_images=images[1:])
    data = bytearray(buffer.getvalue())
    at = data.index(b"acTL")
    struct.pack_into(">I", data, at + 4, frames)
    struct.pack_into(">I", data, at + 12, zlib.crc32(bytes(data[at : at + 12])))
    return bytes(data)


def png_with_exif_make(nbytes: int, orientation: int | None = None) -> bytes:
    """A 16x16 PNG whose EXIF Make is ``nbytes`` of text."""
    exif = Image.Exif()
    exif[0x010F] = "M" * nbytes  # Make
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buffer, "PNG", exif=exif)
    return buffer.getvalue()


def webp_frames(frames: int) -> bytes:
    """An animated WebP of ``frames`` 1x1 lossless frames."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "WEBP", lossless=True)
    vp8l = buffer.getvalue()[12:]  # the VP8L chunk, header included
    frame = b"\x00" * 6 + b"\x00" * 6 + struct.pack("<I", 100)[:3] + b"\x00" + vp8l
    anmf = b"ANMF" + struct.pack("<I", len(frame)) + frame
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x02\x00\x00\x00" + b"\x00" * 6
    anim = b"ANIM" + struct.pack("<I", 6) + b"\x00" * 6
    body = b"WEBP" + vp8x + anim + anmf * frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- HEIF and AVIF ------------------------------------------------------------


@cache
def _tile(fmt: str = "HEIF") -> heif_files.Coded:
    """A 64x64 picture coded by pillow-heif (HEVC) or Pillow (AV1)."""
    img = Image.new("RGB", (64, 64), (40, 160, 90))
    data = heif_files.heic_still(img) if fmt == "HEIF" else heif_files.avif_still(img)
    return heif_files.coded(data)


def _still(fmt: str = "HEIF", **extra: Any) -> bytes:
    """A valid 64x64 HEIF or AVIF, with ``extra`` passed on to ``heif_files.heif``."""
    tile = _tile(fmt)
    extra.setdefault("brands", tile.brands)
    item = heif_files.Item(1, tile.type, tile.data, list(tile.properties))
    return heif_files.heif([item], 1, **extra)


def isobmff_tiny_boxes(nbytes: int, fmt: str = "HEIF") -> bytes:
    """A 64x64 HEIF or AVIF whose ``ftyp`` is followed by ``nbytes`` of empty
    8-byte ``free`` boxes (131,072 in 1 MB), which a reader walks to find the
    picture."""
    return _still(fmt, after_ftyp=b"\x00\x00\x00\x08free" * (nbytes // 8))


def isobmff_brands(count: int, fmt: str = "AVIF") -> bytes:
    """A 64x64 AVIF (or HEIF) whose ``ftyp`` lists ``count`` compatible brands."""
    major, compatible = _tile(fmt).brands
    listed = [*compatible, *[b"mif1"] * (count - len(compatible))]
    return _still(fmt, brands=(major, listed))


def heif_nested_boxes(depth: int) -> bytes:
    """A 64x64 HEIF whose ``meta`` holds ``depth`` ``dinf`` boxes, each in the last."""
    sizes = [8 * (depth - level) for level in range(depth)]
    nested = b"".join(struct.pack(">I", size) + b"dinf" for size in sizes)
    return _still(extra_meta=nested)


def heif_items(count: int) -> bytes:
    """A 64x64 HEIF with ``count`` items in all: the picture and EXIF items."""
    tile = _tile()
    exif = heif_files.exif_item(1)
    items = [heif_files.Item(1, tile.type, tile.data, list(tile.properties))]
    items += [heif_files.Item(n, b"Exif", exif) for n in range(2, count + 1)]
    return heif_files.heif(items, 1)


def heif_declaring_items(count: int) -> bytes:
    """A 64x64 HEIF whose ``iinf`` box says it lists ``count`` items (it lists one)."""
    return _still(declared_items=count)


def heif_properties(count: int) -> bytes:
    """A 64x64 HEIF whose picture has ``count`` more properties (distinct ``udes`` boxes)."""
    tile = _tile()
    extra = [heif_files.full_box(b"udes", struct.pack(">I", n) + b"\x00" * 4) for n in range(count)]
    item = heif_files.Item(1, tile.type, tile.data, [*tile.properties, *extra])
    return heif_files.heif([item], 1)


def heif_grid(
    rows: int,
    columns: int,
    size: tuple[int, int] | None = None,
    tile_size: tuple[int, int] = (64, 64),
    fmt: str = "HEIF",
    distinct: bool = True,
) -> bytes:
    """A grid of ``rows`` x ``columns`` copies of a 64x64 tile, whose own ``ispe``
    claims ``size`` (default: what the tiles cover) and each tile's ``tile_size``;
    ``distinct=False``: one tile item, referenced for every place."""
    tile = _tile(fmt)
    width, height = size or (64 * columns, 64 * rows)
    grid = bytes([0, 1, rows - 1, columns - 1]) + struct.pack(">II", width, height)
    properties = [p for p in tile.properties if p[4:8] != b"ispe"]
    properties.append(heif_files.ispe(*tile_size))
    count = rows * columns if distinct else 1
    tiles = [
        heif_files.Item(2 + n, tile.type, tile.data, properties, hidden=True) for n in range(count)
    ]
    places = [t.id for t in tiles] if distinct else [2] * (rows * columns)
    items = [heif_files.Item(1, b"grid", grid, [heif_files.ispe(width, height)]), *tiles]
    return heif_files.heif(items, 1, [(b"dimg", 1, places)], brands=tile.brands)


def heif_derived(levels: int) -> bytes:
    """A 64x64 HEIF whose picture is ``levels`` grids of one tile, each of the next."""
    tile = _tile()
    grid = bytes([0, 1, 0, 0]) + struct.pack(">II", 64, 64)
    items = [
        heif_files.Item(1 + n, b"grid", grid, [heif_files.ispe(64, 64)], hidden=n > 0)
        for n in range(levels)
    ]
    items.append(heif_files.Item(1 + levels, tile.type, tile.data, list(tile.properties), True))
    references = [(b"dimg", 1 + n, [2 + n]) for n in range(levels)]
    return heif_files.heif(items, 1, references)


def heif_grid_loop() -> bytes:
    """A HEIF whose grid picture is its own tile."""
    grid = bytes([0, 1, 0, 0]) + struct.pack(">II", 64, 64)
    items = [heif_files.Item(1, b"grid", grid, [heif_files.ispe(64, 64)])]
    return heif_files.heif(items, 1, [(b"dimg", 1, [1])])


def heif_references(count: int) -> bytes:
    """A 64x64 HEIF whose EXIF item describes the picture ``count`` times over."""
    tile = _tile()
    items = [
        heif_files.Item(1, tile.type, tile.data, list(tile.properties)),
        heif_files.Item(2, b"Exif", heif_files.exif_item(1)),
    ]
    return heif_files.heif(items, 1, [(b"cdsc", 2, [1] * count)])


def heif_associations(items: int, each: int) -> bytes:
    """A 64x64 HEIF and ``items - 1`` EXIF items, each with ``each`` properties."""
    tile = _tile()
    extra = [heif_files.full_box(b"udes", struct.pack(">I", n) + b"\x00" * 4) for n in range(each)]
    exif = heif_files.exif_item(1)
    listed = [heif_files.Item(1, tile.type, tile.data, list(tile.properties))]
    listed += [heif_files.Item(n, b"Exif", exif, extra) for n in range(2, items + 1)]
    return heif_files.heif(listed, 1)


def heif_extents(count: int) -> bytes:
    """A 64x64 HEIF whose picture's data is cut into ``count`` pieces."""
    tile = _tile()
    item = heif_files.Item(1, tile.type, tile.data, list(tile.properties), extents=count)
    return heif_files.heif([item], 1)


def avif_frames(frames: int, table: bytes = b"stsz") -> bytes:
    """A 2-frame 16x16 AVIF sequence whose sample size table (or another of its
    frame tables: stts, stsc, stco, stss) says it has ``frames``."""
    images = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    images[0].save(buffer, "AVIF", save_all=True, append_images=images[1:], duration=40)
    data = bytearray(buffer.getvalue())
    at = data.index(table) + 4 + 4  # after the type, the version and flags
    if table == b"stsz":
        at += 4  # the sample size
    struct.pack_into(">I", data, at, frames)
    return bytes(data)
