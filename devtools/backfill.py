"""``manage.py backfill``: (re)process what is already in the source bucket.

Events made here carry the listed ETag and no sequencer, so the delivery rules
keep a backfill that races a real delete or re-upload from resurrecting or
regressing anything: the object is read with If-Match, and a stored state
that a sequenced event wrote wins unless it is the same content.
"""

from __future__ import annotations

import json
import posixpath
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tqdm import tqdm

from chalicelib import keys
from chalicelib.models import EventKind, ObjectEvent, Status
from chalicelib.pipeline import Pipeline
from chalicelib.repositories.base import ImageQuery, Repository
from chalicelib.settings import Settings
from chalicelib.storage import (
    RESTORE_CLASSES,
    Archived,
    RestoreState,
    RestoreTier,
    S3Storage,
    iso,
)

# How long a restore takes, by tier (AWS's figures, both archive classes).
RESTORE_HOURS = {
    "Bulk": "in up to 12 hours from GLACIER, 48 from DEEP_ARCHIVE",
    "Standard": "in up to 5 hours from GLACIER, 12 from DEEP_ARCHIVE",
}

# Renditions younger than this may belong to an upload whose record is not
# saved yet (renditions are written first): prune leaves them alone.
PRUNE_GRACE = timedelta(minutes=15)


@dataclass
class Summary:
    processed: int = 0
    failed: int = 0
    skipped: int = 0  # already processed with the current settings (--only-missing)
    unchanged: int = 0  # the pipeline found nothing to do (stale, superseded, ...)
    queued: int = 0
    pruned: int = 0
    # Objects to read that sit in GLACIER or DEEP_ARCHIVE, not restored: left
    # out (the pipeline could only fail them), with their classes.
    archived: int = 0
    archived_classes: set[str] = field(default_factory=set)
    restore_requested: int = 0  # --restore: restores this run asked for
    restoring: int = 0  # restores already in progress
    restore_tier: str = ""
    seconds: float = 0.0
    interrupted: bool = False
    actions: list[str] = field(default_factory=list)  # what --dry-run would do

    def line(self) -> str:
        parts = [
            f"processed {self.processed}",
            f"failed {self.failed}",
            f"skipped {self.skipped}",
            f"unchanged {self.unchanged}",
        ]
        if self.queued:
            parts.append(f"queued {self.queued}")
        if self.pruned:
            parts.append(f"pruned {self.pruned}")
        notes = []  # what to do about what was left out
        if self.archived:
            classes = " or ".join(sorted(self.archived_classes))
            parts.append(f"archived {self.archived}")
            notes.append(
                f"archived {self.archived}: not readable in {classes}; rerun with --restore DAYS"
            )
        if self.restore_requested or self.restoring:
            hours = RESTORE_HOURS.get(self.restore_tier, RESTORE_HOURS["Bulk"])
            parts.append(f"restoring {self.restore_requested + self.restoring}")
            notes.append(
                f"restoring {self.restore_requested + self.restoring} "
                f"({self.restore_requested} requested now, {self.restoring} already under way): "
                f"rerun once restored, {hours}"
            )
        state = (
            " (interrupted: run again with --only-missing to continue)" if self.interrupted else ""
        )
        text = ", ".join(parts) + f" in {self.seconds:.1f} s" + state
        return "; ".join([text, *notes])


@dataclass(frozen=True)
class Options:
    prefix: str = ""
    only_missing: bool = False
    via_queue: bool = False
    workers: int = 4
    prune: bool = False
    dry_run: bool = False
    progress: bool = True
    prune_grace: timedelta = PRUNE_GRACE
    retry_failed: bool = False  # with only_missing: process failed records again too
    # Request a restore, for this many days, of archived objects there is to
    # read (0: only count them). Bulk: free from GLACIER, a few cents per GB
    # from DEEP_ARCHIVE, and a backfill can wait the hours it takes.
    restore_days: int = 0
    restore_tier: RestoreTier = "Bulk"


def list_objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def backfill_event(bucket: str, obj: dict[str, Any]) -> ObjectEvent:
    return ObjectEvent(
        bucket=bucket,
        key=obj["Key"],
        kind=EventKind.CREATED,
        event_name="ObjectCreated:Backfill",
        size=int(obj["Size"]),
        etag=str(obj["ETag"]).strip('"'),
        sequencer=None,
        event_time=iso(obj["LastModified"]),
    )


def is_done(
    repository: Repository, settings: Settings, event: ObjectEvent, retry_failed: bool = False
) -> bool:
    """Processed already, from this content, with the current rendition settings;
    or failed so, unless ``retry_failed``: nothing has changed that could make
    it pass now."""
    record = repository.get(keys.image_id(event.bucket, event.key))
    settled = (Status.PROCESSED,) if retry_failed else (Status.PROCESSED, Status.FAILED)
    return (
        record is not None
        and record.status in settled
        # an archived object's failure is mended by a restore
        and not (record.status is Status.FAILED and Archived.describes(record.error))
        and record.etag == event.etag
        and record.fingerprint == settings.fingerprint
    )


