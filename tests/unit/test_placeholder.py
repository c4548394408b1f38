"""The record's placeholder: a standard BlurHash, checked through the PyPI ``blurhash`` decoder."""

from __future__ import annotations

import random

import blurhash  # type: ignore[import-untyped]
import pytest
from PIL import Image

from chalicelib.imaging.placeholder import (
    average_color,
    components,
    downscale,
    encode_blurhash,
    placeholder,
)

Pixels = list[list[list[int]]]
RED, BLUE = (220, 20, 30), (20, 40, 230)


def decode(hash_: str, width: int = 32, height: int = 32) -> Pixels:
    pixels: Pixels = blurhash.decode(hash_, width, height)
    return pixels


def mean(pixels: Pixels, left: int, right: int) -> tuple[float, float, float]:
    """Mean sRGB of columns ``left:right`` of a decoded picture."""
    cells = [p for row in pixels for p in row[left:right]]
    r, g, b = (sum(c[k] for c in cells) / len(cells) for k in range(3))
    return r, g, b


def photo(width: int, height: int, seed: int) -> Image.Image:
    """Two gradients and smooth seeded noise, one per channel: structure in
    every direction, smooth at 32 px like a rendition."""
    rng = random.Random(seed)
    red = Image.linear_gradient("L").resize((width, height))
    green = Image.radial_gradient("L").resize((width, height))
    noise = Image.frombytes("L", (8, 6), rng.randbytes(48)).resize((width, height))
    return Image.merge("RGB", (red, green, noise))


def halves(size: tuple[int, int]) -> Image.Image:
    """Red on the left half, blue on the right."""
    image = Image.new("RGB", size, RED)
    image.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return image


@pytest.mark.parametrize("size", [(64, 48), (256, 192), (1600, 1200), (3000, 40)])
def test_red_left_blue_right_decodes_red_left_blue_right(size: tuple[int, int]) -> None:
    pixels = decode(placeholder(halves(size))["blurhash"])
    left, right = mean(pixels, 0, 10), mean(pixels, 22, 32)
    assert left[0] > 150 > left[2]
    assert right[2] > 150 > right[0]


@pytest.mark.parametrize("colour", [(128, 128, 128), (200, 30, 60), (255, 255, 255), (0, 0, 0)])
@pytest.mark.parametrize("size", [(256, 192), (1600, 1200), (5, 3)])
def test_a_flat_colour_is_its_colour(colour: tuple[int, int, int], size: tuple[int, int]) -> None:
    result = placeholder(Image.new("RGB", size, colour))
    assert result["color"] == "#{:02x}{:02x}{:02x}".format(*colour)
    pixels = decode(result["blurhash"])
    # The reference basis, cos(pi i x / w) at whole x, leaves a ripple towards
    # the top and left edges of a flat picture, as every standard encoder does
    # (stronger the fewer pixels are encoded); it vanishes half-way across, and
    # for a 32 px encode also a quarter of the way.
    points = [pixels[16][16]] if min(size) < 32 else [pixels[16][16], pixels[8][16], pixels[16][8]]
    for r, g, b in points:
        assert max(abs(r - colour[0]), abs(g - colour[1]), abs(b - colour[2])) <= 2


