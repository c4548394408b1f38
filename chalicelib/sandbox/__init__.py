"""Imaging with every source bounded in time and memory.

``IsolatedImaging`` runs ``process_image`` and ``read_metadata`` in worker
processes (``pool.py``) and turns an overrun into ``ImageRejected`` with a
reason a person can act on, so the file ends as a ``failed`` record and the
function never runs out its timeout or memory because of one file.
``InProcessImaging`` is the same interface without the bound, for unit tests
and tools that handle trusted files.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.imaging.errors import ImageRejected
from chalicelib.imaging.model import ImagingOptions, ProcessedImage
from chalicelib.sandbox import protocol
from chalicelib.sandbox.pool import Died, Overran, WorkerLost, WorkerPool, signal_name

__all__ = [
    "RECORD_MARGIN",
    "Budget",
    "Imaging",
    "InProcessImaging",
    "IsolatedImaging",
    "PoolSizing",
    "WorkerLost",
    "WorkerPool",
    "isolated_imaging",
    "pool_sizing",
    "source_seconds",
    "time_budget",
    "worker_memory_bytes",
]

Metadata = tuple[str, int, int, dict[str, Any]]

# Memory the workers may use together (each one's RLIMIT_DATA is its part), as
# a share of the function's memory: the rest is the handler process (Python,
# boto3, each message in flight's source bytes and renditions) and the
# workers' code, which RLIMIT_DATA does not count. See ``pool_sizing``.
WORKER_MEMORY_SHARE = 0.6
# Lambda gives a function one vCPU per 1,769 MB of memory, up to 6 (at 10,240 MB).
MB_PER_VCPU = 1769
MAX_WORKERS = 6
# Time kept back from an invocation's remaining time for what follows the
# imaging of a source (writing renditions, the record, the notification, with
# their retries), and the least time a source is given all the same.
RECORD_MARGIN = 5.0
MIN_BUDGET = 1.0
# Time kept for reading a source before its imaging (up to MAX_SOURCE_BYTES,
# with the client's retries).
READ_MARGIN = 5.0
# The function size assumed where none is given (locally), per worker: the
# event handlers' (one vCPU).
DEFAULT_FUNCTION_MB = MB_PER_VCPU


@dataclass(frozen=True)
class Budget:
    """The time one source may take, and what set it, for the failure reason."""

    seconds: float
    limit: str  # e.g. "PROCESSING_TIMEOUT=20"
    advice: str = "re-save it in a common format or at fewer pixels"


def source_seconds(timeout: int) -> float:
    """The longest one source may take in a handler with ``PROCESSING_TIMEOUT``
    ``timeout``: reading it, its imaging, writing its renditions and record."""
    return READ_MARGIN + timeout + RECORD_MARGIN


def time_budget(timeout: int, deadline: float | None) -> Budget:
    """The time one source may take: ``PROCESSING_TIMEOUT`` (``timeout``), or
    less when the invocation must return by ``deadline`` (``time.monotonic()``)
    and has less left, less ``RECORD_MARGIN``."""
    limit = f"PROCESSING_TIMEOUT={timeout}"
    if deadline is None:
        return Budget(float(timeout), limit)
    left = deadline - time.monotonic() - RECORD_MARGIN
    if left >= timeout:
        return Budget(float(timeout), limit)
    return Budget(
        max(left, MIN_BUDGET),
        f"all the time this invocation had left, less {RECORD_MARGIN:g} s for the record",
        f"give the function a lambda_timeout above PROCESSING_TIMEOUT plus {RECORD_MARGIN:g} s, "
        "then upload the file again or run a backfill",
    )


class Imaging(Protocol):
    def process(self, data: bytes, options: ImagingOptions, budget: Budget) -> ProcessedImage:
        """Renditions and metadata; raises ``ImageRejected`` for a file no retry can fix."""
        ...

    def metadata(self, data: bytes, max_pixels: int, budget: Budget) -> Metadata:
        """(format, width, height, metadata) from the headers."""
        ...


class InProcessImaging:
    """The imaging functions called directly: no bound beyond their own checks."""

    concurrency = 1  # in-process decoding is for tests and trusted tools, one at a time

    def process(self, data: bytes, options: ImagingOptions, budget: Budget) -> ProcessedImage:
        from chalicelib.imaging import process_image

        return process_image(data, options)

    def metadata(self, data: bytes, max_pixels: int, budget: Budget) -> Metadata:
        from chalicelib.imaging import read_metadata

        return read_metadata(data, max_pixels)


class IsolatedImaging:
    """The imaging functions in the pool's worker processes."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    @property
    def concurrency(self) -> int:
        """Sources it works on at once: one per worker, each thread its own."""
        return self.pool.size

    def process(self, data: bytes, options: ImagingOptions, budget: Budget) -> ProcessedImage:
        header, payload = self._call(
            {"op": "process", "options": protocol.options_to_json(options)}, data, budget
        )
        return protocol.result_from_message(header["result"], payload)

    def metadata(self, data: bytes, max_pixels: int, budget: Budget) -> Metadata:
        header, _ = self._call({"op": "metadata", "max_pixels": max_pixels}, data, budget)
        try:
            found = header["result"]
            metadata = found["metadata"]
            if not isinstance(metadata, dict):
                raise TypeError("metadata is not an object")
            return str(found["format"]), int(found["width"]), int(found["height"]), metadata
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkerLost(f"malformed answer from the imaging worker: {exc!r}") from None

    def start(self, sources: int) -> None:
        """Start workers for ``sources`` sources about to be decoded (up to the
        pool's size, counting those started already), without waiting for
        them to load: each loads its engine in its own process while the
        caller builds its clients and reads the source. Best effort: a worker
        that cannot start now is started, or its failure reported, by the
        request that needs it."""
        if sources > 0:
            with contextlib.suppress(OSError, WorkerLost):
                self.pool.start(sources)

    def close(self) -> None:
        self.pool.close()

    def _call(
        self, request: dict[str, Any], data: bytes, budget: Budget
    ) -> tuple[dict[str, Any], bytes]:
        answer = self.pool.call(request, data, budget.seconds)
        if isinstance(answer, Overran):
            raise ImageRejected(
                f"processing took longer than {budget.seconds:.3g} s ({budget.limit}) and "
                f"was stopped: the file is too costly to decode; {budget.advice}"
            )
        if isinstance(answer, Died):
            raise ImageRejected(self._death(answer))
        header, payload = answer
        if "rejected" in header:
            raise ImageRejected(str(header["rejected"]))
        if "error" in header or not header.get("ok"):
            raise WorkerLost(f"the imaging worker failed: {str(header.get('error'))[-2000:]}")
        return header, payload

    def _death(self, died: Died) -> str:
        if died.memory:
            megabytes = self.pool.memory_bytes >> 20
            return (
                f"decoding the file needs more than {megabytes:,} MB, the memory one image "
                "may use in this function: re-save it at fewer pixels, or give the function "
                "more memory (lambda_memory_size)"
            )
        if died.signal is not None:
            return (
                f"the decoder crashed on this file ({signal_name(died.signal)}): "
                "it is damaged or crafted"
            )
        return "the imaging worker exited while decoding this file: it is damaged or crafted"


