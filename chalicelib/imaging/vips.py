"""``IMAGE_ENGINE=vips``: step 2 of the pipeline (decode, orient, resize) with libvips.

Why a second engine: libvips resamples with SIMD and across cores, about
three times faster than Pillow's Lanczos (``bench/results/imaging.md``).
Step 1 stays in Pillow for both engines, and so does step 3 (``encode.py``)
but for the PNG renditions of the images this engine made, which libvips's
own encoder writes (``write_png``: a fraction of the time of Pillow's); the
ICC and EXIF rules are ``encode``'s, the same for both engines.

What the engine takes: single-frame JPEG, PNG and WebP sources whose pixels
are 8-bit L, LA, RGB or RGBA, the photographs this is for. Everything else
(GIF, TIFF, BMP, palette or 16-bit PNG, CMYK JPEG, animated WebP, and shapes
so long and thin that a rendition shrinks them over ``MAX_SHRINK`` times
along one axis) goes to the Pillow engine, whose mode handling (colour
management, 16-bit scaling, palettes with transparency) it then shares.

Who decodes (``DECODERS``): Pillow, for JPEG (at the draft scale, as the
Pillow engine) and WebP, where libvips's loaders are no faster; libvips
(libspng) for PNG, which it decodes in about 60 % of Pillow's time. So
libvips parses no uploaded JPEG or WebP at all; for PNG it is called with
its PNG loader by name, after Pillow has identified the file and checked its
pixel count from the headers, and every other loader is blocked, so an
upload never reaches the dozens of parsers libvips carries.

Cover crops at ``CROP_GRAVITY=attention``: placed by ``attention.py``, the
Pillow engine's function, from a small Pillow copy libvips makes of the image
the crop is cut from (``subsample`` then ``shrink``: the same pixels the
Pillow engine picks and averages), not by libvips's ``smartcrop``. smartcrop
needs the whole frame scaled to the cover size first (for a long, thin
source, the huge intermediate ``resize_region`` avoids) and builds its own
map for every crop: 7 to 10 ms more than the crop for a 256 px thumbnail of
a 12 MP JPEG, 62 ms for a 1600 px one, against 3 to 6 ms per crop, small
copy and map included, for ours (``bench/results/attention.md``). And it
centres the window on the peak of a 32x32 map, so the engines would
disagree; with one function they place their crops alike
(``tests/unit/test_attention.py``).

pyvips is imported with this module, on the first image an engine=vips
function processes, never at ``import app``.
"""

from __future__ import annotations

import ctypes
import zlib
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import pyvips
from PIL import Image

from . import attention, decode, resize
from .errors import ImageRejected
from .modes import WORKING_MODES
from .resize import Crop

if TYPE_CHECKING:
    from .pipeline import Header

