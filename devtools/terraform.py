"""Writes ``infra/main.tf.json``: the resources a stage needs besides the
Lambda functions and API that Chalice creates.

Generated from the same definitions ``provision`` uses (the DynamoDB table
comes from ``chalicelib.repositories.dynamodb.table_definition``, the bucket
policies from ``devtools.bucket_policy``), so the two cannot drift; a test
keeps the checked-in file equal to this output.

With ``cdn = true`` (the default) a CloudFront distribution serves
``RENDITION_PREFIX`` of the destination bucket (``cdn_resources``), and the
``chalice_environment`` output hands the stage ``RENDITION_BASE_URL`` and
``CDN_DISTRIBUTION_ID``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from chalicelib.observability import NAMESPACE
from chalicelib.repositories import dynamodb
from chalicelib.settings import ARCHIVE_STORAGE_CLASSES
from devtools.bucket_policy import CdnAccess, bucket_policy
from devtools.provision import (
    ARCHIVE_RULE_ID,
    BUCKET_ENCRYPTION,
    MAX_RECEIVE_COUNT,
    PUBLIC_ACCESS_BLOCK,
    QUEUE_EVENTS,
    VISIBILITY_FACTOR,
    events_queue_policy,
)

DIRECT_HANDLERS = ("handle_object_created", "handle_object_removed")

# -- the CDN ----------------------------------------------------------------
DISTRIBUTION = "aws_cloudfront_distribution.renditions[0]"
CDN_COUNT = "${var.cdn ? 1 : 0}"
# What browsers are told: keep it a year, never revalidate. Safe because a
# rendition URL carries its object's ETag (``?v=``): new bytes, new URL.
BROWSER_CACHE_CONTROL = "public, max-age=31536000, immutable"
# How long an edge keeps a rendition: bounds how long a deleted photo is still
# served when deletions do not invalidate (``CDN_DISTRIBUTION_ID`` unset).
EDGE_TTL = 86_400
PRICE_CLASSES = ("PriceClass_100", "PriceClass_200", "PriceClass_All")
ORIGIN_ID = "renditions"
# The settings whose empty output means "off": ``terraform-env`` writes them
# empty rather than leave a stage pointing at a distribution that is gone.
CDN_SETTINGS = ("RENDITION_BASE_URL", "CDN_DISTRIBUTION_ID")


def _variable(description: str, kind: str, default: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"description": description, "type": kind}
    if default is not None:
        spec["default"] = default
    return spec


def _choice(name: str, description: str, choices: Sequence[str]) -> dict[str, Any]:
    """A string variable ``name`` that is one of ``choices``, the first by default."""
    spec = _variable(description, "string", choices[0])
    spec["validation"] = [
        {
            "condition": f"${{contains({json.dumps(list(choices))}, var.{name})}}",
            "error_message": f"The {name} variable is one of {', '.join(choices)}.",
        }
    ]
    return spec


def _table() -> dict[str, Any]:
    definition = dynamodb.table_definition("unused")
    return {
        "name": "${var.table_name}",
        "billing_mode": "PAY_PER_REQUEST",
        "hash_key": "pk",
        "range_key": "sk",
        "attribute": [
            {"name": a["AttributeName"], "type": a["AttributeType"]}
            for a in definition["AttributeDefinitions"]
        ],
        "global_secondary_index": [
            {
                "name": index["IndexName"],
                "hash_key": index["KeySchema"][0]["AttributeName"],
                "range_key": index["KeySchema"][1]["AttributeName"],
                "projection_type": index["Projection"]["ProjectionType"],
            }
            for index in definition["GlobalSecondaryIndexes"]
        ],
        "ttl": {"attribute_name": dynamodb.TTL_ATTRIBUTE, "enabled": True},
        "point_in_time_recovery": {"enabled": True},
    }


def _storage() -> dict[str, dict[str, Any]]:
    """Public access block, SSE-S3 and the policy of each bucket, with the
    settings ``provision`` applies. A policy is the whole document the shared
    generator builds: statements other parts of the deployment own go into
    that generator, not into a second policy of the same bucket. Without
    ``dest_bucket`` the source bucket's resources cover the one bucket."""
    [rule] = BUCKET_ENCRYPTION["Rules"]
    encryption = {"sse_algorithm": rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]}
    access = {_snake(setting): value for setting, value in PUBLIC_ACCESS_BLOCK.items()}
    storage: dict[str, dict[str, Any]] = {
        "aws_s3_bucket_public_access_block": {},
        "aws_s3_bucket_server_side_encryption_configuration": {},
        "aws_s3_bucket_policy": {},
    }
    for name, count in (("source", None), ("dest", '${var.dest_bucket != "" ? 1 : 0}')):
        bucket = f"aws_s3_bucket.{name}" + ("[0]" if count else "")
        base: dict[str, Any] = ({"count": count} if count else {}) | {"bucket": f"${{{bucket}.id}}"}
        storage["aws_s3_bucket_public_access_block"][name] = base | access
        storage["aws_s3_bucket_server_side_encryption_configuration"][name] = base | {
            "rule": [{"apply_server_side_encryption_by_default": encryption}]
        }
        # The distribution reads the destination bucket, the source bucket
        # when there is no other.
        serves = "var.cdn" if count else 'var.cdn && var.dest_bucket == ""'
        storage["aws_s3_bucket_policy"][name] = base | {
            "policy": _bucket_policy(f"${{{bucket}.arn}}", serves),
            # S3 refuses a policy change while the public access block changes.
            "depends_on": [f"aws_s3_bucket_public_access_block.{name}"],
        }
    return storage


