"""The IAM policy a stage's functions need, generated from its settings.

Chalice's own policy generator only sees boto3 calls written in ``app.py``
(ours live in ``chalicelib``), so stages set ``autogen_policy: false`` and use
``.chalice/policy-<stage>.json``, written by ``manage.py policy --stage S`` and
kept in sync by a test.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.settings import Settings

_REGION_ACCOUNT = "arn:aws:{service}:*:*:{resource}"


def _statement(sid: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


# Lambda in a VPC (to reach RDS) manages network interfaces; AWS grants these
# actions on "*" only.
VPC_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]


def policy_for(
    settings: Settings, in_vpc: bool = False, failure_queue: str | None = None
) -> dict[str, Any]:
    """One policy for the stage's role, which all its functions share: the
    handlers, the child function and the API (presigned GETs of renditions,
    presigned upload POSTs). ``failure_queue``: the queue that direct-mode
    handlers send the events Lambda gives up on to (``manage.py
    failure-destination``); Lambda sends as the function's role."""
    s = settings
    dest_prefix = f"arn:aws:s3:::{s.dest_bucket}/{s.rendition_prefix}*"
    statements = [
        _statement(
            "Logs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            ["arn:aws:logs:*:*:*"],
        ),
        _statement("ReadSources", ["s3:GetObject"], [f"arn:aws:s3:::{s.source_bucket}/*"]),
        _statement(
            "WriteRenditions", ["s3:PutObject", "s3:DeleteObject", "s3:GetObject"], [dest_prefix]
        ),
        # HEAD of a missing key answers 403 instead of 404 without ListBucket, and
        # "the object is gone" is what the delivery rules ask S3 (no listing is
        # made): of a source, and of a rendition of an earlier key layout, whose
        # owner is read from its metadata before it is deleted.
        _statement(
            "ListSources",
            ["s3:ListBucket"],
            sorted({f"arn:aws:s3:::{s.source_bucket}", f"arn:aws:s3:::{s.dest_bucket}"}),
        ),
    ]
    if s.uploads_enabled:
        uploads = f"arn:aws:s3:::{s.source_bucket}/{s.upload_prefix}*"
        statements.append(_statement("PresignedUploads", ["s3:PutObject"], [uploads]))
    if s.db_backend == "dynamodb":
        table = _REGION_ACCOUNT.format(service="dynamodb", resource=f"table/{s.ddb_table}")
        statements.append(
            _statement(
                "Records",
                [
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:Query",
                ],
                [table, f"{table}/index/*"],
            )
        )
    if s.sns_topic_arn:
        statements.append(_statement("Notify", ["sns:Publish"], [s.sns_topic_arn]))
    if s.events_queue:
        queue = _REGION_ACCOUNT.format(service="sqs", resource=s.events_queue)
        statements.append(
            _statement(
                "ConsumeEvents",
                [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    # a batch short of time makes its unstarted messages visible again
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                ],
                [queue],
            )
        )
    if failure_queue and not s.sqs_mode:
        queue = _REGION_ACCOUNT.format(service="sqs", resource=failure_queue)
        statements.append(_statement("FailedEvents", ["sqs:SendMessage"], [queue]))
    if s.metadata_function:
        function = s.metadata_function
        if not function.startswith("arn:"):
            function = _REGION_ACCOUNT.format(service="lambda", resource=f"function:{function}")
        statements.append(_statement("ExtractMetadata", ["lambda:InvokeFunction"], [function]))
    if s.db_secret_arn:
        statements.append(
            _statement("DatabaseSecret", ["secretsmanager:GetSecretValue"], [s.db_secret_arn])
        )
    if in_vpc:
        statements.append(_statement("VpcNetworking", VPC_ACTIONS, ["*"]))
    return {"Version": "2012-10-17", "Statement": statements}


def render(settings: Settings, in_vpc: bool = False, failure_queue: str | None = None) -> str:
    return json.dumps(policy_for(settings, in_vpc, failure_queue), indent=2) + "\n"
