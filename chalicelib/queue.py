"""SQS batches: every message handled on its own, so no message shares
another's fate.

Chalice cannot turn on ``ReportBatchItemFailures``: Lambda deletes a batch
only when the handler returns, and a raising handler makes SQS deliver the
whole batch again, so one poison message would drag its batch-mates to the
dead-letter queue with it. Instead:
  * each message is deleted as soon as it is handled (a file no retry can fix
    is handled: it became a ``failed`` record);
  * a message whose handling raised (a transient fault) is left alone: it is
    received again once its visibility timeout passes, and after
    ``maxReceiveCount`` receives it alone lands in the dead-letter queue;
  * when the invocation's remaining time drops below what one more source may
    take, no new message is started: the unstarted ones are made visible
    again at once (visibility 0) for the next invocation;
  * then, if anything was left undone, the invocation raises (a normal return
    would make Lambda delete the whole batch, unstarted messages included).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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
        """Remove a handled message from its queue."""
        ...

    def release(self, messages: list[Message]) -> None:
        """Make messages that were not started visible again at once."""
        ...


def process_batch(
    messages: Iterable[Message],
    handle: Callable[[ObjectEvent], str],
    queue: MessageQueue,
    *,
    time_left: Callable[[], float] | None = None,
    needed: float = 0.0,
) -> list[str]:
    """Outcomes of every event handled. ``time_left()`` is the invocation's
    remaining seconds, ``needed`` what one more message may take; the first
    message is always started. Raises ``BatchFailed`` once the handled
    messages are deleted and the unstarted released, if any failed or were
    not started."""
    batch = list(messages)
    outcomes: list[str] = []
    failures: list[tuple[Message, Exception]] = []
    unstarted: list[Message] = []
    for index, message in enumerate(batch):
        if index and time_left is not None and time_left() < needed:
            unstarted = batch[index:]
            break
        try:
            events = parse_body(message.body)
        except MalformedEvent as exc:
            # No retry can fix it: drop it rather than let it come back.
            log.error("dropped a message that is not an S3 notification: %s", exc)
            outcomes.append("ignored")
            queue.delete(message)
            continue
        try:
            results = [handle(event) for event in events]
        except Exception as exc:
            log.exception("message failed; it will be received again")
            failures.append((message, exc))
            continue
        outcomes.extend(results)
        queue.delete(message)
    if unstarted:
        queue.release(unstarted)
    if failures or unstarted:
        parts = []
        if failures:
            parts.append(f"{len(failures)} of {len(batch)} messages failed")
        if unstarted:
            parts.append(
                f"{len(unstarted)} of {len(batch)} were not started for lack of time "
                "and are visible again"
            )
        first = failures[0][1] if failures else None
        detail = f"; the first failure: {first!r}" if first is not None else ""
        raise BatchFailed("; ".join(parts) + detail) from first
    return outcomes


class SqsQueue:
    """``MessageQueue`` on SQS, each message's queue found from its ARN.

    Deleting is best effort: a message whose delete fails is received and
    handled again later, which the delivery rules make harmless.
    """

    def __init__(self, client: SQSClient) -> None:
        self._sqs = client
        self._urls: dict[str, str] = {}

    def delete(self, message: Message) -> None:
        try:
            self._sqs.delete_message(
                QueueUrl=self._url(message.source_arn), ReceiptHandle=message.receipt_handle
            )
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
