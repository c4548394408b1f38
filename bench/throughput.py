"""Images per second for a burst of uploads through the local stack, with the
pool at 1 (one message at a time, as before concurrency) and at its default.

Generates a deterministic burst (``--images``, default 300: 0.3 to 4 MP
photographic JPEGs and PNGs from ``bench/inputs.py``, one in three a PNG),
then, for each configuration in turn, starts ``manage.py dev`` (the emulator,
the event pump and ``chalice local``) on free ports, uploads the whole burst
and times from the first PutObject to the queue being empty with every upload
done. Each run starts from an empty emulator. Configurations:

  * pool 1: ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1769``, the stack sized as a
    1,769 MB function of one vCPU: the sizing rule gives one imaging worker
    of 1,061 MB and the pump one poller, so one message at a time, as before;
  * default: the rule off Lambda, one worker (of 1,061 MB too) per CPU, and
    as many pollers.

Afterwards the runs' records (through ``GET /images``, without timestamps
and URLs) and renditions (keys, sizes and ETags, that is MD5s of the bytes)
must be identical. Prints a Markdown report (``--out`` writes it too); the
images/s of the JPEGs alone or of the PNGs alone come from ``--only``.

    .venv/bin/python -m bench.throughput [--images 300] [--repeats 1] [--only JPEG|PNG]
                                         [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from bench.inputs import jpeg_bytes, png_bytes
from devtools.emulator import free_port

PROJECT = Path(__file__).resolve().parents[1]
BUCKET, DEST, QUEUE = "local-uploads", "local-renditions", "local-upload-events"
# Megapixels of the burst's images, spread over 0.3 to 4 MP.
MEGAPIXELS = (0.3, 0.5, 0.8, 1.2, 1.6, 2.0, 2.5, 3.0, 3.5, 4.0)
CONFIGURATIONS = {"pool 1": {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769"}, "default": {}}
TIMEOUT = 1800.0  # seconds a run may take before it counts as stuck
STALL = 30.0  # seconds without progress, nothing visible, that end a run
VOLATILE = {"uploaded_at", "created_at", "updated_at", "url"}


@dataclass(frozen=True)
class Source:
    key: str
    width: int
    height: int
    fmt: str  # "JPEG" or "PNG"
    seed: int


def burst(count: int) -> list[Source]:
    """The burst: image ``i`` is a PNG when ``i % 3 == 2``, else a JPEG, of
    ``MEGAPIXELS[(7 * i) % 10]`` megapixels at 4:3, so formats and sizes mix."""
    sources = []
    for i in range(count):
        pixels = MEGAPIXELS[(7 * i) % len(MEGAPIXELS)] * 1e6
        width = round(math.sqrt(pixels * 4 / 3))
        height = round(width * 3 / 4)
        fmt = "PNG" if i % 3 == 2 else "JPEG"
        ext = "png" if fmt == "PNG" else "jpg"
        sources.append(Source(f"burst/{i:03d}-{width}x{height}.{ext}", width, height, fmt, i))
    return sources


def make(source: Source, folder: str) -> None:
    data = (png_bytes if source.fmt == "PNG" else jpeg_bytes)(
        source.width, source.height, seed=source.seed
    )
    Path(folder, source.key.replace("/", "_")).write_bytes(data)


@dataclass
class Run:
    name: str
    seconds: float
    uploads_seconds: float
    workers: int
    records: dict[str, Any] = field(default_factory=dict)
    renditions: dict[str, tuple[int, str]] = field(default_factory=dict)

    def rate(self, count: int) -> float:
        return count / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration")
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument(
        "--only", choices=["JPEG", "PNG"], help="keep only the burst's images of this format"
    )
    args = parser.parse_args()
    sources = [s for s in burst(args.images) if args.only in (None, s.fmt)]
    load = os.getloadavg()[0]
    runs: dict[str, list[Run]] = {name: [] for name in CONFIGURATIONS}
    with tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        with ProcessPoolExecutor() as pool:
            list(pool.map(make, sources, [folder] * len(sources)))
        total_bytes = sum(p.stat().st_size for p in Path(folder).iterdir())
        print(f"generated {len(sources)} images, {total_bytes / 1e6:.0f} MB, "
              f"in {time.monotonic() - started:.0f} s", file=sys.stderr)  # fmt: skip
        for repeat in range(args.repeats):
            order = list(CONFIGURATIONS)
            if repeat % 2:
                order.reverse()  # alternate, so that a drift in the machine's load falls on both
            for name in order:
                run = measure(name, sources, folder)
                runs[name].append(run)
                print(f"{name}: {run.rate(len(sources)):.2f} images/s "
                      f"({run.seconds:.1f} s, {run.workers} workers)", file=sys.stderr)  # fmt: skip
    report = render(runs, sources, total_bytes, load)
    print(report)
    if args.out:
        args.out.write_text(report)


def measure(name: str, sources: list[Source], folder: str) -> Run:
    with tempfile.TemporaryFile() as log, stack(CONFIGURATIONS[name], log) as (api, endpoint):
        s3, sqs = client("s3", endpoint), client("sqs", endpoint)
        url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
        bodies = {s.key: Path(folder, s.key.replace("/", "_")).read_bytes() for s in sources}
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda s: s3.put_object(Bucket=BUCKET, Key=s.key, Body=bodies[s.key]),
                          sources))  # fmt: skip
        uploaded = time.monotonic() - start
        seconds = drained(sqs, url, start, name)
        records = listed(api)
        missing = sorted({s.key for s in sources} - set(records))
        if missing:
            log.seek(0)
            raise RuntimeError(f"{name}: no record for {missing[:5]}:\n{log.read().decode()}")
        renditions = objects(s3)
        log.seek(0)
        output = log.read().decode(errors="replace")
    found = re.search(r"(\d+) imaging worker", output)
    workers = int(found[1]) if found else 0
    return Run(name, seconds, uploaded, workers, records, renditions)


def client(service: str, endpoint: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service, endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip


def drained(sqs: Any, url: str, start: float, name: str) -> float:
    """Seconds from ``start`` until the queue held no message. Nothing visible
    and the same few in flight for ``STALL`` seconds counts as drained at the
    last change: moto's SQS can lose a delete when a new message arrives at
    that moment, and the message would come back only after its visibility
    timeout (the records are checked afterwards)."""
    last, changed = None, time.monotonic()
    while True:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        visible = int(attributes["ApproximateNumberOfMessages"])
        counts = (visible, int(attributes["ApproximateNumberOfMessagesNotVisible"]))
        now = time.monotonic()
        if counts != last:
            last, changed = counts, now
        if counts == (0, 0):
            return now - start
        if visible == 0 and now - changed > STALL:
            print(f"{name}: {counts[1]} message(s) stuck in flight", file=sys.stderr)
            return changed - start
        if now - start > TIMEOUT:
            raise RuntimeError(f"{name}: the queue was not drained in {TIMEOUT:.0f} s")
        time.sleep(0.25)


@contextmanager
def stack(settings: dict[str, str], log: Any) -> Iterator[tuple[str, str]]:
    """``manage.py dev`` on free ports with ``settings`` in its environment,
    until the block ends; then stopped as Ctrl-C would."""
    aws_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | settings
    process = subprocess.Popen(
        [sys.executable, "manage.py", "dev", "--aws-port", str(aws_port),
         "--api-port", str(api_port)],
        cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )  # fmt: skip
    api, endpoint = f"http://127.0.0.1:{api_port}/", f"http://127.0.0.1:{aws_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            log.seek(0)
            if b"Ctrl-C stops everything" in log.read():
                break
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"manage.py dev did not start:\n{log.read().decode()}")
            time.sleep(0.2)
        yield api, endpoint
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def listed(api: str) -> dict[str, Any]:
    """Every record the API lists, processed and failed, by key, without what
    differs from run to run (timestamps, presigned URLs)."""
    records: dict[str, Any] = {}
    for status in ("processed", "failed"):
        token = None
        while True:
            query = f"images?status={status}&limit=100" + (f"&next_token={token}" if token else "")
            with urllib.request.urlopen(api + query, timeout=60) as response:
                page = json.loads(response.read())
            for image in page["images"]:
                records[image["key"]] = stripped(image)
            token = page["next_token"]
            if not token:
                break
    return records


def stripped(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: stripped(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stripped(v) for v in value]
    return value


def objects(s3: Any) -> dict[str, tuple[int, str]]:
    """Every rendition: key -> (size, ETag), the ETag being the MD5 of its bytes."""
    found: dict[str, tuple[int, str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=DEST):
        for item in page.get("Contents", []):
            found[item["Key"]] = (item["Size"], item["ETag"])
    return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def render(runs: dict[str, list[Run]], sources: list[Source], total_bytes: int, load: float) -> str:
    count = len(sources)
    pngs = sum(s.fmt == "PNG" for s in sources)
    first = runs["pool 1"][0]
    identical = all(
        r.records == first.records and r.renditions == first.renditions
        for rs in runs.values()
        for r in rs
    )
    statuses = sorted({r["status"] for r in first.records.values()})
    lines = [
        f"Burst of {count} uploads ({count - pngs} JPEG, {pngs} PNG; 0.3 to 4 MP; "
        f"{total_bytes / 1e6:.0f} MB), `manage.py dev`, default renditions; "
        f"{len(next(iter(runs.values())))} run(s) of each configuration, alternating.",
        f"Machine: {cpu_model()}, `nproc` {os.cpu_count()} "
        f"(affinity {len(os.sched_getaffinity(0))}), Python {platform.python_version()}; "
        f"load average before the runs {load:.1f}.",
        "",
        "| configuration | imaging workers | images/s (median) | seconds (median) | "
        "all uploaded after (median) | images/s of each run |",
        "|---|---|---|---|---|---|",
    ]
    for name, rs in runs.items():
        lines.append(
            f"| {name} | {rs[0].workers} | {statistics.median(r.rate(count) for r in rs):.2f} "
            f"| {statistics.median(r.seconds for r in rs):.1f} "
            f"| {statistics.median(r.uploads_seconds for r in rs):.1f} s "
            f"| {', '.join(f'{r.rate(count):.2f}' for r in rs)} |"
        )
    base = statistics.median(r.rate(count) for r in runs["pool 1"])
    new = statistics.median(r.rate(count) for r in runs["default"])
    rendition_count = len(first.renditions)
    lines += [
        "",
        f"default / pool 1: **{new / base:.2f}x** images/s.",
        "",
        f"Records and renditions identical across all runs: **{'yes' if identical else 'NO'}** "
        f"({len(first.records)} records, statuses {', '.join(statuses)}; "
        f"{rendition_count} renditions compared by key, size and ETag).",
    ]
    if not identical:
        for name, rs in runs.items():
            for r in rs:
                if r.records != first.records:
                    diff = sorted(k for k in set(r.records) | set(first.records)
                                  if r.records.get(k) != first.records.get(k))  # fmt: skip
                    lines.append(f"- {name}: records differ for {diff[:5]}")
                if r.renditions != first.renditions:
                    diff = sorted(k for k in set(r.renditions) | set(first.renditions)
                                  if r.renditions.get(k) != first.renditions.get(k))  # fmt: skip
                    lines.append(f"- {name}: renditions differ for {diff[:5]}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
