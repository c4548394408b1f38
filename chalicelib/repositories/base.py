"""The ``Repository`` interface every backend implements.

Image state is written by compare-and-swap: each stored image has a version
number, and a write names the version it read (``None``: nothing stored).
A write whose version no longer matches raises ``Conflict``; the pipeline then
reads again and re-applies the delivery rules, so two events racing on one key
end in the state the rules pick, whatever the interleaving.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from chalicelib.models import Folder, ImageRecord, Page, Status

# Tombstones outlive every redelivery S3 or its queues can still make: SQS
# keeps a message at most 14 days, Lambda retries an async event for 6 hours.
TOMBSTONE_SECONDS = 14 * 24 * 3600

TOKEN_KEY_BYTES = 32


def checked_token_key(value: bytes) -> bytes:
    """A stored token key, refused if it is not ``TOKEN_KEY_BYTES`` long."""
    if len(value) != TOKEN_KEY_BYTES:
        raise ValueError(f"the stored token key has {len(value)} bytes, not {TOKEN_KEY_BYTES}")
    return value


class Conflict(Exception):
    """Someone else wrote the item since it was read."""


class InvalidCursor(ValueError):
    """A pagination cursor that this backend never produced."""


@dataclass(frozen=True)
class Tombstone:
    """What a deletion leaves: the sequencer it happened at, and the record as
    it was (to finish deleting its renditions and notify, on a retry)."""

    sequencer: str
    deleted_at: str
    previous: ImageRecord | None = None
    pending_event: str | None = None


@dataclass(frozen=True)
class StoredImage:
    """One key's stored state: a live record or a tombstone, and its version."""

    id: str
    version: int
    live: ImageRecord | None = None
    tombstone: Tombstone | None = None

    @property
    def sequencer(self) -> str:
        if self.live is not None:
            return self.live.sequencer
        return self.tombstone.sequencer if self.tombstone else ""


@dataclass(frozen=True)
class ImageQuery:
    status: Status = Status.PROCESSED
    folder: str | None = None  # None: every folder; "": the root
    limit: int = 50
    after: tuple[str, ...] | None = None  # (uploaded_at, key, id) of the last item seen


class Repository(abc.ABC):
    """A backend's records. One instance may be used by several threads at once
    (``chalice local`` serves requests on threads, backfill runs workers): an
    implementation gives each thread its own connection or client where those
    are not thread-safe."""

    def close(self) -> None:  # noqa: B027  (most backends hold nothing to release)
        """Release connections (a container going away, a test ending)."""

    def token_key(self) -> bytes:
        """A random secret of ``TOKEN_KEY_BYTES`` kept by the backend, the same
        for every container of the stage. It signs pagination tokens.

        Created on first use by a conditional write, so containers racing to
        create it end with one key (the losers read the winner's);
        ``provision`` creates it, so deployed functions normally only read it.
        Safe to call from several threads at once."""
        raise NotImplementedError

    # -- images ---------------------------------------------------------------
    @abc.abstractmethod
    def load(self, image_id: str) -> StoredImage | None:
        """The stored state of one image, tombstones included (strongly consistent)."""

    @abc.abstractmethod
    def save(self, record: ImageRecord, expected_version: int | None) -> int:
        """Store a live record in place of whatever is at ``record.id``; returns the new version."""

    @abc.abstractmethod
    def bury(
        self,
        image_id: str,
        bucket: str,
        key: str,
        tombstone: Tombstone,
        expected_version: int | None,
    ) -> int:
        """Replace whatever is at ``image_id`` with a tombstone; returns the new version."""

    @abc.abstractmethod
    def clear_pending(self, image_id: str, expected_version: int) -> None:
        """Mark the stored outcome as notified (raises ``Conflict`` if it changed)."""

    def get(self, image_id: str) -> ImageRecord | None:
        stored = self.load(image_id)
        return stored.live if stored else None

    @abc.abstractmethod
    def list_images(self, query: ImageQuery) -> Page[ImageRecord]:
        """Newest first by ``uploaded_at``, then key; reads about one page."""

    # -- folders --------------------------------------------------------------
    @abc.abstractmethod
    def get_folder(self, prefix: str) -> Folder | None: ...

    @abc.abstractmethod
    def touch_folders(self, prefixes: list[str], now: str) -> None:
        """Make sure these folders exist (they hold an image), without touching markers."""

    @abc.abstractmethod
    def set_marker(
        self, prefix: str, has_marker: bool, now: str, pending_event: str | None = None
    ) -> Folder:
        """Record that the folder's marker object exists or is gone, and the
        notification of that not yet published."""

    @abc.abstractmethod
    def clear_folder_pending(self, prefix: str) -> None:
        """The folder's notification is out."""

    @abc.abstractmethod
    def remove_folder_if_empty(self, prefix: str) -> bool:
        """Delete the folder if it has no marker, no image directly in it and
        no sub-folder; True if it is gone afterwards."""

    @abc.abstractmethod
    def images_under(self, prefix: str) -> list[ImageRecord]:
        """Every live record whose key lies under ``prefix`` (for folder clean-up)."""

    @abc.abstractmethod
    def list_folders(self, limit: int, after: str | None) -> Page[Folder]:
        """By prefix; reads about one page."""
