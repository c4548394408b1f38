"""Hostile inputs: what each class of small, crafted file costs, before and after
the bounds.

Each file (made by ``tests/hostile_files.py`` at the size that was measured
against the pipeline) is run in a fresh subprocess, so that its wall time and
peak memory are its own:
  * before: ``process_image`` of the code at ``--before REV`` (a ``git
    archive`` of it in a scratch directory), in-process as the handler ran it
    then, stopped after ``--timeout`` seconds;
  * after, in-process: this code's ``process_image`` (the structural caps);
  * after, bounded: what the handler now does, through an imaging worker
    process with its memory limit and ``PROCESSING_TIMEOUT`` (default 20 s).
Peak memory is the process's own peak resident set (``VmHWM``; for the
bounded run, the worker's); times include the interpreter's start and imports
(about 0.2 s), but for the bounded run, which is the call alone. The metadata rows also give the
record's ``metadata`` in bytes of JSON.

    .venv/bin/python -m bench.hostile --before d2b4f65 [--timeout 60] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests import hostile_files as hostile

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], bytes]
    engine: str = "pillow"


CASES = [
    Case("progressive JPEG, one tiny scan x 10,000",
         lambda: hostile.progressive_jpeg_repeated_scan(10_000)),
    Case("progressive JPEG, one tiny scan x 1,000",
         lambda: hostile.progressive_jpeg_repeated_scan(1_000)),
    Case("TIFF, 40,000 1x1 pages", lambda: hostile.tiff_pages(40_000)),
    Case("TIFF, 300,000 1x1 pages", lambda: hostile.tiff_pages(300_000)),
    Case("BMP RLE8, 7071x7071", lambda: hostile.bmp_rle8(7071, 7071)),
    Case("GIF, 2,000,000 1x1 frames", lambda: hostile.gif_frames(2_000_000)),
    Case("PNG, 3,000,000 empty private chunks",
         lambda: hostile.png_private_chunks(3_000_000)),
    Case("PNG 1x49,000,000, IMAGE_ENGINE=vips", lambda: hostile.png_size(1, 49_000_000), "vips"),
    Case("PNG, EXIF Make of 300 KB", lambda: hostile.png_with_exif_make(300_000)),
    Case("PNG, EXIF Make of 2 MB", lambda: hostile.png_with_exif_make(2_000_000)),
    Case("PNG, EXIF Make of 7 MB", lambda: hostile.png_with_exif_make(7_000_000)),
]  # fmt: skip

# Run in the subprocess: the file on stdin, a JSON line on stdout.
IN_PROCESS = """
import json, sys
from chalicelib.imaging import ImageRejected, ImagingOptions, parse_renditions, process_image
data = sys.stdin.buffer.read()
options = ImagingOptions(parse_renditions("thumb=256x256,medium=800x800,large=1600x1600"),
                         engine=sys.argv[1])
try:
    image = process_image(data, options)
    meta = len(json.dumps(image.metadata, ensure_ascii=False).encode())
    answer = {"outcome": "processed", "metadata_bytes": meta}
except ImageRejected as exc:
    answer = {"outcome": "failed", "detail": str(exc)}
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps(answer | {"hwm_kb": hwm}))
"""
BOUNDED = """
import json, sys, time
from chalicelib.imaging import ImageRejected, ImagingOptions, parse_renditions
from chalicelib.sandbox import IsolatedImaging, WorkerPool, time_budget, worker_memory_bytes
data = sys.stdin.buffer.read()
options = ImagingOptions(parse_renditions("thumb=256x256,medium=800x800,large=1600x1600"),
                         engine=sys.argv[1])
pool = WorkerPool(1, worker_memory_bytes()).start()
imaging = IsolatedImaging(pool)
from tests.support import png
imaging.metadata(png(1, 1), 10, time_budget(20, None))  # the worker is up: time the file alone
start = time.perf_counter()
try:
    image = imaging.process(data, options, time_budget(20, None))
    meta = len(json.dumps(image.metadata, ensure_ascii=False).encode())
    answer = {"outcome": "processed", "metadata_bytes": meta}
