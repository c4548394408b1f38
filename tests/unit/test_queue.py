"""SQS batch semantics: failures come back alone, poison bodies are dropped."""

from __future__ import annotations

import json

import pytest

from chalicelib.models import ObjectEvent
from chalicelib.queue import BatchFailed, Message, process_batch


def body(*keys: str) -> str:
    records = [
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": k}}}
        for k in keys
    ]
    return json.dumps({"Records": records})


def message(text: str, handle: str) -> Message:
    return Message(text, handle, "arn:aws:sqs:us-east-1:123456789012:q")


class FakeQueue:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.released: list[str] = []

    def delete(self, message: Message) -> None:
        self.deleted.append(message.receipt_handle)

    def release(self, messages: list[Message]) -> None:
        self.released += [m.receipt_handle for m in messages]


def run(messages: list[Message], failing: set[str]) -> tuple[list[str], FakeQueue]:
    queue = FakeQueue()

    def handle(event: ObjectEvent) -> str:
        if event.key in failing:
            raise ConnectionError(f"cannot reach the database for {event.key}")
        return "processed"

    return process_batch(messages, handle, queue), queue


def test_each_message_is_deleted_once_handled() -> None:
    handled: list[str] = []
    queue = FakeQueue()

    def handle(event: ObjectEvent) -> str:
        handled.append(f"{event.key} (deleted before: {queue.deleted})")
        return "processed"

    outcomes = process_batch(
        [message(body("a", "b"), "h1"), message(body("c"), "h2")], handle, queue
    )

    assert outcomes == ["processed"] * 3
    assert handled == [
        "a (deleted before: [])",
        "b (deleted before: [])",
        "c (deleted before: ['h1'])",
    ]
    assert queue.deleted == ["h1", "h2"] and queue.released == []


def test_a_failure_keeps_only_its_message_and_raises() -> None:
    messages = [
        message(body("a"), "h1"),
        message(body("bad"), "h2"),
        message("not json", "h3"),
        message(json.dumps({"Event": "s3:TestEvent"}), "h4"),
    ]

    with pytest.raises(BatchFailed, match="1 of 4 messages failed") as raised:
        run(messages, {"bad"})
    assert isinstance(raised.value.__cause__, ConnectionError)


def test_a_failure_leaves_the_others_deleted() -> None:
    queue = FakeQueue()

    def handle(event: ObjectEvent) -> str:
        if event.key == "bad":
            raise ConnectionError("database unreachable")
        return "processed"

    batch = [message(body("a"), "h1"), message(body("bad"), "h2"), message(body("c"), "h3")]
    with pytest.raises(BatchFailed):
        process_batch(batch, handle, queue)
    assert queue.deleted == ["h1", "h3"] and queue.released == []


def test_everything_failing_deletes_nothing() -> None:
    with pytest.raises(BatchFailed, match="2 of 2"):
        run([message(body("x"), "h1"), message(body("y"), "h2")], {"x", "y"})


def test_undecodable_bodies_are_dropped_not_retried() -> None:
    outcomes, queue = run([message("{oops", "h1"), message("[]", "h2")], set())
    assert outcomes == ["ignored", "ignored"]
    assert queue.deleted == ["h1", "h2"]


def test_when_time_runs_short_the_rest_is_handed_back_and_the_batch_raises() -> None:
    clock = {"left": 60.0}
    queue = FakeQueue()

    def handle(event: ObjectEvent) -> str:
        clock["left"] -= 20  # each source takes 20 s of the invocation
        return "processed"

    batch = [message(body(k), f"h{k}") for k in "12345"]
    with pytest.raises(BatchFailed, match="3 of 5 were not started"):
        process_batch(batch, handle, queue, time_left=lambda: clock["left"], needed=25)

    assert queue.deleted == ["h1", "h2"]  # 60 s, then 40 s left: both started
    assert queue.released == ["h3", "h4", "h5"]  # 20 s left: under what one more may take


def test_the_first_message_is_always_started() -> None:
    queue = FakeQueue()
    outcomes = process_batch(
        [message(body("only"), "h1")], lambda e: "processed", queue, time_left=lambda: 3, needed=25
    )
    assert outcomes == ["processed"] and queue.deleted == ["h1"]
