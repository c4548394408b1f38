"""AVIF and WebP alternates against the JPEG rendition: qualities, speeds, threads.

    .venv/bin/python -m bench.formats [--repeats 5] [--quick] [--no-handler]
                                      [--renditions SPEC] [--photos NAMES]
                                      > bench/results/formats.md

Chooses the defaults of ``AVIF_QUALITY`` (with the AVIF encoder's speed,
threads and options) and ``WEBP_QUALITY`` (with the WebP method) on a corpus
of real photographs (``bench/photos.py``: eight 2560x1600 JPEGs, each uploaded
as it is, its own bytes). The criterion, per rendition size: the alternates'
mean SSIM over the photos (against the pixels before encoding, the mean over
R, G and B as ``bench/imaging.py`` computes it) at least the mean SSIM of the
JPEG renditions at ``JPEG_QUALITY`` (85, with the project's ``encode()``
parameters). A setting's quality is the lowest passing at every rendition
size; its bytes are every rendition of every photo summed, against the
JPEGs'. One hard photo moves a mean rather than setting the quality for all;
so that nothing hides in the mean, the report gives the ratio per photo (min,
median, max) and, for the chosen settings, the strict quality: the lowest at
which every rendition of every photo reaches its own JPEG's SSIM.

The pixels before encoding come from
``chalicelib.imaging.pipeline.rendition_images``. For every encoder
configuration and rendition size, the lowest passing quality is found by
bisection (started from the previous configuration's answer, then
galloping). Encode times are medians of ``--repeats`` runs, interleaved
across configurations so that a neighbour's load on a shared machine falls
on all alike, taken on the renditions of the 12 MP ``bench/inputs.py`` upload
the handler budget is stated for (encode time follows the pixel count far
more than the content: the report compares the chosen settings' ms per
megapixel on the photos with the 12 MP input's).

Then, on the 12 MP input: encoding the alternates of all three renditions
serially and in a 2-thread pool (do the encoders release the GIL?), and,
unless ``--no-handler``, the whole created-event handler (in-process imaging,
against a moto server) without ``FORMATS`` and with ``FORMATS=avif,webp`` at
the chosen settings, alternating event by event. The choice is made within the
handler budget as estimated from the single encodes, scaled by what the last
measurement showed, and measured again until it holds.

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
import math
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
from bench import photos as bench_photos
from bench.inputs import SIZES, jpeg_bytes
from chalicelib.imaging import ImagingOptions, parse_renditions
from chalicelib.imaging import encode as project_encode
from chalicelib.imaging import pipeline as imaging_pipeline
from chalicelib.settings import DEFAULT_RENDITIONS

JPEG_QUALITY = 85
# The upload the timings and the handler budget are measured on.
BUDGET_INPUT = "12mp"
SPEEDS = (6, 7, 8, 9, 10)
QUICK_SPEEDS = (8, 9, 10)
THREADS = (1, 2)
# Searched at 2 threads only: at either thread count these take several times
# speed 9's time, far outside the handler budget; they are there for their bytes.
SLOW_SPEEDS = (6, 7)
METHODS = (0, 1, 2, 3, 4, 5, 6)
QUICK_METHODS = (0, 2, 4, 6)
# Targets from the issue: bytes of the alternate against the JPEG's (every
# rendition of every photo together), at an SSIM at least the JPEG's; the
# handler with FORMATS=avif,webp at most HANDLER_BUDGET times the handler
# without (12 MP upload, 2 cores).
AVIF_TARGET = 0.65
WEBP_TARGET = 0.90
HANDLER_BUDGET = 3.0
# Handler measurements at most, choosing again after each.
HANDLER_RUNS = 4
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
        """``img`` in the mode the project's ``encode()`` gives this format (a
        greyscale rendition becomes RGB), then saved with ``params``."""
        buffer = io.BytesIO()
        project_encode._for_format(img, self.fmt).save(buffer, self.fmt, **self.params(quality))
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
    image: Image.Image  # the pixels before encoding
    scores: dict[tuple[Codec, int], tuple[int, float]] = field(default_factory=dict)
    digests: dict[tuple[Codec, int], bytes] = field(default_factory=dict)
    by_digest: dict[bytes, float] = field(default_factory=dict)

    @functools.cached_property
    def ref(self) -> Reference:
        return Reference(self.image)

    @functools.cached_property
    def jpeg_data(self) -> bytes:
        return jpeg(self.image)

    @property
    def jpeg_bytes(self) -> int:
        return len(self.jpeg_data)

    @functools.cached_property
    def jpeg_ssim(self) -> float:
        return self.ref.ssim(self.jpeg_data)

    @property
    def label(self) -> str:
        return f"{self.name} {self.image.width}x{self.image.height}"

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
        """Whether this rendition alone reaches its JPEG's SSIM (the strict criterion)."""
        return self.score(codec, quality)[1] >= self.jpeg_ssim


@dataclass
class Source:
    name: str  # a photo's name, or "12mp"
    size: int  # bytes of the upload
    width: int
    height: int
    mode: str  # the upload's ("L": greyscale, whose JPEG renditions have one channel)
    renditions: list[Rendition]

    @property
    def title(self) -> str:
        return f"{self.name} ({self.width}x{self.height} JPEG, {self.size:,} bytes)"

    @property
    def jpeg_bytes(self) -> int:
        return sum(r.jpeg_bytes for r in self.renditions)

    def ratio(self, codec: Codec, quality: int) -> float:
        """Bytes of all renditions at ``quality``, against the JPEGs'."""
        return sum(r.score(codec, quality)[0] for r in self.renditions) / self.jpeg_bytes

    @property
    def pixels(self) -> int:
        return sum(r.image.width * r.image.height for r in self.renditions)


