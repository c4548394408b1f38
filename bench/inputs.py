"""Deterministic, photographic-looking test images (gradients, shapes, grain)."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter

# name -> (width, height): 4:3 frames of about 3, 12, 24 and 48 megapixels.
SIZES = {"3mp": (2000, 1500), "12mp": (4000, 3000), "24mp": (5656, 4242), "48mp": (8000, 6000)}


def photo(width: int, height: int, seed: int = 7) -> Image.Image:
    """Smooth colour fields and soft shapes with sensor-like grain: JPEG entropy
    close to a real photo's (about 0.3 bytes a pixel at quality 90)."""
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
    base = base.filter(ImageFilter.GaussianBlur(2)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    grain = Image.effect_noise((width, height), 24).convert("RGB")
    return Image.blend(base, grain, 0.12)


def jpeg_bytes(width: int, height: int, quality: int = 90, seed: int = 7) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "BenchCam"  # Make
    exif[0x0110] = "Model 1"  # Model
    exif[0x0112] = 1  # Orientation
    buffer = io.BytesIO()
    photo(width, height, seed).save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()
