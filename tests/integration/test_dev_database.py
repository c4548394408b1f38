"""``manage.py dev --db mysql`` starts with an empty database, as the emulator
starts empty, but only ever empties a database it made itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from chalicelib.factory import mysql_connect
from chalicelib.settings import Settings
from devtools.dev import DatabaseNotOurs, prepare_database
from tests.integration.conftest import BASE_ENV


@pytest.fixture
def settings(mysql_server: dict[str, str]) -> Iterator[Settings]:
    name = f"image_pipeline_devtest_{uuid.uuid4().hex[:10]}"
    env = BASE_ENV | mysql_server | {"DB_BACKEND": "mysql", "DB_NAME": name}
    settings = Settings.from_env(env)
    yield settings
    server = mysql_connect(settings, database="")()
    with server.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    server.close()


def tables(settings: Settings) -> set[str]:
    server = mysql_connect(settings, database="")()
    try:
        with server.cursor() as cur:
            cur.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                (settings.db_name,),
            )
            return {row[0] for row in cur.fetchall()}
    finally:
        server.close()


def test_made_then_emptied_at_the_next_start(settings: Settings) -> None:
    said: list[str] = []
    prepare_database(settings, said.append)
    assert tables(settings) == {"made_by_manage_py_dev"}
    assert said[-1].startswith(f"database {settings.db_name} on ")
    assert ": created for this run" in said[-1]

    db = mysql_connect(settings)()
    with db.cursor() as cur:
        cur.execute("CREATE TABLE images (id INT)")
    db.close()
    prepare_database(settings, said.append)
    assert tables(settings) == {"made_by_manage_py_dev"}
    assert ": emptied for this run" in said[-1]


def test_a_database_it_did_not_make_is_refused_and_kept(settings: Settings) -> None:
    server = mysql_connect(settings, database="")()
    with server.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{settings.db_name}`")
        cur.execute(f"CREATE TABLE `{settings.db_name}`.images (id INT)")
        cur.execute(f"INSERT INTO `{settings.db_name}`.images VALUES (42)")
    server.commit()
    server.close()

    with pytest.raises(DatabaseNotOurs, match=r"was not made by manage\.py dev"):
        prepare_database(settings, lambda _: None)

    db = mysql_connect(settings)()
    with db.cursor() as cur:
        cur.execute("SELECT id FROM images")
        assert cur.fetchall() == ((42,),)
    db.close()
