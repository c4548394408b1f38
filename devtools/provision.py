"""Create, idempotently, the AWS resources a stage's settings name.

Talks to whatever endpoint boto3's environment selects (``AWS_ENDPOINT_URL``
for a local emulator, AWS otherwise). Safe to run again: existing resources
are kept, missing pieces (an index added by a later release, TTL) are added.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from chalicelib.repositories import dynamodb
from chalicelib.settings import Settings
from devtools.bucket_policy import bucket_arn, bucket_policy

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        PublicAccessBlockConfigurationTypeDef,
        ServerSideEncryptionConfigurationTypeDef,
    )
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

Report = Callable[[str], None]


def provision(
    settings: Settings,
    *,
    s3: S3Client | None = None,
    ddb: DynamoDBClient | None = None,
    sts: Any = None,
    report: Report = print,
    queue_consumer_timeout: int = 60,
    tls_only: bool | None = None,
) -> None:
    """Create what the stage's settings name. ``queue_consumer_timeout`` is the
    Lambda timeout of ``handle_queued_events`` (sets the queue's visibility).

    ``tls_only`` puts the deny-without-TLS statement in the buckets' policies;
    by default it does so unless the S3 endpoint is plain HTTP (a local
    emulator), where that statement would refuse every request."""
    s3 = s3 or boto3.client("s3")
    if tls_only is None:
        tls_only = not str(s3.meta.endpoint_url).startswith("http://")
    for bucket in dict.fromkeys([settings.source_bucket, settings.dest_bucket]):
        ensure_bucket(s3, bucket, report)
        lock_down_bucket(s3, bucket, report, tls_only=tls_only)
    ensure_archive_rule(s3, settings, report)
    if settings.db_backend == "dynamodb":
        ensure_table(ddb or boto3.client("dynamodb"), settings.ddb_table, report)
    else:
        ensure_schema(settings, report)
    ensure_token_key(settings, report)
    if settings.uploads_enabled:
        ensure_upload_cors(s3, settings.source_bucket, settings.cors_origin or "*", report)
    if settings.sns_topic_arn:
        ensure_topic(boto3.client("sns"), settings.sns_topic_arn, report)
    if settings.events_queue:
        account = (sts or boto3.client("sts")).get_caller_identity()["Account"]
        queue_arn = ensure_queue(
            boto3.client("sqs"), settings.events_queue, settings.source_bucket, account,
            queue_consumer_timeout, report,
        )  # fmt: skip
        ensure_bucket_notification(s3, settings.source_bucket, queue_arn, report)


# AWS refuses an SQS event source mapping unless the queue's visibility timeout
# is at least the function's timeout; six times leaves room for retries.
VISIBILITY_FACTOR = 6
MAX_RECEIVE_COUNT = 5
QUEUE_EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"]
# Queues are encrypted with SQS-owned keys: with the AWS managed key aws/sqs,
# S3 could not deliver notifications (its key policy cannot grant S3 use of it).
SSE_SQS: dict[QueueAttributeNameType, str] = {"SqsManagedSseEnabled": "true"}


def events_queue_policy(queue_arn: str, source_arn: str, account: str) -> dict[str, Any]:
    """Lets S3 send to the events queue from the source bucket of this account
    only (a bucket of that name in another account cannot). Terraform writes
    the same document."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "S3SendsUploadEvents",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {
                    "ArnEquals": {"aws:SourceArn": source_arn},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            }
        ],
    }


def ensure_queue(
    sqs: SQSClient, name: str, bucket: str, account: str, function_timeout: int, report: Report
) -> str:
    """The events queue, its dead-letter queue (both SSE-SQS) and a policy
    letting S3 send to it from the source bucket only; returns the queue's ARN."""
    # Attributes that differ from an existing queue's make CreateQueue fail,
    # so what a later release changes is set afterwards.
    dlq_url = sqs.create_queue(
        QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=dlq_url, Attributes=SSE_SQS)
    dlq_arn = _queue_arn(sqs, dlq_url)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = _queue_arn(sqs, url)
    policy = events_queue_policy(arn, bucket_arn(bucket), account)
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={
            "VisibilityTimeout": str(VISIBILITY_FACTOR * function_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
            ),
            "Policy": json.dumps(policy),
            **SSE_SQS,
        },
    )
    report(f"queue {name}: ready, dead letters to {name}-dlq after {MAX_RECEIVE_COUNT} receives")
    return arn


