"""SNS notifications of outcomes (DESIGN.md, "Contract: notifications")."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient


class Notifier(Protocol):
    @property
    def enabled(self) -> bool: ...

    def publish(self, event: str, body: dict[str, Any]) -> None: ...


class NullNotifier:
    """No topic configured: outcomes are not announced."""

    enabled = False

    def publish(self, event: str, body: dict[str, Any]) -> None:
        return None


class SnsNotifier:
    enabled = True

    def __init__(self, client: SNSClient, topic_arn: str) -> None:
        self._sns = client
        self._topic = topic_arn

    def publish(self, event: str, body: dict[str, Any]) -> None:
        self._sns.publish(
            TopicArn=self._topic,
            Message=json.dumps({"event": event, **body}, ensure_ascii=False),
            MessageAttributes={"event": {"DataType": "String", "StringValue": event}},
        )
