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


def run(messages: list[Message], failing: set[str]) -> tuple[list[str], list[str]]:
    acknowledged: list[str] = []

    def handle(event: ObjectEvent) -> str:
        if event.key in failing:
            raise ConnectionError(f"cannot reach the database for {event.key}")
        return "processed"

    outcomes = process_batch(
        messages, handle, lambda done: acknowledged.extend(m.receipt_handle for m in done)
    )
    return outcomes, acknowledged


def test_a_clean_batch_acknowledges_nothing_itself() -> None:
    outcomes, acknowledged = run([message(body("a", "b"), "h1"), message(body("c"), "h2")], set())
    assert outcomes == ["processed"] * 3
    assert acknowledged == []  # Lambda deletes the whole batch when the handler returns


def test_a_failure_deletes_the_rest_and_raises() -> None:
    messages = [
        message(body("a"), "h1"),
        message(body("bad"), "h2"),
        message("not json", "h3"),
        message(json.dumps({"Event": "s3:TestEvent"}), "h4"),
    ]
    acknowledged: list[str] = []

    def handle(event: ObjectEvent) -> str:
        if event.key == "bad":
            raise ConnectionError("database unreachable")
        return "processed"

    with pytest.raises(BatchFailed, match="1 of 4 messages failed") as raised:
        process_batch(
            messages, handle, lambda done: acknowledged.extend(m.receipt_handle for m in done)
        )
    assert isinstance(raised.value.__cause__, ConnectionError)
    assert acknowledged == ["h1", "h3", "h4"]


def test_everything_failing_acknowledges_nothing() -> None:
    with pytest.raises(BatchFailed, match="2 of 2"):
        run([message(body("x"), "h1"), message(body("y"), "h2")], {"x", "y"})


def test_undecodable_bodies_are_dropped_not_retried() -> None:
    outcomes, acknowledged = run([message("{oops", "h1"), message("[]", "h2")], set())
    assert outcomes == ["ignored", "ignored"]
    assert acknowledged == []