def notification(event: ObjectEvent) -> str:
    """A synthetic S3 notification body for the events queue (key encoded as S3 does)."""
    from urllib.parse import quote_plus

    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": event.event_name,
        "eventTime": event.event_time,
        "s3": {
            "bucket": {"name": event.bucket, "arn": f"arn:aws:s3:::{event.bucket}"},
            "object": {
                "key": quote_plus(event.key, safe="/"),
                "size": event.size,
                "eTag": event.etag,
            },
        },
    }
    return json.dumps({"Records": [record]})


def run(
    settings: Settings,
    options: Options,
    make_pipeline: Callable[[], Pipeline],
    s3: Any,
    sqs: Any = None,
    stop: threading.Event | None = None,
) -> Summary:
    """Backfill; ``stop`` (set by Ctrl-C) ends it cleanly after the work in flight."""
    stop = stop or threading.Event()
    started = time.monotonic()
    summary = Summary()
    local = threading.local()

    def pipeline() -> Pipeline:
        # boto3 resources and MySQL connections are not shared between threads.
        if not hasattr(local, "pipeline"):
            local.pipeline = make_pipeline()
        made: Pipeline = local.pipeline
        return made

    reference = pipeline()
    cold: dict[str, str] = {}  # key -> its archive storage class, as listed

    def listing() -> Iterator[ObjectEvent]:
        for obj in list_objects(s3, settings.source_bucket, options.prefix):
            if obj.get("StorageClass") in RESTORE_CLASSES:
                cold[obj["Key"]] = obj["StorageClass"]
            yield backfill_event(settings.source_bucket, obj)

    events = [e for e in listing() if reference.ignore_reason(e) is None and not e.is_folder]
    todo = []
    for event in events:
        if options.only_missing and is_done(
            reference.repository, settings, event, options.retry_failed
        ):
            summary.skipped += 1
        else:
            todo.append(event)
    if any(e.key in cold for e in todo):
        todo = _readable(todo, cold, options, S3Storage(s3), summary)
    bar = tqdm(total=len(todo), unit="img", disable=not options.progress, dynamic_ncols=True)
    try:
        if options.dry_run:
            summary.actions += [f"would process {e.key}" for e in todo]
        elif options.via_queue:
            _enqueue(settings, todo, sqs, summary, bar, stop)
        else:
            _process(todo, pipeline, options.workers, summary, bar, stop)
        if options.prune and not stop.is_set():
            _prune(settings, options, reference, s3, summary)
    finally:
        bar.close()
    summary.interrupted = stop.is_set()
    summary.seconds = time.monotonic() - started
    return summary


def _readable(
    todo: list[ObjectEvent],
    cold: dict[str, str],
    options: Options,
    storage: S3Storage,
    summary: Summary,
) -> list[ObjectEvent]:
    """``todo`` less the objects that cannot be read now: those the listing
    shows in GLACIER or DEEP_ARCHIVE (one HEAD each, no GET) with no restored
    copy. They are counted, and with ``restore_days`` a restore is requested
    (once: one under way is left alone); their records stay as they are."""
    summary.restore_tier = options.restore_tier

    def triage(event: ObjectEvent) -> str:
        state = storage.restore_state(event.bucket, event.key)
        if state is not RestoreState.ARCHIVED or not options.restore_days or options.dry_run:
            return str(state)
        after = storage.request_restore(
            event.bucket, event.key, options.restore_days, options.restore_tier
        )
        return "requested" if after is RestoreState.RESTORING else str(after)

    cold_events = [e for e in todo if e.key in cold]
    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        found = dict(zip((e.key for e in cold_events), pool.map(triage, cold_events), strict=True))
    readable = []
    for event in todo:
        state = found.get(event.key, str(RestoreState.READABLE))
        if state in (RestoreState.READABLE, RestoreState.GONE):
            readable.append(event)  # the pipeline reads it, or finds it gone
        elif state == "requested":
            summary.restore_requested += 1
        elif state == RestoreState.RESTORING:
            summary.restoring += 1
        else:
            summary.archived += 1
            summary.archived_classes.add(cold[event.key])
            if options.dry_run and options.restore_days:
                summary.actions.append(
                    f"would restore {event.key} ({cold[event.key]}) for "
                    f"{options.restore_days} days ({options.restore_tier})"
                )
    return readable


def _process(
    todo: list[ObjectEvent],
    pipeline: Callable[[], Pipeline],
    workers: int,
    summary: Summary,
    bar: Any,
    stop: threading.Event,
) -> None:
    pending: set[Future[str]] = set()
    queue = iter(todo)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while True:
            while not stop.is_set() and len(pending) < workers * 2:
                event = next(queue, None)
                if event is None:
                    break
                pending.add(pool.submit(lambda e: pipeline().handle(e).value, event))
            if not pending:
                return
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                outcome = future.result()
                if outcome == "processed":
                    summary.processed += 1
                elif outcome == "failed":
                    summary.failed += 1
                else:
                    summary.unchanged += 1
                bar.update(1)


