"""What each event tells the operator: one JSON log line with its outcome,
timings and request id, which is also a CloudWatch Embedded Metric Format
record (CloudWatch turns it into metrics; no API calls are made)."""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import time
from collections.abc import Iterable, Iterator
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
        self.size: tuple[int, int] | None = None
        self.engine: str | None = None
        self.renditions: tuple[str, ...] = ()

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
        watch.size = (width, height)
        watch.engine = engine


def made(renditions: Iterable[str]) -> None:
    """The renditions the current event wrote, by name."""
    watch = _watch.get(None)
    if watch is not None:
        watch.renditions = tuple(renditions)


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
    if watch.size is not None:
        line["size"] = f"{watch.size[0]}x{watch.size[1]}"
    if watch.renditions:
        line["renditions"] = list(watch.renditions)
    if watch.engine:
        line["engine"] = watch.engine
    if watch.detail:
        line["detail"] = watch.detail
    return line


# A terminal line's longest key and reason, in characters: an S3 key may be
# 1,024 bytes and a reason 1,000 characters; a line stays readable.
_HUMAN_KEY_CHARS = 120
_HUMAN_DETAIL_CHARS = 200


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _visible(text: str) -> str:
    """``text`` with control characters (escape sequences, newlines) as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def human_line(line: dict[str, Any]) -> str:
    """The short line a person reads in a terminal for an ``outcome_line``:

    ``processed photos/cat.jpg 4000x3000 -> thumb, medium, large (112 ms)``,
    ``deleted photos/cat.jpg (9 ms)``, ``failed photos/x.jpg: reason (3 ms)``.
    Control characters in the key (a key may hold any UTF-8) are escaped, so a
    key cannot rewrite the terminal.
    """
    key = _visible(_clip(line["key"], _HUMAN_KEY_CHARS))
    parts = [str(line["outcome"]), key]
    if line["outcome"] == "processed" and "size" in line:
        parts.append(line["size"])
        if line.get("renditions"):
            parts.append("-> " + ", ".join(line["renditions"]))
    text = " ".join(parts)
    if line.get("detail") and line["outcome"] != "processed":
        text += ": " + _visible(_clip(str(line["detail"]), _HUMAN_DETAIL_CHARS))
    total = line.get("ms", {}).get("total")
    if total is not None:
        text += f" ({total:.0f} ms)"
    return text
