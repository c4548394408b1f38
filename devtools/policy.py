"""One IAM role per function, each policy generated from the stage's settings.

Chalice's own policy generator only sees boto3 calls written in ``app.py``
(ours live in ``chalicelib``), so the project sets ``autogen_policy: false``.
Chalice then gives every function a role of its own (``<app>-<stage>-<name>``)
whose policy is the file the function's ``iam_policy_file`` names:
``.chalice/policy-<stage>-<function>.json``, written by ``manage.py policy
--stage S`` together with those ``iam_policy_file`` entries, and kept in sync
by a test. ``api_handler`` is Chalice's name for the REST API's function.

Each function holds what its own code path calls, and what AWS does as the
function's role on its behalf (writing its logs, reading its SQS event
source, sending to its failure destination, network interfaces in a VPC).
S3 permissions that no call exercises are still needed in three places: a
presigned URL carries the permission of the role that signs it
(``s3:GetObject`` behind rendition URLs, ``s3:PutObject`` behind upload
POSTs), HEAD needs ``s3:GetObject``, and without ``s3:ListBucket`` S3
answers a HEAD of a missing key with 403 instead of 404.

ARNs name the stage's region and account when ``manage.py policy`` knows them
(``--region``/``--account``, or STS and the session's region), ``*`` otherwise.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.repositories.dynamodb import BY_FOLDER, BY_STATUS, TOKEN_KEY
from chalicelib.settings import Settings
from devtools.stages import function_setting

Policy = dict[str, Any]
Statement = dict[str, Any]

# Every function app.py may register, by the name Chalice gives it in
# ``lambda_functions`` (``api_handler``: the REST API).
CREATED, REMOVED, QUEUED = "handle_object_created", "handle_object_removed", "handle_queued_events"
METADATA, API, PURGE = "extract_metadata", "api_handler", "purge_tombstones"
FUNCTIONS = (CREATED, REMOVED, QUEUED, METADATA, API, PURGE)

ANY = "*"

# Lambda in a VPC (to reach RDS) manages network interfaces; AWS grants these
# actions on "*" only.
VPC_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]


@dataclass(frozen=True)
class Target:
    """What a stage's ARNs need besides its settings."""

    app_name: str
    stage: str
    region: str = ANY
    account: str = ANY

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def function_name(self, function: str) -> str:
        """The deployed name: Chalice names the REST API's function ``<app>-<stage>``."""
        base = f"{self.app_name}-{self.stage}"
        return base if function == API else f"{base}-{function}"


def registered(settings: Settings) -> tuple[str, ...]:
    """The functions ``app.py`` registers (and Chalice deploys) for these settings."""
    handlers = (QUEUED,) if settings.sqs_mode else (CREATED, REMOVED)
    mysql = (PURGE,) if settings.db_backend == "mysql" else ()
    return (*handlers, METADATA, API, *mysql)


def _failure_queue(target: Target) -> str:
    from devtools.provision import failed_events_queue

    return failed_events_queue(target.app_name, target.stage)


def _statement(
    sid: str, actions: list[str], resources: list[str], condition: dict[str, Any] | None = None
) -> Statement:
    statement: Statement = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def policy_for(function: str, settings: Settings, target: Target, in_vpc: bool = False) -> Policy:
    """The policy of ``function``'s role. A function these settings do not
    register (the other mode's handlers, ``purge_tombstones`` on DynamoDB)
    has no role while they stand; its file, which Chalice wants should the
    stage change mode, grants its logs only."""
    if function not in FUNCTIONS:
        raise ValueError(f"unknown function {function!r}; functions: {', '.join(FUNCTIONS)}")
    s, t = settings, target
    log_group = t.arn("logs", f"log-group:/aws/lambda/{t.function_name(function)}:*")
    statements = [
        _statement(
            "Logs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            [log_group],
        )
    ]
    if function in registered(s):
        statements += _BUILDERS[function](s, t)
        if s.db_backend == "mysql" and s.db_secret_arn and function != METADATA:
            statements.append(
                _statement("DatabaseSecret", ["secretsmanager:GetSecretValue"], [s.db_secret_arn])
            )
        if in_vpc:
            statements.append(_statement("VpcNetworking", VPC_ACTIONS, [ANY]))
    return {"Version": "2012-10-17", "Statement": statements}


