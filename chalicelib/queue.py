"""SQS batches: every record through the pipeline, and only failures retried.

Chalice cannot turn on ``ReportBatchItemFailures``, so a raising handler
would make SQS redeliver the whole batch, and one poison message would drag
its batch-mates to the dead-letter queue with it. Instead, when some messages
fail, the ones that succeeded are deleted from the queue first, then the
invocation raises: only the failed messages come back, and after
``maxReceiveCount`` receives they alone land in the dead-letter queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib.events import MalformedEvent, parse_body
from chalicelib.models import ObjectEvent

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("image_pipeline")


@dataclass(frozen=True)
class Message:
    body: str
    receipt_handle: str
    source_arn: str  # the queue's ARN


class BatchFailed(RuntimeError):
    """Some messages failed; they will be received again."""


Acknowledge = Callable[[list[Message]], None]


def process_batch(
    messages: Iterable[Message], handle: Callable[[ObjectEvent], str], acknowledge: Acknowledge
) -> list[str]:
    """Outcomes of every event in the batch; raises ``BatchFailed`` after
    acknowledging the messages that succeeded, if any failed."""
    outcomes: list[str] = []
    done: list[Message] = []
    failures: list[tuple[Message, Exception]] = []
    for message in messages:
        try:
            events = parse_body(message.body)
        except MalformedEvent as exc:
            # No retry can fix it: drop it rather than fail the batch.
            log.error("dropped a message that is not an S3 notification: %s", exc)
            outcomes.append("ignored")
            done.append(message)
            continue
        try:
            outcomes.extend(handle(event) for event in events)
        except Exception as exc:
            log.exception("message failed; it will be received again")
            failures.append((message, exc))
        else:
            done.append(message)
    if failures:
        if done:
            acknowledge(done)
        raise BatchFailed(
            f"{len(failures)} of {len(failures) + len(done)} messages failed; "
            f"the first: {failures[0][1]!r}"
        ) from failures[0][1]
    return outcomes


def sqs_acknowledger(client: SQSClient) -> Acknowledge:
    """Delete messages from their queues (found from their ARNs)."""
    urls: dict[str, str] = {}

    def acknowledge(messages: list[Message]) -> None:
        by_queue: dict[str, list[Message]] = {}
        for message in messages:
            by_queue.setdefault(message.source_arn, []).append(message)
        for arn, group in by_queue.items():
            if arn not in urls:
                _, _, _, _, account, name = arn.split(":", 5)
                urls[arn] = client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
                    "QueueUrl"
                ]
            for start in range(0, len(group), 10):
                chunk = group[start : start + 10]
                response = client.delete_message_batch(
                    QueueUrl=urls[arn],
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m.receipt_handle}
                        for i, m in enumerate(chunk)
                    ],
                )
                if response.get("Failed"):
                    # They will be received and processed again: harmless, say so.
                    log.warning("could not delete %d processed messages", len(response["Failed"]))

    return acknowledge
