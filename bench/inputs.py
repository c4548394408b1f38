"""Deterministic, photographic-looking test images (gradients, shapes, texture, grain).

JPEG entropy is close to a real photo's: about 0.3 bytes a pixel at quality 90
(0.29 to 0.30 from 3 to 48 MP). All randomness comes from ``random.Random(seed)``,
so the same arguments always give the same pixels, in any process and any order.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter

# name -> (width, height): 4:3 frames of about 3, 12, 24 and 48 megapixels.
SIZES = {"3mp": (2000, 1500), "12mp": (4000, 3000), "24mp": (5656, 4242), "48mp": (8000, 6000)}

# Share of mid-frequency texture (noise at 1/4 scale, smoothly enlarged: foliage,
# fabric, skin pores) and of per-pixel sensor grain in the final blend.
TEXTURE = 0.28
GRAIN = 0.055


def photo(width: int, height: int, seed: int = 7) -> Image.Image:
    """Smooth colour fields and soft shapes, with texture and sensor-like grain."""
    rng = random.Random(seed)
    small = (max(8, width // 16), max(8, height // 16))
    red = Image.linear_gradient("L").resize(small)
    green = Image.radial_gradient("L").resize(small)
    blue = red.transpose(Image.Transpose.ROTATE_90).resize(small)
    base = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(base)
    for _ in range(40):
        x, y = rng.randrange(small[0]), rng.randrange(small[1])
        r = rng.randrange(2, max(3, small[0] // 6))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    size = (width, height)
    base = base.filter(ImageFilter.GaussianBlur(2)).resize(size, Image.Resampling.BICUBIC)
    quarter = (max(1, width // 4), max(1, height // 4))
    texture = _noise(quarter, rng).resize(size, Image.Resampling.BICUBIC)
    base = Image.blend(base, texture.convert("RGB"), TEXTURE)
    return Image.blend(base, _noise(size, rng).convert("RGB"), GRAIN)


def jpeg_bytes(width: int, height: int, quality: int = 90, seed: int = 7) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "BenchCam"  # Make
    exif[0x0110] = "Model 1"  # Model
    exif[0x0112] = 1  # Orientation
    buffer = io.BytesIO()
    photo(width, height, seed).save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()


def png_bytes(width: int, height: int, seed: int = 7) -> bytes:
    buffer = io.BytesIO()
    photo(width, height, seed).save(buffer, "PNG")
    return buffer.getvalue()


def _noise(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Uniform 8-bit noise, seeded (``Image.effect_noise`` uses C's unseeded rand)."""
    return Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))
