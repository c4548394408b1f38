#!/usr/bin/env python3
"""Project tasks that run outside Lambda.

python manage.py provision --stage dev    create the stage's buckets and table
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from chalicelib.settings import Settings, SettingsError
from devtools.stages import (
    StageError,
    function_timeout,
    stage_environment,
    timeout_problems,
)


def _stage_settings(stage: str) -> Settings:
    env = {**os.environ, **stage_environment(stage)}
    return Settings.from_env(env)


def cmd_provision(args: argparse.Namespace) -> int:
    from devtools.provision import provision

    settings = _stage_settings(args.stage)
    where = os.environ.get("AWS_ENDPOINT_URL") or "AWS"
    print(f"provisioning stage {args.stage} at {where}")
    timeout = function_timeout(args.stage, "handle_queued_events")
    provision(settings, queue_consumer_timeout=timeout)
    for problem in timeout_problems(args.stage, settings.processing_timeout):
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    from devtools.policy import resolve_scope, write_stage
    from devtools.stages import PROJECT_DIR

    _stage_settings(args.stage)  # an unknown stage or bad settings stop here, before STS
    try:
        region, account, notes = resolve_scope(args.region, args.account)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"stage {args.stage}: one role per function, region {region}, account {account}")
    for path in write_stage(args.stage, PROJECT_DIR, region, account):
        verb = "wrote" if path.exists() else "removed"
        print(f"{verb} {path.relative_to(PROJECT_DIR)}")
    return 0


def cmd_failure_destination(args: argparse.Namespace) -> int:
    from devtools.provision import ensure_failure_destination
    from devtools.stages import app_name

    ensure_failure_destination(app_name(), args.stage, print)
    return 0


def cmd_terraform_env(args: argparse.Namespace) -> int:
    """Merge ``terraform output -json chalice_environment`` into the stage
    (``cdn = false``: ``RENDITION_BASE_URL`` and ``CDN_DISTRIBUTION_ID`` empty)."""
    from devtools.stages import merge_environment
    from devtools.terraform import chalice_environment

    values = json.loads(Path(args.file).read_text())
    merge_environment(args.stage, chalice_environment(values))
    print(f"stage {args.stage}: environment updated in .chalice/config.json")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    import signal
    import threading

    import boto3

    from chalicelib.factory import build_pipeline, isolated_imaging
    from devtools import backfill

    _join_local_stack(args.stage)
    settings = _stage_settings(args.stage)
    options = backfill.Options(
        args.prefix,
        args.only_missing,
        args.via_queue,
        args.workers,
        args.prune,
        args.dry_run,
        retry_failed=args.retry_failed,
        restore_days=args.restore or 0,
        restore_tier=args.restore_tier,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        print("\nstopping after the images in flight (Ctrl-C again to abort)", file=sys.stderr)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    summary = backfill.run(
        settings, options,
        lambda: build_pipeline(settings, imaging=isolated_imaging(args.workers)),
        boto3.client("s3"),
        boto3.client("sqs") if args.via_queue else None, stop,
    )  # fmt: skip
    for action in summary.actions:
        print(action)
    print(summary.line())
    return 130 if summary.interrupted else 0


def cmd_terraform(args: argparse.Namespace) -> int:
    from devtools.stages import PROJECT_DIR
    from devtools.terraform import render

    (PROJECT_DIR / "infra" / "main.tf.json").write_text(render())
    print("wrote infra/main.tf.json")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from devtools.dev import Options, run

    return run(Options(args.host, args.aws_port, args.api_port, args.db, args.json))


def _join_local_stack(stage: str) -> bool:
    """A local stage reaches this checkout's running ``manage.py dev`` by itself."""
    from devtools.running import join

    stack = join(stage, os.environ)
    if stack is not None:
        print(f"using the local stack at {stack.endpoint} (stage {stack.stage})", file=sys.stderr)
    return stack is not None


