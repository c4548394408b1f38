"""REST query logic: parameter validation, page bounds and pagination tokens.

Kept free of Chalice globals: routes in ``app.py`` pass the query parameters
in and turn ``BadRequest`` / ``NotFound`` into Chalice's error responses.
Every parameter is checked for length and character set before it is
converted or reaches a query, so bad input is a 400, never a 500.

Pagination tokens (``PageTokens``) are URL-safe base64 of a format byte, the
position after the last item (length-prefixed UTF-8 fields) and an
HMAC-SHA256 of both and of the query the token belongs to, keyed by
``Repository.token_key()``. A garbled or forged token, or one from another
query, is refused (400). The fields of a token that passes are validated
again before they reach a query: the defence should the key ever leak, and
for tokens signed by an older release.

A page of images ends early, with a ``next_token``, rather than pass
``MAX_PAGE_BYTES``: Lambda answers at most 6 MB.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chalicelib import keys
from chalicelib.models import ImageRecord, Page, Status
from chalicelib.repositories.base import ImageQuery, Repository
from chalicelib.urls import RenditionUrls

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
# What a page of images may take in the Lambda response, which is capped at
# 6 MB (6,291,456 bytes) with its headers.
MAX_PAGE_BYTES = 5 * 1024 * 1024
_IMAGE_PARAMS = {"folder", "status", "key", "limit", "next_token"}
_FOLDER_PARAMS = {"limit", "next_token"}
_MAX_TOKEN = 4096  # characters; a token this code makes has at most 1,474

_LIMIT = re.compile(r"[0-9]{1,10}")
_IMAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UPLOADED_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


class BadRequest(ValueError):
    pass


class NotFound(LookupError):
    pass


Position = tuple[str, ...]


class ImagesApi:
    """``GET /images``, ``/images/{id}`` and ``/folders`` over a repository.

    ``max_page_bytes`` bounds a page of images as the Lambda response carries
    it; tests pass a small one.
    """

    def __init__(
        self,
        repository: Repository,
        source_bucket: str,
        urls: RenditionUrls,
        max_page_bytes: int = MAX_PAGE_BYTES,
    ) -> None:
        self.repository = repository
        self._bucket = source_bucket
        self._urls = urls
        self._max_page_bytes = max_page_bytes
        # The key is read from the backend when the first token is made or read.
        self._tokens = PageTokens(repository.token_key)

    def list_images(self, params: Mapping[str, str] | None) -> dict[str, Any]:
        params = _only(params, _IMAGE_PARAMS)
        status = _status(params.get("status"))
        limit = _limit(params.get("limit"))
        folder = _folder(params.get("folder"))
        if "key" in params:
            key = params["key"]
            if not _is_key(key):
                raise BadRequest("key must be an S3 key of 1 to 1024 bytes of UTF-8")
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
        scope = images_scope(folder, status)
        after = None
        if "next_token" in params:
            after = _image_position(self._tokens.read(params["next_token"], scope, 3))
        page = self.repository.list_images(
            ImageQuery(status=status, folder=folder, limit=limit, after=after)
        )
        images, cursor = self._bounded(page)
        return {
            "images": images,
            "next_token": self._tokens.make(scope, cursor) if cursor else None,
        }

    def get_image(self, image_id: str) -> dict[str, Any]:
        if not _IMAGE_ID.fullmatch(image_id):
            raise BadRequest("image_id must be the id of a listed image ([A-Za-z0-9_-])")
        record = self.repository.get(image_id)
        if record is None:
            raise NotFound(f"no image with id {image_id}")
        return self.image(record)

    def list_folders(self, params: Mapping[str, str] | None) -> dict[str, Any]:
        params = _only(params, _FOLDER_PARAMS)
        limit = _limit(params.get("limit"))
        after = None
        if "next_token" in params:
            after = _folder_position(self._tokens.read(params["next_token"], FOLDERS_SCOPE, 1))
        page = self.repository.list_folders(limit, after)
        return {
            "folders": [f.to_api() for f in page.items],
            "next_token": self._tokens.make(FOLDERS_SCOPE, page.cursor) if page.cursor else None,
        }

    def image(self, record: ImageRecord) -> dict[str, Any]:
        """The record's REST shape, each rendition and alternate with its URL."""
        body = record.to_api()
        for name, rendition in record.renditions.items():
            shown = body["renditions"][name]
            shown["url"] = self._urls(rendition.bucket, rendition.key, rendition.etag)
            for alternate, alternate_body in zip(
                rendition.alternates, shown["alternates"], strict=True
            ):
                alternate_body["url"] = self._urls(rendition.bucket, alternate.key, alternate.etag)
        return body

    def _bounded(self, page: Page[ImageRecord]) -> tuple[list[dict[str, Any]], Position | None]:
        """The page's images that fit ``max_page_bytes`` with the token that
        would follow the last of them, and the position to continue from (the
        last image's, as the repositories make it). At least one image, so
        paging always progresses."""
        images = [self.image(r) for r in page.items]
        used = _PAGE_FRAME
        for i, (record, body) in enumerate(zip(page.items, images, strict=True)):
            used += _sent_size(_body_text(body)) + (1 if i else 0)  # "," between items
            token = PageTokens.length(_position(record)) + 4  # base64url, 2 escaped quotes
            if i and used + token > self._max_page_bytes:
                return images[:i], _position(page.items[i - 1])
        return images, page.cursor


