"""The records the pipeline keeps, and the events it reacts to.

Plain dataclasses shared by every layer; ``to_api()`` gives the public JSON
shapes of DESIGN.md, while the internal fields (sequencer, notification mark,
settings fingerprint) stay between the pipeline and the repositories.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from .bounds import bounded_metadata


class EventKind(enum.Enum):
    CREATED = "created"
    REMOVED = "removed"


@dataclass(frozen=True)
class ObjectEvent:
    """One S3 notification record, key already URL-decoded."""

    bucket: str
    key: str
    kind: EventKind
    event_name: str = ""
    size: int | None = None
    etag: str | None = None
    sequencer: str | None = None
    event_time: str | None = None
    version_id: str | None = None

    @property
    def is_folder(self) -> bool:
        return self.key.endswith("/")


class Status(enum.StrEnum):
    PROCESSED = "processed"
    FAILED = "failed"


@dataclass(frozen=True)
class Rendition:
    name: str
    bucket: str
    key: str
    width: int
    height: int
    size_bytes: int
    content_type: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "width": self.width,
            "height": self.height,
            "size_bytes": self.size_bytes,
            "content_type": self.content_type,
        }

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> Rendition:
        return cls(
            name=name,
            bucket=str(data["bucket"]),
            key=str(data["key"]),
            width=int(data["width"]),
            height=int(data["height"]),
            size_bytes=int(data["size_bytes"]),
            content_type=str(data["content_type"]),
        )


@dataclass(frozen=True)
class ImageRecord:
    """What the pipeline knows about one source object.

    ``sequencer`` is the normalised S3 sequencer of the event the record
    reflects ("" for events that carry none). ``pending_event`` is the
    notification not yet published ("image.processed", ...), None once out.
    ``fingerprint`` identifies the rendition settings that produced it.
    """

    id: str
    bucket: str
    key: str
    folder: str
    status: Status
    etag: str
    size_bytes: int
    uploaded_at: str
    created_at: str
    updated_at: str
    error: str | None = None
    format: str | None = None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    renditions: dict[str, Rendition] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    sequencer: str = ""
    pending_event: str | None = None
    fingerprint: str | None = None

    def with_(self, **changes: Any) -> ImageRecord:
        return replace(self, **changes)

    def to_api(self) -> dict[str, Any]:
        """The record as DESIGN.md's REST and notification contract shows it."""
        return {
            "id": self.id,
            "bucket": self.bucket,
            "key": self.key,
            "folder": self.folder,
            "status": str(self.status),
            "error": self.error,
            "format": self.format,
            "content_type": self.content_type,
            "width": self.width,
            "height": self.height,
            "size_bytes": self.size_bytes,
            "etag": self.etag,
            "renditions": {n: r.to_dict() for n, r in self.renditions.items()},
            "metadata": bounded_metadata(self.metadata),
            "uploaded_at": self.uploaded_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Folder:
    prefix: str
    has_marker: bool
    created_at: str
    pending_event: str | None = None  # "folder.created"/"folder.deleted" not yet published

    def to_api(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "has_marker": self.has_marker, "created_at": self.created_at}


@dataclass(frozen=True)
class Page[T]:
    items: list[T]
    # Position after the last item, for the next page; None on the last page.
    cursor: tuple[str, ...] | None
