"""What a million uploads cost on Lambda, modelled from CPU and wall time measured
through the handler.

    .venv/bin/python -m bench.cost [--repeats 5] [--cold-repeats 5] [--quick] [--engine E]
                                   [--out FILE]

Measured, against moto's server on a free loopback port (``bench/handler.py``'s
setup: a provisioned stage with the default renditions), through the handler's
own path: the created-event pipeline with its bounded imaging (one worker
process, as ``pool_sizing`` gives every function up to 3,008 MB), one event
per upload of the workload's bytes. Workloads: 3, 12 and 24 MP JPEGs (q90),
a 12 MP PNG, a 12 MP HEIC (a grid of 512x512 tiles, as phones store it;
``bench/heif.py`` makes it), the 12 MP JPEG with ``FORMATS=avif,webp``.
``--repeats`` uploads each after one warm-up, interleaved (the order rotated
each round), medians. Per upload:

- wall: the whole event, as the handler runs it;
- CPU: this process's (all threads: ``getrusage(RUSAGE_SELF)``) and its
  imaging worker's (``utime + stime`` of ``/proc/PID/stat``, in clock ticks);
  ``RUSAGE_CHILDREN`` counts only children that have ended and been waited
  for, so it never sees the long-lived workers. moto's own CPU (the
  emulator, a child process too) is not counted: on AWS it is S3's;
- compute wall: the imaging step (``Imaging.process``: the pipe to the
  worker, decode, renditions, encode, and back) plus this process's CPU
  outside it (botocore's signing, checksums, parsing), taken as serial;
- usable parallelism: the largest CPU / compute wall of the repeats (other
  work on the machine can only lower it), at least 1 and at most this
  machine's cores (2);
- emulator I/O: wall - compute wall, the time spent waiting for moto.

The model (every cell of the cost tables), for a function of ``M`` MB:

    vcpu(M)     = min(6, M / 1769)          # Lambda: 1 vCPU at 1,769 MB, 6 at most
    duration(M) = io + cpu / min(vcpu(M), usable_parallelism)
    billed(M)   = duration rounded up to the next 1 ms
    cost(M)     = M / 1024 GB x billed s x price per GB-second + price per request

The phases of one event are sequential (read, imaging, write, record), so I/O
and CPU add up. ``io`` is not the emulator's: it is an assumption for S3 and
DynamoDB in one region, ``AWS_IO_FIXED_MS`` plus the source and the
renditions at ``AWS_IO_MB_PER_S``. Not modelled: CPU throttling within a
quota period (Lambda enforces the share per period; no attempt to emulate
it), network bandwidth growing with memory, CPUs other than this machine's,
and arm64's timing (its cells assume x86_64's duration). Memory must also
fit: the function's worker may use 60 % of ``M`` (``RLIMIT_DATA``,
``chalicelib/sandbox``); each workload runs once in a fresh handler process
per memory size (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``), and a size where the
worker runs out of its share, or where the two processes' peaks together
exceed ``M``, is "does not fit".

Kept apart from compute, the same at every memory size: each rendition and
alternate is an S3 PUT, the source a GET; the record a strongly consistent
GetItem and a conditional PutItem, which the table's two indexes (projecting
every attribute) write again, each ceil(item size / 1 KB) write units.

Cold start: fresh processes, each ``import app`` then, through the app's own
S3 handler (``handle_object_created``, a Lambda-style context, 1,769 MB), a
first 12 MP JPEG upload (pipeline, clients, worker start and its imaging
engine load) and then warm ones in the same process; cold = import + first.

Prices, us-east-1, as published (checked nothing online): Lambda x86_64
$0.0000166667 and arm64 $0.0000133334 per GB-second (the first pricing tier),
$0.20 per million requests; S3 Standard $0.005 per 1,000 PUTs, $0.0004 per
1,000 GETs; DynamoDB on demand $0.625 per million write request units (1 KB
each) and $0.125 per million read request units (4 KB, strongly consistent),
as AWS has charged since it halved them in November 2024.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import io
import json
import logging
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the cold-start child imports this module after ``import app``
    from chalicelib.imaging.model import ImagingOptions, ProcessedImage
    from chalicelib.sandbox import Budget, IsolatedImaging

ROOT = Path(__file__).resolve().parent.parent
MEMORY_SIZES = (512, 1024, 1769, 3008)
MB_PER_VCPU = 1769  # chalicelib.sandbox.MB_PER_VCPU
MAX_VCPUS = 6
# Prices, us-east-1, USD, as published.
PRICE_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
PRICE_REQUEST = 0.20 / 1e6
PRICE_S3_PUT = 0.005 / 1000
PRICE_S3_GET = 0.0004 / 1000
PRICE_DDB_WRITE = 0.625 / 1e6  # per write request unit (1 KB), since November 2024
PRICE_DDB_READ = 0.125 / 1e6  # per read request unit (4 KB, strongly consistent)
# Assumed S3 + DynamoDB time per upload in one region, not measured here:
# GetObject's first byte 20 ms, one round of parallel PutObjects 25 ms,
# DynamoDB GetItem + conditional PutItem 2 x 7.5 ms...
AWS_IO_FIXED_MS = 60.0
# ... plus the source in and the renditions out at this rate.
AWS_IO_MB_PER_S = 75.0
# The pipeline's table has two global secondary indexes projecting every
# attribute (chalicelib/repositories/dynamodb.py): a new record is written 3 times.
DDB_WRITES_PER_RECORD = 3
WITHIN = 0.10  # "lowest latency within 10 % more cost"
WARM_EVENTS = 3  # warm events per cold-start process
CHILD_MODULE = "chalicelib.sandbox.child"  # the imaging worker's module (pool.CHILD_MODULE)
MARK = "bench.cost:"  # the child's answer line
PHASES = ("get", "process", "put", "record", "total")  # the handler's stopwatch


# ---------------------------------------------------------------- the model


def vcpus(memory_mb: float) -> float:
    """Lambda's CPU share: one vCPU per 1,769 MB, at most 6."""
    return min(MAX_VCPUS, memory_mb / MB_PER_VCPU)