except ImageRejected as exc:
    answer = {"outcome": "failed", "detail": str(exc)}
answer["ms"] = (time.perf_counter() - start) * 1000
hwm = 0
for worker in pool._idle:
    for line in open(f"/proc/{worker.pid}/status"):
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) // 1024
answer["worker_mb"] = hwm
pool.close()
print(json.dumps(answer))
"""


@dataclass
class Run:
    seconds: float
    peak_mb: float
    answer: dict[str, object]


def measure(code: str, tree: Path, data: bytes, engine: str, timeout: float) -> Run:
    env = os.environ | {"PYTHONPATH": str(tree)}
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout:
        stdin.write(data)
        stdin.seek(0)
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", code, engine], cwd=tree, stdin=stdin, stdout=stdout, env=env
        )
        deadline = start + timeout
        peak = 0
        while True:
            peak = max(peak, _hwm_kb(proc.pid))
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                return Run(float("inf"), peak / 1024, {"outcome": "timeout"})
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        stdout.seek(0)
        text = stdout.read().decode().strip().splitlines()
    answer = json.loads(text[-1]) if text else {"outcome": f"crashed (status {status})"}
    peak = max(peak, int(str(answer.get("hwm_kb", 0))))
    return Run(elapsed, peak / 1024, answer)


def _hwm_kb(pid: int) -> int:
    """The process's peak resident memory so far (``VmHWM``), in KiB: its own,
    unlike ``ru_maxrss``, which also counts what the parent had at the fork."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def checkout(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", rev, "chalicelib"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="the revision to compare with (e.g. d2b4f65)")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.only or args.only.lower() in c.name.lower()]
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs; before: {args.before}; "
          f"timeout {args.timeout:g} s; PROCESSING_TIMEOUT=20")  # fmt: skip
    print(
        "| file | bytes | before: s, peak MB | after in-process: s, peak MB | "
        "after, bounded (handler): s, worker peak MB | outcome now |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        before_tree = checkout(args.before, Path(scratch)) if args.before else None
        for case in cases:
            data = case.make()
            cells = [case.name, f"{len(data):,}"]
            if before_tree is not None:
                before = measure(IN_PROCESS, before_tree, data, case.engine, args.timeout)
                cells.append(_cell(before.seconds, before.peak_mb, before.answer, args.timeout))
            else:
                cells.append("-")
            after = measure(IN_PROCESS, ROOT, data, case.engine, args.timeout)
            cells.append(_cell(after.seconds, after.peak_mb, after.answer, args.timeout))
            bounded = measure(BOUNDED, ROOT, data, case.engine, args.timeout + 30)
            answer = bounded.answer
            ms = float(str(answer.get("ms", "nan")))
            cells.append(f"{ms / 1000:.2f} s, {answer.get('worker_mb', '?')} MB")
            cells.append(_outcome(answer))
            print("| " + " | ".join(cells) + " |", flush=True)


def _cell(seconds: float, peak_mb: float, answer: dict[str, object], timeout: float) -> str:
    if answer.get("outcome") == "timeout":
        return f"> {timeout:g} s (stopped), {peak_mb:.0f} MB"
    extra = ""
    if "metadata_bytes" in answer:
        extra = f", metadata {int(str(answer['metadata_bytes'])):,} B"
    return f"{seconds:.2f} s, {peak_mb:.0f} MB{extra}"


def _outcome(answer: dict[str, object]) -> str:
    if answer.get("outcome") == "failed":
        return f"failed: {str(answer.get('detail'))[:110]}"
    if "metadata_bytes" in answer:
        return f"processed, metadata {int(str(answer['metadata_bytes'])):,} B"
    return str(answer.get("outcome"))


if __name__ == "__main__":
    main()