def _queue_arn(sqs: SQSClient, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]


def ensure_bucket_notification(s3: S3Client, bucket: str, queue_arn: str, report: Report) -> None:
    """Send the bucket's events to the queue, merged into the bucket's existing
    notification configuration: other notifications are kept as they are."""
    config: dict[str, Any] = dict(s3.get_bucket_notification_configuration(Bucket=bucket))
    config.pop("ResponseMetadata", None)
    ours = f"image-pipeline-{queue_arn.rsplit(':', 1)[-1]}"
    queues = [q for q in config.get("QueueConfigurations", []) if q.get("Id") != ours]
    queues.append({"Id": ours, "QueueArn": queue_arn, "Events": QUEUE_EVENTS})
    config["QueueConfigurations"] = queues
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)  # type: ignore[arg-type]
    report(f"bucket {bucket}: events go to {queue_arn}")


ARCHIVE_RULE_ID = "image-pipeline-archive"


def archive_prefix(settings: Settings) -> str:
    """The key prefix the archive rule covers in the source bucket.

    A lifecycle filter can name a prefix, tags or sizes, never "all but
    RENDITION_PREFIX". With renditions in their own ``DEST_BUCKET`` every
    object of the source bucket is an original: the whole bucket (""). When
    they share it, ``UPLOAD_PREFIX``, which settings keep apart from
    ``RENDITION_PREFIX``, so the rule can never reach a rendition.
    """
    return "" if settings.dest_bucket != settings.source_bucket else settings.upload_prefix


def archive_rule(settings: Settings) -> dict[str, Any] | None:
    """The lifecycle rule that moves originals to ``ARCHIVE_STORAGE_CLASS``
    ``ARCHIVE_AFTER_DAYS`` after upload; None when archiving is off."""
    if not settings.archive_after_days:
        return None
    return {
        "ID": ARCHIVE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": archive_prefix(settings)},
        "Transitions": [
            {"Days": settings.archive_after_days, "StorageClass": settings.archive_storage_class}
        ],
    }


def ensure_archive_rule(s3: S3Client, settings: Settings, report: Report) -> None:
    """Put the archive rule into the source bucket's lifecycle configuration,
    or take it out when archiving is off; rules with another ID are kept.

    S3 has no per-rule call (PutBucketLifecycleConfiguration replaces the
    whole document), so this reads, edits and writes it back, bucket-wide
    settings (``TransitionDefaultMinimumObjectSize``) included."""
    bucket = settings.source_bucket
    try:
        found: dict[str, Any] = dict(s3.get_bucket_lifecycle_configuration(Bucket=bucket))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise
        found = {}
    rules: list[dict[str, Any]] = [dict(r) for r in found.get("Rules", [])]
    ours = archive_rule(settings)
    mine = [i for i, r in enumerate(rules) if r.get("ID") == ARCHIVE_RULE_ID]
    others = [r for r in rules if r.get("ID") != ARCHIVE_RULE_ID]
    if ours is None:
        if not mine:
            return
        if others:
            _put_lifecycle(s3, bucket, others, found)
        else:
            s3.delete_bucket_lifecycle(Bucket=bucket)
        report(f"bucket {bucket}: archiving off, lifecycle rule {ARCHIVE_RULE_ID} removed")
        return
    if mine:  # in place, where it was
        wanted = [ours if i == mine[0] else r for i, r in enumerate(rules) if i not in mine[1:]]
    else:
        wanted = [*rules, ours]
    if wanted != rules:
        _put_lifecycle(s3, bucket, wanted, found)
    prefix = archive_prefix(settings)
    what = (
        f"originals under {prefix}"
        if prefix
        else f"originals (the whole bucket: renditions go to {settings.dest_bucket})"
    )
    report(
        f"bucket {bucket}: {what} move to {settings.archive_storage_class} "
        f"{settings.archive_after_days} days after upload (lifecycle rule {ARCHIVE_RULE_ID})"
    )
    if prefix:
        report(
            f"bucket {bucket}: renditions share it, so originals outside UPLOAD_PREFIX "
            f"({prefix}) are not archived; a DEST_BUCKET of their own lets the rule cover "
            "the whole source bucket"
        )


