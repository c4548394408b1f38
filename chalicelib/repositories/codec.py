"""Records <-> JSON documents, shared by the backends (both store the record
as one JSON document beside the columns or attributes they index)."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.models import ImageRecord, Rendition, Status

# Index sort keys are cut to fit DynamoDB's 1024-byte range-key limit (and a
# MySQL index): S3 keys alone may reach 1024 bytes. Keys that share their
# first ~980 bytes page in table-key order among themselves, still stably.
_SORT_BYTES = 1000


def sort_value(uploaded_at: str, key: str) -> bytes:
    """Listing order: newest first by upload time, then by key (both descending)."""
    return f"{uploaded_at}#{key}".encode()[:_SORT_BYTES]


def record_to_doc(record: ImageRecord) -> dict[str, Any]:
    doc = record.to_api()
    doc["renditions"] = {n: r.to_doc() for n, r in record.renditions.items()}
    doc["sequencer"] = record.sequencer
    doc["pending_event"] = record.pending_event
    doc["fingerprint"] = record.fingerprint
    return doc


def record_from_doc(doc: dict[str, Any]) -> ImageRecord:
    return ImageRecord(
        id=doc["id"],
        bucket=doc["bucket"],
        key=doc["key"],
        folder=doc["folder"],
        status=Status(doc["status"]),
        etag=doc["etag"],
        size_bytes=int(doc["size_bytes"]),
        uploaded_at=doc["uploaded_at"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        error=doc.get("error"),
        format=doc.get("format"),
        content_type=doc.get("content_type"),
        width=doc.get("width"),
        height=doc.get("height"),
        renditions={n: Rendition.from_dict(n, r) for n, r in doc.get("renditions", {}).items()},
        metadata=doc.get("metadata") or {},
        placeholder=doc.get("placeholder"),
        sequencer=doc.get("sequencer") or "",
        pending_event=doc.get("pending_event"),
        fingerprint=doc.get("fingerprint"),
    )


def dumps(record: ImageRecord) -> str:
    return json.dumps(record_to_doc(record), ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> ImageRecord:
    return record_from_doc(json.loads(text))
