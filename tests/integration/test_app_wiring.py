"""Registration by mode, settings failures, and transient faults that must raise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pymysql
import pytest
from botocore.exceptions import ClientError

from devtools.provision import provision
from tests.integration.conftest import BASE_ENV, Stack, database_down, load_app, make_stack
from tests.support import jpeg

PROJECT = Path(__file__).resolve().parents[2]
ROUTES = {"list_images", "get_image", "list_folders", "gallery", "favicon", "create_upload"}


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bare_import_never_fails_on_missing_settings() -> None:
    done = run_python("import app; print(sorted(app.app.handler_map))", {})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sorted({"extract_metadata", *ROUTES}))


def test_chalice_cli_mode_stops_on_missing_settings() -> None:
    done = run_python("import app", {"AWS_CHALICE_CLI_MODE": "true"})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "SOURCE_BUCKET is required" in done.stderr
    assert "DDB_TABLE is required" in done.stderr


def test_direct_mode_registers_s3_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    app = load_app(BASE_ENV, monkeypatch)
    assert set(app.app.handler_map) - ROUTES == {
        "handle_object_created",
        "handle_object_removed",
        "extract_metadata",
    }
    configs = {c.name: c for c in app.app.event_sources}
    assert configs["handle_object_created"].bucket == "uploads"
    assert configs["handle_object_created"].events == ["s3:ObjectCreated:*"]
    assert configs["handle_object_removed"].events == [
        "s3:ObjectRemoved:*",
        "s3:LifecycleExpiration:*",
    ]


def test_sqs_mode_registers_only_the_queue_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    app = load_app(BASE_ENV | {"EVENTS_QUEUE": "uploads-events"}, monkeypatch)
    assert set(app.app.handler_map) - ROUTES == {"handle_queued_events", "extract_metadata"}
    assert callable(app.handle_object_created)


def test_database_outage_raises_and_the_retry_converges(stack: Stack) -> None:
    stack.put("retry.jpg", jpeg(400, 300))
    event = stack.record("retry.jpg")

    with database_down(stack), pytest.raises((ClientError, pymysql.err.Error)):
        stack.deliver(event)

    assert stack.deliver(event) == ["processed"]
    assert [i["key"] for i in stack.images()] == ["retry.jpg"]


def test_rendition_write_failure_raises_and_leaves_no_record(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(base_env | {"DEST_BUCKET": "renditions"}, tmp_path, monkeypatch)
    stack.put("photo.jpg", jpeg(400, 300))
    event = stack.record("photo.jpg")
    boto3.client("s3").delete_bucket(Bucket="renditions")

    with pytest.raises(ClientError, match="NoSuchBucket"):
        stack.deliver(event)
    assert stack.images() == []  # renditions before records: nothing points at missing objects

    provision(stack.settings, report=lambda _: None)
    assert stack.deliver(event) == ["processed"]
    assert stack.keys("resized/") == [
        "resized/large/photo.jpg",
        "resized/medium/photo.jpg",
        "resized/thumb/photo.jpg",
    ]


@pytest.mark.parametrize("auth", ["none", "iam", "api_key"])
def test_api_auth_guards_every_route_but_the_page(
    auth: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = load_app(BASE_ENV | {"API_AUTH": auth}, monkeypatch)
    for path, method in [("/images", "GET"), ("/images/{image_id}", "GET"),
                         ("/folders", "GET"), ("/uploads", "POST")]:  # fmt: skip
        route = app.app.routes[path][method]
        assert (route.authorizer is not None) == (auth == "iam"), path
        assert bool(route.api_key_required) == (auth == "api_key"), path
    page = app.app.routes["/"]["GET"]
    assert page.authorizer is None and not page.api_key_required


def test_cors_for_the_one_configured_origin(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(BASE_ENV | {"CORS_ORIGIN": "https://photos.example"}, tmp_path, monkeypatch)
    response = stack.client.http.get("/images")
    assert response.headers["Access-Control-Allow-Origin"] == "https://photos.example"
    plain = make_stack(BASE_ENV, tmp_path / "plain", monkeypatch)
    assert "Access-Control-Allow-Origin" not in plain.client.http.get("/images").headers


def test_gallery_page_headers(stack: Stack) -> None:
    response = stack.client.http.get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
    assert "unsafe-inline" not in csp
    assert b"image-pipeline gallery" in response.body


@pytest.mark.parametrize("engine", ["pillow", "vips"])
def test_import_app_loads_nothing_a_path_may_not_use(engine: str) -> None:
    """Cold start: the API function needs neither Pillow, pyvips, PyMySQL nor boto3 to import."""
    code = (
        "import sys, app; print(sorted(m for m in ('PIL', 'pymysql', 'boto3', 'pyvips')"
        " if m in sys.modules))"
    )
    done = run_python(code, {"SOURCE_BUCKET": "b", "DDB_TABLE": "t", "IMAGE_ENGINE": engine})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


STARTED_WORKERS = """
import json, sys
import app
from chalicelib.sandbox import isolated_imaging

