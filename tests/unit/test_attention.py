"""``CROP_GRAVITY=attention``: cover crops keep an off-centre subject, on both engines.

Each scene is a subject (saturated texture, a smooth skin-toned disc, grey
detail) in a known box near an edge or a corner of a plain, gradient or
textured background. The crop a rendition was cut from is found by matching
it against the whole frame resized to the rendition's pre-crop size, so the
tests look only at the pixels the pipeline returns.
"""

from __future__ import annotations

import importlib.util
import io
import os
import random
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from chalicelib.imaging import ImagingOptions, attention, decode, parse_renditions, process_image
from chalicelib.imaging.geometry import Geometry
from chalicelib.imaging.model import ENGINES
from chalicelib.imaging.pipeline import read_header
from chalicelib.imaging.resize import PILLOW, Crop, plan, render, render_with

Box = tuple[int, int, int, int]
THUMB = "256x256#"
LANDSCAPE, PORTRAIT = (1200, 900), (900, 1200)
# Subject boxes near an edge or a corner, each mostly outside the centre crop.
BOXES = {
    LANDSCAPE: [(20, 330, 260, 570), (930, 30, 1170, 270)],
    PORTRAIT: [(330, 15, 570, 255), (30, 930, 270, 1170)],
}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    # pyvips is in requirements.txt, as for the other imaging tests: both
    # engines always run, and a missing one fails rather than skips.
    return str(request.param)


