"""The IAM policy generated from a stage's settings, and the checked-in files."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.settings import Settings
from devtools.policy import policy_for, render
from devtools.provision import failed_events_queue
from devtools.stages import app_name, in_vpc, stage_environment

PROJECT = Path(__file__).resolve().parents[2]


def actions(settings: Settings) -> dict[str, list[str]]:
    """Each action granted, with every resource it is granted on."""
    granted: dict[str, list[str]] = {}
    for statement in policy_for(settings)["Statement"]:
        for action in statement["Action"]:
            granted.setdefault(action, []).extend(statement["Resource"])
    return granted


def test_least_privilege_for_a_direct_dynamodb_stage() -> None:
    env = {"SOURCE_BUCKET": "in", "DEST_BUCKET": "out", "DDB_TABLE": "t"}
    granted = actions(Settings.from_env(env))

    assert granted["s3:GetObject"] == ["arn:aws:s3:::in/*", "arn:aws:s3:::out/resized/*"]
    assert granted["s3:PutObject"] == ["arn:aws:s3:::out/resized/*"]
    # A HEAD of a missing key answers 404, not 403: sources, and old-layout renditions.
    assert granted["s3:ListBucket"] == ["arn:aws:s3:::in", "arn:aws:s3:::out"]
    assert granted["dynamodb:Query"] == [
        "arn:aws:dynamodb:*:*:table/t",
        "arn:aws:dynamodb:*:*:table/t/index/*",
    ]
    assert not any(a.startswith(("sqs:", "sns:", "lambda:", "secretsmanager:")) for a in granted)
    assert all("*" not in a for a in granted)


def test_optional_services_add_their_one_resource() -> None:
    granted = actions(
        Settings.from_env(
            {
                "SOURCE_BUCKET": "in", "DDB_TABLE": "t", "EVENTS_QUEUE": "q",
                "SNS_TOPIC_ARN": "arn:aws:sns:eu-west-1:1:topic",
                "METADATA_FUNCTION": "image-pipeline-dev-extract_metadata",
            }
        )
    )  # fmt: skip
    assert granted["sns:Publish"] == ["arn:aws:sns:eu-west-1:1:topic"]
    assert granted["sqs:ReceiveMessage"] == ["arn:aws:sqs:*:*:q"]
    assert granted["sqs:ChangeMessageVisibility"] == ["arn:aws:sqs:*:*:q"]
    assert granted["s3:ListBucket"] == ["arn:aws:s3:::in"]
    assert granted["lambda:InvokeFunction"] == [
        "arn:aws:lambda:*:*:function:image-pipeline-dev-extract_metadata"
    ]


@pytest.mark.parametrize("path", sorted((PROJECT / ".chalice").glob("policy-*.json")))
def test_checked_in_policies_match_their_stage(path: Path) -> None:
    stage = path.stem.removeprefix("policy-")
    settings = Settings.from_env(stage_environment(stage, PROJECT))
    failures = failed_events_queue(app_name(PROJECT), stage)
    expected = render(settings, in_vpc(stage, PROJECT), failures)
    assert path.read_text() == expected, f"run: python manage.py policy --stage {stage}"


EVERYTHING = {
    "SOURCE_BUCKET": "in", "DEST_BUCKET": "out", "DB_BACKEND": "mysql", "DB_HOST": "db",
    "DB_USER": "u", "DB_NAME": "n", "DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:db",
    "SNS_TOPIC_ARN": "arn:aws:sns:eu-west-1:1:t", "EVENTS_QUEUE": "q", "UPLOADS_ENABLED": "true",
    "METADATA_FUNCTION": "arn:aws:lambda:eu-west-1:1:function:child",
}  # fmt: skip


@pytest.mark.parametrize("vpc", [False, True])
def test_no_wildcard_actions_and_star_resources_only_for_vpc_networking(vpc: bool) -> None:
    policy = policy_for(Settings.from_env(EVERYTHING), in_vpc=vpc)
    for statement in policy["Statement"]:
        assert all("*" not in action for action in statement["Action"]), statement
        if "*" in statement["Resource"]:
            assert statement["Sid"] == "VpcNetworking" and vpc
            assert all(a.startswith("ec2:") for a in statement["Action"])
    granted = actions(Settings.from_env(EVERYTHING))
    assert granted["s3:PutObject"] == ["arn:aws:s3:::out/resized/*", "arn:aws:s3:::in/uploads/*"]
    assert granted["secretsmanager:GetSecretValue"] == [
        "arn:aws:secretsmanager:eu-west-1:1:secret:db"
    ]
    assert "dynamodb:Query" not in granted


def test_direct_handlers_may_send_to_their_failure_destination() -> None:
    """Lambda delivers an event the handlers gave up on as the function's role:
    without sqs:SendMessage the failed-events queue stayed empty."""
    direct = Settings.from_env({"SOURCE_BUCKET": "in", "DDB_TABLE": "t"})
    policy = policy_for(direct, failure_queue="image-pipeline-dev-failed-events")
    [statement] = [s for s in policy["Statement"] if "sqs:SendMessage" in s["Action"]]
    assert statement["Action"] == ["sqs:SendMessage"]
    assert statement["Resource"] == ["arn:aws:sqs:*:*:image-pipeline-dev-failed-events"]

    queued = Settings.from_env({"SOURCE_BUCKET": "in", "DDB_TABLE": "t", "EVENTS_QUEUE": "q"})
    policy = policy_for(queued, failure_queue="image-pipeline-dev-failed-events")
    assert not any("sqs:SendMessage" in s["Action"] for s in policy["Statement"])