# -- what each function's code path calls -------------------------------------
def _source_objects(s: Settings) -> str:
    return f"arn:aws:s3:::{s.source_bucket}/*"


def _renditions(s: Settings) -> str:
    return f"arn:aws:s3:::{s.dest_bucket}/{s.rendition_prefix}*"


def _table(s: Settings, t: Target, *indexes: str) -> list[str]:
    table = t.arn("dynamodb", f"table/{s.ddb_table}")
    return [table, *(f"{table}/index/{index}" for index in indexes)]


def _handler(s: Settings, t: Target, *, creates: bool) -> list[Statement]:
    """The pipeline's permissions for the events one handler receives:
    creations (``creates``) and removals, or removals only.

    Both kinds HEAD sources and folder markers (``storage.head``; a removal
    is applied only once the object is gone); a creation GETs the source
    with If-Match. Renditions: written by a creation; deleted when a source
    goes or its renditions are replaced (DeleteObjects, or DeleteObject with
    If-Match); a rendition of an earlier key layout is HEADed for its owner
    first, so ``s3:GetObject`` there too. Records: GetItem, PutItem
    (save/bury, conditional), UpdateItem (folders, pending marks), DeleteItem
    (an emptied folder) and Query (the table's folder items and the folder
    index), every one of which both kinds reach (a redelivered event finishes
    a removal's clean-up).
    """
    rendition_actions = ["s3:PutObject"] if creates else []
    rendition_actions += ["s3:DeleteObject", "s3:GetObject"]
    sources = "ReadSources" if creates else "HeadSources"
    statements = [
        _statement(sources, ["s3:GetObject"], [_source_objects(s)]),
        _statement("Renditions", rendition_actions, [_renditions(s)]),
        # A HEAD of a missing key answers 403 instead of 404 without ListBucket
        # (no listing is made): of a source or folder marker, and of a rendition
        # of an earlier key layout, whose owner is read before it is deleted.
        _statement(
            "HeadMissingKeys",
            ["s3:ListBucket"],
            sorted({f"arn:aws:s3:::{s.source_bucket}", f"arn:aws:s3:::{s.dest_bucket}"}),
        ),
    ]
    if s.db_backend == "dynamodb":
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
                _table(s, t, BY_FOLDER),
            )
        )
    if s.sns_topic_arn:
        statements.append(_statement("Notify", ["sns:Publish"], [s.sns_topic_arn]))
    if creates and s.metadata_function:
        function = s.metadata_function
        if not function.startswith("arn:"):
            function = t.arn("lambda", f"function:{function}")
        statements.append(_statement("ExtractMetadata", ["lambda:InvokeFunction"], [function]))
    return statements


def _object_created(s: Settings, t: Target) -> list[Statement]:
    return [*_handler(s, t, creates=True), _failure_destination(t)]


def _object_removed(s: Settings, t: Target) -> list[Statement]:
    return [*_handler(s, t, creates=False), *_invalidations(s, t), _failure_destination(t)]


def _invalidations(s: Settings, t: Target) -> list[Statement]:
    """With ``CDN_DISTRIBUTION_ID``, a removal invalidates the deleted
    renditions there (``chalicelib.cdn``): only the functions that handle
    removals, only that distribution (CloudFront ARNs name no region)."""
    if not s.cdn_distribution_id:
        return []
    distribution = f"arn:aws:cloudfront::{t.account}:distribution/{s.cdn_distribution_id}"
    return [
        _statement("InvalidateDeletedRenditions", ["cloudfront:CreateInvalidation"], [distribution])
    ]


