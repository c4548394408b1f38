"""HEIC and AVIF in the imaging worker processes: the same results as in
process, the same refusals, and a phone-sized grid inside the worker's
memory limit."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from PIL import Image

from chalicelib.imaging import ImageRejected, ImagingOptions, parse_renditions, process_image
from chalicelib.sandbox import Budget, IsolatedImaging, WorkerPool, worker_memory_bytes
from chalicelib.settings import DEFAULT_RENDITIONS
from tests import heif_files as hf
from tests import hostile_files as hostile

BUDGET = Budget(60, "PROCESSING_TIMEOUT=60")


@pytest.fixture(scope="module")
def imaging() -> Iterator[IsolatedImaging]:
    """One worker with the limit a default (1,769 MB) function's worker gets."""
    isolated = IsolatedImaging(WorkerPool(1, worker_memory_bytes()).start())
    yield isolated
    isolated.close()


def test_results_equal_in_process_imaging(imaging: IsolatedImaging) -> None:
    options = ImagingOptions(parse_renditions("thumb=64x64#,small=200"))
    picture = hf.marked((300, 200))
    exif = hf.exif_item(6, tag_010f="Cam")
    for coded in (hf.coded(hf.heic_still(picture)), hf.coded(hf.avif_still(picture))):
        data = hf.recompose(coded, [hf.irot(3)], exif)
        isolated = imaging.process(data, options, BUDGET)
        assert isolated == process_image(data, options)
        assert (isolated.width, isolated.height) == (200, 300)
        assert imaging.metadata(data, 10**6, BUDGET)[:3] == (isolated.format, 200, 300)


def test_hostile_files_are_refused_in_the_worker(imaging: IsolatedImaging) -> None:
    options = ImagingOptions(parse_renditions("t=64"))
    with pytest.raises(ImageRejected, match="over 10,000 boxes"):
        imaging.process(hostile.isobmff_tiny_boxes(1 << 20), options, BUDGET)
    with pytest.raises(ImageRejected, match="grid of 4 tiles of 268,435,456 pixels"):
        imaging.process(hostile.heif_grid(2, 2, (128, 128), (8192, 8192)), options, BUDGET)


def phone_grid(columns: int, rows: int) -> bytes:
    """A HEIC grid of 512x512 tiles as phones write them (each a copy of one
    coded tile, so that it is quick to make)."""
    tile = hf.coded(hf.heic_still(Image.effect_noise((512, 512), 40).convert("RGB"), 80))
    grid = bytes([0, 1, rows - 1, columns - 1]) + struct.pack(">II", 512 * columns, 512 * rows)
    tiles = [
        hf.Item(2 + n, tile.type, tile.data, list(tile.properties), hidden=True)
        for n in range(columns * rows)
    ]
    items = [hf.Item(1, b"grid", grid, [hf.ispe(512 * columns, 512 * rows)]), *tiles]
    return hf.heif(items, 1, [(b"dimg", 1, [t.id for t in tiles])])


def test_a_46_megapixel_grid_fits_the_worker(imaging: IsolatedImaging) -> None:
    """176 tiles, 8192x5632: near the pixel cap, the largest a phone's grid gets."""
    data = phone_grid(16, 11)
    result = imaging.process(data, ImagingOptions(parse_renditions(DEFAULT_RENDITIONS)), BUDGET)
    assert (result.format, result.width, result.height) == ("HEIF", 8192, 5632)
    assert [(r.width, r.height) for r in result.renditions] == [
        (256, 176),
        (800, 550),
        (1600, 1100),
    ]