def duration_ms(io_ms: float, cpu_ms: float, parallelism: float, memory_mb: float) -> float:
    """Modelled duration: the I/O, plus the CPU spread over the vCPUs the
    function has and the workload can use."""
    return io_ms + cpu_ms / min(vcpus(memory_mb), parallelism)


def billed_ms(duration: float) -> int:
    """Lambda bills duration in 1 ms increments, rounded up."""
    return max(1, math.ceil(duration - 1e-9))


def invocation_cost(memory_mb: float, billed: int, gb_second: float) -> float:
    """USD for one invocation: GB-seconds at ``gb_second``, plus the request."""
    return memory_mb / 1024 * billed / 1000 * gb_second + PRICE_REQUEST


def per_million(
    io_ms: float, cpu_ms: float, parallelism: float, memory_mb: float, gb_second: float
) -> float:
    """USD of Lambda compute and requests for a million uploads at ``memory_mb``."""
    billed = billed_ms(duration_ms(io_ms, cpu_ms, parallelism, memory_mb))
    return invocation_cost(memory_mb, billed, gb_second) * 1e6


def aws_io_ms(source_bytes: int, rendition_bytes: int) -> float:
    """The assumed S3 and DynamoDB time of one upload in AWS."""
    return AWS_IO_FIXED_MS + (source_bytes + rendition_bytes) / (AWS_IO_MB_PER_S * 1e6) * 1000


def recommend(
    costs: Mapping[int, float], durations: Mapping[int, float], within: float = WITHIN
) -> tuple[int, int] | None:
    """(cheapest size, lowest-latency size costing at most ``within`` more) over
    the sizes that fit (the keys of ``costs``); None if none fits."""
    if not costs:
        return None
    cheapest = min(costs, key=lambda m: (costs[m], m))
    affordable = [m for m in costs if costs[m] <= costs[cheapest] * (1 + within)]
    fastest = min(affordable, key=lambda m: (durations[m], costs[m]))
    return cheapest, fastest


# ---------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # "jpeg" | "png" | "heic"
    width: int
    height: int
    formats: str = ""

    @property
    def slug(self) -> str:
        return self.name.lower().replace(" ", "-").replace(",", "").replace("=", "-")

    @property
    def key(self) -> str:
        """At the bucket's root: no folder records to touch."""
        return f"cost-{self.slug}.{self.kind}"


def workloads(quick: bool) -> list[Workload]:
    from bench.inputs import SIZES

    if quick:  # small inputs, every code path
        return [
            Workload("0.75 MP JPEG", "jpeg", 1000, 750),
            Workload("3 MP JPEG", "jpeg", *SIZES["3mp"]),
            Workload("0.75 MP PNG", "png", 1000, 750),
            Workload("0.75 MP HEIC", "heic", 1000, 750),
            Workload("0.75 MP JPEG, FORMATS=avif,webp", "jpeg", 1000, 750, "avif,webp"),
        ]
    return [
        Workload("3 MP JPEG", "jpeg", *SIZES["3mp"]),
        Workload("12 MP JPEG", "jpeg", *SIZES["12mp"]),
        Workload("24 MP JPEG", "jpeg", *SIZES["24mp"]),
        Workload("12 MP PNG", "png", *SIZES["12mp"]),
        Workload("12 MP HEIC", "heic", *SIZES["12mp"]),
        Workload("12 MP JPEG, FORMATS=avif,webp", "jpeg", *SIZES["12mp"], "avif,webp"),
    ]


def source_bytes(workload: Workload) -> bytes:
    from bench import heif
    from bench.inputs import jpeg_bytes, photo, png_bytes

    size = (workload.width, workload.height)
    if workload.kind == "jpeg":
        return jpeg_bytes(*size)
    if workload.kind == "png":
        return png_bytes(*size)
    if size == (heif.WIDTH, heif.HEIGHT):  # bench/heif.py's input, kept between runs
        return heif.make_inputs(Path(tempfile.gettempdir()), 60)["heic grid"].read_bytes()
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(photo(*size)).save(buffer, quality=60, tile_size=heif.TILE)
    return buffer.getvalue()


# ---------------------------------------------------------------- CPU and memory


def self_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) "


def worker_pids() -> list[int]:
    """This process's imaging workers (children running the worker module)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry.name))[1]) != me:
                continue
            if CHILD_MODULE.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
    return found


TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def process_cpu_ms(pids: Sequence[int]) -> dict[int, float]:
    """utime + stime of each process (every thread, ended ones too), in ms."""
    times = {}
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        times[pid] = (int(fields[11]) + int(fields[12])) * TICK_MS
    return times


def peak_mb(pid: int | str = "self") -> float:
    """Peak resident memory (``VmHWM``) of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------- measured uploads


