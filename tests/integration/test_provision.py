"""``manage.py provision``: idempotent, and it mends a table missing pieces."""

from __future__ import annotations

import boto3

from chalicelib.repositories.dynamodb import TTL_ATTRIBUTE, table_definition
from chalicelib.settings import Settings
from devtools.provision import ensure_failure_destination, provision


def test_provision_twice_creates_everything_once(aws: str) -> None:
    settings = Settings.from_env(
        {"SOURCE_BUCKET": "in-box", "DEST_BUCKET": "out-box", "DDB_TABLE": "records"}
    )
    said: list[str] = []
    provision(settings, report=said.append)
    provision(settings, report=said.append)

    assert said[:3] == [
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
