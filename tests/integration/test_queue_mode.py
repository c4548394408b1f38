"""SQS mode: S3 -> queue -> handle_queued_events, and what provision sets up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pymysql
import pytest
from botocore.exceptions import ClientError

from chalicelib.queue import BatchFailed, Message, SqsQueue
from devtools.provision import provision
from tests.integration.conftest import Stack, database_down, make_stack
from tests.support import jpeg

QUEUE = "upload-events"


@pytest.fixture
def queued(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Stack:
    # Renditions go to their own bucket, so the queue holds upload events only.
    env = base_env | {"EVENTS_QUEUE": QUEUE, "DEST_BUCKET": "renditions"}
    return make_stack(env, tmp_path, monkeypatch)


def queue_url(name: str = QUEUE) -> str:
    return boto3.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]


def drain() -> list[str]:
    """The bodies the emulator's S3 delivered to the events queue."""
    sqs = boto3.client("sqs")
    bodies: list[str] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url(), MaxNumberOfMessages=10)
        if not batch.get("Messages"):
            return bodies
        for message in batch["Messages"]:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url(), ReceiptHandle=message["ReceiptHandle"])


def receive() -> list[dict[str, Any]]:
    """Messages as Lambda's SQS poller receives them, receipt handles and all."""
    sqs = boto3.client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=queue_url(), AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    received = sqs.receive_message(QueueUrl=queue_url(), MaxNumberOfMessages=10)
    return [
        {
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"], "attributes": {}, "messageAttributes": {},
            "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1",
        }
        for m in received.get("Messages", [])
    ]  # fmt: skip


def in_flight() -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_handled_messages_are_deleted_and_unstarted_ones_released(queued: Stack) -> None:
    drain()
    for name in ("one.jpg", "two.jpg", "three.jpg"):
        queued.put(name, jpeg(120, 80))
    records = receive()
    assert len(records) == 3 and in_flight() == 3
    queue = SqsQueue(boto3.client("sqs"))
    messages = [Message(r["body"], r["receiptHandle"], r["eventSourceARN"]) for r in records]

    queue.delete(messages[0])
    assert in_flight() == 2
    queue.release(messages[1:])
    assert len(receive()) == 2  # visible again at once, not after the visibility timeout


def consume(stack: Stack, bodies: list[str]) -> Any:
    event = stack.client.events.generate_sqs_event(message_bodies=bodies, queue_name=QUEUE)
    return stack.invoke("handle_queued_events", event)


def test_provision_sets_up_the_queue(queued: Stack) -> None:
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url(), AttributeNames=["All"])[
        "Attributes"
    ]
    assert int(attributes["VisibilityTimeout"]) >= 6 * 60
    redrive = json.loads(attributes["RedrivePolicy"])
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=queue_url(f"{QUEUE}-dlq"), AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == 5
    [statement] = json.loads(attributes["Policy"])["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == attributes["QueueArn"]
    assert statement["Condition"]["ArnEquals"] == {"aws:SourceArn": "arn:aws:s3:::uploads"}


def test_provision_merges_into_the_bucket_notifications(queued: Stack) -> None:
    s3 = boto3.client("s3")
    topic = boto3.client("sns").create_topic(Name="someone-elses")["TopicArn"]
    existing = s3.get_bucket_notification_configuration(Bucket="uploads")
    s3.put_bucket_notification_configuration(
        Bucket="uploads",
        NotificationConfiguration={
            "QueueConfigurations": existing["QueueConfigurations"],
            "TopicConfigurations": [
                {"Id": "theirs", "TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}
            ],
        },
    )

    provision(queued.settings, report=lambda _: None)  # again: idempotent
    provision(queued.settings, report=lambda _: None, queue_consumer_timeout=120)

    config = s3.get_bucket_notification_configuration(Bucket="uploads")
    assert [t["Id"] for t in config["TopicConfigurations"]] == ["theirs"]
    [ours] = config["QueueConfigurations"]
    assert ours["QueueArn"].endswith(f":{QUEUE}")
    assert set(ours["Events"]) == {
        "s3:ObjectCreated:*",
        "s3:ObjectRemoved:*",
        "s3:LifecycleExpiration:*",
    }
    visibility = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(), AttributeNames=["VisibilityTimeout"]
    )["Attributes"]["VisibilityTimeout"]
    assert visibility == "720"


def test_what_the_emulator_delivers_is_processed(queued: Stack) -> None:
    drain()  # s3:TestEvent, if the emulator sent one
    queued.put("q/photo one.jpg", jpeg(400, 300))
    bodies = drain()
    assert len(bodies) == 1

    assert consume(queued, bodies) == ["processed"]
    [image] = queued.images()
    assert (image["key"], image["width"]) == ("q/photo one.jpg", 400)

    queued.s3.delete_object(Bucket="uploads", Key="q/photo one.jpg")
    assert consume(queued, drain()) == ["deleted"]
    assert queued.images() == []
    assert queued.keys("resized/") == []


def test_a_mixed_batch_settles_without_failing(queued: Stack) -> None:
    drain()
    queued.put("keep.jpg", jpeg(200, 100))
    queued.put("gone.jpg", jpeg(200, 100))
    created = drain()
    consume(queued, created)
    queued.s3.delete_object(Bucket="uploads", Key="gone.jpg")
    queued.put("broken.jpg", b"not an image at all")
    bodies = [
        json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "uploads"}),
        *drain(),  # the delete of gone.jpg and the upload of broken.jpg
        "{this is not json",
    ]

    outcomes = consume(queued, bodies)

    assert sorted(outcomes) == ["deleted", "failed", "ignored"]
    assert [i["key"] for i in queued.images()] == ["keep.jpg"]
    assert [i["key"] for i in queued.images("?status=failed")] == ["broken.jpg"]


def test_sns_envelope_bodies(queued: Stack) -> None:
    drain()
    queued.put("wrapped.jpg", jpeg(120, 80))
    [body] = drain()
    envelope = json.dumps({"Type": "Notification", "MessageId": "m", "Message": body})

    assert consume(queued, [envelope]) == ["processed"]


def test_a_transient_fault_fails_the_batch_for_redelivery(queued: Stack) -> None:
    drain()
    queued.put("retry.jpg", jpeg(120, 80))
    bodies = drain()

    with database_down(queued), pytest.raises(BatchFailed) as raised:
        consume(queued, bodies)
    assert isinstance(raised.value.__cause__, ClientError | pymysql.err.Error)

    assert consume(queued, bodies) == ["processed"]  # SQS delivers the batch again