@dataclass
class Sample:
    wall_ms: float
    self_cpu_ms: float
    worker_cpu_ms: float
    imaging_wall_ms: float
    imaging_self_cpu_ms: float
    puts: int
    rendition_bytes: int
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_ms(self) -> float:
        return self.self_cpu_ms + self.worker_cpu_ms

    @property
    def compute_wall_ms(self) -> float:
        """The imaging step, plus this process's CPU outside it (serial)."""
        return self.imaging_wall_ms + max(0.0, self.self_cpu_ms - self.imaging_self_cpu_ms)


class TimedImaging:
    """The handler's bounded imaging, with the wall and CPU of each call."""

    def __init__(self, inner: IsolatedImaging) -> None:
        self.inner = inner
        self.pids: list[int] = []
        self.last: tuple[float, float, ProcessedImage] | None = None

    @property
    def concurrency(self) -> int:
        return self.inner.concurrency

    def process(self, data: bytes, options: ImagingOptions, budget: Budget) -> ProcessedImage:
        cpu, start = self_cpu_ms(), time.perf_counter()
        image = self.inner.process(data, options, budget)
        wall = (time.perf_counter() - start) * 1000
        self.last = (wall, self_cpu_ms() - cpu, image)
        return image

    def metadata(self, data: bytes, max_pixels: int, budget: Budget) -> Any:
        return self.inner.metadata(data, max_pixels, budget)


def use_emulator(url: str) -> dict[str, str]:
    """Point boto3 at the emulator (as bench/handler.py does); the variables set."""
    variables = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(variables)
    return variables


STAGE = {"SOURCE_BUCKET": "bench", "DDB_TABLE": "bench", "SNS_TOPIC_ARN": ""}


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def upload(s3: Any, key: str, data: bytes) -> str:
    etag: str = s3.put_object(Bucket="bench", Key=key, Body=data)["ETag"].strip('"')
    return etag


def measure(
    jobs: Sequence[Workload], data: Mapping[Workload, bytes], repeats: int
) -> dict[Workload, list[Sample]]:
    """``repeats`` uploads of each workload after one warm-up, interleaved."""
    import boto3

    from chalicelib.factory import build_pipeline
    from chalicelib.models import EventKind, ObjectEvent
    from chalicelib.observability import Stopwatch
    from chalicelib.pipeline import Outcome
    from chalicelib.sandbox import IsolatedImaging, WorkerPool, worker_memory_bytes
    from chalicelib.settings import Settings

    # One worker, with the largest share modelled: timing does not depend on it.
    largest = {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(max(MEMORY_SIZES))}
    pool = WorkerPool(1, worker_memory_bytes(1, largest))
    imaging = TimedImaging(IsolatedImaging(pool.start()))
    phases: dict[str, float] = {}

    def observe(event: ObjectEvent, outcome: Outcome, watch: Stopwatch) -> None:
        assert outcome is Outcome.PROCESSED, (event.key, outcome, watch.detail)
        phases.clear()
        phases.update(watch.ms)

    pipelines = {}
    for job in jobs:
        settings = Settings.from_env(STAGE | {"FORMATS": job.formats})
        pipelines[job] = build_pipeline(settings, imaging=imaging)
        pipelines[job].observer = observe
    s3 = boto3.client("s3")
    samples: dict[Workload, list[Sample]] = {job: [] for job in jobs}
    sequence = 0
    try:
        for round_no in range(repeats + 1):
            shift = round_no % len(jobs)
            for job in [*jobs[shift:], *jobs[:shift]]:
                body = data[job]
                etag = upload(s3, job.key, body)
                sequence += 1
                event = ObjectEvent(
                    "bench", job.key, EventKind.CREATED, "ObjectCreated:Put", size=len(body),
                    etag=etag, sequencer=f"{sequence:018X}", event_time=now_iso(),
                )  # fmt: skip
                pids = worker_pids()
                workers, cpu, start = process_cpu_ms(pids), self_cpu_ms(), time.perf_counter()
                pipelines[job].handle(event)
                wall = (time.perf_counter() - start) * 1000
                cpu = self_cpu_ms() - cpu
                after = process_cpu_ms(pids)
                assert imaging.last is not None
                imaging_wall, imaging_cpu, image = imaging.last
                if round_no:
                    samples[job].append(
                        Sample(
                            wall_ms=wall,
                            self_cpu_ms=cpu,
                            worker_cpu_ms=sum(after[p] - workers.get(p, 0.0) for p in after),
                            imaging_wall_ms=imaging_wall,
                            imaging_self_cpu_ms=imaging_cpu,
                            puts=sum(1 + len(r.alternates) for r in image.renditions),
                            rendition_bytes=sum(
                                len(r.data) + sum(len(a.data) for a in r.alternates)
                                for r in image.renditions
                            ),
                            phases=dict(phases),
                        )
                    )
    finally:
        pool.close()
    return samples


