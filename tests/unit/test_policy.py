"""One IAM role per function: what each holds, and the checked-in files.

A function may hold a permission only when its code path makes the boto3 call
that needs it, or when AWS needs it on the function's behalf. The tables below
keep both lists, by hand, for a few representative stages: a permission the
generator adds that neither list names fails a test, and so does one missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib.settings import Settings
from devtools.policy import (
    FUNCTIONS,
    Target,
    parse_policy_file,
    policy_file,
    policy_for,
    registered,
    render,
    rendered_scope,
    resolve_scope,
    stage_policies,
    write_stage,
)
from devtools.stages import app_name, stage_environment

PROJECT = Path(__file__).resolve().parents[2]
TARGET = Target("image-pipeline", "prod")

# -- what AWS needs on a function's behalf -------------------------------------
# Lambda writes the function's logs as its role.
LOGS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
# Without ListBucket, S3 answers a HEAD of a missing key with 403, not 404: the
# handlers HEAD sources (is it gone?) and old-layout renditions (whose is it?).
HEAD_404 = ["s3:ListBucket"]
# Lambda sends the events it gave up on to the failure destination as the role.
FAILURE_DESTINATION = ["sqs:SendMessage"]
# The SQS event source mapping polls and deletes as the consumer's role.
EVENT_SOURCE = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
# A presigned URL makes no call: S3 checks the signer's permission when it is used.
PRESIGNED_GET = ["s3:GetObject"]
PRESIGNED_POST = ["s3:PutObject"]
# Lambda in a VPC creates and removes the function's network interfaces.
VPC = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]

# -- what the code paths call (boto3 call -> action) ----------------------------
# s3 head_object, get_object -> s3:GetObject; put_object -> s3:PutObject;
# delete_object, delete_objects -> s3:DeleteObject.
RECORDS = [  # DynamoRepository: get_item, put_item, update_item, delete_item, query
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
    "dynamodb:DeleteItem", "dynamodb:Query",
]  # fmt: skip
CREATE = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]  # read, write, replace
REMOVE = ["s3:GetObject", "s3:DeleteObject"]  # HEAD source and old renditions, delete
# SqsQueue: delete_message, change_message_visibility_batch, get_queue_url
QUEUE_CALLS = ["sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl"]
# ImagesApi: get_item (image, token key), query; put_item of a missing token key
API_RECORDS = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"]

SNS_TOPIC = "arn:aws:sns:eu-west-1:111122223333:image-events"
SECRET = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:db"

DIRECT = {
    "SOURCE_BUCKET": "in", "DEST_BUCKET": "out", "DDB_TABLE": "t",
    "SNS_TOPIC_ARN": SNS_TOPIC, "METADATA_FUNCTION": "image-pipeline-prod-extract_metadata",
}  # fmt: skip
QUEUED = {
    "SOURCE_BUCKET": "in", "DEST_BUCKET": "out", "DDB_TABLE": "t", "EVENTS_QUEUE": "q",
    "UPLOADS_ENABLED": "true",
}  # fmt: skip
MYSQL_IN_VPC = {
    "SOURCE_BUCKET": "in", "DB_BACKEND": "mysql", "DB_HOST": "db", "DB_USER": "u",
    "DB_NAME": "n", "DB_SECRET_ARN": SECRET, "SNS_TOPIC_ARN": SNS_TOPIC,
}  # fmt: skip

# stage -> function -> (what its code path calls, what AWS needs on its behalf).
# A function the stage does not register has no role; its file holds logs only.
NOT_REGISTERED: tuple[list[str], list[str]] = ([], LOGS)
EXPECTED: dict[str, tuple[dict[str, str], bool, dict[str, tuple[list[str], list[str]]]]] = {
    "direct DynamoDB, SNS, child function": (
        DIRECT,
        False,
        {
            "handle_object_created": (
                [*CREATE, *RECORDS, "sns:Publish", "lambda:InvokeFunction"],
                [*LOGS, *HEAD_404, *FAILURE_DESTINATION],
            ),
            "handle_object_removed": (
                [*REMOVE, *RECORDS, "sns:Publish"],
                [*LOGS, *HEAD_404, *FAILURE_DESTINATION],
            ),
            "handle_queued_events": NOT_REGISTERED,
            "extract_metadata": (["s3:GetObject"], [*LOGS, *HEAD_404]),
            "api_handler": (API_RECORDS, [*LOGS, *PRESIGNED_GET]),
            "purge_tombstones": NOT_REGISTERED,
        },
    ),
    "SQS DynamoDB, uploads": (
        QUEUED,
        False,
        {
            "handle_object_created": NOT_REGISTERED,
            "handle_object_removed": NOT_REGISTERED,
            "handle_queued_events": (
                [*CREATE, *REMOVE, *RECORDS, *QUEUE_CALLS],
                [*LOGS, *HEAD_404, *EVENT_SOURCE],
            ),
            "extract_metadata": (["s3:GetObject"], [*LOGS, *HEAD_404]),
            "api_handler": (API_RECORDS, [*LOGS, *PRESIGNED_GET, *PRESIGNED_POST]),
            "purge_tombstones": NOT_REGISTERED,
        },
    ),
    "direct MySQL in a VPC, secret, SNS": (
        MYSQL_IN_VPC,
        True,
        {
            "handle_object_created": (
                [*CREATE, "sns:Publish", "secretsmanager:GetSecretValue"],
                [*LOGS, *HEAD_404, *FAILURE_DESTINATION, *VPC],
            ),
            "handle_object_removed": (
                [*REMOVE, "sns:Publish", "secretsmanager:GetSecretValue"],
                [*LOGS, *HEAD_404, *FAILURE_DESTINATION, *VPC],
            ),
            "handle_queued_events": NOT_REGISTERED,
            "extract_metadata": (["s3:GetObject"], [*LOGS, *HEAD_404, *VPC]),
            "api_handler": (["secretsmanager:GetSecretValue"], [*LOGS, *PRESIGNED_GET, *VPC]),
            "purge_tombstones": (["secretsmanager:GetSecretValue"], [*LOGS, *VPC]),
        },
    ),
}


def granted(policy: dict[str, Any]) -> dict[str, list[str]]:
    """Each action granted, with every resource it is granted on."""
    actions: dict[str, list[str]] = {}
    for statement in policy["Statement"]:
        for action in statement["Action"]:
            actions.setdefault(action, []).extend(statement["Resource"])
    return actions


def policy(function: str, env: dict[str, str], in_vpc: bool = False) -> dict[str, Any]:
    return policy_for(function, Settings.from_env(env), TARGET, in_vpc)


@pytest.mark.parametrize(
    ("stage", "function"), [(stage, f) for stage in EXPECTED for f in FUNCTIONS]
)
def test_each_function_holds_what_it_uses_and_nothing_else(stage: str, function: str) -> None:
    env, in_vpc, table = EXPECTED[stage]
    calls, on_behalf = table[function]
    actions = granted(policy(function, env, in_vpc))
    assert sorted(actions) == sorted(set(calls) | set(on_behalf))


def test_the_tables_cover_every_function() -> None:
    assert all(set(table) == set(FUNCTIONS) for _, _, table in EXPECTED.values())


def test_the_api_reads_records_and_signs_urls_only() -> None:
    """No SNS, no deletes, no rendition writes: a stolen API credential reads."""
    actions = granted(policy("api_handler", QUEUED))
    table = "arn:aws:dynamodb:*:*:table/t"
    assert actions["dynamodb:GetItem"] == [
        table,
        f"{table}/index/by_status",
        f"{table}/index/by_folder",
    ]
    assert actions["s3:GetObject"] == ["arn:aws:s3:::out/resized/*"]
    assert actions["s3:PutObject"] == ["arn:aws:s3:::in/uploads/*"]
    [put] = [
        s for s in policy("api_handler", QUEUED)["Statement"] if "dynamodb:PutItem" in s["Action"]
    ]
    assert put["Action"] == ["dynamodb:PutItem"] and put["Resource"] == [table]
    # only the pagination tokens' key: pk META (chalicelib.repositories.dynamodb.TOKEN_KEY)
    assert put["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["META"]}}
    assert "s3:PutObject" not in granted(policy("api_handler", DIRECT))


def test_handlers_resources() -> None:
    created = granted(policy("handle_object_created", DIRECT))
    assert created["s3:GetObject"] == ["arn:aws:s3:::in/*", "arn:aws:s3:::out/resized/*"]
    assert created["s3:PutObject"] == created["s3:DeleteObject"] == ["arn:aws:s3:::out/resized/*"]
    assert created["s3:ListBucket"] == ["arn:aws:s3:::in", "arn:aws:s3:::out"]
    assert created["dynamodb:Query"] == [
        "arn:aws:dynamodb:*:*:table/t",
        "arn:aws:dynamodb:*:*:table/t/index/by_folder",
    ]
    assert created["sns:Publish"] == [SNS_TOPIC]
    assert created["lambda:InvokeFunction"] == [
        "arn:aws:lambda:*:*:function:image-pipeline-prod-extract_metadata"
    ]
    assert created["logs:PutLogEvents"] == [
        "arn:aws:logs:*:*:log-group:/aws/lambda/image-pipeline-prod-handle_object_created:*"
    ]
    removed = granted(policy("handle_object_removed", DIRECT))
    # HEAD (s3:GetObject) of the source and of old-layout renditions; no writes
    assert removed["s3:GetObject"] == ["arn:aws:s3:::in/*", "arn:aws:s3:::out/resized/*"]
    assert removed["s3:DeleteObject"] == ["arn:aws:s3:::out/resized/*"]
    metadata = granted(policy("extract_metadata", DIRECT))
    assert metadata["s3:GetObject"] == ["arn:aws:s3:::in/*"]
    assert metadata["s3:ListBucket"] == ["arn:aws:s3:::in"]


def test_the_consumer_holds_its_queue_and_no_failure_destination() -> None:
    consumer = granted(policy("handle_queued_events", QUEUED))
    for action in [*EVENT_SOURCE, *QUEUE_CALLS]:
        assert consumer[action] == ["arn:aws:sqs:*:*:q"]
    assert "sqs:SendMessage" not in consumer


def test_direct_handlers_may_send_to_their_failure_destination() -> None:
    """Lambda delivers an event the handlers gave up on as the function's role:
    without sqs:SendMessage the failed-events queue stayed empty."""
    for function in ("handle_object_created", "handle_object_removed"):
        [statement] = [
            s for s in policy(function, DIRECT)["Statement"] if "sqs:SendMessage" in s["Action"]
        ]
        assert statement["Action"] == ["sqs:SendMessage"]
        assert statement["Resource"] == ["arn:aws:sqs:*:*:image-pipeline-prod-failed-events"]


def test_exact_arns_where_region_and_account_are_known() -> None:
    target = Target("image-pipeline", "prod", "eu-west-1", "111122223333")
    settings = Settings.from_env(QUEUED | {"METADATA_FUNCTION": "child"})
    arns = [
        arn
        for f in FUNCTIONS
        for s in policy_for(f, settings, target)["Statement"]
        for arn in s["Resource"]
    ]
    regional = [a for a in arns if not a.startswith("arn:aws:s3:::")]
    known = (
        "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/lambda/image-pipeline-prod",
        "arn:aws:dynamodb:eu-west-1:111122223333:table/t",
        "arn:aws:sqs:eu-west-1:111122223333:q",
        "arn:aws:lambda:eu-west-1:111122223333:function:child",
    )
    assert regional and all(a.startswith(known) for a in regional), regional
    assert "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/lambda/image-pipeline-prod:*" in arns
    assert rendered_scope(policy_for("api_handler", settings, target)) == (
        "eu-west-1", "111122223333"
    )  # fmt: skip


CDN = {"RENDITION_BASE_URL": "https://d111111abcdef8.cloudfront.net"}
INVALIDATING = CDN | {"CDN_DISTRIBUTION_ID": "E2QWRUHAPOMQZL"}


@pytest.mark.parametrize(
    ("env", "removers"),
    [(DIRECT, ["handle_object_removed"]), (QUEUED, ["handle_queued_events"])],
    ids=["direct", "sqs"],
)
def test_only_the_removal_handlers_invalidate_and_only_at_the_stages_distribution(
    env: dict[str, str], removers: list[str]
) -> None:
    """With CDN_DISTRIBUTION_ID a deletion invalidates the deleted renditions'
    URLs (``chalicelib.cdn``): the function that handles removals may do that
    at that one distribution, and it gains nothing else; without the setting,
    a base URL alone, no function may invalidate anything."""
    target = Target("image-pipeline", "prod", "eu-west-1", "111122223333")
    distribution = "arn:aws:cloudfront::111122223333:distribution/E2QWRUHAPOMQZL"

    def actions(function: str, extra: dict[str, str]) -> dict[str, list[str]]:
        return granted(policy_for(function, Settings.from_env(env | extra), target))

    holders = {}
    for function in FUNCTIONS:
        with_it, without = actions(function, INVALIDATING), actions(function, CDN)
        assert "cloudfront:CreateInvalidation" not in without
        if "cloudfront:CreateInvalidation" in with_it:
            holders[function] = with_it.pop("cloudfront:CreateInvalidation")
        assert with_it == without  # nothing else changes
    assert holders == {f: [distribution] for f in removers}


EVERYTHING = {
    "SOURCE_BUCKET": "in", "DEST_BUCKET": "out", "DB_BACKEND": "mysql", "DB_HOST": "db",
    "DB_USER": "u", "DB_NAME": "n", "DB_SECRET_ARN": SECRET, "SNS_TOPIC_ARN": SNS_TOPIC,
    "UPLOADS_ENABLED": "true", "METADATA_FUNCTION": "arn:aws:lambda:eu-west-1:1:function:child",
}  # fmt: skip


@pytest.mark.parametrize("vpc", [False, True])
@pytest.mark.parametrize(
    "env",
    [EVERYTHING, EVERYTHING | {"EVENTS_QUEUE": "q"}, DIRECT, QUEUED, QUEUED | INVALIDATING],
    ids=str,
)
def test_no_wildcard_actions_and_star_resources_only_for_vpc_networking(
    env: dict[str, str], vpc: bool
) -> None:
    for function in FUNCTIONS:
        for statement in policy(function, env, in_vpc=vpc)["Statement"]:
            assert all("*" not in action for action in statement["Action"]), statement
            if "*" in statement["Resource"]:
                assert statement["Sid"] == "VpcNetworking" and vpc
                assert all(a.startswith("ec2:") for a in statement["Action"])


# -- the checked-in files -------------------------------------------------------
CHECKED_IN = sorted((PROJECT / ".chalice").glob("policy-*.json"))
CONFIG = json.loads((PROJECT / ".chalice" / "config.json").read_text())


@pytest.mark.parametrize("path", CHECKED_IN, ids=lambda p: p.name)
def test_checked_in_policies_match_their_stage(path: Path) -> None:
    parsed = parse_policy_file(path.name)
    assert parsed is not None, f"{path.name}: not a function's policy (left over?)"
    stage, function = parsed
    text = path.read_text()
    region, account = rendered_scope(json.loads(text))  # as manage.py policy found them
    expected = render(stage_policies(stage, PROJECT, region, account)[function])
    assert text == expected, f"run: python manage.py policy --stage {stage}"


def test_every_stage_with_policies_has_one_per_function_in_its_config() -> None:
    stages = {parse_policy_file(p.name) or ("?", "?") for p in CHECKED_IN}
    assert stages, "no policy files"
    for stage in {s for s, _ in stages}:
        assert {f for s, f in stages if s == stage} == set(FUNCTIONS)
        functions = CONFIG["stages"][stage]["lambda_functions"]
        for function in FUNCTIONS:
            assert functions[function]["iam_policy_file"] == policy_file(stage, function)
    assert CONFIG["autogen_policy"] is False


GRAPH = """
import json, os, sys
from chalice.config import Config
from chalice.deploy import models
from chalice.deploy.appgraph import ApplicationGraphBuilder, DependencyBuilder
import app
project, stage = sys.argv[1], sys.argv[2]
with open(os.path.join(project, ".chalice", "config.json")) as f:
    disk = json.load(f)
