"""SQS batch semantics: failures come back alone, poison bodies are dropped, and
so with several messages at once."""

from __future__ import annotations

import json
import threading
import time

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
        self._lock = threading.Lock()

    def delete(self, message: Message) -> None:
        with self._lock:  # called from the batch's threads
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


# -- several messages at once ----------------------------------------------------
class Tracker:
    """A ``handle`` that records which keys are being handled at once, and a
    queue that records what was deleted and released, from any thread."""

    def __init__(
        self,
        seconds: float = 0.05,
        failing: frozenset[str] = frozenset(),
        slow: frozenset[str] = frozenset(),
    ) -> None:
        self.lock = threading.Lock()
        self.seconds = seconds
        self.slow = slow  # these take 5 times as long
        self.failing = failing
        self.running: set[str] = set()
        self.most = 0
        self.calls: list[str] = []
        self.twice_at_once: list[str] = []
        self.queue = FakeQueue()

    def handle(self, event: ObjectEvent) -> str:
        with self.lock:
            if event.key in self.running:
                self.twice_at_once.append(event.key)
            self.running.add(event.key)
            self.calls.append(event.key)
            self.most = max(self.most, len(self.running))
        time.sleep(self.seconds * (5 if event.key in self.slow else 1))
        with self.lock:
            self.running.discard(event.key)
        if event.key in self.failing:
            raise ConnectionError(f"database unreachable for {event.key}")
        return f"processed {event.key}"


def test_messages_run_at_once_up_to_the_concurrency() -> None:
    tracker = Tracker()
    batch = [message(body(f"k{n}"), f"h{n}") for n in range(10)]

    outcomes = process_batch(batch, tracker.handle, tracker.queue, concurrency=3)

    assert outcomes == [
        f"processed k{n}" for n in range(10)
    ]  # batch order, whatever finished first
    assert tracker.most == 3
    assert sorted(tracker.calls) == sorted(f"k{n}" for n in range(10))  # each started once
    assert tracker.twice_at_once == []
    assert sorted(tracker.queue.deleted) == sorted(f"h{n}" for n in range(10))


def test_with_one_there_is_no_thread() -> None:
    threads: set[str] = set()

    def handle(event: ObjectEvent) -> str:
        threads.add(threading.current_thread().name)
        return "processed"

    process_batch([message(body("a"), "h1"), message(body("b"), "h2")], handle, FakeQueue())
    assert threads == {threading.current_thread().name}


def test_a_failure_at_once_with_others_keeps_only_its_message() -> None:
    tracker = Tracker(failing=frozenset({"k2"}))
    batch = [message(body(f"k{n}"), f"h{n}") for n in range(6)]

    with pytest.raises(BatchFailed, match="1 of 6 messages failed") as raised:
        process_batch(batch, tracker.handle, tracker.queue, concurrency=3)

    assert isinstance(raised.value.__cause__, ConnectionError)
    assert sorted(tracker.queue.deleted) == ["h0", "h1", "h3", "h4", "h5"]
    assert tracker.queue.released == []


def test_events_of_one_object_are_never_handled_at_once_and_keep_their_order() -> None:
    tracker = Tracker()
    keys = ["a", "b", "a", "c", "a", "photos/", "photos/x.jpg", "d"]
    batch = [message(body(k), f"h{n}") for n, k in enumerate(keys)]

    process_batch(batch, tracker.handle, tracker.queue, concurrency=4)

    assert tracker.twice_at_once == []
    assert [k for k in tracker.calls if k == "a"] == ["a", "a", "a"]
    # the folder's event finished before the event of an object in it started
    assert tracker.calls.index("photos/") < tracker.calls.index("photos/x.jpg")
    assert tracker.most > 1


def test_the_deadline_is_exact_with_several_at_once() -> None:
    """Each start asks for the time left; once it is short, nothing more
    starts: the rest is released at once, while the started ones finish,
    are deleted, and then the batch raises."""
    tracker = Tracker(seconds=0.1, slow=frozenset({"k3"}))
    asked: list[int] = []
    left = iter([60.0, 50.0, 40.0, 20.0])  # the 4th start finds 20 s: under 25

    def time_left() -> float:
        asked.append(len(tracker.queue.deleted))
        return next(left)

    released_while_running: list[set[str]] = []

    class Queue(FakeQueue):
        def release(self, messages: list[Message]) -> None:
            released_while_running.append(set(tracker.running))
            super().release(messages)

    tracker.queue = Queue()
    batch = [message(body(f"k{n}"), f"h{n}") for n in range(8)]
    with pytest.raises(BatchFailed, match="4 of 8 were not started") as raised:
        process_batch(
            batch, tracker.handle, tracker.queue, time_left=time_left, needed=25, concurrency=2
        )

    assert "failed" not in str(raised.value)
    assert sorted(tracker.calls) == ["k0", "k1", "k2", "k3"]  # the first, then 3 with time
    assert sorted(tracker.queue.deleted) == ["h0", "h1", "h2", "h3"]
    assert tracker.queue.released == ["h4", "h5", "h6", "h7"]
    assert released_while_running == [{"k3"}]  # handed back at once, k3 still running
    assert len(asked) == 4  # one question per start but the first's


def test_a_transient_failure_and_the_deadline_together() -> None:
    tracker = Tracker(failing=frozenset({"k0"}))
    left = iter([60.0, 1.0])
    batch = [message(body(f"k{n}"), f"h{n}") for n in range(4)]

    with pytest.raises(BatchFailed, match="1 of 4 messages failed; 2 of 4 were not started"):
        process_batch(
            batch,
            tracker.handle,
            tracker.queue,
            time_left=lambda: next(left),
            needed=25,
            concurrency=2,
        )

    assert tracker.queue.deleted == ["h1"]
    assert tracker.queue.released == ["h2", "h3"]


def test_each_message_runs_in_the_invocations_context() -> None:
    from chalicelib.observability import request_id

    seen: list[str | None] = []

    def handle(event: ObjectEvent) -> str:
        seen.append(request_id.get())
        return "processed"

    request_id.set("req-1")
    try:
        process_batch([message(body(k), k) for k in "abc"], handle, FakeQueue(), concurrency=3)
    finally:
        request_id.set(None)
    assert seen == ["req-1"] * 3


def test_an_undecodable_body_among_concurrent_ones_is_dropped() -> None:
    tracker = Tracker()
    batch = [message(body("a"), "h1"), message("{oops", "h2"), message(body("b"), "h3")]
    outcomes = process_batch(batch, tracker.handle, tracker.queue, concurrency=2)
    assert outcomes == ["processed a", "ignored", "processed b"]
    assert sorted(tracker.queue.deleted) == ["h1", "h2", "h3"]