_SHARED: dict[int, IsolatedImaging] = {}
_SHARED_LOCK = threading.Lock()


def isolated_imaging(workers: int | None = None) -> IsolatedImaging:
    """The process's imaging workers, shared by every pipeline the process
    builds: one pool per Lambda container, however often tests or tools build
    pipelines. As many workers as ``pool_sizing`` says (the CPUs, and on
    Lambda the function's memory), or ``workers``, each with its share of the
    memory (``worker_memory_bytes``). A worker starts when the first source
    needs it, or ahead of it (``IsolatedImaging.start``), so a function that
    never decodes (the removal handler) starts none. Here rather than in
    ``chalicelib.factory``, which imports boto3: a handler can start its
    workers before it imports boto3 and builds its clients."""
    if workers is None:
        workers = pool_sizing().workers
    with _SHARED_LOCK:
        if workers not in _SHARED:
            pool = WorkerPool(workers, worker_memory_bytes(workers))
            atexit.register(pool.close)
            _SHARED[workers] = IsolatedImaging(pool)
        return _SHARED[workers]


@dataclass(frozen=True)
class PoolSizing:
    """How many sources a process works on at once, and each one's memory."""

    workers: int  # imaging workers, and so messages of a batch in flight at once
    memory_bytes: int  # each worker's RLIMIT_DATA
    function_mb: int | None  # the Lambda function's memory; None off Lambda

    @property
    def total_bytes(self) -> int:
        """What all the workers may use together."""
        return self.workers * self.memory_bytes


