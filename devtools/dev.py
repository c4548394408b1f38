"""``manage.py dev``: the whole pipeline on this machine, no AWS account.

One process tree: moto's server (S3, DynamoDB, SNS, SQS), an event pump that
long-polls the stage's queue and hands each batch to ``handle_queued_events``
(the code Lambda runs), and ``chalice local`` serving the REST API and the
gallery. SIGINT or SIGTERM stops all of it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import boto3

from chalicelib.settings import Settings
from devtools.emulator import moto_server
from devtools.provision import provision
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

    @property
    def stage(self) -> str:
        return "local-mysql" if self.db == "mysql" else "local"


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


class EventPump(threading.Thread):
    """Lambda's SQS poller, locally: receive, invoke the handler, delete."""

    def __init__(self, app: ModuleType, queue: str, timeout: int = 60, wait: int = 1) -> None:
        super().__init__(name="event-pump", daemon=True)
        self._handler = app.app.handler_map["handle_queued_events"]
        self._sqs = boto3.client("sqs")
        self._url = self._sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        self._arn = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._wait = wait
        self._timeout_ms = timeout * 1000  # the function's lambda_timeout, as Lambda gives it
        self.stopping = threading.Event()

    def run(self) -> None:
        from chalice.local import LambdaContext

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
                context = LambdaContext("handle_queued_events", 1769, self._timeout_ms)
                self._handler(event, context)
            except Exception as exc:  # left on the queue: received again later
                print(f"event pump: batch failed, will be retried: {exc!r}", file=sys.stderr)
                continue
            self._sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )

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


def banner(options: Options, endpoint: str, settings: Settings) -> str:
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
            "",
            "Upload a photo with the AWS CLI:",
            f"  {env} aws --endpoint-url {endpoint} s3 cp photo.jpg s3://{bucket}/photos/",
            "or with Python:",
            f'  python -c "{python}"',
            "or with the form on the gallery page. Ctrl-C stops everything.",
            "",
        ]
    )


def reset_database(settings: Settings) -> None:
    from chalicelib.factory import mysql_connect

    server = mysql_connect(settings, database="")()
    try:
        with server.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{settings.db_name.replace('`', '``')}`")
    finally:
        server.close()
    print(f"  database {settings.db_name}: emptied for this run")


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
    with moto_server(options.host, options.aws_port) as endpoint:
        # The endpoint comes from the chosen ports, never from config.json.
        os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update(stage_environment(options.stage))
        settings = Settings.from_env(os.environ)
        if settings.db_backend == "mysql":
            reset_database(settings)  # the emulator starts empty: so do the records
        provision(
            settings,
            report=lambda line: print(f"  {line}"),
            queue_consumer_timeout=function_timeout(options.stage, "handle_queued_events"),
        )
        import app  # after the environment is the stage's: it registers by mode
        from chalicelib.factory import isolated_imaging

        isolated_imaging().pool.start()  # the pump's workers, before its thread exists

        pump = EventPump(
            app,
            settings.events_queue,
            function_timeout(options.stage, "handle_queued_events"),
        )
        pump.start()
        api = subprocess.Popen(
            [str(CHALICE), "local", "--stage", options.stage, "--host", options.host,
             "--port", str(options.api_port), "--no-autoreload"],
            cwd=PROJECT_DIR,
        )  # fmt: skip
        try:
            wait_for_http(f"http://{options.host}:{options.api_port}/images?limit=1")
            print(banner(options, endpoint, settings), flush=True)
            while not stop.is_set() and api.poll() is None:
                stop.wait(0.5)
        finally:
            pump.stopping.set()
            if api.poll() is None:
                api.terminate()
                try:
                    api.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    api.kill()
            pump.join(timeout=5)
        print("stopped", flush=True)
    return 0 if stop.is_set() else 1
