"""``POST /uploads``: presigned S3 POSTs for the gallery's upload form.

Every grant gets a key of its own: ``UPLOAD_PREFIX + folder + stem + "-" + ID
+ ext``, with an ID of 66 random bits, so no grant can overwrite another
upload (or anything else) however many callers ask for the same file name.

The policy S3 enforces: exactly the key handed out, exactly the declared image
content type, and 1 byte to ``MAX_SOURCE_BYTES``. botocore's
``generate_presigned_post`` binds the key with an exact ``{"key": ...}``
condition, unless the key ends in ``${filename}``: then it writes only a
``starts-with`` condition, and S3 substitutes the browser's file name. So
``$``, ``{`` and ``}`` are refused in file names and folders.
"""

from __future__ import annotations

import posixpath
import secrets
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib import keys
from chalicelib.api import BadRequest
from chalicelib.settings import Settings

# Every input format's content type, with the extensions a file of it may
# have. HEIC is HEIF whose pictures are HEVC-coded (phones' photos): .heic
# and .heif name the same container, and browsers label a file by its
# extension, so each of the two types takes either.
CONTENT_TYPES: dict[str, tuple[str, ...]] = {
    "image/jpeg": (".jpg", ".jpeg"),
    "image/png": (".png",),
    "image/webp": (".webp",),
    "image/gif": (".gif",),
    "image/tiff": (".tif", ".tiff"),
    "image/bmp": (".bmp",),
    "image/heic": (".heic", ".heif"),
    "image/heif": (".heif", ".heic"),
    "image/avif": (".avif",),
}


ID_ALPHABET = string.ascii_letters + string.digits + "-_"  # base64url
ID_LENGTH = 11  # 11 * 6 = 66 random bits

# S3 replaces "${filename}" in a POST's key with the browser's file name.
NOT_IN_NAMES = frozenset("${}")


class Forbidden(PermissionError):
    pass


def random_id() -> str:
    """A fresh upload ID: 66 bits from ``secrets``, URL-safe."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


PresignPost = Callable[[str, str, dict[str, str], list[Any], int], dict[str, Any]]


class UploadsApi:
    def __init__(
        self,
        settings: Settings,
        presign_post: PresignPost,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = random_id,
    ) -> None:
        self._settings = settings
        self._presign = presign_post
        self._clock = clock
        self._new_id = new_id

    def create(self, body: Any) -> dict[str, Any]:
        s = self._settings
        if not s.uploads_enabled:
            raise Forbidden("uploads are turned off on this stage (UPLOADS_ENABLED=false)")
        if not isinstance(body, dict):
            raise BadRequest('send a JSON object: {"filename", "content_type", "folder"}')
        filename = _filename(body.get("filename"))
        content_type = _content_type(body.get("content_type"))
        stem, ext = posixpath.splitext(filename)
        suffix = ext.lower()
        if suffix not in CONTENT_TYPES[content_type]:
            raise BadRequest(
                f"a {content_type} file must end in {' or '.join(CONTENT_TYPES[content_type])}"
            )
        if suffix not in s.image_suffixes:
            raise BadRequest(
                f"this stage does not process {suffix} files (IMAGE_SUFFIXES: "
                f"{','.join(s.image_suffixes)})"
            )
        folder = _folder(body.get("folder"))
        key = f"{s.upload_prefix}{folder}{stem}-{self._new_id()}{ext}"
        if not keys.key_fits(key):
            raise BadRequest(
                "folder and filename are too long for an S3 key once a dash and the "
                f"upload's {ID_LENGTH}-character ID are added"
            )
        post = self._presign(
            s.source_bucket,
            key,
            {"Content-Type": content_type},
            [{"Content-Type": content_type}, ["content-length-range", 1, s.max_source_bytes]],
            s.url_expires,
        )
        expires = self._clock() + timedelta(seconds=s.url_expires)
        return {
            "url": post["url"],
            "fields": post["fields"],
            "key": key,
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def _filename(value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest('filename must be a string, like "cat.jpg"')
    if not 1 <= len(value) <= 255:
        raise BadRequest("filename must be a name of 1 to 255 characters")
    if "/" in value or "\\" in value or value in (".", "..") or not value.isprintable():
        raise BadRequest(
            "filename must be a plain file name, without folders or control characters"
        )
    _refuse_substitution("filename", value)
    return value


def _content_type(value: Any) -> str:
    # A type check first: a list or an object is unhashable, so no dict lookup.
    if not isinstance(value, str) or value not in CONTENT_TYPES:
        raise BadRequest(f"content_type must be one of the strings {', '.join(CONTENT_TYPES)}")
    return value


def _folder(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest('folder must be a string, like "photos/"')
    if value in ("", "/"):
        return ""
    if len(value) > keys.MAX_KEY_BYTES:
        raise BadRequest("folder is longer than an S3 key can be (1024 bytes)")
    if not value.endswith("/") or value.startswith("/"):
        raise BadRequest("folder must be a prefix ending in '/', like 'photos/'")
    parts = value.split("/")[:-1]
    if any(p in ("", ".", "..") or not p.isprintable() for p in parts):
        raise BadRequest("folder must not contain empty, '.' or '..' parts, or control characters")
    _refuse_substitution("folder", value)
    return value


def _refuse_substitution(field: str, value: str) -> None:
    if NOT_IN_NAMES.intersection(value):
        raise BadRequest(
            f"{field} must not contain '$', '{{' or '}}': S3 would replace ${{filename}} "
            "in the key with the name of the file sent, so the upload would not land on "
            "the key it was granted"
        )