def _put_lifecycle(
    s3: S3Client, bucket: str, rules: list[dict[str, Any]], found: dict[str, Any]
) -> None:
    extra = {}
    if found.get("TransitionDefaultMinimumObjectSize"):
        extra["TransitionDefaultMinimumObjectSize"] = found["TransitionDefaultMinimumObjectSize"]
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": rules},  # type: ignore[typeddict-item]
        **extra,
    )


UPLOAD_CORS_ID = "image-pipeline-uploads"


def ensure_upload_cors(s3: S3Client, bucket: str, origin: str, report: Report) -> None:
    """Let the gallery's origin POST uploads to the bucket (browsers ask first),
    keeping any other CORS rules the bucket has."""
    try:
        rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchCORSConfiguration":
            raise
        rules = []
    rules = [r for r in rules if r.get("ID") != UPLOAD_CORS_ID]
    rules.append(
        {
            "ID": UPLOAD_CORS_ID,
            "AllowedOrigins": [origin],
            "AllowedMethods": ["POST"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag", "Location"],
            "MaxAgeSeconds": 600,
        }
    )
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    report(f"bucket {bucket}: browser uploads allowed from {origin}")


def ensure_topic(sns: SNSClient, arn: str, report: Report) -> None:
    """Create the topic ``SNS_TOPIC_ARN`` names (idempotent: CreateTopic returns
    an existing topic's ARN)."""
    name = arn.rsplit(":", 1)[-1]
    created = sns.create_topic(Name=name)["TopicArn"]
    if created != arn:
        raise SystemExit(
            f"SNS_TOPIC_ARN is {arn}, but this account and region make {created}: "
            "fix the ARN in .chalice/config.json"
        )
    report(f"topic {name}: ready")


def ensure_schema(settings: Settings, report: Report) -> None:
    """Create ``DB_NAME`` if it is missing, then apply pending migrations."""
    from chalicelib.factory import mysql_connect
    from chalicelib.repositories.mysql_schema import migrate

    server = mysql_connect(settings, database="")()
    try:
        with server.cursor() as cur:
            name = settings.db_name.replace("`", "``")
            cur.execute(
                f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
    finally:
        server.close()
    connection = mysql_connect(settings)()
    try:
        migrate(connection, report)
    finally:
        connection.close()


def ensure_token_key(settings: Settings, report: Report) -> None:
    """Create the pagination token key now (kept if it exists), so the deployed
    API functions normally only read it."""
    from chalicelib.factory import build_repository

    repository = build_repository(settings)
    try:
        repository.token_key()
    finally:
        repository.close()
    report("token key: ready")


def ensure_bucket(s3: S3Client, bucket: str, report: Report) -> None:
    # HEAD first: in us-east-1 CreateBucket also "succeeds" on a bucket you own.
    try:
        s3.head_bucket(Bucket=bucket)
        report(f"bucket {bucket}: exists")
        return
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("403", "AccessDenied"):
            raise SystemExit(
                f"bucket {bucket!r} exists but this account cannot use it (bucket names are "
                "global): choose another name in .chalice/config.json"
            ) from exc
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = s3.meta.region_name
    args: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**args)
    report(f"bucket {bucket}: created")


PUBLIC_ACCESS_BLOCK: PublicAccessBlockConfigurationTypeDef = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
# SSE-S3: with the AWS managed key aws/s3, a CDN's origin access could not read
# renditions (that key's policy cannot grant CloudFront use of it).
BUCKET_ENCRYPTION: ServerSideEncryptionConfigurationTypeDef = {
    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
}


def lock_down_bucket(s3: S3Client, bucket: str, report: Report, *, tls_only: bool = True) -> None:
    """Block public access, encrypt at rest (SSE-S3) and, with ``tls_only``,
    refuse requests without TLS. The bucket's policy is merged: statements
    whose ``Sid`` this project does not own are kept."""
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=BUCKET_ENCRYPTION)
    locked = "public access blocked, encrypted (SSE-S3)"
    if tls_only:
        try:
            existing = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchBucketPolicy":
                raise
            existing = None
        policy = bucket_policy(bucket_arn(bucket), existing)
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        locked += ", TLS only"
    report(f"bucket {bucket}: {locked}")


