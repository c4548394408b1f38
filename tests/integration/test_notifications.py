"""SNS: one message per outcome, at least once, read back through a queue
subscribed to the topic on the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import Stack, make_stack
from tests.support import jpeg, without_urls

TOPIC = "arn:aws:sns:us-east-1:123456789012:image-events"


class Subscriber:
    """A queue subscribed to the topic, as a consumer of the notifications would be."""

    def __init__(self) -> None:
        self.sqs = boto3.client("sqs")
        self.url = self.sqs.create_queue(QueueName="listener")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        self.queue_arn = arn["Attributes"]["QueueArn"]
        self.subscribe()

    def subscribe(self) -> None:
        boto3.client("sns").subscribe(TopicArn=TOPIC, Protocol="sqs", Endpoint=self.queue_arn)

    def messages(self) -> list[tuple[str, dict[str, Any]]]:
        """(the ``event`` message attribute, the JSON body) of everything published so far."""
        out: list[tuple[str, dict[str, Any]]] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10)
            if not batch.get("Messages"):
                return out
            for message in batch["Messages"]:
                envelope = json.loads(message["Body"])
                attribute = envelope["MessageAttributes"]["event"]["Value"]
                out.append((attribute, json.loads(envelope["Message"])))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def notified(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Stack, Subscriber]:
    stack = make_stack(base_env | {"SNS_TOPIC_ARN": TOPIC}, tmp_path, monkeypatch)
    return stack, Subscriber()


def events(subscriber: Subscriber) -> list[str]:
    received = subscriber.messages()
    for attribute, body in received:
        assert attribute == body["event"]
    return [attribute for attribute, _ in received]


def test_each_outcome_publishes_one_message(notified: tuple[Stack, Subscriber]) -> None:
    stack, subscriber = notified
    stack.upload("album/cat.jpg", jpeg(400, 300))
    [(event, body)] = subscriber.messages()
    assert event == "image.processed"
    assert body["image"] == without_urls(stack.images()[0])
    assert set(body["image"]["renditions"]) == {"thumb", "medium", "large"}

    stack.upload("album/bad.jpg", b"not a picture")
    [(event, body)] = subscriber.messages()
    assert (event, body["image"]["status"]) == ("image.failed", "failed")
    assert "not an image" in body["image"]["error"]

    stack.delete("album/cat.jpg")
    [(event, body)] = subscriber.messages()
    assert (event, body["image"]["key"], body["image"]["width"]) == (
        "image.deleted",
        "album/cat.jpg",
        400,
    )

    stack.put("album/", b"")
    stack.deliver(stack.record("album/"))
    stack.s3.delete_object(Bucket="uploads", Key="album/")
    stack.deliver(stack.record("album/", "ObjectRemoved:Delete"))
    received = subscriber.messages()
    assert [e for e, _ in received] == ["folder.created", "folder.deleted"]
    assert received[0][1]["folder"]["prefix"] == "album/"
    assert received[1][1]["folder"]["has_marker"] is False


def test_duplicates_and_stale_events_publish_nothing_new(
    notified: tuple[Stack, Subscriber],
) -> None:
    stack, subscriber = notified
    stack.put("dup.jpg", jpeg(100, 100))
    first = stack.record("dup.jpg")
    second = stack.record("dup.jpg")
    stack.deliver(second)
    stack.deliver(second)
    stack.deliver(first)
    stack.put("m/", b"")
    marker = stack.record("m/")
    stack.deliver(marker)
    stack.deliver(marker)

    assert events(subscriber) == ["image.processed", "folder.created"]


def test_a_failed_publish_raises_and_the_retry_publishes(
    notified: tuple[Stack, Subscriber],
) -> None:
    stack, subscriber = notified
    sns = boto3.client("sns")
    sns.delete_topic(TopicArn=TOPIC)  # SNS unreachable for the first attempt
    stack.put("late.jpg", jpeg(100, 100))
    event = stack.record("late.jpg")

    with pytest.raises(ClientError, match="NotFound"):
        stack.deliver(event)
    assert [i["key"] for i in stack.images()] == ["late.jpg"]  # the write happened

    sns.create_topic(Name=TOPIC.rsplit(":", 1)[-1])
    subscriber.subscribe()
    assert stack.deliver(event) == ["duplicate"]  # Lambda's retry of the same event
    assert events(subscriber) == ["image.processed"]
    assert stack.deliver(event) == ["duplicate"]
    assert events(subscriber) == []


def test_a_failed_folder_publish_is_retried(notified: tuple[Stack, Subscriber]) -> None:
    stack, subscriber = notified
    sns = boto3.client("sns")
    stack.put("f/", b"")
    event = stack.record("f/")
    sns.delete_topic(TopicArn=TOPIC)

    with pytest.raises(ClientError, match="NotFound"):
        stack.deliver(event)

    sns.create_topic(Name=TOPIC.rsplit(":", 1)[-1])
    subscriber.subscribe()
    assert stack.deliver(event) == ["duplicate"]
    assert events(subscriber) == ["folder.created"]


@pytest.mark.parametrize("make_bytes", [300_000, 2_000_000])
def test_a_huge_exif_make_still_fits_the_record_and_the_message(
    notified: tuple[Stack, Subscriber], make_bytes: int
) -> None:
    """A 2 MB Make made DynamoDB refuse the item, a 300 KB one SNS the message,
    and the event was retried forever: now the field is cut to 256 characters."""
    from tests.hostile_files import png_with_exif_make

    stack, subscriber = notified
    assert stack.upload("huge-make.png", png_with_exif_make(make_bytes)) == ["processed"]

    [image] = stack.images()
    assert len(image["metadata"]["camera_make"]) == 256
    assert len(json.dumps(image["metadata"], ensure_ascii=False).encode()) <= 4096
    [(event, body)] = subscriber.messages()
    assert event == "image.processed" and body["image"]["metadata"] == image["metadata"]