# libvips's loader per source format: nickname (a class method of pyvips.Image)
# and class.
LOADERS = {
    "JPEG": ("jpegload_buffer", "VipsForeignLoadJpegBuffer"),
    "PNG": ("pngload_buffer", "VipsForeignLoadPngBuffer"),
    "WEBP": ("webpload_buffer", "VipsForeignLoadWebpBuffer"),
}
# Which library decodes each format, by measurement (bench/results/imaging.md,
# the vips engine's tuning rows): with Pillow's JPEG decoder (its draft, as the
# Pillow engine) the engine takes 57 ms for a 12 MP JPEG and 147 for 48 MP,
# with libvips's 59 and 159; libvips's PNG decoder (libspng) makes a 12 MP PNG
# take 183 ms, Pillow's 269. WebP: Pillow's libwebp decode and copy into
# libvips took 293 ms for 12 MP, libvips's 317. Only the loaders named here
# are left unblocked.
DECODERS = {"JPEG": "pillow", "WEBP": "pillow", "PNG": "libvips"}
# A file libvips decodes is read as the largest rendition is made from it, on
# the other core, when nothing else reads the base (and it is not rotated):
# a 12 MP PNG in 183 instead of 186 ms (203 instead of 217 before big
# buffers were kept), with about 10 % less CPU.
STREAM = True
# glibc gives every freed block over its mmap threshold (128 KB, raised as
# large blocks are freed) back to the system, so each image's big buffers (the
# decoded base, every rendition) are page-faulted in anew: 75 instead of 57 ms
# for a 12 MP JPEG, 193 instead of 147 for 48 MP (the vips engine's tuning rows).
# With the engine, blocks up to 64 MB come from the heap, and up to 256 MB of
# freed heap is kept for the next image (a Lambda function does nothing else).
KEEP_BUFFERS = True
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HEAP_BLOCKS, HEAP_KEPT = 64 << 20, 256 << 20
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
# The largest shrink along one axis libvips is given: beyond it, libvips
# slows down far more than Pillow (thumb=256x256,medium=800x800,large=1600x1600
# renditions of a grey PNG, CPU seconds libvips / Pillow: 64x765,625 (a
# shrink of 2,990) 0.69 / 0.16, 16x3,062,500 2.2 / 0.29, 1x49,000,000 35 / 3.0,
# and 12,250,000x4 5.5 s and 1.5 GB / 0.31 s and 90 MB; in RGBA 128x382,812
# (1,495) 2.1 / 1.4, 256x191,406 (747) 0.58 / 1.26). Such sources go to the
# Pillow engine.
MAX_SHRINK = 1000
# The same Lanczos-3 as the Pillow engine. libvips first box-shrinks by whole
# factors while leaving at least twice the output size (its ``gap``).
KERNEL = "lanczos3"
# Pillow's Image.transpose methods (decode.orient) as libvips operations.
_ORIENT: dict[int, tuple[str, ...]] = {
    2: ("fliphor",),
    3: ("rot180",),
    4: ("flipver",),
    5: ("rot90", "fliphor"),
    6: ("rot90",),
    7: ("rot270", "fliphor"),
    8: ("rot270",),
}


# PNG renditions (``write_png``): libvips's encoder (libpng) at zlib level 3,
# every row Paeth-filtered. Measured on the three default renditions of a
# 12 MP photo, a 12 MP illustration and eight photographs, against Pillow's
# level 6 (bench/results/png.md): 0.93-1.07x the bytes in 0.13-0.32x the CPU
# time; the whole call 0.46x and 0.51x on the 12 MP inputs, 0.22-0.47x on the
# photographs. Compression 4 writes up to 1.05x for a little more time;
# filter "all" (libpng's adaptive choice) takes 1.6x as long on the
# illustration; compression 2, or the filters up or none, write up to 1.14x,
# 1.19x, 1.87x.
PNG_COMPRESSION = 3
PNG_FILTER = "paeth"
# The chunks a rendition keeps of what libpng writes: libvips adds pHYs
# (a resolution the image never had) whatever ``keep`` says.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHUNKS = frozenset({b"IHDR", b"iCCP", b"IDAT", b"IEND"})
_EXIF_HEADER = b"Exif\x00\x00"


def accepts(header: Header) -> bool:
    """Whether libvips takes this source (from Pillow's reading of its headers)."""
    img = header.image
    return (
        header.format in LOADERS
        and img.mode in WORKING_MODES
        and "transparency" not in img.info
        and header.frames == 1
        and shrink(header) <= MAX_SHRINK
    )


def shrink(header: Header) -> float:
    """The largest factor a rendition shrinks the source by along one axis."""
    return max(
        (
            max(header.width / max(1, t.size[0]), header.height / max(1, t.size[1]))
            for t in header.targets
        ),
        default=1.0,
    )


def render(data: bytes, header: Header) -> list[Image.Image] | None:
    """The rendition images, or None for a source the Pillow engine must take.

    Raises ``ImageRejected`` when libvips finds the pixel data broken, and
    ``MemoryError`` when it runs out of memory (transient: the caller retries).
    """
    if not accepts(header):
        return None
    _setup()
    try:
        base = _load(data, header)
        if base is None:
            return None
        oriented_base = _Made(_orient(base, header.orientation))
        images = resize.render_with(VIPS, oriented_base, header.targets)
        return [image.to_pillow() for image in images]
    except pyvips.Error as exc:
        raise _translated(exc) from exc