def images_scope(folder: str | None, status: Status) -> tuple[str, ...]:
    """What an image listing's tokens are bound to: its filters (not its limit)."""
    return ("images", str(status)) if folder is None else ("images", str(status), folder)


FOLDERS_SCOPE = ("folders",)


class PageTokens:
    """Makes and reads signed page tokens.

    ``key`` gives the HMAC key; it is called once, when the first token is
    made or read (a listing that fits one page needs no key), and the answer
    kept. Safe to share between threads.
    """

    VERSION = b"\x01"
    _LABEL = b"image-pipeline page token\x00"
    _MAC_BYTES = hashlib.sha256().digest_size

    def __init__(self, key: Callable[[], bytes]) -> None:
        self._key_source = key
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def make(self, scope: Sequence[str], fields: Sequence[str]) -> str:
        body = self.VERSION + _pack(fields)
        return _b64(body + self._mac(scope, body))

    def read(self, token: str, scope: Sequence[str], size: int) -> Position:
        """The ``size`` fields of a token made for ``scope``, or BadRequest."""
        invalid = BadRequest("next_token is not a token this listing handed out")
        if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN:
            raise invalid
        if not all(c.isascii() and (c.isalnum() or c in "-_") for c in token):
            raise invalid
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise invalid from None
        # One spelling per token: base64's unused trailing bits must be zero.
        if len(blob) <= self._MAC_BYTES or blob[:1] != self.VERSION or _b64(blob) != token:
            raise invalid
        body, mac = blob[: -self._MAC_BYTES], blob[-self._MAC_BYTES :]
        if not hmac.compare_digest(mac, self._mac(scope, body)):
            raise invalid
        fields = _unpack(body[1:])
        if fields is None or len(fields) != size:
            raise invalid
        return fields

    @classmethod
    def length(cls, fields: Sequence[str]) -> int:
        """The length of the token for ``fields``, without the key."""
        packed = sum(2 + len(f.encode("utf-8", "surrogatepass")) for f in fields)
        size = len(cls.VERSION) + packed + cls._MAC_BYTES
        return (size * 4 + 2) // 3  # base64 without padding

    def _mac(self, scope: Sequence[str], body: bytes) -> bytes:
        return hmac.new(self._secret(), self._LABEL + _pack(scope) + body, "sha256").digest()

    def _secret(self) -> bytes:
        key = self._key
        if key is None:
            with self._lock:
                if self._key is None:
                    fetched = self._key_source()
                    if not isinstance(fetched, bytes) or len(fetched) < 32:
                        raise RuntimeError("the repository's token key is not 32 bytes or more")
                    self._key = fetched
                key = self._key
        return key