def _failure_destination(t: Target) -> Statement:
    """``manage.py failure-destination`` (or Terraform) sends the events Lambda
    gives up on to this queue; Lambda sends them as the function's role."""
    queue = t.arn("sqs", _failure_queue(t))
    return _statement("FailedEvents", ["sqs:SendMessage"], [queue])


def _queued_events(s: Settings, t: Target) -> list[Statement]:
    queue = t.arn("sqs", s.events_queue)
    consume = _statement(
        "ConsumeEvents",
        [
            # the event source mapping polls and deletes as the function's role
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            # the code: a batch short of time hands its unstarted messages back
            # (ChangeMessageVisibilityBatch), after finding the queue's URL
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueUrl",
        ],
        [queue],
    )
    return [*_handler(s, t, creates=True), *_invalidations(s, t), consume]


def _extract_metadata(s: Settings, t: Target) -> list[Statement]:
    """Reads the source (GET with If-Match); ListBucket so a missing one is a 404."""
    return [
        _statement("ReadSources", ["s3:GetObject"], [_source_objects(s)]),
        _statement("HeadMissingKeys", ["s3:ListBucket"], [f"arn:aws:s3:::{s.source_bucket}"]),
    ]


def _api(s: Settings, t: Target) -> list[Statement]:
    """Reads records; signs rendition GETs and, with uploads on, upload POSTs.

    The one write: the pagination tokens' key, put once (condition: absent)
    by the first caller if ``provision`` has not, restricted to its item.
    """
    statements = []
    if s.db_backend == "dynamodb":
        statements += [
            # GetItem: an image, the token key; Query: the listing indexes, folders
            _statement(
                "ReadRecords",
                ["dynamodb:GetItem", "dynamodb:Query"],
                _table(s, t, BY_STATUS, BY_FOLDER),
            ),
            _statement(
                "CreateTokenKey",
                ["dynamodb:PutItem"],
                _table(s, t),
                {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [TOKEN_KEY["pk"]]}},
            ),
        ]
    # A presigned URL makes no call; S3 checks the signer's permission when it is used.
    statements.append(_statement("PresignedRenditions", ["s3:GetObject"], [_renditions(s)]))
    if s.uploads_enabled:
        uploads = f"arn:aws:s3:::{s.source_bucket}/{s.upload_prefix}*"
        statements.append(_statement("PresignedUploads", ["s3:PutObject"], [uploads]))
    return statements


def _purge_tombstones(s: Settings, t: Target) -> list[Statement]:
    return []  # MySQL only: the database secret and the VPC, added for every function


_BUILDERS: dict[str, Callable[[Settings, Target], list[Statement]]] = {
    CREATED: _object_created,
    REMOVED: _object_removed,
    QUEUED: _queued_events,
    METADATA: _extract_metadata,
    API: _api,
    PURGE: _purge_tombstones,
}


def render(policy: Policy) -> str:
    return json.dumps(policy, indent=2) + "\n"


# -- a stage's files ----------------------------------------------------------
def policy_file(stage: str, function: str) -> str:
    """The file's name inside ``.chalice`` (what ``iam_policy_file`` holds)."""
    return f"policy-{stage}-{function}.json"


def parse_policy_file(name: str) -> tuple[str, str] | None:
    """(stage, function) of a ``policy_file`` name; None for any other name."""
    match = re.fullmatch(r"policy-(.+)-([a-z_]+)\.json", name)
    if match is None or match.group(2) not in FUNCTIONS:
        return None
    return match.group(1), match.group(2)


def rendered_scope(policy: Policy) -> tuple[str, str]:
    """(region, account) a rendered policy names, read from its logs ARN."""
    logs = next(s for s in policy["Statement"] if s["Sid"] == "Logs")
    _, _, _, region, account, _ = logs["Resource"][0].split(":", 5)
    return region, account


