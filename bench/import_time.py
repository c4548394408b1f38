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


def median_ms(code: str, env: dict[str, str], repeats: int) -> float:
    samples = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    env = {"PATH": os.environ.get("PATH", ""), **STAGE}
    python = median_ms("pass", env, args.repeats)
    bare = median_ms(BARE, env, args.repeats)
    ours = median_ms("import app", env, args.repeats)
    vips_env = env | {"IMAGE_ENGINE": "vips"}
    ours_vips = median_ms("import app", vips_env, args.repeats)
    # What the first image of a container adds: the imaging engine's imports.
    pillow_first = median_ms("import app, chalicelib.imaging.pipeline", env, args.repeats)
    vips_first = median_ms(
        "import app, chalicelib.imaging.pipeline, chalicelib.imaging.vips", vips_env, args.repeats
    )
    modules = subprocess.run(
        [sys.executable, "-c", "import app, sys; print(' '.join(sorted(m for m in "
         "('PIL', 'pymysql', 'boto3', 'pyvips') if m in sys.modules)))"],
        cwd=PROJECT, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    print(f"fresh interpreter, median of {args.repeats} (ms)")
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