def _enqueue(
    settings: Settings,
    todo: list[ObjectEvent],
    sqs: Any,
    summary: Summary,
    bar: Any,
    stop: threading.Event,
) -> None:
    if not settings.events_queue:
        raise SystemExit("--via-queue needs a stage in SQS mode (EVENTS_QUEUE)")
    url = sqs.get_queue_url(QueueName=settings.events_queue)["QueueUrl"]
    for start in range(0, len(todo), 10):
        if stop.is_set():
            return
        chunk = todo[start : start + 10]
        response = sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": notification(e)} for i, e in enumerate(chunk)],
        )
        if response.get("Failed"):
            raise RuntimeError(f"the queue refused {len(response['Failed'])} messages")
        summary.queued += len(chunk)
        bar.update(len(chunk))


def _prune(
    settings: Settings, options: Options, pipeline: Pipeline, s3: Any, summary: Summary
) -> None:
    """Remove what no source justifies any more: records (and their renditions)
    of sources that are gone, then renditions no record lists (removed names,
    an old output format, leftovers of lost events). With
    ``CDN_DISTRIBUTION_ID`` everything deleted is invalidated there at the
    end, in as few requests as CloudFront takes (``chalicelib.cdn``)."""
    with pipeline.invalidation_batch():
        _prune_all(settings, options, pipeline, s3, summary)


def _prune_all(
    settings: Settings, options: Options, pipeline: Pipeline, s3: Any, summary: Summary
) -> None:
    sources = {o["Key"] for o in list_objects(s3, settings.source_bucket, options.prefix)}
    for status in Status:
        after = None
        while True:
            page = pipeline.repository.list_images(ImageQuery(status, None, 100, after))
            for record in page.items:
                if record.key.startswith(options.prefix) and record.key not in sources:
                    if options.dry_run:
                        summary.actions.append(f"would remove {record.key} (source gone)")
                        continue
                    removed = ObjectEvent(
                        record.bucket, record.key, EventKind.REMOVED, "ObjectRemoved:Backfill"
                    )
                    if pipeline.handle(removed).value == "deleted":
                        summary.pruned += sum(
                            len(r.object_keys) for r in record.renditions.values()
                        )
            if page.cursor is None:
                break
            after = page.cursor
    names = {spec.name for spec in settings.renditions}
    now = datetime.now(UTC)
    doomed: list[str] = []
    etags: dict[str, str] = {}
    for obj in list_objects(s3, settings.dest_bucket, settings.rendition_prefix):
        rendition = obj["Key"]
        folder, _, rest = rendition[len(settings.rendition_prefix) :].partition("/")
        if not rest.startswith(options.prefix) or now - obj["LastModified"] < options.prune_grace:
            continue
        name = folder.partition(".")[0]
        listed = any(_lists(pipeline.repository, settings.source_bucket, c, rendition)
                     for c in candidate_sources(folder, rest))  # fmt: skip
        if name not in names or not listed:
            doomed.append(rendition)
            etags[rendition] = str(obj["ETag"]).strip('"')
    if options.dry_run:
        summary.actions += [f"would delete {k}" for k in doomed]
        return
    from chalicelib.storage import S3Storage

    S3Storage(s3).delete(settings.dest_bucket, doomed)
    summary.pruned += len(doomed)
    if pipeline.cdn is not None:
        # The URL a listing gave for each, while a record still listed it.
        paths = [pipeline.cdn.path(k, etags[k]) for k in doomed]
        pipeline.cdn.request(paths, [f"prune|{p}" for p in paths])


def candidate_sources(folder: str, rest: str) -> list[str]:
    """The source keys whose record may list the rendition at ``folder/rest``
    (the key's part after ``RENDITION_PREFIX``), in the current key layout or
    the earlier one; a record must still list it for it to be kept.

    ``thumb.png/a.gif.png``: ``a.gif``. ``thumb/a.gif.png``: ``a.gif.png``
    (current layout), or ``a.gif`` (the earlier layout appended the
    extension inside ``NAME/``).
    """
    _, dot, extension = folder.partition(".")
    if dot:
        suffix = "." + extension
        return [rest.removesuffix(suffix)] if rest.endswith(suffix) else []
    candidates = [rest]
    base, extension = posixpath.splitext(rest)
    if extension.lower() in keys.EXTENSIONS.values():
        candidates.append(base)
    return candidates


def _lists(repository: Repository, bucket: str, source: str, rendition: str) -> bool:
    record = repository.get(keys.image_id(bucket, source))
    return record is not None and any(
        rendition in r.object_keys for r in record.renditions.values()
    )
