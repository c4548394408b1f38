"""SQS batches: every message handled on its own, so no message shares
another's fate, several at once.

Chalice cannot turn on ``ReportBatchItemFailures``: Lambda deletes a batch
only when the handler returns, and a raising handler makes SQS deliver the
whole batch again, so one poison message would drag its batch-mates to the
dead-letter queue with it. Instead:
  * each message is deleted as soon as it is handled (a file no retry can fix
    is handled: it became a ``failed`` record), whatever happens to the others;
  * a message whose handling raised (a transient fault) is left alone: it is
    received again once its visibility timeout passes, and after
    ``maxReceiveCount`` receives it alone lands in the dead-letter queue;
  * when the invocation's remaining time drops below what one more source may
    take, no new message is started: the unstarted ones are made visible
    again at once (visibility 0) for the next invocation;
  * then, once the messages in flight have finished (and were deleted), if
    anything was left undone, the invocation raises (a normal return would
    make Lambda delete the whole batch, unstarted messages included).

Concurrency: up to ``concurrency`` messages are in flight at once, each on a
thread of the batch's own, started in batch order by the invocation's thread,
which alone decides, just before each start, whether there is time for it: a
message is started at most once, and "unstarted" is exact. A message whose
events name a key (or a folder holding a key) that a message in flight also
names waits for it, so that the events of one object are applied in batch
order, as one at a time would. Each thread runs in a copy of the invocation's
context (its request id in the log lines).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from chalicelib.events import MalformedEvent, parse_body
from chalicelib.models import ObjectEvent

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("image_pipeline")

# Messages per invocation (the event source mapping's batch size). The
# consumer's lambda_timeout should fit a whole batch of sources that each take
# PROCESSING_TIMEOUT (devtools.stages.timeout_problems): a message handed back
# for lack of time counts as a receive toward the dead-letter queue's limit.
BATCH_SIZE = 10


@dataclass(frozen=True)
class Message:
    body: str
    receipt_handle: str
    source_arn: str  # the queue's ARN


class BatchFailed(RuntimeError):
    """Some messages were not handled; they will be received again."""


class MessageQueue(Protocol):
    def delete(self, message: Message) -> None:
        """Remove a handled message from its queue (from any thread)."""
        ...

    def release(self, messages: list[Message]) -> None:
        """Make messages that were not started visible again at once."""
        ...


@dataclass
class _Item:
    """One message of the batch, its body parsed, and what became of it."""

    message: Message
    events: list[ObjectEvent] = field(default_factory=list)
    malformed: Exception | None = None  # no retry can fix it: dropped
    unreadable: Exception | None = None  # an unexpected parsing fault: retried
    outcomes: list[str] = field(default_factory=list)
    failure: Exception | None = None

    def overlaps(self, other: _Item) -> bool:
        """Whether the two messages name the same object, or one a folder
        that holds the other's object."""
        return any(_related(a, b) for a in self.events for b in other.events)


def _related(a: ObjectEvent, b: ObjectEvent) -> bool:
    if a.bucket != b.bucket:
        return False
    return (
        a.key == b.key
        or (a.is_folder and b.key.startswith(a.key))
        or (b.is_folder and a.key.startswith(b.key))
    )


def _parse(message: Message) -> _Item:
    item = _Item(message)
    try:
        item.events = parse_body(message.body)
    except MalformedEvent as exc:
        item.malformed = exc
    except Exception as exc:
        item.unreadable = exc
    return item


