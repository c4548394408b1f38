"""S3 reads, writes and presigned URLs (no image maths here)."""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from chalicelib import keys

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Rendition keys are overwritten in place when their source is re-uploaded, so
# caches must not serve a stored copy without asking: "no-cache" lets browsers
# and CDNs keep it but revalidate with the ETag each time (a cheap 304), and a
# changed rendition is never shown stale. Its presigned URLs differ per request
# anyway, so a long max-age would buy little.
RENDITION_CACHE_CONTROL = "no-cache"


@functools.cache
def _xml_safe() -> re.Pattern[str]:
    """Characters XML 1.0 allows: what a DeleteObjects request body can carry
    (compiled when first needed: about 3 ms, which a cold start need not pay)."""
    return re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


_MISSING = {"404", "NoSuchKey", "NotFound"}
_CHANGED = {"412", "PreconditionFailed"}


class ObjectGone(Exception):
    """The object is missing, or no longer the version the event was about."""


# Storage classes whose objects S3 serves (GET, copy) only while a restored
# copy exists: RestoreObject makes one for some days. GLACIER_IR, STANDARD_IA
# and INTELLIGENT_TIERING (whose archive tiers are opt-in, and never turned on
# here) answer a GET as STANDARD does.
RESTORE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
# RestoreObject's retrieval tiers that both classes offer (Expedited is
# GLACIER-only and priced for single urgent objects).
RestoreTier = Literal["Bulk", "Standard"]


class Archived(Exception):
    """The object is in an archive storage class and must be restored first."""

    # In every such message: how ``backfill --only-missing`` tells a failure
    # that a restore can mend from one that would fail again.
    MARK = "cannot be read until it is restored"

    def __init__(self, key: str, storage_class: str = "") -> None:
        self.storage_class = storage_class
        where = storage_class or "an archive storage class (GLACIER or DEEP_ARCHIVE)"
        super().__init__(
            f"{key} is archived in {where} and {self.MARK}: restore it "
            "(manage.py backfill --restore DAYS), then run the backfill again; "
            "or upload it again"
        )

    @classmethod
    def describes(cls, error: str | None) -> bool:
        """Whether a record's ``error`` is this one (a restore may mend it)."""
        return bool(error) and cls.MARK in str(error)


class RestoreState(enum.StrEnum):
    """Whether an object can be read now, as HEAD (or RestoreObject) tells."""

    READABLE = "readable"  # any class but an archive one, or a restored copy exists
    ARCHIVED = "archived"  # GLACIER or DEEP_ARCHIVE, no restored copy, none on the way
    RESTORING = "restoring"  # a restore is in progress
    GONE = "gone"


def restore_state(head: Any) -> RestoreState:
    """The state a HeadObject answer describes: its ``StorageClass`` (absent
    for STANDARD) and ``Restore`` (``ongoing-request="true"`` while a restore
    runs, ``"false"`` plus an expiry date once the copy is there)."""
    if head.get("StorageClass") not in RESTORE_CLASSES:
        return RestoreState.READABLE
    restore = str(head.get("Restore") or "")
    if 'ongoing-request="false"' in restore:
        return RestoreState.READABLE
    if 'ongoing-request="true"' in restore:
        return RestoreState.RESTORING
    return RestoreState.ARCHIVED