def _bucket_policy(arn: str, serves_cdn: str) -> str:
    """The bucket's whole policy from ``bucket_policy``, with the CDN's read
    statement while ``serves_cdn`` (a Terraform condition) holds. Each
    document is JSON, which is also an HCL object expression, so Terraform's
    ``jsonencode`` renders it; only the chosen branch is evaluated, so the
    distribution is referenced only when it exists."""
    cdn = CdnAccess(f"${{{DISTRIBUTION}.arn}}", "${var.rendition_prefix}")
    with_cdn = json.dumps(bucket_policy(arn, cdn=cdn))
    without = json.dumps(bucket_policy(arn))
    return f"${{{serves_cdn} ? jsonencode({with_cdn}) : jsonencode({without})}}"


def _cdn_variables() -> dict[str, Any]:
    ttl = _variable(
        "Seconds a CloudFront edge keeps a rendition (minimum, default and maximum TTL): "
        "without CDN_DISTRIBUTION_ID, how long a deleted photo may still be served",
        "number",
        EDGE_TTL,
    )
    ttl["validation"] = [
        {
            "condition": "${var.cdn_edge_ttl >= 1 && var.cdn_edge_ttl <= 31536000 && "
            "var.cdn_edge_ttl == floor(var.cdn_edge_ttl)}",
            "error_message": "The cdn_edge_ttl variable is whole seconds, 1 to 31536000.",
        }
    ]
    price = _choice("cdn_price_class", "CloudFront price class of the distribution", PRICE_CLASSES)
    prefix = _variable(
        "RENDITION_PREFIX: the only keys the distribution may read", "string", "resized/"
    )
    prefix["validation"] = [
        {
            "condition": '${can(regex("^[^/].*/$", var.rendition_prefix))}',
            "error_message": "The rendition_prefix variable is a key prefix ending in '/', "
            "like resized/.",
        }
    ]
    return {
        "cdn": _variable(
            "Serve renditions through a CloudFront distribution (RENDITION_BASE_URL): "
            "anyone with a rendition's URL can fetch it; false keeps URLs presigned, private",
            "bool",
            False,
        ),
        "cdn_invalidation": _variable(
            "Hand the stage CDN_DISTRIBUTION_ID, so that deletions invalidate their "
            "renditions at the edges (the first 1,000 paths a month are free, then "
            "USD 0.005 a path); false: the edge TTL alone bounds how long they are served",
            "bool",
            True,
        ),
        "cdn_edge_ttl": ttl,
        "cdn_price_class": price,
        "rendition_prefix": prefix,
    }