def item_size(value: Mapping[str, Any]) -> int:
    """DynamoDB's size of an item in the low-level form (``{"S": ...}``), bytes:
    names and values (UTF-8 strings, binary, numbers about a byte per two
    digits), 3 bytes per map or list plus 1 per element."""

    def size(attr: Mapping[str, Any]) -> int:
        (kind, v), = attr.items()  # fmt: skip
        if kind == "S":
            return len(v.encode())
        if kind == "B":
            return len(v)
        if kind == "N":
            return (len(v.strip("-").replace(".", "").strip("0")) + 1) // 2 + 1
        if kind in ("BOOL", "NULL"):
            return 1
        if kind == "M":
            return 3 + sum(len(k.encode()) + size(x) + 1 for k, x in v.items())
        if kind == "L":
            return 3 + sum(size(x) + 1 for x in v)
        if kind == "SS":
            return sum(len(x.encode()) for x in v)
        if kind == "BS":
            return sum(len(x) for x in v)
        return sum((len(x) + 1) // 2 + 1 for x in v)  # NS

    return sum(len(name.encode()) + size(attr) for name, attr in value.items())


def stored_record(key: str) -> dict[str, Any]:
    """The record's item as DynamoDB stores it (low-level form)."""
    import boto3

    from chalicelib import keys

    item: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName="bench",
        Key={"pk": {"S": f"IMG#{keys.image_id('bench', key)}"}, "sk": {"S": "IMG"}},
        ConsistentRead=True,
    )["Item"]
    return item


# ---------------------------------------------------------------- fresh handler processes


CHILD = (
    "import time; started = time.perf_counter(); import app; "
    "imported = time.perf_counter(); import bench.cost; "
    "bench.cost.child((imported - started) * 1000)"
)


class _Context:
    """What the handler reads from Lambda's context."""

    aws_request_id = "bench-cost"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def notification(key: str, size: int, etag: str, sequencer: str) -> dict[str, Any]:
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": now_iso(),
        "s3": {
            "bucket": {"name": "bench", "arn": "arn:aws:s3:::bench"},
            "object": {"key": key, "size": size, "eTag": etag, "sequencer": sequencer},
        },
    }
    return {"Records": [record]}


class _Phases(logging.Handler):
    """The handler's per-phase milliseconds, from each event's log line."""

    def __init__(self) -> None:
        super().__init__()
        self.ms: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = getattr(record, "outcome", None)
        if isinstance(line, dict):
            self.ms.append(line.get("ms", {}))


def child(import_ms: float) -> None:
    """In a fresh process that has just imported ``app``: run the events of
    ``sys.argv[1]`` (JSON: [[key, size, etag, sequencer], ...]) through the
    app's S3 handler; print the times, phases, outcomes and peak memory."""
    import app

    handler: Any = app.handle_object_created
    phases = _Phases()
    logging.getLogger("image_pipeline").addHandler(phases)
    event_ms, outcomes = [], []
    for key, size, etag, sequencer in json.loads(sys.argv[1]):
        event = notification(key, size, etag, sequencer)
        start = time.perf_counter()
        outcomes += handler(event, _Context())
        event_ms.append((time.perf_counter() - start) * 1000)
    workers = [peak_mb(pid) for pid in worker_pids()]
    answer = {
        "import_ms": import_ms,
        "event_ms": event_ms,
        "phases": phases.ms,
        "outcomes": outcomes,
        "handler_mb": peak_mb(),
        "worker_mb": max(workers, default=0.0),
    }
    print(MARK + json.dumps(answer), flush=True)


def fresh_process(
    events: Sequence[tuple[str, int, str, str]],
    emulator: Mapping[str, str],
    env: Mapping[str, str],
    cpus: set[int] | None = None,
) -> dict[str, Any]:
    """The handler process's answer; on ``cpus`` only (its imaging worker too) when given."""
    environment = {"PATH": os.environ.get("PATH", ""), **emulator, **STAGE, **env}
    pin = None if cpus is None else functools.partial(os.sched_setaffinity, 0, cpus)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(events)],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600, check=False,
        preexec_fn=pin,
    )  # fmt: skip
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            answer: dict[str, Any] = json.loads(line.removeprefix(MARK))
            return answer
    raise RuntimeError(f"the handler process failed ({done.returncode}):\n{done.stderr[-3000:]}")


_sequence = iter(range(1 << 30))


def uploads(
    s3: Any, stem: str, suffix: str, data: bytes, count: int
) -> list[tuple[str, int, str, str]]:
    """``count`` new objects of ``data`` at the bucket's root, and their events' fields."""
    events = []
    for i in range(count):
        object_key = f"{stem}-{i}.{suffix}"
        etag = upload(s3, object_key, data)
        events.append((object_key, len(data), etag, f"{0xC0000000 + next(_sequence):018X}"))
    return events


@dataclass
class Fit:
    fits: bool
    worker_limit_mb: float
    worker_mb: float
    handler_mb: float
    reason: str = ""


def fit_check(
    jobs: Sequence[Workload], data: Mapping[Workload, bytes], emulator: Mapping[str, str]
) -> dict[tuple[Workload, int], Fit]:
    """Each workload once per memory size, in a fresh handler process with
    ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` set: the worker's share as on Lambda."""
    import boto3

    from chalicelib.sandbox import pool_sizing

    s3 = boto3.client("s3")
    fits = {}
    for job in jobs:
        for memory in MEMORY_SIZES:
            env = {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory), "FORMATS": job.formats}
            sizing = pool_sizing(env)
            [event] = uploads(s3, f"fit-{memory}-{job.slug}", job.kind, data[job], 1)
            answer = fresh_process([event], emulator, env)
            record = stored_record(event[0])
            status = record["list_status"]["S"]
            reason = "" if status == "processed" else json.loads(record["doc"]["S"]).get("error")
            total = answer["handler_mb"] + answer["worker_mb"]
            if not reason and total > memory:
                reason = f"the two processes' peaks, {total:,.0f} MB, exceed {memory:,} MB"
            fits[job, memory] = Fit(
                not reason,
                sizing.memory_bytes / 2**20,
                answer["worker_mb"],
                answer["handler_mb"],
                str(reason or ""),
            )
    return fits