def make_source(name: str, data: bytes, renditions: str) -> Source:
    """The upload ``data`` and the pixels ``process_image`` would encode for each rendition."""
    specs = parse_renditions(renditions)
    images = imaging_pipeline.rendition_images(data, ImagingOptions(specs, "jpeg", JPEG_QUALITY))
    with Image.open(io.BytesIO(data)) as img:
        width, height, mode = *img.size, img.mode
    return Source(
        name,
        len(data),
        width,
        height,
        mode,
        [Rendition(spec.name, image) for spec, image in zip(specs, images, strict=True)],
    )


@dataclass
class Corpus:
    """The photos, and the criterion over them: per rendition size, the mean SSIM."""

    sources: list[Source]

    @property
    def sizes(self) -> list[str]:
        return [r.name for r in self.sources[0].renditions]

    def of(self, size: str) -> list[Rendition]:
        return [r for s in self.sources for r in s.renditions if r.name == size]

    def jpeg_ssim(self, size: str) -> float:
        return statistics.fmean(r.jpeg_ssim for r in self.of(size))

    def mean_ssim(self, codec: Codec, quality: int, size: str) -> float:
        return statistics.fmean(r.score(codec, quality)[1] for r in self.of(size))

    def ok(self, codec: Codec, size: str, quality: int) -> bool:
        """The corpus criterion at one rendition size."""
        return self.mean_ssim(codec, quality, size) >= self.jpeg_ssim(size)

    @property
    def jpeg_bytes(self) -> int:
        return sum(s.jpeg_bytes for s in self.sources)

    def ratio(self, codec: Codec, quality: int) -> float:
        """Bytes of every rendition of every photo at ``quality``, against the JPEGs'."""
        ours = sum(r.score(codec, quality)[0] for s in self.sources for r in s.renditions)
        return ours / self.jpeg_bytes

    def size_ratio(self, codec: Codec, quality: int, size: str) -> float:
        renditions = self.of(size)
        ours = sum(r.score(codec, quality)[0] for r in renditions)
        return ours / sum(r.jpeg_bytes for r in renditions)

    def below(self, codec: Codec, quality: int, size: str) -> list[str]:
        """The photos whose rendition ``size`` stays under its own JPEG's SSIM."""
        return [
            s.name
            for s in self.sources
            for r in s.renditions
            if r.name == size and not r.ok(codec, quality)
        ]

    def digests(self, codec: Codec, quality: int) -> tuple[bytes, ...]:
        return tuple(r.digests[(codec, quality)] for s in self.sources for r in s.renditions)


def load_corpus(names: str, renditions: str) -> Corpus:
    photos = bench_photos.corpus()
    if names:
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {name for name, _ in photos})
        if unknown:
            raise SystemExit(f"--photos: no photo named {', '.join(unknown)}")
        photos = [(name, data) for name, data in photos if name in wanted]
    return Corpus([make_source(name, data, renditions) for name, data in photos])


def check_ssim(source: Source) -> None:
    """This file's SSIM is ``bench.imaging.ssim``'s, to the last bit."""
    r = min(source.renditions, key=lambda r: r.image.width)
    with Image.open(io.BytesIO(r.jpeg_data)) as decoded:
        theirs = bench_imaging.ssim(np, r.image.convert("RGB"), decoded.convert("RGB"))
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


def one_quality(lowest: Iterable[int | None], passes: Callable[[int], bool]) -> int | None:
    """The smallest quality, from the highest of the ``lowest``, at which ``passes``
    holds (SSIM is not quite monotonic in quality); None if there is none."""
    values = list(lowest)
    if any(q is None for q in values):
        return None
    quality = max(q for q in values if q is not None)
    while quality <= 100 and not passes(quality):
        quality += 1
    return quality if quality <= 100 else None


@dataclass
class Found:
    """A codec's answer over the corpus."""

    codec: Codec
    per_size: dict[str, int | None]  # rendition size -> lowest q passing the corpus criterion
    quality: int | None  # one value for all sizes, None when some size cannot reach the JPEG
    ratio: float = math.inf  # corpus bytes at ``quality``, against the JPEGs'
    photo_ratios: dict[str, float] = field(default_factory=dict)  # per photo, likewise


def search(corpus: Corpus, codec: Codec, guesses: dict[str, int]) -> Found:
    """Per rendition size, the lowest quality passing the corpus criterion; then one for all."""
    per: dict[str, int | None] = {}
    for size in corpus.sizes:
        ok = functools.partial(corpus.ok, codec, size)
        per[size] = lowest_passing(ok, codec.lowest, 100, guesses.get(size, codec.first_guess))
    quality = one_quality(
        per.values(), lambda q: all(corpus.ok(codec, size, q) for size in corpus.sizes)
    )
    if quality is None:
        return Found(codec, per, None)
    photo_ratios = {s.name: s.ratio(codec, quality) for s in corpus.sources}
    return Found(codec, per, quality, corpus.ratio(codec, quality), photo_ratios)


@dataclass
class Strict:
    """The worst case: one quality at which every rendition of every photo
    reaches its own JPEG's SSIM."""

    codec: Codec
    per_rendition: dict[tuple[str, str], int | None]  # (photo, size) -> lowest q
    quality: int | None
    ratio: float = math.inf
    photo_ratios: dict[str, float] = field(default_factory=dict)

    @property
    def binding(self) -> list[str]:
        """The renditions that need ``quality`` (or more, alone)."""
        hardest = max((q or 101) for q in self.per_rendition.values())
        return [f"{p} {s}" for (p, s), q in self.per_rendition.items() if (q or 101) == hardest]