def cmd_pump(args: argparse.Namespace) -> int:
    """Attach another event pump to a running local stack (if its own died,
    or to handle more batches at once)."""
    import signal
    import threading

    from devtools.dev import PUMP_STOP_SECONDS, EventPump, install_terminal_log
    from devtools.running import LOCAL_STAGES

    if not _join_local_stack(args.stage) and args.stage not in LOCAL_STAGES:
        print(
            f"error: stage {args.stage} runs on AWS, where Lambda polls the queue; "
            f"the pump is for the local stages ({', '.join(LOCAL_STAGES)})",
            file=sys.stderr,
        )
        return 2
    os.environ.update(stage_environment(args.stage))
    settings = Settings.from_env(os.environ)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    install_terminal_log(args.json)
    import app
    from chalicelib.factory import isolated_imaging

    isolated_imaging().pool.start()
    timeout = function_timeout(args.stage, "handle_queued_events")
    pump = EventPump(app, settings.events_queue, timeout)
    pump.start()
    print(
        f"event pump on queue {settings.events_queue}: {pump.invocations} batch(es) at once, "
        f"{pump.workers} imaging worker(s). Ctrl-C stops it.",
        flush=True,
    )
    while not stop.is_set() and pump.is_alive():
        stop.wait(0.5)
    pump.stopping.set()
    pump.join(timeout=PUMP_STOP_SECONDS)
    print("stopped", flush=True)
    return 0


def _days(text: str) -> int:
    """``--restore DAYS``: how long S3 keeps a restored copy (1 to 30,000 days)."""
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if not 1 <= days <= 30_000:
        raise argparse.ArgumentTypeError("DAYS is between 1 and 30000")
    return days


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="manage.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("provision", help="create the stage's resources (idempotent)")
    p.add_argument("--stage", default="dev")
    p.set_defaults(run=cmd_provision)
    p = commands.add_parser("dev", help="run the whole stack locally on an AWS emulator")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1)")
    p.add_argument("--aws-port", type=int, default=4567, help="the emulator's port (4567)")
    p.add_argument("--api-port", type=int, default=8000, help="the API and gallery port (8000)")
    p.add_argument("--db", choices=["dynamodb", "mysql"], default="dynamodb")
    p.add_argument("--json", action="store_true", help="log each event's JSON line, as Lambda does")
    p.set_defaults(run=cmd_dev)
    p = commands.add_parser("pump", help="attach an event pump to the running local stack")
    p.add_argument("--stage", default="local")
    p.add_argument("--json", action="store_true", help="log each event's JSON line, as Lambda does")
    p.set_defaults(run=cmd_pump)
    p = commands.add_parser(
        "failure-destination", help="queue the events the direct handlers give up on"
    )
    p.add_argument("--stage", default="dev")
    p.set_defaults(run=cmd_failure_destination)
    p = commands.add_parser("backfill", help="(re)process what is already in the bucket")
    p.add_argument("--stage", default="dev")
    p.add_argument("--prefix", default="", help="only keys under this prefix")
    p.add_argument(
        "--only-missing",
        action="store_true",
        help="skip images processed, or failed, from the same content with the current settings",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --only-missing: process failed images again even when nothing changed",
    )
    p.add_argument(
        "--via-queue",
        action="store_true",
        help="send the events to EVENTS_QUEUE for the Lambda fleet",
    )
    p.add_argument("--workers", type=int, default=4, help="in-process worker threads (4)")
    p.add_argument(
        "--prune",
        action="store_true",
        help="delete renditions no record lists (old settings, sources gone)",
    )
    p.add_argument(
        "--restore",
        type=_days,
        metavar="DAYS",
        help="request a restore, readable for DAYS days, of the GLACIER and DEEP_ARCHIVE "
        "objects there is to read; rerun once they are restored",
    )
    p.add_argument(
        "--restore-tier",
        choices=["Bulk", "Standard"],
        default="Bulk",
        help="retrieval tier of --restore (Bulk: cheapest, hours; Standard: faster, dearer)",
    )
    p.add_argument("--dry-run", action="store_true", help="print what it would do")
    p.set_defaults(run=cmd_backfill)
    p = commands.add_parser("terraform", help="write infra/main.tf.json")
    p.set_defaults(run=cmd_terraform)
    p = commands.add_parser("terraform-env", help="take the stage's names from infra/ outputs")
    p.add_argument("--stage", default="dev")
    p.add_argument("file", help="the output of: terraform output -json chalice_environment")
    p.set_defaults(run=cmd_terraform_env)
    p = commands.add_parser(
        "policy", help="write each function's .chalice/policy-STAGE-FUNCTION.json from the settings"
    )
    p.add_argument("--stage", default="dev")
    p.add_argument("--region", help="the stage's region (default: the AWS session's)")
    p.add_argument("--account", help="the stage's account id (default: STS GetCallerIdentity)")
    p.set_defaults(run=cmd_policy)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (SettingsError, StageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
