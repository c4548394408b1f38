"""infra/main.tf.json: in sync with its generator, and every reference in it
resolves (no terraform binary here; users run `terraform validate`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from chalicelib.cdn import object_path
from chalicelib.observability import METRICS, NAMESPACE
from chalicelib.repositories.dynamodb import TTL_ATTRIBUTE, table_definition
from chalicelib.settings import ARCHIVE_STORAGE_CLASSES, Settings
from devtools.bucket_policy import CDN_READ_SID, TLS_ONLY_SID
from devtools.provision import ARCHIVE_RULE_ID, QUEUE_EVENTS
from devtools.stages import merge_environment, stage_environment
from devtools.terraform import chalice_environment, render

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
# A bucket policy: "${CONDITION ? jsonencode(WITH_CDN) : jsonencode(WITHOUT)}",
# each document JSON (which HCL reads as an object expression).
CONDITIONAL_POLICY = re.compile(r"\$\{(.+?) \? jsonencode\((\{.*\})\) : jsonencode\((\{.*\})\)\}")


def policies(resource: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(the condition under which the CDN reads the bucket, the policy then, otherwise)."""
    match = CONDITIONAL_POLICY.fullmatch(resource["policy"])
    assert match is not None, resource["policy"]
    return match.group(1), json.loads(match.group(2)), json.loads(match.group(3))


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
        _, with_cdn, without = policies(policy)
        for document in (with_cdn, without):
            statement = document["Statement"][0]
            assert statement["Sid"] == TLS_ONLY_SID
            assert statement["Effect"] == "Deny" and statement["Action"] == "s3:*"
            assert statement["Principal"] == "*"
            assert statement["Resource"] == [f"${{{bucket}.arn}}", f"${{{bucket}.arn}}/*"]
            assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert len(without["Statement"]) == 1


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


# -- the CDN ----------------------------------------------------------------------
CDN_TYPES = (
    "aws_cloudfront_origin_access_control",
    "aws_cloudfront_cache_policy",
    "aws_cloudfront_response_headers_policy",
    "aws_cloudfront_distribution",
)


def cdn(kind: str) -> dict[str, Any]:
    resource: dict[str, Any] = json.loads(INFRA.read_text())["resource"][kind]["renditions"]
    return resource


def test_the_cdn_is_a_variable_off_by_default_and_every_part_of_it_is_counted_by_it() -> None:
    doc = json.loads(INFRA.read_text())
    assert doc["variable"]["cdn"]["type"] == "bool" and doc["variable"]["cdn"]["default"] is False
    for kind in CDN_TYPES:
        assert set(doc["resource"][kind]) == {"renditions"}
        assert doc["resource"][kind]["renditions"]["count"] == "${var.cdn ? 1 : 0}", kind


def test_the_origin_is_the_destination_bucket_through_origin_access_control() -> None:
    oac = cdn("aws_cloudfront_origin_access_control")
    assert oac["origin_access_control_origin_type"] == "s3"
    assert (oac["signing_behavior"], oac["signing_protocol"]) == ("always", "sigv4")
    [origin] = cdn("aws_cloudfront_distribution")["origin"]
    assert origin["origin_access_control_id"] == (
        "${aws_cloudfront_origin_access_control.renditions[0].id}"
    )
    assert origin["domain_name"] == (
        '${var.dest_bucket != "" ? aws_s3_bucket.dest[0].bucket_regional_domain_name'
        " : aws_s3_bucket.source.bucket_regional_domain_name}"
    )
    assert "s3_origin_config" not in origin  # no legacy origin access identity


def test_the_cache_key_is_the_path_and_v_only() -> None:
    policy = cdn("aws_cloudfront_cache_policy")
    [key] = policy["parameters_in_cache_key_and_forwarded_to_origin"]
    assert key == {
        "enable_accept_encoding_gzip": False,
        "enable_accept_encoding_brotli": False,
        "cookies_config": [{"cookie_behavior": "none"}],
        "headers_config": [{"header_behavior": "none"}],
        "query_strings_config": [
            {"query_string_behavior": "whitelist", "query_strings": [{"items": ["v"]}]}
        ],
    }


