"""Pure functions over S3 keys: ids, folders, rendition keys, sequencers."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import quote, unquote

MAX_KEY_BYTES = 1024
_SEQUENCER_WIDTH = 64

# Output format -> the canonical extension its renditions carry.
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "AVIF": ".avif"}
# Extensions (lower case) that name an output format: the canonical ones, and .jpeg.
_FORMAT_OF_EXTENSION = {ext: fmt for fmt, ext in EXTENSIONS.items()} | {".jpeg": "JPEG"}


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
    """Where the ``name`` rendition of ``source_key`` in ``output_format`` is written.

    A source whose extension already names the format keeps its key, in the
    rendition's folder: ``photos/cat.jpg`` -> ``thumb/photos/cat.jpg``. Any
    other gets the format's extension appended, in a folder that names it:
    ``anim.gif`` -> ``thumb.png/anim.gif.png``. The layout is injective:
    inside ``NAME/`` the key is the source key itself, inside ``NAME.ext/``
    it is the source key plus a fixed suffix, and as rendition names hold no
    dot, no ``NAME.ext/`` folder is another name's ``NAME/`` folder.
    """
    extension = EXTENSIONS[output_format]
    if format_named_by(source_key) == output_format:
        return f"{prefix}{name}/{source_key}"
    return f"{prefix}{name}{extension}/{source_key}{extension}"


def format_named_by(key: str) -> str | None:
    """The output format ``key``'s extension names (case ignored, ``.jpeg``
    is JPEG), or None: ``a/b.JPEG`` -> ``"JPEG"``, ``a.gif`` -> None."""
    _, dot, extension = key.rpartition(".")
    if not dot or "/" in extension:
        return None
    return _FORMAT_OF_EXTENSION.get("." + extension.lower())


def key_fits(key: str) -> bool:
    return len(key.encode("utf-8")) <= MAX_KEY_BYTES


def metadata_value(text: str) -> str:
    """S3 user metadata is ASCII only: percent-encode (RFC 3986, UTF-8)."""
    return quote(text, safe="/")


def metadata_text(value: str) -> str:
    """The text ``metadata_value`` encoded."""
    return unquote(value)


def normalise_sequencer(sequencer: str | None) -> str:
    """Make sequencers comparable as text, as AWS documents: right-pad with zeros.

    Returns "" for an event without a sequencer (emulators, backfill).
    """
    if not sequencer:
        return ""
    return sequencer.upper().ljust(_SEQUENCER_WIDTH, "0")


def has_suffix(key: str, suffixes: tuple[str, ...]) -> bool:
    return key.lower().endswith(suffixes)
