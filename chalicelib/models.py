"""The records the pipeline keeps, and the events it reacts to.

Plain dataclasses shared by every layer; ``to_api()`` gives the public JSON
shapes of DESIGN.md, while the internal fields (sequencer, notification mark,
settings fingerprint) stay between the pipeline and the repositories.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .bounds import bounded_metadata, bounded_placeholder


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
class Alternate:
    """A rendition's pixels in another format (``FORMATS``), in the rendition's bucket."""

    key: str
    size_bytes: int
    content_type: str
    etag: str | None = None  # of the object as written (None: written before it was kept)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size_bytes": self.size_bytes, "content_type": self.content_type}

    def to_doc(self) -> dict[str, Any]:
        """``to_dict`` and what only storage keeps: the object's ETag."""
        return self.to_dict() | {"etag": self.etag}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alternate:
        etag = data.get("etag")
        return cls(
            str(data["key"]),
            int(data["size_bytes"]),
            str(data["content_type"]),
            None if etag is None else str(etag),
        )


@dataclass(frozen=True)
class Rendition:
    name: str
    bucket: str
    key: str
    width: int
    height: int
    size_bytes: int
    content_type: str
    alternates: tuple[Alternate, ...] = ()  # in FORMATS order
    etag: str | None = None  # of the object as written (None: written before it was kept)

    @property
    def object_keys(self) -> list[str]:
        """Every object this rendition stored in ``bucket``: its own, then its alternates'."""
        return [self.key, *(a.key for a in self.alternates)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "width": self.width,
            "height": self.height,
            "size_bytes": self.size_bytes,
            "content_type": self.content_type,
            "alternates": [a.to_dict() for a in self.alternates],
        }

    def with_etags(self, etags: Mapping[str, str]) -> Rendition:
        """This rendition with the ETags its objects were written with."""
        return replace(
            self,
            etag=etags.get(self.key),
            alternates=tuple(replace(a, etag=etags.get(a.key)) for a in self.alternates),
        )

    def to_doc(self) -> dict[str, Any]:
        """``to_dict`` and what only storage keeps: the objects' ETags, which
        version their URLs (``RENDITION_BASE_URL``)."""
        return self.to_dict() | {
            "etag": self.etag,
            "alternates": [a.to_doc() for a in self.alternates],
        }

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> Rendition:
        """From ``to_doc`` or ``to_dict``; also reads records made before
        alternates and ETags were kept."""
        return cls(
            name=name,
            bucket=str(data["bucket"]),
            key=str(data["key"]),
            width=int(data["width"]),
            height=int(data["height"]),
            size_bytes=int(data["size_bytes"]),
            content_type=str(data["content_type"]),
            alternates=tuple(Alternate.from_dict(a) for a in data.get("alternates") or ()),
            etag=None if data.get("etag") is None else str(data["etag"]),
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
    # {"blurhash": ..., "color": "#rrggbb"} on processed records (None on
    # failed ones, and on records made before placeholders existed).
    placeholder: dict[str, str] | None = None
    sequencer: str = ""
    pending_event: str | None = None
    fingerprint: str | None = None

    def with_(self, **changes: Any) -> ImageRecord:
        return replace(self, **changes)

    def to_api(self) -> dict[str, Any]:
        """The record as DESIGN.md's REST and notification contract shows it."""
        body = {
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
        if self.status is Status.PROCESSED:
            body["placeholder"] = bounded_placeholder(self.placeholder)
        return body


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