def _pack(fields: Sequence[str]) -> bytes:
    """Each field as a 2-byte length and its UTF-8 (compact even for keys full
    of characters that JSON would escape). Lone surrogates pass through, so
    tests can sign the bytes; ``_unpack`` refuses them."""
    out = bytearray()
    for field in fields:
        data = field.encode("utf-8", "surrogatepass")
        if len(data) > 0xFFFF:
            raise ValueError("a token field is longer than 65,535 bytes")
        out += len(data).to_bytes(2, "big") + data
    return bytes(out)


def _unpack(data: bytes) -> Position | None:
    fields: list[str] = []
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            return None
        end = at + 2 + int.from_bytes(data[at : at + 2], "big")
        if end > len(data):
            return None
        try:
            fields.append(data[at + 2 : end].decode("utf-8"))
        except UnicodeDecodeError:
            return None
        at = end
    return tuple(fields)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _position(record: ImageRecord) -> Position:
    """Where a listing continues after ``record`` (``ImageQuery.after``)."""
    return (record.uploaded_at, record.key, record.id)


def _image_position(fields: Position) -> Position:
    uploaded_at, key, image_id = fields
    if not (_UPLOADED_AT.fullmatch(uploaded_at) and _is_key(key) and _IMAGE_ID.fullmatch(image_id)):
        raise BadRequest("next_token does not hold a position in this listing")
    return fields


def _folder_position(fields: Position) -> str:
    (prefix,) = fields
    if not (_is_key(prefix) and prefix.endswith("/")):
        raise BadRequest("next_token does not hold a position in this listing")
    return prefix


def _body_text(value: Any) -> str:
    """``value`` as Chalice serialises a response body."""
    return json.dumps(value, separators=(",", ":"))


def _sent_size(text: str) -> int:
    """Bytes ``text`` (JSON made by ``_body_text``: ASCII, no control
    characters) takes in the Lambda response, which carries the body as a
    JSON string: each quote and backslash is escaped once more."""
    return len(text) + text.count('"') + text.count("\\")


_PAGE_FRAME = _sent_size('{"images":[],"next_token":}')


def _utf8_size(text: str) -> int | None:
    """Bytes of UTF-8, or None for text UTF-8 cannot hold (lone surrogates)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _is_key(text: str) -> bool:
    """1 to 1024 bytes of UTF-8, as an S3 key."""
    if not isinstance(text, str) or len(text) > keys.MAX_KEY_BYTES:
        return False
    size = _utf8_size(text)
    return size is not None and 1 <= size <= keys.MAX_KEY_BYTES


def _shown(name: str) -> str:
    return repr(name[:40]) + ("..." if len(name) > 40 else "")


def _only(params: Mapping[str, str] | None, allowed: set[str]) -> dict[str, str]:
    params = dict(params or {})
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise BadRequest(
            f"unknown parameter {_shown(unknown[0])}; allowed: {', '.join(sorted(allowed))}"
        )
    # Each parameter's own check caps its length before any conversion.
    for name, value in params.items():
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be text")
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
    # ASCII digits only ("²".isdigit() is true), and short enough for int().
    if not _LIMIT.fullmatch(value) or not 1 <= int(value) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def _folder(value: str | None) -> str | None:
    if value is None:
        return None
    if value == "/":
        return ""
    if not _is_key(value):
        raise BadRequest("folder must be a prefix of 1 to 1024 bytes of UTF-8")
    if not value.endswith("/") or value.startswith("/") or "//" in value:
        raise BadRequest("folder must be a prefix ending in '/' (like 'photos/'), or '/' for root")
    return value
