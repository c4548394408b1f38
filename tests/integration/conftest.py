"""Integration fixtures: a real moto server in its own process, reached over a
socket through ``AWS_ENDPOINT_URL`` exactly as the deployed code reaches AWS,
and the Chalice app loaded for a stage and driven through ``chalice.test``."""

from __future__ import annotations

import importlib
import itertools
import json
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus, unquote, urlsplit

import boto3
import pymysql
import pytest
from chalice.local import LambdaContext
from chalice.test import Client

from chalicelib import settings as settings_module
from chalicelib.factory import mysql_connect
from chalicelib.settings import Settings
from devtools.emulator import moto_server, reset
from devtools.provision import ensure_schema, provision

MYSQL_HELP = (
    "the MySQL tests need a MySQL or MariaDB server: set "
    "MYSQL_TEST_URL=mysql://USER:PASSWORD@HOST:PORT (default mysql://root@127.0.0.1:3306), "
    "e.g. after `apt-get install mariadb-server` or with .ci/mariadb, which starts or "
    "installs one"
)


@pytest.fixture(scope="session")
def mysql_server() -> dict[str, str]:
    """Connection settings of the test server; a missing server fails under CI."""
    url = urlsplit(os.environ.get("MYSQL_TEST_URL", "mysql://root@127.0.0.1:3306"))
    server = {
        "DB_HOST": url.hostname or "127.0.0.1",
        "DB_PORT": str(url.port or 3306),
        "DB_USER": unquote(url.username or "root"),
        "DB_PASSWORD": unquote(url.password or ""),
    }
    try:
        pymysql.connect(
            host=server["DB_HOST"], port=int(server["DB_PORT"]), user=server["DB_USER"],
            password=server["DB_PASSWORD"], connect_timeout=5,
        ).close()  # fmt: skip
    except pymysql.err.Error as exc:
        message = f"{MYSQL_HELP} ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return server


@pytest.fixture(scope="session")
def mysql_database(mysql_server: dict[str, str]) -> Iterator[dict[str, str]]:
    """A fresh database for this run, at the latest schema; dropped afterwards."""
    env = mysql_server | {"DB_NAME": f"image_pipeline_test_{uuid.uuid4().hex[:12]}"}
    settings = Settings.from_env(BASE_ENV | env | {"DB_BACKEND": "mysql"})
    ensure_schema(settings, report=lambda _: None)
    yield env
    connection = mysql_connect(settings)()
    with connection.cursor() as cur:
        cur.execute(f"DROP DATABASE `{env['DB_NAME']}`")
    connection.close()


@pytest.fixture
def mysql_env(mysql_database: dict[str, str]) -> dict[str, str]:
    """The run's database, emptied for this test."""
    settings = Settings.from_env(BASE_ENV | mysql_database | {"DB_BACKEND": "mysql"})
    connection = mysql_connect(settings)()
    with connection.cursor() as cur:
        cur.execute("DELETE FROM images")
        cur.execute("DELETE FROM folders")
    connection.close()
    return mysql_database | {"DB_BACKEND": "mysql"}


@pytest.fixture(params=["dynamodb", "mysql"])
def base_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The minimal stage environment, once per repository backend."""
    if request.param == "mysql":
        return BASE_ENV | request.getfixturevalue("mysql_env")
    return dict(BASE_ENV)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean emulator, and an environment that can only reach it."""
    reset(moto_endpoint)
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    return moto_endpoint


def aws_key(key: str) -> str:
    """A key as S3 writes it into event records (form-encoded, '/' kept)."""
    return quote_plus(key, safe="/")


