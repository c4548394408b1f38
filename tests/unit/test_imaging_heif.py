"""HEIC/HEIF (pi-heif) and AVIF (Pillow) sources: decoding, orientation, grids, metadata.

Fixtures are written by pillow-heif's encoder and Pillow's AVIF encoder, or
put together box by box (``tests/heif_files.py``) where the encoders cannot
write them: transforms and EXIF tags that disagree.
"""

from __future__ import annotations

import io
from functools import cache
from typing import cast

import pi_heif  # type: ignore[import-untyped]  # no py.typed marker
import pytest
from PIL import AvifImagePlugin, Image, ImageChops, ImageStat

from chalicelib.imaging import ImageRejected, parse_renditions, read_metadata, vips
from chalicelib.imaging import pipeline as imaging_pipeline
from chalicelib.imaging.decode import decoding, open_image
from chalicelib.imaging.formats import SOURCE_FORMATS, output_format, source_content_type
from chalicelib.imaging.model import ImagingOptions
from tests import heif_files as hf
from tests.unit.conftest import Process
from tests.unit.test_imaging_metadata import EXPECTED, SRGB, camera_exif

Transpose = Image.Transpose
SIZE = (128, 64)


@cache
def picture(fmt: str) -> hf.Coded:
    """The marked 128x64 picture, coded as HEVC ("HEIF") or AV1 ("AVIF")."""
    img = hf.marked(SIZE)
    return hf.coded(hf.heic_still(img) if fmt == "HEIF" else hf.avif_still(img))


def corners(img: Image.Image) -> str:
    """Which colour each corner shows (top left, top right, bottom left,
    bottom right): R red, B blue, . grey."""
    rgb = img.convert("RGB")
    width, height = rgb.size
    out = ""
    for fx, fy in ((0.15, 0.15), (0.85, 0.15), (0.15, 0.85), (0.85, 0.85)):
        red, _, blue = cast(
            "tuple[int, int, int]", rgb.getpixel((int(fx * width), int(fy * height)))
        )
        out += "R" if red > 160 > blue else "B" if blue > 160 > red else "."
    return out