def test_edges_keep_a_rendition_for_the_edge_ttl_a_day_by_default() -> None:
    """Renditions are stored with Cache-Control: no-cache, which CloudFront
    honours unless the minimum TTL is above 0: all three TTLs are the variable."""
    doc = json.loads(INFRA.read_text())
    policy = cdn("aws_cloudfront_cache_policy")
    assert policy["min_ttl"] == policy["default_ttl"] == policy["max_ttl"] == "${var.cdn_edge_ttl}"
    ttl = doc["variable"]["cdn_edge_ttl"]
    assert (ttl["type"], ttl["default"]) == ("number", 86400)
    [check] = ttl["validation"]
    assert "var.cdn_edge_ttl >= 1" in check["condition"]


def test_browsers_are_told_to_keep_a_rendition_url_a_year() -> None:
    headers = cdn("aws_cloudfront_response_headers_policy")
    [config] = headers["custom_headers_config"]
    assert config["items"] == [
        {
            "header": "Cache-Control",
            "value": "public, max-age=31536000, immutable",
            "override": True,
        }
    ]


def test_the_distribution_serves_renditions_over_https_with_http2_and_3() -> None:
    doc = json.loads(INFRA.read_text())
    distribution = cdn("aws_cloudfront_distribution")
    assert distribution["http_version"] == "http2and3"
    assert distribution["enabled"] is True
    assert distribution["price_class"] == "${var.cdn_price_class}"
    assert doc["variable"]["cdn_price_class"]["default"] == "PriceClass_100"
    [renditions] = distribution["ordered_cache_behavior"]
    assert renditions["path_pattern"] == "${var.rendition_prefix}*"
    [default] = distribution["default_cache_behavior"]
    for behaviour in (renditions, default):
        assert behaviour["viewer_protocol_policy"] == "redirect-to-https"
        assert behaviour["allowed_methods"] == ["GET", "HEAD"]
        assert behaviour["cache_policy_id"] == "${aws_cloudfront_cache_policy.renditions[0].id}"
        assert behaviour["response_headers_policy_id"] == (
            "${aws_cloudfront_response_headers_policy.renditions[0].id}"
        )
        assert behaviour["target_origin_id"] == distribution["origin"][0]["origin_id"]
    assert distribution["viewer_certificate"] == [{"cloudfront_default_certificate": True}]
    assert (
        doc["variable"]["rendition_prefix"]["default"]
        == Settings(source_bucket="s", dest_bucket="s").rendition_prefix
    )


def test_the_distribution_may_read_renditions_of_the_bucket_it_serves_and_nothing_else() -> None:
    """The statement joins the policy the shared generator writes (by Sid), of
    the destination bucket, or of the source bucket when it is the only one.
    Only GetObject, only under RENDITION_PREFIX, only this distribution: any
    other path, whichever behaviour serves it, is refused by the bucket."""
    resources = json.loads(INFRA.read_text())["resource"]["aws_s3_bucket_policy"]
    conditions = {"source": 'var.cdn && var.dest_bucket == ""', "dest": "var.cdn"}
    for name, bucket in BUCKETS.items():
        condition, with_cdn, _ = policies(resources[name])
        assert condition == conditions[name]
        assert [s["Sid"] for s in with_cdn["Statement"]] == [TLS_ONLY_SID, CDN_READ_SID]
        assert with_cdn["Statement"][1] == {
            "Sid": CDN_READ_SID,
            "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": "s3:GetObject",
            "Resource": f"${{{bucket}.arn}}/${{var.rendition_prefix}}*",
            "Condition": {
                "StringEquals": {
                    "AWS:SourceArn": "${aws_cloudfront_distribution.renditions[0].arn}"
                }
            },
        }


def test_outputs_hand_the_stage_the_cdn() -> None:
    doc = json.loads(INFRA.read_text())
    outputs = doc["output"]["chalice_environment"]["value"]
    assert outputs["RENDITION_BASE_URL"] == (
        '${var.cdn ? "https://${aws_cloudfront_distribution.renditions[0].domain_name}" : ""}'
    )
    assert outputs["CDN_DISTRIBUTION_ID"] == (
        '${var.cdn && var.cdn_invalidation ? aws_cloudfront_distribution.renditions[0].id : ""}'
    )
    assert outputs["RENDITION_PREFIX"] == "${var.rendition_prefix}"
    assert doc["output"]["cdn_domain_name"]["value"] == (
        '${var.cdn ? aws_cloudfront_distribution.renditions[0].domain_name : ""}'
    )
    assert doc["variable"]["cdn_invalidation"]["default"] is True


