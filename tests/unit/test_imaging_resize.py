"""The resize cascade: exact sizes, order, which image each rendition is made from."""

from __future__ import annotations

import pytest
from PIL import Image

from chalicelib.imaging import parse_renditions
from chalicelib.imaging.resize import _source_for, cascade, needed_size, plan, render


def px(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """A pixel as a tuple, whatever the mode."""
    value = img.getpixel(xy)
    assert isinstance(value, int | tuple)
    return value if isinstance(value, tuple) else (value,)


def sizes(images: list[Image.Image]) -> list[tuple[int, int]]:
    return [img.size for img in images]


def test_renditions_come_back_in_spec_order_with_exact_sizes() -> None:
    specs = parse_renditions("thumb=200x200#,large=1600x1600,medium=800x800,sq=100x50!")
    targets = plan(specs, (4000, 3000))
    assert needed_size(targets) == (1600, 1200)
    base = Image.new("RGB", (2000, 1500), "orange")  # as a 1/2 draft would decode it
    assert sizes(render(base, targets)) == [(200, 200), (1600, 1200), (800, 600), (100, 50)]


def test_each_rendition_uses_the_smallest_image_twice_its_size() -> None:
    made = [(1600, 1200), (800, 600)]
    assert _source_for((800, 600), made) == 0
    assert _source_for((400, 300), made) == 1
    assert _source_for((200, 150), made) == 1
    assert _source_for((801, 600), made) is None  # the base
    assert _source_for((1000, 100), made) is None


def test_cascade_order_and_sources() -> None:
    specs = parse_renditions("thumb=256x256#,medium=800x800,large=1600x1600,sq=100x50!")
    targets = plan(specs, (4000, 3000))
    # large from the base, medium from large, the cover thumb (341x256 before
    # its crop) and the distorted sq from medium; neither seeds anything.
    assert cascade(targets, (2000, 1500)) == [(2, None), (1, 2), (0, 1), (3, 1)]


def test_a_cascade_gives_the_same_picture() -> None:
    base = Image.linear_gradient("L").resize((1200, 900)).convert("RGB")
    direct = render(base, plan(parse_renditions("s=100"), (1200, 900)))[0]
    cascaded = render(base, plan(parse_renditions("a=600,b=300,s=100"), (1200, 900)))[2]
    assert direct.size == cascaded.size == (100, 75)
    difference = [abs(a - b) for a, b in zip(direct.tobytes(), cascaded.tobytes(), strict=True)]
    assert max(difference) <= 3


def test_enlarged_and_distorted_images_seed_nothing() -> None:
    base = Image.new("RGB", (100, 80), "white")
    targets = plan(parse_renditions("big=500x500!,cover=400x400#,t=50"), (100, 80))
    assert sizes(render(base, targets)) == [(500, 500), (400, 400), (50, 40)]


@pytest.mark.parametrize(("size", "spec"), [((1, 5000), "256x256#"), ((6000, 2), "64x64#")])
def test_cover_of_a_sliver_needs_no_huge_intermediate(size: tuple[int, int], spec: str) -> None:
    # Scaling the whole 1x5000 frame to cover 256x256 would be 256x1,280,000.
    base = Image.new("RGB", size, "navy")
    (out,) = render(base, plan(parse_renditions(f"t={spec}"), size))
    assert out.size == tuple(int(v) for v in spec.rstrip("#").split("x"))
    assert px(out, (out.width // 2, out.height // 2)) == (0, 0, 128)


def test_cover_crops_the_centre() -> None:
    base = Image.new("RGB", (300, 100), "red")
    base.paste((0, 0, 255), (100, 0, 200, 100))  # blue middle third
    (out,) = render(base, plan(parse_renditions("t=50x50#"), (300, 100)))
    assert out.size == (50, 50)
    assert all(px(out, (x, 25))[2] > 240 for x in (3, 25, 46))


def test_alpha_survives_resizing() -> None:
    base = Image.new("RGBA", (400, 400), (255, 0, 0, 0))
    base.paste((0, 255, 0, 255), (200, 0, 400, 400))
    (out,) = render(base, plan(parse_renditions("t=40"), (400, 400)))
    assert out.mode == "RGBA"
    assert px(out, (5, 20))[3] == 0
    assert px(out, (35, 20)) == (0, 255, 0, 255)
