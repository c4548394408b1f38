"""Concurrent requests never see each other's answers.

The REST API runs in Chalice's threaded local server (what ``chalice local``
and ``make dev`` serve), over a stack seeded with a few hundred records, on
both backends. Every query is first answered alone; then eight client threads
send a few hundred mixed queries at once, and every answer must be the one
made alone, with no 500.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer, LocalGateway

from chalicelib import keys
from chalicelib.factory import build_repository
from chalicelib.models import Status
from chalicelib.web import ThreadLocalChalice
from tests.integration.conftest import Stack
from tests.integration.test_repository_contract import record
from tests.support import without_urls

FOLDERS = ["b100/p1/", "b100/p2/", "b100/bad/", "a/", "", "deep/x/y/"]
# Records per folder (every fifth one failed) and requests in all, by backend:
# the emulator's DynamoDB reads every item of the table for each Query (about
# a millisecond an item), so its stack is smaller to keep the test fast.
SIZES = {"mysql": (50, 400), "dynamodb": (20, 240)}
CLIENTS = 8
LISTINGS = 0.3  # the share of listings among the concurrent requests (the rest: lookups)
DEADLINE = 60.0  # seconds for the concurrent part, far above what it takes
EPOCH = datetime(2026, 11, 21, 10)

Answer = tuple[int, Any]  # status and body, without presigned URLs


def seed(stack: Stack, per_folder: int) -> list[str]:
    """Records across folders and both statuses, written straight to the
    repository, one second apart; returns their keys."""
    repository = build_repository(stack.settings)
    written: list[str] = []
    try:
        for folder in FOLDERS:
            for i in range(per_folder):
                key = f"{folder}{i:03d}.jpg"
                status = Status.FAILED if i % 5 == 0 else Status.PROCESSED
                uploaded_at = EPOCH + timedelta(seconds=len(written))
                made = record(key, uploaded_at.strftime("%Y-%m-%dT%H:%M:%SZ"), status)
                image_id = keys.image_id(stack.bucket, key)
                repository.save(made.with_(id=image_id, bucket=stack.bucket), None)
                written.append(key)
        repository.touch_folders([f for f in FOLDERS if f], "2026-11-21T10:00:00Z")
    finally:
        repository.close()
    return written


def normal(path: str, status: int, body: Any) -> Answer:
    """An answer without its presigned URLs (they carry the time they were made)."""
    if status == 200 and path.startswith("/images/"):
        body = without_urls(body)
    elif status == 200 and path.startswith("/images"):
        body = body | {"images": [without_urls(i) for i in body["images"]]}
    return status, body


class Http:
    """One client's kept-alive connection to the local server."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._connection: http.client.HTTPConnection | None = None

    def get(self, path: str) -> Answer:
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
        self._connection.request("GET", path)
        response = self._connection.getresponse()
        data = response.read()
        return normal(path, response.status, json.loads(data) if data else None)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class QuietHandler(ChaliceRequestHandler):
    """Chalice's request handler without a log line per request, and with
    Nagle's algorithm off: it writes headers and body apart, so each answer on
    a kept-alive connection would otherwise wait for a delayed ACK (40 ms)."""

    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def local_server(stack: Stack) -> Iterator[int]:
    """The stack's app in Chalice's threaded local server, on a free port."""
    config = Config.create(chalice_stage="test", app_name="image-pipeline")
    server = LocalDevServer(stack.app.app, config, "127.0.0.1", 0, handler_cls=QuietHandler)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server.server_address[1]
    finally:
        server.shutdown()
        server.server.server_close()
        thread.join(10)


