"""Orchestration: one ``ObjectEvent`` in, renditions, a record and a
notification out, following DESIGN.md's delivery rules.

Permanent problems with a file become a ``failed`` record and ``handle``
returns normally; anything else (S3, DynamoDB, SNS faults) propagates so that
Lambda or SQS retries the event, which the rules make harmless.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from chalicelib import events, keys
from chalicelib.cdn import Invalidator
from chalicelib.delivery import Decision, decide
from chalicelib.imaging import ImageRejected, ImagingOptions
from chalicelib.metadata_function import RemoteMetadata
from chalicelib.models import (
    Alternate,
    EventKind,
    Folder,
    ImageRecord,
    ObjectEvent,
    Rendition,
    Status,
)
from chalicelib.notify import Notifier, NullNotifier
from chalicelib.observability import (
    Stopwatch,
    made,
    measure_source,
    note,
    outcome_line,
    phase,
    watching,
)
from chalicelib.repositories.base import Conflict, Repository, StoredImage, Tombstone
from chalicelib.sandbox import Budget, Imaging, InProcessImaging, time_budget
from chalicelib.settings import Settings
from chalicelib.storage import Archived, ObjectGone, S3Storage, TooLarge, iso

log = logging.getLogger("image_pipeline")

# Compare-and-swap retries before giving up and letting Lambda retry later.
_MAX_ATTEMPTS = 5
# Rendition and alternate uploads in flight at once.
_MAX_PUTS = 8
MAX_ERROR_CHARS = 1000


Observer = Callable[[ObjectEvent, "Outcome", Stopwatch], None]


def log_outcome(event: ObjectEvent, outcome: Outcome, watch: Stopwatch) -> None:
    """One structured line per event handled, with its metrics (EMF)."""
    level = logging.WARNING if outcome is Outcome.FAILED else logging.INFO
    line = outcome_line(event, str(outcome), watch)
    # ``outcome`` rides along for a terminal's handler (``manage.py dev``), which
    # prints ``observability.human_line`` instead of the JSON.
    log.log(level, json.dumps(line, ensure_ascii=False), extra={"outcome": line})


class Outcome(enum.StrEnum):
    PROCESSED = "processed"
    FAILED = "failed"
    DELETED = "deleted"
    FOLDER_CREATED = "folder_created"
    FOLDER_DELETED = "folder_deleted"
    IGNORED = "ignored"  # not for this pipeline: rendition, other suffix, other bucket
    SUPERSEDED = "superseded"  # the object says otherwise: gone, changed, or still there
    STALE = "stale"  # older than the stored state
    DUPLICATE = "duplicate"  # already applied (unfinished work was finished)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        storage: S3Storage,
        repository: Repository,
        notifier: Notifier | None = None,
        imaging: Imaging | None = None,
        remote_metadata: RemoteMetadata | None = None,
        clock: Callable[[], datetime] = utc_now,
        observer: Observer = log_outcome,
        cdn: Invalidator | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.repository = repository
        self.notifier: Notifier = notifier or NullNotifier()
        self.imaging: Imaging = imaging if imaging is not None else InProcessImaging()
        self.remote_metadata = remote_metadata
        self.clock = clock
        self.observer = observer
        self.cdn = cdn  # CDN_DISTRIBUTION_ID: deleted renditions are invalidated there
        self.options = ImagingOptions(
            renditions=settings.renditions,
            output_format=settings.output_format,
            jpeg_quality=settings.jpeg_quality,
            strip_metadata=settings.strip_metadata,
            max_pixels=settings.max_source_pixels,
            engine=settings.image_engine,
            formats=tuple(f.upper() for f in settings.formats),
            avif_quality=settings.avif_quality,
            webp_quality=settings.webp_quality,
            crop_gravity=settings.crop_gravity,
        )

    # -- entry ----------------------------------------------------------------
    def handle(self, event: ObjectEvent, deadline: float | None = None) -> Outcome:
        """Apply one event. ``deadline`` (``time.monotonic()``) is when the
        invocation must have returned: a source's processing never runs past it
        less ``RECORD_MARGIN``."""
        with watching() as watch:
            outcome = self._dispatch(event, deadline)
        self.observer(event, outcome, watch)
        return outcome

    def invalidation_batch(self) -> contextlib.AbstractContextManager[None]:
        """The renditions deleted inside the block are invalidated at the CDN
        in one request (``CDN_DISTRIBUTION_ID``; nothing without it)."""
        return self.cdn.batch() if self.cdn is not None else contextlib.nullcontext()

    def budget(self, deadline: float | None) -> Budget:
        return time_budget(self.settings.processing_timeout, deadline)

    def _dispatch(self, event: ObjectEvent, deadline: float | None) -> Outcome:
        reason = self.ignore_reason(event)
        if reason:
            note(reason)
            return Outcome.IGNORED
        if event.is_folder:
            return self._folder(event)
        if event.kind is EventKind.CREATED:
            return self._created(event, deadline)
        return self._removed(event)

    def ignore_reason(self, event: ObjectEvent) -> str | None:
        return events.ignore_reason(event, self.settings)

    # -- uploads --------------------------------------------------------------
    def _created(self, event: ObjectEvent, deadline: float | None) -> Outcome:
        image_id = keys.image_id(event.bucket, event.key)
        sequencer = keys.normalise_sequencer(event.sequencer)
        result: ImageRecord | None = None
        for _ in range(_MAX_ATTEMPTS):
            with phase("record"):
                stored = self.repository.load(image_id)
            decision = decide(stored, EventKind.CREATED, sequencer, event.etag)
            if decision is Decision.STALE:
                note("the stored state is newer")
                return Outcome.STALE
            if decision is Decision.DUPLICATE:
                assert stored is not None
                self._finish(stored)
                return Outcome.DUPLICATE
            if result is None:
                result = self._produce(event, image_id, sequencer, deadline)
                if result is None:
                    return Outcome.SUPERSEDED
            record = self._stamped(result, stored)
            try:
                with phase("record"):
                    version = self.repository.save(record, stored.version if stored else None)
            except Conflict:
                continue
            if stored is not None and stored.live is not None:
                self._delete_renditions(stored.live, keep=record)
            self.repository.touch_folders(keys.ancestors(record.folder), record.updated_at)
            event_name = f"image.{record.status}"
            self._notify(image_id, version, record.pending_event, event_name, record)
            return Outcome.PROCESSED if record.status is Status.PROCESSED else Outcome.FAILED
        raise RuntimeError(f"gave up on {event.key} after {_MAX_ATTEMPTS} conflicting writes")

    def _produce(
        self, event: ObjectEvent, image_id: str, sequencer: str, deadline: float | None
    ) -> ImageRecord | None:
        """Read, process and write renditions; None if the object is gone or changed
        (or archived, its processed record kept)."""
        s = self.settings
        size, etag, uploaded_at = event.size, event.etag, _event_time(event.event_time)
        if size is None or etag is None or uploaded_at is None:
            info = self.storage.head(event.bucket, event.key)
            if info is None or (etag is not None and info.etag != etag):
                return None
            size, etag = info.size, info.etag
            uploaded_at = uploaded_at or iso(info.last_modified)
        base = self._base_record(event, image_id, sequencer, etag, size, uploaded_at)
        if size > s.max_source_bytes:
            return self._failed(base, str(TooLarge(size, s.max_source_bytes)))
        try:
            with phase("get"):
                source = self.storage.read(
                    event.bucket, event.key, etag=etag, max_bytes=s.max_source_bytes
                )
        except ObjectGone:
            note("the object is gone or has another ETag")
            return None
        except TooLarge as exc:
            return self._failed(base, str(exc))
        except Archived as exc:
            # Moved to GLACIER or DEEP_ARCHIVE after it was processed (or copied
            # there): the record of this very content stays as it is, never a
            # failed one over a good one. Anything else has nothing to keep.
            kept = self.repository.get(image_id)
            if kept is not None and kept.status is Status.PROCESSED and kept.etag == base.etag:
                note(f"{exc} (the processed record of this content is kept)")
                return None
            return self._failed(base, str(exc))
        base = base.with_(etag=source.info.etag, size_bytes=source.info.size)
        try:
            extracted = None
            if self.remote_metadata is not None:
                with phase("metadata"):
                    extracted = self.remote_metadata.fetch(event.bucket, event.key, base.etag)
            with phase("process"):
                image = self.imaging.process(source.data, self.options, self.budget(deadline))
        except ObjectGone:
            note("the object is gone or has another ETag")
            return None
        except ImageRejected as exc:
            return self._failed(base, str(exc))
        measure_source(image.width, image.height, image.engine)
        if extracted is not None:  # the child function's view of the file wins
            image = replace(
                image,
                format=extracted.format,
                width=extracted.width,
                height=extracted.height,
                metadata=extracted.metadata,
            )
        renditions: dict[str, Rendition] = {}
        data: dict[str, bytes] = {}  # object key -> bytes
        for r in image.renditions:
            key = keys.rendition_key(s.rendition_prefix, r.name, event.key, r.format)
            alternates = tuple(
                Alternate(
                    keys.rendition_key(s.rendition_prefix, r.name, event.key, a.format),
                    len(a.data),
                    a.content_type,
                )
                for a in r.alternates
            )
            for object_key in (key, *(a.key for a in alternates)):
                if not keys.key_fits(object_key):
                    return self._failed(
                        base,
                        f"the key is too long for its renditions: {r.name!r} would be stored "
                        f"at a {len(object_key.encode()):,}-byte key, over S3's "
                        f"{keys.MAX_KEY_BYTES}; shorten the key or RENDITION_PREFIX",
                    )
            renditions[r.name] = Rendition(
                r.name,
                s.dest_bucket,
                key,
                r.width,
                r.height,
                len(r.data),
                r.content_type,
                alternates,
            )
            data[key] = r.data
            data.update((alt.key, a.data) for alt, a in zip(alternates, r.alternates, strict=True))
        with phase("put"):
            etags = self._write_renditions(renditions, data, event.key, base.etag)
        renditions = {n: r.with_etags(etags) for n, r in renditions.items()}
        record = base.with_(
            status=Status.PROCESSED,
            format=image.format,
            content_type=image.content_type,
            width=image.width,
            height=image.height,
            renditions=renditions,
            metadata=image.metadata,
            placeholder=image.placeholder,
        )
        made(renditions)
        return record

    def _write_renditions(
        self, renditions: dict[str, Rendition], data: dict[str, bytes], source_key: str, etag: str
    ) -> dict[str, str]:
        """Write every rendition and alternate (``data``: object key -> bytes);
        the objects' ETags by key."""
        items = [
            (r.bucket, key, content_type)
            for r in renditions.values()
            for key, content_type in zip(
                r.object_keys,
                [r.content_type, *(a.content_type for a in r.alternates)],
                strict=True,
            )
        ]

        def put(item: tuple[str, str, str]) -> str:
            bucket, key, content_type = item
            return self.storage.write_rendition(
                bucket,
                key,
                data[key],
                content_type=content_type,
                source_key=source_key,
                source_etag=etag,
            )

        if len(items) == 1:
            return {items[0][1]: put(items[0])}
        with ThreadPoolExecutor(max_workers=min(len(items), _MAX_PUTS)) as pool:
            futures = [(item[1], pool.submit(put, item)) for item in items]
            return {key: future.result() for key, future in futures}

    def _base_record(
        self,
        event: ObjectEvent,
        image_id: str,
        sequencer: str,
        etag: str,
        size: int,
        uploaded_at: str,
    ) -> ImageRecord:
        now = iso(self.clock())
        return ImageRecord(
            id=image_id,
            bucket=event.bucket,
            key=event.key,
            folder=keys.folder_of(event.key),
            status=Status.FAILED,
            etag=etag,
            size_bytes=size,
            uploaded_at=uploaded_at,
            created_at=now,
            updated_at=now,
            sequencer=sequencer,
            fingerprint=self.settings.fingerprint,
        )

    def _failed(self, base: ImageRecord, error: str) -> ImageRecord:
        if len(error) > MAX_ERROR_CHARS:
            error = error[: MAX_ERROR_CHARS - 1] + "…"
        note(error)
        return base.with_(status=Status.FAILED, error=error)

    def _stamped(self, record: ImageRecord, stored: StoredImage | None) -> ImageRecord:
        """The record as it is saved over ``stored``: first-seen time kept, a
        notification marked pending when there is a topic."""
        created_at = stored.live.created_at if stored and stored.live else record.created_at
        pending = f"image.{record.status}" if self.notifier.enabled else None
        return record.with_(created_at=created_at, pending_event=pending)

    # -- deletions ------------------------------------------------------------
    def _removed(self, event: ObjectEvent) -> Outcome:
        if self.storage.head(event.bucket, event.key) is not None:
            note("the object still exists")
            return Outcome.SUPERSEDED
        image_id = keys.image_id(event.bucket, event.key)
        sequencer = keys.normalise_sequencer(event.sequencer)
        for _ in range(_MAX_ATTEMPTS):
            stored = self.repository.load(image_id)
            decision = decide(stored, EventKind.REMOVED, sequencer, None)
            if decision is Decision.STALE:
                return Outcome.STALE
            if decision is Decision.DUPLICATE:
                assert stored is not None
                self._finish(stored)
                if stored.tombstone is not None:
                    self._invalidate(image_id, stored.tombstone)
                return Outcome.DUPLICATE
            previous = stored.live if stored else None
            tombstone = Tombstone(
                sequencer=sequencer,
                deleted_at=iso(self.clock()),
                previous=previous,
                pending_event="image.deleted" if previous and self.notifier.enabled else None,
            )
            try:
                version = self.repository.bury(
                    image_id, event.bucket, event.key, tombstone, stored.version if stored else None
                )
            except Conflict:
                continue
            if previous is None:
                return (
                    Outcome.DELETED
                )  # nothing was stored: the tombstone guards against a late create
            self._after_removal(previous)
            self._notify(image_id, version, tombstone.pending_event, "image.deleted", previous)
            self._invalidate(image_id, tombstone)
            return Outcome.DELETED
        raise RuntimeError(f"gave up on {event.key} after {_MAX_ATTEMPTS} conflicting writes")

    def _invalidate(self, image_id: str, tombstone: Tombstone) -> None:
        """Ask the CDN to drop the deleted renditions, last, once everything
        else is done: a transient failure raises and the retried event (a
        duplicate by then) sends the same request, same reference, again."""
        if self.cdn is None or tombstone.previous is None:
            return
        reference = f"{image_id}|{tombstone.sequencer}|{tombstone.deleted_at}"
        self.cdn.deleted(tombstone.previous, reference)

    def _after_removal(self, previous: ImageRecord) -> None:
        self._delete_renditions(previous)
        for prefix in reversed(keys.ancestors(previous.folder)):
            if not self.repository.remove_folder_if_empty(prefix):
                break

    def _finish(self, stored: StoredImage) -> None:
        """A redelivered event: complete what an earlier attempt may have left undone."""
        if stored.tombstone is not None and stored.tombstone.previous is not None:
            previous = stored.tombstone.previous
            self._after_removal(previous)
            self._notify(
                stored.id, stored.version, stored.tombstone.pending_event, "image.deleted", previous
            )
        elif stored.live is not None:
            live = stored.live
            self._notify(
                stored.id, stored.version, live.pending_event, f"image.{live.status}", live
            )

    def _delete_renditions(self, record: ImageRecord, keep: ImageRecord | None = None) -> None:
        """Delete the renditions ``record`` lists, except those ``keep`` uses,
        and never another source's.

        A key in the current layout for ``record``'s source is deleted as is:
        the layout is injective, so no other source writes there. Any other
        key (an older layout, another prefix or bucket) may by now be another
        source's rendition: the old ``thumb/a.gif.png`` of ``a.gif`` is the
        current key of ``a.gif.png``. Such a key is deleted only if its
        ``source-key`` metadata names ``record``'s source: one HEAD each, only
        for records made before a layout or settings change.

        The delete is conditional on the ETag that HEAD saw (S3's If-Match on
        DeleteObject), so a source that writes that key in between, the one
        source whose current key it is, keeps its rendition.
        """
        kept = (
            {(r.bucket, k) for r in keep.renditions.values() for k in r.object_keys}
            if keep
            else set()
        )
        by_bucket: dict[str, list[str]] = {}
        for r in record.renditions.values():
            for key in r.object_keys:
                if (r.bucket, key) in kept:
                    continue
                if self._in_current_layout(record.key, r.name, r.bucket, key):
                    by_bucket.setdefault(r.bucket, []).append(key)
                elif (etag := self._written_for(record.key, r.bucket, key)) is not None:
                    self.storage.delete_if_unchanged(r.bucket, key, etag)
        for bucket, object_keys in by_bucket.items():
            self.storage.delete(bucket, object_keys)

    def _in_current_layout(self, source_key: str, name: str, bucket: str, key: str) -> bool:
        """Whether ``key`` is where the current layout puts a ``name`` rendition
        (or alternate) of ``source_key``."""
        s = self.settings
        output_format = keys.format_named_by(key)
        return (
            output_format is not None
            and bucket == s.dest_bucket
            and key == keys.rendition_key(s.rendition_prefix, name, source_key, output_format)
        )

    def _written_for(self, source_key: str, bucket: str, key: str) -> str | None:
        """The ETag of the object at ``key`` if it says it was made from
        ``source_key``; None otherwise (a missing object says nothing)."""
        found = self.storage.rendition_source(bucket, key)
        return found[1] if found is not None and found[0] == source_key else None

    # -- folders --------------------------------------------------------------
    def _folder(self, event: ObjectEvent) -> Outcome:
        """Folder markers (keys ending in '/'): the object decides, as for images.

        The notification is marked pending with the write and cleared once
        published, so a retry after a failed publish still sends it.
        """
        prefix = event.key
        now = iso(self.clock())
        exists = self.storage.head(event.bucket, prefix) is not None
        before = self.repository.get_folder(prefix)
        if event.kind is EventKind.CREATED:
            if not exists:
                note("the marker object is gone")
                return Outcome.SUPERSEDED
            if before is not None and before.has_marker:
                self._publish_folder(before, "folder.created")
                return Outcome.DUPLICATE
            folder = self.repository.set_marker(prefix, True, now, self._pending("folder.created"))
            self.repository.touch_folders(keys.ancestors(prefix)[:-1], now)
            self._publish_folder(folder, "folder.created")
            return Outcome.FOLDER_CREATED
        if exists:
            note("the marker object still exists")
            return Outcome.SUPERSEDED
        if before is None:
            return Outcome.DUPLICATE
        outcome = Outcome.DUPLICATE
        folder = before
        if before.has_marker:
            folder = self.repository.set_marker(prefix, False, now, self._pending("folder.deleted"))
            outcome = Outcome.FOLDER_DELETED
        with self.invalidation_batch():
            for record in self.repository.images_under(prefix):
                if self.storage.head(record.bucket, record.key) is None:
                    self._removed(
                        ObjectEvent(record.bucket, record.key, EventKind.REMOVED, "FolderCleanup")
                    )
        self._publish_folder(folder, "folder.deleted")
        for parent in reversed(keys.ancestors(prefix)):
            if not self.repository.remove_folder_if_empty(parent):
                break
        return outcome

    def _pending(self, event: str) -> str | None:
        return event if self.notifier.enabled else None

    # -- notifications --------------------------------------------------------
    def _notify(
        self, image_id: str, version: int, pending: str | None, event: str, record: ImageRecord
    ) -> None:
        if not pending or not self.notifier.enabled:
            return
        self.notifier.publish(event, {"image": record.with_(pending_event=None).to_api()})
        # On a conflict a newer write replaced the outcome; it carries its own mark.
        with contextlib.suppress(Conflict):
            self.repository.clear_pending(image_id, version)

    def _publish_folder(self, folder: Folder, event: str) -> None:
        """Publish the folder's pending ``event``, if it has that one pending."""
        if folder.pending_event != event or not self.notifier.enabled:
            return
        body: dict[str, Any] = {"folder": folder.to_api()}
        self.notifier.publish(event, body)
        self.repository.clear_folder_pending(folder.prefix)


def _event_time(value: str | None) -> str | None:
    """S3's ``eventTime`` (``2024-06-01T12:00:00.123Z``) to whole seconds, UTC."""
    if not value:
        return None
    try:
        return iso(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None
