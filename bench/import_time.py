"""Cold start: ``import app`` in a fresh interpreter, against a bare Chalice app
that imports boto3 (what any Lambda handler of this kind pays anyway).

    .venv/bin/python -m bench.import_time [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BARE = "import boto3, chalice; app = chalice.Chalice(app_name='bare')"
STAGE = {"SOURCE_BUCKET": "bench", "DDB_TABLE": "bench", "SNS_TOPIC_ARN": ""}


def medians_ms(cases: dict[str, tuple[str, dict[str, str]]], repeats: int) -> dict[str, float]:
    """Median ms of each (code, env), run round-robin so that the machine's
    drift falls on every case alike; one untimed round first."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_no in range(repeats + 1):
        for name, (code, env) in cases.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env, check=True)
            if round_no:
                samples[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    env = {"PATH": os.environ.get("PATH", ""), **STAGE}
    vips_env = env | {"IMAGE_ENGINE": "vips"}
    ms = medians_ms(
        {
            "python": ("pass", env),
            "bare": (BARE, env),
            "ours": ("import app", env),
            "ours_vips": ("import app", vips_env),
            # What the first image of a container adds: the imaging engine's imports.
            "pillow_first": ("import app, chalicelib.imaging.pipeline", env),
            "vips_first": (
                "import app, chalicelib.imaging.pipeline, chalicelib.imaging.vips",
                vips_env,
            ),
        },
        args.repeats,
    )
    python, bare, ours = ms["python"], ms["bare"], ms["ours"]
    ours_vips, pillow_first, vips_first = ms["ours_vips"], ms["pillow_first"], ms["vips_first"]
    modules = subprocess.run(
        [sys.executable, "-c", "import app, sys; print(' '.join(sorted(m for m in "
         "('PIL', 'pymysql', 'boto3', 'pyvips') if m in sys.modules)))"],
        cwd=PROJECT, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    print(f"fresh interpreter, median of {args.repeats}, round-robin (ms)")
    print("| what | ms | above bare python |")
    print("|---|---|---|")
    print(f"| python -c pass | {python:.0f} | |")
    print(f"| bare Chalice app + boto3 | {bare:.0f} | {bare - python:.0f} |")
    print(f"| import app (DynamoDB stage) | {ours:.0f} | {ours - python:.0f} |")
    print(f"| import app, IMAGE_ENGINE=vips | {ours_vips:.0f} | {ours_vips - python:.0f} |")
    print(f"| import app + the Pillow engine (first image) | {pillow_first:.0f} "
          f"| {pillow_first - python:.0f} |")  # fmt: skip
    print(f"| import app + the vips engine (first image) | {vips_first:.0f} "
          f"| {vips_first - python:.0f} |")  # fmt: skip
    print(f"\nratio import app / bare: {ours / bare:.2f}x (whole process); "
          f"{(ours - python) / (bare - python):.2f}x (imports alone)")  # fmt: skip
    print(f"heavy modules loaded by import app: {modules or 'none'}")


if __name__ == "__main__":
    main()