def strict(corpus: Corpus, found: Found) -> Strict:
    codec = found.codec
    guess = found.quality or codec.first_guess
    per: dict[tuple[str, str], int | None] = {}
    for s in corpus.sources:
        for r in s.renditions:
            ok = functools.partial(r.ok, codec)
            per[(s.name, r.name)] = lowest_passing(ok, codec.lowest, 100, guess)
    everything = [r for s in corpus.sources for r in s.renditions]
    quality = one_quality(per.values(), lambda q: all(r.ok(codec, q) for r in everything))
    if quality is None:
        return Strict(codec, per, None)
    photo_ratios = {s.name: s.ratio(codec, quality) for s in corpus.sources}
    return Strict(codec, per, quality, corpus.ratio(codec, quality), photo_ratios)


def sweep(
    corpus: Corpus,
    codecs: Iterable[Codec],
    progress: Callable[[str], None],
    guesses: dict[str, int] | None = None,
) -> dict[Codec, Found]:
    """``search`` for each codec in turn, each starting from the last one's answers."""
    found: dict[Codec, Found] = {}
    guesses = dict(guesses or {})
    for codec in codecs:
        progress(f"searching {codec.label}")
        found[codec] = result = search(corpus, codec, guesses)
        guesses.update({k: q for k, q in result.per_size.items() if q is not None})
    return found


def answers(found: dict[Codec, Found]) -> dict[str, int]:
    """The last configuration's lowest qualities, as guesses for the next sweep."""
    last = list(found.values())[-1]
    return {k: q for k, q in last.per_size.items() if q is not None}


