"""A stage's environment as Chalice would give it to the app."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent


class StageError(ValueError):
    pass


def stage_environment(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """Top-level ``environment_variables`` overlaid with the stage's own."""
    config_path = project_dir / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    stages = config.get("stages", {})
    if stage not in stages:
        raise StageError(
            f"no stage {stage!r} in {config_path.name}; stages: {', '.join(sorted(stages))}"
        )
    env = dict(config.get("environment_variables", {}))
    env.update(stages[stage].get("environment_variables", {}))
    return {k: str(v) for k, v in env.items()}


def function_setting(config: Mapping[str, Any], stage: str, function: str, name: str) -> Any:
    """The setting ``name`` of ``function`` in ``stage``, looked up as Chalice
    does: the stage's function entry, the stage, the top-level function
    entry, the top level; None where none sets it."""
    stage_config = config.get("stages", {}).get(stage, {})
    for scope in (
        stage_config.get("lambda_functions", {}).get(function, {}),
        stage_config,
        config.get("lambda_functions", {}).get(function, {}),
        config,
    ):
        if scope.get(name) is not None:
            return scope[name]
    return None


def function_timeout(stage: str, function: str, project_dir: Path = PROJECT_DIR) -> int:
    """The Lambda timeout Chalice gives ``function`` in ``stage`` (its default: 60 s)."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    timeout = function_setting(config, stage, function, "lambda_timeout")
    return 60 if timeout is None else int(timeout)


def in_vpc(stage: str, project_dir: Path = PROJECT_DIR) -> bool:
    """Whether the stage's functions run in a VPC (``subnet_ids`` set)."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    return bool(
        config.get("stages", {}).get(stage, {}).get("subnet_ids") or config.get("subnet_ids")
    )


def app_name(project_dir: Path = PROJECT_DIR) -> str:
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    return str(config["app_name"])


def merge_environment(stage: str, values: dict[str, str], project_dir: Path = PROJECT_DIR) -> None:
    """Set these environment variables in the stage of ``.chalice/config.json``."""
    path = project_dir / ".chalice" / "config.json"
    config = json.loads(path.read_text())
    stage_config = config.setdefault("stages", {}).setdefault(stage, {})
    stage_config.setdefault("environment_variables", {}).update(values)
    path.write_text(json.dumps(config, indent=2) + "\n")


# The functions that decode sources.
IMAGING_FUNCTIONS = ("handle_object_created", "handle_queued_events", "extract_metadata")


def timeout_problems(
    stage: str, processing_timeout: int, project_dir: Path = PROJECT_DIR
) -> list[str]:
    """What a stage's ``lambda_timeout`` values cannot fit:

    * one source bounded by ``PROCESSING_TIMEOUT``, in every function that
      decodes sources (slow files would otherwise be stopped at the end of the
      invocation, with a reason that asks for a longer timeout);
    * for the queue consumer, a whole batch of such sources: a message handed
      back for lack of time counts as a receive toward the dead-letter queue's
      ``maxReceiveCount``, so a batch that does not fit could, under a stream
      of slow files, send innocent messages there.
    """
    from chalicelib.queue import BATCH_SIZE
    from chalicelib.sandbox import source_seconds

    one = source_seconds(processing_timeout)
    problems = []
    for function in IMAGING_FUNCTIONS:
        timeout = function_timeout(stage, function, project_dir)
        needed = BATCH_SIZE * one if function == "handle_queued_events" else one
        what = (
            f"a batch of {BATCH_SIZE} sources that each take PROCESSING_TIMEOUT "
            f"({processing_timeout} s) plus {one - processing_timeout:g} s"
            if function == "handle_queued_events"
            else f"PROCESSING_TIMEOUT ({processing_timeout} s) plus "
            f"{one - processing_timeout:g} s for reading the source and writing the record"
        )
        if timeout < needed:
            problems.append(
                f"{function}: lambda_timeout {timeout} s cannot fit {what}; "
                f"give it at least {needed:g} s"
            )
    return problems