@dataclass
class Cold:
    import_ms: float
    first_ms: float
    warm_ms: float
    handler_mb: float
    first_phases: dict[str, float]
    warm_phases: dict[str, float]  # medians over the warm events

    @property
    def cold_ms(self) -> float:
        return self.import_ms + self.first_ms


def cold_starts(
    data: bytes, repeats: int, emulator: Mapping[str, str], cpus: set[int] | None = None
) -> list[Cold]:
    """``repeats`` fresh processes (after one untimed): import, first event, warm
    events; pinned to ``cpus`` when given."""
    import boto3

    s3 = boto3.client("s3")
    env = {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MB_PER_VCPU)}
    found = []
    for round_no in range(repeats + 1):
        events = uploads(s3, f"cold-{round_no}", "jpeg", data, 1 + WARM_EVENTS)
        answer = fresh_process(events, emulator, env, cpus)
        assert answer["outcomes"] == ["processed"] * len(events), answer["outcomes"]
        first, *warm = answer["event_ms"]
        first_phases, *warm_phases = answer["phases"]
        if round_no:
            found.append(
                Cold(
                    answer["import_ms"],
                    first,
                    statistics.median(warm),
                    answer["handler_mb"],
                    first_phases,
                    {
                        name: statistics.median(p.get(name, 0.0) for p in warm_phases)
                        for name in PHASES
                    },
                )
            )
    return found


# ---------------------------------------------------------------- report


@dataclass
class Row:
    """A workload's medians and what the model makes of them."""

    job: Workload
    source_bytes: int
    samples: list[Sample]
    cap: int  # this machine's cores

    def median(self, value: Callable[[Sample], float]) -> float:
        return statistics.median(value(s) for s in self.samples)

    def phase(self, name: str) -> float:
        return statistics.median(s.phases.get(name, 0.0) for s in self.samples)

    @property
    def wall(self) -> float:
        return self.median(lambda s: s.wall_ms)

    @property
    def cpu(self) -> float:
        return self.median(lambda s: s.cpu_ms)

    @property
    def compute_wall(self) -> float:
        return self.median(lambda s: s.compute_wall_ms)

    def ratios(self) -> list[float]:
        return [s.cpu_ms / s.compute_wall_ms for s in self.samples]

    @property
    def parallelism(self) -> float:
        """The largest CPU / compute wall of the repeats (another process's load
        on the machine can only lower it), between 1 (whatever computes keeps one
        CPU busy) and this machine's cores."""
        return min(float(self.cap), max(1.0, *self.ratios()))

    @property
    def emulator_io(self) -> float:
        return self.median(lambda s: max(0.0, s.wall_ms - s.compute_wall_ms))

    @property
    def puts(self) -> int:
        return self.samples[0].puts

    @property
    def rendition_bytes(self) -> int:
        return int(self.median(lambda s: s.rendition_bytes))

    @property
    def io(self) -> float:
        return aws_io_ms(self.source_bytes, self.rendition_bytes)

    def duration(self, memory: int) -> float:
        return duration_ms(self.io, self.cpu, self.parallelism, memory)

    def cost(self, memory: int, arch: str) -> float:
        return per_million(self.io, self.cpu, self.parallelism, memory, PRICE_GB_SECOND[arch])


def machine() -> list[str]:
    from PIL import Image

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown CPU",
    )
    total = int(Path("/proc/meminfo").read_text().split()[1])
    try:
        import pi_heif  # type: ignore[import-untyped]  # no py.typed marker

        heif = f", pi-heif {pi_heif.__version__} (libheif {pi_heif.libheif_version()})"
    except ImportError:
        heif = ""
    return [
        f"- machine: {model}, `nproc` {len(os.sched_getaffinity(0))}, {total / 2**20:.0f} GiB; "
        f"load average at start {os.getloadavg()[0]:.2f}; run {datetime.date.today().isoformat()}",
        f"- Python {platform.python_version()}, Pillow {Image.__version__}{heif}",
    ]


def money(usd: float) -> str:
    return f"${usd:,.2f}" if usd >= 0.995 else f"${usd:.3f}"