def process_batch(
    messages: Iterable[Message],
    handle: Callable[[ObjectEvent], str],
    queue: MessageQueue,
    *,
    time_left: Callable[[], float] | None = None,
    needed: float = 0.0,
    concurrency: int = 1,
) -> list[str]:
    """Outcomes of every event handled, in batch order. ``time_left()`` is
    the invocation's remaining seconds, ``needed`` what one more message may
    take; the first message is always started. Up to ``concurrency``
    messages are handled at once (``handle`` and ``queue.delete`` are then
    called from several threads). Raises ``BatchFailed`` once the handled
    messages are deleted and the unstarted released, if any failed or were
    not started."""
    items = [_parse(m) for m in messages]
    unstarted: list[Message] = []

    def run(item: _Item) -> None:
        if item.malformed is not None:
            # No retry can fix it: drop it rather than let it come back.
            log.error("dropped a message that is not an S3 notification: %s", item.malformed)
            item.outcomes = ["ignored"]
            queue.delete(item.message)
            return
        try:
            if item.unreadable is not None:
                raise item.unreadable
            item.outcomes = [handle(event) for event in item.events]
        except Exception as exc:
            log.exception("message failed; it will be received again")
            item.failure = exc
            return
        queue.delete(item.message)

    with _Runner(concurrency) as runner:
        for index, item in enumerate(items):
            runner.wait_for_room(item)
            if index and time_left is not None and time_left() < needed:
                unstarted = [i.message for i in items[index:]]
                queue.release(unstarted)  # at once: another invocation may take them
                break
            runner.start(item, run)
    failures = [i.failure for i in items if i.failure is not None]
    if failures or unstarted:
        total = len(items)
        parts = []
        if failures:
            parts.append(f"{len(failures)} of {total} messages failed")
        if unstarted:
            parts.append(
                f"{len(unstarted)} of {total} were not started for lack of time "
                "and are visible again"
            )
        detail = f"; the first failure: {failures[0]!r}" if failures else ""
        raise BatchFailed("; ".join(parts) + detail) from (failures[0] if failures else None)
    return [outcome for item in items for outcome in item.outcomes]


class _Runner:
    """Runs up to ``concurrency`` items at once: inline when it is 1 (no
    thread at all, as before concurrency), else on threads of its own, which
    end with the batch. Leaving the block waits for every item started."""

    def __init__(self, concurrency: int) -> None:
        self._size = max(1, concurrency)
        self._pool = (
            ThreadPoolExecutor(max_workers=self._size, thread_name_prefix="batch")
            if self._size > 1
            else None
        )
        self._running: dict[Future[None], _Item] = {}

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        wait(self._running)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def wait_for_room(self, item: _Item) -> None:
        """Wait until another item may start and none running overlaps ``item``."""
        self._reap()
        while len(self._running) >= self._size or any(
            item.overlaps(other) for other in self._running.values()
        ):
            wait(self._running, return_when=FIRST_COMPLETED)
            self._reap()

    def start(self, item: _Item, run: Callable[[_Item], None]) -> None:
        if self._pool is None:
            run(item)
            return
        context = contextvars.copy_context()
        self._running[self._pool.submit(context.run, run, item)] = item

    def _reap(self) -> None:
        for future in [f for f in self._running if f.done()]:
            del self._running[future]
            future.result()  # ``run`` keeps its own exceptions: only a bug surfaces here


class SqsQueue:
    """``MessageQueue`` on SQS, each message's queue found from its ARN.

    Deleting is best effort: a message whose delete fails is received and
    handled again later, which the delivery rules make harmless. Safe to use
    from several threads (boto3 clients are). Deletes are sent one at a time:
    SQS would take them at once, but the local emulator's SQS (moto) rebuilds
    its list of messages on each delete, so of two concurrent deletes one can
    be undone, and the message comes back once its visibility timeout ends. A
    delete takes milliseconds, a message hundreds of them, so nothing waits
    long.
    """

    def __init__(self, client: SQSClient) -> None:
        self._sqs = client
        self._urls: dict[str, str] = {}
        self._deleting = threading.Lock()

    def delete(self, message: Message) -> None:
        try:
            url = self._url(message.source_arn)
            with self._deleting:
                self._sqs.delete_message(QueueUrl=url, ReceiptHandle=message.receipt_handle)
        except Exception as exc:
            log.warning("could not delete a handled message (it will come back): %s", exc)

    def release(self, messages: list[Message]) -> None:
        by_queue: dict[str, list[Message]] = {}
        for message in messages:
            by_queue.setdefault(message.source_arn, []).append(message)
        for arn, group in by_queue.items():
            for start in range(0, len(group), 10):
                chunk = group[start : start + 10]
                response = self._sqs.change_message_visibility_batch(
                    QueueUrl=self._url(arn),
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                        for i, m in enumerate(chunk)
                    ],
                )
                if response.get("Failed"):
                    # They come back when their visibility timeout ends instead.
                    log.warning("could not release %d messages", len(response["Failed"]))

    def _url(self, arn: str) -> str:
        if arn not in self._urls:
            _, _, _, _, account, name = arn.split(":", 5)
            self._urls[arn] = self._sqs.get_queue_url(
                QueueName=name, QueueOwnerAWSAccountId=account
            )["QueueUrl"]
        return self._urls[arn]
