"""The imaging steps, in order: one decode per upload, every rendition from it."""

from __future__ import annotations

from typing import Any

from PIL import Image

from . import decode, resize
from .encode import encode
from .formats import OUTPUT_CONTENT_TYPES, SOURCE_CONTENT_TYPES, output_format
from .metadata import exif_for_output, extract_metadata, orientation_of, read_exif
from .model import EncodedRendition, ImagingOptions, ProcessedImage
from .modes import ALPHA_MODES, to_working_mode


def process_image(data: bytes, options: ImagingOptions) -> ProcessedImage:
    """Decode ``data`` once and produce every rendition and the metadata.

    Raises ``ImageRejected`` for files no retry can fix.
    """
    with decode.decoding(options.max_pixels):
        img = decode.open_image(data, options.max_pixels)
        exif = read_exif(img, may_decode=True)
        metadata = extract_metadata(img, exif)
        fmt = decode.source_format(img)
        orientation = orientation_of(exif)
        width, height = decode.oriented(img.size, orientation)
        targets = resize.plan(options.renditions, (width, height))
        decode.load(img, decode.oriented(resize.needed_size(targets), orientation))
        icc = img.info.get("icc_profile")
        base, icc = to_working_mode(decode.orient(img, orientation), icc)
    base.info = {}  # nothing of the source's may ride along into an encoder
    images = resize.render(base, targets)
    out_format = output_format(options.output_format, fmt, base.mode in ALPHA_MODES)
    exif_out = None if options.strip_metadata else exif_for_output(exif)
    renditions = tuple(
        _rendition(spec.name, image, out_format, options.jpeg_quality, icc, exif_out)
        for spec, image in zip(options.renditions, images, strict=True)
    )
    return ProcessedImage(fmt, SOURCE_CONTENT_TYPES[fmt], width, height, metadata, renditions)


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


def _rendition(
    name: str, image: Image.Image, fmt: str, quality: int, icc: bytes | None, exif: bytes | None
) -> EncodedRendition:
    data = encode(image, fmt, quality, icc, exif)
    return EncodedRendition(name, data, image.width, image.height, fmt, OUTPUT_CONTENT_TYPES[fmt])
