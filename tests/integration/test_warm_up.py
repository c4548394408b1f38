"""A new imaging worker puts a tiny image through its engine before its first file."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chalicelib.imaging.model import default_engine
from chalicelib.sandbox.pool import worker_environment


@pytest.mark.parametrize("engine", ["vips", "pillow"])
def test_warm_up_loads_the_engine_it_names(engine: str) -> None:
    code = (
        "import sys\n"
        "from chalicelib.imaging import pipeline\n"
        "assert 'pyvips' not in sys.modules\n"
        f"pipeline.warm_up({engine!r})\n"
        "print('pyvips' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(engine == "vips")


def test_a_warm_up_that_fails_is_left_to_the_first_file() -> None:
    from chalicelib.imaging import pipeline

    pipeline.warm_up("no-such-engine")  # raises nothing


def test_workers_learn_the_engine_and_nothing_secret() -> None:
    env = worker_environment(
        {"IMAGE_ENGINE": "pillow", "AWS_SECRET_ACCESS_KEY": "s", "PATH": "/bin"}
    )
    assert env["IMAGE_ENGINE"] == "pillow" and "AWS_SECRET_ACCESS_KEY" not in env
    assert default_engine() == "vips"  # pyvips is installed here (requirements.txt)
