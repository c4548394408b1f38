"""Size bounds on a record's ``metadata`` (DESIGN.md, "Bounds").

Each text field is at most ``MAX_TEXT_CHARS`` characters, without control
characters, and the whole dict at most ``MAX_METADATA_BYTES`` of UTF-8 JSON,
so that a record fits a DynamoDB item (400 KB) and an SNS message (256 KB),
and a page of records a Lambda answer (6 MB), whatever a file's EXIF holds.

Pure and cheap: applied where metadata is extracted and again where records
are shown (``ImageRecord.to_api``), so records stored before these bounds are
bounded too. No imaging library is imported here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from numbers import Number
from typing import Any

MAX_TEXT_CHARS = 256
MAX_METADATA_BYTES = 4096

# A BlurHash is 4 characters of header, then 2 for each of at most 9x9
# components (base83's alphabet); a colour is ``#rrggbb``.
_BLURHASH = re.compile(r"[0-9A-Za-z#$%*+,.:;=?@\[\]^_{|}~-]{6,166}")
_COLOUR = re.compile(r"#[0-9a-f]{6}")

# C0 and C1 controls and DEL (Unicode category Cc), and lone surrogates,
# which no UTF-8 encoder accepts.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def bounded_text(value: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``value`` without control characters, cut to ``limit`` characters and
    stripped of the spaces its ends are left with."""
    if len(value) > 4 * limit:  # cleaning a prefix is enough unless it is mostly controls
        cleaned = _CONTROL.sub("", value[: 4 * limit])
        if len(cleaned) < limit:
            cleaned = _CONTROL.sub("", value)
    else:
        cleaned = _CONTROL.sub("", value)
    return cleaned[:limit].strip()


def bounded_metadata(
    metadata: Mapping[str, Any], max_bytes: int = MAX_METADATA_BYTES
) -> dict[str, Any]:
    """``metadata`` with each text field bounded, and text fields shortened or
    dropped, longest first, until its JSON is at most ``max_bytes`` of UTF-8.

    Numbers, booleans and None are small and kept; a value of another kind
    (only an old or foreign record has one) is dropped when the dict does not
    fit, before any text is.
    """
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, str):
            value = bounded_text(value)
            if not value:
                continue
        out[str(key)] = value
    if _size(out) <= max_bytes:
        return out
    for key in sorted(out, key=lambda k: -_size(out[k])):
        if not isinstance(out[key], str | Number | None):
            del out[key]
            if _size(out) <= max_bytes:
                return out
    while (excess := _size(out) - max_bytes) > 0:
        texts = [k for k, v in out.items() if isinstance(v, str)]
        if not texts:  # numbers and booleans only: nothing left to shorten
            break
        key = max(texts, key=lambda k: _size(out[k]))
        if shortened := _shortened(out[key], excess):
            out[key] = shortened
        else:
            del out[key]
    return out


def bounded_placeholder(value: Any) -> dict[str, str] | None:
    """``value`` if it is a well-formed placeholder, else None.

    It comes from an imaging worker, which parses hostile files: nothing but
    a BlurHash and a colour of their fixed forms may reach a record.
    """
    if not isinstance(value, Mapping):
        return None
    blurhash, colour = value.get("blurhash"), value.get("color")
    if not (isinstance(blurhash, str) and isinstance(colour, str)):
        return None
    if not (_BLURHASH.fullmatch(blurhash) and _COLOUR.fullmatch(colour)):
        return None
    return {"blurhash": blurhash, "color": colour}


def _shortened(text: str, excess: int) -> str:
    """``text`` with at least ``excess`` bytes of its JSON cut from its end
    (empty when that leaves too little to be worth keeping)."""
    while text and excess > 0:
        cut = max(1, min(len(text), excess // 6))  # a character is 1 to 6 bytes of JSON
        excess -= _size(text) - _size(text[:-cut])
        text = text[:-cut].rstrip()
    return text if len(text) >= 8 else ""


def _size(value: Any) -> int:
    """Bytes of ``value`` as JSON in UTF-8, as the repositories and the
    notifications write it (``ensure_ascii=False``), with the default
    separators (the larger)."""
    return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8"))