@dataclass
class Stack:
    env: dict[str, str]
    settings: Settings
    app: ModuleType
    client: Client
    s3: Any
    _sequence: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def bucket(self) -> str:
        return self.settings.source_bucket

    def sequencer(self) -> str:
        return f"{0x5B039F73C627CE8B + next(self._sequence) * 16:018X}"

    def put(self, key: str, data: bytes) -> str:
        return str(self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)["ETag"].strip('"'))

    def record(
        self,
        key: str,
        event_name: str = "ObjectCreated:Put",
        *,
        etag: str | None = None,
        size: int | None = None,
        sequencer: str | None = None,
    ) -> dict[str, Any]:
        obj: dict[str, Any] = {"key": aws_key(key), "sequencer": sequencer or self.sequencer()}
        if event_name.startswith("ObjectCreated"):
            if etag is None or size is None:
                head = self.s3.head_object(Bucket=self.bucket, Key=key)
                etag = etag or head["ETag"].strip('"')
                size = head["ContentLength"] if size is None else size
            obj.update({"eTag": etag, "size": size})
        return {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2026-11-21T21:00:00.123Z",
            "eventName": event_name,
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "image-pipeline",
                "bucket": {"name": self.bucket, "arn": f"arn:aws:s3:::{self.bucket}"},
                "object": obj,
            },
        }

    def deliver(self, record: dict[str, Any]) -> Any:
        """Invoke the registered handler for this record, as Lambda would."""
        name = (
            "handle_object_created"
            if record["eventName"].startswith("ObjectCreated")
            else "handle_object_removed"
        )
        return self.invoke(name, {"Records": [record]})

    def invoke(self, function: str, payload: Any) -> Any:
        """Call a Lambda function of the app as Lambda would, with the time a
        function of the stage has (``chalice.test``'s client gives every
        invocation 3 seconds, whatever the stage's ``lambda_timeout``)."""
        context = LambdaContext(function, 1769, max_runtime_ms=FUNCTION_TIMEOUT * 1000)
        return self.app.app.handler_map[function](payload, context)

    def upload(self, key: str, data: bytes) -> Any:
        self.put(key, data)
        return self.deliver(self.record(key))

    def delete(self, key: str) -> Any:
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        return self.deliver(self.record(key, "ObjectRemoved:Delete"))

    def get(self, path: str) -> tuple[int, Any]:
        response = self.client.http.get(path)
        return response.status_code, json.loads(response.body) if response.body else None

    def images(self, query: str = "") -> list[dict[str, Any]]:
        status, body = self.get(f"/images{query}")
        assert status == 200, body
        return list(body["images"])

    def keys(self, prefix: str = "") -> list[str]:
        bucket = self.settings.dest_bucket
        response = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for o in response.get("Contents", []))


BASE_ENV = {"SOURCE_BUCKET": "uploads", "DDB_TABLE": "images"}
FUNCTION_TIMEOUT = 60  # Chalice's default lambda_timeout, as the checked-in stages have
LOADED: list[ModuleType] = []


def load_app(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import a fresh ``app`` module under ``env``, as a new Lambda container would."""
    for name in list(Settings.__dataclass_fields__):
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings_module.load.cache_clear()
    sys.modules.pop("app", None)
    module = importlib.import_module("app")
    monkeypatch.setitem(sys.modules, "app", module)
    LOADED.append(module)
    return module


def make_stack(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    settings = Settings.from_env(env)
    provision(settings, report=lambda _: None)
    app = load_app(env, monkeypatch)
    project = tmp_path / "project"
    (project / ".chalice").mkdir(parents=True)
    config = {
        "version": "2.0",
        "app_name": "image-pipeline",
        "stages": {"test": {"environment_variables": env}},
    }
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    client = Client(app.app, stage_name="test", project_dir=str(project))
    return Stack(env, settings, app, client, boto3.client("s3"))


@pytest.fixture(autouse=True)
def _close_apps() -> Iterator[None]:
    """Release the connections of the app modules a test loaded, as a Lambda
    container going away would."""
    yield
    for app in LOADED:
        for getter in (app._pipeline, app._api):
            if getter.cache_info().currsize:
                getter().repository.close()
    LOADED.clear()


@pytest.fixture
def stack(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Stack:
    return make_stack(base_env, tmp_path, monkeypatch)


@contextmanager
def database_down(stack: Stack) -> Iterator[None]:
    """The records' store is unreachable for the block: the DynamoDB table is
    gone, or the MySQL table is renamed away under the live connection."""
    if stack.settings.db_backend == "dynamodb":
        boto3.client("dynamodb").delete_table(TableName=stack.settings.ddb_table)
        yield
        provision(stack.settings, report=lambda _: None)
        return
    connection = mysql_connect(stack.settings)()
    with connection.cursor() as cur:
        cur.execute("RENAME TABLE images TO images_away")
        try:
            yield
        finally:
            cur.execute("RENAME TABLE images_away TO images")
    connection.close()