params = {"project_dir": project, "chalice_app": app.app}
graph = ApplicationGraphBuilder().build(Config(stage, "api_handler", params, disk), stage)
print(json.dumps({
    r.resource_name: [r.function_name, r.role.role_name, os.path.basename(r.role.policy.filename)]
    for r in DependencyBuilder().build_dependencies(graph) if isinstance(r, models.LambdaFunction)
}))
"""


def chalice_roles(project: Path, stage: str) -> dict[str, list[str]]:
    """What Chalice deploys for the stage: function -> [its name, its role, its policy file]."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(PROJECT)}
    env |= stage_environment(stage, project)
    done = subprocess.run(
        [sys.executable, "-c", GRAPH, str(project), stage],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    roles: dict[str, list[str]] = json.loads(done.stdout)
    return roles


def test_chalice_gives_each_checked_in_function_its_own_role_and_file() -> None:
    for stage in {parse_policy_file(p.name)[0] for p in CHECKED_IN}:  # type: ignore[index]
        roles = chalice_roles(PROJECT, stage)
        target = Target(app_name(PROJECT), stage)
        settings = Settings.from_env(stage_environment(stage, PROJECT))
        assert sorted(roles) == sorted(registered(settings))
        for function, (name, role, file) in roles.items():
            assert name == target.function_name(function)  # the log group's name
            assert role == f"{target.app_name}-{stage}-{function}"
            assert file == policy_file(stage, function)


@pytest.mark.parametrize("env", [DIRECT, QUEUED, MYSQL_IN_VPC], ids=["direct", "sqs", "mysql"])
def test_registered_is_what_chalice_deploys(tmp_path: Path, env: dict[str, str]) -> None:
    """``registered`` mirrors app.py's registration; a stage written by
    ``write_stage`` gives every deployed function a role and a file of its own."""
    project = tmp_path / "project"
    (project / ".chalice").mkdir(parents=True)
    config = json.loads(json.dumps(CONFIG))
    config["stages"] = {"prod": {"environment_variables": env}}
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    write_stage("prod", project)
    roles = chalice_roles(project, "prod")
    assert sorted(roles) == sorted(
        registered(Settings.from_env(config["environment_variables"] | env))
    )
    assert {file for _, _, file in roles.values()} == {policy_file("prod", f) for f in roles}
    assert len({role for _, role, _ in roles.values()}) == len(roles)


def test_write_stage_keeps_other_function_settings_and_drops_the_shared_file(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    shutil.copytree(PROJECT / ".chalice", project / ".chalice")
    (project / ".chalice" / "policy-dev.json").write_text("{}")
    config_path = project / ".chalice" / "config.json"
    before = json.loads(config_path.read_text())

    write_stage("dev", project, "eu-west-1", "111122223333")

    after = json.loads(config_path.read_text())
    for function, values in before["stages"]["dev"]["lambda_functions"].items():
        assert after["stages"]["dev"]["lambda_functions"][function] == values | {
            "iam_policy_file": policy_file("dev", function)
        }
    assert after["stages"]["local"] == before["stages"]["local"]
    assert not (project / ".chalice" / "policy-dev.json").exists()
    written = json.loads((project / ".chalice" / "policy-dev-api_handler.json").read_text())
    assert rendered_scope(written) == ("eu-west-1", "111122223333")


def test_region_and_account_given_looked_up_or_star() -> None:
    def no_lookup() -> str:
        raise AssertionError("looked up")

    given = resolve_scope(
        "eu-west-1", "111122223333", find_region=no_lookup, find_account=no_lookup, environ={}
    )
    assert given == ("eu-west-1", "111122223333", [])
    region, account, notes = resolve_scope(
        None, None, find_region=lambda: "us-east-2", find_account=lambda: "444455556666", environ={}
    )
    assert (region, account, notes) == ("us-east-2", "444455556666", [])

    def no_credentials() -> str:
        raise RuntimeError("Unable to locate credentials")

    region, account, notes = resolve_scope(
        None, None, find_region=lambda: None, find_account=no_credentials, environ={}
    )
    assert (region, account) == ("*", "*")
    assert "Unable to locate credentials" in notes[0] and "--account" in notes[-1]
    # An emulator's STS would answer with its own account.
    region, account, notes = resolve_scope(
        None, None, find_region=no_lookup, find_account=no_lookup,
        environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:4567"},
    )  # fmt: skip
    assert (region, account) == ("*", "*") and "AWS_ENDPOINT_URL" in notes[0]
    with pytest.raises(ValueError, match="account"):
        resolve_scope(None, "12345", environ={})
