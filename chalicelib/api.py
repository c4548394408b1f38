"""REST query logic: parameter validation and pagination tokens.

Kept free of Chalice globals: routes in ``app.py`` pass the query parameters
in and turn ``BadRequest`` / ``NotFound`` into Chalice's error responses.

Pagination tokens are URL-safe base64 of a small JSON document holding the
position after the last item and a digest of the query they belong to, with a
checksum. A garbled token, or one from another query, is refused (400). Tokens
are not secret: a hand-made one can only start a listing at some position,
and every position is reachable by paging anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib import keys
from chalicelib.models import ImageRecord, Page, Status
from chalicelib.repositories.base import ImageQuery, Repository

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
_IMAGE_PARAMS = {"folder", "status", "key", "limit", "next_token"}
_FOLDER_PARAMS = {"limit", "next_token"}
_MAX_TOKEN = 4096


class BadRequest(ValueError):
    pass


class NotFound(LookupError):
    pass


Presigner = Callable[[str, str], str]


class ImagesApi:
    def __init__(self, repository: Repository, source_bucket: str, presign: Presigner) -> None:
        self.repository = repository
        self._bucket = source_bucket
        self._presign = presign

    def list_images(self, params: Mapping[str, str] | None) -> dict[str, Any]:
        params = _only(params, _IMAGE_PARAMS)
        status = _status(params.get("status"))
        limit = _limit(params.get("limit"))
        folder = _folder(params.get("folder"))
        if "key" in params:
            key = params["key"]
            if not key or len(key.encode()) > keys.MAX_KEY_BYTES:
                raise BadRequest("key must be an S3 key of 1 to 1024 bytes")
            if "next_token" in params:
                raise BadRequest("next_token does not go with key: a key lists at most one image")
            record = self.repository.get(keys.image_id(self._bucket, key))
            matches = (
                record is not None
                and record.status is status
                and (folder is None or record.folder == folder)
            )
            images = [self.image(record)] if matches and record is not None else []
            return {"images": images, "next_token": None}
        digest = _digest("images", folder, str(status))
        after = None
        if "next_token" in params:
            after = _token(params["next_token"], digest, 3)
        page = self.repository.list_images(
            ImageQuery(status=status, folder=folder, limit=limit, after=after)
        )
        return {
            "images": [self.image(r) for r in page.items],
            "next_token": _make_token(page, digest),
        }

    def get_image(self, image_id: str) -> dict[str, Any]:
        if not image_id or len(image_id) > 64 or not _urlsafe(image_id):
            raise BadRequest("image_id must be the id of a listed image ([A-Za-z0-9_-])")
        record = self.repository.get(image_id)
        if record is None:
            raise NotFound(f"no image with id {image_id}")
        return self.image(record)

    def list_folders(self, params: Mapping[str, str] | None) -> dict[str, Any]:
        params = _only(params, _FOLDER_PARAMS)
        limit = _limit(params.get("limit"))
        digest = _digest("folders")
        after = _token(params["next_token"], digest, 1)[0] if "next_token" in params else None
        page = self.repository.list_folders(limit, after)
        return {
            "folders": [f.to_api() for f in page.items],
            "next_token": _make_token(page, digest),
        }

    def image(self, record: ImageRecord) -> dict[str, Any]:
        """The record's REST shape, each rendition with a presigned GET URL."""
        body = record.to_api()
        for name, rendition in record.renditions.items():
            body["renditions"][name]["url"] = self._presign(rendition.bucket, rendition.key)
        return body


def _only(params: Mapping[str, str] | None, allowed: set[str]) -> dict[str, str]:
    params = dict(params or {})
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    return params


def _status(value: str | None) -> Status:
    if value is None:
        return Status.PROCESSED
    try:
        return Status(value)
    except ValueError:
        raise BadRequest("status must be 'processed' or 'failed'") from None


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def _folder(value: str | None) -> str | None:
    if value is None:
        return None
    if value == "/":
        return ""
    if not value.endswith("/") or value.startswith("/") or "//" in value:
        raise BadRequest("folder must be a prefix ending in '/' (like 'photos/'), or '/' for root")
    if len(value.encode()) > keys.MAX_KEY_BYTES:
        raise BadRequest("folder is longer than an S3 key can be")
    return value


def _urlsafe(text: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in "-_") for c in text)


def _digest(*parts: str | None) -> str:
    text = "\x00".join("\x01" if p is None else p for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _checksum(payload: bytes) -> str:
    return hashlib.sha256(b"image-pipeline-token\x00" + payload).hexdigest()[:8]


def _make_token(page: Page[Any], digest: str) -> str | None:
    if page.cursor is None:
        return None
    payload = json.dumps([digest, *page.cursor], ensure_ascii=False, separators=(",", ":"))
    raw = payload.encode()
    return base64.urlsafe_b64encode(raw + b"." + _checksum(raw).encode()).decode().rstrip("=")


def _token(token: str, digest: str, size: int) -> tuple[str, ...]:
    """Decode a token made by ``_make_token`` for this query, or raise BadRequest."""
    invalid = BadRequest("next_token is not a token this listing handed out")
    if not token or len(token) > _MAX_TOKEN or not _urlsafe(token):
        raise invalid
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        raw, _, check = blob.rpartition(b".")
        if check.decode() != _checksum(raw):
            raise invalid
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid from None
    if (
        not isinstance(value, list)
        or len(value) != size + 1
        or not all(isinstance(v, str) and v for v in value)
        or value[0] != digest
    ):
        raise invalid
    return tuple(value[1:])
