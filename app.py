"""Chalice wiring: handlers, their registration by mode, routes, singletons.

Registration depends on settings read at import (Chalice needs the bucket and
queue names when it packages the app):
  * direct mode (no ``EVENTS_QUEUE``): ``handle_object_created`` and
    ``handle_object_removed`` receive the bucket's S3 events;
  * SQS mode: ``handle_queued_events`` consumes ``EVENTS_QUEUE`` and the
    direct handlers stay unregistered, so no upload is processed twice.
A bare ``import app`` never fails on a missing setting; the Chalice CLI does
(``chalice deploy/package/local``), with the list of what is missing.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from chalice import (
    BadRequestError,
    Chalice,
    CORSConfig,
    ForbiddenError,
    IAMAuthorizer,
    NotFoundError,
    Rate,
    Response,
)
from chalice.app import S3Event, SQSEvent

from chalicelib import api, events, settings, web

app: Chalice = web.ThreadLocalChalice(app_name="image-pipeline")
app.log.setLevel(logging.INFO)
logging.getLogger("image_pipeline").setLevel(logging.INFO)
# botocore logs at INFO where it found the credentials and each client's
# endpoint; ``chalice local`` sets the root logger to INFO, so without this
# every process of the local stack would print them among the events' lines.
logging.getLogger("botocore").setLevel(logging.WARNING)


def _startup_settings() -> settings.Settings | None:
    try:
        return settings.load()
    except settings.SettingsError as exc:
        if os.environ.get("AWS_CHALICE_CLI_MODE") == "true":
            # chalice deploy / package / local: stop with the message, not a traceback.
            sys.stderr.write(f"error: {exc}\n")
            raise SystemExit(2) from None
        return None  # reported when a handler first needs the settings


SETTINGS = _startup_settings()


@contextlib.contextmanager
def _long_lived() -> Iterator[None]:
    """Around building what the process keeps (importing boto3, loading its
    models, making the clients): some hundreds of thousands of objects that
    live as long as the process, and no garbage to speak of. The cycle
    collector would walk them some hundred times meanwhile, and again in
    every later full collection: about 20 ms of a cold start. It is paused
    while they are made (unless paused already), and what exists then is
    frozen (``gc.freeze``: left out of later collections; objects are still
    freed when their last reference goes)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@functools.cache
def _pipeline() -> Any:
    with _long_lived():
        from chalicelib.factory import build_pipeline

        return build_pipeline(settings.load())


@functools.cache
def _api() -> api.ImagesApi:
    with _long_lived():
        from chalicelib.factory import build_api

        return build_api(settings.load())


# -- S3 and SQS events ----------------------------------------------------------
def _handle_s3(event: S3Event) -> list[str]:
    _remember_request(event)
    deadline = _deadline(getattr(event, "context", None))
    # S3Event.key is decoded already; parse the raw record so keys are decoded once.
    parsed = list(events.parse_notification(event.to_dict()))
    _start_imaging(events.sources(parsed, settings.load()))
    pipeline = _pipeline()
    with pipeline.invalidation_batch():  # one CDN invalidation for the notification
        return [pipeline.handle(e, deadline).value for e in parsed]


def _start_imaging(sources: int) -> None:
    """Start the imaging workers that ``sources`` uploads need, before the
    pipeline is built: on a cold start each loads its engine in its own
    process while this one imports boto3 and makes its clients, rather than
    after. An invocation that decodes nothing (removals, renditions, folders)
    starts none."""
    if sources:
        from chalicelib.sandbox import isolated_imaging

        isolated_imaging().start(sources)


def _deadline(context: Any) -> float | None:
    """When the invocation must have returned (``time.monotonic()``), from Lambda's context."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return None if remaining is None else time.monotonic() + remaining() / 1000


def _remember_request(event: Any) -> None:
    """Put the invocation's request id into every log line it writes."""
    from chalicelib.observability import request_id

    context = getattr(event, "context", None)
    request_id.set(getattr(context, "aws_request_id", None))


def handle_object_created(event: S3Event) -> list[str]:
    return _handle_s3(event)


def handle_object_removed(event: S3Event) -> list[str]:
    return _handle_s3(event)


def handle_queued_events(event: SQSEvent) -> list[str]:
    """Each message deleted once handled, several at once (one per imaging
    worker); when time runs short, the rest are handed back and the
    invocation raises (``chalicelib.queue``)."""
    from chalicelib.factory import batch_concurrency
    from chalicelib.queue import Message, process_batch
    from chalicelib.sandbox import source_seconds

    _remember_request(event)
    messages = [
        Message(r.body, r.receipt_handle, r.to_dict().get("eventSourceARN", "")) for r in event
    ]
    _start_imaging(_queued_sources([m.body for m in messages], settings.load()))
    pipeline = _pipeline()
    context = getattr(event, "context", None)
    deadline = _deadline(context)
    # Asked before each message starts (the local pump's context says 0 once it is stopping).
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return process_batch(
        messages,
        lambda e: pipeline.handle(e, deadline).value,
        _sqs_queue(),
        time_left=None if remaining is None else lambda: remaining() / 1000,
        needed=source_seconds(pipeline.settings.processing_timeout),
        concurrency=batch_concurrency(pipeline.imaging),
    )


