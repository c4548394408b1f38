"""S3 notification records -> ``ObjectEvent``.

Keys arrive URL-encoded (``+`` for space, ``%XX`` for the rest) in every raw
record: Lambda's direct S3 event, an SQS body, an SNS envelope. They are
decoded here, exactly once. Chalice's ``S3Event.key`` is already decoded, so
handlers pass ``event.to_dict()`` rather than ``event.key``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from chalicelib import keys
from chalicelib.models import EventKind, ObjectEvent

if TYPE_CHECKING:
    from chalicelib.settings import Settings

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


def ignore_reason(event: ObjectEvent, settings: Settings) -> str | None:
    """Why ``event`` is not for the pipeline of ``settings`` (another bucket,
    a rendition, a suffix it does not handle), or None if it is."""
    if event.bucket != settings.source_bucket:
        return f"not the source bucket {settings.source_bucket}"
    if event.key.startswith(settings.rendition_prefix):
        return f"under RENDITION_PREFIX {settings.rendition_prefix}"
    if not event.is_folder and not keys.has_suffix(event.key, settings.image_suffixes):
        return "suffix not in IMAGE_SUFFIXES"
    return None


def sources(found: Iterable[ObjectEvent], settings: Settings) -> int:
    """How many of the events are uploads the pipeline of ``settings`` may
    decode (unless the stored state makes one stale or a duplicate): what an
    invocation starts imaging workers for before it builds its pipeline."""
    return sum(
        1
        for e in found
        if e.kind is EventKind.CREATED and not e.is_folder and ignore_reason(e, settings) is None
    )
