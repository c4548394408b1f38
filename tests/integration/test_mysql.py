"""What only the MySQL backend has: connections, secrets, migrations, purging."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import boto3
import pymysql
import pytest

from chalicelib.factory import build_repository, mysql_connect
from chalicelib.repositories.base import TOMBSTONE_SECONDS, Tombstone
from chalicelib.repositories.mysql import Connector, MySQLRepository, connect_function
from chalicelib.repositories.mysql_schema import MIGRATIONS, migrate
from chalicelib.settings import Settings
from tests.integration.conftest import BASE_ENV, load_app
from tests.integration.test_repository_contract import record


@pytest.fixture
def settings(mysql_env: dict[str, str]) -> Settings:
    return Settings.from_env(BASE_ENV | mysql_env)


@pytest.fixture
def admin(settings: Settings) -> Iterator[pymysql.Connection]:
    connection = mysql_connect(settings)()
    yield connection
    connection.close()


def connection_id(connector: Connector) -> int:
    def work(cur: pymysql.cursors.Cursor) -> int:
        cur.execute("SELECT CONNECTION_ID()")
        row = cur.fetchone()
        assert row is not None
        return int(row[0])

    return connector.run(work)


def connections_to(admin: pymysql.Connection, database: str) -> int:
    with admin.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s AND id <> "
            "CONNECTION_ID()",
            (database,),
        )
        row = cur.fetchone()
        assert row is not None
        return int(row[0])


def test_one_connection_is_reused(settings: Settings, admin: pymysql.Connection) -> None:
    connector = Connector(mysql_connect(settings))
    repo = MySQLRepository(connector)
    first = connection_id(connector)
    for i in range(20):
        repo.save(record(f"reuse/{i}.jpg"), None)
    assert connection_id(connector) == first
    assert connections_to(admin, settings.db_name) == 1
    connector.close()
    assert connections_to(admin, settings.db_name) == 0


def test_each_thread_has_its_own_connection(settings: Settings, admin: pymysql.Connection) -> None:
    """Two threads at once use two connections (one connection shared by
    threads answers one thread's query with another's rows); a thread started
    after they ended takes over one of theirs instead of opening another."""
    connector = Connector(mysql_connect(settings))
    both_connected = threading.Barrier(2, timeout=10)

    def own_connection(_: int) -> int:
        mine = connection_id(connector)
        both_connected.wait()
        assert connection_id(connector) == mine
        return mine

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(own_connection, range(2))
    assert first != second
    assert connections_to(admin, settings.db_name) == 2

    with ThreadPoolExecutor(1) as pool:
        later = pool.submit(connection_id, connector).result()
    assert later in (first, second)
    assert connections_to(admin, settings.db_name) == 2

    connector.close()  # every thread's
    assert connections_to(admin, settings.db_name) == 0


def test_a_killed_connection_is_replaced(settings: Settings, admin: pymysql.Connection) -> None:
    connector = Connector(mysql_connect(settings))
    repo = MySQLRepository(connector)
    first = connection_id(connector)
    with admin.cursor() as cur:
        cur.execute("KILL %s", (first,))  # what a server restart does to it

    repo.save(record("after-kill.jpg"), None)

    assert connection_id(connector) != first
    assert repo.get(record("after-kill.jpg").id) is not None
    assert connections_to(admin, settings.db_name) == 1
    connector.close()


def test_server_idle_timeout_is_survived(settings: Settings, admin: pymysql.Connection) -> None:
    for idle_ping in (0.5, 3600.0):  # pinged after idleness, or found dead mid-call
        connector = Connector(mysql_connect(settings), idle_ping=idle_ping)

        def shorten(cur: pymysql.cursors.Cursor) -> None:
            cur.execute("SET SESSION wait_timeout = 1")

        connector.run(shorten)
        first = connection_id(connector)
        time.sleep(2.5)  # the server drops the idle connection

        assert MySQLRepository(connector).get("nothing-here") is None
        assert connection_id(connector) != first
        connector.close()
    assert connections_to(admin, settings.db_name) == 0


def test_password_from_secrets_manager(
    aws: str,
    settings: Settings,
    admin: pymysql.Connection,
) -> None:
    with admin.cursor() as cur:
        cur.execute("DROP USER IF EXISTS 'ip_secret'@'%'")
        cur.execute("CREATE USER 'ip_secret'@'%' IDENTIFIED BY 'from-the-secret'")
        cur.execute(f"GRANT ALL ON `{settings.db_name}`.* TO 'ip_secret'@'%'")
    arn = boto3.client("secretsmanager").create_secret(
        Name="db", SecretString=json.dumps({"username": "ip_secret", "password": "from-the-secret"})
    )["ARN"]
    env = BASE_ENV | {
        "DB_BACKEND": "mysql", "DB_HOST": settings.db_host, "DB_PORT": str(settings.db_port),
        "DB_USER": "someone-else", "DB_PASSWORD": "wrong", "DB_NAME": settings.db_name,
        "DB_SECRET_ARN": arn,
    }  # fmt: skip
    try:
        repo = build_repository(Settings.from_env(env))
        repo.save(record("secret.jpg"), None)
        assert repo.get(record("secret.jpg").id) is not None
        repo.close()
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP USER 'ip_secret'@'%'")


def test_migrations_are_versioned_and_idempotent(settings: Settings) -> None:
    connect = connect_function(
        settings.db_host, settings.db_port, settings.db_user, settings.db_password, ""
    )
    server = connect()
    with server.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS image_pipeline_migrations")
        cur.execute("CREATE DATABASE image_pipeline_migrations")
    connection = connect_function(
        settings.db_host, settings.db_port, settings.db_user, settings.db_password,
        "image_pipeline_migrations",
    )()  # fmt: skip
    try:
        said: list[str] = []
        first = MIGRATIONS[:1]  # a database made by the first release
        assert migrate(connection, said.append, first) == 1
        assert migrate(connection, said.append, first) == 0
        assert migrate(connection, said.append) == len(MIGRATIONS) - 1  # this release
        later = [*MIGRATIONS, (99, "a later column", ["ALTER TABLE images ADD COLUMN note TEXT"])]
        assert migrate(connection, said.append, later) == 1
        assert said[:2] == ["schema: applied 1 (images and folders)", "schema: at version 1"]
        assert said[-1] == "schema: applied 99 (a later column)"
        with connection.cursor() as cur:
            cur.execute("SELECT version FROM schema_version ORDER BY version")
            assert [r[0] for r in cur.fetchall()] == [v for v, _, _ in later]
            cur.execute("SHOW COLUMNS FROM images LIKE 'note'")
            assert cur.fetchone() is not None
            cur.execute("SHOW COLUMNS FROM folders LIKE 'pending'")
            assert cur.fetchone() is not None
            cur.execute(
                "SELECT character_set_name, collation_name FROM information_schema.columns"
                " WHERE table_schema = DATABASE() AND table_name = 'images'"
                " AND column_name = 's3_key'"
            )
            assert cur.fetchone() == ("utf8mb4", "utf8mb4_bin")
    finally:
        connection.close()
        with server.cursor() as cur:
            cur.execute("DROP DATABASE image_pipeline_migrations")
        server.close()


def test_listing_uses_its_index_not_a_scan(admin: pymysql.Connection) -> None:
    with admin.cursor() as cur:
        cur.execute(
            "EXPLAIN SELECT id FROM images FORCE INDEX (by_folder) WHERE status = 'processed'"
            " AND folder_hash = 'x' AND (list_sort < 'b' OR (list_sort = 'b' AND id < 'c'))"
            " ORDER BY list_sort DESC, id DESC LIMIT 51"
        )
        columns = [d[0] for d in cur.description or ()]
        plan = dict(zip(columns, cur.fetchone() or (), strict=True))
    assert plan["key"] == "by_folder"
    assert "filesort" not in str(plan.get("Extra") or "")


def test_expired_tombstones_are_purged(settings: Settings) -> None:
    repo = build_repository(settings)
    assert isinstance(repo, MySQLRepository)
    rec = record("old/tomb.jpg")
    version = repo.save(rec, None)
    repo.bury(rec.id, "src", rec.key, Tombstone("B", "2026-11-21T11:00:00Z"), version)

    assert repo.purge_tombstones() == 0  # not expired yet
    later = datetime.now(UTC) + timedelta(seconds=TOMBSTONE_SECONDS + 60)
    assert repo.purge_tombstones(later) == 1
    assert repo.load(rec.id) is None
    repo.close()


def test_mysql_stages_schedule_the_purge(
    mysql_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = load_app(BASE_ENV | mysql_env, monkeypatch)
    assert "purge_tombstones" in app.app.handler_map
    assert "purge_tombstones" not in load_app(BASE_ENV, monkeypatch).app.handler_map
