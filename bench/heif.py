"""HEIC through the pipeline against pi-heif's own decode, and the same picture as JPEG.

    .venv/bin/python -m bench.heif [--repeats 5] [--rounds 3] [--quality 60]
                                   [--threads 1,2,4] [--quick] [--out bench/results/heif.md]

Inputs: ``bench.inputs.photo(4000, 3000)`` (12 MP), encoded by pillow-heif
(x265) as one HEVC picture and as a grid of 512x512 tiles (as phones store
12 MP), and by Pillow as a JPEG at quality 90. x265 takes about a minute
for each HEIC, so they are kept in the system's temporary directory, by
their parameters, for the next run.

Variants, each in a fresh subprocess (one untimed run, then ``--repeats``
timed ones), ``--rounds`` subprocesses per job, interleaved so that a
neighbour's load falls on all alike:

- binding: ``pi_heif.open_heif(data).to_pillow()``, the binding's own decode
  into a Pillow image, nothing else;
- pipeline: ``process_image`` with the default renditions (1600, 800 and
  256 px, ``OUTPUT_FORMAT=auto``: JPEG q85), Pillow engine;
- for the JPEG: Pillow's full decode (``Image.open().load()``) and the pipeline.

The HEIC variants run with pi-heif's ``DECODE_THREADS`` at each of
``--threads``, on every core and pinned to one (a Lambda function of up to
1,769 MB has one vCPU). Reported: median wall and CPU ms (all threads), peak
memory above the process's resident size once the input is in memory
(``VmHWM``, reset through ``/proc/self/clear_refs``), the pipeline's ratio to
the binding (the budget is 1.3x), and where the pipeline's time goes.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 4000, 3000
TILE = 512


@dataclass(frozen=True)
class Job:
    variant: str  # "binding" | "pipeline" | "decode"
    input: str  # "heic" | "heic grid" | "jpeg"
    path: str
    threads: int  # pi-heif's DECODE_THREADS; 0 for the JPEG
    cpus: int  # 1: pinned to one core; 0: every core
    repeats: int


@dataclass
class Result:
    wall_ms: list[float]
    cpu_ms: list[float]
    peak_mb: float
    phases: dict[str, float]


# ---------------------------------------------------------------- inputs


def make_inputs(directory: Path, quality: int) -> dict[str, Path]:
    """The three inputs, made once and kept by their parameters."""
    import pillow_heif

    from bench.inputs import jpeg_bytes, photo

    key = hashlib.sha256(
        f"{WIDTH}x{HEIGHT} q{quality} tile{TILE} pillow-heif {pillow_heif.__version__}".encode()
    ).hexdigest()[:12]
    paths = {
        "heic": directory / f"heif-bench-{key}.heic",
        "heic grid": directory / f"heif-bench-{key}-grid.heic",
        "jpeg": directory / f"heif-bench-{WIDTH}x{HEIGHT}.jpg",
    }
    picture: Image.Image | None = None
    for name, path in paths.items():
        if path.exists():
            continue
        if name == "jpeg":
            path.write_bytes(jpeg_bytes(WIDTH, HEIGHT))
            continue
        picture = picture or photo(WIDTH, HEIGHT)
        buffer = io.BytesIO()
        tile_size = TILE if name == "heic grid" else 0
        pillow_heif.from_pillow(picture).save(buffer, quality=quality, tile_size=tile_size)
        path.write_bytes(buffer.getvalue())
    return paths


# ---------------------------------------------------------------- worker


def _status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def _reset_peak() -> None:
    with suppress(OSError):  # then VmHWM still counts from the process's start
        Path("/proc/self/clear_refs").write_text("5")


def _runner(job: Job) -> Callable[[bytes], Any]:
    import pi_heif  # type: ignore[import-untyped]  # no py.typed marker

    from chalicelib.imaging import ImagingOptions, parse_renditions, process_image
    from chalicelib.settings import DEFAULT_RENDITIONS

    if job.threads:
        pi_heif.options.DECODE_THREADS = job.threads  # after decode.py registered its opener
    options = ImagingOptions(parse_renditions(DEFAULT_RENDITIONS))
    if job.variant == "binding":
        return lambda data: pi_heif.open_heif(io.BytesIO(data)).to_pillow()
    if job.variant == "decode":
        return lambda data: Image.open(io.BytesIO(data)).load()
    return lambda data: process_image(data, options)


def phase_times(data: bytes) -> dict[str, float]:
    """Wall ms of the pipeline's steps, once: open and walk, decode, the rest
    of the pixel step (orient, working mode, reduce, resize), encode."""
    from chalicelib.imaging import ImagingOptions, decode, parse_renditions, resize
    from chalicelib.imaging import pipeline as steps
    from chalicelib.imaging.encode import encode
    from chalicelib.settings import DEFAULT_RENDITIONS

    options = ImagingOptions(parse_renditions(DEFAULT_RENDITIONS))
    marks = [time.perf_counter()]
    with decode.decoding(options.max_pixels):
        header = steps.read_header(data, options)
        marks.append(time.perf_counter())
        needed = resize.needed_size(header.targets)
        decode.load(header.image, decode.oriented(needed, header.orientation))
        marks.append(time.perf_counter())
        pixels = steps.pillow_pixels(header)  # the image is loaded: orient, modes, resize
        marks.append(time.perf_counter())
    for image in pixels.images:
        encode(image, "JPEG", options.jpeg_quality, pixels.icc, None)
    marks.append(time.perf_counter())
    names = ("header", "decode", "resize", "encode")
    return {name: (b - a) * 1000 for name, a, b in zip(names, marks, marks[1:], strict=False)}


def worker(job: Job) -> Result:
    if job.cpus:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: job.cpus]))
    data = Path(job.path).read_bytes()
    run = _runner(job)
    run(data)  # untimed: imports, first allocations
    baseline = _status_kb("VmRSS")
    _reset_peak()
    wall, cpu = [], []
    for _ in range(job.repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        run(data)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    peak = (_status_kb("VmHWM") - baseline) / 1024
    phases = phase_times(data) if job.variant == "pipeline" else {}
    return Result(wall, cpu, peak, phases)


def spawn(job: Job) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "bench.heif", "--worker", json.dumps(asdict(job))],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    return Result(**json.loads(done.stdout.splitlines()[-1]))


# ---------------------------------------------------------------- tables


def _merge(results: list[Result]) -> Result:
    phases: dict[str, list[float]] = {}
    for result in results:
        for name, value in result.phases.items():
            phases.setdefault(name, []).append(value)
    return Result(
        [w for r in results for w in r.wall_ms],
        [c for r in results for c in r.cpu_ms],
        max(r.peak_mb for r in results),
        {name: statistics.median(values) for name, values in phases.items()},
    )


def machine_line() -> str:
    import pi_heif

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown CPU",
    )
    return (
        f"Machine: {model}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"Pillow {Image.__version__}, pi-heif {pi_heif.__version__} (libheif "
        f"{pi_heif.libheif_version()}, {pi_heif.libheif_info()['decoders'].get('libde265', '?')});"
        f" load average at start {os.getloadavg()[0]:.2f}; run {datetime.date.today().isoformat()}."
    )


def report(
    results: dict[Job, Result], paths: dict[str, Path], threads: list[int], quality: int
) -> list[str]:
    def get(variant: str, name: str, thread: int, cpus: int) -> Result:
        return next(
            r
            for j, r in results.items()
            if (j.variant, j.input, j.threads, j.cpus) == (variant, name, thread, cpus)
        )

    med = statistics.median
    sizes = ", ".join(f"{name} {paths[name].stat().st_size / 1e6:.2f} MB" for name in paths)
    lines = [
        machine_line(),
        "",
        f"Inputs: `bench.inputs.photo(4000, 3000)`; HEIC by pillow-heif at quality {quality} "
        f"(one picture; a grid of 48 tiles of {TILE}x{TILE}), JPEG at quality 90: {sizes}.",
        "",
        "### HEIC: the pipeline against the binding's own decode",
        "",
        "Default renditions (1600, 800, 256 px, JPEG q85). Median wall and CPU ms; ratio "
        "pipeline / binding (budget: 1.3x); peak memory above the resident size with the "
        "input loaded, MB.",
        "",
        "| input | cores | DECODE_THREADS | binding ms | pipeline ms | ratio | binding CPU ms "
        "| pipeline CPU ms | CPU ratio | binding MB | pipeline MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("heic", "heic grid"):
        for cpus in (0, 1):
            for thread in threads:
                b, p = get("binding", name, thread, cpus), get("pipeline", name, thread, cpus)
                bw, pw, bc, pc = med(b.wall_ms), med(p.wall_ms), med(b.cpu_ms), med(p.cpu_ms)
                lines.append(
                    f"| {name} | {cpus or os.cpu_count()} | {thread} | {bw:.0f} | {pw:.0f} "
                    f"| {pw / bw:.2f}x | {bc:.0f} | {pc:.0f} | {pc / bc:.2f}x "
                    f"| {b.peak_mb:.0f} | {p.peak_mb:.0f} |"
                )
    lines += [
        "",
        "### Where the pipeline's time goes (wall ms, median of one run per round)",
        "",
        "| input | cores | DECODE_THREADS | open + walk | decode | orient + resize | encode |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("heic", "heic grid"):
        for cpus in (0, 1):
            for thread in threads:
                phases = get("pipeline", name, thread, cpus).phases
                cells = " | ".join(
                    f"{phases[k]:.0f}" for k in ("header", "decode", "resize", "encode")
                )
                lines.append(f"| {name} | {cpus or os.cpu_count()} | {thread} | {cells} |")
    lines += [
        "",
        "### The same picture as JPEG (q90)",
        "",
        "| cores | Pillow decode ms | pipeline ms | pipeline CPU ms | pipeline MB |",
        "|---|---|---|---|---|",
    ]
    for cpus in (0, 1):
        d, p = get("decode", "jpeg", 0, cpus), get("pipeline", "jpeg", 0, cpus)
        lines.append(
            f"| {cpus or os.cpu_count()} | {med(d.wall_ms):.0f} | {med(p.wall_ms):.0f} "
            f"| {med(p.cpu_ms):.0f} | {p.peak_mb:.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.heif")
    parser.add_argument("--worker")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quality", type=int, default=60)
    parser.add_argument("--threads", default="1,2,4")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 1 round, threads 2")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asdict(worker(Job(**json.loads(args.worker))))))
        return
    if args.quick:
        args.repeats, args.rounds, args.threads = 1, 1, "2"
    threads = [int(t) for t in args.threads.split(",")]
    started = time.monotonic()
    paths = make_inputs(Path(tempfile.gettempdir()), args.quality)
    print(f"inputs ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
    jobs = [
        Job(variant, name, str(paths[name]), thread, cpus, args.repeats)
        for name in ("heic", "heic grid")
        for cpus in (0, 1)
        for thread in threads
        for variant in ("binding", "pipeline")
    ]
    jobs += [
        Job(variant, "jpeg", str(paths["jpeg"]), 0, cpus, args.repeats)
        for cpus in (0, 1)
        for variant in ("decode", "pipeline")
    ]
    runs: dict[Job, list[Result]] = {job: [] for job in jobs}
    for round_ in range(args.rounds):
        for n, job in enumerate(jobs):
            print(f"round {round_ + 1}/{args.rounds}, job {n + 1}/{len(jobs)}", file=sys.stderr)
            runs[job].append(spawn(job))
    results = {job: _merge(found) for job, found in runs.items()}
    text = "\n".join(report(results, paths, threads, args.quality)) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
