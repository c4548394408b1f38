"""MySQL / MariaDB backend on PyMySQL (pure Python: it packages cleanly).

The same guarantees as the DynamoDB backend: images are written by
compare-and-swap on ``version`` (a conditional INSERT or UPDATE, one
statement each), tombstones stay until ``expires_at`` (cleared by
``purge_tombstones``), listings are keyset-paginated on indexes (no OFFSET).
Every query is parameterised. See ``mysql_schema`` for the tables.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pymysql
from pymysql.cursors import Cursor

from chalicelib import keys
from chalicelib.models import Folder, ImageRecord, Page, Rendition, Status
from chalicelib.repositories import codec
from chalicelib.repositories.base import (
    TOKEN_KEY_BYTES,
    TOMBSTONE_SECONDS,
    Conflict,
    ImageQuery,
    Repository,
    StoredImage,
    Tombstone,
    checked_token_key,
)
from chalicelib.repositories.per_thread import PerThread

T = TypeVar("T")

# Client errors that mean the connection is gone (server restarted, idle
# timeout, network): reconnect and try once more.
_CONNECTION_LOST = {2006, 2013, 2014, 2045, 2055, 4031}
_DUPLICATE_KEY = 1062
_UTF8_MAX = b"\xff"  # never appears in UTF-8: bounds a prefix range


@dataclass
class _Slot:
    """One thread's connection (None until its first query, or after a failure)."""

    connection: pymysql.Connection[Cursor] | None = None
    last_used: float = 0.0


class Connector:
    """One connection per thread, reused: a PyMySQL connection is not
    thread-safe, and two threads sharing one read each other's rows. A Lambda
    container has one thread, so one connection; a threaded server (``chalice
    local``) or backfill's workers have one per thread (see ``PerThread``).

    After ``idle_ping`` seconds unused (a frozen container, the server's
    ``wait_timeout``) a connection is pinged first; one found dead mid-call is
    replaced and the call made once more. ``close()`` releases every thread's.
    """

    def __init__(self, connect: Callable[[], pymysql.Connection[Cursor]], idle_ping: float = 30):
        self._connect = connect
        self._idle_ping = idle_ping
        self._slots = PerThread(_Slot)
        self._lock = threading.Lock()  # guards each slot's ``connection`` against close()

    def _get(self) -> pymysql.Connection[Cursor]:
        """This thread's connection."""
        return self._connection(self._slots.get())

    def _connection(self, slot: _Slot) -> pymysql.Connection[Cursor]:
        connection = slot.connection
        if connection is not None and time.monotonic() - slot.last_used > self._idle_ping:
            try:
                connection.ping(reconnect=False)
            except pymysql.err.Error:
                self._discard(slot)
                connection = None
        if connection is None:
            connection = self._connect()
            with self._lock:
                slot.connection, slot.last_used = connection, time.monotonic()
        return connection

    def run(self, work: Callable[[Cursor], T]) -> T:
        slot = self._slots.get()
        for attempt in (1, 2):
            connection = self._connection(slot)
            try:
                with connection.cursor() as cursor:
                    result = work(cursor)
                slot.last_used = time.monotonic()
                return result
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] in _CONNECTION_LOST and attempt == 1:
                    self._discard(slot)
                    continue
                raise
            except pymysql.err.InterfaceError:
                if attempt == 1:
                    self._discard(slot)
                    continue
                raise
        raise AssertionError("unreachable")

    def _discard(self, slot: _Slot) -> None:
        with self._lock:
            connection, slot.connection = slot.connection, None
        if connection is not None:
            with contextlib.suppress(pymysql.err.Error):
                connection.close()

    def close(self) -> None:
        """Close every thread's connection (a thread that queries again reconnects)."""
        for slot in self._slots.all():
            self._discard(slot)


