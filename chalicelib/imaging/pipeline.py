"""The imaging steps, in order: one decode per upload, every rendition from it.

1. header: identify the file among the accepted formats, check its structure
   (``structure.py``, from the bytes, before Pillow opens it) and its pixel
   count, read EXIF and the record's metadata, plan the rendition sizes
   (Pillow, from the headers alone: no engine sees a file that fails here);
2. pixels: decode at reduced scale, orient (unless the decoder did), resize
   (the engine's part: ``IMAGE_ENGINE=pillow`` below, ``vips`` in ``vips.py``);
3. encode every rendition and its alternates (``FORMATS``), in Pillow,
   whichever engine made the pixels, but for the PNG renditions of the
   images libvips made, which libvips's own encoder writes (``png_writer``);
   the ICC and EXIF rules (``encode``) are the same for both; and the
   placeholder, from the pixels of an uncropped rendition (no new decode).
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

from PIL import Image

from . import decode, resize
from .encode import PngWriter, encode
from .formats import OUTPUT_CONTENT_TYPES, output_format, source_content_type
from .geometry import parse_renditions
from .metadata import exif_for_output, extract_metadata, orientation_of, read_exif
from .model import EncodedAlternate, EncodedRendition, ImagingOptions, ProcessedImage
from .modes import ALPHA_MODES, to_working_mode
from .placeholder import placeholder

# Threads that encode renditions and alternates side by side.
ENCODERS = 2
# The long side a placeholder's source rendition should have at least: the
# BlurHash is computed on a downscale of about this size.
PLACEHOLDER_SIDE = 32


@dataclass(frozen=True)
class Header:
    """What the headers tell, before any pixel is decoded."""

    image: Image.Image  # opened by Pillow, not loaded
    format: str
    width: int  # displayed size of the source
    height: int
    # The EXIF orientation still to apply to the decoded pixels: 1 when the
    # decoder applies the tag itself (TIFF in Pillow), so it is applied once.
    # The tag itself is in ``metadata["orientation"]``.
    orientation: int
    frames: int  # frames (pages) of the source, counted from its structure
    exif: Image.Exif
    metadata: dict[str, Any]
    targets: list[resize.Target]


@dataclass(frozen=True)
class Pixels:
    images: list[Image.Image]  # in the order of the renditions
    icc: bytes | None  # describes the images' pixels
    engine: str = "pillow"


def process_image(data: bytes, options: ImagingOptions) -> ProcessedImage:
    """Decode ``data`` once and produce every rendition and the metadata.

    Raises ``ImageRejected`` for files no retry can fix.
    """
    with decode.decoding(options.max_pixels):
        header = read_header(data, options)
        pixels = _pixels(data, header, options)
    has_alpha = any(image.mode in ALPHA_MODES for image in pixels.images)
    out_format = output_format(options.output_format, header.format, has_alpha)
    exif_out = None if options.strip_metadata else exif_for_output(header.exif)
    png = png_writer(pixels.engine)
    encoded = _encode_all(pixels.images, out_format, options, pixels.icc, exif_out, png)
    renditions = tuple(
        EncodedRendition(
            spec.name,
            encoded[(i, out_format)],
            image.width,
            image.height,
            out_format,
            OUTPUT_CONTENT_TYPES[out_format],
            tuple(
                EncodedAlternate(encoded[(i, fmt)], fmt, OUTPUT_CONTENT_TYPES[fmt])
                for fmt in alternate_formats(out_format, options.formats)
            ),
        )
        for i, (spec, image) in enumerate(zip(options.renditions, pixels.images, strict=True))
    )
    return ProcessedImage(
        header.format,
        source_content_type(header.format, data),
        header.width,
        header.height,
        header.metadata,
        renditions,
        pixels.engine,
        placeholder(placeholder_image(pixels.images, header.targets)),
    )


def warm_up(engine: str) -> None:
    """One tiny image through ``engine``, as a new imaging worker starts: the
    vips engine's first image otherwise pays for loading libvips and setting
    up its operations (about 20 ms of a 12 MP JPEG's time), which a worker
    started ahead of its first file (``IsolatedImaging.start``) can spend
    while its parent builds its clients. Best effort: a failure here is the
    first real file's to report."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(buffer, "JPEG")
    try:
        options = ImagingOptions(renditions=parse_renditions("thumb=32x32"), engine=engine)
        process_image(buffer.getvalue(), options)
    except Exception:  # noqa: S110  (nothing is lost: the worker serves on)
        pass


def alternate_formats(out_format: str, formats: tuple[str, ...]) -> tuple[str, ...]:
    """The alternates a rendition in ``out_format`` gets: none in its own format."""
    return tuple(f for f in formats if f != out_format)


def placeholder_image(images: list[Image.Image], targets: list[resize.Target]) -> Image.Image:
    """The rendition a placeholder is computed from: the smallest that shows
    the whole frame undistorted and is at least ``PLACEHOLDER_SIDE`` on its
    long side, so the BlurHash follows the source's aspect ratio, not a
    crop's. When every rendition is cropped or stretched, the largest."""
    whole = [
        image
        for image, target in zip(images, targets, strict=True)
        if target.crop is None and target.keeps_aspect
    ]
    big_enough = [image for image in whole if max(image.size) >= PLACEHOLDER_SIDE]
    if big_enough:
        return min(big_enough, key=lambda image: image.width * image.height)
    return max(whole or images, key=lambda image: image.width * image.height)


def _encode_all(
    images: list[Image.Image],
    out_format: str,
    options: ImagingOptions,
    icc: bytes | None,
    exif: bytes | None,
    png: PngWriter | None = None,
) -> dict[tuple[int, str], bytes]:
    """Every rendition in ``out_format`` and its alternates, by (index, format);
    PNGs by ``png`` when given (see ``encode``).

    The encoders release the GIL (libjpeg, zlib, libwebp, libavif, libvips), so the
    encodes share ``ENCODERS`` threads, largest image first, so that the
    threads finish together.
    """
    jobs = [
        (i, fmt)
        for i in sorted(range(len(images)), key=lambda i: -images[i].width * images[i].height)
        for fmt in (out_format, *alternate_formats(out_format, options.formats))
    ]

    def run(job: tuple[int, str]) -> bytes:
        i, fmt = job
        return encode(images[i], fmt, quality_of(fmt, options), icc, exif, png=png)

    if len(jobs) == 1:
        return {jobs[0]: run(jobs[0])}
    futures = [(job, _encoders().submit(run, job)) for job in jobs]
    return {job: future.result() for job, future in futures}


def png_writer(engine: str) -> PngWriter | None:
    """The PNG encoder for the images ``engine`` made: libvips's for the vips
    engine (pyvips is loaded already), Pillow's (None) otherwise, including
    for every source the vips engine handed to Pillow."""
    if engine == "vips":
        from . import vips

        return vips.write_png
    return None


def quality_of(fmt: str, options: ImagingOptions) -> int:
    """The encoder quality of ``fmt`` (PNG is lossless: it takes none)."""
    return {"AVIF": options.avif_quality, "WEBP": options.webp_quality}.get(
        fmt, options.jpeg_quality
    )


@cache
def _encoders() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=ENCODERS, thread_name_prefix="encode")