def background(kind: str, size: tuple[int, int], rng: random.Random) -> Image.Image:
    width, height = size
    if kind == "plain":
        return Image.new("RGB", size, (128, 128, 128))
    if kind == "gradient":
        return Image.linear_gradient("L").resize(size).convert("RGB")
    # Grey texture at 1/12 scale, full contrast: busier than any subject's detail.
    cells = (width // 12, height // 12)
    noise = Image.frombytes("L", cells, rng.randbytes(cells[0] * cells[1]))
    return noise.resize(size, Image.Resampling.BICUBIC).convert("RGB")


def subject(kind: str, size: tuple[int, int], rng: random.Random) -> tuple[Image.Image, Any]:
    """The subject's pixels, and the mask it is pasted with (None: its whole box)."""
    width, height = size
    if kind == "colourful":
        img = Image.new("RGB", size)
        draw = ImageDraw.Draw(img)
        cell = width // 8
        colours = [(220, 30, 30), (30, 200, 40), (30, 60, 220), (240, 200, 20), (200, 40, 200)]
        for y in range(0, height, cell):
            for x in range(0, width, cell):
                draw.rectangle((x, y, x + cell, y + cell), fill=rng.choice(colours))
        return img, None
    if kind == "skin":
        shade = Image.radial_gradient("L").resize(size)
        img = Image.composite(
            Image.new("RGB", size, (170, 120, 95)), Image.new("RGB", size, (224, 172, 140)), shade
        )
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).ellipse((0, 0, width - 1, height - 1), fill=255)
        return img, mask
    if kind == "plain-grey":
        return Image.new("RGB", size, (128, 128, 128)), None
    # Grey detail: blocks of random brightness, 1/16 of the subject each.
    cell = width // 16
    blocks = (width // cell + 1, height // cell + 1)
    noise = Image.frombytes("L", blocks, rng.randbytes(blocks[0] * blocks[1]))
    noise = noise.resize((blocks[0] * cell, blocks[1] * cell), Image.Resampling.NEAREST)
    return noise.crop((0, 0, width, height)).convert("RGB"), None


def scene(back: str, kind: str, size: tuple[int, int], box: Box, seed: int = 1) -> Image.Image:
    rng = random.Random(seed)
    img = background(back, size, rng)
    pixels, mask = subject(kind, (box[2] - box[0], box[3] - box[1]), rng)
    img.paste(pixels, box[:2], mask)
    return img


def jpeg(img: Image.Image, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def thumbnail(data: bytes, engine: str, gravity: str, renditions: str = f"t={THUMB}") -> Any:
    opts = ImagingOptions(parse_renditions(renditions), engine=engine, crop_gravity=gravity)
    result = process_image(data, opts)
    return Image.open(io.BytesIO(result.renditions[0].data)).convert("RGB")


def crop_of(displayed: Image.Image, out: Image.Image, geometry: str = THUMB) -> Crop:
    """The crop of the resized whole frame that ``out`` shows, in that frame's pixels."""
    frame_size = Geometry.parse(geometry).resize_size(*displayed.size)
    frame = displayed.resize(frame_size, Image.Resampling.LANCZOS)

    def difference(left: int, top: int) -> float:
        window = frame.crop((left, top, left + out.width, top + out.height))
        return sum(ImageStat.Stat(ImageChops.difference(window, out)).mean)

    offsets = [
        (x, y)
        for x in range(frame.width - out.width + 1)
        for y in range(frame.height - out.height + 1)
    ]
    left, top = min(offsets, key=lambda o: difference(*o))
    return left, top, left + out.width, top + out.height


def kept(box: Box, crop: Crop, displayed: tuple[int, int], geometry: str = THUMB) -> float:
    """The share of ``box`` (displayed pixels) inside ``crop`` (resized frame pixels)."""
    frame = Geometry.parse(geometry).resize_size(*displayed)
    sx, sy = frame[0] / displayed[0], frame[1] / displayed[1]
    left, top, right, bottom = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
    width = max(0.0, min(right, crop[2]) - max(left, crop[0]))
    height = max(0.0, min(bottom, crop[3]) - max(top, crop[1]))
    return width * height / ((right - left) * (bottom - top))


def centre_crop(displayed: tuple[int, int], geometry: str = THUMB) -> Crop:
    crop = Geometry.parse(geometry).crop_box(*displayed)
    assert crop is not None
    return crop


SCENES = [
    (back, kind, size, box)
    for back in ("plain", "gradient", "textured")
    for kind in ("colourful", "skin", "detail")
    if not (back == "textured" and kind == "detail")  # nothing tells them apart
    for size in (LANDSCAPE, PORTRAIT)
    for box in BOXES[size]
]


@pytest.mark.parametrize(
    ("back", "kind", "size", "box"),
    SCENES,
    ids=[f"{b}-{k}-{s[0]}x{s[1]}-{x[0]},{x[1]}" for b, k, s, x in SCENES],
)
def test_attention_keeps_an_off_centre_subject(
    engine: str, back: str, kind: str, size: tuple[int, int], box: Box
) -> None:
    img = scene(back, kind, size, box)
    assert kept(box, centre_crop(size), size) < 0.65  # the centre crop loses it
    crop = crop_of(img, thumbnail(jpeg(img), engine, "attention"))
    assert kept(box, crop, size) >= 0.8, crop


@pytest.mark.parametrize("size", [LANDSCAPE, PORTRAIT])
def test_centre_gravity_crops_the_centre_as_before(engine: str, size: tuple[int, int]) -> None:
    img = scene("gradient", "colourful", size, BOXES[size][0])
    data, specs = jpeg(img), parse_renditions(f"t={THUMB}")
    (default,) = process_image(data, ImagingOptions(specs, engine=engine)).renditions
    (centre,) = process_image(
        data, ImagingOptions(specs, engine=engine, crop_gravity="centre")
    ).renditions
    assert centre.data == default.data
    out = Image.open(io.BytesIO(centre.data)).convert("RGB")
    assert crop_of(img, out) == centre_crop(size)


def test_plan_places_only_cover_crops_and_keeps_the_centre_crop_box() -> None:
    specs = parse_renditions("t=256x256#,m=800x800,e=64x64!")
    centre, attended = plan(specs, LANDSCAPE), plan(specs, LANDSCAPE, "attention")
    assert plan(specs, LANDSCAPE, "centre") == centre
    assert [t.gravity for t in attended] == ["attention", "centre", "centre"]
    assert [t.crop for t in attended] == [t.crop for t in centre]
    assert centre[0].crop == Geometry.parse("256x256#").crop_box(*LANDSCAPE)


def even(kind: str, size: tuple[int, int]) -> Image.Image:
    """A picture without a subject: a gradient across the crop's free axis,
    fine grain, or texture all over."""
    rng = random.Random(2)
    if kind == "gradient":
        return Image.linear_gradient("L").rotate(90).resize(size).convert("RGB")
    if kind == "grain":
        noise = Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))
        return noise.point(lambda v: 120 + v // 16).convert("RGB")
    return background("textured", size, rng)


@pytest.mark.parametrize("kind", ["gradient", "grain", "textured"])
def test_a_picture_without_a_subject_keeps_its_centre_crop(engine: str, kind: str) -> None:
    img = even(kind, LANDSCAPE)
    crop = crop_of(img, thumbnail(jpeg(img), engine, "attention"))
    assert crop == centre_crop(LANDSCAPE)


# The turn that the EXIF orientation then undoes.
UNDO = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_attention_works_on_the_displayed_picture(engine: str, orientation: int) -> None:
    """The subject is placed in displayed coordinates; the file stores the
    pixels turned the other way, with the EXIF tag that turns them back."""
    size = PORTRAIT if orientation in (6, 8) else LANDSCAPE
    box = BOXES[size][1]
    displayed = scene("textured", "skin", size, box)
    stored = displayed.transpose(UNDO[orientation])
    assert decode.orient(stored, orientation).tobytes() == displayed.tobytes()
    out = thumbnail(jpeg(stored, orientation), engine, "attention")
    assert kept(box, crop_of(displayed, out), size) >= 0.8


def test_several_cover_renditions_keep_the_subject_in_each(engine: str) -> None:
    size, box = LANDSCAPE, BOXES[LANDSCAPE][0]
    img = scene("textured", "colourful", size, box)
    renditions = "big=600x600#,m=800x800,t=256x256#,wide=300x100#"
    opts = ImagingOptions(parse_renditions(renditions), engine=engine, crop_gravity="attention")
    result = process_image(jpeg(img), opts)
    for spec, rendition in zip(opts.renditions, result.renditions, strict=True):
        if spec.name == "m":
            continue
        out = Image.open(io.BytesIO(rendition.data)).convert("RGB")
        geometry = str(spec.geometry)
        crop = crop_of(img, out, geometry)
        assert kept(box, crop, size, geometry) >= 0.8, spec


def test_both_engines_place_the_crop_alike() -> None:
    if importlib.util.find_spec("pyvips") is None:
        message = "pyvips is not installed (requirements.txt has it: rerun make venv)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    size = LANDSCAPE
    for back, kind in [("plain", "detail"), ("textured", "skin"), ("gradient", "colourful")]:
        img = scene(back, kind, size, BOXES[size][1])
        data = jpeg(img)
        by_pillow = crop_of(img, thumbnail(data, "pillow", "attention"))
        by_vips = crop_of(img, thumbnail(data, "vips", "attention"))
        assert abs(by_pillow[0] - by_vips[0]) <= 4, (back, kind, by_pillow, by_vips)


def test_a_png_base_libvips_would_stream_is_read_twice_for_attention(engine: str) -> None:
    img = scene("gradient", "colourful", LANDSCAPE, BOXES[LANDSCAPE][0])
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    data = buffer.getvalue()
    opts = ImagingOptions(parse_renditions(f"t={THUMB}"), engine=engine, crop_gravity="attention")
    result = process_image(data, opts)
    out = Image.open(io.BytesIO(result.renditions[0].data)).convert("RGB")
    assert kept(BOXES[LANDSCAPE][0], crop_of(img, out), LANDSCAPE) >= 0.8
    if engine == "vips":
        from chalicelib.imaging import vips

        assert result.engine == "vips"
        with decode.decoding(opts.max_pixels):
            header = read_header(data, opts)
            centred = read_header(data, ImagingOptions(opts.renditions, engine="vips"))
        assert not vips._read_once(header, header.image.size)
        assert vips._read_once(centred, centred.image.size)


def test_what_transparent_pixels_hide_does_not_pull_the_crop(engine: str) -> None:
    """A colourful patch under alpha 0 counts as little as a grey one."""
    box = BOXES[LANDSCAPE][0]

    def png(hidden: str) -> bytes:
        img = scene("plain", hidden, LANDSCAPE, box).convert("RGBA")
        patch = img.crop(box)
        patch.putalpha(0)
        img.paste(patch, box[:2])
        buffer = io.BytesIO()
        img.save(buffer, "PNG")
        return buffer.getvalue()

    opts = ImagingOptions(parse_renditions(f"t={THUMB}"), engine=engine, crop_gravity="attention")
    (colourful,) = process_image(png("colourful"), opts).renditions
    (grey,) = process_image(png("plain-grey"), opts).renditions
    assert colourful.data == grey.data


class Counting:
    """The Pillow engine, counting the small copies attention asks for."""

    def __init__(self) -> None:
        self.small_copies = 0

    def size(self, image: Image.Image) -> tuple[int, int]:
        return PILLOW.size(image)

    def resize(self, source: Image.Image, size: tuple[int, int]) -> Image.Image:
        return PILLOW.resize(source, size)

    def resize_region(self, source: Image.Image, size: tuple[int, int], crop: Crop) -> Image.Image:
        return PILLOW.resize_region(source, size, crop)

    def small(self, source: Image.Image, sampling: attention.Sampling) -> Image.Image:
        self.small_copies += 1
        return PILLOW.small(source, sampling)


def test_one_saliency_map_serves_every_cover_rendition() -> None:
    base = scene("plain", "colourful", LANDSCAPE, BOXES[LANDSCAPE][0])
    specs = parse_renditions("a=600x600#,b=300x300#,m=800x800,c=100x50#")
    engine = Counting()
    images = render_with(engine, base, plan(specs, LANDSCAPE, "attention"))
    assert [i.size for i in images] == [(600, 600), (300, 300), (800, 600), (100, 50)]
    assert engine.small_copies == 1
    assert render_with(Counting(), base, plan(specs, LANDSCAPE)) == render(
        base, plan(specs, LANDSCAPE)
    )


@pytest.mark.parametrize(
    ("size", "spec"),
    [((1, 5000), "256x256#"), ((6000, 2), "64x64#"), ((1, 1), "32x32#"), ((3, 2), "2x2#")],
)
def test_slivers_and_specks(size: tuple[int, int], spec: str) -> None:
    base = Image.new("RGB", size, "navy")
    (out,) = render(base, plan(parse_renditions(f"t={spec}"), size, "attention"))
    assert out.size == Geometry.parse(spec).output_size(*size)


def test_best_offset_of_an_even_map_is_the_centre_crop() -> None:
    even = attention.Saliency.of(Image.new("RGB", (100, 75), (90, 90, 90)))
    assert attention.best_offset(even, (341, 256), (256, 256)) == (42, 0)
    assert attention.best_offset(even, (256, 341), (256, 256)) == (0, 42)
    assert attention.best_offset(even, (256, 256), (256, 256)) == (0, 0)


def test_best_offset_goes_to_the_salient_side() -> None:
    img = Image.new("RGB", (400, 100), (128, 128, 128))
    img.paste((230, 20, 20), (350, 30, 390, 70))
    saliency = attention.Saliency.of(attention.small_copy(img, attention.sampling(img.size)))
    left, top = attention.best_offset(saliency, (400, 100), (100, 100))
    assert 290 <= left <= 300
    assert top == 0
    assert 580 <= attention.offset_in(img, (800, 200), (200, 200))[0] <= 600


SIZES = [(4000, 3000), (1200, 900), (500, 375), (191, 143), (1, 5000), (6000, 2), (5, 400), (1, 1)]


@pytest.mark.parametrize("size", SIZES)
def test_the_small_copy_is_small_and_covers_the_frame(size: tuple[int, int]) -> None:
    plan = attention.sampling(size)
    small = attention.small_copy(Image.new("RGB", size), plan)
    assert max(small.size) <= 4 * attention.ANALYSIS_SIDE // 3
    for length, step, box, picked, span in zip(
        size, plan.step, plan.box, plan.picked, plan.span, strict=True
    ):
        assert picked % box == 0
        assert length - step * box < picked * step <= length
        assert span == picked * step / length


@pytest.mark.parametrize("size", SIZES)
def test_both_engines_make_the_same_small_copy(size: tuple[int, int]) -> None:
    if importlib.util.find_spec("pyvips") is None:
        message = "pyvips is not installed (requirements.txt has it: rerun make venv)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    import pyvips

    from chalicelib.imaging import vips

    rng = random.Random(4)
    img = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    plan = attention.sampling(size)
    image = pyvips.Image.new_from_memory(img.tobytes(), size[0], size[1], 3, "uchar")
    by_vips = vips.VIPS.small(vips._Made(image), plan)
    by_pillow = PILLOW.small(img, plan)
    assert by_vips.size == by_pillow.size
    difference = ImageStat.Stat(ImageChops.difference(by_vips, by_pillow))
    assert max(high for _, high in difference.extrema) <= 1  # rounding
