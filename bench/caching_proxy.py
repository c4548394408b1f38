"""A caching proxy standing in for the CDN in front of ``DEST_BUCKET``.

With ``RENDITION_BASE_URL=http://HOST:PORT`` the API hands out
``BASE/KEY?v=ETAG``; this server answers ``GET /KEY?v=ETAG`` from its cache,
or fetches ``KEY`` from the bucket once, with a signed GetObject as
CloudFront's origin access control does (the buckets block public access, so
an unsigned GET is refused, by moto's server too), and answers as the
CloudFront distribution's response-headers policy does:
``Cache-Control: public, max-age=31536000, immutable``. The cache key is the
path and ``v``: a rewritten rendition has a new ETag, so a new URL and a new
entry. A request without ``v`` is passed through uncached (``no-cache``).

Thread-safe (browsers open several connections, each served on a thread of
its own) and bounded: at most ``max_bytes`` of bodies, least recently used
first out, and no single body over ``max_object`` is kept.

    .venv/bin/python -m bench.caching_proxy [--endpoint http://127.0.0.1:4567]
        [--bucket local-renditions] [--port 8100]

(the local stack's emulator and bucket by default; credentials from boto3's
environment, else the local stack's), then ``make dev`` with
``RENDITION_BASE_URL=http://127.0.0.1:8100`` in its environment.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

IMMUTABLE = "public, max-age=31536000, immutable"
MAX_BYTES = 64 * 1024 * 1024
MAX_OBJECT = 8 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    body: bytes
    content_type: str
    etag: str


Origin = Callable[[str], tuple[int, Entry]]  # object key -> (HTTP status, answer)


def s3_origin(s3: S3Client, bucket: str) -> Origin:
    """Objects of ``bucket`` through a signed GetObject (boto3 clients are thread-safe)."""

    def fetch(key: str) -> tuple[int, Entry]:
        try:
            response = s3.get_object(Bucket=bucket, Key=key)
        except ClientError as error:
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 502))
            return status, Entry(str(error).encode(), "text/plain", "")
        body = response["Body"].read()
        return 200, Entry(body, response.get("ContentType", "application/octet-stream"),
                          response.get("ETag", ""))  # fmt: skip

    return fetch


class LruBytes:
    """A thread-safe LRU map whose values' bodies total at most ``max_bytes``."""

    def __init__(self, max_bytes: int = MAX_BYTES, max_object: int = MAX_OBJECT) -> None:
        self.max_bytes = max_bytes
        self.max_object = min(max_object, max_bytes)
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._size = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str]) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str], entry: Entry) -> None:
        if len(entry.body) > self.max_object:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= len(old.body)
            self._entries[key] = entry
            self._size += len(entry.body)
            while self._size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted.body)

    @property
    def size(self) -> int:
        with self._lock:
            return self._size

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class CachingProxy(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, origin: Origin, address: tuple[str, int], cache: LruBytes) -> None:
        self.origin = origin
        self.cache = cache
        self.requests = 0  # every request a client made
        self.upstream_requests = 0  # those that went to the origin
        self._count = threading.Lock()
        super().__init__(address, Handler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def counted(self) -> None:
        with self._count:
            self.requests += 1

    def fetch(self, path: str) -> tuple[int, Entry]:
        """(status, answer) of the object a request's (percent-encoded) path names."""
        with self._count:
            self.upstream_requests += 1
        return self.origin(unquote(path.lstrip("/")))


class Handler(BaseHTTPRequestHandler):
    server: CachingProxy
    protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def _serve(self, send_body: bool) -> None:
        self.server.counted()
        parts = urlsplit(self.path)
        version = (parse_qs(parts.query).get("v") or [""])[0]
        key = (parts.path, version)
        entry = self.server.cache.get(key) if version else None
        status = 200
        if entry is None:
            try:
                status, entry = self.server.fetch(parts.path)
            except Exception as exc:  # the origin is unreachable or went away
                self._answer(502, Entry(f"origin: {exc}".encode(), "text/plain", ""), "no-store")
                return
            if status == 200 and version:
                self.server.cache.put(key, entry)
        if status != 200:
            self._answer(status, entry, "no-store", send_body)
        elif not version:
            self._answer(200, entry, "no-cache", send_body)
        elif entry.etag and self.headers.get("If-None-Match") == entry.etag:
            self._answer(304, Entry(b"", entry.content_type, entry.etag), IMMUTABLE, False)
        else:
            self._answer(200, entry, IMMUTABLE, send_body)

    def _answer(self, status: int, entry: Entry, cache: str, send_body: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", entry.content_type)
        self.send_header("Content-Length", str(0 if status == 304 else len(entry.body)))
        self.send_header("Cache-Control", cache)
        if entry.etag:
            self.send_header("ETag", entry.etag)
        self.end_headers()
        if send_body and status != 304:
            self.wfile.write(entry.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: a page of thumbnails is dozens of requests


@contextmanager
def caching_proxy(
    origin: Origin,
    host: str = "127.0.0.1",
    port: int = 0,
    max_bytes: int = MAX_BYTES,
    max_object: int = MAX_OBJECT,
) -> Iterator[CachingProxy]:
    """The proxy serving on ``host:port`` (0: any free port) until the block ends."""
    server = CachingProxy(origin, (host, port), LruBytes(max_bytes, max_object))
    thread = threading.Thread(target=server.serve_forever, name="caching-proxy", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="http://127.0.0.1:4567", help="the S3 endpoint")
    parser.add_argument("--bucket", default="local-renditions", help="DEST_BUCKET")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--max-mb", type=int, default=MAX_BYTES // 2**20)
    args = parser.parse_args()
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client(
        "s3", endpoint_url=args.endpoint, region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
    )  # fmt: skip
    origin = s3_origin(s3, args.bucket)
    with caching_proxy(origin, args.host, args.port, args.max_mb * 2**20) as proxy:
        print(f"RENDITION_BASE_URL={proxy.base_url} (Ctrl-C stops it)")
        with suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
