"""The record's metadata fields, EXIF and ICC handling on renditions."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import ExifTags, Image, ImageCms, TiffImagePlugin

from chalicelib.imaging import read_metadata
from chalicelib.imaging.metadata import _exposure
from tests.unit.conftest import Process

IFD = ExifTags.IFD
Base = ExifTags.Base
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def encoded(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def camera_exif(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[Base.Make] = "Canon\x00\x00 "
    exif[Base.Model] = " Canon EOS R5 "
    exif[Base.Orientation] = orientation
    exif[Base.Software] = "test"
    sub = exif.get_ifd(IFD.Exif)
    sub[Base.DateTimeOriginal] = "2024:06:01 12:00:00"
    sub[Base.LensModel] = "RF24-70mm F2.8 L IS USM"
    sub[Base.ExposureTime] = TiffImagePlugin.IFDRational(1, 250)
    sub[Base.FNumber] = TiffImagePlugin.IFDRational(28, 10)
    sub[Base.ISOSpeedRatings] = 100
    sub[Base.FocalLength] = TiffImagePlugin.IFDRational(35, 1)
    gps = exif.get_ifd(IFD.GPSInfo)
    gps[ExifTags.GPS.GPSVersionID] = b"\x02\x03\x00\x00"
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
    return exif


EXPECTED = {
    "taken_at": "2024-06-01T12:00:00",
    "camera_make": "Canon",
    "camera_model": "Canon EOS R5",
    "lens_model": "RF24-70mm F2.8 L IS USM",
    "exposure_time": "1/250",
    "f_number": 2.8,
    "iso": 100,
    "focal_length": 35.0,
    "orientation": 6,
    "has_gps": True,
    "has_icc": True,
    "mode": "RGB",
    "has_alpha": False,
}


def photo(**params: Any) -> bytes:
    params.setdefault("exif", camera_exif())
    params.setdefault("icc_profile", SRGB)
    return encoded(Image.new("RGB", (120, 80), (10, 120, 200)), "JPEG", **params)


def rendition_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_camera_fields_from_exif(process: Process) -> None:
    result = process(photo())
    assert result.metadata == EXPECTED
    assert (result.width, result.height) == (80, 120)


def test_read_metadata_matches_process_image() -> None:
    data = photo()
    assert read_metadata(data, 50_000_000) == ("JPEG", 80, 120, EXPECTED)


def test_read_metadata_does_not_decode_pixels() -> None:
    data = encoded(Image.new("RGB", (64, 64), "red"), "PNG", icc_profile=SRGB)
    damaged = data[:-40] + b"\x00" * 28 + data[-12:]  # IDAT content wrecked, IEND kept
    assert read_metadata(damaged, 1000_000)[:3] == ("PNG", 64, 64)


def test_plain_image_has_only_the_facts(process: Process) -> None:
    result = process(encoded(Image.new("RGBA", (20, 10)), "PNG"))
    assert result.metadata == {
        "has_gps": False,
        "has_icc": False,
        "mode": "RGBA",
        "has_alpha": True,
    }


def test_gps_ifd_with_only_a_version_is_no_location(process: Process) -> None:
    exif = Image.Exif()
    exif.get_ifd(IFD.GPSInfo)[ExifTags.GPS.GPSVersionID] = b"\x02\x03\x00\x00"
    assert process(photo(exif=exif)).metadata["has_gps"] is False


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        (Base.DateTimeOriginal, "0000:00:00 00:00:00"),
        (Base.DateTimeOriginal, "yesterday"),
        (Base.DateTimeOriginal, "    "),
        (Base.FNumber, TiffImagePlugin.IFDRational(1, 0)),
        (Base.ExposureTime, TiffImagePlugin.IFDRational(0, 1)),
        (Base.LensModel, "\x00\x00"),
        (Base.ISOSpeedRatings, 0),
    ],
)
def test_unusable_fields_are_absent(tag: int, value: Any, process: Process) -> None:
    exif = Image.Exif()
    exif.get_ifd(IFD.Exif)[tag] = value
    metadata = process(photo(exif=exif)).metadata
    assert set(metadata) == {"has_gps", "has_icc", "mode", "has_alpha"}
    assert None not in metadata.values()


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_broken_exif_block_is_tolerated(process: Process) -> None:
    garbage = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x40\x01\x0f\x00\x02\xff\xff\xff\xff"
    result = process(photo(exif=garbage), strip_metadata=False)
    assert result.metadata["mode"] == "RGB"
    assert "camera_make" not in result.metadata
    assert rendition_image(result.renditions[0].data).size == (60, 40)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (TiffImagePlugin.IFDRational(1, 250), "1/250"),
        (TiffImagePlugin.IFDRational(10, 2500), "1/250"),
        (1 / 60, "1/60"),
        (0.0166, "1/60"),
        (0.5, "1/2"),
        (TiffImagePlugin.IFDRational(1, 3), "1/3"),
        (0.3, "0.3"),
        (0.8, "0.8"),
        (2, "2"),
        (TiffImagePlugin.IFDRational(5, 2), "2.5"),
        (30.0, "30"),
        (1.0, "1"),
    ],
)
def test_exposure_time_rendering(seconds: Any, text: str) -> None:
    assert _exposure(seconds) == text


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_stripped_by_default_icc_always_kept(fmt: str, process: Process) -> None:
    result = process(photo(), output_format=fmt.lower())
    out = rendition_image(result.renditions[0].data)
    assert len(out.getexif()) == 0
    assert "exif" not in out.info
    assert out.info.get("icc_profile") == SRGB


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_kept_without_orientation_when_asked(fmt: str, process: Process) -> None:
    result = process(photo(), output_format=fmt.lower(), strip_metadata=False)
    out = rendition_image(result.renditions[0].data)
    assert out.size == (60, 90)  # oriented: 80x120 displayed
    exif = out.getexif()
    assert exif.get(Base.Orientation, 1) == 1
    assert exif[Base.Make].rstrip("\x00 ") == "Canon"
    assert exif.get_ifd(IFD.Exif)[Base.DateTimeOriginal] == "2024:06:01 12:00:00"
    assert exif.get_ifd(IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert out.info.get("icc_profile") == SRGB


def test_icc_from_png_and_webp_sources(process: Process) -> None:
    for fmt in ("PNG", "WEBP"):
        data = encoded(Image.new("RGB", (30, 30), "green"), fmt, icc_profile=SRGB)
        result = process(data)
        assert result.metadata["has_icc"] is True
        assert rendition_image(result.renditions[0].data).info.get("icc_profile") == SRGB


def test_profile_of_another_colour_space_is_dropped(process: Process) -> None:
    # A grey image carrying an RGB profile: the profile cannot describe L pixels.
    data = encoded(Image.new("L", (30, 30), 128), "JPEG", icc_profile=SRGB)
    out = rendition_image(process(data).renditions[0].data)
    assert out.mode == "L"
    assert "icc_profile" not in out.info


def test_png_exif_and_tiff_tags(process: Process) -> None:
    png = encoded(Image.new("RGB", (30, 20)), "PNG", exif=camera_exif(orientation=8))
    result = process(png)
    assert result.metadata["camera_make"] == "Canon"
    assert result.metadata["orientation"] == 8
    assert (result.width, result.height) == (20, 30)

    tiff = encoded(Image.new("RGB", (30, 20)), "TIFF", exif=camera_exif(orientation=1))
    metadata = process(tiff, strip_metadata=False).metadata
    assert metadata["camera_model"] == "Canon EOS R5"
    assert metadata["orientation"] == 1


def test_exif_too_big_for_a_jpeg_is_not_carried(process: Process) -> None:
    exif = camera_exif(orientation=1)
    exif.get_ifd(IFD.Exif)[Base.UserComment] = b"ASCII\x00\x00\x00" + b"x" * 70_000
    data = encoded(Image.new("RGB", (30, 20)), "PNG", exif=exif)
    result = process(data, strip_metadata=False, output_format="jpeg")
    assert result.metadata["camera_make"] == "Canon"
    assert len(rendition_image(result.renditions[0].data).getexif()) == 0


def test_broken_cmyk_profile_falls_back_to_a_plain_conversion(process: Process) -> None:
    fake = bytes(16) + b"CMYK" + bytes(108)
    data = encoded(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG", icc_profile=fake)
    result = process(data)
    assert result.metadata["has_icc"] is True
    out = rendition_image(result.renditions[0].data)
    assert out.mode == "RGB"
    assert "icc_profile" not in out.info
    r, g, b = out.getpixel((10, 10))  # type: ignore[misc]
    assert r > 230 and g < 30 and b < 30