def cdn_resources() -> dict[str, dict[str, Any]]:
    """The distribution and its policies, each ``count``ed by ``var.cdn``.

    The origin is the destination bucket through Origin Access Control
    (SigV4, every request signed); the bucket policy lets only this
    distribution read, and only ``RENDITION_PREFIX``, so any other path,
    whichever behaviour serves it, is a 403. The cache key is the path and
    the query string ``v`` alone. Renditions are stored with
    ``Cache-Control: no-cache`` (a bucket read directly must revalidate), so
    the edge TTL is the minimum TTL too: CloudFront honours no-cache below it.
    The response headers policy tells browsers to keep each URL a year.
    """
    name = "${var.app_name}-${var.stage}-renditions"
    dest_domain = (
        '${var.dest_bucket != "" ? aws_s3_bucket.dest[0].bucket_regional_domain_name'
        " : aws_s3_bucket.source.bucket_regional_domain_name}"
    )
    behaviour = {
        "target_origin_id": ORIGIN_ID,
        "viewer_protocol_policy": "redirect-to-https",
        "allowed_methods": ["GET", "HEAD"],
        "cached_methods": ["GET", "HEAD"],
        "compress": False,  # images are compressed already
        "cache_policy_id": "${aws_cloudfront_cache_policy.renditions[0].id}",
        "response_headers_policy_id": "${aws_cloudfront_response_headers_policy.renditions[0].id}",
    }
    return {
        "aws_cloudfront_origin_access_control": {
            "renditions": {
                "count": CDN_COUNT,
                "name": name,
                "description": "CloudFront reads renditions from the destination bucket",
                "origin_access_control_origin_type": "s3",
                "signing_behavior": "always",
                "signing_protocol": "sigv4",
            }
        },
        "aws_cloudfront_cache_policy": {
            "renditions": {
                "count": CDN_COUNT,
                "name": name,
                "comment": "Renditions: the path and ?v= (the object's ETag) are the key",
                "min_ttl": "${var.cdn_edge_ttl}",
                "default_ttl": "${var.cdn_edge_ttl}",
                "max_ttl": "${var.cdn_edge_ttl}",
                "parameters_in_cache_key_and_forwarded_to_origin": [
                    {
                        "enable_accept_encoding_gzip": False,
                        "enable_accept_encoding_brotli": False,
                        "cookies_config": [{"cookie_behavior": "none"}],
                        "headers_config": [{"header_behavior": "none"}],
                        "query_strings_config": [
                            {
                                "query_string_behavior": "whitelist",
                                "query_strings": [{"items": ["v"]}],
                            }
                        ],
                    }
                ],
            }
        },
        "aws_cloudfront_response_headers_policy": {
            "renditions": {
                "count": CDN_COUNT,
                "name": name,
                "comment": "Browsers keep a rendition URL a year: new bytes get a new URL",
                "custom_headers_config": [
                    {
                        "items": [
                            {
                                "header": "Cache-Control",
                                "value": BROWSER_CACHE_CONTROL,
                                "override": True,
                            }
                        ]
                    }
                ],
            }
        },
        "aws_cloudfront_distribution": {
            "renditions": {
                "count": CDN_COUNT,
                "enabled": True,
                "comment": name,
                "http_version": "http2and3",
                "is_ipv6_enabled": True,
                "price_class": "${var.cdn_price_class}",
                "origin": [
                    {
                        "origin_id": ORIGIN_ID,
                        "domain_name": dest_domain,
                        "origin_access_control_id": (
                            "${aws_cloudfront_origin_access_control.renditions[0].id}"
                        ),
                    }
                ],
                "ordered_cache_behavior": [
                    {"path_pattern": "${var.rendition_prefix}*", **behaviour}
                ],
                # Anything else reaches the bucket too, which answers 403: the
                # distribution may read RENDITION_PREFIX only.
                "default_cache_behavior": [behaviour],
                "restrictions": [{"geo_restriction": [{"restriction_type": "none"}]}],
                "viewer_certificate": [{"cloudfront_default_certificate": True}],
            }
        },
    }


def chalice_environment(outputs: Mapping[str, Any]) -> dict[str, str]:
    """The stage's environment variables from ``terraform output -json
    chalice_environment``: values as strings; an empty one is left out (the
    stage keeps its own), except for the CDN's, written empty: a stage
    whose distribution is off or gone must not keep pointing at it."""
    return {
        name: "" if value in ("", None) else str(value)
        for name, value in outputs.items()
        if value not in ("", None) or name in CDN_SETTINGS
    }


def _archive_variables() -> dict[str, Any]:
    days = _variable(
        "ARCHIVE_AFTER_DAYS: move originals to archive_storage_class this many days after "
        "upload; 0: off",
        "number",
        0,
    )
    days["validation"] = [
        {
            "condition": "${var.archive_after_days >= 0 && "
            "var.archive_after_days == floor(var.archive_after_days)}",
            "error_message": "The archive_after_days variable is whole days, 0 for off.",
        }
    ]
    storage_class = _choice(
        "archive_storage_class", "ARCHIVE_STORAGE_CLASS", ARCHIVE_STORAGE_CLASSES
    )
    prefix = _variable(
        "UPLOAD_PREFIX: where the archive rule applies when renditions share the source bucket",
        "string",
        "uploads/",
    )
    return {
        "archive_after_days": days,
        "archive_storage_class": storage_class,
        "upload_prefix": prefix,
    }


