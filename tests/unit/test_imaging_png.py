"""PNG renditions: Pillow's encoder on the Pillow engine, libvips's on the vips engine.

Both must write valid PNGs of exactly the pixels the engine made (PNG is
lossless), with the ICC profile and EXIF that ``encode`` chooses, and nothing
else; sources the vips engine hands to Pillow are written by Pillow. The
``process`` fixture runs each test on each engine.
"""

from __future__ import annotations

import importlib
import io
import random
import struct
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
from PIL import ExifTags, Image, ImageCms

import chalicelib.imaging
from chalicelib.imaging import ImagingOptions, encode, parse_renditions, process_image, vips
from chalicelib.imaging.metadata import exif_for_output
from chalicelib.imaging.pipeline import png_writer, rendition_images
from tests.unit.conftest import Process

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
RENDITIONS = "t=40x40,m=96x96#,l=150x150"
MODES = ("L", "LA", "RGB", "RGBA")


def encoded(img: Image.Image, fmt: str = "PNG", **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def picture(mode: str, size: tuple[int, int] = (240, 160)) -> Image.Image:
    """Noise over gradients: every filter and match length gets used; alpha varies."""
    rng = random.Random(5)
    width, height = size
    ramp = Image.linear_gradient("L").resize(size)
    noise = Image.frombytes("L", size, rng.randbytes(width * height))
    bands = [Image.blend(ramp.rotate(90 * i).resize(size), noise, 0.3) for i in range(4)]
    return Image.merge(mode, bands[: len(mode)])


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk, checking the signature and each CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    found, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        found.append((kind, body))
        pos += 12 + length
    return found


def kinds(data: bytes) -> list[bytes]:
    """The chunk types in order, runs of IDAT as one."""
    out: list[bytes] = []
    for kind, _ in chunks(data):
        if not (out and kind == out[-1] == b"IDAT"):
            out.append(kind)
    return out


def loaded(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    img.load()  # every row decompressed and unfiltered
    return img


def options(engine: str, **kwargs: Any) -> ImagingOptions:
    return ImagingOptions(parse_renditions(RENDITIONS), engine=engine, **kwargs)


@pytest.mark.parametrize("mode", MODES)
def test_png_renditions_hold_exactly_the_pixels_the_engine_made(
    mode: str, engine: str, process: Process
) -> None:
    data = encoded(picture(mode))
    result = process(data, RENDITIONS)
    made = rendition_images(data, options(engine))
    assert result.engine == engine
    sizes = [(40, 27), (96, 96), (150, 100)]
    for rendition, before, size in zip(result.renditions, made, sizes, strict=True):
        assert (rendition.format, rendition.content_type) == ("PNG", "image/png")
        out = loaded(rendition.data)
        assert out.size == (rendition.width, rendition.height) == before.size == size
        assert out.mode == before.mode == mode  # alpha kept for LA and RGBA
        assert out.tobytes() == before.tobytes()
        assert kinds(rendition.data) == [b"IHDR", b"IDAT", b"IEND"]
        if "A" in mode:
            low, high = cast("tuple[int, int]", out.getchannel("A").getextrema())
            assert high - low > 100


@pytest.mark.parametrize("mode", MODES)
def test_each_engine_writes_with_its_own_encoder(mode: str, engine: str) -> None:
    """The vips engine's PNGs are libvips's (not Pillow's bytes), the Pillow
    engine's Pillow's at the shipped level; both decode to the same pixels."""
    data = encoded(picture(mode))
    result = process_image(data, options(engine))
    made = rendition_images(data, options(engine))
    for rendition, before in zip(result.renditions, made, strict=True):
        pillow = encode.encode(before, "PNG", 85, None, None)
        libvips = vips.write_png(before, None, None)
        assert pillow != libvips
        assert rendition.data == (libvips if engine == "vips" else pillow)
        assert loaded(pillow).tobytes() == loaded(libvips).tobytes() == before.tobytes()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("level", [1, 3, 6, 9])
def test_libvips_png_decodes_to_what_pillow_writes_at_any_level(mode: str, level: int) -> None:
    img = picture(mode, (123, 77))
    theirs = loaded(encoded(img, compress_level=level))
    ours = loaded(encode.encode(img, "PNG", 85, None, None, png=vips.write_png))
    assert ours.mode == theirs.mode == mode
    assert ours.tobytes() == theirs.tobytes() == img.tobytes()


def camera_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Orientation] = 1
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2024:06:01 12:00:00"
    return exif


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_icc_and_exif_ride_along_as_pillow_writes_them(mode: str, process: Process) -> None:
    data = encoded(picture(mode), icc_profile=SRGB, exif=camera_exif())
    result = process(data, RENDITIONS, strip_metadata=False)
    exif = exif_for_output(Image.open(io.BytesIO(data)).getexif())
    assert exif is not None
    for rendition in result.renditions:
        out = loaded(rendition.data)
        assert out.info.get("icc_profile") == SRGB
        written = out.getexif()
        assert written[ExifTags.Base.Make] == "Canon"
        assert written.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == (
            "2024:06:01 12:00:00"
        )
        # The block exif_for_output chose, byte for byte (libvips's own EXIF
        # writer would add an Orientation, a resolution and the pixel size).
        assert dict(chunks(rendition.data))[b"eXIf"] == exif.removeprefix(b"Exif\x00\x00")
        # No pHYs (libvips writes one), nothing else.
        assert kinds(rendition.data) == [b"IHDR", b"iCCP", b"eXIf", b"IDAT", b"IEND"]


def test_exif_stripped_by_default_profile_kept(process: Process) -> None:
    data = encoded(picture("RGB"), icc_profile=SRGB, exif=camera_exif())
    for rendition in process(data, RENDITIONS).renditions:
        assert loaded(rendition.data).info.get("icc_profile") == SRGB
        assert kinds(rendition.data) == [b"IHDR", b"iCCP", b"IDAT", b"IEND"]


def grey_profile() -> bytes:
    """A minimal ICC v2 profile of the GRAY colour space (desc, wtpt, kTRC)."""
    white = b"XYZ \0\0\0\0" + b"".join(
        struct.pack(">i", round(v * 65536)) for v in (0.9642, 1, 0.8249)
    )
    text = b"Grey\0"
    tags = [
        (b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + bytes(79)),
        (b"wtpt", white),
        (b"kTRC", b"curv\0\0\0\0" + struct.pack(">IH", 1, 563) + bytes(2)),
    ]
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for signature, tag in tags:
        table += signature + struct.pack(">II", offset + len(body), len(tag))
        body += tag + bytes(-len(tag) % 4)
    header = (
        struct.pack(">I", offset + len(body)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntr"
        + b"GRAY" + b"XYZ " + bytes(12) + b"acsp" + bytes(28) + white[8:] + bytes(48)
    )  # fmt: skip
    return header + struct.pack(">I", len(tags)) + table + body


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_a_grey_profile_is_embedded_an_rgb_one_dropped(mode: str, process: Process) -> None:
    grey = grey_profile()
    assert ImageCms.ImageCmsProfile(io.BytesIO(grey)).profile.xcolor_space == "GRAY"
    for profile, kept in ((grey, True), (SRGB, False)):
        data = encoded(picture(mode), icc_profile=profile)
        for rendition in process(data, RENDITIONS).renditions:
            out = loaded(rendition.data)
            assert out.mode == mode
            assert out.info.get("icc_profile") == (profile if kept else None)


@pytest.mark.parametrize(
    "source",
    [
        picture("RGB").quantize(64),  # palette
        picture("RGBA").quantize(64),  # palette, with transparency
        Image.linear_gradient("L").resize((240, 160)).convert("I;16"),  # 16-bit
    ],
    ids=["palette", "palette+alpha", "16-bit"],
)
def test_palette_and_16_bit_uploads_stay_with_pillow(source: Image.Image, engine: str) -> None:
    data = encoded(source)
    result = process_image(data, options(engine))
    assert result.engine == "pillow"  # libvips declined them
    for rendition, before in zip(
        result.renditions, rendition_images(data, options(engine)), strict=True
    ):
        assert rendition.data == encode.encode(before, "PNG", 85, None, None)
        assert loaded(rendition.data).tobytes() == before.tobytes()


@pytest.mark.parametrize("mode", ["P", "1", "I;16"])
def test_the_writer_gets_only_8_bit_modes(mode: str) -> None:
    def refuse(img: Image.Image, icc: bytes | None, exif: bytes | None) -> bytes:
        raise AssertionError(f"asked to write {img.mode}")

    img = Image.new(mode, (20, 10))
    out = loaded(encode.encode(img, "PNG", 85, None, None, png=refuse))
    assert (out.mode, out.size) == (mode, (20, 10))


def test_the_writer_is_chosen_by_the_engine_that_made_the_pixels() -> None:
    assert png_writer("pillow") is None
    assert png_writer("vips") is vips.write_png


def test_libvips_writes_alike_from_two_threads() -> None:
    images = [picture(mode, (300 + 7 * i, 200)) for i, mode in enumerate(MODES * 3)]
    alone = [vips.write_png(img, SRGB if "RGB" in img.mode else None, None) for img in images]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(
            pool.map(
                lambda img: vips.write_png(img, SRGB if "RGB" in img.mode else None, None), images
            )
        )
    assert together == alone


def test_without_pyvips_the_pillow_engine_writes_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encoded(picture("RGBA"))
    expected = process_image(data, options("pillow"))
    monkeypatch.setitem(sys.modules, "pyvips", None)  # import pyvips now fails
    monkeypatch.delitem(sys.modules, "chalicelib.imaging.vips")
    monkeypatch.delattr(chalicelib.imaging, "vips")
    with pytest.raises(ImportError):
        importlib.import_module("chalicelib.imaging.vips")
    assert process_image(data, options("pillow")) == expected


@pytest.mark.parametrize("writer", [None, vips.write_png], ids=["pillow", "libvips"])
@pytest.mark.parametrize("mode", MODES)
def test_encode_embeds_only_a_profile_of_the_pixels_colour_space(
    writer: encode.PngWriter | None, mode: str
) -> None:
    img = picture(mode, (30, 20))
    fits, other = (grey_profile(), SRGB) if mode in ("L", "LA") else (SRGB, grey_profile())
    assert loaded(encode.encode(img, "PNG", 85, fits, None, png=writer)).info["icc_profile"] == fits
    out = encode.encode(img, "PNG", 85, other, None, png=writer)
    assert "icc_profile" not in loaded(out).info
    assert b"iCCP" not in kinds(out)