def decoded(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# --- which plugin decodes what ------------------------------------------------


def test_heif_is_decoded_by_pi_heif_and_avif_by_pillow() -> None:
    """pillow-heif writes the fixtures; its opener is never registered, so
    what is tested is pi-heif, the package deployed."""
    assert Image.OPEN["HEIF"][0] is pi_heif.HeifImageFile
    assert Image.OPEN["AVIF"][0] is AvifImagePlugin.AvifImageFile
    assert "HEIF" not in Image.SAVE  # pi-heif carries no encoder
    heic = open_image(hf.recompose(picture("HEIF")), 50_000_000)
    avif = open_image(hf.recompose(picture("AVIF")), 50_000_000)
    assert (type(heic).__module__, heic.format) == ("pi_heif.as_plugin", "HEIF")
    assert (type(avif).__module__, avif.format) == ("PIL.AvifImagePlugin", "AVIF")
    assert {"HEIF", "AVIF"} <= set(SOURCE_FORMATS)


def test_other_plugins_are_never_imported(
    monkeypatch: pytest.MonkeyPatch, process: Process
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(Image, "init", lambda: calls.append("init"))
    for fmt in ("HEIF", "AVIF"):
        process(hf.recompose(picture(fmt)), "t=16")
    assert calls == []


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_vips_engine_hands_heif_and_avif_to_pillow(fmt: str, process: Process) -> None:
    data = hf.recompose(picture(fmt))
    options = ImagingOptions(parse_renditions("t=32"), engine="vips")
    with decoding(options.max_pixels):
        header = imaging_pipeline.read_header(data, options)
        assert vips.render(data, header) is None  # pyvips-binary has no HEVC decoder
    result = process(data, "t=32")
    assert result.engine == "pillow"
    assert (result.renditions[0].width, result.renditions[0].height) == (32, 16)


# --- renditions ---------------------------------------------------------------


def test_heic_becomes_jpeg_and_avif_stays_avif(process: Process) -> None:
    heic = process(hf.recompose(picture("HEIF")), "a=100,b=40x40#")
    assert (heic.format, heic.content_type, heic.width, heic.height) == (
        "HEIF",
        "image/heic",  # an HEVC brand: an iPhone photo
        128,
        64,
    )
    assert [(r.format, r.content_type, r.width, r.height) for r in heic.renditions] == [
        ("JPEG", "image/jpeg", 100, 50),
        ("JPEG", "image/jpeg", 40, 40),
    ]
    assert corners(decoded(heic.renditions[0].data)) == "RB.."
    avif = process(hf.recompose(picture("AVIF")), "a=100")
    assert (avif.format, avif.content_type) == ("AVIF", "image/avif")
    [rendition] = avif.renditions
    assert (rendition.format, rendition.content_type, rendition.width) == (
        "AVIF",
        "image/avif",
        100,
    )
    assert decoded(rendition.data).format == "AVIF"
    assert corners(decoded(rendition.data)) == "RB.."


def test_heic_with_alpha_becomes_png(process: Process) -> None:
    img = hf.marked((64, 32)).convert("RGBA")
    img.putalpha(Image.linear_gradient("L").resize((64, 32)))
    result = process(hf.heic_still(img), "t=32")
    [rendition] = result.renditions
    assert (rendition.format, rendition.width, rendition.height) == ("PNG", 32, 16)
    assert result.metadata["has_alpha"] is True
    out = decoded(rendition.data)
    assert out.mode == "RGBA"
    top, bottom = out.getpixel((16, 1)), out.getpixel((16, 14))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[3] < 40 and bottom[3] > 200  # the gradient survives


@pytest.mark.parametrize(
    ("source", "alpha", "expected"),
    [
        ("HEIF", False, "JPEG"),
        ("HEIF", True, "PNG"),
        ("AVIF", False, "AVIF"),
        ("AVIF", True, "AVIF"),
    ],
)
def test_output_format_auto(source: str, alpha: bool, expected: str) -> None:
    assert output_format("auto", source, alpha) == expected


def test_content_type_by_brand() -> None:
    heic = hf.recompose(picture("HEIF"))
    generic = hf.recompose(picture("HEIF"), brands=(b"mif1", (b"mif1", b"heic")))
    sequence = hf.recompose(picture("HEIF"), brands=(b"msf1", (b"msf1", b"hevc")))
    assert source_content_type("HEIF", heic) == "image/heic"
    assert source_content_type("HEIF", generic) == "image/heif"
    assert source_content_type("HEIF", sequence) == "image/heif-sequence"
    assert source_content_type("AVIF", hf.recompose(picture("AVIF"))) == "image/avif"
    assert source_content_type("JPEG", b"\xff\xd8\xff") == "image/jpeg"


# --- orientation: exactly once ------------------------------------------------

# Each transform as what it does to the picture, by ISO/IEC 23008-12: irot
# turns anti-clockwise by quarter turns, imir mode 0 exchanges top and
# bottom, mode 1 left and right.
TRANSFORMS = {
    "irot1": (hf.irot(1), (Transpose.ROTATE_90,)),
    "irot2": (hf.irot(2), (Transpose.ROTATE_180,)),
    "irot3": (hf.irot(3), (Transpose.ROTATE_270,)),
    "imir0": (hf.imir(0), (Transpose.FLIP_TOP_BOTTOM,)),
    "imir1": (hf.imir(1), (Transpose.FLIP_LEFT_RIGHT,)),
}

ORIENTATIONS = [
    # (transforms in the file, its EXIF tag): the transforms are shown, the
    # tag is information only (it is what the record reports).
    ((), None),
    ((), 6),  # a tag with no transform: nothing to turn
    ((), 3),
    (("irot3",), 6),  # agreeing, as cameras and pillow-heif write them
    (("irot1",), 6),  # disagreeing: the transform wins, once
    (("irot3",), 1),
    (("irot3",), None),
    (("irot2",), 8),
    (("imir1",), None),
    (("imir0",), 2),
    (("irot1", "imir0"), 5),  # MIAF's order: rotation, then mirror
    (("irot3", "imir1"), 7),
]


def expected_view(names: tuple[str, ...]) -> Image.Image:
    img = hf.marked(SIZE)
    for name in names:
        for method in TRANSFORMS[name][1]:
            img = img.transpose(method)
    return img


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
@pytest.mark.parametrize(("names", "tag"), ORIENTATIONS)
def test_transforms_are_applied_once_and_the_tag_is_reported(
    fmt: str, names: tuple[str, ...], tag: int | None, process: Process
) -> None:
    transforms = [TRANSFORMS[name][0] for name in names]
    exif = None if tag is None else hf.exif_item(tag, tag_010f="Cam")
    data = hf.recompose(picture(fmt), transforms, exif)
    view = expected_view(names)

    result = process(data, "t=64x64")

    [rendition] = result.renditions
    assert (result.width, result.height) == view.size
    assert (rendition.width, rendition.height) == (view.width // 2, view.height // 2)
    assert corners(decoded(rendition.data)) == corners(view)
    assert result.metadata.get("orientation") == tag
    assert read_metadata(data, 50_000_000)[1:] == (view.width, view.height, result.metadata)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_renditions_carry_no_orientation_to_apply_again(fmt: str, process: Process) -> None:
    exif = hf.exif_item(6, tag_010f="Cam")
    data = hf.recompose(picture(fmt), [hf.irot(3)], exif)
    result = process(data, "t=64x64", strip_metadata=False, output_format="jpeg")
    out = decoded(result.renditions[0].data)
    assert out.size == (32, 64)
    assert out.getexif().get(0x010F) == "Cam"
    assert 0x0112 not in out.getexif()  # a viewer must not turn it again


# --- grids --------------------------------------------------------------------


@cache
def grid_source() -> Image.Image:
    """1300x900: 3x2 tiles of 512x512, the right and bottom ones partly outside."""
    img = Image.linear_gradient("L").resize((1300, 900)).convert("RGB")
    img.paste((220, 20, 20), (0, 0, 650, 450))
    img.paste((20, 20, 220), (650, 0, 1300, 450))
    return img


@cache
def grid_heic(orientation: int | None = None) -> bytes:
    exif = None
    if orientation is not None:
        tags = Image.Exif()
        tags[0x0112] = orientation
        exif = tags.tobytes()
    return hf.heic_still(grid_source(), quality=90, tile_size=512, exif=exif)


def test_pillow_heif_writes_a_grid_of_512_pixel_tiles() -> None:
    meta = hf.child(grid_heic(), b"meta")[4:]
    infes = [p for k, p in hf.boxes(hf.child(meta, b"iinf"), 6) if k == b"infe"]
    assert [p[8:12] for p in infes] == [b"grid"] + [b"hvc1"] * 6
    assert b"dimg" in hf.child(meta, b"iref")


def test_grid_heic_is_decoded_whole(process: Process) -> None:
    result = process(grid_heic(), "large=1300,small=650")
    assert (result.width, result.height) == (1300, 900)
    large, small = (decoded(r.data).convert("RGB") for r in result.renditions)
    assert (large.size, small.size) == ((1300, 900), (650, 450))
    # Every tile in its place: the large rendition is the source, within JPEG's error.
    difference = ImageStat.Stat(ImageChops.difference(large, grid_source())).mean
    assert max(difference) < 4, difference
    assert corners(small) == "RB.."


def test_grid_heic_with_orientation(process: Process) -> None:
    data = grid_heic(6)  # pillow-heif turns the grid itself (irot) and keeps the tag
    result = process(data, "t=450x450")
    assert (result.width, result.height) == (900, 1300)
    out = decoded(result.renditions[0].data)
    assert out.size == (312, 450)
    assert corners(out) == corners(grid_source().transpose(Transpose.ROTATE_270))
    assert result.metadata["orientation"] == 6


# --- metadata from the EXIF item ----------------------------------------------


def test_heic_camera_metadata(process: Process) -> None:
    img = Image.new("RGB", (120, 80), (10, 120, 200))
    data = hf.heic_still(img, exif=camera_exif().tobytes(), icc_profile=SRGB)
    result = process(data)
    assert result.metadata == EXPECTED
    assert (result.width, result.height) == (80, 120)
    assert read_metadata(data, 50_000_000) == ("HEIF", 80, 120, EXPECTED)


def test_avif_camera_metadata(process: Process) -> None:
    img = Image.new("RGB", (120, 80), (10, 120, 200))
    data = hf.avif_still(img, exif=camera_exif().tobytes(), icc_profile=SRGB)
    result = process(data)
    # Pillow's encoder moves the tag into the file's transforms: none is stored.
    assert result.metadata == {k: v for k, v in EXPECTED.items() if k != "orientation"}
    assert (result.width, result.height) == (80, 120)


def test_heic_without_exif_or_icc(process: Process) -> None:
    result = process(hf.recompose(picture("HEIF")))
    assert result.metadata == {
        "has_gps": False,
        "has_icc": False,
        "mode": "RGB",
        "has_alpha": False,
    }


# --- damaged and foreign files ------------------------------------------------


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_truncated_files_are_corrupt(fmt: str, process: Process) -> None:
    noise = Image.effect_noise((128, 128), 60).convert("RGB")
    data = hf.heic_still(noise) if fmt == "HEIF" else hf.avif_still(noise)
    for end in (len(data) // 2, len(data) - 10, 40):
        with pytest.raises(ImageRejected, match=r"^image data is truncated or corrupt: "):
            process(data[:end], "t=32")


def test_heif_whose_picture_is_not_hevc_is_refused(process: Process) -> None:
    """libheif decodes JPEG- and uncompressed-coded HEIF too: kept out."""
    jpeg = hf.Coded(b"jpeg", b"\xff\xd8\xff\xd9", (hf.ispe(64, 64),), hf.HEIC_BRANDS)
    with pytest.raises(ImageRejected) as caught:
        process(hf.recompose(jpeg))
    assert str(caught.value) == (
        "the HEIF's picture is coded as 'jpeg', not HEVC (HEIC); re-save it as HEIC, AVIF or JPEG"
    )


def test_generic_brand_goes_to_the_decoder_of_its_coding(process: Process) -> None:
    """``mif1`` files: AVIF when they list an AVIF brand (as libavif needs), else HEIF."""
    av1 = picture("AVIF")
    as_avif = hf.recompose(av1, brands=(b"mif1", (b"mif1", b"miaf", b"avif")))
    result = process(as_avif, "t=64")
    assert (result.format, result.renditions[0].format) == ("AVIF", "AVIF")
    as_heic = hf.recompose(picture("HEIF"), brands=(b"mif1", (b"mif1", b"heic")))
    assert process(as_heic, "t=64").format == "HEIF"
    unbranded = hf.recompose(av1, brands=(b"mif1", (b"mif1", b"miaf")))
    with pytest.raises(ImageRejected, match="coded as 'av01', not HEVC"):
        process(unbranded)
