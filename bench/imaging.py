"""The imaging path against naive Pillow, thumbnail(), pyvips and a decode+encode floor.

    .venv/bin/python -m bench.imaging [--repeats 5] [--rounds 4] [--duel-rounds 12]
                                      [--tuning-rounds 2] [--quick] [--no-tuning]
                                      [--only-phases]

Inputs are generated (``bench.inputs``): photographic JPEGs of 3, 12, 24 and
48 MP at quality 90 with EXIF, and a 12 MP PNG. Every (variant, input) runs in
a fresh subprocess: one untimed run, then ``--repeats`` timed ones; ``--rounds``
such subprocesses per pair, interleaved, so that a neighbour's load on a shared
machine falls on every variant alike. Times are medians over all timed runs;
peak memory is ``VmHWM`` from ``/proc/self/status`` (reset through
``/proc/self/clear_refs`` once the input is in memory) minus the resident size
at that moment: what processing adds to the process.

Variants, all producing the same renditions from the same bytes:

- naive: decode at full size, ``resize`` (Lanczos) each rendition from it;
- thumbnail: ``Image.open`` + ``thumbnail()`` per rendition (draft, bicubic);
- vips buffer: ``pyvips.Image.thumbnail_buffer`` per rendition;
- vips once: one ``new_from_buffer(access="sequential")`` with JPEG
  shrink-on-load, then ``thumbnail_image`` largest first, each from the last;
- floor: JPEG draft decode as the project does it, then encoding the outputs
  (crops of the renditions' sizes): no resampling at all;
- decode: Pillow's own full decode, nothing else;
- project: ``chalicelib.imaging.process_image`` with ``IMAGE_ENGINE=pillow``;
- project vips: the same with ``IMAGE_ENGINE=vips``.

SSIM compares the 800 px rendition's pixels before encoding with a reference:
full decode, one Lanczos resize straight to 800 px. ``numpy`` (for SSIM,
``bench/requirements.txt``) and ``pyvips`` (``pip install pyvips-binary
pyvips``) are optional; without them those columns are left out or "-".
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, features

from bench.inputs import SIZES, jpeg_bytes, png_bytes
from chalicelib.imaging import ImagingOptions, decode, encode, parse_renditions, resize
from chalicelib.imaging import pipeline as imaging_pipeline
from chalicelib.imaging.formats import output_format
from chalicelib.settings import DEFAULT_RENDITIONS

TABLE_RENDITIONS = "large=1600x1600,medium=800x800,small=200x200"
QUALITY = 85
PNG_LEVEL = encode.PNG_COMPRESS_LEVEL
LANCZOS = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class Job:
    """One (variant, input) measurement, as handed to a worker subprocess."""

    variant: str
    path: str
    renditions: str
    format: str  # "JPEG" or "PNG": what every variant writes
    repeats: int
    ssim: bool = False
    knobs: dict[str, Any] = field(default_factory=dict)


Runner = Callable[[bytes, "Job"], list[bytes]]


@dataclass
class Result:
    ms: list[float]
    cpu_ms: list[float]
    peak_mb: float
    out_bytes: int
    ssim: float | None = None


def _optional(name: str) -> Any:
    """A module that may not be installed (numpy, pyvips), or None."""
    try:
        return importlib.import_module(name)
    except Exception:  # pyvips raises OSError when libvips itself is missing
        return None


# ---------------------------------------------------------------- variants


def _boxes(job: Job) -> list[tuple[int, int]]:
    return [(s.geometry.width, s.geometry.height) for s in parse_renditions(job.renditions)]


def _fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    scale = min(box[0] / size[0], box[1] / size[1], 1.0)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _save(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        img.save(buffer, "JPEG", quality=QUALITY)
    else:
        img.save(buffer, "PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def naive_images(data: bytes, job: Job) -> Iterator[Image.Image]:
    img = _open(data)
    img.load()
    for box in _boxes(job):
        yield img.resize(_fit(img.size, box), LANCZOS)


def thumbnail_images(data: bytes, job: Job) -> Iterator[Image.Image]:
    for box in _boxes(job):
        img = _open(data)
        img.thumbnail(box)
        yield img


def floor_images(data: bytes, job: Job) -> Iterator[Image.Image]:
    img = _open(data)
    sizes = [_fit(img.size, box) for box in _boxes(job)]
    decode.load(img, resize.needed_size([resize.Target(s, None, True) for s in sizes]))
    for size in sizes:
        yield img.crop((0, 0, *size))


def project_images(data: bytes, job: Job) -> Iterator[Image.Image]:
    yield from imaging_pipeline.rendition_images(data, _options(job))


def _options(job: Job) -> ImagingOptions:
    engine = "vips" if job.variant == "project vips" else "pillow"
    return ImagingOptions(
        parse_renditions(job.renditions), job.format.lower(), QUALITY, engine=engine
    )


def run_pillow(images: Callable[[bytes, Job], Iterator[Image.Image]]) -> Runner:
    def run(data: bytes, job: Job) -> list[bytes]:
        return [_save(img, job.format) for img in images(data, job)]

    return run


def run_project(data: bytes, job: Job) -> list[bytes]:
    return [r.data for r in imaging_pipeline.process_image(data, _options(job)).renditions]


def run_decode(data: bytes, job: Job) -> list[bytes]:
    _open(data).load()
    return []


def _vips() -> Any:
    vips = _optional("pyvips")
    if vips is None:
        raise RuntimeError("pyvips is not installed")
    vips.cache_set_max(0)  # no result cache: every repeat does the work
    return vips


def _vips_save(vips_image: Any, fmt: str) -> bytes:
    if fmt == "JPEG":
        return bytes(vips_image.jpegsave_buffer(Q=QUALITY, keep="icc"))
    return bytes(vips_image.pngsave_buffer(compression=PNG_LEVEL, keep="icc"))


def vips_buffer_images(data: bytes, job: Job) -> Iterator[Any]:
    vips = _vips()
    for width, height in _boxes(job):
        yield vips.Image.thumbnail_buffer(data, width, height=height, size="down")


def vips_once_images(data: bytes, job: Job) -> Iterator[Any]:
    vips = _vips()
    head = vips.Image.new_from_buffer(data, "")
    options: dict[str, Any] = {"access": "sequential"}
    boxes = _boxes(job)
    if head.get("vips-loader").startswith("jpegload"):  # shrink-on-load, as the draft
        sizes = [_fit((head.width, head.height), box) for box in boxes]
        need_w, need_h = max(w for w, _ in sizes), max(h for _, h in sizes)
        options["shrink"] = next(
            s
            for s in (8, 4, 2, 1)
            if s == 1 or (-(-head.width // s) >= need_w and -(-head.height // s) >= need_h)
        )
    source = vips.Image.new_from_buffer(data, "", **options).copy_memory()
    made: dict[int, Any] = {}
    for i in sorted(range(len(boxes)), key=lambda i: -boxes[i][0] * boxes[i][1]):
        width, height = boxes[i]  # largest first, each from the one before
        source = made[i] = source.thumbnail_image(width, height=height, size="down").copy_memory()
    yield from (made[i] for i in range(len(boxes)))


def run_vips(images: Callable[[bytes, Job], Iterator[Any]]) -> Runner:
    def run(data: bytes, job: Job) -> list[bytes]:
        return [_vips_save(img, job.format) for img in images(data, job)]

    return run


VARIANTS: dict[str, tuple[Runner, Callable[[bytes, Job], Iterator[Any]] | None]] = {
    "naive": (run_pillow(naive_images), None),  # naive *is* the SSIM reference
    "thumbnail": (run_pillow(thumbnail_images), thumbnail_images),
    "vips buffer": (run_vips(vips_buffer_images), vips_buffer_images),
    "vips once": (run_vips(vips_once_images), vips_once_images),
    "floor": (run_pillow(floor_images), None),
    "decode": (run_decode, None),
    "project": (run_project, project_images),
    "project vips": (run_project, project_images),
}
VIPS_VARIANTS = ("vips buffer", "vips once")  # the pyvips baselines
ENGINES = {"project": "pillow", "project vips": "vips"}


# ---------------------------------------------------------------- worker


def _status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def _reset_peak() -> None:
    with suppress(OSError):  # then VmHWM still counts from process start
        Path("/proc/self/clear_refs").write_text("5")


class _Inline:
    """An executor that runs each task at once, on the caller's thread."""

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def apply_knobs(knobs: dict[str, Any]) -> None:
    """Alternatives to the project's choices, for the tuning table."""
    if knobs.get("threads") is False:
        setattr(resize, "_pool", _Inline)  # noqa: B010  (replaces a cached function)
    if "filter" in knobs:
        resize.FILTER = Image.Resampling[knobs["filter"]]
    if "stripes" in knobs:
        resize.STRIPES = knobs["stripes"]
    if "base_gap" in knobs:
        resize.BASE_REDUCING_GAP = knobs["base_gap"]
    if "jpeg" in knobs:
        encode.JPEG_PARAMS.update(knobs["jpeg"])
    if "decoders" in knobs:  # the vips engine: which library decodes which format
        from chalicelib.imaging import vips

        vips.DECODERS.update(knobs["decoders"])
    if "keep_buffers" in knobs:
        from chalicelib.imaging import vips

        vips.KEEP_BUFFERS = knobs["keep_buffers"]
    if "stream" in knobs:
        from chalicelib.imaging import vips

        vips.STREAM = knobs["stream"]
    if "png_level" in knobs:
        encode.PNG_COMPRESS_LEVEL = knobs["png_level"]
    if "draft" in knobs:
        load, factor = decode.load, knobs["draft"]

        def drafted(img: Image.Image, needed: tuple[int, int]) -> None:
            if factor == 0:
                img.load()  # no draft: full-size decode
            else:
                load(img, (needed[0] * factor, needed[1] * factor))

        setattr(decode, "load", drafted)  # noqa: B010