def _archive_rule() -> dict[str, Any]:
    """The source bucket's lifecycle configuration: the rule ``provision``
    merges (same ID and scope, see ``provision.archive_prefix``)."""
    separate = 'var.dest_bucket != "" && var.dest_bucket != var.source_bucket'
    return {
        "count": "${var.archive_after_days > 0 ? 1 : 0}",
        "bucket": "${aws_s3_bucket.source.id}",
        "rule": [
            {
                "id": ARCHIVE_RULE_ID,
                "status": "Enabled",
                "filter": [{"prefix": f'${{{separate} ? "" : var.upload_prefix}}'}],
                "transition": [
                    {
                        "days": "${var.archive_after_days}",
                        "storage_class": "${var.archive_storage_class}",
                    }
                ],
            }
        ],
    }


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _widget(title: str, metrics: list[list[Any]], stat: str, x: int, y: int) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": "${data.aws_region.current.name}",
            "stat": stat,
            "period": 300,
            "view": "timeSeries",
            "metrics": metrics,
        },
    }


def _search(namespace: str, dimension: str, metric: str, stat: str, label: str) -> list[Any]:
    terms = f'{{{namespace},{dimension}}} MetricName="{metric}" ${{var.app_name}}-${{var.stage}}'
    query = f"SEARCH('{terms}', '{stat}', 300)"
    return [{"expression": query, "label": label, "id": label.lower().replace(" ", "_")}]


def dashboard() -> str:
    """CloudWatch dashboard body: the pipeline's EMF metrics and its Lambda and queue health."""
    own, lam = (NAMESPACE, "Function"), ("AWS/Lambda", "FunctionName")
    queues = [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", name]
        for name in ("${var.events_queue}-dlq", "${var.app_name}-${var.stage}-failed-events")
    ]
    widgets = [
        _widget(
            "Images",
            [_search(*own, m, "Sum", m) for m in ("Processed", "Failed", "Ignored")],
            "Sum",
            0,
            0,
        ),
        _widget(
            "Processing ms (p50, p99)",
            [_search(*own, "ProcessingMilliseconds", s, f"{s} ms") for s in ("p50", "p99")],
            "p50",
            12,
            0,
        ),
        _widget(
            "Source megapixels",
            [_search(*own, "SourceMegapixels", "Average", "Average MP")],
            "Average",
            0,
            6,
        ),
        _widget(
            "Lambda errors and throttles",
            [_search(*lam, m, "Sum", m) for m in ("Errors", "Throttles")],
            "Sum",
            12,
            6,
        ),
        _widget(
            "Lambda duration p99", [_search(*lam, "Duration", "p99", "Duration p99")], "p99", 0, 12
        ),
        _widget("Dead letters and failed events", queues, "Maximum", 12, 12),
    ]
    return json.dumps({"widgets": widgets})


