"""Each stage's function timeouts leave room for one source bounded by PROCESSING_TIMEOUT."""

from __future__ import annotations

import json
from pathlib import Path

from chalicelib.settings import Settings
from devtools.dev import local_database_name
from devtools.stages import PROJECT_DIR, stage_environment, timeout_problems


def test_checked_in_stages_fit_one_bounded_source() -> None:
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    for stage in config["stages"]:
        env = stage_environment(stage)
        if stage == "local-mysql":  # manage.py dev names this checkout's own database
            env.setdefault("DB_NAME", local_database_name())
        settings = Settings.from_env(env)
        assert timeout_problems(stage, settings.processing_timeout) == [], stage


def test_a_timeout_too_short_for_processing_timeout_is_named(tmp_path: Path) -> None:
    (tmp_path / ".chalice").mkdir()
    config = {
        "app_name": "image-pipeline",
        "lambda_timeout": 60,
        "stages": {"s": {"lambda_functions": {"handle_queued_events": {"lambda_timeout": 25}}}},
    }
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))

    assert timeout_problems("s", 20, tmp_path) == [
        "handle_queued_events: lambda_timeout 25 s cannot fit a batch of 10 sources that each "
        "take PROCESSING_TIMEOUT (20 s) plus 10 s; give it at least 300 s"
    ]
    assert timeout_problems("s", 1, tmp_path) == [
        "handle_queued_events: lambda_timeout 25 s cannot fit a batch of 10 sources that each "
        "take PROCESSING_TIMEOUT (1 s) plus 10 s; give it at least 110 s"
    ]
    config["lambda_timeout"] = 10
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    assert timeout_problems("s", 1, tmp_path)[0] == (
        "handle_object_created: lambda_timeout 10 s cannot fit PROCESSING_TIMEOUT (1 s) plus "
        "10 s for reading the source and writing the record; give it at least 11 s"
    )
