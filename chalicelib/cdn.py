"""CloudFront invalidation of deleted renditions (``CDN_DISTRIBUTION_ID``).

Without it a deleted photo's renditions stay at the CDN's edges for up to
the edge TTL (a day with ``infra/``); with it, the deletion asks CloudFront
to drop them. The paths are the ones the API hands out
(``urls.CdnUrls``): ``BASE_PATH/`` + the key percent-encoded as there
(``/`` kept) + ``?v=`` + the object's ETag. The cache key holds the query
string ``v``, and CloudFront matches an invalidation path's query string
like the rest of the path, so each path names the exact URL a browser was
given. An object without a known ETag was never handed out through the CDN
(``CdnUrls`` presigns those), so it needs no path.

One ``CreateInvalidation`` per batch (``batch()``: an S3 notification, a
folder's clean-up), else one per deletion. Its ``CallerReference`` is a hash
of what was deleted (the keys and their tombstones' sequencer and time), so
a retried event sends the same reference again and CloudFront answers with
the invalidation it already made instead of charging for a second one.

A transient failure (throttling, too many invalidations in progress, a
network fault) raises, so that Lambda or SQS retries the event: the retry
finds the tombstone, finishes what is left and sends the same request. The
S3 deletes are never undone. A failure no retry can fix (no permission, no
such distribution) is logged as an error and the deletion stands: the edge
TTL still bounds how long the renditions are served.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from chalicelib.models import ImageRecord

log = logging.getLogger("image_pipeline")

# Paths per CreateInvalidation: CloudFront keeps at most 3,000 paths of a
# distribution in progress, so a larger batch goes out in several requests.
MAX_PATHS = 1000
# CloudFront error codes a later retry may get past.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyInvalidationsInProgress",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
    }
)


class CloudFrontClient(Protocol):
    def create_invalidation(
        self, *, DistributionId: str, InvalidationBatch: Mapping[str, Any]
    ) -> Mapping[str, Any]: ...


def object_path(key: str, etag: str, base_path: str = "") -> str:
    """The path (and query) of the URL ``CdnUrls`` gives for ``key`` at ``etag``."""
    return f"{base_path}/{quote(key, safe='/')}?v={quote(etag, safe='')}"


def record_paths(record: ImageRecord, base_path: str = "") -> list[str]:
    """Every URL path of ``record``'s renditions and alternates, in record order."""
    paths = [
        object_path(key, etag, base_path)
        for r in record.renditions.values()
        for key, etag in [(r.key, r.etag), *((a.key, a.etag) for a in r.alternates)]
        if etag is not None
    ]
    return list(dict.fromkeys(paths))


def caller_reference(parts: Iterable[str]) -> str:
    """The same for the same deletions, whatever their order."""
    digest = hashlib.sha256("\n".join(sorted(set(parts))).encode()).hexdigest()
    return f"image-pipeline-{digest[:40]}"


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return code in TRANSIENT_CODES or status >= 500
    return False


@dataclass
class _Batch:
    paths: dict[str, None] = field(default_factory=dict)  # ordered, each once
    parts: list[str] = field(default_factory=list)


_OPEN: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("cdn_batch", default=None)


class Invalidator:
    """Invalidates deleted renditions at one CloudFront distribution.

    ``client`` makes the CloudFront client; it is called once, on the first
    invalidation, so a container that deletes nothing never builds one.
    """

    def __init__(
        self,
        distribution_id: str,
        client: Callable[[], CloudFrontClient],
        base_url: str = "",
    ) -> None:
        self.distribution_id = distribution_id
        self._client = functools.cache(client)
        # RENDITION_BASE_URL may carry a path: the viewer's paths start with it.
        self.base_path = urlsplit(base_url).path.rstrip("/")

    def paths(self, record: ImageRecord) -> list[str]:
        return record_paths(record, self.base_path)

    def path(self, key: str, etag: str) -> str:
        return object_path(key, etag, self.base_path)

    def deleted(self, record: ImageRecord, reference: str) -> None:
        """``record``'s renditions were deleted (``reference``: that deletion,
        the same on a retry): invalidate them now, or with the open batch."""
        self.request(self.paths(record), [reference])

    def request(self, paths: Iterable[str], parts: Iterable[str]) -> None:
        paths = list(paths)
        if not paths:
            return
        batch = _OPEN.get()
        if batch is None:
            self.send(paths, caller_reference(parts))
            return
        batch.paths.update(dict.fromkeys(paths))
        batch.parts.extend(parts)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Collect the invalidations requested inside the block (in this
        thread's context) and send them in one request when it ends, also
        when it raises: what was deleted stays deleted. Nested: the outer
        batch sends."""
        if _OPEN.get() is not None:
            yield
            return
        batch = _Batch()
        token = _OPEN.set(batch)
        try:
            yield
        except BaseException:
            _OPEN.reset(token)
            try:
                self._flush(batch)
            except Exception:
                log.exception("could not invalidate the renditions deleted before a failure")
            raise
        _OPEN.reset(token)
        self._flush(batch)

    def _flush(self, batch: _Batch) -> None:
        if batch.paths:
            self.send(list(batch.paths), caller_reference(batch.parts))

    def send(self, paths: list[str], reference: str) -> None:
        """One CreateInvalidation per ``MAX_PATHS`` paths; raises on a
        transient failure, logs any other."""
        chunks = [paths[i : i + MAX_PATHS] for i in range(0, len(paths), MAX_PATHS)]
        for index, chunk in enumerate(chunks):
            ref = reference if len(chunks) == 1 else f"{reference}-{index}"
            try:
                self._client().create_invalidation(
                    DistributionId=self.distribution_id,
                    InvalidationBatch={
                        "Paths": {"Quantity": len(chunk), "Items": chunk},
                        "CallerReference": ref,
                    },
                )
            except (ClientError, BotoCoreError) as exc:
                if is_transient(exc):
                    raise
                log.error(
                    "CloudFront did not invalidate %d deleted rendition paths of %s (%s); "
                    "edges may serve them until the edge TTL ends",
                    len(chunk),
                    self.distribution_id,
                    exc,
                )
