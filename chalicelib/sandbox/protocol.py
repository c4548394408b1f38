"""Messages between the pipeline and its imaging workers, over pipes.

A message is an 8-byte prefix (header length, payload length), a JSON header
and raw payload bytes. Not pickle: a worker parses hostile files, and what it
sends back can only hand the parent JSON and bytes, never make it run code.
"""

from __future__ import annotations

import json
import struct
from dataclasses import fields
from typing import Any, BinaryIO

from chalicelib.bounds import bounded_placeholder
from chalicelib.imaging.geometry import parse_renditions
from chalicelib.imaging.model import (
    EncodedAlternate,
    EncodedRendition,
    ImagingOptions,
    ProcessedImage,
)

PREFIX = struct.Struct(">II")
# Headers carry options or a result whose metadata is bounded to 4 KB.
MAX_HEADER_BYTES = 1 << 20
# Requests carry a source (at most MAX_SOURCE_BYTES), results the renditions.
MAX_PAYLOAD_BYTES = 1 << 30


class ProtocolError(Exception):
    """A message that breaks the framing: the other side is not a sane worker."""


def pack(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """The prefix and header of a message; the payload is written after it as is."""
    text = json.dumps(header, separators=(",", ":")).encode()
    if len(text) > MAX_HEADER_BYTES or len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("message too large")
    return PREFIX.pack(len(text), len(payload)) + text


def sizes(prefix: bytes) -> tuple[int, int]:
    """(header length, payload length) from a prefix, checked against the caps."""
    header_size, payload_size = PREFIX.unpack(prefix)
    if header_size > MAX_HEADER_BYTES or payload_size > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"message of {header_size} + {payload_size} bytes is over the caps")
    return header_size, payload_size


def header_of(text: bytes) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("header is not a JSON object")
    return value


def write_message(stream: BinaryIO, header: dict[str, Any], payload: bytes = b"") -> None:
    stream.write(pack(header, payload))
    if payload:
        stream.write(payload)
    stream.flush()


def read_message(stream: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    """The next message from a blocking stream; None at a clean end of stream."""
    prefix = _read_exact(stream, PREFIX.size, allow_eof=True)
    if prefix is None:
        return None
    header_size, payload_size = sizes(prefix)
    header = header_of(_read_exact(stream, header_size) or b"")
    payload = _read_exact(stream, payload_size) or b""
    return header, payload


def _read_exact(stream: BinaryIO, size: int, *, allow_eof: bool = False) -> bytes | None:
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = stream.read(left)
        if not chunk:
            if allow_eof and left == size:
                return None
            raise ProtocolError("the stream ended inside a message")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# -- the values that cross ----------------------------------------------------------
def options_to_json(options: ImagingOptions) -> dict[str, Any]:
    """Every field of ``ImagingOptions``, the renditions in their settings syntax."""
    value = {f.name: getattr(options, f.name) for f in fields(options)}
    value["renditions"] = ",".join(map(str, options.renditions))
    return value


def options_from_json(value: dict[str, Any]) -> ImagingOptions:
    known = {f.name for f in fields(ImagingOptions)}
    args = {k: v for k, v in value.items() if k in known}
    args["renditions"] = parse_renditions(str(value["renditions"]))
    if "formats" in args:
        args["formats"] = tuple(map(str, args["formats"]))
    return ImagingOptions(**args)


def result_to_message(image: ProcessedImage) -> tuple[dict[str, Any], bytes]:
    """The result as a header and a payload of every rendition's bytes, each
    followed by its alternates'."""
    header = {
        "format": image.format,
        "content_type": image.content_type,
        "width": image.width,
        "height": image.height,
        "metadata": image.metadata,
        "engine": image.engine,
        "placeholder": image.placeholder,
        "renditions": [
            {
                "name": r.name,
                "width": r.width,
                "height": r.height,
                "format": r.format,
                "content_type": r.content_type,
                "size": len(r.data),
                "alternates": [
                    {"format": a.format, "content_type": a.content_type, "size": len(a.data)}
                    for a in r.alternates
                ],
            }
            for r in image.renditions
        ],
    }
    parts = [part for r in image.renditions for part in (r.data, *(a.data for a in r.alternates))]
    return header, b"".join(parts)


def result_from_message(header: dict[str, Any], payload: bytes) -> ProcessedImage:
    try:
        cursor = _Cursor(payload)
        renditions = [
            EncodedRendition(
                str(r["name"]),
                cursor.take(r["size"]),
                int(r["width"]),
                int(r["height"]),
                str(r["format"]),
                str(r["content_type"]),
                tuple(
                    EncodedAlternate(
                        cursor.take(a["size"]), str(a["format"]), str(a["content_type"])
                    )
                    for a in r.get("alternates") or ()
                ),
            )
            for r in header["renditions"]
        ]
        cursor.finish()
        metadata = header["metadata"]
        if not isinstance(metadata, dict):
            raise ProtocolError("metadata is not an object")
        return ProcessedImage(
            str(header["format"]),
            str(header["content_type"]),
            int(header["width"]),
            int(header["height"]),
            metadata,
            tuple(renditions),
            str(header["engine"]),
            bounded_placeholder(header.get("placeholder")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"malformed result: {exc!r}") from None


class _Cursor:
    """Cuts a payload into consecutive parts of the sizes a header states."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.at = 0

    def take(self, size: Any) -> bytes:
        size = int(size)
        if size < 0 or self.at + size > len(self.payload):
            raise ProtocolError("rendition sizes do not match the payload")
        self.at += size
        return self.payload[self.at - size : self.at]

    def finish(self) -> None:
        if self.at != len(self.payload):
            raise ProtocolError("rendition sizes do not match the payload")