def draft_scale(size: tuple[int, int], needed: tuple[int, int]) -> int:
    """The JPEG DCT scale (1, 2, 4 or 8) Pillow's ``draft()`` picks: same base size."""
    fits = min(size[0] // max(1, needed[0]), size[1] // max(1, needed[1]))
    return next((s for s in (8, 4, 2) if fits >= s), 1)


@cache
def _setup() -> None:
    """Once per process: every loader blocked but ours, no operation cache,
    big buffers kept between images.

    The cache would keep the last images' pixels alive between invocations
    for nothing: every upload is different.
    """
    pyvips.operation_block_set("VipsForeignLoad", True)
    for fmt, (_, loader) in LOADERS.items():
        if DECODERS[fmt] == "libvips":
            pyvips.operation_block_set(loader, False)
    pyvips.cache_set_max(0)
    if KEEP_BUFFERS:
        _keep_buffers()


def _keep_buffers() -> None:
    """glibc's mallopt(); elsewhere (musl, macOS) nothing is changed."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCKS)
    mallopt(_M_TRIM_THRESHOLD, HEAP_KEPT)


def _load(data: bytes, header: Header) -> Any:
    """The source decoded into memory, for JPEG at the draft scale, as a libvips
    image that every rendition (and the orientation) reads; None when the
    pixels are not 8-bit or lack the bands Pillow's header promised (the Pillow
    engine then decodes them its own way)."""
    needed = decode.oriented(resize.needed_size(header.targets), header.orientation)
    if DECODERS[header.format] == "pillow":
        img = header.image  # accepts() checked its mode; the draft keeps it
        decode.load(img, needed)
        pixels = img.tobytes()
        return pyvips.Image.new_from_memory(pixels, img.width, img.height, len(img.mode), "uchar")
    nickname, _ = LOADERS[header.format]
    options: dict[str, Any] = {"fail_on": "error", "access": "sequential"}
    if header.format == "JPEG":
        options["shrink"] = draft_scale(header.image.size, needed)
    image = getattr(pyvips.Image, nickname)(data, **options)
    if image.format != "uchar" or MODES.get(image.bands) != header.image.mode:
        return None
    if STREAM and _read_once(header, (image.width, image.height)):
        return image  # decoded as the first rendition reads it, both at once
    return image.copy_memory()


def _read_once(header: Header, size: tuple[int, int]) -> bool:
    """Whether one resize reads the base, top to bottom (no rotation, no flip
    upside down): then it need not be decoded into memory first. A crop at
    ``attention`` gravity made from the base reads it twice (its saliency
    first)."""
    made_from_base = [i for i, source in resize.cascade(header.targets, size) if source is None]
    return (
        header.orientation in (1, 2)
        and len(made_from_base) == 1
        and not _attended(header.targets[made_from_base[0]])
    )


def _attended(target: resize.Target) -> bool:
    return target.crop is not None and target.gravity == "attention"


def _orient(image: Any, orientation: int) -> Any:
    for operation in _ORIENT.get(orientation, ()):
        image = getattr(image, operation)()
    return image


@dataclass(frozen=True)
class _Made:
    """A libvips image, and the buffer it was computed into, if it was."""

    image: Any
    pixels: bytes | None = None

    @classmethod
    def computed(cls, image: Any) -> _Made:
        """``image`` computed into one buffer that both later renditions (as a
        libvips image) and Pillow's encoder (``frombuffer``) read: no copy."""
        pixels = image.write_to_memory()
        width, height, bands = image.width, image.height, image.bands
        return cls(pyvips.Image.new_from_memory(pixels, width, height, bands, "uchar"), pixels)

    def to_pillow(self) -> Image.Image:
        pixels = self.pixels if self.pixels is not None else self.image.write_to_memory()
        mode, size = MODES[self.image.bands], (self.image.width, self.image.height)
        return Image.frombuffer(mode, size, pixels, "raw", mode, 0, 1)