def rendition_images(data: bytes, options: ImagingOptions) -> list[Image.Image]:
    """The pixels ``process_image`` would encode, in the order of ``options.renditions``.

    For measuring quality (``bench/imaging.py``): the same steps, no encoding.
    """
    with decode.decoding(options.max_pixels):
        return _pixels(data, read_header(data, options), options).images


def read_metadata(data: bytes, max_pixels: int) -> tuple[str, int, int, dict[str, Any]]:
    """(format, displayed width, displayed height, metadata), from the headers only.

    The same allow-list, structural caps and pixel cap as ``process_image``;
    the pixels are not decoded, so a file damaged past its headers is not
    noticed here.
    """
    with decode.decoding(max_pixels):
        img, _ = decode.open_source(data, max_pixels)
        fmt = decode.source_format(img)
        exif = read_exif(img, data)
        pending = decode.pending_orientation(fmt, orientation_of(exif))
        width, height = decode.oriented(img.size, pending)
        return fmt, width, height, extract_metadata(img, exif)


def read_header(data: bytes, options: ImagingOptions) -> Header:
    """Step 1. Call inside ``decode.decoding()``."""
    img, frames = decode.open_source(data, options.max_pixels)
    fmt = decode.source_format(img)
    exif = read_exif(img, data)
    orientation = decode.pending_orientation(fmt, orientation_of(exif))
    width, height = decode.oriented(img.size, orientation)
    return Header(
        image=img,
        format=fmt,
        width=width,
        height=height,
        orientation=orientation,
        frames=frames,
        exif=exif,
        metadata=extract_metadata(img, exif),
        targets=resize.plan(options.renditions, (width, height), options.crop_gravity),
    )


def _pixels(data: bytes, header: Header, options: ImagingOptions) -> Pixels:
    """Step 2, by the engine asked for; the Pillow engine takes what libvips is not given."""
    if options.engine == "vips":
        from . import vips

        images = vips.render(data, header)
        if images is not None:
            return Pixels(images, header.image.info.get("icc_profile"), "vips")
    return pillow_pixels(header)


def pillow_pixels(header: Header) -> Pixels:
    """Step 2 in Pillow: JPEG drafted, oriented, any mode brought to a working one."""
    img, orientation = header.image, header.orientation
    needed = resize.needed_size(header.targets)
    decode.load(img, decode.oriented(needed, orientation))
    base, icc = to_working_mode(decode.orient(img, orientation), img.info.get("icc_profile"))
    base = resize.reduce_base(base, needed)
    base.info = {}  # nothing of the source's may ride along into an encoder
    return Pixels(resize.render(base, header.targets), icc)