def deliver(handler, name, key):
    record = {"eventSource": "aws:s3", "eventName": name, "eventTime": "2026-11-21T21:00:00Z",
              "s3": {"bucket": {"name": "uploads"},
                     "object": {"key": key, "size": 10, "eTag": "e", "sequencer": "0A"}}}
    try:
        outcome = handler({"Records": [record]}, None)
    except Exception as exc:  # the stage's table does not exist
        outcome = type(exc).__name__
    return [outcome, isolated_imaging().pool.started, "boto3" in sys.modules]

print(json.dumps([
    deliver(app.handle_object_removed, "ObjectRemoved:Delete", "gone.jpg"),
    deliver(app.handle_object_created, "ObjectCreated:Put", "resized/thumb/a.jpg"),
    deliver(app.handle_object_created, "ObjectCreated:Put", "a.jpg"),
]))
"""


def test_an_upload_starts_its_imaging_worker_before_the_pipeline_needs_it(aws: str) -> None:
    """A fresh container: the removal handler and a rendition's event start no
    worker; an upload starts one as the invocation begins, before its pipeline
    reads anything (here its first read, of a table that does not exist, fails)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    done = run_python(STARTED_WORKERS, env | BASE_ENV | {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769"})
    assert done.returncode == 0, done.stderr
    removed, rendition, upload = json.loads(done.stdout)
    # The removal's pipeline was built (boto3 imported) and read the table.
    assert removed == ["ResourceNotFoundException", 0, True]
    assert rendition == [["ignored"], 0, True]
    assert upload == ["ResourceNotFoundException", 1, True]


def test_a_queued_batch_starts_a_worker_per_message_with_an_upload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = load_app(BASE_ENV | {"EVENTS_QUEUE": "uploads-events"}, monkeypatch)

    def body(*records: tuple[str, str]) -> str:
        return json.dumps(
            {
                "Records": [
                    {"eventSource": "aws:s3", "eventName": name,
                     "s3": {"bucket": {"name": "uploads"}, "object": {"key": key}}}
                    for name, key in records
                ]
            }
        )  # fmt: skip

    bodies = [
        body(("ObjectCreated:Put", "a.jpg")),
        body(("ObjectCreated:Put", "b.jpg"), ("ObjectCreated:Put", "c.png")),  # one at a time
        body(("ObjectCreated:Put", "resized/thumb/a.jpg"), ("ObjectRemoved:Delete", "d.jpg")),
        "not JSON",  # dropped by the batch, as before
    ]
    assert app._queued_sources(bodies, app.settings.load()) == 2


@pytest.mark.parametrize("collecting", [True, False])
def test_what_the_process_keeps_is_left_out_of_garbage_collection(collecting: bool) -> None:
    """Building the pipeline (boto3, its models, the clients) freezes what it
    made for the cycle collector, and leaves the collector as it found it."""
    code = (
        "import gc, app\n"
        f"{'' if collecting else 'gc.disable()'}\n"
        "frozen = gc.get_freeze_count()\n"
        "app._pipeline()\n"
        "print(gc.isenabled(), gc.get_freeze_count() - frozen > 10_000)"
    )
    env = BASE_ENV | {"AWS_DEFAULT_REGION": "us-east-1", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769"}
    done = run_python(code, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(collecting), "True"]
