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

from chalicelib.imaging.geometry import parse_renditions
from chalicelib.imaging.model import EncodedRendition, ImagingOptions, ProcessedImage

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
    return ImagingOptions(**args)


def result_to_message(image: ProcessedImage) -> tuple[dict[str, Any], bytes]:
    header = {
        "format": image.format,
        "content_type": image.content_type,
        "width": image.width,
        "height": image.height,
        "metadata": image.metadata,
        "engine": image.engine,
        "renditions": [
            {
                "name": r.name,
                "width": r.width,
                "height": r.height,
                "format": r.format,
                "content_type": r.content_type,
                "size": len(r.data),
            }
            for r in image.renditions
        ],
    }
    return header, b"".join(r.data for r in image.renditions)


def result_from_message(header: dict[str, Any], payload: bytes) -> ProcessedImage:
    try:
        renditions: list[EncodedRendition] = []
        at = 0
        for r in header["renditions"]:
            size = int(r["size"])
            if size < 0 or at + size > len(payload):
                raise ProtocolError("rendition sizes do not match the payload")
            renditions.append(
                EncodedRendition(
                    str(r["name"]),
                    payload[at : at + size],
                    int(r["width"]),
                    int(r["height"]),
                    str(r["format"]),
                    str(r["content_type"]),
                )
            )
            at += size
        if at != len(payload):
            raise ProtocolError("rendition sizes do not match the payload")
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
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed result: {exc!r}") from None