def report(
    rows: list[Row],
    fits: dict[tuple[Workload, int], Fit],
    colds: list[Cold],
    colds_one: list[Cold],
    cold_input: Workload,
    args: argparse.Namespace,
    head: list[str],
    started: float,
    record_bytes: dict[Workload, int],
) -> str:
    command = " ".join([".venv/bin/python -m bench.cost", *sys.argv[1:]])
    minutes = (time.monotonic() - started) / 60
    sizes = " | ".join(f"{m:,} MB" for m in MEMORY_SIZES)
    rule = "|---" * (len(MEMORY_SIZES) + 1) + "|"
    cap = rows[0].cap
    lines = [
        "# Cost per million uploads on Lambda, modelled from measurement",
        "",
        f"`{command}{' > bench/results/cost.md' if not args.out else ''}` (took {minutes:.1f} min)",
        "",
        *head,
        f"- load average at the end {os.getloadavg()[0]:.2f}",
        f"- {args.repeats} uploads of each workload after one warm-up, interleaved (the order "
        "rotated each round), medians; the created-event pipeline with its bounded imaging "
        "(one worker process) against moto's server on loopback, default renditions (256, "
        "800, 1600 px, JPEG q85 for JPEG and HEIC sources, PNG for the PNG); inputs from "
        "`bench/inputs.py` (JPEG q90 with EXIF), the HEIC from `bench/heif.py` (pillow-heif "
        "at quality 60, a grid of 512x512 tiles)",
        "",
        "## Measured per upload",
        "",
        "CPU: this process's (`getrusage`) and its imaging worker's (`/proc/PID/stat`, 10 ms "
        "ticks); the emulator's own CPU is not counted. Compute wall: the imaging step plus "
        "this process's CPU outside it. Usable parallelism: the largest CPU / compute wall "
        "of the repeats (the range in brackets: other work on this shared machine can only "
        f"lower it), taken between 1 and {cap} (this machine's cores). Emulator I/O: wall "
        "- compute wall.",
        "",
        "| workload | source bytes | PUTs | rendition bytes | wall ms | CPU ms | of it the "
        "worker's | compute wall ms | usable parallelism | emulator I/O ms | AWS I/O ms "
        "(assumed) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        worker = row.median(lambda s: s.worker_cpu_ms)
        ratios = row.ratios()
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        lines.append(
            f"| {row.job.name} | {row.source_bytes:,} | {row.puts} | {row.rendition_bytes:,} "
            f"| {row.wall:.0f} | {row.cpu:.0f} | {worker:.0f} | {row.compute_wall:.0f} "
            f"| {row.parallelism:.2f} ({spread}) | {row.emulator_io:.0f} | {row.io:.0f} |"
        )
    phase_names = list(PHASES)
    lines += [
        "",
        "The handler's own phases (median ms; `process` is the imaging step, `get`/`put`/"
        "`record` include this process's botocore work):",
        "",
        f"| workload | {' | '.join(phase_names)} |",
        "|---" * (len(phase_names) + 1) + "|",
    ]
    for row in rows:
        times = " | ".join(f"{row.phase(name):.0f}" for name in phase_names)
        lines.append(f"| {row.job.name} | {times} |")
    lines += [
        "",
        "## The model",
        "",
        "For a function of M MB:",
        "",
        f"    vcpu(M)     = min({MAX_VCPUS}, M / {MB_PER_VCPU})",
        "    duration(M) = io + cpu / min(vcpu(M), usable_parallelism)",
        "    billed(M)   = duration(M) rounded up to the next 1 ms",
        "    cost(M)     = M / 1024 GB x billed(M) s x price per GB-second + price per request",
        "",
        "- Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB "
        "(so 512 MB is 0.289 vCPU, 1,024 MB 0.579, 3,008 MB 1.70), up to six at 10,240 MB. "
        "`cpu` is the measured CPU of the upload (handler process and imaging worker); "
        "`usable_parallelism` how many cores it kept busy here (at least 1), so a "
        "single-threaded workload gains nothing above 1,769 MB.",
        "- The event's phases run one after the other (read, imaging, write, record), so "
        "`io` and CPU add up. `io` is not the emulator's (moto on loopback, a Python "
        "server on the same two cores): it is an assumption for S3 and DynamoDB in one "
        f"region, not measured: {AWS_IO_FIXED_MS:.0f} ms (GetObject's first byte 20 ms, "
        "one round of parallel PutObjects 25 ms, DynamoDB GetItem and conditional "
        f"PutItem 7.5 ms each) plus the source and the renditions at {AWS_IO_MB_PER_S:.0f} "
        "MB/s. The emulator's I/O is in the measured table for comparison.",
        "- Not emulated: CPU throttling (Lambda enforces the share per scheduling period; "
        "a burst can run ahead and then wait), network bandwidth growing with memory, "
        "Lambda's own CPUs (measured on this machine's), and arm64: **arm64 timing is not "
        "measured here**; its cells assume the x86_64 duration at arm64's price.",
        "- Memory must fit as well as time: the function's imaging worker may use 60 % of "
        "M (`RLIMIT_DATA`, `chalicelib/sandbox`; one worker at every size here, 307, 614, "
        "1,061 and 1,804 MB); the rest is the handler process's. A cell is \"does not "
        'fit" where a fresh handler process at that `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` '
        "failed the upload for memory, or where the two processes' peak resident sizes "
        "add up to more than M.",
        "- Warm events only: a cold start's extra time (below) is not in the tables. One "
        "invocation per upload (the direct S3 trigger); in SQS mode a batch of 10 is one "
        "request, which saves at most the $0.20 per million requests.",
        "- Prices, us-east-1, USD, as published (nothing checked online): Lambda x86_64 "
        f"${PRICE_GB_SECOND['x86_64']:.10f} and arm64 ${PRICE_GB_SECOND['arm64']:.10f} per "
        "GB-second (the first pricing tier), $0.20 per million requests; S3 Standard "
        "$0.005 per 1,000 PUTs and $0.0004 per 1,000 GETs; DynamoDB on demand "
        f"${PRICE_DDB_WRITE * 1e6:.3f} per million write request units (1 KB each) and "
        f"${PRICE_DDB_READ * 1e6:.3f} per million read request units "
        "(4 KB, strongly consistent; both halved in November 2024).",
        "",
        "## Does it fit?",
        "",
        "Each workload once per memory size in a fresh handler process: the worker's "
        "limit, its peak resident size, and the handler process's.",
        "",
        f"| workload | {sizes} |",
        rule,
    ]
    for row in rows:
        cells = []
        for memory in MEMORY_SIZES:
            fit = fits[row.job, memory]
            used = (
                f"worker {fit.worker_mb:,.0f} of {fit.worker_limit_mb:,.0f} MB, "
                f"handler {fit.handler_mb:,.0f} MB"
            )
            cells.append(used if fit.fits else f"**does not fit**: {fit.reason}")
        lines.append(f"| {row.job.name} | {' | '.join(cells)} |")

    def fitting(row: Row) -> list[int]:
        return [m for m in MEMORY_SIZES if fits[row.job, m].fits]

    lines += [
        "",
        "## Billed duration per upload, modelled (ms)",
        "",
        f"| workload | {sizes} |",
        rule,
    ]
    for row in rows:
        cells = [
            f"{billed_ms(row.duration(m)):,}" if m in fitting(row) else "does not fit"
            for m in MEMORY_SIZES
        ]
        lines.append(f"| {row.job.name} | {' | '.join(cells)} |")
    for arch in PRICE_GB_SECOND:
        lines += [
            "",
            f"## Lambda cost per million uploads, {arch} (compute and requests, us-east-1)",
            "",
        ]
        if arch == "arm64":
            lines += [
                "arm64 timing is not measured here: x86_64's modelled duration at arm64's price.",
                "",
            ]
        lines += [f"| workload | {sizes} |", rule]
        for row in rows:
            cells = [
                money(row.cost(m, arch)) if m in fitting(row) else "does not fit"
                for m in MEMORY_SIZES
            ]
            lines.append(f"| {row.job.name} | {' | '.join(cells)} |")
    lines += [
        "",
        "## Requests outside Lambda, per million uploads",
        "",
        "Not compute, and the same at every memory size: each rendition (and alternate) "
        "is one S3 PUT, the source one GET; the record one strongly consistent GetItem "
        f"and one conditional PutItem, written {DDB_WRITES_PER_RECORD} times (the table "
        "and its two indexes, which project every attribute), each ceil(item size / "
        "1 KB) write request units.",
        "",
        "| workload | PUTs per upload | S3 PUTs | S3 GET | record bytes | write units per "
        "upload | DynamoDB writes | DynamoDB read | together |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    outside: dict[Workload, float] = {}
    for row in rows:
        size = record_bytes[row.job]
        wru = DDB_WRITES_PER_RECORD * math.ceil(size / 1024)
        puts, get = row.puts * PRICE_S3_PUT * 1e6, PRICE_S3_GET * 1e6
        writes, read = wru * PRICE_DDB_WRITE * 1e6, PRICE_DDB_READ * 1e6
        outside[row.job] = puts + get + writes + read
        lines.append(
            f"| {row.job.name} | {row.puts} | {money(puts)} | {money(get)} | {size:,} "
            f"| {wru} | {money(writes)} | {money(read)} | {money(outside[row.job])} |"
        )
    lines += [
        "",
        "Not counted: S3 storage of the renditions, CloudWatch Logs (one line per "
        "event), data transfer out of the region.",
        "",
        "## Recommended `lambda_memory_size`",
        "",
        "The cheapest size that fits, and the one with the lowest modelled latency "
        f"costing at most {WITHIN:.0%} more (x86_64; arm64's choice in brackets where it "
        "differs). Per million uploads: Lambda, and everything (Lambda, S3 and DynamoDB "
        "requests).",
        "",
        "| workload | cheapest | ms | Lambda | everything | lowest latency within "
        f"{WITHIN:.0%} | ms | Lambda | everything |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        picks = {}
        for arch in PRICE_GB_SECOND:
            costs = {m: row.cost(m, arch) for m in fitting(row)}
            picks[arch] = recommend(costs, {m: row.duration(m) for m in costs})
        pick = picks["x86_64"]
        if pick is None:
            lines.append(f"| {row.job.name} | does not fit at any size | | | | | | | |")
            continue
        cells = []
        for i, memory in enumerate(pick):
            other = picks["arm64"]
            arm = f" (arm64: {other[i]:,})" if other is not None and other[i] != memory else ""
            lambda_cost = row.cost(memory, "x86_64")
            cells += [
                f"{memory:,} MB{arm}",
                f"{billed_ms(row.duration(memory)):,}",
                money(lambda_cost),
                money(lambda_cost + outside[row.job]),
            ]
        lines.append(f"| {row.job.name} | {' | '.join(cells)} |")
    imports = [c.import_ms for c in colds]
    firsts = [c.first_ms for c in colds]
    colds_ms = [c.cold_ms for c in colds]
    warms = [c.warm_ms for c in colds]
    ratios = [c.cold_ms / (c.warm_ms + c.import_ms) for c in colds]
    one = [c.cold_ms / (c.warm_ms + c.import_ms) for c in colds_one]
    med = statistics.median
    lines += [
        "",
        "## Cold start",
        "",
        f"{len(colds)} fresh processes (after one untimed), each `import app`, then through "
        f"the app's S3 handler (`handle_object_created`, {MB_PER_VCPU:,} MB: one imaging "
        f"worker) a first {cold_input.name} upload (the pipeline and its clients, the "
        f"worker's start and its imaging engine, the first image) and {WARM_EVENTS} warm "
        "ones; each a new object. The interpreter's own start (about 12 ms, "
        "`results/import_time.md`) is in neither. Medians over the processes (each "
        "process's warm figure the median of its warm events); min-max in brackets.",
        "",
        "| what | ms |",
        "|---|---|",
        f"| `import app` | {med(imports):.0f} ({min(imports):.0f}-{max(imports):.0f}) |",
        f"| first event | {med(firsts):.0f} ({min(firsts):.0f}-{max(firsts):.0f}) |",
        f"| cold: import + first event | {med(colds_ms):.0f} "
        f"({min(colds_ms):.0f}-{max(colds_ms):.0f}) |",
        f"| warm event, same process | {med(warms):.0f} ({min(warms):.0f}-{max(warms):.0f}) |",
        f"| warm + import | {med(w + i for w, i in zip(warms, imports, strict=True)):.0f} |",
        f"| **cold / (warm + import)** (target: at most 2x) | **{med(ratios):.2f}x** "
        f"({min(ratios):.2f}-{max(ratios):.2f}) |",
        "",
        "On one CPU (the handler and its worker pinned to one core, the share of a "
        f"{MB_PER_VCPU:,} MB function; the emulator not pinned), where the worker's load "
        "cannot overlap the pipeline's building:",
        "",
        "| what, one CPU | ms |",
        "|---|---|",
        *(
            f"| {label} | {med(v):.0f} ({min(v):.0f}-{max(v):.0f}) |"
            for label, v in (
                ("`import app`", [c.import_ms for c in colds_one]),
                ("first event", [c.first_ms for c in colds_one]),
                ("warm event, same process", [c.warm_ms for c in colds_one]),
            )
        ),
        f"| **cold / (warm + import)**, one CPU | **{med(one):.2f}x** "
        f"({min(one):.2f}-{max(one):.2f}) |",
        "",
        "Where the two events' time goes (medians, ms): the handler's stopwatch "
        "(`total` is the pipeline's `handle`; the rest of the event is outside it: "
        "building the pipeline and its clients on the first event, parsing the "
        "notification); `record` includes, on the first event, making the DynamoDB "
        "table's resource. The imaging worker is started as the first event begins, "
        "before the pipeline is built, and loads its engine in its own process meanwhile; "
        "`process` includes, on the first event, whatever of that load is left to wait "
        "for, and the first image's one-time costs.",
        "",
        "| event | whole event | outside the pipeline | get | process | put | record |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, whole, phases in (
        ("first", firsts, [c.first_phases for c in colds]),
        ("warm", warms, [c.warm_phases for c in colds]),
        ("first, one CPU", [c.first_ms for c in colds_one], [c.first_phases for c in colds_one]),
        ("warm, one CPU", [c.warm_ms for c in colds_one], [c.warm_phases for c in colds_one]),
    ):
        split = {p: med(x.get(p, 0.0) for x in phases) for p in PHASES}
        rest = med(w - x.get("total", 0.0) for w, x in zip(whole, phases, strict=True))
        lines.append(
            f"| {name} | {med(whole):.0f} | {rest:.0f} | {split['get']:.0f} "
            f"| {split['process']:.0f} | {split['put']:.0f} | {split['record']:.0f} |"
        )
    lines += [
        "",
        "Handler process peak resident size after the events: "
        f"{med(c.handler_mb for c in colds):.0f} MB.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed uploads per workload")
    parser.add_argument("--cold-repeats", type=int, default=5, help="fresh processes")
    parser.add_argument("--quick", action="store_true", help="small inputs: a smoke run")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--engine", choices=("pillow", "vips"), default=None, help="IMAGE_ENGINE (default: its)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    from chalicelib.sandbox import available_cpus
    from chalicelib.settings import Settings

    if args.engine:
        STAGE["IMAGE_ENGINE"] = args.engine
    engine = Settings.from_env(STAGE).image_engine
    head = [*machine(), f"- `IMAGE_ENGINE={engine}`" + ("" if args.engine else " (the default)")]
    from devtools.emulator import moto_server
    from devtools.provision import provision

    jobs = workloads(args.quick)
    data = {job: source_bytes(job) for job in jobs}
    cold_input = jobs[1] if not args.quick else jobs[0]  # the 12 MP JPEG
    with moto_server() as url:
        emulator = use_emulator(url)
        provision(Settings.from_env(STAGE), report=lambda _: None)
        samples = measure(jobs, data, args.repeats)
        record_bytes = {job: item_size(stored_record(job.key)) for job in jobs}
        fits = fit_check(jobs, data, emulator)
        colds = cold_starts(data[cold_input], args.cold_repeats, emulator)
        colds_one = cold_starts(
            data[cold_input], args.cold_repeats, emulator, {min(os.sched_getaffinity(0))}
        )
    cap = min(2, available_cpus())
    rows = [Row(job, len(data[job]), samples[job], cap) for job in jobs]
    text = report(rows, fits, colds, colds_one, cold_input, args, head, started, record_bytes)
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