class _Vips:
    """Resizes for ``resize.render_with``; each result is computed at once,
    since later renditions may be made from it."""

    def size(self, made: _Made) -> tuple[int, int]:
        return made.image.width, made.image.height

    def resize(self, source: _Made, size: tuple[int, int]) -> _Made:
        if self.size(source) == size:  # computed once, even if it is a streamed base
            return source if source.pixels is not None else _Made.computed(source.image)
        return _Made.computed(_scaled(source.image, size))

    def resize_region(self, source: _Made, size: tuple[int, int], crop: Crop) -> _Made:
        # libvips computes only what the crop asks for: a sliver's huge
        # intermediate is never made.
        left, top, right, bottom = crop
        region = _scaled(source.image, size).crop(left, top, right - left, bottom - top)
        return _Made.computed(region)

    def small(self, source: _Made, sampling: attention.Sampling) -> Image.Image:
        # The same pixels picked and averaged as the Pillow engine's
        # (premultiplied, as Pillow's reduce() is), for the same saliency;
        # not libvips's smartcrop: see the module's docstring.
        (sx, sy), (width, height), (bx, by) = sampling.step, sampling.picked, sampling.box
        image = source.image
        if (sx, sy) != (1, 1):
            image = image.subsample(sx, sy)
        image = image.crop(0, 0, width, height)
        if (bx, by) != (1, 1):
            if image.hasalpha():
                image = image.premultiply().shrink(bx, by).unpremultiply().cast("uchar")
            else:
                image = image.shrink(bx, by)
        return _Made(image).to_pillow()


VIPS = _Vips()


def _scaled(image: Any, size: tuple[int, int]) -> Any:
    """``image`` resized to exactly ``size``; alpha premultiplied, as Pillow does."""
    hscale, vscale = size[0] / image.width, size[1] / image.height
    if not image.hasalpha():
        return image.resize(hscale, vscale=vscale, kernel=KERNEL)
    scaled = image.premultiply().resize(hscale, vscale=vscale, kernel=KERNEL)
    return scaled.unpremultiply().cast("uchar")


def write_png(img: Image.Image, icc: bytes | None, exif: bytes | None) -> bytes:
    """An 8-bit L, LA, RGB or RGBA image as PNG by libvips, with ``icc`` and
    ``exif`` as Pillow would embed them (``encode.PngWriter``).

    The profile goes through libvips's ``icc-profile-data``; the EXIF is
    spliced in as the same eXIf chunk Pillow writes, since libvips rewrites
    the block on saving (it adds an Orientation, a resolution and the pixel
    dimensions, which ``metadata.exif_for_output`` leaves out). Each call
    builds its own libvips image: safe in the encoder threads.
    """
    _setup()
    image = pyvips.Image.new_from_memory(
        img.tobytes(), img.width, img.height, len(img.mode), "uchar"
    )
    options: dict[str, Any] = {"compression": PNG_COMPRESSION, "filter": PNG_FILTER}
    if icc:
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    if pyvips.at_least_libvips(8, 15):  # ``keep`` replaced ``strip`` in 8.15
        keep = pyvips.enums.ForeignKeep
        options["keep"] = keep.ICC if icc else keep.NONE
    # (Before 8.15 the fresh image carries nothing to strip but the profile.)
    try:
        data = image.pngsave_buffer(**options)
    except pyvips.Error as exc:
        raise _translated(exc) from exc
    return _png_with(data, exif)


def _png_with(data: bytes, exif: bytes | None) -> bytes:
    """``data``'s chunks in ``_PNG_CHUNKS``, with an eXIf chunk of ``exif``
    (without the ``Exif\\0\\0`` header, as Pillow writes it) before the first IDAT."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("libvips wrote no PNG")
    view = memoryview(data)
    parts: list[bytes | memoryview] = [view[: len(_PNG_SIGNATURE)]]
    pos = len(_PNG_SIGNATURE)
    while pos < len(data):
        kind = bytes(view[pos + 4 : pos + 8])
        end = pos + 12 + int.from_bytes(view[pos : pos + 4], "big")
        if kind == b"IDAT" and exif:
            parts.append(_chunk(b"eXIf", exif.removeprefix(_EXIF_HEADER)))
            exif = None
        if kind in _PNG_CHUNKS:
            parts.append(view[pos:end])
        pos = end
    return b"".join(parts)


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(body, zlib.crc32(kind))
    return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")


def _translated(exc: pyvips.Error) -> Exception:
    lines = [line.strip() for line in str(exc.detail or exc.message).splitlines()]
    detail = next((line for line in lines if line), "libvips failed")
    if "out of memory" in detail:
        return MemoryError(detail)
    return ImageRejected(f"image data is truncated or corrupt: {detail}")
