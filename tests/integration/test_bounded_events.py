"""A file that hangs or crashes the decoder ends as a ``failed`` record saying
so, in direct and in SQS mode, on both backends; in a batch, the other
messages do not share its fate, and a batch that runs short of time hands the
rest back at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.events import parse_body
from chalicelib.factory import build_pipeline
from chalicelib.pipeline import Pipeline
from chalicelib.queue import BatchFailed, Message, SqsQueue, process_batch
from chalicelib.sandbox import IsolatedImaging, WorkerPool, source_seconds
from tests.integration.conftest import Stack, make_stack
from tests.integration.test_queue_mode import QUEUE, in_flight, queue_url
from tests.support import jpeg


@pytest.fixture
def imaging() -> Iterator[IsolatedImaging]:
    triggered = IsolatedImaging(WorkerPool(1, 256 << 20, module="tests.triggered_worker").start())
    yield triggered
    triggered.close()


@pytest.fixture
def stack(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Stack:
    env = base_env | {"EVENTS_QUEUE": QUEUE, "DEST_BUCKET": "renditions", "PROCESSING_TIMEOUT": "1"}
    return make_stack(env, tmp_path, monkeypatch)


@pytest.fixture
def pipeline(stack: Stack, imaging: IsolatedImaging) -> Iterator[Pipeline]:
    built = build_pipeline(stack.settings, imaging=imaging)
    yield built
    built.repository.close()


def test_a_hanging_file_becomes_a_failed_record_within_its_budget(
    stack: Stack, pipeline: Pipeline
) -> None:
    stack.put("hangs.jpg", b"SLEEP until killed")
    [event] = parse_body(json_notification(stack, "hangs.jpg"))

    started = time.monotonic()
    outcome = pipeline.handle(event, deadline=time.monotonic() + 60)

    assert outcome.value == "failed"
    assert time.monotonic() - started < 1 + 3
    [image] = stack.images("?status=failed")
    assert image["key"] == "hangs.jpg" and image["renditions"] == {}
    assert image["error"].startswith(
        "processing took longer than 1 s (PROCESSING_TIMEOUT=1) and was stopped"
    )


def test_a_crashing_file_becomes_a_failed_record(stack: Stack, pipeline: Pipeline) -> None:
    stack.put("crashes.png", b"SEGV")
    [event] = parse_body(json_notification(stack, "crashes.png"))

    assert pipeline.handle(event).value == "failed"

    [image] = stack.images("?status=failed")
    assert image["error"] == "the decoder crashed on this file (SIGSEGV): it is damaged or crafted"


def test_a_poison_message_does_not_take_its_batch_with_it(stack: Stack, pipeline: Pipeline) -> None:
    drain()
    stack.put("a.jpg", jpeg(300, 200))
    stack.put("poison.jpg", b"SLEEP until killed")
    stack.put("b.jpg", jpeg(200, 300))
    messages = receive()
    assert len(messages) == 3

    outcomes = process_batch(
        messages,
        lambda e: pipeline.handle(e, time.monotonic() + 60).value,
        SqsQueue(boto3.client("sqs")),
        time_left=lambda: 60,
        needed=source_seconds(1),
    )

    assert sorted(outcomes) == ["failed", "processed", "processed"]
    assert in_flight() == 0  # all three handled and deleted
    assert sorted(i["key"] for i in stack.images()) == ["a.jpg", "b.jpg"]
    assert [i["key"] for i in stack.images("?status=failed")] == ["poison.jpg"]


def test_a_batch_short_of_time_hands_the_rest_back_at_once(
    stack: Stack, pipeline: Pipeline
) -> None:
    drain()
    for name in ("one.jpg", "two.jpg", "three.jpg"):
        stack.put(name, jpeg(120, 80))
    messages = receive()
    deadline = time.monotonic() + source_seconds(1) + 0.5  # room for one source, not two

    def handle(event: Any) -> str:
        outcome = pipeline.handle(event, deadline).value
        time.sleep(0.6)  # the first source takes what time was spare
        return outcome

    with pytest.raises(BatchFailed, match="2 of 3 were not started for lack of time"):
        process_batch(
            messages,
            handle,
            SqsQueue(boto3.client("sqs")),
            time_left=lambda: deadline - time.monotonic(),
            needed=source_seconds(1),
        )

    assert len(stack.images()) == 1
    assert len(receive()) == 2  # visible again now, not after the visibility timeout


def test_the_queue_handler_registered_for_the_stage_bounds_each_message(stack: Stack) -> None:
    """Through ``handle_queued_events`` itself, with the app's own workers."""
    drain()
    stack.put("fine.jpg", jpeg(300, 200))
    records = [m.body for m in receive()]
    event = stack.client.events.generate_sqs_event(message_bodies=records, queue_name=QUEUE)

    assert stack.invoke("handle_queued_events", event) == ["processed"]


# -- helpers ----------------------------------------------------------------------
def json_notification(stack: Stack, key: str) -> str:
    import json

    return json.dumps({"Records": [stack.record(key)]})


def receive() -> list[Message]:
    sqs = boto3.client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=queue_url(), AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    received = sqs.receive_message(QueueUrl=queue_url(), MaxNumberOfMessages=10)
    return [Message(m["Body"], m["ReceiptHandle"], arn) for m in received.get("Messages", [])]


def drain() -> None:
    sqs = boto3.client("sqs")
    while messages := receive():
        for m in messages:
            sqs.delete_message(QueueUrl=queue_url(), ReceiptHandle=m.receipt_handle)
