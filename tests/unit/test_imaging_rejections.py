"""Files no retry can fix become ImageRejected with a sentence a person can act on."""

from __future__ import annotations

import io
import random
import struct
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from chalicelib.imaging import ImageRejected, read_metadata
from chalicelib.imaging.decode import decoding
from tests.support import png_claiming
from tests.unit.conftest import Process

NOT_AN_IMAGE = (
    "not an image this pipeline accepts (allowed: JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC/HEIF, AVIF)"
)


def encoded(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


Rejected = Callable[..., str]


@pytest.fixture
def rejected(process: Process) -> Rejected:
    """``rejected(data, max_pixels=..., in_headers=True)``: the rejection message.

    read_metadata must agree when the fault is in the headers.
    """

    def check(data: bytes, max_pixels: int = 50_000_000, *, in_headers: bool = True) -> str:
        with pytest.raises(ImageRejected) as caught:
            process(data, "t=64", max_pixels=max_pixels)
        if in_headers:
            with pytest.raises(ImageRejected) as caught_again:
                read_metadata(data, max_pixels)
            assert str(caught_again.value) == str(caught.value)
        return str(caught.value)

    return check


FOREIGN = {
    "random": random.Random(7).randbytes(4096),
    "text": b"hello, world\n" * 20,
    "pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" + b"\x00" * 200,
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n" + b"\x00" * 200,
    # version 1, 3 channels, 64x64, 8 bits, RGB
    "psd": b"8BPS\x00\x01" + bytes(6) + struct.pack(">HIIHH", 3, 64, 64, 8, 3) + bytes(200),
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    "ico": encoded(Image.new("RGB", (16, 16)), "ICO"),
    "tga": encoded(Image.new("RGB", (16, 16)), "TGA"),
    "ppm": encoded(Image.new("RGB", (16, 16)), "PPM"),
}


@pytest.mark.parametrize("name", FOREIGN)
def test_foreign_files_are_not_images(name: str, rejected: Rejected) -> None:
    assert rejected(FOREIGN[name]) == NOT_AN_IMAGE


def test_empty_file(rejected: Rejected) -> None:
    assert rejected(b"") == f"the file is empty: {NOT_AN_IMAGE}"


def test_disallowed_decoders_are_never_called(
    monkeypatch: pytest.MonkeyPatch, rejected: Rejected
) -> None:
    Image.init()  # register every plugin, so only the allow-list can keep them out
    calls: list[str] = []
    for fmt in ("EPS", "PSD", "ICO", "TGA", "PPM"):
        factory, accept = Image.OPEN[fmt]

        def spy(*args: Any, _fmt: str = fmt, _factory: Any = factory) -> Any:
            calls.append(_fmt)
            return _factory(*args)

        monkeypatch.setitem(Image.OPEN, fmt, (spy, accept))
    assert Image.open(io.BytesIO(FOREIGN["eps"])).format == "EPS"  # the spy is live
    calls.clear()
    for name in ("eps", "psd", "ico", "tga", "ppm"):
        rejected(FOREIGN[name])
    assert calls == []


def test_other_plugins_are_never_imported(
    monkeypatch: pytest.MonkeyPatch, process: Process, rejected: Rejected
) -> None:
    # Image.init() is what imports every plugin (PSD, EPS, ...): never called.
    calls: list[str] = []
    monkeypatch.setattr(Image, "init", lambda: calls.append("init"))
    for data in FOREIGN.values():
        rejected(data)
    for fmt in ("JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP"):
        process(encoded(Image.new("RGB", (8, 8)), fmt), "t=64")
    assert calls == []


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP"])
def test_truncated_files_are_corrupt(fmt: str, rejected: Rejected) -> None:
    noise = Image.effect_noise((128, 128), 60).convert("RGB" if fmt != "GIF" else "L")
    data = encoded(noise, fmt)
    message = rejected(data[: len(data) // 2], in_headers=False)
    assert message.startswith("image data is truncated or corrupt: ")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP"])
def test_damaged_headers_are_corrupt_not_foreign(fmt: str, rejected: Rejected) -> None:
    data = encoded(Image.new("RGB", (32, 32)), fmt)
    assert rejected(data[:14]).startswith("image data is truncated or corrupt: ")


def test_corrupt_pixel_data(rejected: Rejected) -> None:
    """A PNG whose IDAT chunk (with a valid CRC) holds a broken deflate stream."""
    data = encoded(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    payload = b"\x78\x9c" + b"\xff" * (length - 2)
    chunk = b"IDAT" + payload
    idat = struct.pack(">I", len(payload)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    damaged = data[: at - 4] + idat + data[at + 4 + length + 4 :]
    assert rejected(damaged, in_headers=False).startswith("image data is truncated or corrupt: ")


def test_pixel_cap_checked_from_the_header_before_decoding(rejected: Rejected) -> None:
    # 64M pixels: under Pillow's own bomb limit, over ours. Decoding the
    # 1x1 pixel data would fail as corrupt, so this message proves no decode.
    assert rejected(png_claiming(8000, 8000)) == (
        "image is 8000x8000 = 64,000,000 pixels, over MAX_SOURCE_PIXELS=50,000,000"
    )


@pytest.mark.parametrize("side", [10000, 20000])
def test_pixel_cap_above_pillows_bomb_limits(side: int, rejected: Rejected) -> None:
    # 100M trips Pillow's bomb warning, 400M its bomb error; both read as ours.
    before = list(warnings.filters)
    assert rejected(png_claiming(side, side)) == (
        f"image is {side * side:,} pixels, over MAX_SOURCE_PIXELS=50,000,000"
    )
    assert warnings.filters == before


def test_bomb_warning_is_an_error_even_with_a_generous_cap(rejected: Rejected) -> None:
    message = rejected(png_claiming(10000, 10000), max_pixels=150_000_000)
    assert message == (
        "image is 100,000,000 pixels, over the decoder's decompression-bomb limit "
        "(MAX_SOURCE_PIXELS=150,000,000 is set above it)"
    )


def test_small_cap(process: Process, rejected: Rejected) -> None:
    data = encoded(Image.new("RGB", (300, 200)), "JPEG")
    assert rejected(data, max_pixels=59_999) == (
        "image is 300x200 = 60,000 pixels, over MAX_SOURCE_PIXELS=59,999"
    )
    assert process(data, "t=64", max_pixels=60_000)


def frames(n: int, size: tuple[int, int] = (50, 50)) -> list[Image.Image]:
    return [Image.new("RGB", size, (i * 8 % 256, 255 - i * 8 % 256, i % 2 * 255)) for i in range(n)]


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("GIF", {"duration": 50}),
        ("WEBP", {"duration": 50, "lossless": True}),
        ("PNG", {"duration": 50}),
        ("TIFF", {}),
    ],
)
def test_all_frames_count(
    fmt: str, params: dict[str, Any], process: Process, rejected: Rejected
) -> None:
    images = frames(30)
    data = encoded(images[0], fmt, save_all=True, append_images=images[1:], **params)
    assert rejected(data, max_pixels=50_000) == (
        "image is 50x50 x 30 frames = 75,000 pixels, over MAX_SOURCE_PIXELS=50,000"
    )
    result = process(data, "t=20", max_pixels=75_000)
    assert result.renditions[0].width == 20


def test_memory_error_is_not_a_rejection() -> None:
    with pytest.raises(MemoryError), decoding(100):
        raise MemoryError


@pytest.mark.parametrize(
    "error", [OSError("x"), SyntaxError("x"), ValueError("x"), EOFError("x"), struct.error("x")]
)
def test_decoder_errors_are_rejections(error: Exception) -> None:
    with (
        pytest.raises(ImageRejected, match=r"^image data is truncated or corrupt: x$"),
        decoding(100),
    ):
        raise error
