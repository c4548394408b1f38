"""HEIF and AVIF structure: hostile files refused from their boxes before
libheif or libavif parse them, on both engines and in ``read_metadata``;
honest files near the caps still process; what the walk reads."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import pillow_heif
import pytest
from PIL import Image

from chalicelib.imaging import ImageRejected, read_metadata, structure
from chalicelib.imaging.formats import sniff
from tests import heif_files as hf
from tests import hostile_files as hostile
from tests.unit.conftest import Process

Rejected = Callable[..., str]


@pytest.fixture
def rejected(process: Process) -> Rejected:
    """``rejected(data)``: the message ``process_image`` refuses ``data`` with,
    after checking that ``read_metadata`` refuses it with the same."""

    def check(data: bytes, max_pixels: int = 50_000_000) -> str:
        with pytest.raises(ImageRejected) as caught:
            process(data, "t=64", max_pixels=max_pixels)
        with pytest.raises(ImageRejected) as caught_again:
            read_metadata(data, max_pixels)
        assert str(caught_again.value) == str(caught.value)
        return str(caught.value)

    return check


# --- hostile files, each just over its cap ------------------------------------

PIXELS = "over MAX_SOURCE_PIXELS=50,000,000"
HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "1 MB of tiny boxes": (
        lambda: hostile.isobmff_tiny_boxes(1 << 20),
        "the HEIF has over 10,000 boxes; re-save it",
    ),
    "1 MB of tiny boxes in an avif": (
        lambda: hostile.isobmff_tiny_boxes(1 << 20, "AVIF"),
        "the AVIF has over 10,000 boxes; re-save it",
    ),
    "brands": (
        lambda: hostile.isobmff_brands(65),
        "the AVIF lists 65 brands, over 64; re-save it",
    ),
    "boxes nested 17 deep": (
        lambda: hostile.heif_nested_boxes(16),  # in meta, itself a box
        "the HEIF nests boxes over 16 deep; re-save it",
    ),
    "items": (
        lambda: hostile.heif_items(1001),
        "the HEIF declares 1,001 items, over 1,000 (pictures, tiles, metadata); re-save it",
    ),
    "a huge item count": (
        lambda: hostile.heif_declaring_items(4_294_967_295),
        "the HEIF declares 4,294,967,295 items, over 1,000 (pictures, tiles, metadata); re-save it",
    ),
    "properties": (
        lambda: hostile.heif_properties(97),  # and the picture's own four
        "the HEIF has over 100 item properties; re-save it",
    ),
    "associations": (
        lambda: hostile.heif_associations(1000, 17),
        "the HEIF has over 16,000 associations of items with properties; re-save it",
    ),
    "references": (
        lambda: hostile.heif_references(1001),
        "the HEIF has over 1,000 references between its items; re-save it",
    ),
    "a grid of too many tiles": (
        lambda: hostile.heif_grid(7, 143, distinct=False),
        "the HEIF is a grid of 1,001 tiles, over 1,000; re-save it",
    ),
    "a grid claiming huge dimensions": (
        lambda: hostile.heif_grid(2, 2, (100_000, 100_000)),
        f"image is 100000x100000 = 10,000,000,000 pixels, {PIXELS}",
    ),
    "an avif grid claiming huge dimensions": (
        lambda: hostile.heif_grid(2, 2, (10_000, 6_000), fmt="AVIF"),
        f"image is 10000x6000 = 60,000,000 pixels, {PIXELS}",
    ),
    "a small grid of huge tiles": (
        lambda: hostile.heif_grid(2, 2, (128, 128), (8192, 8192)),
        f"image is a grid of 4 tiles of 268,435,456 pixels in all, {PIXELS}",
    ),
    "a grid too wide": (
        lambda: hostile.heif_grid(1, 1, (1_000_001, 1)),
        "image is 1000001x1, over 1,000,000 pixels on a side; crop it or cut it into parts",
    ),
    "grids of grids": (
        lambda: hostile.heif_derived(3),
        "the HEIF's picture is derived from derived pictures over 2 levels deep; re-save it",
    ),
    "a grid of itself": (
        hostile.heif_grid_loop,
        "the HEIF's picture is derived from derived pictures over 2 levels deep; re-save it",
    ),
    "an item in pieces": (
        lambda: hostile.heif_extents(33),
        "an item of the HEIF is cut into 33 pieces, over 32; re-save it",
    ),
    "avif frames": (
        lambda: hostile.avif_frames(10_001),
        "the AVIF has 10,001 frames, over 10,000; only the first is used: save it alone",
    ),
    "an avif frame table": (
        lambda: hostile.avif_frames(10_001, b"stts"),
        "a frame table of the AVIF has 10,001 entries, over 10,000; only the first frame "
        "is used: save it alone",
    ),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file_is_refused_by_its_structure(name: str, rejected: Rejected) -> None:
    make, message = HOSTILE[name]
    assert rejected(make()) == message


def test_pixel_cap_counts_every_top_level_picture(process: Process, rejected: Rejected) -> None:
    """Two pictures at the top level (a burst, say): both count, as all the
    frames of an animation do, though only the primary one is decoded."""
    buffer = io.BytesIO()
    pictures = pillow_heif.from_pillow(Image.new("RGB", (128, 64), "red"))
    pictures.add_from_pillow(Image.new("RGB", (128, 64), "blue"))
    pictures.save(buffer)
    data = buffer.getvalue()
    assert process(data, "t=16", max_pixels=16_384).width == 128
    assert rejected(data, max_pixels=16_383) == (
        "image is 128x64 x 2 frames = 16,384 pixels, over MAX_SOURCE_PIXELS=16,383"
    )


@pytest.mark.parametrize(
    ("nbytes", "fmt"), [(1 << 20, "HEIF"), (50 << 20, "HEIF"), (50 << 20, "AVIF")]
)
def test_millions_of_tiny_boxes_are_refused_quickly(nbytes: int, fmt: str) -> None:
    """6.5 million boxes in 50 MB (libheif and libavif: 0.3 s each, every time):
    the walk stops at the cap."""
    data = hostile.isobmff_tiny_boxes(nbytes, fmt)
    assert structure.identify(data) == fmt
    started = time.process_time()
    with pytest.raises(ImageRejected, match="over 10,000 boxes"):
        read_metadata(data, 50_000_000)
    assert time.process_time() - started < 0.1


# --- honest files near the caps -----------------------------------------------

HONEST: dict[str, Callable[[], bytes]] = {
    "9,900 empty boxes": lambda: hostile.isobmff_tiny_boxes(8 * 9900),
    "64 brands": lambda: hostile.isobmff_brands(64),
    "boxes nested 16 deep": lambda: hostile.heif_nested_boxes(15),
    "1,000 items": lambda: hostile.heif_items(1000),
    "100 properties": lambda: hostile.heif_properties(96),
    "16,000 associations": lambda: hostile.heif_associations(1000, 16),
    "a grid of 999 tiles": lambda: hostile.heif_grid(27, 37),
    "an avif grid of 999 tiles": lambda: hostile.heif_grid(27, 37, fmt="AVIF"),
    "a grid of a grid": lambda: hostile.heif_derived(2),
    "an item in 32 pieces": lambda: hostile.heif_extents(32),
}


@pytest.mark.parametrize("name", HONEST)
def test_honest_file_near_the_caps_is_processed(name: str, process: Process) -> None:
    data = HONEST[name]()
    result = process(data, "t=16")
    assert result.renditions[0].width == 16
    fmt, width, height, _ = read_metadata(data, 50_000_000)
    assert (fmt, width, height) == (result.format, result.width, result.height)


def test_a_10000_frame_avif_passes_the_walk() -> None:
    assert structure.frames(hostile.avif_frames(10_000), "AVIF") == 10_000


# --- what the walk reads ------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIF"),
        (b"\x00\x00\x00\x18ftypheix\x00\x00\x00\x00mif1heix", "HEIF"),
        (b"\x00\x00\x00\x18ftyphevc\x00\x00\x00\x00msf1hevc", "HEIF"),
        (b"\x00\x00\x00\x14ftypheim\x00\x00\x00\x00heim", "HEIF"),
        (b"\x00\x00\x00\x14ftypheis\x00\x00\x00\x00heis", "HEIF"),
        (b"\x00\x00\x00\x14ftyphevm\x00\x00\x00\x00hevm", "HEIF"),
        (b"\x00\x00\x00\x14ftyphevs\x00\x00\x00\x00hevs", "HEIF"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "HEIF"),
        (b"\x00\x00\x00\x14ftypmsf1\x00\x00\x00\x00msf1", "HEIF"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "AVIF"),
        (b"\x00\x00\x00\x18ftypavis\x00\x00\x00\x00avismsf1", "AVIF"),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1miafavif", "AVIF"),
        (b"\x00\x00\x00\x18ftypmsf1\x00\x00\x00\x00msf1avis", "AVIF"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", None),  # an MP4 video
        (b"\x00\x00\x00\x14ftypcrx \x00\x00\x00\x01crx ", None),  # a Canon raw
        (b"\x00\x00\x00\x14ftypjxl \x00\x00\x00\x00jxl ", None),
    ],
)
def test_brands(head: bytes, fmt: str | None) -> None:
    """As pi-heif's and Pillow's AVIF plugin accept them (``_accept``)."""
    assert structure.identify(head) == fmt
    assert sniff(head) == fmt


def test_damaged_headers_are_corrupt_not_foreign(rejected: Rejected) -> None:
    for data in (
        hf.heic_still(Image.new("RGB", (32, 32))),
        hf.avif_still(Image.new("RGB", (32, 32))),
    ):
        fmt = structure.identify(data)
        assert rejected(data[:40]) == (
            f"image data is truncated or corrupt: the {fmt} header cannot be read"
        )


def test_summary_of_a_phone_like_grid() -> None:
    """A grid of 512 px tiles with a thumbnail and EXIF, as phones write them."""
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    exif[0x0112] = 6
    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (1100, 600))).save(
        buffer, tile_size=512, thumbnails=[128], exif=exif.tobytes()
    )
    summary = structure.isobmff(buffer.getvalue(), "HEIF")
    assert (summary.size, summary.tiles, summary.frames) == ((1100, 600), 6, 1)
    assert summary.tile_pixels == 6 * 512 * 512
    assert summary.exif is not None and summary.exif[:4] == b"MM\x00*"
    stored = Image.Exif()
    stored.load(summary.exif)
    assert (stored[0x010F], stored[0x0112]) == ("Apple", 6)


def test_exif_found_in_idat_and_in_pieces() -> None:
    picture = hf.coded(hf.heic_still(Image.new("RGB", (64, 64))))
    exif = hf.exif_item(3, tag_010f="Cam")
    for in_idat, extents in ((True, 1), (False, 5), (True, 3)):
        items = [
            hf.Item(1, picture.type, picture.data, list(picture.properties)),
            hf.Item(2, b"Exif", exif, in_idat=in_idat, extents=extents),
        ]
        data = hf.heif(items, 1, [(b"cdsc", 2, [1])])
        summary = structure.isobmff(data, "HEIF")
        assert summary.exif == exif[10:]  # after the offset and "Exif\0\0"
        assert read_metadata(data, 50_000_000)[3]["orientation"] == 3


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("HEIF", hostile.heif_grid(2, 2)),
        ("AVIF", hostile.avif_frames(3)),
        ("HEIF", hostile.heif_items(5)),
    ],
)
def test_a_structure_cut_short_is_left_to_the_decoder(fmt: str, data: bytes) -> None:
    for end in range(len(data)):
        assert structure.frames(data[:end], fmt) >= 1
