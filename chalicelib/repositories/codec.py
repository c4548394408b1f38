"""Records <-> JSON documents, shared by the backends (both store the record
as one JSON document beside the columns or attributes they index)."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.models import ImageRecord, Rendition, Status


def record_to_doc(record: ImageRecord) -> dict[str, Any]:
    doc = record.to_api()
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
        sequencer=doc.get("sequencer") or "",
        pending_event=doc.get("pending_event"),
        fingerprint=doc.get("fingerprint"),
    )


def dumps(record: ImageRecord) -> str:
    return json.dumps(record_to_doc(record), ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> ImageRecord:
    return record_from_doc(json.loads(text))
