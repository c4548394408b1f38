"""A small in-memory ``Repository`` for unit tests of code above the backends."""

from __future__ import annotations

import secrets
from dataclasses import replace

from chalicelib.models import Folder, ImageRecord, Page
from chalicelib.repositories.base import (
    Conflict,
    ImageQuery,
    Repository,
    StoredImage,
    Tombstone,
)


class MemoryRepository(Repository):
    def __init__(self) -> None:
        self.images: dict[str, StoredImage] = {}
        self.folders: dict[str, Folder] = {}
        self.secret = secrets.token_bytes(32)

    def token_key(self) -> bytes:
        return self.secret

    def load(self, image_id: str) -> StoredImage | None:
        return self.images.get(image_id)

    def _swap(self, stored: StoredImage, expected: int | None) -> int:
        current = self.images.get(stored.id)
        if (current.version if current else None) != expected:
            raise Conflict(stored.id)
        self.images[stored.id] = stored
        return stored.version

    def save(self, record: ImageRecord, expected_version: int | None) -> int:
        new = StoredImage(record.id, (expected_version or 0) + 1, live=record)
        return self._swap(new, expected_version)

    def bury(
        self,
        image_id: str,
        bucket: str,
        key: str,
        tombstone: Tombstone,
        expected_version: int | None,
    ) -> int:
        new = StoredImage(image_id, (expected_version or 0) + 1, tombstone=tombstone)
        return self._swap(new, expected_version)

    def clear_pending(self, image_id: str, expected_version: int) -> None:
        stored = self.images[image_id]
        if stored.version != expected_version:
            raise Conflict(image_id)
        live = stored.live.with_(pending_event=None) if stored.live else None
        self.images[image_id] = StoredImage(image_id, expected_version + 1, live, stored.tombstone)

    def list_images(self, query: ImageQuery) -> Page[ImageRecord]:
        records = sorted(
            (
                s.live
                for s in self.images.values()
                if s.live
                and s.live.status is query.status
                and (query.folder is None or s.live.folder == query.folder)
            ),
            key=lambda r: (r.uploaded_at, r.key),
            reverse=True,
        )
        if query.after:
            records = [r for r in records if (r.uploaded_at, r.key) < query.after[:2]]
        page = records[: query.limit]
        more = len(records) > query.limit
        cursor = (page[-1].uploaded_at, page[-1].key, page[-1].id) if more else None
        return Page(page, cursor)

    def get_folder(self, prefix: str) -> Folder | None:
        return self.folders.get(prefix)

    def touch_folders(self, prefixes: list[str], now: str) -> None:
        for prefix in prefixes:
            self.folders.setdefault(prefix, Folder(prefix, False, now))

    def set_marker(
        self, prefix: str, has_marker: bool, now: str, pending_event: str | None = None
    ) -> Folder:
        old = self.folders.get(prefix)
        folder = Folder(prefix, has_marker, old.created_at if old else now, pending_event)
        self.folders[prefix] = folder
        return folder

    def clear_folder_pending(self, prefix: str) -> None:
        if prefix in self.folders:
            self.folders[prefix] = replace(self.folders[prefix], pending_event=None)

    def remove_folder_if_empty(self, prefix: str) -> bool:
        folder = self.folders.get(prefix)
        if folder is None:
            return True
        busy = folder.has_marker or any(
            s.live and s.live.folder == prefix for s in self.images.values()
        )
        if busy or any(p != prefix and p.startswith(prefix) for p in self.folders):
            return False
        del self.folders[prefix]
        return True

    def images_under(self, prefix: str) -> list[ImageRecord]:
        return [s.live for s in self.images.values() if s.live and s.live.key.startswith(prefix)]

    def list_folders(self, limit: int, after: str | None) -> Page[Folder]:
        prefixes = sorted(p for p in self.folders if after is None or p > after)
        page = [self.folders[p] for p in prefixes[:limit]]
        return Page(page, (page[-1].prefix,) if len(prefixes) > limit else None)
