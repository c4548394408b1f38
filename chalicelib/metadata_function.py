"""Metadata extracted in a child Lambda function (``METADATA_FUNCTION``).

The child, ``extract_metadata``, takes ``{"bucket", "key", "etag"?}``, reads
the object (with If-Match when an ETag is given) and returns one flat dict:
``format``, ``width``, ``height`` and the record's metadata fields. A file no
retry can fix answers ``{"error": reason, "permanent": true}``, an object that
is gone or changed ``{"error": ..., "gone": true}``; anything else is a
function error, which the caller raises so the event is retried.

Only names cross the wire, never image bytes, so requests and answers stay
far below Lambda's 6 MB synchronous payload limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.bounds import bounded_metadata
from chalicelib.imaging import ImageRejected
from chalicelib.sandbox import Imaging, time_budget
from chalicelib.settings import Settings
from chalicelib.storage import ObjectGone, S3Storage, TooLarge

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

_SHAPE = ("format", "width", "height")


def extract(
    storage: S3Storage,
    settings: Settings,
    request: dict[str, Any],
    imaging: Imaging,
    deadline: float | None = None,
) -> dict[str, Any]:
    """The child function's work; the headers are read by ``imaging``, within
    ``PROCESSING_TIMEOUT`` and the invocation's ``deadline``."""
    try:
        bucket, key = str(request["bucket"]), str(request["key"])
    except (KeyError, TypeError):
        return {"error": 'the request needs "bucket" and "key"', "permanent": True}
    try:
        source = storage.read(
            bucket, key, etag=request.get("etag"), max_bytes=settings.max_source_bytes
        )
        fmt, width, height, metadata = imaging.metadata(
            source.data,
            settings.max_source_pixels,
            time_budget(settings.processing_timeout, deadline),
        )
    except ObjectGone:
        return {"error": f"s3://{bucket}/{key} is gone or has another ETag", "gone": True}
    except (ImageRejected, TooLarge) as exc:
        return {"error": str(exc), "permanent": True}
    return {"format": fmt, "width": width, "height": height, **metadata}


@dataclass(frozen=True)
class Extracted:
    format: str
    width: int
    height: int
    metadata: dict[str, Any]


class RemoteMetadataError(RuntimeError):
    """The child function failed in a way a retry may fix."""


Invoke = Callable[[dict[str, Any]], dict[str, Any]]


class RemoteMetadata:
    """Asks the child function; its answers become what in-process extraction
    would have given or raised."""

    def __init__(self, invoke: Invoke) -> None:
        self._invoke = invoke

    def fetch(self, bucket: str, key: str, etag: str | None) -> Extracted:
        answer = self._invoke({"bucket": bucket, "key": key, "etag": etag})
        if answer.get("gone"):
            raise ObjectGone(key)
        if answer.get("permanent"):
            raise ImageRejected(str(answer.get("error")))
        if "error" in answer or not all(k in answer for k in _SHAPE):
            raise RemoteMetadataError(f"metadata function answered {answer!r:.300}")
        # Bounded again: the child may run another release of this code.
        metadata = bounded_metadata({k: v for k, v in answer.items() if k not in _SHAPE})
        return Extracted(
            str(answer["format"]), int(answer["width"]), int(answer["height"]), metadata
        )


def lambda_invoker(client: LambdaClient, function: str) -> Invoke:
    """Invoke ``function`` synchronously (RequestResponse) through the Lambda API."""

    def invoke(payload: dict[str, Any]) -> dict[str, Any]:
        response = client.invoke(
            FunctionName=function,
            InvocationType="RequestResponse",
            Payload=json.dumps(payload).encode(),
        )
        body = response["Payload"].read()
        if response.get("FunctionError"):
            raise RemoteMetadataError(f"{function} failed: {body[:500]!r}")
        value = json.loads(body)
        if not isinstance(value, dict):
            raise RemoteMetadataError(f"{function} answered {body[:300]!r}")
        return value

    return invoke