def test_color_is_the_mean_in_linear_light() -> None:
    image = halves((64, 64))
    # Linear-light mean of the two halves, back to sRGB (the arithmetic sRGB
    # mean would be (120, 30, 130)).
    assert placeholder(image)["color"] == "#a220aa"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((400, 400), (4, 4)),
        ((400, 300), (5, 4)),
        ((300, 400), (4, 5)),
        ((600, 400), (6, 4)),
        ((1600, 900), (6, 3)),
        ((900, 300), (6, 2)),
        ((100, 1000), (1, 6)),
        ((10000, 3), (6, 1)),
    ],
)
def test_components_follow_the_aspect_ratio(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert components(*size) == expected
    result = placeholder(photo(*size, seed=1))
    assert blurhash.components(result["blurhash"]) == expected
    assert len(result["blurhash"]) == 4 + 2 * expected[0] * expected[1]


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1, 1), (1, 1)), ((1, 900), (1, 6)), ((900, 1), (6, 1)), ((3, 2), (3, 2))],
)
def test_components_never_outnumber_the_pixels(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    result = placeholder(Image.new("RGB", size, (10, 200, 90)))
    assert blurhash.components(result["blurhash"]) == expected
    assert result["color"] == "#0ac85a"
    decode(result["blurhash"], 8, 8)  # a well-formed hash


def test_one_pixel_strips_keep_their_colours() -> None:
    tall = halves((900, 1)).transpose(Image.Transpose.ROTATE_90)  # blue on top, red below
    pixels = decode(placeholder(tall)["blurhash"], 1, 32)
    top, bottom = pixels[3][0], pixels[28][0]
    assert top[2] > 150 > top[0]
    assert bottom[0] > 150 > bottom[2]


@pytest.mark.parametrize("size", [(64, 48), (1600, 1200)])
def test_transparent_areas_are_white_not_black(size: tuple[int, int]) -> None:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    image.paste((200, 0, 0, 255), (size[0] // 2, 0, size[0], size[1]))
    pixels = decode(placeholder(image)["blurhash"])
    assert min(mean(pixels, 0, 10)) > 200  # the transparent left half
    red = mean(pixels, 22, 32)
    assert red[0] > 150 > red[1]
    assert placeholder(Image.new("RGBA", size, (0, 0, 0, 0)))["color"] == "#ffffff"
    assert placeholder(Image.new("LA", size, (0, 0)))["color"] == "#ffffff"


def test_half_transparent_black_is_mid_grey() -> None:
    result = placeholder(Image.new("RGBA", (40, 40), (0, 0, 0, 128)))
    grey = int(result["color"][1:3], 16)
    assert 120 <= grey <= 135
    assert result["color"] == f"#{grey:02x}{grey:02x}{grey:02x}"


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_greyscale_gives_the_hash_of_its_rgb(mode: str) -> None:
    grey = photo(300, 200, seed=2).convert(mode)
    assert placeholder(grey) == placeholder(grey.convert("RGBA" if mode == "LA" else "RGB"))
    flat = Image.new("L", (50, 50), 128).convert(mode)  # opaque
    assert placeholder(flat)["color"] == "#808080"


@pytest.mark.parametrize(
    "image",
    [
        photo(20, 10, seed=3),  # used as it is: no resize
        photo(256, 192, seed=3).convert("RGBA"),
        photo(1600, 1200, seed=3).convert("LA"),
        Image.new("L", (1, 1), 7),
    ],
    ids=["small-rgb", "thumb-rgba", "large-la", "one-pixel-l"],
)
def test_the_image_is_left_as_it_was(image: Image.Image) -> None:
    image.info["note"] = "kept"
    before = (image.mode, image.size, image.tobytes(), dict(image.info))
    first = placeholder(image)
    assert (image.mode, image.size, image.tobytes(), dict(image.info)) == before
    assert placeholder(image) == first  # still open and usable
    image.copy().resize((4, 4))


def levels(hash_: str) -> list[int]:
    """A BlurHash as its quantised numbers: size flag, AC maximum, DC and AC
    channels (0..255 for the DC, 0..18 for the AC), read with the package's base83."""
    value = blurhash.blurhash.base83_decode
    dc = value(hash_[2:6])
    numbers = [value(hash_[0]), value(hash_[1]), dc >> 16, dc >> 8 & 255, dc & 255]
    for n in range(6, len(hash_), 2):
        ac = value(hash_[n : n + 2])
        numbers += [ac // 361, ac // 19 % 19, ac % 19]
    return numbers


def rgb_rows(image: Image.Image) -> Pixels:
    """``image``'s pixels as the package's encoder takes them: rows of [r, g, b]."""
    data, width = image.tobytes(), image.width
    return [
        [list(data[i : i + 3]) for i in range(y * width * 3, (y + 1) * width * 3, 3)]
        for y in range(image.height)
    ]


@pytest.mark.parametrize(
    "image",
    [photo(256, 192, seed=4), photo(32, 32, seed=5), photo(24, 32, seed=6), halves((32, 24))],
    ids=["thumb", "square", "portrait", "halves"],
)
def test_encodes_like_the_blurhash_package_on_the_same_pixels(image: Image.Image) -> None:
    """Every quantised number within one step (summation order may round
    differently), and the decoded pictures the same on average."""
    small = downscale(image)
    x_count, y_count = components(*image.size)
    ours = encode_blurhash(small, x_count, y_count)
    theirs: str = blurhash.encode(rgb_rows(small), x_count, y_count)
    assert len(ours) == len(theirs) and ours[0] == theirs[0]
    assert all(abs(a - b) <= 1 for a, b in zip(levels(ours), levels(theirs), strict=True))
    a, b = decode(ours, 16, 16), decode(theirs, 16, 16)
    diffs = [abs(p - q) for ra, rb in zip(a, b, strict=True) for pa, pb in zip(ra, rb, strict=True)
             for p, q in zip(pa, pb, strict=True)]  # fmt: skip
    assert sum(diffs) / len(diffs) <= 2
    assert placeholder(image)["blurhash"] == ours


def test_large_images_are_sampled_faithfully() -> None:
    """Beyond 8x the 32 px size the average comes from a grid of samples: for
    a rendition (smooth at that scale) the same as a box average of every pixel."""
    image = photo(1600, 1200, seed=8)
    sampled = downscale(image)
    exact = image.resize((32, 24), Image.Resampling.BOX)
    assert max(abs(p - q) for p, q in zip(sampled.tobytes(), exact.tobytes(), strict=True)) <= 2


def test_downscale_keeps_the_aspect_within_32_px() -> None:
    assert downscale(photo(1600, 1200, seed=9)).size == (32, 24)
    assert downscale(photo(1200, 1600, seed=9).convert("RGBA")).size == (24, 32)
    assert downscale(photo(4000, 10, seed=9)).size == (32, 1)
    assert downscale(photo(20, 10, seed=9)).size == (20, 10)
    assert downscale(Image.new("LA", (64, 64))).mode == "RGB"


def test_average_color_reads_the_dc_term() -> None:
    hash_ = "LKO2?U%2Tw=w]~RBVZRi};RPxuwH"
    assert average_color(hash_) == f"#{blurhash.blurhash.base83_decode(hash_[2:6]):06x}"
    assert average_color(hash_) == "#d1b2a3"


@pytest.mark.parametrize(
    "image", [Image.new("P", (8, 8)), Image.new("I;16", (8, 8)), Image.new("RGB", (0, 5))]
)
def test_unsupported_images_are_refused(image: Image.Image) -> None:
    with pytest.raises(ValueError, match=r"placeholder"):
        placeholder(image)


def test_component_counts_are_checked() -> None:
    with pytest.raises(ValueError, match="between 1 and 9"):
        encode_blurhash(Image.new("RGB", (4, 4)), 10, 1)
    with pytest.raises(ValueError, match="RGB image"):
        encode_blurhash(Image.new("L", (4, 4)), 1, 1)
