"""The URLs a listing gives for renditions and alternates.

Browsers and CDNs cache by URL, so a URL should stay the same exactly as
long as the bytes behind it do:

- ``CdnUrls`` (``RENDITION_BASE_URL`` set): ``BASE/`` + percent-encoded key
  + ``?v=`` + the object's own ETag, unsigned. A rewritten rendition has a
  new ETag, so a new URL, and the CDN may let browsers keep each URL for a
  year. No presigning at all.
- ``ReusedPresignedUrls`` (unset): presigned GETs, each kept per container
  for the object's ETag and handed out again while at least half of its life
  remains, so a warm container's repeat listings give identical URLs and the
  browser's cache works. A new container or rotated credentials sign anew.

An object whose ETag the record does not know (records written before ETags
were kept) gets a fresh presigned URL every time: caching one would show the
old picture after the key is rewritten.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

# Entries a container keeps: a URL is ~600 bytes, so about 2.5 MB, enough
# for the pages one container serves between rendition rewrites.
MAX_CACHED_URLS = 4096

Presigner = Callable[[str, str], str]  # (bucket, key) -> presigned GET URL


class RenditionUrls(Protocol):
    def __call__(self, bucket: str, key: str, etag: str | None) -> str: ...


class CdnUrls:
    """Unsigned URLs under a CDN origin that serves ``DEST_BUCKET``."""

    def __init__(self, base_url: str, presign: Presigner) -> None:
        self._base = base_url.rstrip("/")
        self._presign = presign  # for objects of unknown ETag only

    def __call__(self, bucket: str, key: str, etag: str | None) -> str:
        if etag is None:
            return self._presign(bucket, key)
        return f"{self._base}/{quote(key, safe='/')}?v={quote(etag, safe='')}"


class ReusedPresignedUrls:
    """Presigned GETs reused while at least half of their life remains.

    Thread-safe: the local API serves requests on threads. Bounded: the
    least recently used URLs go first past ``max_entries``.
    """

    def __init__(
        self,
        presign: Presigner,
        expires: int,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_CACHED_URLS,
    ) -> None:
        self._presign = presign
        self._reuse_for = expires / 2
        self._clock = clock
        self._max = max_entries
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()

    def __call__(self, bucket: str, key: str, etag: str | None) -> str:
        if etag is None:
            return self._presign(bucket, key)
        entry = (bucket, key, etag)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(entry)
            if cached is not None and now - cached[1] < self._reuse_for:
                self._cache.move_to_end(entry)
                return cached[0]
        url = self._presign(bucket, key)  # outside the lock: signing takes ~0.1 ms
        with self._lock:
            self._cache[entry] = (url, now)
            self._cache.move_to_end(entry)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return url
