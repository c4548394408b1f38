"""``manage.py dev``: the whole pipeline on this machine, no AWS account.

One process tree: moto's server (S3, DynamoDB, SNS, SQS), an event pump that
long-polls the stage's queue and hands each batch to ``handle_queued_events``
(the code Lambda runs; several batches at once, one per imaging worker), and
``chalice local`` serving the REST API and the gallery. SIGINT or SIGTERM
stops all of it: the pump receives no more, the messages being handled finish.
The children die with this process even when it is killed outright
(``devtools.lifeline``), and ``.local-stack.json`` tells the commands that
join the stack (``backfill``, ``pump``) where it is (``devtools.running``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import IO, Any

import boto3

from chalicelib.observability import human_line
from chalicelib.settings import Settings
from devtools.emulator import moto_server
from devtools.lifeline import Lifeline
from devtools.provision import provision
from devtools.running import RunningStack, announce, withdraw
from devtools.stages import PROJECT_DIR, function_timeout, stage_environment

CHALICE = Path(sys.executable).with_name("chalice")
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class Options:
    host: str = "127.0.0.1"
    aws_port: int = 4567
    api_port: int = 8000
    db: str = "dynamodb"
    json: bool = False  # the terminal gets the JSON/EMF line of each event, as Lambda logs it

    @property
    def stage(self) -> str:
        return "local-mysql" if self.db == "mysql" else "local"


# How long a stop waits for the messages being handled (each at most
# PROCESSING_TIMEOUT to decode; a photo takes about a second).
PUMP_STOP_SECONDS = 15


class PortInUse(SystemExit):
    pass


def check_port(host: str, port: int, option: str) -> None:
    """Refuse a port that something listens on. With SO_REUSEADDR, as the
    servers themselves bind, so that connections of an earlier run waiting in
    TIME_WAIT do not count as "in use"."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"error: {host}:{port} is in use ({exc.strerror}); stop what uses it "
                f"or pick another port with {option}"
            ) from None


class PumpContext:
    """The Lambda context the pump gives each invocation: the function's
    ``lambda_timeout`` from its start, and no time left at all once the pump is
    stopping, so that the handler starts no further message of its batch and
    hands the rest back, as it does when an invocation runs out of time."""

    def __init__(self, timeout_ms: int, stopping: threading.Event) -> None:
        from chalice.local import LambdaContext

        self._lambda = LambdaContext("handle_queued_events", 1769, timeout_ms)
        self._stopping = stopping
        self.aws_request_id = self._lambda.aws_request_id
        self.function_name = self._lambda.function_name
        self.memory_limit_in_mb = self._lambda.memory_limit_in_mb

    def get_remaining_time_in_millis(self) -> int:
        return 0 if self._stopping.is_set() else int(self._lambda.get_remaining_time_in_millis())


