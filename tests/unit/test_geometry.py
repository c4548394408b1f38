from __future__ import annotations

import pytest

from chalicelib.imaging.geometry import (
    Geometry,
    GeometryError,
    Mode,
    RenditionSpec,
    parse_renditions,
)

LANDSCAPE = (4000, 3000)
PORTRAIT = (3000, 4000)
SMALL = (300, 200)


@pytest.mark.parametrize(
    ("text", "source", "resized", "output", "crop"),
    [
        # width
        ("800", LANDSCAPE, (800, 600), (800, 600), None),
        ("800", PORTRAIT, (800, 1067), (800, 1067), None),
        ("800", SMALL, (300, 200), (300, 200), None),
        # height
        ("x600", LANDSCAPE, (800, 600), (800, 600), None),
        ("x600", PORTRAIT, (450, 600), (450, 600), None),
        ("x600", SMALL, (300, 200), (300, 200), None),
        ("x50", SMALL, (75, 50), (75, 50), None),
        # fit
        ("800x600", LANDSCAPE, (800, 600), (800, 600), None),
        ("800x600", PORTRAIT, (450, 600), (450, 600), None),
        ("800x600", SMALL, (300, 200), (300, 200), None),
        ("1000x100", LANDSCAPE, (133, 100), (133, 100), None),
        # cover: scaled to cover, centre-cropped, enlarges
        ("256x256#", LANDSCAPE, (341, 256), (256, 256), (42, 0, 298, 256)),
        ("256x256#", PORTRAIT, (256, 341), (256, 256), (0, 42, 256, 298)),
        ("256x256#", SMALL, (384, 256), (256, 256), (64, 0, 320, 256)),
        ("400x100#", LANDSCAPE, (400, 300), (400, 100), (0, 100, 400, 200)),
        # exact: aspect ignored, enlarges
        ("256x256!", LANDSCAPE, (256, 256), (256, 256), None),
        ("256x256!", PORTRAIT, (256, 256), (256, 256), None),
        ("256x256!", SMALL, (256, 256), (256, 256), None),
        ("1000x50!", SMALL, (1000, 50), (1000, 50), None),
        # percent
        ("50%", LANDSCAPE, (2000, 1500), (2000, 1500), None),
        ("50%", PORTRAIT, (1500, 2000), (1500, 2000), None),
        ("50%", SMALL, (150, 100), (150, 100), None),
        ("12.5%", LANDSCAPE, (500, 375), (500, 375), None),
        ("100%", SMALL, (300, 200), (300, 200), None),
        ("1%", SMALL, (3, 2), (3, 2), None),
        # never below one pixel
        ("100", (10000, 10), (100, 1), (100, 1), None),
    ],
)
def test_sizes(
    text: str,
    source: tuple[int, int],
    resized: tuple[int, int],
    output: tuple[int, int],
    crop: tuple[int, int, int, int] | None,
) -> None:
    geometry = Geometry.parse(text)
    assert geometry.resize_size(*source) == resized
    assert geometry.output_size(*source) == output
    assert geometry.crop_box(*source) == crop
    if crop is not None:
        assert (crop[2] - crop[0], crop[3] - crop[1]) == output
        assert crop[0] >= 0 and crop[2] <= resized[0]
        assert crop[1] >= 0 and crop[3] <= resized[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("800", Geometry(Mode.WIDTH, width=800)),
        (" x600 ", Geometry(Mode.HEIGHT, height=600)),
        ("800x600", Geometry(Mode.FIT, width=800, height=600)),
        ("256x256#", Geometry(Mode.COVER, width=256, height=256)),
        ("256x256!", Geometry(Mode.EXACT, width=256, height=256)),
        ("50%", Geometry(Mode.PERCENT, percent=50.0)),
    ],
)
def test_parse_round_trips(text: str, expected: Geometry) -> None:
    geometry = Geometry.parse(text)
    assert geometry == expected
    assert Geometry.parse(str(geometry)) == geometry


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "800x",
        "x",
        "800x600x3",
        "-800",
        "800.5",
        "0",
        "x0",
        "0x10",
        "20001",
        "256x256#!",
        "256x256?",
        "0%",
        "101%",
        "%",
        "50 %",
        "1e3",
    ],
)
def test_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(GeometryError):
        Geometry.parse(text)


def test_parse_renditions() -> None:
    specs = parse_renditions(" thumb=256x256#, medium=800x800 ,,large=1600 ")
    assert specs == (
        RenditionSpec("thumb", Geometry(Mode.COVER, 256, 256)),
        RenditionSpec("medium", Geometry(Mode.FIT, 800, 800)),
        RenditionSpec("large", Geometry(Mode.WIDTH, width=1600)),
    )
    assert ",".join(map(str, specs)) == "thumb=256x256#,medium=800x800,large=1600"


@pytest.mark.parametrize(
    "text",
    ["", " , ", "thumb", "Thumb=100", "thumb=100,thumb=200", "a b=100", "thumb=big", "=100"],
)
def test_parse_renditions_rejects(text: str) -> None:
    with pytest.raises(GeometryError):
        parse_renditions(text)
