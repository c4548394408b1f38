"""AVIF and WebP alternates against the JPEG rendition: qualities, speeds, threads.

    .venv/bin/python -m bench.formats [--repeats 5] [--quick] [--no-handler]
                                      [--renditions SPEC] > bench/results/formats.md

Chooses the defaults of ``AVIF_QUALITY`` (with the AVIF encoder's speed,
threads and options) and ``WEBP_QUALITY`` (with the WebP method): each the
lowest quality, one for every rendition of every input, at which the
alternate is at least as close to the pixels before encoding (SSIM, as
``bench/imaging.py`` computes it) as the JPEG rendition at ``JPEG_QUALITY``
(85, with the project's ``encode()`` parameters).

Inputs are ``bench/inputs.py`` photos of 3, 12 and 24 MP (JPEG quality 90, as
uploaded) and the default ``RENDITIONS``; their pixels before encoding come
from ``chalicelib.imaging.pipeline.rendition_images``. For every encoder
configuration and rendition, the lowest quality reaching the JPEG's SSIM is
found by bisection (started from the previous configuration's answer, then
galloping); the configuration's single quality is the smallest value that
passes for every rendition of every input. Encode times are medians of
``--repeats`` runs, interleaved across configurations so that a neighbour's
load on a shared machine falls on all alike.

Then, on the 12 MP input: encoding the alternates of all three renditions
serially and in a 2-thread pool (do the encoders release the GIL?), and,
unless ``--no-handler``, the whole created-event handler (in-process imaging,
against a moto server) without ``FORMATS`` and with ``FORMATS=avif,webp`` at
the chosen settings, alternating event by event.

Alternates' encoder parameters are passed to Pillow explicitly here; the
project's code is not changed (for the handler run, the chosen speed, threads
and method are set on ``chalicelib.imaging.encode`` in this process only).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import inspect
import io
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, features

from bench import imaging as bench_imaging
from bench.inputs import SIZES, jpeg_bytes
from chalicelib.imaging import ImagingOptions, parse_renditions
from chalicelib.imaging import encode as project_encode
from chalicelib.imaging import pipeline as imaging_pipeline
from chalicelib.settings import DEFAULT_RENDITIONS

JPEG_QUALITY = 85
INPUTS = ("3mp", "12mp", "24mp")
BUDGET_INPUT = "12mp"
SPEEDS = (6, 7, 8, 9, 10)
QUICK_SPEEDS = (8, 9, 10)
THREADS = (1, 2)
METHODS = (0, 1, 2, 3, 4, 5, 6)
QUICK_METHODS = (0, 2, 4, 6)
# Targets from the design: bytes of the alternate against the JPEG's (all
# renditions of an input together, the worst input counting), each at SSIM >=
# the JPEG's; the handler with FORMATS=avif,webp at most HANDLER_BUDGET times
# the handler without.
AVIF_TARGET = 0.65
WEBP_TARGET = 0.90
HANDLER_BUDGET = 3.0
# Two configurations whose bytes differ by less than this are "the same
# size": the faster one is preferred.
SAME_BYTES = 0.01

Array = npt.NDArray[np.float64]
# Output rows per strip of the SSIM map, and the threads computing them.
STRIP = 48
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ssim")


# ---------------------------------------------------------------- SSIM


_TAPS = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
_TAPS /= _TAPS.sum()
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _blur(v: Array) -> Array:
    """``bench.imaging.ssim``'s separable Gaussian ("valid" region): the same
    operations in the same order, so the same numbers, accumulated in place."""
    rows = v.shape[0] - 10
    acc = _TAPS[0] * v[0:rows]
    tmp = np.empty_like(acc)
    for k in range(1, 11):
        acc += np.multiply(_TAPS[k], v[k : k + rows], out=tmp)
    v, cols = acc, acc.shape[1] - 10
    acc = _TAPS[0] * v[:, 0:cols]
    tmp = np.empty_like(acc)
    for k in range(1, 11):
        acc += np.multiply(_TAPS[k], v[:, k : k + cols], out=tmp)
    return acc


class Reference:
    """The pixels before encoding, with their half of SSIM computed once.

    Computed in strips of output rows (each with the window's 10 extra rows),
    on two threads: every value is the one ``bench.imaging.ssim`` computes
    over the whole image (elementwise operations, the same order of sums),
    and the mean is taken over the whole map, so the score is identical.
    """

    def __init__(self, image: Image.Image) -> None:
        self.image = image
        self.x = np.asarray(image.convert("RGB"), dtype=np.float64)
        rows = self.x.shape[0] - 10
        self.strips = [(r, min(r + STRIP, rows)) for r in range(0, rows, STRIP)]
        self.mine = list(_POOL.map(self._own, self.strips))

    def _own(self, strip: tuple[int, int]) -> tuple[Array, Array]:
        x = self.x[strip[0] : strip[1] + 10]
        mx = _blur(x)
        return mx, _blur(x * x) - mx * mx

    def ssim(self, encoded: bytes) -> float:
        """Mean SSIM over R, G and B of ``encoded`` (decoded) against the reference."""
        with Image.open(io.BytesIO(encoded)) as img:
            y = np.asarray(img.convert("RGB"), dtype=np.float64)
        if y.shape != self.x.shape:
            raise ValueError(f"decoded {y.shape}, expected {self.x.shape}")

        def strip_map(i: int) -> Array:
            r0, r1 = self.strips[i]
            x, yy = self.x[r0 : r1 + 10], y[r0 : r1 + 10]
            mx, vx = self.mine[i]
            my = _blur(yy)
            vy, cov = _blur(yy * yy) - my * my, _blur(x * yy) - mx * my
            num = (2 * mx * my + _C1) * (2 * cov + _C2)
            return num / ((mx * mx + my * my + _C1) * (vx + vy + _C2))

        s = np.concatenate(list(_POOL.map(strip_map, range(len(self.strips)))))
        return float(s.mean())


# ---------------------------------------------------------------- encoders


@dataclass(frozen=True, order=True)
class Codec:
    """One encoder configuration; ``quality`` is what the search varies."""

    fmt: str  # "AVIF" | "WEBP"
    speed: int  # AVIF speed (0 slowest .. 10), or WebP method (0 fastest .. 6)
    threads: int = 1  # AVIF max_threads
    subsampling: str = "4:2:0"  # AVIF
    # AVIF: aom options through libavif (Pillow's ``advanced``), e.g. (("tune", "ssim"),)
    advanced: tuple[tuple[str, str], ...] = ()
    tile_cols: int = 0  # AVIF: log2 of tile columns, 0 for autotiling

    @property
    def label(self) -> str:
        if self.fmt == "WEBP":
            return f"WebP method {self.speed}"
        extras = [self.subsampling] if self.subsampling != "4:2:0" else []
        extras += [f"{k}={v}" for k, v in self.advanced]
        extras += [f"{2**self.tile_cols} tile columns"] if self.tile_cols else []
        return f"AVIF speed {self.speed}, {self.threads} thread{'s' * (self.threads > 1)}" + (
            f", {', '.join(extras)}" if extras else ""
        )

    def params(self, quality: int) -> dict[str, Any]:
        """Pillow's ``save()`` keywords."""
        if self.fmt == "WEBP":
            return {"quality": quality, "method": self.speed}
        params: dict[str, Any] = {
            "quality": quality,
            "speed": self.speed,
            "max_threads": self.threads,
            "subsampling": self.subsampling,
        }
        if self.advanced:
            params["advanced"] = dict(self.advanced)
        if self.tile_cols:
            params.update(tile_cols=self.tile_cols, autotiling=False)
        return params

    def encode(self, img: Image.Image, quality: int) -> bytes:
        buffer = io.BytesIO()
        img.save(buffer, self.fmt, **self.params(quality))
        return buffer.getvalue()

    @property
    def lowest(self) -> int:
        return 1 if self.fmt == "AVIF" else 0

    @property
    def first_guess(self) -> int:
        return 70 if self.fmt == "AVIF" else 85


def jpeg(img: Image.Image) -> bytes:
    """The JPEG rendition as the project encodes it."""
    return project_encode.encode(img, "JPEG", JPEG_QUALITY, None, None)


# ---------------------------------------------------------------- inputs


@dataclass
class Rendition:
    name: str
    ref: Reference
    jpeg_bytes: int
    jpeg_ssim: float
    scores: dict[tuple[Codec, int], tuple[int, float]] = field(default_factory=dict)
    digests: dict[tuple[Codec, int], bytes] = field(default_factory=dict)
    by_digest: dict[bytes, float] = field(default_factory=dict)

    @property
    def image(self) -> Image.Image:
        return self.ref.image

    def score(self, codec: Codec, quality: int) -> tuple[int, float]:
        """(bytes, SSIM) of this rendition through ``codec`` at ``quality``."""
        key = (codec, quality)
        if key not in self.scores:
            data = codec.encode(self.image, quality)
            digest = hashlib.sha256(data).digest()
            if digest not in self.by_digest:  # speeds 9 and 10 often write the same bytes
                self.by_digest[digest] = self.ref.ssim(data)
            self.scores[key] = (len(data), self.by_digest[digest])
            self.digests[key] = digest
        return self.scores[key]

    def ok(self, codec: Codec, quality: int) -> bool:
        return self.score(codec, quality)[1] >= self.jpeg_ssim


@dataclass
class Source:
    name: str  # "12mp"
    size: int  # bytes of the upload
    renditions: list[Rendition]

    @property
    def title(self) -> str:
        w, h = SIZES[self.name]
        return f"{self.name[:-2]} MP ({w}x{h}, JPEG q90, {self.size:,} bytes)"


def make_source(name: str, renditions: str) -> Source:
    data = jpeg_bytes(*SIZES[name])
    specs = parse_renditions(renditions)
    images = imaging_pipeline.rendition_images(data, ImagingOptions(specs, "jpeg", JPEG_QUALITY))
    out = []
    for spec, image in zip(specs, images, strict=True):
        ref = Reference(image)
        data_jpeg = jpeg(image)
        out.append(Rendition(spec.name, ref, len(data_jpeg), ref.ssim(data_jpeg)))
    return Source(name, len(data), out)


def check_ssim(source: Source) -> None:
    """This file's SSIM is ``bench.imaging.ssim``'s, to the last bit."""
    r = min(source.renditions, key=lambda r: r.image.width)
    with Image.open(io.BytesIO(jpeg(r.image))) as decoded:
        theirs = bench_imaging.ssim(np, r.image, decoded.convert("RGB"))
    if theirs != r.jpeg_ssim:
        raise AssertionError(f"SSIM differs from bench.imaging: {r.jpeg_ssim} != {theirs}")


# ---------------------------------------------------------------- search


def lowest_passing(ok: Callable[[int], bool], lo: int, hi: int, guess: int) -> int | None:
    """The lowest q in [lo, hi] with ``ok(q)`` (taken as monotonic), or None.

    Gallops from ``guess`` (a neighbouring configuration's answer) until the
    answer is bracketed, then bisects: a handful of encodes when the guess is
    close, about log2(hi - lo) + 2 when it is not.
    """
    guess = min(max(guess, lo), hi)
    step = 1
    if ok(guess):
        good, bad = guess, lo - 1
        while good - step >= lo:
            if not ok(good - step):
                bad = good - step
                break
            good, step = good - step, step * 2
    else:
        bad, good_or_none = guess, None
        while good_or_none is None:
            probe = min(bad + step, hi)
            if ok(probe):
                good_or_none = probe
            elif probe == hi:
                return None
            else:
                bad, step = probe, step * 2
        good = good_or_none
    while good - bad > 1:
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


@dataclass
class Found:
    """A codec's answer over every rendition of every input."""

    codec: Codec
    per_rendition: dict[tuple[str, str], int | None]  # (input, rendition) -> lowest q
    quality: int | None  # one value for all, None when some rendition cannot reach its JPEG

    def ratio(self, source: Source) -> float:
        """Bytes of all renditions of ``source`` at ``quality``, against the JPEGs'."""
        assert self.quality is not None
        ours = sum(r.score(self.codec, self.quality)[0] for r in source.renditions)
        return ours / sum(r.jpeg_bytes for r in source.renditions)


def search(sources: list[Source], codec: Codec, guesses: dict[tuple[str, str], int]) -> Found:
    """Per rendition, the lowest quality at the JPEG's SSIM; then one for all."""
    per: dict[tuple[str, str], int | None] = {}
    for source in sources:
        for r in source.renditions:
            key = (source.name, r.name)
            ok = functools.partial(r.ok, codec)
            per[key] = lowest_passing(ok, codec.lowest, 100, guesses.get(key, codec.first_guess))
    if any(q is None for q in per.values()):
        return Found(codec, per, None)
    quality = max(q for q in per.values() if q is not None)
    renditions = [r for s in sources for r in s.renditions]
    while quality <= 100 and not all(r.ok(codec, quality) for r in renditions):
        quality += 1  # SSIM is not quite monotonic in quality
    return Found(codec, per, quality if quality <= 100 else None)


def sweep(
    sources: list[Source],
    codecs: Iterable[Codec],
    progress: Callable[[str], None],
    guesses: dict[tuple[str, str], int] | None = None,
) -> dict[Codec, Found]:
    """``search`` for each codec in turn, each starting from the last one's answers."""
    found: dict[Codec, Found] = {}
    guesses = dict(guesses or {})
    for codec in codecs:
        progress(f"searching {codec.label}")
        found[codec] = result = search(sources, codec, guesses)
        guesses.update({k: q for k, q in result.per_rendition.items() if q is not None})
    return found


def answers(found: dict[Codec, Found]) -> dict[tuple[str, str], int]:
    """The last configuration's lowest qualities, as guesses for the next sweep."""
    last = list(found.values())[-1]
    return {k: q for k, q in last.per_rendition.items() if q is not None}


# ---------------------------------------------------------------- timing


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def time_encodes(
    source: Source, jobs: list[tuple[Codec | None, int]], repeats: int
) -> dict[tuple[Codec | None, int], list[float]]:
    """Median ms of each (codec or None for JPEG, quality) per rendition.

    One untimed encode each, then ``repeats`` rounds over every job in turn.
    """
    samples: dict[tuple[Codec | None, int, int], list[float]] = {}
    for round_no in range(repeats + 1):
        for codec, quality in jobs:
            for i, r in enumerate(source.renditions):
                start = time.perf_counter()
                if codec is None:
                    jpeg(r.image)
                else:
                    codec.encode(r.image, quality)
                if round_no:
                    samples.setdefault((codec, quality, i), []).append(time.perf_counter() - start)
    return {
        (codec, quality): [
            median_ms(samples[(codec, quality, i)]) for i in range(len(source.renditions))
        ]
        for codec, quality in jobs
    }


def encode_set(
    source: Source, jobs: list[tuple[Codec | None, int]], pool: ThreadPoolExecutor | None
) -> float:
    """Wall seconds to encode every rendition through every job, serially or
    in ``pool`` (largest image first, as the pipeline submits them)."""
    order = sorted(source.renditions, key=lambda r: -r.image.width * r.image.height)
    tasks = [(r, codec, q) for r in order for codec, q in jobs]

    def run(task: tuple[Rendition, Codec | None, int]) -> bytes:
        r, codec, q = task
        return jpeg(r.image) if codec is None else codec.encode(r.image, q)

    start = time.perf_counter()
    if pool is None:
        for task in tasks:
            run(task)
    else:
        list(pool.map(run, tasks))
    return time.perf_counter() - start


@dataclass
class Concurrency:
    label: str
    serial_ms: float
    pooled_ms: float


def concurrency(
    source: Source, cases: list[tuple[str, list[tuple[Codec | None, int]]]], repeats: int
) -> list[Concurrency]:
    """Serial against a 2-thread pool, interleaved, for each set of encodes."""
    serial: dict[str, list[float]] = {}
    pooled: dict[str, list[float]] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for round_no in range(repeats + 1):
            for label, jobs in cases:
                s, p = encode_set(source, jobs, None), encode_set(source, jobs, pool)
                if round_no:
                    serial.setdefault(label, []).append(s)
                    pooled.setdefault(label, []).append(p)
    return [
        Concurrency(label, median_ms(serial[label]), median_ms(pooled[label])) for label, _ in cases
    ]


# ---------------------------------------------------------------- the handler


@contextmanager
def encoder_settings(avif: Codec, webp: Codec) -> Iterator[None]:
    """The chosen alternates' settings on ``chalicelib.imaging.encode``, in this process."""
    names = {"AVIF_SPEED": avif.speed, "AVIF_THREADS": avif.threads, "WEBP_METHOD": webp.speed}
    saved = {name: getattr(project_encode, name) for name in names}
    for name, value in names.items():
        setattr(project_encode, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(project_encode, name, value)


def handler_ms(avif: Found, webp: Found, repeats: int) -> tuple[float, float]:
    """Median total ms of a created event through the in-process handler
    (moto server), without FORMATS and with FORMATS=avif,webp, alternating."""
    import boto3

    from chalicelib.factory import build_pipeline
    from chalicelib.models import EventKind, ObjectEvent
    from chalicelib.observability import Stopwatch
    from chalicelib.pipeline import Outcome
    from chalicelib.sandbox import InProcessImaging
    from chalicelib.settings import Settings
    from devtools.emulator import moto_server
    from devtools.provision import provision

    assert avif.quality is not None and webp.quality is not None
    saved_env = dict(os.environ)
    try:
        with moto_server() as url, encoder_settings(avif.codec, webp.codec):
            os.environ.update(
                AWS_ENDPOINT_URL=url,
                AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench",
                AWS_DEFAULT_REGION="us-east-1",
            )
            base = {"SOURCE_BUCKET": "bench", "DDB_TABLE": "bench", "IMAGE_ENGINE": "pillow"}
            alternates = {
                **base,
                "FORMATS": "avif,webp",
                "AVIF_QUALITY": str(avif.quality),
                "WEBP_QUALITY": str(webp.quality),
            }
            plain_settings = Settings.from_env(base)
            provision(plain_settings, report=lambda _: None)
            totals: dict[str, list[float]] = {"without": [], "with": []}
            current: list[str] = []

            def observe(event: ObjectEvent, outcome: Outcome, watch: Stopwatch) -> None:
                assert outcome is Outcome.PROCESSED, outcome
                totals[current[0]].append(watch.ms["total"])

            pipelines = {
                "without": build_pipeline(plain_settings, imaging=InProcessImaging()),
                "with": build_pipeline(Settings.from_env(alternates), imaging=InProcessImaging()),
            }
            data = jpeg_bytes(*SIZES[BUDGET_INPUT])
            s3 = boto3.client("s3")
            sequence = 0
            for _ in range(repeats + 1):
                for name, pipeline in pipelines.items():
                    pipeline.observer = observe
                    current[:] = [name]
                    sequence += 1
                    key = f"photo-{name}.jpg"
                    etag = s3.put_object(Bucket="bench", Key=key, Body=data)["ETag"].strip('"')
                    event = ObjectEvent(
                        "bench", key, EventKind.CREATED, "ObjectCreated:Put",
                        size=len(data), etag=etag, sequencer=f"{sequence:018X}",
                    )  # fmt: skip
                    pipeline.handle(event)
            head = s3.head_object(Bucket="bench", Key="resized/large.avif/photo-with.jpg.avif")
            assert head["ContentType"] == "image/avif", head
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    return statistics.median(totals["without"][1:]), statistics.median(totals["with"][1:])


# ---------------------------------------------------------------- choosing

# What might buy bytes at equal SSIM (or time), tried at the fast speeds
# against the same speed and threads without it (the report says whether
# libavif's default tune is aom's tune=iq, whose delta-q and quantiser matrices
# aim at perceived quality rather than SSIM). Tiles matter only with threads.
OPTIONS: dict[str, dict[str, Any]] = {
    "4:4:4 chroma": {"subsampling": "4:4:4"},
    "tune=ssim": {"advanced": (("tune", "ssim"),)},
    "tune=psnr": {"advanced": (("tune", "psnr"),)},
    "deltaq-mode=0": {"advanced": (("deltaq-mode", "0"),)},
    "sharpness=1": {"advanced": (("sharpness", "1"),)},
    "2 tile columns": {"tile_cols": 1, "threads": 2},
}
# Speeds that might fit the handler budget (10 is 9 in aom's all-intra mode).
FAST_SPEEDS = (9,)
# An option is adopted when, at every fast speed, it saves more than this share
# of bytes (worth a non-default encoder setting, and a quality tied to it) and
# costs less than OPTION_TIME in encode time.
OPTION_GAIN = 0.03
OPTION_TIME = 1.15

Times = dict[tuple[Codec | None, int], list[float]]


@dataclass
class Candidate:
    found: Found
    worst_ratio: float  # bytes of all renditions against the JPEGs', the worst input
    ms: list[float]  # per rendition, on the budget input

    @property
    def codec(self) -> Codec:
        return self.found.codec

    @property
    def total_ms(self) -> float:
        return sum(self.ms)


def candidates(sources: list[Source], found: dict[Codec, Found], times: Times) -> list[Candidate]:
    """Each setting that reaches the JPEG's SSIM, once per distinct output: a
    setting writing the very bytes of a slower-numbered one (AVIF speed 10 and
    9, in aom's all-intra mode) is left out."""
    seen: dict[tuple[Any, ...], Codec] = {}
    out = []
    for codec, f in sorted(found.items()):
        if f.quality is None:
            continue
        q = f.quality
        digests = tuple(r.digests[(codec, q)] for s in sources for r in s.renditions)
        same = (codec.fmt, codec.threads, q, digests)
        if same in seen:
            continue
        seen[same] = codec
        out.append(Candidate(f, max(f.ratio(s) for s in sources), times[(codec, q)]))
    return out


def duplicates(sources: list[Source], found: dict[Codec, Found]) -> list[tuple[Codec, Codec]]:
    """(setting, the slower-numbered one whose bytes it writes), for the report."""
    kept: dict[tuple[Any, ...], Codec] = {}
    pairs = []
    for codec, f in sorted(found.items()):
        if f.quality is None:
            continue
        digests = tuple(r.digests[(codec, f.quality)] for s in sources for r in s.renditions)
        key = (codec.fmt, f.quality, digests)
        if key in kept:
            pairs.append((codec, kept[key]))
        else:
            kept[key] = codec
    return pairs


def lpt_ms(jobs: list[float], workers: int = 2) -> float:
    """Wall time of ``jobs`` on ``workers`` threads, longest first (the pool's order)."""
    loads = [0.0] * workers
    for job in sorted(jobs, reverse=True):
        loads[loads.index(min(loads))] += job
    return max(loads)


def extra_ms(jpeg_ms: list[float], avif: Candidate, webp: Candidate, pooled: bool) -> float:
    """Estimated wall ms the alternates add to one upload's encodes, from the
    single encodes: their sum when serial; in a 2-thread pool, what they add
    to a longest-first schedule (AVIF at 1 thread), or with AVIF at 2 threads
    (already using both cores) its own time and half of WebP's."""
    if not pooled:
        return avif.total_ms + webp.total_ms
    if avif.codec.threads > 1:
        return avif.total_ms + webp.total_ms / 2
    return lpt_ms([*jpeg_ms, *avif.ms, *webp.ms]) - lpt_ms(jpeg_ms)


def pick(options: list[Candidate], limit: float) -> Candidate:
    """The smallest of those within ``limit`` (bytes ratio; of all, if none is);
    of those within ``SAME_BYTES`` of it, the fastest."""
    within = [c for c in options if c.worst_ratio <= limit] or options
    best = min(c.worst_ratio for c in within)
    return min(
        (c for c in within if c.worst_ratio <= best * (1 + SAME_BYTES)), key=lambda c: c.total_ms
    )


def choose(
    avifs: list[Candidate],
    webps: list[Candidate],
    jpeg_ms: list[float],
    handler: float,
    pooled: bool,
) -> tuple[Candidate, Candidate, list[str]]:
    """Within the handler budget, the smallest AVIF (the preferred alternate),
    then the smallest WebP in the time left; near-ties go to the faster."""
    allowance = (HANDLER_BUDGET - 1) * handler
    notes = []
    fastest_webp = min(webps, key=lambda c: c.total_ms)
    fitting = [a for a in avifs if extra_ms(jpeg_ms, a, fastest_webp, pooled) <= allowance]
    if not fitting:
        notes.append("no AVIF setting fits the handler budget, even with the fastest WebP")
        fitting = [min(avifs, key=lambda c: extra_ms(jpeg_ms, c, fastest_webp, pooled))]
    avif = pick(fitting, AVIF_TARGET)
    webp_fitting = [w for w in webps if extra_ms(jpeg_ms, avif, w, pooled) <= allowance]
    webp = pick(webp_fitting or [fastest_webp], WEBP_TARGET)
    if avif.worst_ratio > AVIF_TARGET:
        notes.append(
            f"AVIF misses its {AVIF_TARGET}x bytes target: at the JPEG's SSIM no setting "
            "within the budget gets there on these inputs"
        )
    if webp.worst_ratio > WEBP_TARGET:
        notes.append(
            f"WebP misses its {WEBP_TARGET}x bytes target: at the JPEG's SSIM no method "
            "within the budget gets there on these inputs"
        )
    return avif, webp, notes


@dataclass(frozen=True)
class Trial:
    option: str
    codec: Codec
    plain: Codec  # the same speed and threads without the option
    bytes_ratio: float  # worst-input bytes at the one quality, against plain's
    time_ratio: float


def adopted_change(trials: list[Trial], fast: list[int]) -> dict[str, Any]:
    """The options that help at every fast speed, merged: one value per field
    (per aom option), the one with the larger mean saving."""
    best: dict[str, tuple[float, Any]] = {}
    for name, change in OPTIONS.items():
        rows = [t for t in trials if t.option == name]
        if len(rows) != len(fast) or not all(
            t.bytes_ratio < 1 - OPTION_GAIN and t.time_ratio < OPTION_TIME for t in rows
        ):
            continue
        saving = 1 - statistics.mean(t.bytes_ratio for t in rows)
        fields = {k: v for k, v in change.items() if k not in ("advanced", "threads")}
        fields |= {f"advanced:{k}": v for k, v in change.get("advanced", ())}
        for key, value in fields.items():
            if saving > best.get(key, (0.0, None))[0]:
                best[key] = (saving, value)
    merged: dict[str, Any] = {k: v for k, (_, v) in best.items() if not k.startswith("advanced:")}
    advanced = tuple(sorted((k[9:], v) for k, (_, v) in best.items() if k.startswith("advanced:")))
    if advanced:
        merged["advanced"] = advanced
    return merged


# ---------------------------------------------------------------- report


def machine() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown CPU",
    )
    from PIL import _avif

    return [
        f"- machine: {model}, `nproc` {len(os.sched_getaffinity(0))}; load average at start "
        f"{os.getloadavg()[0]:.2f}; run {datetime.date.today().isoformat()}",
        f"- Python {platform.python_version()}, Pillow {Image.__version__}: libavif "
        f"{features.version('avif')} ({_avif.codec_versions()}), libwebp "
        f"{features.version('webp')}, libjpeg-turbo {features.version('libjpeg_turbo')}; "
        f"numpy {np.__version__}",
    ]


def default_tune(source: Source) -> str:
    """Which aom tune libavif's default writes the same bytes as, on one rendition."""
    r = source.renditions[len(source.renditions) // 2]
    plain = Codec("AVIF", 9).encode(r.image, 70)
    for tune in ("iq", "ssim", "psnr"):
        if Codec("AVIF", 9, advanced=(("tune", tune),)).encode(r.image, 70) == plain:
            return f"the same bytes as `tune={tune}`"
    return "bytes unlike any of tune=iq, ssim, psnr"


def avif_save_options() -> list[str]:
    """The keywords Pillow's AVIF ``_save`` reads (Pillow's own source, this version)."""
    from PIL import AvifImagePlugin

    source = inspect.getsource(AvifImagePlugin._save)
    return sorted(set(re.findall(r'info\.get\(\s*"(\w+)"', source)))


def _x(x: float) -> str:
    return f"{x:.3f}x"


def fmt_name(codec: Codec) -> str:
    return {"AVIF": "AVIF", "WEBP": "WebP"}[codec.fmt]


def size_table(source: Source, chosen: list[Found], times: Times) -> list[str]:
    lines = [
        f"### {source.title}",
        "",
        "| rendition | format | quality | bytes | bytes / JPEG | SSIM | JPEG SSIM | encode ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    jpeg_ms = times[(None, JPEG_QUALITY)]
    totals = {"JPEG": sum(r.jpeg_bytes for r in source.renditions)}
    for i, r in enumerate(source.renditions):
        name = f"{r.name} {r.image.width}x{r.image.height}"
        lines.append(
            f"| {name} | JPEG | {JPEG_QUALITY} | {r.jpeg_bytes:,} | 1.000x | {r.jpeg_ssim:.4f} "
            f"| {r.jpeg_ssim:.4f} | {jpeg_ms[i]:.1f} |"
        )
        for f in chosen:
            assert f.quality is not None
            size, score = r.score(f.codec, f.quality)
            totals[f.codec.fmt] = totals.get(f.codec.fmt, 0) + size
            lines.append(
                f"| {name} | {fmt_name(f.codec)} | {f.quality} | {size:,} "
                f"| {_x(size / r.jpeg_bytes)} | {score:.4f} | {r.jpeg_ssim:.4f} "
                f"| {times[(f.codec, f.quality)][i]:.1f} |"
            )
    lines.append(
        f"| all three | JPEG | {JPEG_QUALITY} | {totals['JPEG']:,} | 1.000x | | "
        f"| {sum(jpeg_ms):.1f} |"
    )
    for f in chosen:
        assert f.quality is not None
        total = totals[f.codec.fmt]
        lines.append(
            f"| all three | {fmt_name(f.codec)} | {f.quality} | {total:,} "
            f"| {_x(total / totals['JPEG'])} | | | {sum(times[(f.codec, f.quality)]):.1f} |"
        )
    return [*lines, ""]


def sweep_table(
    title: str, sources: list[Source], found: dict[Codec, Found], times: Times
) -> list[str]:
    renditions = [r.name for r in sources[0].renditions]
    jpeg_ms = sum(times[(None, JPEG_QUALITY)])
    lines = [
        title,
        "",
        "| setting | one quality | "
        + " | ".join(f"bytes / JPEG, {s.name[:-2]} MP" for s in sources)
        + f" | lowest quality per rendition ({', '.join(renditions)}), "
        + ", ".join(f"{s.name[:-2]} MP" for s in sources)
        + f" | encode ms, {BUDGET_INPUT[:-2]} MP, all three | / JPEG's |",
        "|---|---:|" + "---:|" * len(sources) + "---|---:|---:|",
    ]
    for codec, f in found.items():
        lows = "; ".join(
            ", ".join(str(f.per_rendition[(s.name, r)] or "-") for r in renditions) for s in sources
        )
        if f.quality is None:
            dashes = " | ".join("-" for _ in sources)
            lines.append(f"| {codec.label} | none | {dashes} | {lows} | - | - |")
            continue
        ms = sum(times[(codec, f.quality)])
        ratios = " | ".join(_x(f.ratio(s)) for s in sources)
        lines.append(
            f"| {codec.label} | {f.quality} | {ratios} | {lows} | {ms:.1f} | {ms / jpeg_ms:.0f}x |"
        )
    return [*lines, ""]


def concurrency_table(title: str, rows: list[Concurrency]) -> list[str]:
    lines = [title, "", "| encodes | serial ms | 2-thread pool ms | pool / serial |"]
    lines.append("|---|---:|---:|---:|")
    for c in rows:
        lines.append(
            f"| {c.label} | {c.serial_ms:.1f} | {c.pooled_ms:.1f} "
            f"| {_x(c.pooled_ms / c.serial_ms)} |"
        )
    return [*lines, ""]


# ---------------------------------------------------------------- main


def process_ms(renditions: str, repeats: int) -> float:
    """Median ms of ``process_image`` (JPEG renditions only) on the budget input."""
    data = jpeg_bytes(*SIZES[BUDGET_INPUT])
    options = ImagingOptions(parse_renditions(renditions), "jpeg", JPEG_QUALITY)
    samples = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        imaging_pipeline.process_image(data, options)
        if i:
            samples.append(time.perf_counter() - start)
    return median_ms(samples)


Job = tuple[Codec | None, int]
JPEG_JOB: Job = (None, JPEG_QUALITY)


def job(c: Candidate) -> Job:
    assert c.found.quality is not None
    return (c.codec, c.found.quality)


def threads_label(t: int) -> str:
    return f"{t} thread{'s' * (t > 1)}"


@dataclass
class Run:
    """Everything measured, for the report."""

    sources: list[Source]
    base: dict[Codec, Found]
    options: dict[Codec, Found]
    trials: list[Trial]
    adopted: dict[str, Any]
    combined: dict[Codec, Found]
    webp: dict[Codec, Found]
    times: dict[str, Times]
    gil: list[Concurrency]
    pooled: bool
    processing: float
    avif: Candidate
    webp_choice: Candidate
    notes: list[str]
    thread_check: list[Concurrency]
    handler: tuple[float, float] | None
    handler_error: str
    chosen_conc: list[Concurrency]


def measure(args: argparse.Namespace, progress: Callable[[str], None]) -> Run:
    repeats = 3 if args.quick else args.repeats
    speeds = sorted(QUICK_SPEEDS if args.quick else SPEEDS, reverse=True)
    methods = QUICK_METHODS if args.quick else METHODS
    progress("inputs, their renditions and JPEGs")
    sources = [make_source(name, args.renditions) for name in INPUTS]
    check_ssim(sources[0])
    budget = next(s for s in sources if s.name == BUDGET_INPUT)

    # 1. Every speed and thread count (libavif's defaults otherwise), options
    #    at the fast speeds, WebP methods; then every setting timed at its quality.
    base = sweep(sources, [Codec("AVIF", s, t) for s in speeds for t in THREADS], progress)
    fast = [s for s in speeds if s in FAST_SPEEDS]
    trial_codecs = {
        (name, s): replace(Codec("AVIF", s, 1), **change)
        for name, change in OPTIONS.items()
        for s in fast
    }
    options = sweep(sources, trial_codecs.values(), progress, answers(base))
    webp = sweep(sources, [Codec("WEBP", m) for m in methods], progress)
    found = {**base, **options, **webp}
    progress(f"timing every setting at its quality, {BUDGET_INPUT}")
    jobs: list[Job] = [JPEG_JOB, *((c, f.quality) for c, f in found.items() if f.quality)]
    timed = time_encodes(budget, jobs, repeats)

    # 2. Options that help at every fast speed: merged, at every speed and thread count.
    def worst(codec: Codec) -> float:
        f = found[codec]
        return max(f.ratio(s) for s in sources) if f.quality is not None else float("inf")

    def total_ms(codec: Codec) -> float:
        q = found[codec].quality
        return sum(timed[(codec, q)]) if q is not None else float("inf")

    trials = []
    for (name, _), codec in trial_codecs.items():
        plain = Codec("AVIF", codec.speed, codec.threads)
        trials.append(
            Trial(
                name, codec, plain, worst(codec) / worst(plain), total_ms(codec) / total_ms(plain)
            )
        )
    adopted = adopted_change(trials, fast)
    combined: dict[Codec, Found] = {}
    if adopted:
        codecs = [replace(Codec("AVIF", s, t), **adopted) for s in speeds for t in THREADS]
        combined = sweep(sources, codecs, progress, answers(base))
        found.update(combined)
        more = [(c, f.quality) for c, f in combined.items() if f.quality is not None]
        timed.update(time_encodes(budget, [JPEG_JOB, *more], repeats))
    jpeg_ms = timed[JPEG_JOB]
    times = {budget.name: timed}

    # 3. Do the encoders release the GIL? The fastest settings, serial and pooled.
    progress("serial against pooled, fastest settings")
    avifs = candidates(sources, {**base, **combined}, timed)
    webps = candidates(sources, webp, timed)
    fastest = {
        t: min((c for c in avifs if c.codec.threads == t), key=lambda c: c.total_ms)
        for t in THREADS
    }
    fast_webp = min(webps, key=lambda c: c.total_ms)
    cases: list[tuple[str, list[Job]]] = [
        ("JPEG", [JPEG_JOB]),
        (f"{fast_webp.codec.label}, q{fast_webp.found.quality}", [job(fast_webp)]),
        *((f"{c.codec.label}, q{c.found.quality}", [job(c)]) for c in fastest.values()),
        *(
            (f"JPEG + AVIF ({threads_label(t)}) + WebP", [JPEG_JOB, job(c), job(fast_webp)])
            for t, c in fastest.items()
        ),
    ]
    gil = concurrency(budget, cases, repeats)
    both = gil[-len(THREADS) :]
    pooled = min(c.pooled_ms for c in both) < 0.9 * min(c.serial_ms for c in both)

    # 4. Choose against the upload's processing time; check the threads by
    #    measuring; then against the handler's time, measured with the choice.
    progress("process_image, 12 MP")
    processing = process_ms(args.renditions, repeats)
    avif_c, webp_c, notes = choose(avifs, webps, jpeg_ms, processing, pooled)

    def check_threads(avif_c: Candidate) -> tuple[Candidate, list[Concurrency]]:
        """The chosen AVIF setting at each thread count, with WebP, as the pipeline runs them."""
        same = [c for c in avifs if replace(c.codec, threads=1) == replace(avif_c.codec, threads=1)]
        rows = concurrency(
            budget,
            [
                (f"JPEG + {c.codec.label} + WebP", [JPEG_JOB, job(c), job(webp_c)])
                for c in sorted(same, key=lambda c: c.codec.threads)
            ],
            repeats,
        )
        wall = [r.pooled_ms if pooled else r.serial_ms for r in rows]
        return sorted(same, key=lambda c: c.codec.threads)[wall.index(min(wall))], rows

    progress("the chosen AVIF setting at 1 and 2 threads")
    avif_c, thread_check = check_threads(avif_c)
    handler: tuple[float, float] | None = None
    handler_error = ""
    if not args.no_handler:
        for _ in range(3):
            progress(f"handler with {avif_c.codec.label} q{avif_c.found.quality}, "
                     f"{webp_c.codec.label} q{webp_c.found.quality}")  # fmt: skip
            try:
                handler = handler_ms(avif_c.found, webp_c.found, max(repeats, 5))
            except Exception as exc:  # the pipeline is others' work in progress
                handler_error = f"{type(exc).__name__}: {exc}"
                break
            if handler[1] / handler[0] > HANDLER_BUDGET:  # over: only faster AVIF settings
                avifs = [c for c in avifs if c.total_ms < avif_c.total_ms] or avifs
            again = choose(avifs, webps, jpeg_ms, handler[0], pooled)
            if (again[0].codec, again[1].codec) == (avif_c.codec, webp_c.codec):
                break
            avif_c, webp_c, notes = again
            avif_c, thread_check = check_threads(avif_c)

    progress("serial against pooled, chosen settings")
    chosen_jobs = [JPEG_JOB, job(avif_c), job(webp_c)]
    chosen_conc = concurrency(
        budget, [("JPEG", [JPEG_JOB]), ("JPEG + chosen AVIF + chosen WebP", chosen_jobs)], repeats
    )
    progress("timing the chosen settings on the other inputs")
    for source in sources:
        if source is not budget:
            times[source.name] = time_encodes(source, chosen_jobs, repeats)
    return Run(
        sources, base, options, trials, adopted, combined, webp, times, gil, pooled, processing,
        avif_c, webp_c, notes, thread_check, handler, handler_error, chosen_conc,
    )  # fmt: skip


def report(run: Run, args: argparse.Namespace, header: list[str], minutes: float) -> list[str]:
    repeats = 3 if args.quick else args.repeats
    budget = next(s for s in run.sources if s.name == BUDGET_INPUT)
    timed = run.times[budget.name]
    jpeg_ms = timed[JPEG_JOB]
    a, w = run.avif.codec, run.webp_choice.codec
    conc = run.chosen_conc
    extra = (
        conc[1].pooled_ms - conc[0].pooled_ms
        if run.pooled
        else conc[1].serial_ms - conc[0].serial_ms
    )
    both = run.gil[-len(THREADS) :]
    best_serial = min(c.serial_ms for c in both)
    best_pooled = min(c.pooled_ms for c in both)
    command = " ".join([".venv/bin/python -m bench.formats", *sys.argv[1:]])
    out = [
        "# AVIF and WebP alternates against the JPEG rendition",
        "",
        f"`{command} > bench/results/formats.md` (took {minutes:.1f} min)",
        "",
        *header,
        f"- load average at the end {os.getloadavg()[0]:.2f}",
        f"- renditions `{args.renditions}` of `bench/inputs.py` photos (JPEG q90 uploads); "
        f"the JPEG rendition at q{JPEG_QUALITY} through the project's `encode()` "
        f"({project_encode.JPEG_PARAMS}); SSIM of each encoded rendition against its pixels "
        "before encoding (`rendition_images`), the mean over R, G and B as "
        "`bench/imaging.py` computes it",
        "- one quality per setting: the smallest at which every rendition of every input "
        "reaches its JPEG's SSIM; bytes / JPEG: the three renditions of an input together",
        f"- encode ms: median of {repeats} (after one untimed), interleaved across settings; "
        "the machine is shared and noisy: compare within this run",
        "",
        "## Chosen",
        "",
        f"- `AVIF_QUALITY` **{run.avif.found.quality}**, speed **{a.speed}**, threads "
        f"**{a.threads}**, subsampling **{a.subsampling}**"
        + (f", aom options `{dict(a.advanced)}` (Pillow's `advanced=`)" if a.advanced else "")
        + (f", `tile_cols={a.tile_cols}`" if a.tile_cols else ""),
        f"- `WEBP_QUALITY` **{run.webp_choice.found.quality}**, `WEBP_METHOD` **{w.speed}**",
        f"- bytes / JPEG, worst input: AVIF {_x(run.avif.worst_ratio)} (target {AVIF_TARGET}x), "
        f"WebP {_x(run.webp_choice.worst_ratio)} (target {WEBP_TARGET}x)",
        f"- encodes {'in a 2-thread pool' if run.pooled else 'serially'}: the encoders release "
        f"the GIL{'' if run.pooled else ' too little to matter'} (JPEG, AVIF and WebP of "
        f"three renditions, fastest settings: pool / serial {_x(best_pooled / best_serial)}); "
        f"on the 12 MP upload the chosen alternates add {extra:.0f} ms (measured; "
        f"{extra_ms(jpeg_ms, run.avif, run.webp_choice, run.pooled):.0f} ms estimated from "
        f"single encodes) to a {run.processing:.0f} ms `process_image` without them",
    ]
    if run.handler is not None:
        h0, h1 = run.handler
        out.append(
            f"- the handler (in-process imaging, against a moto server): {h0:.0f} ms without "
            f"`FORMATS`, {h1:.0f} ms with `FORMATS=avif,webp`: **{h1 / h0:.2f}x** "
            f"(budget {HANDLER_BUDGET}x)"
        )
    else:
        bound = (run.processing + extra) / run.processing
        out.append(
            f"- handler not measured ({run.handler_error or '--no-handler'}); at most "
            f"{bound:.2f}x, the handler without alternates being no faster than its "
            "`process_image`"
        )
    out += [f"- {n}" for n in run.notes]
    out += ["", "## Per input: the chosen settings", ""]
    for source in run.sources:
        out += size_table(source, [run.avif.found, run.webp_choice.found], run.times[source.name])
    out += sweep_table("## AVIF: speed and threads", run.sources, run.base, timed)
    same = duplicates(run.sources, {**run.base, **run.options, **run.combined})
    if same:
        out += [
            "Identical bytes: "
            + "; ".join(f"{c.label} = {d.label}" for c, d in same)
            + " (aom's all-intra mode, which libavif uses for still images, stops at "
            "speed 9; at speeds 9-10 threads split the work without changing it).",
            "",
        ]
    out += sweep_table("## AVIF: options, at the fast speeds", run.sources, run.options, timed)
    out += ["Each against the same speed and threads without it (bytes at its one quality):", ""]
    out += [
        f"- {t.codec.label}: bytes {_x(t.bytes_ratio)}, time {_x(t.time_ratio)}" for t in run.trials
    ]
    out.append(
        f"- libavif's default (no `advanced`) writes {default_tune(budget)} "
        f"({budget.renditions[len(budget.renditions) // 2].name}, speed 9, q70)"
    )
    keywords = avif_save_options()
    qmin = "qmin/qmax are" if {"qmin", "qmax"} <= set(keywords) else "no qmin/qmax: quality is"
    out += [
        f"- Pillow's AVIF `save()` reads {', '.join(f'`{k}`' for k in keywords)} ({qmin} "
        "the only rate control); `codec` offers aom alone here, `advanced` passes aom's own "
        "key=value options (an unknown key fails the encode)",
        f"- adopted (saves more than {OPTION_GAIN:.0%} at every fast speed, time under "
        f"{OPTION_TIME}x): {run.adopted or 'none'}",
        "",
    ]
    if run.combined:
        out += sweep_table(
            f"## AVIF with {run.adopted}: speed and threads", run.sources, run.combined, timed
        )
    out += sweep_table("## WebP: method", run.sources, run.webp, timed)
    out += concurrency_table(
        f"## Serial against a 2-thread pool, fastest settings ({BUDGET_INPUT[:-2]} MP, "
        f"all three renditions, median of {repeats}, interleaved)",
        run.gil,
    )
    out += concurrency_table("## The chosen AVIF setting at 1 and 2 threads", run.thread_check)
    out += concurrency_table("## Serial against a 2-thread pool, chosen settings", conc)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each encode")
    parser.add_argument(
        "--quick", action="store_true", help="3 repeats, AVIF speeds 8-10, WebP methods 0/2/4/6"
    )
    parser.add_argument("--no-handler", action="store_true", help="skip the handler (moto) run")
    parser.add_argument("--renditions", default=DEFAULT_RENDITIONS)
    args = parser.parse_args()
    started = time.perf_counter()

    def progress(text: str) -> None:
        print(f"  [{time.perf_counter() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    header = machine()
    run = measure(args, progress)
    print("\n".join(report(run, args, header, (time.perf_counter() - started) / 60)))


if __name__ == "__main__":
    main()
