"""``formats``: each rendition also encoded as AVIF and WebP, from the same
pixels; and the AVIF output format. Both engines (``process`` fixture)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from chalicelib.imaging import ImagingOptions, parse_renditions
from chalicelib.imaging.model import EncodedAlternate
from chalicelib.sandbox import protocol
from tests.unit.conftest import Process


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def shown(data: bytes) -> tuple[str, tuple[int, int], tuple[int, ...]]:
    """Format, size and the colour at the centre of the picture in ``data``."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        centre = rgb.getpixel((rgb.width // 2, rgb.height // 2))
        assert isinstance(centre, tuple)
        return str(image.format), rgb.size, centre


def near(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 10) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


ORANGE = (230, 120, 20)


def test_every_rendition_gets_its_alternates_in_order(process: Process) -> None:
    data = encoded(Image.new("RGB", (400, 300), ORANGE), "JPEG")
    result = process(data, "thumb=64x64#,medium=200", formats=("AVIF", "WEBP"))

    for rendition, size in zip(result.renditions, [(64, 64), (200, 150)], strict=True):
        assert (rendition.format, (rendition.width, rendition.height)) == ("JPEG", size)
        assert [(a.format, a.content_type) for a in rendition.alternates] == [
            ("AVIF", "image/avif"),
            ("WEBP", "image/webp"),
        ]
        for alternate in rendition.alternates:
            fmt, got_size, colour = shown(alternate.data)
            assert (fmt, got_size) == (alternate.format, size)
            assert near(colour, ORANGE), (alternate.format, colour)


def test_no_alternate_repeats_the_renditions_format(process: Process) -> None:
    data = encoded(Image.new("RGB", (100, 80), ORANGE), "WEBP")
    [rendition] = process(data, "t=50", formats=("AVIF", "WEBP")).renditions
    assert rendition.format == "WEBP"
    assert [a.format for a in rendition.alternates] == ["AVIF"]


def test_alpha_survives_in_the_alternates(process: Process) -> None:
    image = Image.new("RGBA", (120, 80), (0, 0, 0, 0))
    image.paste((20, 200, 40, 255), (30, 20, 90, 60))
    [rendition] = process(encoded(image, "PNG"), "t=60", formats=("AVIF", "WEBP")).renditions
    for alternate in rendition.alternates:
        with Image.open(io.BytesIO(alternate.data)) as decoded:
            rgba = decoded.convert("RGBA")
            assert rgba.getpixel((0, 0))[3] == 0, alternate.format  # type: ignore[index]
            assert rgba.getpixel((30, 20))[3] == 255, alternate.format  # type: ignore[index]


def test_greyscale_becomes_rgb_for_avif_and_webp(process: Process) -> None:
    data = encoded(Image.new("L", (100, 80), 128), "PNG")
    [rendition] = process(data, "t=50", formats=("AVIF", "WEBP")).renditions
    for alternate in rendition.alternates:
        assert near(shown(alternate.data)[2], (128, 128, 128), 4)


def test_avif_output_format(process: Process) -> None:
    data = encoded(Image.new("RGB", (100, 80), ORANGE), "JPEG")
    [rendition] = process(data, "t=50", output_format="avif").renditions
    assert (rendition.format, rendition.content_type) == ("AVIF", "image/avif")
    fmt, size, colour = shown(rendition.data)
    assert (fmt, size) == ("AVIF", (50, 40))
    assert near(colour, ORANGE)


def test_an_avif_source_stays_avif(process: Process) -> None:
    data = encoded(Image.new("RGB", (100, 80), ORANGE), "AVIF")
    result = process(data, "t=50", formats=("AVIF", "WEBP"))
    [rendition] = result.renditions
    assert (result.format, rendition.format) == ("AVIF", "AVIF")
    assert [a.format for a in rendition.alternates] == ["WEBP"]


def test_qualities_are_applied_per_format(process: Process) -> None:
    noisy = Image.effect_noise((200, 200), 80).convert("RGB")
    data = encoded(noisy, "PNG")

    def sizes(quality: int) -> list[int]:
        [rendition] = process(
            data, "t=200", formats=("AVIF", "WEBP"), avif_quality=quality, webp_quality=quality
        ).renditions
        return [len(a.data) for a in rendition.alternates]

    low, high = sizes(10), sizes(90)
    assert all(a * 2 < b for a, b in zip(low, high, strict=True))


@pytest.mark.parametrize(
    "options",
    [{"formats": ("GIF",)}, {"avif_quality": 0}, {"webp_quality": 101}, {"crop_gravity": "north"}],
)
def test_new_options_are_validated(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"formats|quality|crop_gravity"):
        ImagingOptions(parse_renditions("t=10"), **options)  # type: ignore[arg-type]


def test_alternates_and_placeholder_cross_the_worker_protocol(process: Process) -> None:
    data = encoded(Image.new("RGB", (400, 300), ORANGE), "JPEG")
    options = ImagingOptions(parse_renditions("a=64x64#,b=200"), formats=("AVIF", "WEBP"))
    result = process(data, "a=64x64#,b=200", formats=("AVIF", "WEBP"))

    header, payload = protocol.result_to_message(result)
    assert protocol.result_from_message(header, payload) == result
    assert protocol.options_from_json(protocol.options_to_json(options)) == options
    assert result.placeholder is not None


def test_a_worker_cannot_smuggle_a_placeholder_or_misstate_sizes() -> None:
    rendition = {"name": "t", "width": 1, "height": 1, "format": "JPEG", "content_type": "x"}
    alternate = {"format": "AVIF", "content_type": "image/avif", "size": 3}
    header = {
        "format": "JPEG", "content_type": "image/jpeg", "width": 1, "height": 1,
        "metadata": {}, "engine": "pillow",
        "placeholder": {"blurhash": "x" * 10_000, "color": "#000000"},
        "renditions": [rendition | {"size": 2, "alternates": [alternate]}],
    }  # fmt: skip
    result = protocol.result_from_message(header, b"ab" + b"cde")
    assert result.placeholder is None
    assert result.renditions[0].alternates == (EncodedAlternate(b"cde", "AVIF", "image/avif"),)
    with pytest.raises(protocol.ProtocolError):
        protocol.result_from_message(header, b"ab" + b"cdef")
    with pytest.raises(protocol.ProtocolError):
        protocol.result_from_message(header, b"ab" + b"cd")
