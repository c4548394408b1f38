"""HEIF and AVIF files for the tests, made box by box.

The encoders cannot write every file the tests need: pillow-heif derives
the ``irot``/``imir`` transforms from the EXIF orientation it is given, and
Pillow's AVIF writer moves the EXIF tag into the transforms, so neither can
write a file whose transform and EXIF tag disagree, nor a hostile structure.
So an encoder makes the coded picture (``heic_still``, ``avif_still``), and
``recompose`` puts it into a file of our own: the encoder's coding
properties (``hvcC``/``av1C``, ``ispe``, ``colr``, ...) with the transforms
and the EXIF chosen here. ``heif`` writes any set of items; the hostile
structures of ``tests/hostile_files.py`` are made with it.

pillow-heif only writes here: its opener is never registered, so the
pipeline under test decodes with pi-heif.
"""

from __future__ import annotations

import io
import itertools
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pillow_heif
from PIL import Image

HEIC_BRANDS = (b"heic", (b"mif1", b"heic"))
AVIF_BRANDS = (b"avif", (b"avif", b"mif1", b"miaf"))


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def full_box(kind: bytes, payload: bytes = b"", version: int = 0, flags: int = 0) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of the boxes in ``data[start:end]``, one level only."""
    at, end = start, len(data) if end is None else end
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        yield kind, data[at + 8 : at + size]
        at += size


def child(data: bytes, kind: bytes) -> bytes:
    return next(payload for k, payload in boxes(data) if k == kind)


def ispe(width: int, height: int) -> bytes:
    return full_box(b"ispe", struct.pack(">II", width, height))


def irot(quarter_turns: int) -> bytes:
    """Anti-clockwise rotation by ``quarter_turns`` x 90 degrees."""
    return box(b"irot", bytes([quarter_turns & 3]))


def imir(mode: int) -> bytes:
    """Mirror (ISO/IEC 23008-12:2022): mode 0 exchanges top and bottom (as
    EXIF orientation 4), mode 1 left and right (as EXIF 2)."""
    return box(b"imir", bytes([mode & 1]))


def exif_item(orientation: int | None = None, **tags: object) -> bytes:
    """An ``Exif`` item's payload: the offset of the TIFF header, then ``Exif\\0\\0`` and TIFF."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    for name, value in tags.items():
        exif[int(name.removeprefix("tag_"), 16)] = value
    return struct.pack(">I", 6) + exif.tobytes()


@dataclass
class Item:
    id: int
    type: bytes
    data: bytes = b""
    properties: list[bytes] = field(default_factory=list)  # whole boxes, essential first
    hidden: bool = False
    in_idat: bool = False  # its data in meta's idat box (construction method 1), not in mdat
    extents: int = 1  # pieces its data is cut into