def connect_function(
    host: str,
    port: int,
    user: str,
    password: str,
    database: str,
    timeout: float = 10,
    tls: ssl.SSLContext | None = None,
) -> Callable[[], pymysql.Connection[Cursor]]:
    """Opens connections; with ``tls``, only over TLS with that context (a
    server that does not offer TLS, or whose certificate the context rejects,
    is refused). Without it PyMySQL's default applies."""

    def connect() -> pymysql.Connection[Cursor]:
        return pymysql.connect(
            host=host,
            port=port,
            user=user,
            password=password,
            database=database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=timeout,
            read_timeout=timeout * 3,
            write_timeout=timeout * 3,
            init_command="SET time_zone = '+00:00'",
            ssl=tls,
        )

    return connect


def _dt(iso: str | None) -> datetime | None:
    if not iso:
        return None
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")


def _iso(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _loads(value: Any) -> Any:
    if value is None:
        return None
    return json.loads(value.decode() if isinstance(value, bytes) else value)


_IMAGE_COLUMNS = (
    "id, bucket, s3_key, folder, status, error, format, content_type, width, height, "
    "size_bytes, etag, renditions, metadata, placeholder, fingerprint, pending, seq, "
    "uploaded_at, created_at, updated_at"
)
_COLUMN_AT = {name.strip(): i for i, name in enumerate(_IMAGE_COLUMNS.split(","))}
_FOLDER_COLUMNS = "prefix, has_marker, created_at, pending"
_SELECT_SECRET = "SELECT value FROM secrets WHERE name = %s"  # noqa: S105
TOKEN_KEY_NAME = "token-key"  # noqa: S105  (the row's name, not a secret)
_SELECT_FOLDER = f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE prefix_sort = %s"  # noqa: S608
_WRITE_COLUMNS = (
    "bucket", "s3_key", "folder", "folder_hash", "state", "seq", "status", "error", "format",
    "content_type", "width", "height", "size_bytes", "etag", "renditions", "metadata",
    "placeholder", "fingerprint", "pending", "tombstone", "uploaded_at", "created_at", "updated_at",
    "expires_at", "list_sort",
)  # fmt: skip


def _record(row: Sequence[Any]) -> ImageRecord:
    (image_id, bucket, key, folder, status, error, fmt, content_type, width, height,
     size_bytes, etag, renditions, metadata, placeholder, fingerprint, pending, seq,
     uploaded_at, created_at, updated_at) = row  # fmt: skip
    return ImageRecord(
        id=image_id,
        bucket=bucket,
        key=key,
        folder=folder,
        status=Status(status),
        etag=etag or "",
        size_bytes=int(size_bytes or 0),
        uploaded_at=_iso(uploaded_at),
        created_at=_iso(created_at),
        updated_at=_iso(updated_at),
        error=error,
        format=fmt,
        content_type=content_type,
        width=width,
        height=height,
        renditions={n: Rendition.from_dict(n, r) for n, r in (_loads(renditions) or {}).items()},
        metadata=_loads(metadata) or {},
        placeholder=_loads(placeholder),
        sequencer=seq,
        pending_event=pending,
        fingerprint=fingerprint,
    )


def image_row(record: ImageRecord) -> dict[str, Any]:
    """The ``images`` columns (all but ``id`` and ``version``) of a live record."""
    return {
        "bucket": record.bucket,
        "s3_key": record.key,
        "folder": record.folder,
        "folder_hash": keys.image_id("", record.folder),
        "state": "live",
        "seq": record.sequencer,
        "status": str(record.status),
        "error": record.error,
        "format": record.format,
        "content_type": record.content_type,
        "width": record.width,
        "height": record.height,
        "size_bytes": record.size_bytes,
        "etag": record.etag,
        "renditions": _json({n: r.to_doc() for n, r in record.renditions.items()}),
        "metadata": _json(record.metadata),
        "placeholder": _json(record.placeholder) if record.placeholder else None,
        "fingerprint": record.fingerprint,
        "pending": record.pending_event,
        "tombstone": None,
        "uploaded_at": _dt(record.uploaded_at),
        "created_at": _dt(record.created_at),
        "updated_at": _dt(record.updated_at),
        "expires_at": None,
        "list_sort": codec.sort_value(record.uploaded_at, record.key),
    }


class MySQLRepository(Repository):
    def __init__(self, connector: Connector) -> None:
        self._db = connector
        self._token_key: bytes | None = None

    def close(self) -> None:
        self._db.close()

    def token_key(self) -> bytes:
        """Read from ``secrets``; the first caller anywhere inserts it, and a
        caller that loses that race (duplicate key) reads the winner's."""
        if self._token_key is None:

            def work(cur: Cursor) -> bytes:
                cur.execute(_SELECT_SECRET, (TOKEN_KEY_NAME,))
                row = cur.fetchone()
                if row is None:
                    try:
                        cur.execute(
                            "INSERT INTO secrets (name, value) VALUES (%s, %s)",
                            (TOKEN_KEY_NAME, secrets.token_bytes(TOKEN_KEY_BYTES)),
                        )
                    except pymysql.err.IntegrityError as exc:
                        if not (exc.args and exc.args[0] == _DUPLICATE_KEY):
                            raise
                    cur.execute(_SELECT_SECRET, (TOKEN_KEY_NAME,))
                    row = cur.fetchone()
                assert row is not None
                return bytes(row[0])

            self._token_key = checked_token_key(self._db.run(work))
        return self._token_key

    # -- images ---------------------------------------------------------------
    def load(self, image_id: str) -> StoredImage | None:
        def work(cur: Cursor) -> StoredImage | None:
            cur.execute(
                f"SELECT state, version, tombstone, {_IMAGE_COLUMNS} FROM images WHERE id = %s",  # noqa: S608
                (image_id,),
            )
            row = cur.fetchone()
            if row is None:
                return None
            state, version, tomb = row[0], int(row[1]), row[2]
            if state == "live":
                return StoredImage(image_id, version, live=_record(row[3:]))
            data = _loads(tomb) or {}
            previous = data.get("previous")
            return StoredImage(
                image_id,
                version,
                tombstone=Tombstone(
                    sequencer=row[3 + _COLUMN_AT["seq"]],
                    deleted_at=data.get("deleted_at", ""),
                    previous=codec.record_from_doc(previous) if previous else None,
                    pending_event=row[3 + _COLUMN_AT["pending"]],
                ),
            )

        return self._db.run(work)

    def save(self, record: ImageRecord, expected_version: int | None) -> int:
        return self._swap(record.id, image_row(record), expected_version)

    def bury(
        self,
        image_id: str,
        bucket: str,
        key: str,
        tombstone: Tombstone,
        expected_version: int | None,
    ) -> int:
        previous = codec.record_to_doc(tombstone.previous) if tombstone.previous else None
        folder = keys.folder_of(key)
        values: dict[str, Any] = dict.fromkeys(_WRITE_COLUMNS)
        values.update(
            bucket=bucket,
            s3_key=key,
            folder=folder,
            folder_hash=keys.image_id("", folder),
            state="tombstone",
            seq=tombstone.sequencer,
            pending=tombstone.pending_event,
            tombstone=_json({"deleted_at": tombstone.deleted_at, "previous": previous}),
            updated_at=_dt(tombstone.deleted_at),
            expires_at=datetime.now(UTC).replace(tzinfo=None)
            + timedelta(seconds=TOMBSTONE_SECONDS),
        )
        return self._swap(image_id, values, expected_version)

    def _swap(self, image_id: str, values: dict[str, Any], expected_version: int | None) -> int:
        """Write the row if its version is still ``expected_version`` (None: absent)."""
        version = (expected_version or 0) + 1
        columns = list(values)

        def work(cur: Cursor) -> int:
            if expected_version is None:
                names = ", ".join(["id", "version", *columns])
                marks = ", ".join(["%s"] * (len(columns) + 2))
                try:
                    cur.execute(
                        f"INSERT INTO images ({names}) VALUES ({marks})",  # noqa: S608
                        (image_id, version, *values.values()),
                    )
                except pymysql.err.IntegrityError as exc:
                    if exc.args and exc.args[0] == _DUPLICATE_KEY:
                        raise Conflict(image_id) from exc
                    raise
                return version
            assignments = ", ".join(f"{c} = %s" for c in ["version", *columns])
            cur.execute(
                f"UPDATE images SET {assignments} WHERE id = %s AND version = %s",  # noqa: S608
                (version, *values.values(), image_id, expected_version),
            )
            if cur.rowcount != 1:
                raise Conflict(image_id)
            return version

        return self._db.run(work)

    def clear_pending(self, image_id: str, expected_version: int) -> None:
        def work(cur: Cursor) -> None:
            cur.execute(
                "UPDATE images SET pending = NULL, version = version + 1"
                " WHERE id = %s AND version = %s",
                (image_id, expected_version),
            )
            if cur.rowcount != 1:
                raise Conflict(image_id)

        self._db.run(work)

    def list_images(self, query: ImageQuery) -> Page[ImageRecord]:
        where = ["status = %s"]
        params: list[Any] = [str(query.status)]
        index = "by_status"
        if query.folder is not None:
            where.append("folder_hash = %s")
            params.append(keys.image_id("", query.folder))
            index = "by_folder"
        if query.after is not None:
            uploaded_at, key, image_id = query.after
            position = codec.sort_value(uploaded_at, key)
            where.append("(list_sort < %s OR (list_sort = %s AND id < %s))")
            params += [position, position, image_id]
        sql = (
            f"SELECT {_IMAGE_COLUMNS} FROM images FORCE INDEX ({index})"  # noqa: S608
            f" WHERE {' AND '.join(where)} ORDER BY list_sort DESC, id DESC LIMIT %s"
        )

        def work(cur: Cursor) -> list[ImageRecord]:
            cur.execute(sql, (*params, query.limit + 1))
            return [_record(row) for row in cur.fetchall()]

        records = self._db.run(work)
        page = records[: query.limit]
        cursor = None
        if len(records) > query.limit:
            last = page[-1]
            cursor = (last.uploaded_at, last.key, last.id)
        return Page(page, cursor)

    def purge_tombstones(self, now: datetime | None = None) -> int:
        """Delete expired tombstones (MySQL has no TTL); returns how many."""
        moment = (now or datetime.now(UTC)).replace(tzinfo=None)

        def work(cur: Cursor) -> int:
            cur.execute(
                "DELETE FROM images WHERE state = 'tombstone' AND expires_at < %s LIMIT 10000",
                (moment,),
            )
            return int(cur.rowcount)

        return self._db.run(work)

    # -- folders --------------------------------------------------------------
    def get_folder(self, prefix: str) -> Folder | None:
        def work(cur: Cursor) -> Folder | None:
            cur.execute(_SELECT_FOLDER, (prefix.encode(),))
            row = cur.fetchone()
            return _folder(row) if row else None

        return self._db.run(work)

    def touch_folders(self, prefixes: list[str], now: str) -> None:
        if not prefixes:
            return
        rows = [(p.encode(), p, _dt(now), uuid.uuid4().hex) for p in prefixes]

        def work(cur: Cursor) -> None:
            # ``touched`` changes on every touch, so a concurrent clean-up that
            # read the folder before this image arrived fails its conditional delete.
            cur.executemany(
                "INSERT INTO folders (prefix_sort, prefix, has_marker, created_at, touched)"
                " VALUES (%s, %s, FALSE, %s, %s)"
                " ON DUPLICATE KEY UPDATE touched = VALUES(touched)",
                rows,
            )

        self._db.run(work)

    def set_marker(
        self, prefix: str, has_marker: bool, now: str, pending_event: str | None = None
    ) -> Folder:
        def work(cur: Cursor) -> Folder:
            cur.execute(
                "INSERT INTO folders (prefix_sort, prefix, has_marker, created_at, touched,"
                " pending) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON DUPLICATE KEY UPDATE has_marker = VALUES(has_marker),"
                " touched = VALUES(touched), pending = VALUES(pending)",
                (prefix.encode(), prefix, has_marker, _dt(now), uuid.uuid4().hex, pending_event),
            )
            cur.execute(_SELECT_FOLDER, (prefix.encode(),))
            row = cur.fetchone()
            assert row is not None
            return _folder(row)

        return self._db.run(work)

    def clear_folder_pending(self, prefix: str) -> None:
        def work(cur: Cursor) -> None:
            cur.execute(
                "UPDATE folders SET pending = NULL WHERE prefix_sort = %s", (prefix.encode(),)
            )

        self._db.run(work)

    def remove_folder_if_empty(self, prefix: str) -> bool:
        key = prefix.encode()

        def work(cur: Cursor) -> bool:
            cur.execute("SELECT has_marker, touched FROM folders WHERE prefix_sort = %s", (key,))
            row = cur.fetchone()
            if row is None:
                return True
            has_marker, touched = row
            if has_marker:
                return False
            cur.execute(
                "SELECT 1 FROM images WHERE status IN ('processed', 'failed')"
                " AND folder_hash = %s LIMIT 1",
                (keys.image_id("", prefix),),
            )
            if cur.fetchone():
                return False
            cur.execute(
                "SELECT 1 FROM folders WHERE prefix_sort > %s AND prefix_sort < %s LIMIT 1",
                (key, key + _UTF8_MAX),
            )
            if cur.fetchone():
                return False
            cur.execute(
                "DELETE FROM folders WHERE prefix_sort = %s AND touched = %s AND NOT has_marker",
                (key, touched),
            )
            return int(cur.rowcount) == 1

        return self._db.run(work)

    def images_under(self, prefix: str) -> list[ImageRecord]:
        key = prefix.encode()

        def work(cur: Cursor) -> list[ImageRecord]:
            cur.execute(
                "SELECT prefix FROM folders WHERE prefix_sort > %s AND prefix_sort < %s",
                (key, key + _UTF8_MAX),
            )
            folders = [prefix, *(row[0] for row in cur.fetchall())]
            records: list[ImageRecord] = []
            for start in range(0, len(folders), 500):
                hashes = [keys.image_id("", f) for f in folders[start : start + 500]]
                marks = ", ".join(["%s"] * len(hashes))
                cur.execute(
                    f"SELECT {_IMAGE_COLUMNS} FROM images"  # noqa: S608
                    f" WHERE status IN ('processed', 'failed') AND folder_hash IN ({marks})",
                    hashes,
                )
                records += [_record(row) for row in cur.fetchall()]
            return records

        return self._db.run(work)

    def list_folders(self, limit: int, after: str | None) -> Page[Folder]:
        def work(cur: Cursor) -> list[Folder]:
            if after is None:
                cur.execute(
                    f"SELECT {_FOLDER_COLUMNS} FROM folders"  # noqa: S608
                    " ORDER BY prefix_sort LIMIT %s",
                    (limit + 1,),
                )
            else:
                cur.execute(
                    f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE prefix_sort > %s"  # noqa: S608
                    " ORDER BY prefix_sort LIMIT %s",
                    (after.encode(), limit + 1),
                )
            return [_folder(row) for row in cur.fetchall()]

        folders = self._db.run(work)
        page = folders[:limit]
        return Page(page, (page[-1].prefix,) if len(folders) > limit else None)


def _folder(row: Sequence[Any]) -> Folder:
    prefix, has_marker, created_at, pending = row
    return Folder(prefix, bool(has_marker), _iso(created_at), pending)