def document() -> dict[str, Any]:
    sqs_mode = '${var.events_queue != "" ? 1 : 0}'
    direct_mode = '${var.events_queue == "" && var.attach_failure_destination ? 1 : 0}'
    dest = '${var.dest_bucket != "" ? var.dest_bucket : var.source_bucket}'
    prefix = "${var.app_name}-${var.stage}"
    visibility = f"${{{VISIBILITY_FACTOR} * var.consumer_timeout}}"
    return {
        "terraform": {
            "required_providers": {"aws": {"source": "hashicorp/aws", "version": ">= 5.0"}}
        },
        "variable": {
            "app_name": _variable("Chalice app_name", "string", "image-pipeline"),
            "stage": _variable("Chalice stage these resources serve", "string", "dev"),
            "source_bucket": _variable("SOURCE_BUCKET: uploads are processed", "string"),
            "dest_bucket": _variable("DEST_BUCKET; empty: the source bucket", "string", ""),
            "table_name": _variable("DDB_TABLE", "string"),
            "topic_name": _variable("SNS topic for outcomes; empty: none", "string", ""),
            "events_queue": _variable("EVENTS_QUEUE; empty: direct S3 events", "string", ""),
            "consumer_timeout": _variable(
                "Lambda timeout of handle_queued_events, seconds", "number", 300
            ),
            "attach_failure_destination": _variable(
                "After the first chalice deploy: send events the direct handlers gave up on "
                "to the failures queue",
                "bool",
                False,
            ),
            **_archive_variables(),
            **_cdn_variables(),
        },
        "data": {"aws_region": {"current": {}}, "aws_caller_identity": {"current": {}}},
        "resource": {
            "aws_cloudwatch_dashboard": {
                "pipeline": {"dashboard_name": prefix, "dashboard_body": dashboard()}
            },
            "aws_s3_bucket": {
                "source": {"bucket": "${var.source_bucket}"},
                "dest": {
                    "count": '${var.dest_bucket != "" ? 1 : 0}',
                    "bucket": "${var.dest_bucket}",
                },
            },
            **_storage(),
            **cdn_resources(),
            # Owns the bucket's WHOLE lifecycle configuration: add any other
            # lifecycle rules of this bucket here, or they are removed on apply.
            "aws_s3_bucket_lifecycle_configuration": {"archive": _archive_rule()},
            "aws_dynamodb_table": {"records": _table()},
            "aws_sns_topic": {
                "outcomes": {
                    "count": '${var.topic_name != "" ? 1 : 0}',
                    "name": "${var.topic_name}",
                }
            },
            "aws_sqs_queue": {
                "events_dlq": {
                    "count": sqs_mode,
                    "name": "${var.events_queue}-dlq",
                    "message_retention_seconds": 1209600,
                    "sqs_managed_sse_enabled": True,
                },
                "events": {
                    "count": sqs_mode,
                    "name": "${var.events_queue}",
                    "sqs_managed_sse_enabled": True,
                    "visibility_timeout_seconds": visibility,
                    "redrive_policy": "${jsonencode({deadLetterTargetArn = "
                    f"aws_sqs_queue.events_dlq[0].arn, maxReceiveCount = {MAX_RECEIVE_COUNT}}})}}",
                },
                "failures": {
                    "name": f"{prefix}-failed-events",
                    "message_retention_seconds": 1209600,
                    "sqs_managed_sse_enabled": True,
                },
            },
            "aws_sqs_queue_policy": {
                "events": {
                    "count": sqs_mode,
                    "queue_url": "${aws_sqs_queue.events[0].id}",
                    "policy": json.dumps(
                        events_queue_policy(
                            "${aws_sqs_queue.events[0].arn}",
                            "${aws_s3_bucket.source.arn}",
                            "${data.aws_caller_identity.current.account_id}",
                        )
                    ),
                }
            },
            # Owns the bucket's WHOLE notification configuration: add any other
            # notifications of this bucket here, or they are removed on apply.
            "aws_s3_bucket_notification": {
                "events": {
                    "count": sqs_mode,
                    "bucket": "${aws_s3_bucket.source.id}",
                    "queue": [
                        {"queue_arn": "${aws_sqs_queue.events[0].arn}", "events": QUEUE_EVENTS}
                    ],
                    "depends_on": ["aws_sqs_queue_policy.events"],
                }
            },
            "aws_lambda_function_event_invoke_config": {
                handler: {
                    "count": direct_mode,
                    "function_name": f"{prefix}-{handler}",
                    "maximum_retry_attempts": 2,
                    "maximum_event_age_in_seconds": 21600,
                    "destination_config": {
                        "on_failure": {"destination": "${aws_sqs_queue.failures.arn}"}
                    },
                }
                for handler in DIRECT_HANDLERS
            },
        },
        "output": {
            "chalice_environment": {
                "description": "environment_variables for the Chalice stage "
                "(python manage.py terraform-env --stage STAGE FILE)",
                "value": {
                    "SOURCE_BUCKET": "${aws_s3_bucket.source.id}",
                    "DEST_BUCKET": dest,
                    "DDB_TABLE": "${aws_dynamodb_table.records.name}",
                    "SNS_TOPIC_ARN": '${var.topic_name != "" ? aws_sns_topic.outcomes[0].arn : ""}',
                    "EVENTS_QUEUE": "${var.events_queue}",
                    "UPLOAD_PREFIX": "${var.upload_prefix}",
                    "ARCHIVE_AFTER_DAYS": "${var.archive_after_days > 0 ? "
                    'tostring(var.archive_after_days) : ""}',
                    "ARCHIVE_STORAGE_CLASS": "${var.archive_after_days > 0 ? "
                    'var.archive_storage_class : ""}',
                    "RENDITION_PREFIX": "${var.rendition_prefix}",
                    "RENDITION_BASE_URL": f'${{var.cdn ? "https://${{{DISTRIBUTION}.domain_name}}"'
                    ' : ""}',
                    "CDN_DISTRIBUTION_ID": "${var.cdn && var.cdn_invalidation ? "
                    f'{DISTRIBUTION}.id : ""}}',
                },
            },
            "cdn_domain_name": {
                "description": "the distribution's domain (empty with cdn = false)",
                "value": f'${{var.cdn ? {DISTRIBUTION}.domain_name : ""}}',
            },
            "failures_queue_arn": {"value": "${aws_sqs_queue.failures.arn}"},
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2) + "\n"