class TooLarge(Exception):
    """The object is larger than MAX_SOURCE_BYTES: it is not downloaded."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        super().__init__(
            f"file is {size:,} bytes, over MAX_SOURCE_BYTES={limit:,}; "
            "upload a smaller file or raise the limit"
        )


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class SourceObject:
    data: bytes
    info: ObjectInfo


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class S3Storage:
    def __init__(self, client: S3Client) -> None:
        self._s3 = client

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        response = self._head(bucket, key)
        if response is None:
            return None
        return ObjectInfo(
            size=response["ContentLength"],
            etag=response["ETag"].strip('"'),
            last_modified=response["LastModified"],
        )

    def _head(self, bucket: str, key: str) -> Any:
        """HeadObject's answer, or None when the object is missing."""
        try:
            return self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise

    def restore_state(self, bucket: str, key: str) -> RestoreState:
        """Whether the object can be read now (one HEAD)."""
        response = self._head(bucket, key)
        return RestoreState.GONE if response is None else restore_state(response)

    def request_restore(self, bucket: str, key: str, days: int, tier: RestoreTier) -> RestoreState:
        """Ask S3 for a readable copy of an archived object for ``days`` days,
        at retrieval ``tier`` (``Bulk``, ``Standard``); idempotent: a restore
        already in progress is not an error. Returns the state it leaves:
        RESTORING (accepted, or already on the way), READABLE (a restored copy
        exists, its expiry now ``days`` away; or the object is no longer
        archived), GONE."""
        try:
            response = self._s3.restore_object(
                Bucket=bucket,
                Key=key,
                RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}},
            )
        except ClientError as exc:
            code = _code(exc)
            if code == "RestoreAlreadyInProgress":
                return RestoreState.RESTORING
            if code == "InvalidObjectState":  # not (or no longer) in an archive class
                return RestoreState.READABLE
            if code in _MISSING:
                return RestoreState.GONE
            raise
        # 202: the restore starts; 200: a restored copy was there already.
        status = response["ResponseMetadata"]["HTTPStatusCode"]
        return RestoreState.READABLE if status == 200 else RestoreState.RESTORING

    def read(self, bucket: str, key: str, *, etag: str | None, max_bytes: int) -> SourceObject:
        """Download the object, if it is still the version ``etag`` names.

        Raises ``ObjectGone`` when it is missing or has changed, ``TooLarge``
        before reading a body over ``max_bytes``, ``Archived`` when it is in
        an archive class (GLACIER, DEEP_ARCHIVE) and not restored.
        """
        args = {"Bucket": bucket, "Key": key}
        if etag:
            args["IfMatch"] = etag
        try:
            response = self._s3.get_object(**args)  # type: ignore[arg-type]
        except ClientError as exc:
            if _code(exc) in _MISSING | _CHANGED:
                raise ObjectGone(key) from exc
            if _code(exc) == "InvalidObjectState":
                error = exc.response.get("Error", {})
                raise Archived(key, str(error.get("StorageClass", ""))) from exc
            raise
        body = response["Body"]
        size = response["ContentLength"]
        if size > max_bytes:
            body.close()
            raise TooLarge(size, max_bytes)
        data = body.read(max_bytes + 1)
        body.close()
        if len(data) > max_bytes:
            raise TooLarge(len(data), max_bytes)
        info = ObjectInfo(
            size=len(data),
            etag=response["ETag"].strip('"'),
            last_modified=response["LastModified"],
        )
        return SourceObject(data, info)

    def write_rendition(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str,
        source_key: str,
        source_etag: str,
    ) -> str:
        """Write a rendition (or alternate); its own ETag (no quotes)."""
        response = self._s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            CacheControl=RENDITION_CACHE_CONTROL,
            Metadata={
                "source-key": keys.metadata_value(source_key),
                "source-etag": source_etag,
            },
        )
        return str(response["ETag"]).strip('"')

    def rendition_source(self, bucket: str, key: str) -> tuple[str, str] | None:
        """(source key, ETag) of a rendition: the source its ``source-key``
        metadata names (as ``write_rendition`` wrote it); None when the object
        is missing or carries no such metadata."""
        response = self._head(bucket, key)
        value = None if response is None else response.get("Metadata", {}).get("source-key")
        if response is None or value is None:
            return None
        return keys.metadata_text(value), response["ETag"].strip('"')

    def delete_if_unchanged(self, bucket: str, key: str, etag: str) -> bool:
        """Delete the object if it still has ``etag`` (S3's conditional
        DeleteObject); False when it is gone or was written since."""
        try:
            self._s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
        except ClientError as exc:
            if _code(exc) in _MISSING | _CHANGED:
                return False
            raise
        return True

    def delete(self, bucket: str, object_keys: Iterable[str]) -> None:
        """Delete these objects (missing ones are fine); raise if any delete failed.

        DeleteObjects takes an XML body, and XML 1.0 cannot carry some control
        characters that S3 keys may hold: such keys are deleted one by one.
        """
        batch, xml_safe = sorted(set(object_keys)), _xml_safe()
        for key in [k for k in batch if not xml_safe.fullmatch(k)]:
            self._s3.delete_object(Bucket=bucket, Key=key)
        batch = [k for k in batch if xml_safe.fullmatch(k)]
        for start in range(0, len(batch), 1000):
            chunk = batch[start : start + 1000]
            response = self._s3.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
            )
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise RuntimeError(
                    f"could not delete {len(errors)} object(s) from {bucket}, "
                    f"first {first.get('Key')!r}: {first.get('Code')} {first.get('Message')}"
                )

    def presigned_post(
        self, bucket: str, key: str, fields: dict[str, str], conditions: list[Any], expires: int
    ) -> dict[str, Any]:
        """A browser form upload that S3 accepts only within ``conditions``."""
        return dict(
            self._s3.generate_presigned_post(
                bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires
            )
        )

    def presigned_get(self, bucket: str, key: str, expires: int) -> str:
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
        )