def pool_sizing(
    environ: Mapping[str, str] | None = None,
    cpus: int | None = None,
    physical_mb: int | None = None,
) -> PoolSizing:
    """The one rule for how many sources a process decodes at once (the
    imaging workers, and so the messages of an SQS batch in flight, and the
    local event pump's concurrent invocations), and each worker's memory.

    On Lambda (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` set, ``M`` MB): one worker
    per whole vCPU, ``M // 1769`` (Lambda gives one vCPU per 1,769 MB, up to
    6), at least 1 and at most the CPUs the process may run on. The workers
    share ``WORKER_MEMORY_SHARE`` (60 %) of ``M``: each gets ``0.6 M /
    workers``. Why whole vCPUs:
      * decoding is CPU-bound: a second worker on half a vCPU would slow both,
        and a file near ``PROCESSING_TIMEOUT`` that passes alone could be
        stopped for the contention (a ``failed`` record where a processed one
        was due);
      * with ``workers <= M / 1769`` each worker has at least ``0.6 x 1769 =
        1,061 MB``, what the only worker of the default 1,769 MB function has:
        concurrency never gives a file less memory than the default function
        would, so it never turns a processed record into a failed one. The
        other 40 % (at least 708 MB per worker) is the handler process's, which
        holds each message in flight's source (up to ``MAX_SOURCE_BYTES``) and
        renditions.
    At 512 MB or 1,769 MB (under two vCPUs): 1 worker with 307 or 1,061 MB, as
    before concurrency; at 3,538 MB: 2 with 1,061 MB each; at 10,240 MB: 5
    with 1,228 MB each.

    Off Lambda (``make dev``, backfill, benchmarks) each worker gets what the
    default function's one worker gets (1,061 MB), so a file fails locally
    exactly when it would there, and there are as many workers as CPUs, as
    long as each has a default function's worth of the machine's memory
    (``physical_mb // 1769``), at most ``MAX_WORKERS``.

    ``cpus`` defaults to ``os.sched_getaffinity`` (the CPUs this process may
    use: a container's or ``taskset``'s limit), else ``os.cpu_count()``.
    """
    environ = os.environ if environ is None else environ
    cpus = available_cpus() if cpus is None else max(1, cpus)
    function_mb = _function_mb(environ)
    if function_mb is None:
        physical = _physical_mb() if physical_mb is None else physical_mb
        workers = max(1, min(cpus, MAX_WORKERS, physical // DEFAULT_FUNCTION_MB))
        return PoolSizing(workers, worker_memory_bytes(workers, environ), None)
    workers = max(1, min(cpus, MAX_WORKERS, function_mb // MB_PER_VCPU))
    return PoolSizing(workers, worker_memory_bytes(workers, environ), function_mb)


def available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _function_mb(environ: Mapping[str, str]) -> int | None:
    try:
        value = int(environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "") or 0)
    except ValueError:
        return None
    return value if value > 0 else None


def _physical_mb() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20
    except (AttributeError, OSError, ValueError):
        return DEFAULT_FUNCTION_MB  # unknown: one worker's worth


def worker_memory_bytes(workers: int = 1, environ: Mapping[str, str] | None = None) -> int:
    """``RLIMIT_DATA`` for each of ``workers`` workers. On Lambda they share
    ``WORKER_MEMORY_SHARE`` of the function's memory (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``)
    equally, so that together they stay inside it; elsewhere each gets what
    the one worker of a ``DEFAULT_FUNCTION_MB`` function gets."""
    environ = os.environ if environ is None else environ
    function_mb = _function_mb(environ)
    if function_mb is None:
        return int(DEFAULT_FUNCTION_MB * WORKER_MEMORY_SHARE) << 20
    return int(function_mb * WORKER_MEMORY_SHARE / max(1, workers)) << 20
