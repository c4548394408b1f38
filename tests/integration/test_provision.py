"""``manage.py provision``: idempotent, it mends a table missing pieces, and
it locks the storage down."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.repositories.dynamodb import TTL_ATTRIBUTE, table_definition
from chalicelib.settings import Settings
from devtools.provision import ensure_failure_destination, provision

TWO_BUCKETS = {"SOURCE_BUCKET": "in-box", "DEST_BUCKET": "out-box", "DDB_TABLE": "records"}


def test_provision_twice_creates_everything_once(aws: str) -> None:
    settings = Settings.from_env(
        {"SOURCE_BUCKET": "in-box", "DEST_BUCKET": "out-box", "DDB_TABLE": "records"}
    )
    said: list[str] = []
    provision(settings, report=said.append)
    provision(settings, report=said.append)

    assert [line for line in said if line.endswith(": created")][:3] == [
        "bucket in-box: created",
        "bucket out-box: created",
        "table records: created",
    ]
    assert "bucket in-box: exists" in said and "table records: exists" in said
    ddb = boto3.client("dynamodb")
    table = ddb.describe_table(TableName="records")["Table"]
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {"by_status", "by_folder"}
    ttl = ddb.describe_time_to_live(TableName="records")["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED" and ttl["AttributeName"] == TTL_ATTRIBUTE
    names = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    assert sorted(names) == ["in-box", "out-box"]


def test_provision_adds_an_index_an_older_table_lacks(aws: str) -> None:
    definition = table_definition("old")
    definition["GlobalSecondaryIndexes"] = definition["GlobalSecondaryIndexes"][:1]
    definition["AttributeDefinitions"] = [
        a for a in definition["AttributeDefinitions"] if a["AttributeName"] != "list_folder"
    ]
    boto3.client("dynamodb").create_table(**definition)
    said: list[str] = []

    provision(
        Settings.from_env({"SOURCE_BUCKET": "in-box", "DDB_TABLE": "old"}), report=said.append
    )

    assert "table old: index by_folder added" in said
    table = boto3.client("dynamodb").describe_table(TableName="old")["Table"]
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {"by_status", "by_folder"}


def test_failure_destination_for_the_direct_handlers(aws: str) -> None:
    iam = boto3.client("iam")
    role = iam.create_role(
        RoleName="lambda", AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}'
    )["Role"]["Arn"]
    lam = boto3.client("lambda")
    for handler in ("handle_object_created", "handle_object_removed"):
        lam.create_function(
            FunctionName=f"image-pipeline-prod-{handler}", Runtime="python3.12", Role=role,
            Handler="app.app", Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        )  # fmt: skip
    said: list[str] = []

    arn = ensure_failure_destination("image-pipeline", "prod", said.append)

    assert arn.endswith(":image-pipeline-prod-failed-events")
    for handler in ("handle_object_created", "handle_object_removed"):
        config = lam.get_function_event_invoke_config(FunctionName=f"image-pipeline-prod-{handler}")
        assert config["DestinationConfig"]["OnFailure"]["Destination"] == arn
        assert config["MaximumRetryAttempts"] == 2
    assert len(said) == 2


def _statements(bucket: str) -> list[dict[str, Any]]:
    policy = json.loads(boto3.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])
    return list(policy["Statement"])


def _denies_plain_http(statement: dict[str, Any], bucket: str) -> bool:
    return (
        statement["Effect"] == "Deny"
        and statement["Principal"] in ("*", {"AWS": "*"})
        and statement["Action"] in ("s3:*", ["s3:*"])
        and set(statement["Resource"]) == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
        and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    )


def test_both_buckets_are_blocked_encrypted_and_tls_only(aws: str) -> None:
    provision(Settings.from_env(TWO_BUCKETS), report=lambda _: None, tls_only=True)

    s3 = boto3.client("s3")
    for bucket in ("in-box", "out-box"):
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert block == {
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        }
        [rule] = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        [statement] = _statements(bucket)
        assert _denies_plain_http(statement, bucket)


def test_one_bucket_for_both_roles_gets_one_policy(aws: str) -> None:
    settings = Settings.from_env({"SOURCE_BUCKET": "in-box", "DDB_TABLE": "records"})

    provision(settings, report=lambda _: None, tls_only=True)

    [statement] = _statements("in-box")
    assert _denies_plain_http(statement, "in-box")


def test_a_statement_provision_did_not_write_survives_it(aws: str) -> None:
    settings = Settings.from_env(TWO_BUCKETS)
    provision(settings, report=lambda _: None, tls_only=True)
    cdn_reads = {
        "Sid": "CloudFrontReadsRenditions",
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::out-box/resized/*",
        "Condition": {"StringEquals": {"AWS:SourceArn": "arn:aws:cloudfront::1:distribution/D"}},
    }
    s3 = boto3.client("s3")
    policy = json.loads(s3.get_bucket_policy(Bucket="out-box")["Policy"])
    policy["Statement"].append(cdn_reads)
    s3.put_bucket_policy(Bucket="out-box", Policy=json.dumps(policy))

    provision(settings, report=lambda _: None, tls_only=True)

    statements = _statements("out-box")
    assert cdn_reads in statements
    assert len(statements) == 2 and any(_denies_plain_http(s, "out-box") for s in statements)


def test_a_plain_http_emulator_stays_usable(aws: str) -> None:
    """Over plain HTTP a TLS-only statement would refuse every request: by
    default provision leaves it out there and still blocks and encrypts."""
    provision(Settings.from_env(TWO_BUCKETS), report=lambda _: None)

    s3 = boto3.client("s3")
    for bucket in ("in-box", "out-box"):
        assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        s3.put_object(Bucket=bucket, Key="photos/cat.jpg", Body=b"cat")
        assert s3.get_object(Bucket=bucket, Key="photos/cat.jpg")["Body"].read() == b"cat"


def test_only_the_stage_bucket_of_this_account_can_send_events(aws: str) -> None:
    settings = Settings.from_env(TWO_BUCKETS | {"EVENTS_QUEUE": "events"})

    provision(settings, report=lambda _: None)

    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName="events")["QueueUrl"]
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    )
    [statement] = policy["Statement"]
    account = boto3.client("sts").get_caller_identity()["Account"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": "arn:aws:s3:::in-box"},
        "StringEquals": {"aws:SourceAccount": account},
    }


class _Lambda:
    """Takes the on-failure destinations without functions to attach them to."""

    def put_function_event_invoke_config(self, **config: Any) -> None:
        pass


def test_queues_are_encrypted_with_sqs_managed_keys(aws: str) -> None:
    """Queues an earlier release made unencrypted are encrypted (SSE-SQS)."""
    sqs = boto3.client("sqs")
    sqs.create_queue(QueueName="events", Attributes={"SqsManagedSseEnabled": "false"})
    for name in ("events-dlq", "image-pipeline-prod-failed-events"):
        sqs.create_queue(
            QueueName=name,
            Attributes={"SqsManagedSseEnabled": "false", "MessageRetentionPeriod": "1209600"},
        )

    provision(Settings.from_env(TWO_BUCKETS | {"EVENTS_QUEUE": "events"}), report=lambda _: None)
    ensure_failure_destination("image-pipeline", "prod", lambda _: None, lambda_client=_Lambda())

    for name in ("events-dlq", "events", "image-pipeline-prod-failed-events"):
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert found["SqsManagedSseEnabled"] == "true", name
        assert "KmsMasterKeyId" not in found, name


ARCHIVING = TWO_BUCKETS | {"ARCHIVE_AFTER_DAYS": "30"}
THEIRS = [
    {"ID": "expire-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
     "Expiration": {"Days": 7}},
    {"ID": "tagged-to-ia", "Status": "Enabled",
     "Filter": {"And": {"Prefix": "raw/", "Tags": [{"Key": "tier", "Value": "cold"}]}},
     "Transitions": [{"Days": 45, "StorageClass": "STANDARD_IA"}]},
]  # fmt: skip


def _rules(bucket: str) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in boto3.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    ]


def test_the_archive_rule_merges_with_rules_provision_did_not_write(aws: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="in-box")
    s3.put_bucket_lifecycle_configuration(Bucket="in-box", LifecycleConfiguration={"Rules": THEIRS})  # type: ignore[typeddict-item]
    said: list[str] = []

    provision(Settings.from_env(ARCHIVING), report=said.append)
    provision(Settings.from_env(ARCHIVING), report=said.append)

    rules = _rules("in-box")
    assert rules[:2] == THEIRS and len(rules) == 3
    assert rules[2] == {
        "ID": "image-pipeline-archive",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "Transitions": [{"Days": 30, "StorageClass": "GLACIER_IR"}],
    }
    assert (
        said.count(
            "bucket in-box: originals (the whole bucket: renditions go to out-box) move to "
            "GLACIER_IR 30 days after upload (lifecycle rule image-pipeline-archive)"
        )
        == 2
    )
    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket="out-box")

    # new settings replace the rule in place; the others stay as they were
    changed = ARCHIVING | {"ARCHIVE_AFTER_DAYS": "120", "ARCHIVE_STORAGE_CLASS": "GLACIER"}
    provision(Settings.from_env(changed), report=lambda _: None)
    rules = _rules("in-box")
    assert rules[:2] == THEIRS and len(rules) == 3
    assert rules[2]["Transitions"] == [{"Days": 120, "StorageClass": "GLACIER"}]

    # archiving off removes its own rule only
    said.clear()
    provision(Settings.from_env(TWO_BUCKETS), report=said.append)
    assert _rules("in-box") == THEIRS
    assert "bucket in-box: archiving off, lifecycle rule image-pipeline-archive removed" in said


def test_archiving_off_leaves_no_lifecycle_configuration_of_its_own(aws: str) -> None:
    s3 = boto3.client("s3")
    provision(Settings.from_env(TWO_BUCKETS), report=lambda _: None)
    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket="in-box")

    provision(Settings.from_env(ARCHIVING), report=lambda _: None)
    assert [r["ID"] for r in _rules("in-box")] == ["image-pipeline-archive"]
    provision(Settings.from_env(TWO_BUCKETS), report=lambda _: None)
    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket="in-box")


def test_in_a_shared_bucket_the_rule_is_scoped_to_the_upload_prefix(aws: str) -> None:
    env = {
        "SOURCE_BUCKET": "in-box",
        "DDB_TABLE": "records",
        "ARCHIVE_AFTER_DAYS": "7",
        "UPLOAD_PREFIX": "incoming/",
        "ARCHIVE_STORAGE_CLASS": "INTELLIGENT_TIERING",
    }
    said: list[str] = []

    provision(Settings.from_env(env), report=said.append)

    [rule] = _rules("in-box")
    assert rule["Filter"] == {"Prefix": "incoming/"}
    assert rule["Transitions"] == [{"Days": 7, "StorageClass": "INTELLIGENT_TIERING"}]
    assert not "resized/thumb/incoming/a.jpg".startswith(rule["Filter"]["Prefix"])
    assert any("originals outside UPLOAD_PREFIX (incoming/) are not archived" in s for s in said)
