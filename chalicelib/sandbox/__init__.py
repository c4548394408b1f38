"""Imaging with every source bounded in time and memory.

``IsolatedImaging`` runs ``process_image`` and ``read_metadata`` in worker
processes (``pool.py``) and turns an overrun into ``ImageRejected`` with a
reason a person can act on, so the file ends as a ``failed`` record and the
function never runs out its timeout or memory because of one file.
``InProcessImaging`` is the same interface without the bound, for unit tests
and tools that handle trusted files.
"""

from __future__ import annotations

import os
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
    "WorkerLost",
    "WorkerPool",
    "source_seconds",
    "time_budget",
    "worker_memory_bytes",
]

Metadata = tuple[str, int, int, dict[str, Any]]

# Memory a worker may use (RLIMIT_DATA), as a share of the function's memory:
# the rest is the handler process (Python, boto3, the source's bytes and the
# renditions it writes) and the worker's code, which RLIMIT_DATA does not count.
WORKER_MEMORY_SHARE = 0.6
# Time kept back from an invocation's remaining time for what follows the
# imaging of a source (writing renditions, the record, the notification, with
# their retries), and the least time a source is given all the same.
RECORD_MARGIN = 5.0
MIN_BUDGET = 1.0
# Time kept for reading a source before its imaging (up to MAX_SOURCE_BYTES,
# with the client's retries).
READ_MARGIN = 5.0
# The function size assumed where none is given (locally): the event handlers'.
DEFAULT_FUNCTION_MB = 1769


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


def worker_memory_bytes(workers: int = 1, environ: Mapping[str, str] | None = None) -> int:
    """``RLIMIT_DATA`` for each of ``workers`` workers, from the function's memory
    (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` on Lambda)."""
    environ = os.environ if environ is None else environ
    try:
        function_mb = int(environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "") or DEFAULT_FUNCTION_MB)
    except ValueError:
        function_mb = DEFAULT_FUNCTION_MB
    return int(function_mb * WORKER_MEMORY_SHARE / max(1, workers)) << 20