# ---------------------------------------------------------------- timing


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def time_encodes(
    sources: list[Source], jobs: list[tuple[Codec | None, int]], repeats: int
) -> dict[str, dict[tuple[Codec | None, int], list[float]]]:
    """Per source, the median ms of each (codec or None for JPEG, quality) per rendition.

    One untimed encode each, then ``repeats`` rounds over every source and job in turn.
    """
    samples: dict[tuple[str, Codec | None, int, int], list[float]] = {}
    for round_no in range(repeats + 1):
        for source in sources:
            for codec, quality in jobs:
                for i, r in enumerate(source.renditions):
                    start = time.perf_counter()
                    if codec is None:
                        jpeg(r.image)
                    else:
                        codec.encode(r.image, quality)
                    if round_no:
                        key = (source.name, codec, quality, i)
                        samples.setdefault(key, []).append(time.perf_counter() - start)
    return {
        s.name: {
            (codec, quality): [
                median_ms(samples[(s.name, codec, quality, i)]) for i in range(len(s.renditions))
            ]
            for codec, quality in jobs
        }
        for s in sources
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
    "sharpness=2": {"advanced": (("sharpness", "2"),)},
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
    ms: list[float]  # per rendition, on the budget input

    @property
    def codec(self) -> Codec:
        return self.found.codec

    @property
    def ratio(self) -> float:
        return self.found.ratio

    @property
    def quality(self) -> int:
        assert self.found.quality is not None
        return self.found.quality

    @property
    def total_ms(self) -> float:
        return sum(self.ms)

    @property
    def title(self) -> str:
        return f"{self.codec.label}, q{self.quality}"


def candidates(corpus: Corpus, found: dict[Codec, Found], times: Times) -> list[Candidate]:
    """Each setting that reaches the JPEG's SSIM, once per distinct output: a
    setting writing the very bytes of a slower-numbered one (AVIF speed 10 and
    9, in aom's all-intra mode) is left out."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for codec, f in sorted(found.items()):
        if f.quality is None:
            continue
        same = (codec.fmt, codec.threads, f.quality, corpus.digests(codec, f.quality))
        if same in seen:
            continue
        seen.add(same)
        out.append(Candidate(f, times[(codec, f.quality)]))
    return out


def duplicates(corpus: Corpus, found: dict[Codec, Found]) -> list[tuple[Codec, Codec]]:
    """(setting, the slower-numbered one whose bytes it writes), for the report."""
    kept: dict[tuple[Any, ...], Codec] = {}
    pairs = []
    for codec, f in sorted(found.items()):
        if f.quality is None:
            continue
        key = (codec.fmt, f.quality, corpus.digests(codec, f.quality))
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
    within = [c for c in options if c.ratio <= limit] or options
    best = min(c.ratio for c in within)
    return min((c for c in within if c.ratio <= best * (1 + SAME_BYTES)), key=lambda c: c.total_ms)


@dataclass(frozen=True)
class Budget:
    """What the alternates may add: ``allowance`` ms, against the single
    encodes' estimate (``extra_ms``) times a scale from a measurement, one per
    AVIF thread count (the estimate's model differs between them)."""

    allowance: float
    scales: dict[int, float]
    basis: str

    def cost(self, jpeg_ms: list[float], a: Candidate, w: Candidate, pooled: bool) -> float:
        return self.scales[a.codec.threads] * extra_ms(jpeg_ms, a, w, pooled)

    def measured(self, allowance: float, threads: int, scale: float, basis: str) -> Budget:
        """This budget after a measurement that found ``scale`` at ``threads``:
        the other thread counts' scales moved by the same factor."""
        factor = scale / self.scales[threads]
        return Budget(allowance, {t: v * factor for t, v in self.scales.items()}, basis)


def choose(
    avifs: list[Candidate],
    webps: list[Candidate],
    jpeg_ms: list[float],
    budget: Budget,
    pooled: bool,
) -> tuple[Candidate, Candidate, bool]:
    """Within the budget, the smallest AVIF (the preferred alternate), then the
    smallest WebP in the time left; near-ties go to the faster. Also whether
    anything fitted (else the fastest AVIF and WebP)."""
    fastest_webp = min(webps, key=lambda c: c.total_ms)
    fitting = [
        a for a in avifs if budget.cost(jpeg_ms, a, fastest_webp, pooled) <= budget.allowance
    ]
    fits = bool(fitting)
    if not fitting:
        fitting = [min(avifs, key=lambda c: budget.cost(jpeg_ms, c, fastest_webp, pooled))]
    avif = pick(fitting, AVIF_TARGET)
    webp_fitting = [w for w in webps if budget.cost(jpeg_ms, avif, w, pooled) <= budget.allowance]
    return avif, pick(webp_fitting or [fastest_webp], WEBP_TARGET), fits


@dataclass(frozen=True)
class Trial:
    option: str
    codec: Codec
    plain: Codec  # the same speed and threads without the option
    bytes_ratio: float  # corpus bytes at its one quality, against plain's
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


def spread_of(values: Iterable[float]) -> tuple[float, float, float]:
    v = list(values)
    return min(v), statistics.median(v), max(v)


def spread(values: Iterable[float]) -> str:
    return " / ".join(_x(v) for v in spread_of(values))


def lows(q: Iterable[int | None]) -> str:
    return ", ".join(str(v) if v is not None else "-" for v in q)


def size_table(source: Source, chosen: list[Candidate], times: Times) -> list[str]:
    lines = [
        f"### {source.title}",
        "",
        "| rendition | format | quality | bytes | bytes / JPEG | SSIM | JPEG SSIM | encode ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    jpeg_ms = times[(None, JPEG_QUALITY)]
    totals = {"JPEG": source.jpeg_bytes}
    for i, r in enumerate(source.renditions):
        lines.append(
            f"| {r.label} | JPEG | {JPEG_QUALITY} | {r.jpeg_bytes:,} | 1.000x "
            f"| {r.jpeg_ssim:.4f} | {r.jpeg_ssim:.4f} | {jpeg_ms[i]:.1f} |"
        )
        for c in chosen:
            size, score = r.score(c.codec, c.quality)
            mark = "" if r.ok(c.codec, c.quality) else " *"
            totals[c.codec.fmt] = totals.get(c.codec.fmt, 0) + size
            lines.append(
                f"| {r.label} | {fmt_name(c.codec)} | {c.quality} | {size:,} "
                f"| {_x(size / r.jpeg_bytes)} | {score:.4f}{mark} "
                f"| {r.jpeg_ssim:.4f} | {times[(c.codec, c.quality)][i]:.1f} |"
            )
    lines.append(
        f"| all three | JPEG | {JPEG_QUALITY} | {totals['JPEG']:,} | 1.000x | | "
        f"| {sum(jpeg_ms):.1f} |"
    )
    for c in chosen:
        total = totals[c.codec.fmt]
        lines.append(
            f"| all three | {fmt_name(c.codec)} | {c.quality} | {total:,} "
            f"| {_x(total / totals['JPEG'])} | | | {sum(times[(c.codec, c.quality)]):.1f} |"
        )
    return [*lines, ""]


def criterion_table(corpus: Corpus, chosen: list[Candidate]) -> list[str]:
    head = "| rendition | JPEG q85: bytes, mean SSIM |"
    rule = "|---|---:|"
    for c in chosen:
        name = f"{fmt_name(c.codec)} q{c.quality}"
        head += (
            f" {name}: bytes / JPEG | {name}: mean SSIM | {name}: photos under their JPEG's SSIM |"
        )
        rule += "---:|---:|---|"
    lines = [head, rule]
    for size in corpus.sizes:
        jpeg_total = sum(r.jpeg_bytes for r in corpus.of(size))
        row = f"| {size} | {jpeg_total:,}, {corpus.jpeg_ssim(size):.4f} |"
        for c in chosen:
            below = corpus.below(c.codec, c.quality, size)
            names = f": {', '.join(below)}" if below else ""
            row += (
                f" {_x(corpus.size_ratio(c.codec, c.quality, size))} "
                f"| {corpus.mean_ssim(c.codec, c.quality, size):.4f} "
                f"| {len(below)} of {len(corpus.sources)}{names} |"
            )
        lines.append(row)
    return [*lines, ""]


def photo_table(corpus: Corpus, chosen: list[Candidate], stricts: list[Strict]) -> list[str]:
    head = "| photo | upload bytes, mode | JPEG bytes, three renditions |"
    rule = "|---|---:|---:|"
    for c in chosen:
        head += f" {fmt_name(c.codec)} q{c.quality}: bytes / JPEG |"
        rule += "---:|"
    for s in stricts:
        head += f" {fmt_name(s.codec)}: own lowest quality ({', '.join(corpus.sizes)}) |"
        rule += "---|"
    lines = [head, rule]
    for source in corpus.sources:
        row = f"| {source.name} | {source.size:,}, {source.mode} | {source.jpeg_bytes:,} |"
        for c in chosen:
            row += f" {_x(c.found.photo_ratios[source.name])} |"
        for s in stricts:
            row += f" {lows(s.per_rendition[(source.name, size)] for size in corpus.sizes)} |"
        lines.append(row)
    return [*lines, ""]


def timing_table(
    budget: Source, corpus: Corpus, chosen: list[Candidate], times: dict[str, Times]
) -> list[str]:
    """The chosen encodes on the budget input's renditions, and per megapixel
    on it and on the photos (timed together, interleaved)."""
    jobs: list[tuple[str, Job]] = [
        ("JPEG", JPEG_JOB),
        *((fmt_name(c.codec), job(c)) for c in chosen),
    ]
    lines = [
        "| rendition | " + " | ".join(f"{name} ms" for name, _ in jobs) + " |",
        "|---|" + "---:|" * len(jobs),
    ]
    mine = times[budget.name]
    for i, r in enumerate(budget.renditions):
        lines.append(f"| {r.label} | " + " | ".join(f"{mine[j][i]:.1f}" for _, j in jobs) + " |")
    lines.append("| all three | " + " | ".join(f"{sum(mine[j]):.1f}" for _, j in jobs) + " |")

    def per_mp(source: Source, j: Job) -> float:
        return sum(times[source.name][j]) / (source.pixels / 1e6)

    def row(label: str, cell: Callable[[Job], str]) -> str:
        return f"| {label} | " + " | ".join(cell(j) for _, j in jobs) + " |"

    lines += [
        row(
            f"ms per megapixel, {BUDGET_INPUT[:-2]} MP input", lambda j: f"{per_mp(budget, j):.1f}"
        ),
        row(
            f"ms per megapixel, the {len(corpus.sources)} photos: min / median / max",
            lambda j: " / ".join(
                f"{v:.1f}" for v in spread_of(per_mp(s, j) for s in corpus.sources)
            ),
        ),
        row(
            f"photos / {BUDGET_INPUT[:-2]} MP input: min / median / max",
            lambda j: " / ".join(
                _x(v / per_mp(budget, j)) for v in spread_of(per_mp(s, j) for s in corpus.sources)
            ),
        ),
    ]
    return [*lines, ""]


def sweep_table(title: str, corpus: Corpus, found: dict[Codec, Found], times: Times) -> list[str]:
    jpeg_ms = sum(times[(None, JPEG_QUALITY)])
    lines = [
        title,
        "",
        f"| setting | quality | lowest per size ({', '.join(corpus.sizes)}) | bytes / JPEG, "
        f"corpus | per photo: min / median / max | encode ms, {BUDGET_INPUT[:-2]} MP, all "
        "three | / JPEG's |",
        "|---|---:|---|---:|---|---:|---:|",
    ]
    for codec, f in found.items():
        per = lows(f.per_size[s] for s in corpus.sizes)
        if f.quality is None:
            lines.append(f"| {codec.label} | none | {per} | - | - | - | - |")
            continue
        ms = sum(times[(codec, f.quality)])
        lines.append(
            f"| {codec.label} | {f.quality} | {per} | {_x(f.ratio)} "
            f"| {spread(f.photo_ratios.values())} | {ms:.1f} | {ms / jpeg_ms:.0f}x |"
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
    return (c.codec, c.quality)


def threads_label(t: int) -> str:
    return f"{t} thread{'s' * (t > 1)}"


@dataclass
class HandlerRun:
    """One measurement of the handler, at one choice, and the budget it was chosen with."""

    avif: Candidate
    webp: Candidate
    budget: Budget
    without_ms: float
    with_ms: float
    estimate_ms: float  # extra_ms of the choice, unscaled
    load: float = field(default_factory=lambda: os.getloadavg()[0])  # 1-minute, just after

    @property
    def ratio(self) -> float:
        return self.with_ms / self.without_ms


@dataclass
class Run:
    """Everything measured, for the report."""

    corpus: Corpus
    budget: Source
    base: dict[Codec, Found]
    options: dict[Codec, Found]
    trials: list[Trial]
    adopted: dict[str, Any]
    combined: dict[Codec, Found]
    webp: dict[Codec, Found]
    timed: Times  # every setting, on the budget input
    times: dict[str, Times]  # the chosen settings, per source (photos and the budget input)
    gil: list[Concurrency]
    pooled: bool
    processing: float
    avif: Candidate
    webp_choice: Candidate
    stricts: list[Strict]
    notes: list[str]
    thread_check: list[Concurrency]
    runs: list[HandlerRun]
    handler_error: str
    chosen_conc: list[Concurrency]


def measure(args: argparse.Namespace, progress: Callable[[str], None]) -> Run:
    repeats = 3 if args.quick else args.repeats
    speeds = sorted(QUICK_SPEEDS if args.quick else SPEEDS, reverse=True)
    methods = QUICK_METHODS if args.quick else METHODS
    progress("photos, their renditions and JPEGs")
    corpus = load_corpus(args.photos, args.renditions)
    check_ssim(corpus.sources[0])
    budget = make_source(BUDGET_INPUT, jpeg_bytes(*SIZES[BUDGET_INPUT]), args.renditions)

    def avif_grid(**change: Any) -> list[Codec]:
        return [
            replace(Codec("AVIF", s, t), **change)
            for s in speeds
            for t in THREADS
            if s not in SLOW_SPEEDS or t == max(THREADS)
        ]

    # 1. Every speed and thread count (libavif's defaults otherwise), options
    #    at the fast speeds, WebP methods; then every setting timed at its
    #    quality on the budget input.
    base = sweep(corpus, avif_grid(), progress)
    fast = [s for s in speeds if s in FAST_SPEEDS]
    trial_codecs = {
        (name, s): replace(Codec("AVIF", s, 1), **change)
        for name, change in OPTIONS.items()
        for s in fast
    }
    options = sweep(corpus, trial_codecs.values(), progress, answers(base))
    webp = sweep(corpus, [Codec("WEBP", m) for m in methods], progress)
    found = {**base, **options, **webp}
    progress(f"timing every setting at its quality, {BUDGET_INPUT}")
    jobs: list[Job] = [JPEG_JOB, *((c, f.quality) for c, f in found.items() if f.quality)]
    timed = time_encodes([budget], jobs, repeats)[budget.name]

    # 2. Options that help at every fast speed: merged, at every speed and thread count.
    def total_ms(codec: Codec) -> float:
        q = found[codec].quality
        return sum(timed[(codec, q)]) if q is not None else math.inf

    trials = []
    for (name, _), codec in trial_codecs.items():
        plain = Codec("AVIF", codec.speed, codec.threads)
        trials.append(
            Trial(
                name,
                codec,
                plain,
                found[codec].ratio / found[plain].ratio,
                total_ms(codec) / total_ms(plain),
            )
        )
    adopted = adopted_change(trials, fast)
    combined: dict[Codec, Found] = {}
    if adopted:
        combined = sweep(corpus, avif_grid(**adopted), progress, answers(base))
        found.update(combined)
        more = [(c, f.quality) for c, f in combined.items() if f.quality is not None]
        timed.update(time_encodes([budget], [JPEG_JOB, *more], repeats)[budget.name])
    jpeg_ms = timed[JPEG_JOB]

    # 3. Do the encoders release the GIL? The fastest settings, serial and pooled.
    progress("serial against pooled, fastest settings")
    avifs = candidates(corpus, {**base, **combined}, timed)
    webps = candidates(corpus, webp, timed)
    fastest = {
        t: min((c for c in avifs if c.codec.threads == t), key=lambda c: c.total_ms)
        for t in THREADS
    }
    fast_webp = min(webps, key=lambda c: c.total_ms)
    cases: list[tuple[str, list[Job]]] = [
        ("JPEG", [JPEG_JOB]),
        (fast_webp.title, [job(fast_webp)]),
        *((c.title, [job(c)]) for c in fastest.values()),
        *(
            (f"JPEG + AVIF ({threads_label(t)}) + WebP", [JPEG_JOB, job(c), job(fast_webp)])
            for t, c in fastest.items()
        ),
    ]
    gil = concurrency(budget, cases, repeats)
    both = gil[-len(THREADS) :]
    pooled = min(c.pooled_ms for c in both) < 0.9 * min(c.serial_ms for c in both)

    # 4. Choose within the budget: first against process_image's time (the
    #    handler is no faster), the single encodes' estimate scaled by what the
    #    pool measured above; then against the handler's own time, scaled by
    #    what it showed, measured again until the choice holds.
    progress(f"process_image, {BUDGET_INPUT}")
    processing = process_ms(args.renditions, repeats)

    def wall(c: Concurrency) -> float:
        return c.pooled_ms if pooled else c.serial_ms

    scales = {
        t: (wall(row) - wall(gil[0])) / extra_ms(jpeg_ms, c, fast_webp, pooled)
        for row, (t, c) in zip(both, fastest.items(), strict=True)
    }
    allowed = Budget((HANDLER_BUDGET - 1) * processing, scales, "`process_image`, the pool")

    def check_threads(a: Candidate, w: Candidate) -> tuple[Candidate, list[Concurrency]]:
        """The AVIF setting at each thread count, with WebP, as the pipeline runs them."""
        same = sorted(
            (c for c in avifs if replace(c.codec, threads=1) == replace(a.codec, threads=1)),
            key=lambda c: c.codec.threads,
        )
        rows = concurrency(
            budget,
            [(f"JPEG + {c.codec.label} + WebP", [JPEG_JOB, job(c), job(w)]) for c in same],
            repeats,
        )
        walls = [wall(r) for r in rows]
        return same[walls.index(min(walls))], rows

    avif_c, webp_c, fits = choose(avifs, webps, jpeg_ms, allowed, pooled)
    progress("the chosen AVIF setting at 1 and 2 threads")
    avif_c, thread_check = check_threads(avif_c, webp_c)
    runs: list[HandlerRun] = []
    checks: dict[tuple[Codec, Codec], list[Concurrency]] = {
        (avif_c.codec, webp_c.codec): thread_check
    }
    handler_error = ""
    for attempt in range(0 if args.no_handler else HANDLER_RUNS):
        progress(f"handler with {avif_c.title}, {webp_c.title}")
        try:
            h0, h1 = handler_ms(avif_c.found, webp_c.found, max(repeats, 5))
        except Exception as exc:  # the pipeline is others' work in progress
            handler_error = f"{type(exc).__name__}: {exc}"
            break
        estimate = extra_ms(jpeg_ms, avif_c, webp_c, pooled)
        runs.append(HandlerRun(avif_c, webp_c, allowed, h0, h1, estimate))
        if attempt == HANDLER_RUNS - 1:
            break
        allowed = allowed.measured(
            (HANDLER_BUDGET - 1) * h0, avif_c.codec.threads, (h1 - h0) / estimate, "the handler"
        )
        a, w, fits = choose(avifs, webps, jpeg_ms, allowed, pooled)
        if (
            replace(a.codec, threads=1) != replace(avif_c.codec, threads=1)
            or w.codec != webp_c.codec
        ):
            progress("the chosen AVIF setting at 1 and 2 threads")
            avif_c, thread_check = check_threads(a, w)
            webp_c = w
            checks[(avif_c.codec, webp_c.codec)] = thread_check
        if any((r.avif.codec, r.webp.codec) == (avif_c.codec, webp_c.codec) for r in runs):
            break  # measured already: the choice holds (or goes round in circles)
    notes = []
    if runs:
        last = next(r for r in runs if (r.avif.codec, r.webp.codec) == (avif_c.codec, webp_c.codec))
        within = [r for r in runs if r.ratio <= HANDLER_BUDGET]
        if last.ratio > HANDLER_BUDGET and within:
            last = min(within, key=lambda r: (r.avif.ratio, r.webp.ratio))
            avif_c, webp_c = last.avif, last.webp
            thread_check = checks[(avif_c.codec, webp_c.codec)]
            notes.append(
                "the last choice measured over the handler budget: the chosen pair is the "
                "smallest one measured within it"
            )
        elif last.ratio > HANDLER_BUDGET:
            notes.append("no pair measured within the handler budget: the fastest is chosen")
        runs.remove(last)
        runs.append(last)  # the chosen pair's measurement last

    progress("strict qualities of the chosen settings")
    stricts = [strict(corpus, c.found) for c in (avif_c, webp_c)]
    progress("serial against pooled, chosen settings")
    chosen_jobs = [JPEG_JOB, job(avif_c), job(webp_c)]
    chosen_conc = concurrency(
        budget, [("JPEG", [JPEG_JOB]), ("JPEG + chosen AVIF + chosen WebP", chosen_jobs)], repeats
    )
    progress(f"timing the chosen settings on the photos and the {BUDGET_INPUT} input")
    times = time_encodes([budget, *corpus.sources], chosen_jobs, repeats)
    for c, target in ((avif_c, AVIF_TARGET), (webp_c, WEBP_TARGET)):
        if c.ratio > target:
            notes.append(
                f"{fmt_name(c.codec)} misses its {target}x bytes target on this corpus "
                f"({_x(c.ratio)}): at the JPEG's mean SSIM no setting within the budget gets there"
            )
    if not runs and not fits:
        notes.append("no AVIF setting fits the handler budget, even with the fastest WebP")
    return Run(
        corpus, budget, base, options, trials, adopted, combined, webp, timed, times, gil, pooled,
        processing, avif_c, webp_c, stricts, notes, thread_check, runs, handler_error, chosen_conc,
    )  # fmt: skip


def report(run: Run, args: argparse.Namespace, header: list[str], minutes: float) -> list[str]:
    repeats = 3 if args.quick else args.repeats
    corpus, budget = run.corpus, run.budget
    timed = run.timed
    jpeg_ms = timed[JPEG_JOB]
    chosen = [run.avif, run.webp_choice]
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
    w_, h_ = SIZES[BUDGET_INPUT]
    first = corpus.sources[0]
    out = [
        "# AVIF and WebP alternates against the JPEG rendition",
        "",
        f"`{command} > bench/results/formats.md` (took {minutes:.1f} min)",
        "",
        *header,
        f"- load average at the end {os.getloadavg()[0]:.2f}",
        f"- corpus: {bench_photos.source()}: {', '.join(s.name for s in corpus.sources)}; "
        f"each uploaded as it is (its own JPEG bytes; {first.width}x{first.height})",
        f"- renditions `{args.renditions}` through `rendition_images` (the pixels before "
        f"encoding); the JPEG rendition at q{JPEG_QUALITY} through the project's `encode()` "
        f"({project_encode.JPEG_PARAMS}); SSIM of each encoded rendition against its pixels "
        "before encoding, the mean over R, G and B as `bench/imaging.py` computes it",
        "- one quality per setting, the corpus criterion: the lowest at which, at every "
        "rendition size, the alternates' mean SSIM over the photos is at least the JPEG "
        "renditions' mean SSIM; bytes / JPEG: every rendition of every photo summed "
        '("corpus"), and per photo its three renditions together (min / median / max '
        "over the photos). The strict quality: the lowest at which every rendition of "
        "every photo reaches its own JPEG's SSIM",
        f"- one table per photo ({first.width}x{first.height} uploads) where there were "
        "3, 12 and 24 MP ones: every rendition is a downscale of the upload, so its bytes "
        "follow the content of the rendition, not the size of the upload (a 12 MP and a "
        "4 MP upload of one scene give nearly the same 1600 px rendition)",
        f"- encode ms: median of {repeats} (after one untimed), interleaved across settings, "
        f"on the renditions of the {BUDGET_INPUT[:-2]} MP `bench/inputs.py` upload "
        f"({w_}x{h_}, JPEG q90) that the handler budget is measured with: encode time "
        "follows the pixel count far more than the content (the chosen settings' ms per "
        'megapixel on the photos against that input\'s are in "Timing" below); the '
        "machine is shared and noisy: compare within this run",
        "",
        "## Chosen",
        "",
        f"- `AVIF_QUALITY` **{run.avif.quality}**, speed **{a.speed}**, threads "
        f"**{a.threads}**, subsampling **{a.subsampling}**"
        + (f", aom options `{dict(a.advanced)}` (Pillow's `advanced=`)" if a.advanced else "")
        + (f", `tile_cols={a.tile_cols}`" if a.tile_cols else ""),
        f"- `WEBP_QUALITY` **{run.webp_choice.quality}**, `WEBP_METHOD` **{w.speed}**",
    ]
    for c, target in ((run.avif, AVIF_TARGET), (run.webp_choice, WEBP_TARGET)):
        met = "met" if c.ratio <= target else "**missed**"
        out.append(
            f"- {fmt_name(c.codec)} bytes / JPEG over the corpus **{_x(c.ratio)}** (target "
            f"{target}x: {met}); per photo min / median / max "
            f"{spread(c.found.photo_ratios.values())}"
        )
    for s in run.stricts:
        if s.quality is None:
            out.append(f"- strict, {fmt_name(s.codec)}: no quality up to 100 passes everywhere")
            continue
        out.append(
            f"- strict, {s.codec.label}: q{s.quality} (needed by {', '.join(s.binding)}): "
            f"corpus {_x(s.ratio)}, per photo {spread(s.photo_ratios.values())}"
        )
    out.append(
        f"- encodes {'in a 2-thread pool' if run.pooled else 'serially'}: the encoders release "
        f"the GIL{'' if run.pooled else ' too little to matter'} (JPEG, AVIF and WebP of "
        f"three renditions, fastest settings: pool / serial {_x(best_pooled / best_serial)}); "
        f"on the {BUDGET_INPUT[:-2]} MP upload the chosen alternates add {extra:.0f} ms "
        f"(measured; {extra_ms(jpeg_ms, run.avif, run.webp_choice, run.pooled):.0f} ms "
        f"estimated from single encodes) to a {run.processing:.0f} ms `process_image` "
        "without them"
    )
    if run.runs:
        last = run.runs[-1]
        met = "within" if last.ratio <= HANDLER_BUDGET else "**over**"
        out.append(
            f"- the handler (in-process imaging, against a moto server, {BUDGET_INPUT[:-2]} MP "
            f"upload): {last.without_ms:.0f} ms without `FORMATS`, {last.with_ms:.0f} ms with "
            f"`FORMATS=avif,webp`: **{last.ratio:.2f}x** ({met} the {HANDLER_BUDGET}x budget)"
        )
    else:
        bound = (run.processing + extra) / run.processing
        out.append(
            f"- handler not measured ({run.handler_error or '--no-handler'}); at most "
            f"{bound:.2f}x, the handler without alternates being no faster than its "
            "`process_image`"
        )
    out += [f"- {n}" for n in run.notes]
    out += [
        "",
        "## The criterion, per rendition size (chosen settings)",
        "",
        *criterion_table(corpus, chosen),
        "## Per photo: the chosen settings",
        "",
        "Bytes / JPEG of each photo's three renditions at the chosen qualities, and the "
        "lowest quality at which each of its renditions alone reaches its JPEG's SSIM "
        "(the strict criterion's inputs):",
        "",
        *photo_table(corpus, chosen, run.stricts),
        "In the tables, `*` marks an SSIM under that rendition's own JPEG's (the criterion "
        "is the mean per rendition size); encode ms on that photo's renditions.",
        "",
    ]
    for source in corpus.sources:
        out += size_table(source, chosen, run.times[source.name])
    out += [
        f"## Timing: the chosen settings on the {BUDGET_INPUT[:-2]} MP input (median of {repeats})",
        "",
        *timing_table(budget, corpus, chosen, run.times),
    ]
    if run.runs:
        out += [
            "## The handler, each choice measured",
            "",
            "Chosen with the estimate from single encodes times a scale from the last "
            "measurement (first the 2-thread pool's above, then the handler's own):",
            "",
            "| AVIF | WebP | chosen against | scale | estimated extra ms | handler ms without "
            "| with | ratio | load average after |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in run.runs:
            out.append(
                f"| {r.avif.title} | {r.webp.title} | {r.budget.basis} "
                f"| {r.budget.scales[r.avif.codec.threads]:.2f} "
                f"| {r.estimate_ms:.0f} | {r.without_ms:.0f} | {r.with_ms:.0f} | {r.ratio:.2f}x "
                f"| {r.load:.2f} |"
            )
        out += ["", "The last row is the chosen pair's.", ""]
    out += sweep_table("## AVIF: speed and threads", corpus, run.base, timed)
    out += [
        f"Speeds {', '.join(map(str, SLOW_SPEEDS))} at 2 threads only (either thread count "
        "is several times the handler budget's room).",
        "",
    ]
    same = duplicates(corpus, {**run.base, **run.options, **run.combined})
    if same:
        out += [
            "Identical bytes: "
            + "; ".join(f"{c.label} = {d.label}" for c, d in same)
            + " (aom's all-intra mode, which libavif uses for still images, stops at "
            "speed 9; at speeds 9-10 threads split the work without changing it).",
            "",
        ]
    out += sweep_table("## AVIF: options, at the fast speeds", corpus, run.options, timed)
    out += [
        "Each against the same speed and threads without it (corpus bytes at its one quality):",
        "",
    ]
    out += [
        f"- {t.codec.label}: bytes {_x(t.bytes_ratio)}, time {_x(t.time_ratio)}" for t in run.trials
    ]
    out.append(
        f"- libavif's default (no `advanced`) writes {default_tune(first)} "
        f"({first.name}, {first.renditions[len(first.renditions) // 2].name}, speed 9, q70)"
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
            f"## AVIF with {run.adopted}: speed and threads", corpus, run.combined, timed
        )
    out += sweep_table("## WebP: method", corpus, run.webp, timed)
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
    parser.add_argument(
        "--photos", default="", help="comma-separated names: a part of the corpus (development)"
    )
    args = parser.parse_args()
    started = time.perf_counter()

    def progress(text: str) -> None:
        print(f"  [{time.perf_counter() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    header = machine()
    try:
        run = measure(args, progress)
    except bench_photos.PhotosUnavailable as exc:
        sys.exit(f"bench.formats: {exc}")
    print("\n".join(report(run, args, header, (time.perf_counter() - started) / 60)))


if __name__ == "__main__":
    main()
