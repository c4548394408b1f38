"""infra/main.tf.json: in sync with its generator, and every reference in it
resolves (no terraform binary here; users run `terraform validate`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from chalicelib.observability import METRICS, NAMESPACE
from chalicelib.repositories.dynamodb import TTL_ATTRIBUTE, table_definition
from chalicelib.settings import ARCHIVE_STORAGE_CLASSES, Settings
from devtools.provision import ARCHIVE_RULE_ID, QUEUE_EVENTS
from devtools.stages import merge_environment, stage_environment
from devtools.terraform import render

PROJECT = Path(__file__).resolve().parents[2]
INFRA = PROJECT / "infra" / "main.tf.json"


def test_checked_in_terraform_is_generated() -> None:
    assert INFRA.read_text() == render(), "run: python manage.py terraform"


def test_every_reference_resolves() -> None:
    doc = json.loads(INFRA.read_text())
    text = INFRA.read_text()
    variables = set(doc["variable"])
    resources = {f"{kind}.{name}" for kind, items in doc["resource"].items() for name in items}
    resources |= {f"{kind}.{name}" for kind, items in doc["data"].items() for name in items}
    used_vars = set(re.findall(r"\bvar\.([a-z_]+)", text))
    assert used_vars <= variables, used_vars - variables
    assert variables <= used_vars, variables - used_vars  # none declared for nothing
    used = set(re.findall(r"\b(aws_[a-z0-9_]+\.[a-z_]+)(?:\[0\])?\.", text))
    assert used <= resources, used - resources
    for items in doc["resource"].values():
        for body in items.values():
            for dependency in body.get("depends_on", []):
                assert dependency in resources


def test_table_matches_what_provision_creates() -> None:
    table = json.loads(INFRA.read_text())["resource"]["aws_dynamodb_table"]["records"]
    definition = table_definition("x")
    assert {a["name"] for a in table["attribute"]} == {
        a["AttributeName"] for a in definition["AttributeDefinitions"]
    }
    assert [i["name"] for i in table["global_secondary_index"]] == [
        i["IndexName"] for i in definition["GlobalSecondaryIndexes"]
    ]
    assert (table["hash_key"], table["range_key"]) == ("pk", "sk")
    assert table["ttl"] == {"attribute_name": TTL_ATTRIBUTE, "enabled": True}


def test_queue_mode_and_failure_destination() -> None:
    resources = json.loads(INFRA.read_text())["resource"]
    notification = resources["aws_s3_bucket_notification"]["events"]
    assert notification["queue"][0]["events"] == QUEUE_EVENTS
    assert "events_queue" in notification["count"]
    events = resources["aws_sqs_queue"]["events"]
    assert "maxReceiveCount = 5" in events["redrive_policy"]
    [statement] = json.loads(resources["aws_sqs_queue_policy"]["events"]["policy"])["Statement"]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": "${aws_s3_bucket.source.arn}"},
        "StringEquals": {"aws:SourceAccount": "${data.aws_caller_identity.current.account_id}"},
    }
    configs = resources["aws_lambda_function_event_invoke_config"]
    assert set(configs) == {"handle_object_created", "handle_object_removed"}
    for config in configs.values():
        destination = config["destination_config"]["on_failure"]["destination"]
        assert destination == "${aws_sqs_queue.failures.arn}"


BUCKETS = {"source": "aws_s3_bucket.source", "dest": "aws_s3_bucket.dest[0]"}


def test_both_buckets_are_blocked_encrypted_and_tls_only() -> None:
    resources = json.loads(INFRA.read_text())["resource"]
    for name, bucket in BUCKETS.items():
        count = resources["aws_s3_bucket"][name].get("count")
        block = resources["aws_s3_bucket_public_access_block"][name]
        assert block.get("count") == count and block["bucket"] == f"${{{bucket}.id}}"
        for setting in (
            "block_public_acls",
            "ignore_public_acls",
            "block_public_policy",
            "restrict_public_buckets",
        ):
            assert block[setting] is True, (name, setting)
        encryption = resources["aws_s3_bucket_server_side_encryption_configuration"][name]
        assert encryption.get("count") == count and encryption["bucket"] == f"${{{bucket}.id}}"
        [rule] = encryption["rule"]
        assert rule["apply_server_side_encryption_by_default"] == {"sse_algorithm": "AES256"}
        policy = resources["aws_s3_bucket_policy"][name]
        assert policy.get("count") == count and policy["bucket"] == f"${{{bucket}.id}}"
        [statement] = json.loads(policy["policy"])["Statement"]
        assert statement["Effect"] == "Deny" and statement["Action"] == "s3:*"
        assert statement["Principal"] == "*"
        assert statement["Resource"] == [f"${{{bucket}.arn}}", f"${{{bucket}.arn}}/*"]
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_queue_is_encrypted_with_sqs_managed_keys() -> None:
    queues = json.loads(INFRA.read_text())["resource"]["aws_sqs_queue"]
    assert set(queues) == {"events", "events_dlq", "failures"}
    for name, queue in queues.items():
        assert queue.get("sqs_managed_sse_enabled") is True, name
        assert "kms_master_key_id" not in queue, name


def test_outputs_are_settings_the_stage_takes(tmp_path: Path) -> None:
    outputs = json.loads(INFRA.read_text())["output"]["chalice_environment"]["value"]
    names = {name.upper() for name in Settings.__dataclass_fields__}
    assert set(outputs) <= names
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(
        json.dumps({"app_name": "a", "stages": {"prod": {"environment_variables": {"X": "1"}}}})
    )
    merge_environment("prod", {"SOURCE_BUCKET": "in", "DDB_TABLE": "t"}, tmp_path)
    assert stage_environment("prod", tmp_path) == {
        "X": "1",
        "SOURCE_BUCKET": "in",
        "DDB_TABLE": "t",
    }


def test_dashboard_shows_the_emitted_metrics_and_lambda_health() -> None:
    resources = json.loads(INFRA.read_text())["resource"]
    body = json.loads(resources["aws_cloudwatch_dashboard"]["pipeline"]["dashboard_body"])
    text = json.dumps(body)
    for metric in METRICS:
        assert f'MetricName=\\"{metric}\\"' in text, metric
    for metric in ("Errors", "Throttles", "Duration", "ApproximateNumberOfMessagesVisible"):
        assert metric in text
    assert f"{{{NAMESPACE},Function}}" in text
    assert all(w["properties"]["region"] for w in body["widgets"])


def test_archive_rule_is_the_one_provision_merges() -> None:
    doc = json.loads(INFRA.read_text())
    lifecycle = doc["resource"]["aws_s3_bucket_lifecycle_configuration"]["archive"]
    assert lifecycle["count"] == "${var.archive_after_days > 0 ? 1 : 0}"
    assert lifecycle["bucket"] == "${aws_s3_bucket.source.id}"  # never the destination
    [rule] = lifecycle["rule"]
    assert rule["id"] == ARCHIVE_RULE_ID and rule["status"] == "Enabled"
    # provision.archive_prefix: the whole bucket when renditions have their own,
    # UPLOAD_PREFIX when they share it
    [scope] = rule["filter"]
    assert scope == {
        "prefix": '${var.dest_bucket != "" && var.dest_bucket != var.source_bucket'
        ' ? "" : var.upload_prefix}'
    }
    assert rule["transition"] == [
        {"days": "${var.archive_after_days}", "storage_class": "${var.archive_storage_class}"}
    ]
    variables = doc["variable"]
    assert variables["archive_after_days"]["default"] == 0
    assert variables["archive_storage_class"]["default"] == "GLACIER_IR"
    assert (
        variables["upload_prefix"]["default"]
        == Settings(source_bucket="s", dest_bucket="s").upload_prefix
    )
    [check] = variables["archive_storage_class"]["validation"]
    assert json.dumps(list(ARCHIVE_STORAGE_CLASSES)) in check["condition"]
    outputs = doc["output"]["chalice_environment"]["value"]
    assert {"ARCHIVE_AFTER_DAYS", "ARCHIVE_STORAGE_CLASS", "UPLOAD_PREFIX"} <= set(outputs)