def url(path: str, params: dict[str, Any]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


@dataclass
class Alone:
    """Each query's answer made with nothing else running."""

    listings: dict[str, Answer]
    lookups: dict[str, Answer]


def answer_alone(client: Http, written: list[str], bucket: str) -> Alone:
    """Listings (every folder and status, their next pages, folders) and
    lookups (single keys, single ids, one unknown)."""
    queries: list[dict[str, Any]] = [{}, {"limit": 7}, {"status": "failed", "limit": 100}]
    for folder in [*(f or "/" for f in FOLDERS), "nothing/"]:
        queries += [{"folder": folder, "status": s, "limit": 4} for s in ("processed", "failed")]
    listings: dict[str, Answer] = {}
    for base, query in [("/images", q) for q in queries] + [("/folders", {"limit": 2})]:
        for _ in range(3):  # the first three pages
            path = url(base, query)
            listings[path] = client.get(path)
            status, body = listings[path]
            assert status == 200, (path, body)
            if not body["next_token"]:
                break
            query = query | {"next_token": body["next_token"]}
    paths = ["/images/" + keys.image_id(bucket, "never/uploaded.jpg"), "/folders"]
    for key in written[::7]:
        paths += [url("/images", {"key": key}), url("/images", {"key": key, "status": "failed"})]
        paths.append(f"/images/{keys.image_id(bucket, key)}")
    return Alone(listings, {path: client.get(path) for path in paths})


@dataclass
class Outcome:
    answers: int
    errors: int  # status 500
    wrong: list[tuple[str, Answer]]  # path, what came instead of the answer made alone
    seconds: float


def hammer(port: int, alone: Alone, requests: int) -> Outcome:
    """``CLIENTS`` threads send ``requests`` queries in all, picked at random;
    each client reopens its connection every ten requests (the server starts a
    thread per connection)."""
    expected = alone.listings | alone.lookups
    listings, lookups = sorted(alone.listings), sorted(alone.lookups)
    deadline = time.monotonic() + DEADLINE

    def client(n: int) -> list[tuple[str, Answer]]:
        pick = random.Random(n)
        http = Http(port)
        seen = []
        try:
            for i in range(requests // CLIENTS):
                if time.monotonic() > deadline:
                    break
                if i % 10 == 0:
                    http.close()
                path = pick.choice(listings if pick.random() < LISTINGS else lookups)
                seen.append((path, http.get(path)))
        finally:
            http.close()
        return seen

    start = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [answer for seen in pool.map(client, range(CLIENTS)) for answer in seen]
    return Outcome(
        answers=len(results),
        errors=sum(1 for _, (status, _) in results if status == 500),
        wrong=[(path, got) for path, got in results if got != expected[path]],
        seconds=time.monotonic() - start,
    )


def test_concurrent_requests_get_their_own_answers(stack: Stack) -> None:
    per_folder, requests = SIZES[stack.settings.db_backend]
    written = seed(stack, per_folder)
    with local_server(stack) as port:
        client = Http(port)
        try:
            alone = answer_alone(client, written, stack.bucket)
        finally:
            client.close()
        assert {status for status, _ in alone.lookups.values()} == {200, 404}

        outcome = hammer(port, alone, requests)

    assert outcome.answers == requests, f"only {outcome.answers} answers in {DEADLINE}s"
    assert outcome.errors == 0, f"{outcome.errors} answers of {outcome.answers} were 500"
    assert outcome.wrong == [], f"{len(outcome.wrong)} answers of {outcome.answers} were wrong"


def test_each_thread_sees_its_own_request() -> None:
    """Two requests served at once on two threads: each view reads its own
    query string and Lambda context, though the other thread's request arrived
    in between."""
    app = ThreadLocalChalice(app_name="echo", configure_logs=False)
    both_arrived = threading.Barrier(2, timeout=10)

    @app.route("/echo")
    def echo() -> dict[str, Any]:
        both_arrived.wait()
        request = app.current_request
        assert request is not None and request.query_params is not None
        return {"q": request.query_params["q"], "id": app.lambda_context.aws_request_id}

    gateway = LocalGateway(app, Config.create())

    def call(q: str) -> tuple[str, str]:
        response = gateway.handle_request("GET", f"/echo?q={q}", {}, None)
        body = json.loads(response["body"])
        return body["q"], body["id"]

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(call, ["first", "second"]))

    assert [q for q, _ in answers] == ["first", "second"]
    assert answers[0][1] != answers[1][1]
