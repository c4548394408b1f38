"""Images per second of ``manage.py backfill`` at 1, 2 and 4 workers, and
messages per second of ``--via-queue``.

Starts a moto server on a free loopback port, provisions the ``local`` stage
on it (DynamoDB, the default renditions of ``.chalice/config.json``) and puts
``--images`` (default 1,000) small photographic JPEGs (``bench/inputs.py``,
640x480, 0.3 MP, seeded by their index, in 10 folders) straight into the
source bucket. Then, for each configuration, it runs the command a user runs,

    manage.py backfill --stage local --workers N        (N from --workers)
    manage.py backfill --stage local --via-queue

as a subprocess pointed at the emulator (``AWS_ENDPOINT_URL``), each run
from an empty table, destination bucket and queue, the configurations in a
rotating order over ``--repeats``. A processing run must leave one processed
record with every rendition per image, and the renditions (keys, sizes and
ETags) of every run must be identical; a queue run must leave exactly one
backfill message per image in the queue (received and checked) and no
record. Once per repeat it also times ``--only-missing --via-queue`` over a
table with every image processed (the per-key check that comes before the
first message) and ``--via-queue --prefix nothing-here/`` (the command's
fixed cost); at the end, the emulator alone taking the same messages into a
new queue, by depth. Reported: medians of the command's wall time
(interpreter start to exit) and of the time its summary line gives,
images/s, the ratio against one worker, and the CPU seconds per image of the
command (with its imaging workers) and of the emulator, which shares the
machine's cores with it.

    .venv/bin/python -m bench.backfill [--images 1000] [--workers 1,2,4] [--repeats 3]
                                       [--no-queue] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import boto3

from bench.inputs import jpeg_bytes
from bench.throughput import cpu_model
from chalicelib.factory import build_repository
from chalicelib.models import ImageRecord, Status
from chalicelib.repositories.base import ImageQuery
from chalicelib.settings import Settings
from devtools.backfill import backfill_event, notification
from devtools.emulator import moto_server
from devtools.provision import provision
from devtools.stages import function_timeout, stage_environment

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

PROJECT = Path(__file__).resolve().parents[1]
STAGE = "local"
WIDTH, HEIGHT = 640, 480  # 0.31 MP
FOLDERS = 10
QUEUE = "queue"  # the name of the --via-queue configuration
# --only-missing --via-queue over a table that has every image processed:
# what the check before anything is enqueued costs per key.
SKIP = "only-missing"
# --via-queue --prefix with nothing under it: the command's fixed cost
# (interpreter, imports, the listing request) without a message.
EMPTY = "empty"
NOTHING = "nothing-here/"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SUMMARY = re.compile(
    r"processed (\d+), failed (\d+), skipped (\d+), unchanged (\d+)(?:, queued (\d+))?.* "
    r"in ([\d.]+) s"
)


def source_key(i: int) -> str:
    return f"backfill/f{i % FOLDERS}/{i:04d}.jpg"


def make(i: int) -> bytes:
    return jpeg_bytes(WIDTH, HEIGHT, seed=i)


@dataclass
class Run:
    config: str  # "1", "2", "4" (workers) or QUEUE
    wall: float  # the command, interpreter start to exit
    seconds: float  # as its summary line gives it (listing to the end)
    cpu: float  # the command and its imaging workers, user + system
    emulator_cpu: float
    machine_cpu: float  # every process on the machine, this benchmark's and others'
    count: int  # processed, or queued

    def rate(self) -> float:
        return self.count / self.wall

    def summary_rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration")
    parser.add_argument("--no-queue", action="store_true", help="leave out --via-queue")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()
    started = time.monotonic()
    load_start = os.getloadavg()
    workers = [w.strip() for w in args.workers.split(",") if w.strip()]
    configs = workers + ([] if args.no_queue else [QUEUE])
    with ProcessPoolExecutor() as pool:
        bodies = list(pool.map(make, range(args.images), chunksize=16))
    sources = {source_key(i): body for i, body in enumerate(bodies)}
    log(f"generated {len(sources)} JPEGs, {sum(map(len, bodies)) / 1e6:.1f} MB, "
        f"in {time.monotonic() - started:.0f} s")  # fmt: skip
    runs: dict[str, list[Run]] = {c: [] for c in configs}
    if not args.no_queue:
        runs[EMPTY] = []
        if workers:
            runs[SKIP] = []
    with moto_server() as endpoint:
        os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
        settings = Settings.from_env({**os.environ, **stage_environment(STAGE)})
        bench = Bench(settings, endpoint)
        bench.upload(sources)
        reference: dict[str, tuple[int, str]] | None = None
        for repeat in range(args.repeats):
            shift = repeat % len(configs)
            for config in configs[shift:] + configs[:shift]:
                bench.fresh()
                run = bench.measure(config)
                if config == QUEUE:
                    bench.check_queued(set(sources))
                else:
                    renditions = bench.check_processed(set(sources))
                    if reference is None:
                        reference = renditions
                    elif renditions != reference:
                        differ = sorted(k for k in set(renditions) | set(reference)
                                        if renditions.get(k) != reference.get(k))  # fmt: skip
                        raise RuntimeError(f"renditions differ from the first run's: {differ[:5]}")
                report_run(runs, run)
                if config != QUEUE and SKIP in runs and len(runs[SKIP]) == repeat:
                    # Every image processed now: nothing is missing.
                    report_run(runs, bench.measure(SKIP))
                    if bench.drain():
                        raise RuntimeError("--only-missing enqueued images already processed")
                if config == QUEUE:
                    report_run(runs, bench.measure(EMPTY))
        depths = [] if args.no_queue else bench.emulator_enqueue(len(sources))
    assert reference is not None or not workers
    report = render(
        args, runs, depths, len(sources), sum(map(len, bodies)), len(reference or {}),
        load_start, time.monotonic() - started,
    )  # fmt: skip
    print(report, end="")
    if args.out:
        args.out.write_text(report)


def report_run(runs: dict[str, list[Run]], run: Run) -> None:
    runs[run.config].append(run)
    flags = {QUEUE: "--via-queue", SKIP: "--only-missing --via-queue"}
    flags[EMPTY] = f"--via-queue --prefix {NOTHING}"
    what = flags.get(run.config, f"--workers {run.config}")
    log(f"{what}: {run.rate():.1f} /s ({run.wall:.1f} s, summary {run.seconds:.1f} s, "
        f"CPU {run.cpu:.1f} s + emulator {run.emulator_cpu:.1f} s)")  # fmt: skip


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Bench:
    """The stage on the emulator, and the runs against it."""

    def __init__(self, settings: Settings, endpoint: str) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.s3 = boto3.client("s3")
        self.ddb = boto3.client("dynamodb")
        self.sqs = boto3.client("sqs")
        self.timeout = function_timeout(STAGE, "handle_queued_events")
        provision(settings, report=lambda _: None, queue_consumer_timeout=self.timeout)
        assert settings.events_queue
        self.queue_url = self.sqs.get_queue_url(QueueName=settings.events_queue)["QueueUrl"]
        self.emulator_pid = emulator_pid(endpoint)

    def upload(self, sources: dict[str, bytes]) -> None:
        """Straight into the source bucket; the notifications this sends to the
        queue are purged by ``fresh``."""
        bucket = self.settings.source_bucket
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda k: self.s3.put_object(Bucket=bucket, Key=k, Body=sources[k]),
                          sources))  # fmt: skip

    def fresh(self) -> None:
        """No record, rendition or message: the table dropped and provisioned
        again, the destination bucket emptied, the queue drained."""
        self.ddb.delete_table(TableName=self.settings.ddb_table)
        self.ddb.get_waiter("table_not_exists").wait(TableName=self.settings.ddb_table)
        provision(self.settings, report=lambda _: None, queue_consumer_timeout=self.timeout)
        keys = [o["Key"] for o in listed(self.s3, self.settings.dest_bucket)]
        for start in range(0, len(keys), 1000):
            self.s3.delete_objects(
                Bucket=self.settings.dest_bucket,
                Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]},
            )
        self.drain()  # (PurgeQueue: once a minute)
        assert not listed(self.s3, self.settings.dest_bucket)
        assert self.queue_depth() == 0, "the queue was not emptied"

    def measure(self, config: str) -> Run:
        argv = [sys.executable, "manage.py", "backfill", "--stage", STAGE]
        if config == QUEUE:
            argv += ["--via-queue"]
        elif config == SKIP:
            argv += ["--only-missing", "--via-queue"]
        elif config == EMPTY:
            argv += ["--via-queue", "--prefix", NOTHING]
        else:
            argv += ["--workers", config]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env |= CREDENTIALS | {"AWS_ENDPOINT_URL": self.endpoint}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        emulator_before = cpu_seconds(self.emulator_pid)
        machine_before = machine_busy()
        with tempfile.TemporaryFile() as err:
            start = time.monotonic()
            done = subprocess.run(
                argv, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                check=False,
            )  # fmt: skip
            wall = time.monotonic() - start
            emulator = cpu_seconds(self.emulator_pid) - emulator_before
            machine = machine_busy() - machine_before
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        if done.returncode:
            raise RuntimeError(f"{argv} exited {done.returncode}:\n{done.stdout}\n{stderr[-4000:]}")
        found = SUMMARY.search(done.stdout)
        if found is None:
            raise RuntimeError(f"no summary line in: {done.stdout!r}")
        processed, failed, skipped, unchanged = (int(found[i]) for i in range(1, 5))
        queued = int(found[5] or 0)
        counts = {"processed": processed, "failed": failed, "skipped": skipped,
                  "unchanged": unchanged, "queued": queued}  # fmt: skip
        done_as = {QUEUE: "queued", SKIP: "skipped", EMPTY: "queued"}.get(config, "processed")
        if any(n for name, n in counts.items() if name != done_as):
            raise RuntimeError(f"{argv}: {done.stdout.strip()}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        count = counts[done_as]
        return Run(config, wall, float(found[6]), cpu, emulator, machine, count)

    def check_processed(self, sources: set[str]) -> dict[str, tuple[int, str]]:
        """One processed record with every rendition per source, no other
        record, and exactly the renditions they list in the bucket; returns
        those renditions, key -> (size, ETag)."""
        records = self.records()
        unprocessed = [r for r in records.values() if r.status is not Status.PROCESSED]
        if set(records) != sources or unprocessed:
            statuses = sorted({r.status.value for r in records.values()})
            raise RuntimeError(f"{len(records)} records of {len(sources)}, statuses {statuses}")
        names = {spec.name for spec in self.settings.renditions}
        listed_keys = set()
        for record in records.values():
            if set(record.renditions) != names:
                raise RuntimeError(f"{record.key}: renditions {sorted(record.renditions)}")
            for rendition in record.renditions.values():
                listed_keys.update(rendition.object_keys)
        stored = {o["Key"]: (int(o["Size"]), str(o["ETag"]))
                  for o in listed(self.s3, self.settings.dest_bucket)}  # fmt: skip
        if set(stored) != listed_keys or len(stored) != len(sources) * len(names):
            raise RuntimeError(
                f"{len(stored)} objects in the destination, {len(listed_keys)} listed by records"
            )
        return stored

    def check_queued(self, sources: set[str]) -> None:
        """Exactly one backfill notification per source in the queue, and no record."""
        seen: list[str] = []
        for body in self.drain():
            for record in json.loads(body)["Records"]:
                assert record["eventName"] == "ObjectCreated:Backfill", record["eventName"]
                seen.append(unquote_plus(record["s3"]["object"]["key"]))
        if len(seen) != len(sources) or set(seen) != sources:
            raise RuntimeError(f"{len(seen)} messages ({len(set(seen))} keys) for {len(sources)}")
        if self.records():
            raise RuntimeError(f"--via-queue wrote {len(self.records())} records")

    def records(self) -> dict[str, ImageRecord]:
        """Every record, of any status, by key."""
        repository = build_repository(self.settings)
        records: dict[str, ImageRecord] = {}
        for status in Status:
            after = None
            while True:
                page = repository.list_images(ImageQuery(status, None, 100, after))
                records |= {record.key: record for record in page.items}
                if page.cursor is None:
                    break
                after = page.cursor
        return records

    def emulator_enqueue(self, count: int) -> list[tuple[int, int, float]]:
        """The emulator alone: ``count`` backfill messages sent into a new,
        empty queue as ``--via-queue`` sends them (batches of 10, one after
        another), timed in five blocks; (depth before, depth after,
        messages/s) of each. The queue is deleted afterwards."""
        url = self.sqs.create_queue(QueueName="bench-enqueue")["QueueUrl"]
        event = backfill_event(
            self.settings.source_bucket,
            {"Key": source_key(0), "Size": 90_000, "ETag": '"' + "0" * 32 + '"',
             "LastModified": datetime.datetime.now(datetime.UTC)},
        )  # fmt: skip
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(i), "MessageBody": notification(event)} for i in range(10)
        ]
        batches = max(1, count // 10)
        edges = [round(batches * i / 5) for i in range(6)]
        found = []
        try:
            for first, last in itertools.pairwise(edges):
                if first == last:
                    continue
                start = time.monotonic()
                for _ in range(first, last):
                    self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
                rate = (last - first) * 10 / (time.monotonic() - start)
                found.append((first * 10, last * 10, rate))
        finally:
            self.sqs.delete_queue(QueueUrl=url)
        return found

    def drain(self) -> list[str]:
        """Receive and delete every message in the queue; their bodies."""
        bodies: list[str] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600
            ).get("Messages", [])
            if not got:
                return bodies
            bodies += [m["Body"] for m in got]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )

    def queue_depth(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())


def listed(s3: Any, bucket: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found += page.get("Contents", [])
    return found


def emulator_pid(endpoint: str) -> int:
    """The moto server child of this process serving ``endpoint``."""
    port = endpoint.rsplit(":", 1)[1]
    for pid in children(os.getpid()):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"moto.server" in argv and port.encode() in argv:
            return pid
    raise RuntimeError(f"no moto server process for {endpoint}")


def children(parent: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                yield int(entry.name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (``/proc/stat``: all but
    idle and iowait) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def render(
    args: argparse.Namespace,
    runs: dict[str, list[Run]],
    depths: list[tuple[int, int, float]],
    count: int,
    total_bytes: int,
    renditions: int,
    load_start: tuple[float, float, float],
    took: float,
) -> str:
    command = " ".join([".venv/bin/python -m bench.backfill", *sys.argv[1:]])
    load_end = os.getloadavg()
    repeats = len(next(iter(runs.values())))
    med = statistics.median
    lines = [
        f"`{command}` (took {took / 60:.1f} min)",
        "",
        "# Backfill: images/s by `--workers`, and `--via-queue`",
        "",
        f"- machine: {cpu_model()}, `nproc` {os.cpu_count()} "
        f"(affinity {len(os.sched_getaffinity(0))}); Python {platform.python_version()}; "
        f"run {datetime.date.today().isoformat()}",
        "- load average (1, 5, 15 min) at start "
        + ", ".join(f"{v:.2f}" for v in load_start)
        + "; at the end "
        + ", ".join(f"{v:.2f}" for v in load_end),
        f"- {count:,} JPEGs in the source bucket ({WIDTH}x{HEIGHT}, {WIDTH * HEIGHT / 1e6:.2f} MP, "
        f"`bench/inputs.py` photos at q90, {total_bytes / 1e6:.1f} MB, {FOLDERS} folders), "
        "put directly (no events); stage `local` (DynamoDB, default `RENDITIONS`) on a moto "
        "server on loopback, which runs on the same cores",
        f"- each run: `manage.py backfill --stage local ...` as a subprocess, from an empty "
        f"table, destination bucket and queue; {repeats} run(s) of each configuration, the "
        "order rotating; medians",
        "- wall: the command from interpreter start to exit; summary: the time its summary "
        "line gives (listing to the end, without imports and the imaging workers' exit)",
        "",
    ]
    worker_configs = [c for c in runs if c not in (QUEUE, SKIP, EMPTY)]
    if worker_configs:
        base = med(r.rate() for r in runs[worker_configs[0]])
        lines += [
            "## In-process: `--workers N`",
            "",
            "| `--workers` | images/s (wall) | vs 1 worker | wall s | images/s (summary) "
            "| CPU ms/image, command | CPU ms/image, emulator | cores busy: ours, whole machine "
            "| images/s of each run |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for config in worker_configs:
            rs = runs[config]
            rate = med(r.rate() for r in rs)
            busy = med((r.cpu + r.emulator_cpu) / r.wall for r in rs)
            machine = med(r.machine_cpu / r.wall for r in rs)
            lines.append(
                f"| {config} | {rate:.1f} | {rate / base:.2f}x | {med(r.wall for r in rs):.1f} "
                f"| {med(r.summary_rate() for r in rs):.1f} "
                f"| {med(r.cpu / r.count for r in rs) * 1000:.1f} "
                f"| {med(r.emulator_cpu / r.count for r in rs) * 1000:.1f} "
                f"| {busy:.2f}, {machine:.2f} of {os.cpu_count()} "
                f"| {', '.join(f'{r.rate():.1f}' for r in rs)} |"
            )
        lines += [
            "",
            f"Every processing run: {count:,} processed records, none failed, with all "
            f"{len(Settings.from_env(stage_environment(STAGE)).renditions)} renditions; "
            f"{renditions:,} rendition objects, identical (key, size, ETag) in every run.",
            "",
            "cores busy: CPU seconds / wall seconds of the run; ours: the command, its imaging "
            "workers and the emulator; whole machine: every process (`/proc/stat`), other "
            "tenants' included.",
            "",
        ]
    if QUEUE in runs:
        rs, empty = runs[QUEUE], runs[EMPTY]
        fixed_wall, fixed_cpu = med(r.wall for r in empty), med(r.cpu for r in empty)
        own = max(0.0, med(r.cpu for r in rs) - fixed_cpu)
        emulator = med(r.emulator_cpu for r in rs)
        lines += [
            "## `--via-queue`: enqueueing",
            "",
            "| messages | messages/s (wall) | wall s | messages/s (summary) | summary s "
            "| CPU ms/message, command | CPU ms/message, emulator | messages/s of each run |",
            "|---|---|---|---|---|---|---|---|",
            f"| {count:,} | {med(r.rate() for r in rs):.0f} | {med(r.wall for r in rs):.2f} "
            f"| {med(r.summary_rate() for r in rs):.0f} | {med(r.seconds for r in rs):.2f} "
            f"| {med(r.cpu / r.count for r in rs) * 1000:.2f} "
            f"| {med(r.emulator_cpu / r.count for r in rs) * 1000:.2f} "
            f"| {', '.join(f'{r.rate():.0f}' for r in rs)} |",
            "",
            f"Every queue run left exactly {count:,} `ObjectCreated:Backfill` messages in the "
            "stage's queue, one per source key (received and checked), and no record. "
            "`--via-queue` sends `SendMessageBatch` requests of 10, one after another "
            "(`--workers` plays no part).",
            "",
            f"The command's fixed cost, `--via-queue --prefix {NOTHING}` (nothing listed, "
            f"nothing sent; once per repeat): {fixed_wall:.2f} s wall, {fixed_cpu:.2f} s CPU. "
            f"Beyond it the command spent {own:.2f} s CPU on the {count:,} messages "
            f"({own / count * 1000:.2f} ms each), the emulator {emulator:.2f} s "
            f"({emulator / count * 1000:.2f} ms each).",
            "",
        ]
        if depths:
            lines += [
                "The emulator alone, the same messages sent into a new, empty queue in the "
                "same way (one pass, after the runs):",
                "",
                "| queue depth | messages/s |",
                "|---|---|",
                *(f"| {a:,} to {b:,} | {rate:.0f} |" for a, b, rate in depths),
                "",
                "moto's `SendMessageBatch` slows as the queue grows; SQS's does not, where "
                "each request costs a network round trip instead.",
                "",
            ]
    if runs.get(SKIP):
        rs = runs[SKIP]
        lines += [
            "## `--only-missing --via-queue` with everything processed: the check per key",
            "",
            "| keys | keys/s (wall) | wall s | keys/s (summary) | summary s "
            "| CPU ms/key, command | CPU ms/key, emulator |",
            "|---|---|---|---|---|---|---|",
            f"| {count:,} | {med(r.rate() for r in rs):.0f} | {med(r.wall for r in rs):.2f} "
            f"| {med(r.summary_rate() for r in rs):.0f} | {med(r.seconds for r in rs):.2f} "
            f"| {med(r.cpu / r.count for r in rs) * 1000:.2f} "
            f"| {med(r.emulator_cpu / r.count for r in rs) * 1000:.2f} |",
            "",
            "Run right after a processing run, once per repeat: every key skipped, nothing "
            "enqueued. The check reads each key's record (one `GetItem`), one after another, "
            "before the first message is sent.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