def ensure_table(ddb: DynamoDBClient, name: str, report: Report) -> None:
    definition = dynamodb.table_definition(name)
    try:
        ddb.create_table(**definition)
        report(f"table {name}: created")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        report(f"table {name}: exists")
        _add_missing_indexes(ddb, name, definition, report)
    _wait_active(ddb, name)
    ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": dynamodb.TTL_ATTRIBUTE},
        )
        report(f"table {name}: tombstone expiry (TTL on {dynamodb.TTL_ATTRIBUTE}) enabled")


def _add_missing_indexes(
    ddb: DynamoDBClient, name: str, definition: dict[str, Any], report: Report
) -> None:
    existing = {
        gsi["IndexName"]
        for gsi in ddb.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", [])
    }
    for index in definition["GlobalSecondaryIndexes"]:
        if index["IndexName"] in existing:
            continue
        _wait_active(ddb, name)
        used = {k["AttributeName"] for k in index["KeySchema"]}
        ddb.update_table(
            TableName=name,
            AttributeDefinitions=[
                a for a in definition["AttributeDefinitions"] if a["AttributeName"] in used
            ],
            GlobalSecondaryIndexUpdates=[{"Create": index}],
        )
        report(f"table {name}: index {index['IndexName']} added")


def _wait_active(ddb: DynamoDBClient, name: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        table = ddb.describe_table(TableName=name)["Table"]
        indexes = table.get("GlobalSecondaryIndexes", [])
        if table["TableStatus"] == "ACTIVE" and all(
            i.get("IndexStatus", "ACTIVE") == "ACTIVE" for i in indexes
        ):
            return
        time.sleep(2)
    raise TimeoutError(f"table {name} did not become active in {timeout:.0f}s")


def failed_events_queue(app_name: str, stage: str) -> str:
    """The queue that keeps the events the direct S3 handlers give up on."""
    return f"{app_name}-{stage}-failed-events"


def ensure_failure_destination(
    app_name: str, stage: str, report: Report, lambda_client: Any = None, sqs: Any = None
) -> str:
    """Send events the direct S3 handlers give up on (after Lambda's two
    retries, or six hours) to an SQS queue instead of dropping them; returns
    the queue's ARN. For stages deployed with ``chalice deploy``."""
    sqs = sqs or boto3.client("sqs")
    lambda_client = lambda_client or boto3.client("lambda")
    name = failed_events_queue(app_name, stage)
    url = sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "1209600"})[
        "QueueUrl"
    ]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=SSE_SQS)
    arn = _queue_arn(sqs, url)
    for handler in ("handle_object_created", "handle_object_removed"):
        function = f"{app_name}-{stage}-{handler}"
        lambda_client.put_function_event_invoke_config(
            FunctionName=function,
            MaximumRetryAttempts=2,
            MaximumEventAgeInSeconds=21600,
            DestinationConfig={"OnFailure": {"Destination": arn}},
        )
        report(f"function {function}: failed events go to {name}")
    return arn