def worker(job: Job) -> Result:
    run, pixels = VARIANTS[job.variant]
    apply_knobs(job.knobs)
    data = Path(job.path).read_bytes()
    if job.variant in (*VIPS_VARIANTS, "project vips"):
        _vips()
    baseline = _status_kb("VmRSS")
    _reset_peak()
    out = run(data, job)  # untimed: first-call costs (plugins, threads, libvips)
    ms: list[float] = []
    cpu_ms: list[float] = []
    for _ in range(job.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        out = run(data, job)
        ms.append((time.perf_counter() - wall) * 1000)
        cpu_ms.append((time.process_time() - cpu) * 1000)
    peak_mb = (_status_kb("VmHWM") - baseline) / 1024
    score = medium_ssim(data, job, pixels) if job.ssim and pixels else None
    return Result(ms, cpu_ms, peak_mb, sum(map(len, out)), score)


# ---------------------------------------------------------------- SSIM


def medium_ssim(
    data: bytes, job: Job, pixels: Callable[[bytes, Job], Iterator[Any]]
) -> float | None:
    """SSIM of the 800 px rendition against full decode + one Lanczos resize."""
    np = _optional("numpy")
    if np is None:
        return None
    names = [spec.name for spec in parse_renditions(job.renditions)]
    index = names.index("medium")
    made = list(pixels(data, job))[index]
    if not isinstance(made, Image.Image):  # a pyvips image
        made = Image.frombytes("RGB", (made.width, made.height), made.write_to_memory())
    full = _open(data).convert("RGB")
    reference = full.resize(_fit(full.size, _boxes(job)[index]), LANCZOS)
    if made.size != reference.size:
        return None
    return ssim(np, reference, made.convert("RGB"))


def ssim(np: Any, a: Image.Image, b: Image.Image) -> float:
    """Mean SSIM over R, G and B (Wang et al. 2004: 11x11 Gaussian, sigma 1.5)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    taps = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()

    def blur(v: Any) -> Any:  # separable, "valid" region only
        rows = v.shape[0] - 10
        v = sum(taps[k] * v[k : k + rows] for k in range(11))
        cols = v.shape[1] - 10
        return sum(taps[k] * v[:, k : k + cols] for k in range(11))

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


# ---------------------------------------------------------------- driver


@dataclass(frozen=True)
class Source:
    name: str  # "12 MP JPEG"
    path: str
    format: str  # "JPEG" | "PNG"


def make_inputs(directory: Path, quick: bool) -> list[Source]:
    jpegs = ["3mp", "12mp"] if quick else ["3mp", "12mp", "24mp", "48mp"]
    sources = []
    for name in jpegs:
        path = directory / f"{name}.jpg"
        path.write_bytes(jpeg_bytes(*SIZES[name]))
        sources.append(Source(f"{name[:-2]} MP JPEG", str(path), "JPEG"))
    path = directory / "12mp.png"
    path.write_bytes(png_bytes(*SIZES["12mp"]))
    sources.append(Source("12 MP PNG", str(path), "PNG"))
    return sources


def spawn(job: Job) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.imaging", "--worker", json.dumps(asdict(job))],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{job.variant} on {job.path} failed:\n{proc.stderr}")
    return Result(**json.loads(proc.stdout))


def measure(
    jobs: list[Job], rounds: int, progress: Callable[[str], None]
) -> dict[tuple[str, str, str], Result]:
    """Results per (variant, path, knobs) over ``rounds`` interleaved subprocesses."""
    merged: dict[tuple[str, str, str], Result] = {}
    for round_no in range(rounds):
        for job in jobs:
            if round_no and job.ssim:
                job = Job(**{**asdict(job), "ssim": False})
            key = (job.variant, job.path, json.dumps(job.knobs, sort_keys=True))
            progress(f"round {round_no + 1}/{rounds}: {job.variant} {Path(job.path).name}")
            result = spawn(job)
            if key not in merged:
                merged[key] = result
                continue
            seen = merged[key]
            seen.ms += result.ms
            seen.cpu_ms += result.cpu_ms
            seen.peak_mb = max(seen.peak_mb, result.peak_mb)
    return merged


def _ms(result: Result | None) -> float | None:
    return statistics.median(result.ms) if result else None


def _cell(value: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def _cpu(result: Result | None) -> float | None:
    return statistics.median(result.cpu_ms) if result else None


def comparison_table(
    title: str,
    sources: list[Source],
    variants: list[str],
    results: dict[tuple[str, str, str], Result],
    with_ssim: bool = True,
) -> list[str]:
    def get(variant: str, source: Source) -> Result | None:
        return results.get((variant, source.path, "{}"))

    def best_vips(source: Source, measure: Callable[[Result | None], float | None]) -> Any:
        times = [m for v in VIPS_VARIANTS if (m := measure(get(v, source))) is not None]
        return min(times) if times else None

    def ratio_to(
        variant: str, baseline: Callable[[Source], float | None], cpu: bool = False
    ) -> Callable[[Source], str]:
        measure = _cpu if cpu else _ms
        return lambda s: _ratio(measure(get(variant, s)), baseline(s))

    lines = [f"### {title}", "", "Wall time, median ms:", ""]
    ratios: list[tuple[str, Callable[[Source], str]]] = []
    for variant in (v for v in ENGINES if v in variants):
        engine = ENGINES[variant]
        if "naive" in variants:
            naive = ratio_to(variant, lambda s: _ms(get("naive", s)))
            ratios.append((f"{engine} / naive", naive))
        ratios += [
            (f"{engine} / best pyvips", ratio_to(variant, lambda s: best_vips(s, _ms))),
            (f"{engine} / floor", ratio_to(variant, lambda s: _ms(get("floor", s)))),
            (
                f"CPU: {engine} / best pyvips",
                ratio_to(variant, lambda s: best_vips(s, _cpu), cpu=True),
            ),
        ]
    head = " | ".join([*variants, *(name for name, _ in ratios)])
    lines += [f"| input | {head} |", "|---" * (len(variants) + len(ratios) + 1) + "|"]
    for source in sources:
        cells = [_cell(_ms(get(v, source))) for v in variants]
        cells += [ratio(source) for _, ratio in ratios]
        lines.append(f"| {source.name} | {' | '.join(cells)} |")
    lines += ["", "Peak memory above the process baseline, MB (VmHWM):", ""]
    lines += [f"| input | {' | '.join(variants)} |", "|---" * (len(variants) + 1) + "|"]
    for source in sources:
        cells = [_cell(r.peak_mb if (r := get(v, source)) else None) for v in variants]
        lines.append(f"| {source.name} | {' | '.join(cells)} |")
    lines += ["", "CPU time (all threads), median ms:", ""]
    lines += [f"| input | {' | '.join(variants)} |", "|---" * (len(variants) + 1) + "|"]
    for source in sources:
        cells = [_cell(_cpu(get(v, source))) for v in variants]
        lines.append(f"| {source.name} | {' | '.join(cells)} |")
    if not with_ssim:
        return [*lines, ""]
    scored = [v for v in variants if VARIANTS[v][1] is not None]
    title = "SSIM of the 800 px rendition (pixels before encoding) against full decode"
    lines += ["", f"{title} + one Lanczos resize:", ""]
    lines += [f"| input | {' | '.join(scored)} |", "|---" * (len(scored) + 1) + "|"]
    for source in sources:
        cells = [_cell(r.ssim if (r := get(v, source)) else None, "{:.4f}") for v in scored]
        lines.append(f"| {source.name} | {' | '.join(cells)} |")
    return [*lines, ""]


TUNING: list[tuple[str, dict[str, Any]]] = [
    ("Pillow engine as shipped", {}),
    ("as before: one thread, no base reduce()", {"threads": False, "base_gap": 1e9}),
    ("one thread: no bands", {"threads": False}),
    ("4 bands instead of 2", {"stripes": 4}),
    ("no draft (full decode; the base reduce() then halves it)", {"draft": 0}),
    ("no draft, no base reduce(): full-size Lanczos", {"draft": 0, "base_gap": 1e9}),
    ("draft at 2x the largest rendition, no base reduce()", {"draft": 2, "base_gap": 1e9}),
    ("no base reduce() (changes PNG only)", {"base_gap": 1e9}),
    ("base reduce() leaving 2x (Pillow thumbnail's gap)", {"base_gap": 2.0}),
    ("BICUBIC instead of LANCZOS", {"filter": "BICUBIC"}),
    ("JPEG optimize=True", {"jpeg": {"optimize": True}}),
    ("JPEG progressive=True", {"jpeg": {"progressive": True}}),
    ("JPEG 4:4:4 chroma", {"jpeg": {"subsampling": "4:4:4"}}),
]
VIPS_TUNING: list[tuple[str, dict[str, Any]]] = [
    ("vips engine as shipped (Pillow decodes JPEG and WebP, libvips PNG)", {}),
    ("vips engine, libvips decodes JPEG too", {"decoders": {"JPEG": "libvips"}}),
    ("vips engine, Pillow decodes PNG too", {"decoders": {"PNG": "pillow"}}),
    ("vips engine, PNG decoded into memory before resizing", {"stream": False}),
    ("vips engine, glibc's default malloc thresholds", {"keep_buffers": False}),
]


def tuning_table(sources: list[Source], results: dict[tuple[str, str, str], Result]) -> list[str]:
    lines = ["### Tuning: each engine with one choice changed", ""]
    head = " | ".join(f"{s.name} ms | KB out | SSIM" for s in sources)
    lines += [f"| choice | {head} |", "|---" * (3 * len(sources) + 1) + "|"]
    rows = [("project", *row) for row in TUNING] + [("project vips", *row) for row in VIPS_TUNING]
    for variant, label, knobs in rows:
        cells = []
        for source in sources:
            r = results.get((variant, source.path, json.dumps(knobs, sort_keys=True)))
            cells += [
                _cell(_ms(r)),
                _cell(r.out_bytes / 1024 if r else None),
                _cell(r.ssim if r else None, "{:.4f}"),
            ]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return [*lines, ""]


PNG_LEVELS = (1, 3, 6, 9)


def png_table(sources: list[Source], results: dict[tuple[str, str, str], Result]) -> list[str]:
    shipped = encode.PNG_COMPRESS_LEVEL
    lines = [f"### PNG renditions (default RENDITIONS) by compress_level, shipped: {shipped}", ""]
    lines += ["| input | compress_level | ms | KB out |", "|---|---|---|---|"]
    for source in sources:
        for level in PNG_LEVELS:
            r = results.get(("project", source.path, json.dumps({"png_level": level})))
            kb = _cell(r.out_bytes / 1024 if r else None)
            lines.append(f"| {source.name} | {level} | {_cell(_ms(r))} | {kb} |")
    return [*lines, ""]


def machine_line() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown CPU",
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    vips = _optional("pyvips")
    vips_text = (
        f"pyvips {vips.__version__} / libvips {vips.version(0)}.{vips.version(1)}.{vips.version(2)}"
        if vips
        else "pyvips not installed"
    )
    return (
        f"Machine: {model}, {os.cpu_count()} cores, {mem_kb / 1024**2:.0f} GiB; "
        f"Python {platform.python_version()}, Pillow {Image.__version__} with libjpeg-turbo "
        f"{features.version('libjpeg_turbo')}, {vips_text}; load average at start "
        f"{os.getloadavg()[0]:.2f}; run {datetime.date.today().isoformat()}."
    )


# ---------------------------------------------------------------- duel

# The close race, run again with more rounds: differences of a few percent
# need more samples than one table's rounds give on a noisy machine.
DUEL = ("vips once", "project", "project vips")


def duel_table(
    sources: list[Source], results: dict[tuple[str, str, str], Result], rounds: int
) -> list[str]:
    def get(variant: str, source: Source) -> Result | None:
        return results.get((variant, source.path, "{}"))

    lines = [
        f"### The close race again: {rounds} interleaved rounds, 1600/800/200 px JPEG q85",
        "",
        "| input | vips once ms | project ms | project vips ms | pillow / vips once "
        "| vips / vips once | CPU: pillow / vips once | CPU: vips / vips once |",
        "|---" * 8 + "|",
    ]
    for source in sources:
        once, pillow, vips = (get(v, source) for v in DUEL)
        cells = [_cell(_ms(once)), _cell(_ms(pillow)), _cell(_ms(vips))]
        cells += [_ratio(_ms(pillow), _ms(once)), _ratio(_ms(vips), _ms(once))]
        cells += [_ratio(_cpu(pillow), _cpu(once)), _ratio(_cpu(vips), _cpu(once))]
        lines.append(f"| {source.name} | {' | '.join(cells)} |")
    return [*lines, ""]


# ---------------------------------------------------------------- phases


def phase_times(data: bytes, options: ImagingOptions) -> dict[str, float]:
    """Milliseconds of each step of ``process_image`` on one input, one run.

    The steps of ``chalicelib.imaging.pipeline`` called one by one, with a
    clock between them (the same calls, in the same order, as it makes).
    """
    marks = [time.perf_counter()]
    names: list[str] = []

    def mark(name: str) -> None:
        marks.append(time.perf_counter())
        names.append(name)

    with decode.decoding(options.max_pixels):
        header = imaging_pipeline.read_header(data, options)
        mark("header (Pillow)")
        if options.engine == "vips":
            from chalicelib.imaging import vips

            base = vips._load(data, header)
            mark(f"decode ({vips.DECODERS[header.format]})")
            made = vips._Made(vips._orient(base, header.orientation))
            images = resize.render_with(vips.VIPS, made, header.targets)
            mark("orient + resize (libvips)")
            pil = [image.to_pillow() for image in images]
            mark("hand-over to Pillow")
        else:
            img, orientation = header.image, header.orientation
            needed = resize.needed_size(header.targets)
            decode.load(img, decode.oriented(needed, orientation))
            mark("decode (Pillow)")
            base = resize.reduce_base(decode.orient(img, orientation), needed)
            mark("orient + base reduce()")
            pil = resize.render(base, header.targets)
            mark("resize (Pillow)")
    for image in pil:
        encode.encode(image, options.output_format.upper(), options.jpeg_quality, None, None)
    mark("encode (Pillow)")
    return {name: (b - a) * 1000 for name, a, b in zip(names, marks, marks[1:], strict=False)}


def phases_worker(path: str, engine: str, repeats: int) -> dict[str, float]:
    data = Path(path).read_bytes()
    options = ImagingOptions(parse_renditions(TABLE_RENDITIONS), "jpeg", QUALITY, engine=engine)
    phase_times(data, options)  # untimed
    runs = [phase_times(data, options) for _ in range(repeats)]
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


def phases_table(sources: list[Source], engines: list[str], repeats: int) -> list[str]:
    lines = ["### Where the time goes: each step, median ms (in-process, one subprocess)", ""]
    lines += ["| input | engine | step | ms |", "|---|---|---|---|"]
    for source in sources:
        for engine in engines:
            proc = subprocess.run(
                [sys.executable, "-m", "bench.imaging", "--phases", source.path, engine,
                 str(repeats)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            steps = json.loads(proc.stdout)
            for step, ms in steps.items():
                lines.append(f"| {source.name} | {engine} | {step} | {ms:.1f} |")
            lines.append(f"| {source.name} | {engine} | **sum** | {sum(steps.values()):.1f} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tuning-rounds", type=int, default=2)
    parser.add_argument("--duel-rounds", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="fewer inputs, 1 repeat, 1 round")
    parser.add_argument("--no-tuning", action="store_true", help="skip the tuning table")
    parser.add_argument(
        "--only-phases", action="store_true", help="only the table of where the time goes"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--phases", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asdict(worker(Job(**json.loads(args.worker))))))
        return
    if args.phases:
        path, engine, count = args.phases
        print(json.dumps(phases_worker(path, engine, int(count))))
        return
    repeats, rounds = (1, 1) if args.quick else (args.repeats, args.rounds)
    have_vips = _optional("pyvips") is not None
    header = machine_line()

    def progress(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-imaging-") as tmp:
        progress("generating inputs")
        sources = make_inputs(Path(tmp), args.quick)
        if args.only_phases:
            phased = [s for s in sources if s.name in ("12 MP JPEG", "48 MP JPEG", "12 MP PNG")]
            engines = ["pillow", "vips"] if have_vips else ["pillow"]
            print("\n".join([header, "", *phases_table(phased, engines, max(5, 3 * repeats))]))
            return
        variants = ["naive", "thumbnail", "vips buffer", "vips once", "floor", "project"]
        variants.append("project vips")
        if not have_vips:
            variants = [v for v in variants if v not in (*VIPS_VARIANTS, "project vips")]
        fixed = [
            Job(v, s.path, TABLE_RENDITIONS, "JPEG", repeats, ssim=True)
            for s in sources
            for v in [*variants, "decode"]
        ]
        defaults = [
            Job(v, s.path, DEFAULT_RENDITIONS, output_format("auto", s.format, False), repeats)
            for s in sources
            for v in variants
            if v != "naive"
        ]
        out = [header, ""]
        results = measure(fixed, rounds, progress)
        title = "Renditions 1600, 800, 200 px (longest side), JPEG q85"
        out += comparison_table(title, sources, variants, results)
        if have_vips and not args.quick:
            big = [s for s in sources if s.name != "3 MP JPEG"]
            jobs = [Job(v, s.path, TABLE_RENDITIONS, "JPEG", repeats) for s in big for v in DUEL]
            out += duel_table(big, measure(jobs, args.duel_rounds, progress), args.duel_rounds)
        engines = [e for v, e in ENGINES.items() if v in variants]
        phased = [s for s in sources if s.name in ("12 MP JPEG", "48 MP JPEG", "12 MP PNG")]
        progress("phases")
        out += phases_table(phased, engines, max(5, 3 * repeats))
        png = [s for s in sources if s.format == "PNG"]
        for source in png:
            own = _ms(results.get(("decode", source.path, "{}")))
            per_engine = "; ".join(
                f"{engine} / decode = {_ratio(_ms(results.get((v, source.path, '{}'))), own)}"
                for v, engine in ENGINES.items()
                if v in variants
            )
            out += [f"{source.name}: Pillow's own decode {_cell(own)} ms; {per_engine}.", ""]
        results = measure(defaults, rounds, progress)
        title = f"Default RENDITIONS ({DEFAULT_RENDITIONS}), OUTPUT_FORMAT=auto"
        rest = [v for v in variants if v != "naive"]
        out += comparison_table(title, sources, rest, results, with_ssim=False)
        if not args.quick and not args.no_tuning:
            picked = [s for s in sources if s.name in ("12 MP JPEG", "48 MP JPEG", "12 MP PNG")]
            tuned = [("project", k) for _, k in TUNING]
            if have_vips:
                tuned += [("project vips", k) for _, k in VIPS_TUNING]
            jobs = [
                Job(v, s.path, TABLE_RENDITIONS, "JPEG", repeats, ssim=True, knobs=k)
                for s in picked
                for v, k in tuned
            ]
            out += tuning_table(picked, measure(jobs, args.tuning_rounds, progress))
            jobs = [
                Job("project", s.path, DEFAULT_RENDITIONS, "PNG", repeats, knobs={"png_level": n})
                for s in png
                for n in PNG_LEVELS
            ]
            out += png_table(png, measure(jobs, args.tuning_rounds, progress))
    print("\n".join(out))


if __name__ == "__main__":
    main()
