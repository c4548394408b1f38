"""The imaging steps, in order: one decode per upload, every rendition from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from . import decode, resize
from .encode import encode
from .formats import OUTPUT_CONTENT_TYPES, SOURCE_CONTENT_TYPES, output_format
from .metadata import exif_for_output, extract_metadata, orientation_of, read_exif
from .model import EncodedRendition, ImagingOptions, ProcessedImage
from .modes import ALPHA_MODES, to_working_mode


@dataclass(frozen=True)
class _Decoded:
    format: str
    width: int  # displayed size of the source
    height: int
    metadata: dict[str, Any]
    exif: Image.Exif
    icc: bytes | None
    base: Image.Image  # oriented, in a working mode, no larger than needed
    targets: list[resize.Target]


def process_image(data: bytes, options: ImagingOptions) -> ProcessedImage:
    """Decode ``data`` once and produce every rendition and the metadata.

    Raises ``ImageRejected`` for files no retry can fix.
    """
    source = _decode(data, options)
    out_format = output_format(
        options.output_format, source.format, source.base.mode in ALPHA_MODES
    )
    exif_out = None if options.strip_metadata else exif_for_output(source.exif)
    images = resize.render(source.base, source.targets)
    renditions = tuple(
        _rendition(spec.name, image, out_format, options.jpeg_quality, source.icc, exif_out)
        for spec, image in zip(options.renditions, images, strict=True)
    )
    return ProcessedImage(
        source.format,
        SOURCE_CONTENT_TYPES[source.format],
        source.width,
        source.height,
        source.metadata,
        renditions,
    )


def rendition_images(data: bytes, options: ImagingOptions) -> list[Image.Image]:
    """The pixels ``process_image`` would encode, in the order of ``options.renditions``.

    For measuring quality (``bench/imaging.py``): the same steps, no encoding.
    """
    source = _decode(data, options)
    return resize.render(source.base, source.targets)


def read_metadata(data: bytes, max_pixels: int) -> tuple[str, int, int, dict[str, Any]]:
    """(format, displayed width, displayed height, metadata), from the headers only.

    The same allow-list and pixel cap as ``process_image``; the pixels are not
    decoded, so a file damaged past its headers is not noticed here.
    """
    with decode.decoding(max_pixels):
        img = decode.open_image(data, max_pixels)
        exif = read_exif(img, may_decode=False)
        width, height = decode.oriented(img.size, orientation_of(exif))
        metadata = extract_metadata(img, exif)
        return decode.source_format(img), width, height, metadata


def _decode(data: bytes, options: ImagingOptions) -> _Decoded:
    """Open, check, decode (JPEG: drafted), orient and normalise the mode."""
    with decode.decoding(options.max_pixels):
        img = decode.open_image(data, options.max_pixels)
        exif = read_exif(img, may_decode=True)
        metadata = extract_metadata(img, exif)
        fmt = decode.source_format(img)
        orientation = orientation_of(exif)
        width, height = decode.oriented(img.size, orientation)
        targets = resize.plan(options.renditions, (width, height))
        needed = resize.needed_size(targets)
        decode.load(img, decode.oriented(needed, orientation))
        icc = img.info.get("icc_profile")
        base, icc = to_working_mode(decode.orient(img, orientation), icc)
    base = resize.reduce_base(base, needed)
    base.info = {}  # nothing of the source's may ride along into an encoder
    return _Decoded(fmt, width, height, metadata, exif, icc, base, targets)


def _rendition(
    name: str, image: Image.Image, fmt: str, quality: int, icc: bytes | None, exif: bytes | None
) -> EncodedRendition:
    data = encode(image, fmt, quality, icc, exif)
    return EncodedRendition(name, data, image.width, image.height, fmt, OUTPUT_CONTENT_TYPES[fmt])
