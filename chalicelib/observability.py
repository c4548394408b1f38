"""What each event tells the operator: one JSON log line with its outcome,
timings and request id, which is also a CloudWatch Embedded Metric Format
record (CloudWatch turns it into metrics; no API calls are made)."""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from collections.abc import Iterator
from typing import Any

from chalicelib.models import ObjectEvent

NAMESPACE = "image-pipeline"
# Metric name -> unit. Counts are 1 or 0 per event; sums over time are rates.
METRICS = {
    "Processed": "Count",
    "Failed": "Count",
    "Ignored": "Count",
    "ProcessingMilliseconds": "Milliseconds",
    "SourceMegapixels": "None",
}
_COUNTED = {"processed": "Processed", "failed": "Failed", "ignored": "Ignored"}

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class Stopwatch:
    """Milliseconds per phase of one event (get, process, put, record, total),
    why it ended as it did, and the size of its source image."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self.detail: str | None = None
        self.megapixels: float | None = None
        self.engine: str | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = (time.perf_counter() - start) * 1000
            self.ms[name] = round(self.ms.get(name, 0.0) + elapsed, 2)


# The current event's stopwatch; a context variable keeps the threads of a
# backfill's worker pool apart.
_watch: contextvars.ContextVar[Stopwatch] = contextvars.ContextVar("watch")


@contextlib.contextmanager
def watching() -> Iterator[Stopwatch]:
    """Time one event; its total is recorded when the block ends."""
    watch = Stopwatch()
    token = _watch.set(watch)
    start = time.perf_counter()
    try:
        yield watch
    finally:
        _watch.reset(token)
        watch.ms["total"] = round((time.perf_counter() - start) * 1000, 2)


def phase(name: str) -> contextlib.AbstractContextManager[None]:
    watch = _watch.get(None)
    return watch.phase(name) if watch is not None else contextlib.nullcontext()


def note(detail: str) -> None:
    """Say why the current event ends as it does (goes into its log line)."""
    watch = _watch.get(None)
    if watch is not None:
        watch.detail = detail


def measure_source(width: int, height: int, engine: str) -> None:
    """The source's size, and the imaging engine that made its renditions."""
    watch = _watch.get(None)
    if watch is not None:
        watch.megapixels = round(width * height / 1e6, 3)
        watch.engine = engine


def outcome_line(event: ObjectEvent, outcome: str, watch: Stopwatch) -> dict[str, Any]:
    """The log line of one event, readable as-is and valid EMF."""
    metrics: dict[str, float] = {name: 0 for name in ("Processed", "Failed", "Ignored")}
    if outcome in _COUNTED:
        metrics[_COUNTED[outcome]] = 1
    if "process" in watch.ms:
        metrics["ProcessingMilliseconds"] = watch.ms["process"]
    if watch.megapixels is not None:
        metrics["SourceMegapixels"] = watch.megapixels
    line: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": [{"Name": n, "Unit": METRICS[n]} for n in metrics],
                }
            ],
        },
        "Function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local"),
        **metrics,
        "key": event.key,
        "bucket": event.bucket,
        "event": event.event_name,
        "outcome": outcome,
        "request_id": request_id.get(),
        "ms": watch.ms,
    }
    if watch.engine:
        line["engine"] = watch.engine
    if watch.detail:
        line["detail"] = watch.detail
    return line
