"""Assemble the pipeline and the API from settings and boto3.

Endpoints follow boto3's own configuration (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_S3``, ...), so the same code talks to AWS or to a local
emulator; nothing here names one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from chalicelib.api import ImagesApi
from chalicelib.notify import Notifier, NullNotifier, SnsNotifier
from chalicelib.pipeline import Pipeline
from chalicelib.repositories.base import Repository
from chalicelib.settings import Settings
from chalicelib.storage import S3Storage

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Standard retry mode backs off on throttling; whatever still fails is
# raised for Lambda to retry the whole event.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, max_pool_connections=16)


def s3_client() -> S3Client:
    return boto3.client("s3", config=_CONFIG.merge(Config(signature_version="s3v4")))


def build_repository(settings: Settings) -> Repository:
    if settings.db_backend == "dynamodb":
        from chalicelib.repositories.dynamodb import DynamoRepository

        table = boto3.resource("dynamodb", config=_CONFIG).Table(settings.ddb_table)
        return DynamoRepository(table)
    raise NotImplementedError(f"DB_BACKEND={settings.db_backend} is not available yet")


def build_notifier(settings: Settings) -> Notifier:
    if not settings.sns_topic_arn:
        return NullNotifier()
    return SnsNotifier(boto3.client("sns", config=_CONFIG), settings.sns_topic_arn)


def build_pipeline(settings: Settings) -> Pipeline:
    return Pipeline(
        settings,
        S3Storage(s3_client()),
        build_repository(settings),
        build_notifier(settings),
    )


def build_api(settings: Settings) -> ImagesApi:
    storage = S3Storage(s3_client())
    return ImagesApi(
        build_repository(settings),
        settings.source_bucket,
        lambda bucket, key: storage.presigned_get(bucket, key, settings.url_expires),
    )
