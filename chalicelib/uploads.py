"""``POST /uploads``: presigned S3 POSTs for the gallery's upload form.

The policy S3 enforces: exactly the key handed out (under ``UPLOAD_PREFIX``),
exactly the declared image content type, and 1 byte to ``MAX_SOURCE_BYTES``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib import keys
from chalicelib.api import BadRequest
from chalicelib.settings import Settings

CONTENT_TYPES: dict[str, tuple[str, ...]] = {
    "image/jpeg": (".jpg", ".jpeg"),
    "image/png": (".png",),
    "image/webp": (".webp",),
    "image/gif": (".gif",),
    "image/tiff": (".tif", ".tiff"),
    "image/bmp": (".bmp",),
}


class Forbidden(PermissionError):
    pass


PresignPost = Callable[[str, str, dict[str, str], list[Any], int], dict[str, Any]]


class UploadsApi:
    def __init__(
        self,
        settings: Settings,
        presign_post: PresignPost,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._presign = presign_post
        self._clock = clock

    def create(self, body: Any) -> dict[str, Any]:
        s = self._settings
        if not s.uploads_enabled:
            raise Forbidden("uploads are turned off on this stage (UPLOADS_ENABLED=false)")
        if not isinstance(body, dict):
            raise BadRequest('send a JSON object: {"filename", "content_type", "folder"}')
        filename = _filename(body.get("filename"))
        content_type = _content_type(body.get("content_type"))
        suffix = posixpath.splitext(filename)[1].lower()
        if suffix not in CONTENT_TYPES[content_type] or suffix not in s.image_suffixes:
            raise BadRequest(
                f"a {content_type} file must end in {' or '.join(CONTENT_TYPES[content_type])}"
            )
        key = s.upload_prefix + _folder(body.get("folder")) + filename
        if not keys.key_fits(key):
            raise BadRequest("folder and filename are too long for an S3 key")
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
    return value
