"""S3 notification records -> ``ObjectEvent``.

Keys arrive URL-encoded (``+`` for space, ``%XX`` for the rest) in every raw
record: Lambda's direct S3 event, an SQS body, an SNS envelope. They are
decoded here, exactly once. Chalice's ``S3Event.key`` is already decoded, so
handlers pass ``event.to_dict()`` rather than ``event.key``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote_plus

from chalicelib.models import EventKind, ObjectEvent

_CREATED = ("ObjectCreated:",)
_REMOVED = ("ObjectRemoved:", "LifecycleExpiration:")


class MalformedEvent(ValueError):
    """A notification that is not an S3 event record at all."""


def kind_of(event_name: str) -> EventKind | None:
    """``ObjectCreated:Put`` -> CREATED, ``ObjectRemoved:Delete`` -> REMOVED; others None."""
    name = event_name.removeprefix("s3:")
    if name.startswith(_CREATED):
        return EventKind.CREATED
    if name.startswith(_REMOVED):
        return EventKind.REMOVED
    return None


def parse_record(record: Mapping[str, Any]) -> ObjectEvent | None:
    """One raw record, or None for event types the pipeline does not handle
    (restores, replication, tagging, ACL changes...)."""
    try:
        event_name = str(record["eventName"])
        s3 = record["s3"]
        obj = s3["object"]
        bucket = str(s3["bucket"]["name"])
        raw_key = str(obj["key"])
    except (KeyError, TypeError) as exc:
        raise MalformedEvent(f"not an S3 event record: missing {exc}") from exc
    kind = kind_of(event_name)
    if kind is None:
        return None
    size = obj.get("size")
    etag = obj.get("eTag") or obj.get("etag")
    return ObjectEvent(
        bucket=bucket,
        key=unquote_plus(raw_key),
        kind=kind,
        event_name=event_name.removeprefix("s3:"),
        size=int(size) if size is not None and kind is EventKind.CREATED else None,
        etag=str(etag).strip('"') if etag else None,
        sequencer=str(obj["sequencer"]) if obj.get("sequencer") else None,
        event_time=record.get("eventTime"),
        version_id=obj.get("versionId"),
    )


def parse_notification(body: Mapping[str, Any]) -> Iterator[ObjectEvent]:
    """Every handled record of an S3 notification (``{"Records": [...]}``).

    Also accepts the notification wrapped in an SNS envelope (a queue
    subscribed to a topic) and S3's ``s3:TestEvent``, which yields nothing.
    """
    if body.get("Type") == "Notification" and "Message" in body:
        yield from parse_notification(_json_object(body["Message"]))
        return
    if body.get("Event") == "s3:TestEvent":
        return
    records = body.get("Records")
    if not isinstance(records, list):
        raise MalformedEvent("not an S3 notification: no Records list")
    for record in records:
        if isinstance(record, Mapping) and record.get("eventSource", "aws:s3") == "aws:s3":
            event = parse_record(record)
            if event is not None:
                yield event


def parse_body(text: str) -> list[ObjectEvent]:
    """An SQS message body (JSON text) -> its events."""
    return list(parse_notification(_json_object(text)))


def _json_object(text: Any) -> Mapping[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str | bytes) else text
    except ValueError as exc:
        raise MalformedEvent(f"message body is not JSON: {exc}") from exc
    if not isinstance(value, Mapping):
        raise MalformedEvent("message body is not a JSON object")
    return value