def _queued_sources(bodies: list[str], config: settings.Settings) -> int:
    """How many of the messages have an upload to decode (one worker each at
    most: a message's events are handled in turn)."""
    found = 0
    for body in bodies:
        with contextlib.suppress(Exception):  # an unreadable body is process_batch's to report
            if events.sources(events.parse_body(body), config):
                found += 1
    return found


@functools.cache
def _sqs_queue() -> Any:
    from chalicelib.factory import client
    from chalicelib.queue import SqsQueue

    return SqsQueue(client("sqs"))


if SETTINGS is not None and not SETTINGS.sqs_mode:
    handle_object_created = app.on_s3_event(
        bucket=SETTINGS.source_bucket, events=["s3:ObjectCreated:*"]
    )(handle_object_created)
    handle_object_removed = app.on_s3_event(
        bucket=SETTINGS.source_bucket, events=["s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"]
    )(handle_object_removed)
elif SETTINGS is not None:
    from chalicelib.queue import BATCH_SIZE

    handle_queued_events = app.on_sqs_message(queue=SETTINGS.events_queue, batch_size=BATCH_SIZE)(
        handle_queued_events
    )


if SETTINGS is not None and SETTINGS.db_backend == "mysql":

    @app.schedule(Rate(1, unit=Rate.HOURS), name="purge_tombstones")
    def purge_tombstones(event: Any) -> int:
        """MySQL has no TTL: delete tombstones past their expiry once an hour."""
        from chalicelib.repositories.mysql import MySQLRepository

        repository = _pipeline().repository
        assert isinstance(repository, MySQLRepository)
        return repository.purge_tombstones()


@app.lambda_function(name="extract_metadata")
def extract_metadata(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The child function: ``{"bucket", "key", "etag"?}`` -> the metadata dict."""
    from chalicelib.sandbox import isolated_imaging

    _start_imaging(1)  # loading while the client is made
    from chalicelib.factory import s3_client
    from chalicelib.metadata_function import extract
    from chalicelib.storage import S3Storage

    storage = S3Storage(s3_client())
    return extract(storage, settings.load(), event, isolated_imaging(), _deadline(context))


# -- REST -----------------------------------------------------------------------
def _route_options() -> dict[str, Any]:
    options: dict[str, Any] = {}
    auth = os.environ.get("API_AUTH", "none").lower()
    if auth == "iam":
        options["authorizer"] = IAMAuthorizer()
    elif auth == "api_key":
        options["api_key_required"] = True
    origin = os.environ.get("CORS_ORIGIN")
    if origin:
        options["cors"] = CORSConfig(allow_origin=origin, max_age=600)
    return options


_ROUTE = _route_options()


def _rest(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return call()
    except api.BadRequest as exc:
        raise BadRequestError(str(exc)) from None
    except api.NotFound as exc:
        raise NotFoundError(str(exc)) from None
    except PermissionError as exc:
        raise ForbiddenError(str(exc)) from None


def _query() -> dict[str, str]:
    request = app.current_request
    return dict(request.query_params or {}) if request is not None else {}


@app.route("/", methods=["GET"])
def gallery() -> Response:
    """The gallery page; open to all like any static page (its API calls are not)."""
    from chalicelib.gallery import page

    html, headers = page()
    return Response(body=html, status_code=200, headers=dict(headers))


@app.route("/favicon.ico", methods=["GET"])
def favicon() -> Response:
    """The icon browsers ask for; open like ``GET /``."""
    from chalicelib import favicon as icon

    return Response(body=icon.SVG, status_code=200, headers=dict(icon.HEADERS))


@app.route("/uploads", methods=["POST"], **_ROUTE)
def create_upload() -> dict[str, Any]:
    request = app.current_request
    try:
        body = request.json_body if request is not None else None
    except RecursionError:  # json.loads of a deeply nested body
        raise BadRequestError("the JSON body nests too deeply") from None
    return _rest(lambda: _uploads().create(body))


@functools.cache
def _uploads() -> Any:
    with _long_lived():
        from chalicelib.factory import build_uploads

        return build_uploads(settings.load())


@app.route("/images", methods=["GET"], **_ROUTE)
def list_images() -> dict[str, Any]:
    params = _query()
    return _rest(lambda: _api().list_images(params))


@app.route("/images/{image_id}", methods=["GET"], **_ROUTE)
def get_image(image_id: str) -> dict[str, Any]:
    return _rest(lambda: _api().get_image(image_id))


@app.route("/folders", methods=["GET"], **_ROUTE)
def list_folders() -> dict[str, Any]:
    params = _query()
    return _rest(lambda: _api().list_folders(params))