def _config(project_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((project_dir / ".chalice" / "config.json").read_text())
    return loaded


def function_in_vpc(config: Mapping[str, Any], stage: str, function: str) -> bool:
    """Whether Chalice puts ``function`` in a VPC (``subnet_ids`` set for it)."""
    return bool(function_setting(config, stage, function, "subnet_ids"))


def stage_policies(
    stage: str, project_dir: Path, region: str = ANY, account: str = ANY
) -> dict[str, Policy]:
    """Every function's policy for ``stage`` of the project in ``project_dir``."""
    from devtools.stages import app_name, stage_environment

    settings = Settings.from_env(stage_environment(stage, project_dir))
    config = _config(project_dir)
    target = Target(app_name(project_dir), stage, region, account)
    return {
        f: policy_for(f, settings, target, function_in_vpc(config, stage, f)) for f in FUNCTIONS
    }


def write_stage(stage: str, project_dir: Path, region: str = ANY, account: str = ANY) -> list[Path]:
    """Write the stage's policy files and point each function's
    ``iam_policy_file`` at its own (other settings of the functions are
    kept); remove the stage-wide file of the single shared role, if left.
    Returns the paths written or removed."""
    chalice_dir = project_dir / ".chalice"
    policies = stage_policies(stage, project_dir, region, account)
    changed = []
    for function, policy in policies.items():
        path = chalice_dir / policy_file(stage, function)
        path.write_text(render(policy))
        changed.append(path)
    config_path = chalice_dir / "config.json"
    config = _config(project_dir)
    functions = config["stages"][stage].setdefault("lambda_functions", {})
    for function in FUNCTIONS:
        functions.setdefault(function, {})["iam_policy_file"] = policy_file(stage, function)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    changed.append(config_path)
    shared = chalice_dir / f"policy-{stage}.json"
    if shared.exists():
        shared.unlink()
        changed.append(shared)
    return changed


# -- region and account -------------------------------------------------------
_ACCOUNT = re.compile(r"[0-9]{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]+")


def session_region() -> str | None:
    """The region of boto3's default session (the one ``chalice deploy`` uses)."""
    import boto3

    region: str | None = boto3.session.Session().region_name
    return region


def caller_account() -> str:
    """The account of boto3's credentials, from STS (short timeouts, one attempt)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=5, retries={"max_attempts": 1})
    return str(boto3.client("sts", config=config).get_caller_identity()["Account"])


def resolve_scope(
    region: str | None,
    account: str | None,
    *,
    find_region: Callable[[], str | None] = session_region,
    find_account: Callable[[], str] = caller_account,
    environ: Mapping[str, str] = os.environ,
) -> tuple[str, str, list[str]]:
    """(region, account, notes): those given, else looked up, else ``*``.

    Nothing is looked up while an endpoint override is set: an emulator's STS
    answers with its own account, not the one the stage deploys to."""
    for name, value, pattern in (("region", region, _REGION), ("account", account, _ACCOUNT)):
        if value is not None and not pattern.fullmatch(value):
            raise ValueError(f"--{name} {value!r} is not an AWS {name}")
    notes = []
    overrides = sorted(k for k in environ if k.startswith("AWS_ENDPOINT_URL"))
    if (region is None or account is None) and overrides:
        notes.append(f"not looking up the region and account: {', '.join(overrides)} is set")
    elif region is None or account is None:
        if region is None:
            region = find_region()
        if account is None:
            try:
                account = find_account()
            except Exception as exc:  # no credentials, no network: "*" instead
                notes.append(f"could not ask STS for the account ({type(exc).__name__}: {exc})")
    missing = [name for name, value in (("region", region), ("account", account)) if not value]
    if missing:
        notes.append(
            f"{' and '.join(missing)} unknown: the ARNs name '*' instead "
            "(pass --region and --account, or run with AWS credentials)"
        )
    return region or ANY, account or ANY, notes