class EventPump(threading.Thread):
    """Lambda's SQS poller, locally: receive, invoke the handler, delete.

    Up to ``invocations`` batches are handled at once (default: as many as the
    handler has imaging workers, ``chalicelib.sandbox.pool_sizing``), each
    by a poller thread of its own, as Lambda runs concurrent invocations for a
    busy queue; within a batch the handler works on as many messages at once
    as it has workers. So the workers stay busy while a batch finishes its
    last, slow message, and with one worker the pump is one poller handling
    one message at a time. ``stopping`` stops every poller: none receives
    again, each batch in flight hands back its unstarted messages, and those
    being handled finish.
    """

    def __init__(
        self,
        app: ModuleType,
        queue: str,
        timeout: int = 60,
        wait: int = 1,
        invocations: int | None = None,
    ) -> None:
        super().__init__(name="event-pump", daemon=True)
        self._handler = app.app.handler_map["handle_queued_events"]
        self._sqs = boto3.client("sqs")
        self._url = self._sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        self._arn = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._wait = wait
        self._timeout_ms = timeout * 1000  # the function's lambda_timeout, as Lambda gives it
        from chalicelib.sandbox import pool_sizing

        self.workers = pool_sizing().workers
        self.invocations = max(1, self.workers if invocations is None else invocations)
        self.stopping = threading.Event()
        # Ctrl-C reaches the emulator too, which stops at once: the messages in
        # flight then fail for want of it (they would be received again, but the
        # emulator forgets them). Their tracebacks would only hide the "stopped".
        logging.getLogger("image_pipeline").addFilter(lambda record: not self.stopping.is_set())

    def run(self) -> None:
        # As a container's first invocation would: the pipeline and the queue
        # client are made here once, before the pollers share them.
        self._handler({"Records": []}, PumpContext(self._timeout_ms, self.stopping))
        pollers = [
            threading.Thread(target=self._poll, name=f"event-pump-{n}", daemon=True)
            for n in range(self.invocations)
        ]
        for poller in pollers:
            poller.start()
        for poller in pollers:
            poller.join()

    def _poll(self) -> None:
        while not self.stopping.is_set():
            try:
                received = self._sqs.receive_message(
                    QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=self._wait
                )
            except Exception as exc:  # the emulator is going away
                if not self.stopping.is_set():
                    print(f"event pump: {exc}", file=sys.stderr)
                    time.sleep(1)
                continue
            messages = received.get("Messages", [])
            if not messages:
                continue
            event = {"Records": [self._record(m) for m in messages]}
            try:
                self._handler(event, PumpContext(self._timeout_ms, self.stopping))
            except Exception as exc:  # left on the queue: received again later
                if not self.stopping.is_set():
                    print(f"event pump: batch failed, will be retried: {exc!r}", file=sys.stderr)
                continue
            # What Lambda does when the handler returns (each message was deleted already).
            try:
                self._sqs.delete_message_batch(
                    QueueUrl=self._url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
            except Exception as exc:
                if not self.stopping.is_set():
                    print(f"event pump: {exc}", file=sys.stderr)

    def _record(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {},
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": self._arn,
            "awsRegion": CREDENTIALS["AWS_DEFAULT_REGION"],
        }


def banner(options: Options, endpoint: str, settings: Settings, pump: EventPump) -> str:
    api = f"http://{options.host}:{options.api_port}/"
    bucket = settings.source_bucket
    env = " ".join(f"{k}={v}" for k, v in CREDENTIALS.items())
    python = (
        f"import boto3; boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', "
        "aws_access_key_id='local', aws_secret_access_key='local')"
        f".upload_file('photo.jpg', '{bucket}', 'photos/photo.jpg')"
    )
    return "\n".join(
        [
            "",
            f"image-pipeline is running locally (stage {options.stage}, {options.db})",
            f"  gallery and API  {api}",
            f"  AWS emulator     {endpoint}  (bucket {bucket})",
            f"  event pump       {pump.invocations} batch(es) at once, "
            f"{pump.workers} imaging worker(s)",
            "",
            "Upload a photo with the AWS CLI:",
            f"  {env} aws --endpoint-url {endpoint} s3 cp photo.jpg s3://{bucket}/photos/",
            "or with Python:",
            f'  python -c "{python}"',
            "or with the form on the gallery page. Ctrl-C stops everything.",
            "",
        ]
    )


class TerminalFormatter(logging.Formatter):
    """One short line per event (``observability.human_line``), its time first;
    with ``as_json``, the event's JSON/EMF line as Lambda logs it. Other
    records (a traceback, a warning of the code) keep their text."""

    def __init__(self, as_json: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        line = getattr(record, "outcome", None)
        if not isinstance(line, dict):
            return super().format(record)
        if self.as_json:
            return record.getMessage()
        return f"{self.formatTime(record, self.datefmt)} {human_line(line)}"


def install_terminal_log(as_json: bool, stream: Any = None) -> logging.Handler:
    """Every event of the pipeline on the terminal, not only the failures
    that Python's last-resort handler shows when nothing is configured."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(TerminalFormatter(as_json))
    logger = logging.getLogger("image_pipeline")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


# The table ``manage.py dev`` leaves in a database it made: it only ever
# empties a database that holds it, never one it did not create.
DEV_MARKER_TABLE = "made_by_manage_py_dev"


def local_database_name(project_dir: Path = PROJECT_DIR) -> str:
    """``image_pipeline_local_`` + 8 hex digits of this checkout's path: two
    checkouts (or two people) on one MariaDB never share, or empty, a database."""
    digest = hashlib.sha256(str(project_dir.resolve()).encode()).hexdigest()[:8]
    return f"image_pipeline_local_{digest}"


class DatabaseNotOurs(SystemExit):
    pass


def prepare_database(settings: Settings, report: Callable[[str], None] = print) -> None:
    """Start the local stage with an empty ``DB_NAME``, as the emulator starts
    empty: drop and create it again if this command made it, refuse if not."""
    from chalicelib.factory import mysql_connect

    name = settings.db_name
    quoted = "`" + name.replace("`", "``") + "`"
    server = mysql_connect(settings, database="")()
    try:
        with server.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
            existed = cur.fetchone() is not None
            if existed:
                cur.execute(
                    "SELECT 1 FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (name, DEV_MARKER_TABLE),
                )
                if cur.fetchone() is None:
                    raise DatabaseNotOurs(
                        f"error: database {name} on {settings.db_host}:{settings.db_port} exists "
                        "and was not made by manage.py dev, which empties its database at every "
                        "start; it is left alone. Unset DB_NAME (each checkout then gets its "
                        "own) or choose another name"
                    )
                cur.execute(f"DROP DATABASE {quoted}")
            cur.execute(f"CREATE DATABASE {quoted} CHARACTER SET utf8mb4")
            cur.execute(
                f"CREATE TABLE {quoted}.{DEV_MARKER_TABLE} (made_at TIMESTAMP) "
                "COMMENT 'manage.py dev empties this database at every start'"
            )
        server.commit()
    finally:
        server.close()
    fate = "emptied" if existed else "created"
    report(
        f"database {name} on {settings.db_host}:{settings.db_port}: {fate} for this run "
        "(this checkout's own; emptied at every start, as the emulator starts empty)"
    )


PROBE = "/images?limit=1"  # what tells that the API is up


class ApiOutput:
    """``chalice local``'s output, relayed to the terminal from a thread.

    What it prints while the stack starts (``Serving on ...``, the access-log
    line of the readiness probe) is held: the banner says where the API is.
    It is shown after all if the API never answers (``release``). Once the
    stack is stopping, what it prints (Ctrl-C reaches it too: click's
    ``Aborted!``) is dropped. Between, every line passes, access log included.
    """

    def __init__(
        self, source: IO[bytes] | None, sink: IO[bytes], stop: threading.Event | None = None
    ) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._held: list[bytes] | None = []  # None once started
        self._quiet = False
        # Ctrl-C reaches chalice local as it reaches this process: the stack
        # counts as stopping from the signal on, not from when the main loop sees it.
        self._stop = stop or threading.Event()
        # The probe's access-log line, written after its answer: it may come
        # in after ``started``, and is dropped then too.
        self._probe: bytes | None = None
        if source is not None:
            threading.Thread(target=self._pump, args=(source,), daemon=True).start()

    def _pump(self, source: IO[bytes]) -> None:
        for line in iter(source.readline, b""):
            self.line(line)

    def line(self, line: bytes) -> None:
        with self._lock:
            if self._quiet or self._stop.is_set():
                return
            if self._probe is not None and self._probe in line:
                self._probe = None
                return
            if self._held is not None:
                if len(self._held) < 200:  # bounded: a start prints a few lines
                    self._held.append(line)
                return
            self._write(line)

    def started(self, probe: str) -> None:
        """The API answered ``probe`` (a path and query): what comes next is shown."""
        with self._lock:
            if not any(probe.encode() in line for line in self._held or []):
                self._probe = f"GET {probe} ".encode()
            self._held = None

    def release(self) -> None:
        with self._lock:
            for line in self._held or []:
                self._write(line)
            self._held = None

    def stopping(self) -> None:
        with self._lock:
            self._quiet = True

    def _write(self, line: bytes) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed terminal loses nothing else
            self._sink.write(line)
            self._sink.flush()


def wait_for_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer in {timeout:.0f}s") from None
            time.sleep(0.2)


def run(options: Options) -> int:
    check_port(options.host, options.aws_port, "--aws-port")
    check_port(options.host, options.api_port, "--api-port")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    install_terminal_log(options.json)
    lifeline = Lifeline()  # the children end with this process, even a killed one
    say(f"starting the AWS emulator on {options.host}:{options.aws_port}")
    with moto_server(options.host, options.aws_port, lifeline) as endpoint:
        # The endpoint comes from the chosen ports, never from config.json.
        os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update(stage_environment(options.stage))
        if options.db == "mysql":
            os.environ.setdefault("DB_NAME", local_database_name())
        settings = Settings.from_env(os.environ)
        if settings.db_backend == "mysql":
            prepare_database(settings, report=lambda line: say(line))
        say(f"provisioning stage {options.stage}")
        provision(
            settings,
            report=lambda line: print(f"  {line}"),
            queue_consumer_timeout=function_timeout(options.stage, "handle_queued_events"),
        )
        say("loading the pipeline and its imaging workers")
        import app  # after the environment is the stage's: it registers by mode
        from chalicelib.factory import isolated_imaging

        isolated_imaging().pool.start()  # the pump's workers, loaded before the first event

        pump = EventPump(
            app,
            settings.events_queue,
            function_timeout(options.stage, "handle_queued_events"),
        )
        pump.start()
        say(f"starting the API and gallery on {options.host}:{options.api_port}")
        api = lifeline.popen(
            [str(CHALICE), "local", "--stage", options.stage, "--host", options.host,
             "--port", str(options.api_port), "--no-autoreload"],
            cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        relay = ApiOutput(api.stdout, sys.stdout.buffer, stop)
        try:
            api_url = f"http://{options.host}:{options.api_port}/"
            try:
                wait_for_http(f"{api_url}{PROBE.lstrip('/')}")
            except RuntimeError:
                relay.release()  # what chalice local said, to tell why
                raise
            relay.started(PROBE)
            client_env = {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
            if settings.db_backend == "mysql":
                client_env["DB_NAME"] = settings.db_name
            announce(RunningStack(os.getpid(), options.stage, endpoint, api_url, client_env))
            print(banner(options, endpoint, settings, pump), flush=True)
            while not stop.is_set() and api.poll() is None:
                stop.wait(0.5)
        finally:
            withdraw(os.getpid())
            relay.stopping()
            pump.stopping.set()
            if api.poll() is None:
                api.terminate()
                try:
                    api.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    api.kill()
            pump.join(timeout=PUMP_STOP_SECONDS)
    lifeline.close()
    print("stopped", flush=True)
    return 0 if stop.is_set() else 1


def say(text: str) -> None:
    """A step of the start, as it begins: the terminal is never silent for long."""
    print(f"- {text}", flush=True)
