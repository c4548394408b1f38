"""A stage's environment as Chalice would give it to the app."""

from __future__ import annotations

import json
from pathlib import Path

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


def function_timeout(stage: str, function: str, project_dir: Path = PROJECT_DIR) -> int:
    """The Lambda timeout Chalice gives ``function`` in ``stage`` (its default: 60 s)."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    stage_config = config.get("stages", {}).get(stage, {})
    for scope in (
        stage_config.get("lambda_functions", {}).get(function, {}),
        stage_config,
        config.get("lambda_functions", {}).get(function, {}),
        config,
    ):
        if "lambda_timeout" in scope:
            return int(scope["lambda_timeout"])
    return 60


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
