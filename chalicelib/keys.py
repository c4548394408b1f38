"""Pure functions over S3 keys: ids, folders, rendition keys, sequencers."""

from __future__ import annotations

import base64
import hashlib
import posixpath
from urllib.parse import quote

MAX_KEY_BYTES = 1024
_SEQUENCER_WIDTH = 64

# Output format -> the extension its renditions carry.
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
_SAME_EXTENSION = {".jpeg": ".jpg", ".jpg": ".jpg"}


def image_id(bucket: str, key: str) -> str:
    """Opaque, URL-safe id, stable for a bucket and key."""
    digest = hashlib.sha256(f"{bucket}/{key}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def folder_of(key: str) -> str:
    """The folder an object is directly in: ``a/b/c.jpg`` -> ``a/b/``, root -> ``""``."""
    head, sep, _ = key.rpartition("/")
    return head + sep


def ancestors(prefix: str) -> list[str]:
    """``a/b/c/`` -> ``["a/", "a/b/", "a/b/c/"]``; ``""`` -> ``[]``."""
    parts = prefix.split("/")[:-1]
    return ["/".join(parts[: i + 1]) + "/" for i in range(len(parts))]


def rendition_key(prefix: str, name: str, source_key: str, output_format: str) -> str:
    """Where the ``name`` rendition of ``source_key`` is written.

    The output format's extension is appended when it differs from the
    source's (``anim.gif`` -> ``anim.gif.png``), so two sources never share a
    rendition key.
    """
    extension = EXTENSIONS[output_format]
    source_ext = posixpath.splitext(source_key)[1].lower()
    if _SAME_EXTENSION.get(source_ext, source_ext) == extension:
        extension = ""
    return f"{prefix}{name}/{source_key}{extension}"


def key_fits(key: str) -> bool:
    return len(key.encode("utf-8")) <= MAX_KEY_BYTES


def metadata_value(text: str) -> str:
    """S3 user metadata is ASCII only: percent-encode (RFC 3986, UTF-8)."""
    return quote(text, safe="/")


def normalise_sequencer(sequencer: str | None) -> str:
    """Make sequencers comparable as text, as AWS documents: right-pad with zeros.

    Returns "" for an event without a sequencer (emulators, backfill).
    """
    if not sequencer:
        return ""
    return sequencer.upper().ljust(_SEQUENCER_WIDTH, "0")


def has_suffix(key: str, suffixes: tuple[str, ...]) -> bool:
    return key.lower().endswith(suffixes)
