"""From upload to listed, on the local stack (``manage.py dev``).

Starts the stack on free ports, uploads photos through boto3 one after
another and measures, for each, the time from the PutObject call returning
to ``GET /images?key=`` listing it with its renditions; prints the median.

    .venv/bin/python -m bench.local_stack [--repeats 9] [--size 12mp]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import tempfile
import time
from pathlib import Path

import boto3

from bench.inputs import SIZES, jpeg_bytes
from tests.e2e.test_local_stack import LocalStack

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--size", choices=sorted(SIZES), default="12mp")
    args = parser.parse_args()
    with tempfile.TemporaryFile() as log:
        stack = LocalStack.launch(log)
        process = stack.process
        try:
            samples = measure(stack, args.size, args.repeats)
        finally:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=30)
    width, height = SIZES[args.size]
    print(
        f"upload -> listed with renditions, {args.size} JPEG ({width}x{height}), "
        f"{args.repeats} uploads; Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(f"median {statistics.median(samples):.2f} s, max {max(samples):.2f} s")


def measure(stack: LocalStack, size: str, repeats: int) -> list[float]:
    deadline = time.monotonic() + 60
    while True:
        try:
            stack.get("images?limit=1")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    s3 = boto3.client(
        "s3", endpoint_url=stack.endpoint, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip
    samples = []
    for i in range(repeats + 1):
        data = jpeg_bytes(*SIZES[size], seed=i)
        key = f"bench/photo-{i}.jpg"
        s3.put_object(Bucket="local-uploads", Key=key, Body=data)
        start = time.monotonic()
        stack.wait_listed(key, poll=0.01)
        samples.append(time.monotonic() - start)
    return samples[1:]  # the first warms the pump and the API up


if __name__ == "__main__":
    main()
