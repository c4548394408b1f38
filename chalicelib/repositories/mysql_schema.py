"""MySQL / MariaDB schema, created and migrated by ``manage.py provision``.

Each migration runs once, in order, and is recorded in ``schema_version``; a
later release appends a migration (``ALTER TABLE ... ADD COLUMN``) and
``provision`` applies it, with no hand work. A named lock keeps two
provisioning runs from migrating at once.

Text is utf8mb4 throughout. S3 keys reach 1024 bytes, past InnoDB's 3072-byte
index limit in utf8mb4 (4 bytes a character), so rows are keyed by ``id``
(a hash of bucket and key) and ordered by binary sort columns derived from
the text (``list_sort``, ``prefix_sort``), which fit an index whole.

Renditions and metadata are JSON columns of the image row: they are always
read and written with their record and never queried alone, and one row per
image keeps every write a single conditional statement (compare-and-swap on
``version``) instead of a multi-table transaction.

``secrets`` holds values the backend keeps for every container, by name: the
pagination token key (``token-key``), inserted once by whoever comes first.
"""

from __future__ import annotations

from typing import Any

_TABLE = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

MIGRATIONS: list[tuple[int, str, list[str]]] = [  # (version, description, statements)
    (
        1,
        "images and folders",
        [
            f"""CREATE TABLE images (
                id CHAR(22) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
                bucket VARCHAR(63) NOT NULL,
                s3_key VARCHAR(1024) NOT NULL,
                folder VARCHAR(1024) NOT NULL,
                folder_hash CHAR(22) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
                state ENUM('live', 'tombstone') NOT NULL,
                version BIGINT UNSIGNED NOT NULL,
                seq VARCHAR(64) CHARACTER SET ascii NOT NULL DEFAULT '',
                status ENUM('processed', 'failed') NULL COMMENT 'NULL for tombstones',
                error TEXT NULL,
                format VARCHAR(16) NULL,
                content_type VARCHAR(64) NULL,
                width INT UNSIGNED NULL,
                height INT UNSIGNED NULL,
                size_bytes BIGINT UNSIGNED NULL,
                etag VARCHAR(64) CHARACTER SET ascii NULL,
                renditions JSON NULL,
                metadata JSON NULL,
                fingerprint VARCHAR(32) CHARACTER SET ascii NULL,
                pending VARCHAR(32) CHARACTER SET ascii NULL,
                tombstone JSON NULL COMMENT 'the deleted record, to finish a retried delete',
                uploaded_at DATETIME NULL,
                created_at DATETIME NULL,
                updated_at DATETIME NOT NULL,
                expires_at DATETIME NULL COMMENT 'tombstones only',
                list_sort VARBINARY(1000) NULL COMMENT 'uploaded_at#key, cut to fit the index',
                PRIMARY KEY (id),
                KEY by_status (status, list_sort, id),
                KEY by_folder (status, folder_hash, list_sort, id),
                KEY by_expiry (expires_at)
            ) {_TABLE}""",
            f"""CREATE TABLE folders (
                prefix_sort VARBINARY(1024) NOT NULL COMMENT 'prefix as UTF-8 bytes',
                prefix VARCHAR(1024) NOT NULL,
                has_marker BOOLEAN NOT NULL DEFAULT FALSE,
                created_at DATETIME NOT NULL,
                touched CHAR(32) CHARACTER SET ascii NOT NULL,
                PRIMARY KEY (prefix_sort)
            ) {_TABLE}""",
        ],
    ),
]

MIGRATIONS.append(
    (
        2,
        "folder notifications not yet published",
        ["ALTER TABLE folders ADD COLUMN pending VARCHAR(32) CHARACTER SET ascii NULL"],
    )
)

MIGRATIONS.append(
    (
        3,
        "secrets the backend keeps (the pagination token key)",
        [
            f"""CREATE TABLE secrets (
                name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
                value VARBINARY(255) NOT NULL,
                created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
                PRIMARY KEY (name)
            ) {_TABLE}""",
        ],
    )
)

MIGRATIONS.append(
    (
        4,
        "placeholders (BlurHash and average colour) of processed images",
        ["ALTER TABLE images ADD COLUMN placeholder JSON NULL"],
    )
)

LATEST = MIGRATIONS[-1][0]


Migration = tuple[int, str, list[str]]


def migrate(connection: Any, report: Any = print, migrations: list[Migration] | None = None) -> int:
    """Bring the schema of ``connection``'s database to the last of
    ``migrations`` (default: this release's); returns how many were applied."""
    applied = 0
    with connection.cursor() as cur:
        cur.execute("SELECT GET_LOCK('image_pipeline_migrate', 60)")
        try:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INT NOT NULL PRIMARY KEY,"
                " description VARCHAR(200) NOT NULL,"
                " applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
                f") {_TABLE}"
            )
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            row = cur.fetchone()
            current = int(row[0]) if row else 0
            for version, description, statements in migrations or MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                    (version, description),
                )
                connection.commit()
                report(f"schema: applied {version} ({description})")
                applied += 1
            if not applied:
                report(f"schema: at version {current}")
        finally:
            cur.execute("SELECT RELEASE_LOCK('image_pipeline_migrate')")
    return applied