def test_terraform_env_takes_the_cdn_and_clears_it_when_off(tmp_path: Path) -> None:
    """``terraform output -json chalice_environment`` -> the stage: the CDN's
    settings when it is on, empty ones (unset) when it is off, so the stage
    stops using a distribution that is gone; other empty outputs leave the
    stage's own values alone."""
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(
        json.dumps({"app_name": "a", "stages": {"prod": {"environment_variables": {}}}})
    )
    on = {
        "SOURCE_BUCKET": "in", "DDB_TABLE": "t", "SNS_TOPIC_ARN": "", "ARCHIVE_AFTER_DAYS": "",
        "RENDITION_PREFIX": "resized/", "RENDITION_BASE_URL": "https://d1.cloudfront.net",
        "CDN_DISTRIBUTION_ID": "E2QWRUHAPOMQZL",
    }  # fmt: skip
    merge_environment("prod", chalice_environment(on), tmp_path)
    env = stage_environment("prod", tmp_path)
    assert env == {
        "SOURCE_BUCKET": "in", "DDB_TABLE": "t", "RENDITION_PREFIX": "resized/",
        "RENDITION_BASE_URL": "https://d1.cloudfront.net", "CDN_DISTRIBUTION_ID": "E2QWRUHAPOMQZL",
    }  # fmt: skip
    settings = Settings.from_env(env)
    assert (settings.rendition_base_url, settings.cdn_distribution_id) == (
        "https://d1.cloudfront.net", "E2QWRUHAPOMQZL"
    )  # fmt: skip

    off = on | {"RENDITION_BASE_URL": "", "CDN_DISTRIBUTION_ID": ""}
    merge_environment("prod", chalice_environment(off), tmp_path)
    env = stage_environment("prod", tmp_path)
    assert (env["RENDITION_BASE_URL"], env["CDN_DISTRIBUTION_ID"]) == ("", "")
    settings = Settings.from_env(env)
    assert (settings.rendition_base_url, settings.cdn_distribution_id) == ("", "")

    # With invalidation off the URL stays and deletions leave the edges to the TTL.
    no_invalidation = on | {"CDN_DISTRIBUTION_ID": ""}
    merge_environment("prod", chalice_environment(no_invalidation), tmp_path)
    settings = Settings.from_env(stage_environment("prod", tmp_path))
    assert (settings.rendition_base_url, settings.cdn_distribution_id) == (
        "https://d1.cloudfront.net", ""
    )  # fmt: skip


def test_the_readme_recipe_shows_the_statement_the_generator_writes() -> None:
    """For ``chalice deploy`` without Terraform the README shows the bucket
    policy statement; it must be the one ``devtools.bucket_policy`` writes."""
    from devtools.bucket_policy import CdnAccess, bucket_arn, cdn_read

    readme = (PROJECT / "README.md").read_text()
    section = readme[readme.index("## Serving images") :]
    match = re.search(
        r"```json\n(\{\n  \"Sid\": \"" + CDN_READ_SID + r".*?\n\})\n```", section, re.S
    )
    assert match is not None, "the README's Serving images section shows the statement"
    shown = json.loads(match.group(1))
    account, distribution = "111122223333", "E2QWRUHAPOMQZL"
    expected = cdn_read(
        bucket_arn("my-renditions"),
        CdnAccess(f"arn:aws:cloudfront::{account}:distribution/{distribution}", "resized/"),
    )
    assert shown == expected


def test_a_cloudfront_path_pattern_covers_every_rendition_url() -> None:
    """The behaviour's pattern is matched against the URL path: every path
    the API hands out starts with RENDITION_PREFIX."""
    prefix = Settings(source_bucket="s", dest_bucket="s").rendition_prefix
    for key in ("resized/thumb/photos/été 1.jpg", "resized/thumb.webp/a b.jpg.webp"):
        assert object_path(key, "e").startswith("/" + prefix)