def heif(
    items: Sequence[Item],
    primary: int,
    references: Sequence[tuple[bytes, int, Sequence[int]]] = (),
    brands: tuple[bytes, Sequence[bytes]] = HEIC_BRANDS,
    extra_meta: bytes = b"",
    declared_items: int | None = None,
    after_ftyp: bytes = b"",
) -> bytes:
    """A HEIF file: ``items`` (their data in one ``mdat``, or ``idat``), the
    ``primary`` one, ``references`` (type, from, to...) in an ``iref``,
    ``extra_meta`` boxes at the end of ``meta``, ``after_ftyp`` bytes before
    it; ``declared_items``: the count ``iinf`` gives, if not the items'."""
    major, compatible = brands
    ftyp = box(b"ftyp", major + b"\x00\x00\x00\x00" + b"".join(compatible))
    hdlr = full_box(b"hdlr", b"\x00" * 4 + b"pict" + b"\x00" * 13)
    pitm = full_box(b"pitm", struct.pack(">H", primary))
    infes = b"".join(
        full_box(b"infe", struct.pack(">HH", i.id, 0) + i.type + b"\x00", 2, int(i.hidden))
        for i in items
    )
    if declared_items is None:
        iinf = full_box(b"iinf", struct.pack(">H", len(items)) + infes)
    else:  # version 1: a 32-bit count
        iinf = full_box(b"iinf", struct.pack(">I", declared_items) + infes, version=1)
    iref = full_box(
        b"iref",
        b"".join(
            box(kind, struct.pack(">HH", source, len(to)) + struct.pack(f">{len(to)}H", *to))
            for kind, source, to in references
        ),
    )
    unique: list[bytes] = []
    for item in items:
        unique.extend(p for p in item.properties if p not in unique)
    ipco = box(b"ipco", b"".join(unique))
    index = {p: n for n, p in enumerate(unique, 1)}
    wide = len(unique) > 127  # 15-bit property indices
    entries = b"".join(
        struct.pack(">HB", i.id, len(i.properties))
        + b"".join(
            struct.pack(">H", 0x8000 | index[p]) if wide else bytes([0x80 | index[p]])
            for p in i.properties
        )
        for i in items
    )
    ipma = full_box(b"ipma", struct.pack(">I", len(items)) + entries, flags=int(wide))
    iprp = box(b"iprp", ipco + ipma)
    idat_data = b"".join(i.data for i in items if i.in_idat)
    idat = box(b"idat", idat_data) if idat_data else b""

    def meta(mdat_start: int) -> bytes:
        """``meta`` when the mdat's payload starts at ``mdat_start``."""
        at = {False: mdat_start, True: 0}  # idat offsets count from its payload
        located = []
        for i in items:
            cuts = [len(i.data) * n // i.extents for n in range(i.extents + 1)]
            pieces = [(at[i.in_idat] + a, b - a) for a, b in itertools.pairwise(cuts)]
            at[i.in_idat] += len(i.data)
            located.append(
                struct.pack(">HHHH", i.id, int(i.in_idat), 0, i.extents)
                + b"".join(struct.pack(">II", offset, length) for offset, length in pieces)
            )
        body = bytes([0x44, 0x00]) + struct.pack(">H", len(items)) + b"".join(located)
        iloc = full_box(b"iloc", body, version=1)
        refs = iref if references else b""
        return full_box(b"meta", hdlr + pitm + iloc + iinf + refs + iprp + idat + extra_meta)

    # The meta box's size does not depend on where the mdat starts.
    start = len(ftyp) + len(after_ftyp) + len(meta(0)) + 8
    mdat = box(b"mdat", b"".join(i.data for i in items if not i.in_idat))
    return ftyp + after_ftyp + meta(start) + mdat


@dataclass(frozen=True)
class Coded:
    """One picture as an encoder wrote it: its item type, data and properties."""

    type: bytes
    data: bytes
    properties: tuple[bytes, ...]  # whole boxes: the codec's configuration, ispe, colr, ...
    brands: tuple[bytes, Sequence[bytes]]


def coded(data: bytes) -> Coded:
    """The single coded picture of an encoder's one-item file, without its
    transforms (``irot``, ``imir``)."""
    meta = child(data, b"meta")[4:]
    iinf = child(meta, b"iinf")
    infes = [p for k, p in boxes(iinf, 6) if k == b"infe"]
    if len(infes) != 1:
        raise ValueError("expected a file of one item (no EXIF, no thumbnail)")
    kind = infes[0][8:12]
    ipco = child(child(meta, b"iprp"), b"ipco")
    properties = tuple(box(k, payload) for k, payload in boxes(ipco) if k not in (b"irot", b"imir"))
    brands = HEIC_BRANDS if kind == b"hvc1" else AVIF_BRANDS
    return Coded(kind, child(data, b"mdat"), properties, brands)


def recompose(
    picture: Coded,
    transforms: Sequence[bytes] = (),
    exif: bytes | None = None,
    brands: tuple[bytes, Sequence[bytes]] | None = None,
) -> bytes:
    """``picture`` as the primary item of a new file, with ``transforms``
    (``irot``/``imir`` boxes, applied in order) and an ``Exif`` item."""
    items = [Item(1, picture.type, picture.data, [*picture.properties, *transforms])]
    references: list[tuple[bytes, int, Sequence[int]]] = []
    if exif is not None:
        items.append(Item(2, b"Exif", exif))
        references.append((b"cdsc", 2, [1]))
    return heif(items, 1, references, brands or picture.brands)


def heic_still(img: Image.Image, quality: int = 90, **params: object) -> bytes:
    """``img`` as a one-item HEIC, by pillow-heif's encoder (its opener is never registered)."""
    buffer = io.BytesIO()
    pillow_heif.from_pillow(img).save(buffer, quality=quality, **params)
    return buffer.getvalue()


def avif_still(img: Image.Image, quality: int = 90, **params: object) -> bytes:
    """``img`` as a one-item AVIF, by Pillow's encoder."""
    buffer = io.BytesIO()
    img.save(buffer, "AVIF", quality=quality, **params)
    return buffer.getvalue()


def marked(size: tuple[int, int]) -> Image.Image:
    """A grey picture with a red top-left quarter and a blue top-right quarter,
    so that any rotation or mirror shows: the red corner says where the
    top-left went, the blue one which way round it went."""
    width, height = size
    img = Image.new("RGB", size, (128, 128, 128))
    img.paste((220, 20, 20), (0, 0, width // 2, height // 2))
    img.paste((20, 20, 220), (width // 2, 0, width, height // 2))
    return img
