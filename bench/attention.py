"""What ``CROP_GRAVITY=attention`` costs per cover crop, on both engines, at 12 MP.

    .venv/bin/python -m bench.attention [--repeats 31] [--out bench/results/attention.md]

Input: a generated photographic 12 MP JPEG (``bench.inputs``, 4000x3000, q90).
For each rendition set and engine, two measurements:

- the pixel step (``rendition_images``: decode, orient, resize, no encoding)
  with ``crop_gravity`` "centre" and "attention", alternating run by run so
  that a neighbour's load falls on both alike; median ms of each, the
  difference and the ratio. The difference is a few ms against a step of
  tens, so it is within this machine's noise; hence also
- the attention work alone, timed in isolation on the very image each
  source's first cover crop is cut from (recorded from a real render): the
  engine's small copy, the saliency map, and every crop's window offset.

Results (markdown) go to ``--out`` and stdout.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, features

from bench.inputs import jpeg_bytes
from chalicelib.imaging import ImagingOptions, attention, decode, parse_renditions, resize
from chalicelib.imaging.model import GRAVITIES
from chalicelib.imaging.pipeline import Header, read_header, rendition_images
from chalicelib.imaging.resize import Crop

SETS = [
    "thumb=256x256#",  # cut from the 1/8 JPEG draft
    "thumb=256x256#,medium=800x800,large=1600x1600",  # cut from medium
    "large=1600x1600#",  # cut from the 1/2 draft
    "thumb=256x256#,square=800x800#,wide=1600x900#",  # three crops, one map
]


class Recording:
    """An engine that records the image ``attention`` is first asked about."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.source: Any = None

    def size(self, image: Any) -> tuple[int, int]:
        return self.engine.size(image)

    def resize(self, source: Any, size: tuple[int, int]) -> Any:
        return self.engine.resize(source, size)

    def resize_region(self, source: Any, size: tuple[int, int], crop: Crop) -> Any:
        return self.engine.resize_region(source, size, crop)

    def small(self, source: Any, sampling: attention.Sampling) -> Image.Image:
        if self.source is None:
            self.source = source
        return self.engine.small(source, sampling)


def crop_source(data: bytes, header: Header, engine: str) -> tuple[Any, Any]:
    """(engine, the image the first cover crop is cut from), from a real render."""
    if engine == "vips":
        from chalicelib.imaging import vips

        vips._setup()
        made = vips._Made(vips._orient(vips._load(data, header), header.orientation))
        recording = Recording(vips.VIPS)
        resize.render_with(recording, made, header.targets)
    else:
        img = header.image
        needed = resize.needed_size(header.targets)
        decode.load(img, decode.oriented(needed, header.orientation))
        base = resize.reduce_base(decode.orient(img, header.orientation), needed)
        recording = Recording(resize.PILLOW)
        resize.render_with(recording, base, header.targets)
    return recording.engine, recording.source


def median_ms(function: Callable[[], object], repeats: int) -> float:
    function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def isolated(data: bytes, renditions: str, engine: str, repeats: int) -> dict[str, float]:
    """Median ms of each part of the attention work, alone."""
    opts = ImagingOptions(parse_renditions(renditions), engine=engine, crop_gravity="attention")
    with decode.decoding(opts.max_pixels):
        header = read_header(data, opts)
        resampler, source = crop_source(data, header, engine)
    covers = [t for t in header.targets if t.crop is not None]
    sampling = attention.sampling(resampler.size(source))
    small = resampler.small(source, sampling)
    saliency = attention.Saliency.of(small, sampling.span)

    def offsets() -> None:
        for target in covers:
            assert target.crop is not None
            resize.attended(saliency, target.size, target.crop)

    def everything() -> None:
        found = attention.Saliency.of(resampler.small(source, sampling), sampling.span)
        for target in covers:
            assert target.crop is not None
            resize.attended(found, target.size, target.crop)

    return {
        "crops": len(covers),
        "small": median_ms(lambda: resampler.small(source, sampling), repeats),
        "map": median_ms(lambda: attention.Saliency.of(small, sampling.span), repeats),
        "offsets": median_ms(offsets, repeats),
        "total": median_ms(everything, repeats),
        "source_w": resampler.size(source)[0],
        "source_h": resampler.size(source)[1],
        "small_w": small.width,
        "small_h": small.height,
    }


def smartcrop(data: bytes, renditions: str, repeats: int) -> tuple[float, float]:
    """Median ms of the vips engine's cover crops, from the image the first is
    cut from, as made now (centre) and with libvips's own ``smartcrop``
    (``interesting="attention"``) on the scaled whole frame instead."""
    from chalicelib.imaging import vips

    opts = ImagingOptions(parse_renditions(renditions), engine="vips", crop_gravity="attention")
    with decode.decoding(opts.max_pixels):
        header = read_header(data, opts)
        _, source = crop_source(data, header, "vips")
    covers = [t for t in header.targets if t.crop is not None]

    def centre() -> None:
        for target in covers:
            assert target.crop is not None
            vips.VIPS.resize_region(source, target.size, target.crop)

    def smart() -> None:
        for target in covers:
            assert target.crop is not None
            width, height = target.crop[2] - target.crop[0], target.crop[3] - target.crop[1]
            scaled = vips._scaled(source.image, target.size)
            scaled.smartcrop(width, height, interesting="attention").write_to_memory()

    return median_ms(centre, repeats), median_ms(smart, repeats)


def end_to_end(
    data: bytes, renditions: str, engine: str, repeats: int
) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) ms of the pixel step with each gravity, run
    alternately. CPU time counts every thread of the process (what a 1-vCPU
    Lambda function pays), and a neighbour's load moves it less than wall time."""
    specs = parse_renditions(renditions)
    by_gravity = {g: ImagingOptions(specs, engine=engine, crop_gravity=g) for g in GRAVITIES}
    walls: dict[str, list[float]] = {g: [] for g in by_gravity}
    cpus: dict[str, list[float]] = {g: [] for g in by_gravity}
    for round_no in range(repeats + 1):
        for gravity, opts in by_gravity.items():
            wall, cpu = time.perf_counter(), time.process_time()
            rendition_images(data, opts)
            if round_no:
                walls[gravity].append((time.perf_counter() - wall) * 1000)
                cpus[gravity].append((time.process_time() - cpu) * 1000)
    return {g: (statistics.median(walls[g]), statistics.median(cpus[g])) for g in by_gravity}


def machine_line() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown CPU",
    )
    try:
        import pyvips

        vips = f"pyvips {pyvips.__version__} / libvips {pyvips.version(0)}.{pyvips.version(1)}"
        vips += f".{pyvips.version(2)}"
    except ImportError:
        vips = "no pyvips"
    turbo = features.version("libjpeg_turbo") or "?"
    return (
        f"Machine: {model}, nproc {len(os.sched_getaffinity(0))}; Python "
        f"{platform.python_version()}, Pillow {Image.__version__} (libjpeg-turbo {turbo}), "
        f"{vips}; load average at start {os.getloadavg()[0]:.2f}; "
        f"run {datetime.date.today().isoformat()}."
    )


def engines() -> list[str]:
    try:
        import pyvips  # noqa: F401
    except ImportError:
        return ["pillow"]
    return ["pillow", "vips"]


def report(repeats: int) -> str:
    data = jpeg_bytes(4000, 3000)
    lines = [
        "# `CROP_GRAVITY=attention`: cost per cover crop, 12 MP JPEG (4000x3000)",
        "",
        machine_line(),
        "",
        f"`.venv/bin/python -m bench.attention --repeats {repeats}`; medians over {repeats} runs.",
        "",
        "## The attention work alone",
        "",
        "On the image the crop is cut from (recorded from a real render): the "
        "engine's small copy, the saliency map (once per source), every crop's "
        "window offset, and all three together.",
        "",
        "| renditions | engine | cut from | small copy | crops | small copy ms | map ms "
        "| offsets ms | total ms | per crop ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for renditions in SETS:
        for engine in engines():
            r = isolated(data, renditions, engine, repeats * 4)
            lines.append(
                f"| `{renditions}` | {engine} | {r['source_w']:.0f}x{r['source_h']:.0f} "
                f"| {r['small_w']:.0f}x{r['small_h']:.0f} "
                f"| {r['crops']:.0f} | {r['small']:.2f} | {r['map']:.2f} | {r['offsets']:.2f} "
                f"| {r['total']:.2f} | {r['total'] / r['crops']:.2f} |"
            )
    if "vips" in engines():
        lines += [
            "",
            "## For comparison: libvips's `smartcrop` on the vips engine",
            "",
            "The vips engine's cover crops from the same image: as made now "
            "(centre, `resize_region`), and scaled whole then cut by "
            '`smartcrop(interesting="attention")`, which must compute the whole '
            "scaled frame and its own map for every crop.",
            "",
            "| renditions | crops | centre ms | smartcrop ms | smartcrop extra per crop ms |",
            "|---|---|---|---|---|",
        ]
        for renditions in SETS:
            crops = renditions.count("#")
            centre, smart = smartcrop(data, renditions, repeats)
            lines.append(
                f"| `{renditions}` | {crops} | {centre:.1f} | {smart:.1f} "
                f"| {(smart - centre) / crops:+.1f} |"
            )
    lines += [
        "",
        "## The pixel step, centre against attention",
        "",
        "`rendition_images` (decode, orient, resize; no encoding), the two "
        "gravities alternating run by run.",
        "",
        "| renditions | engine | centre ms | attention ms | difference ms | per crop ms "
        "| attention / centre | CPU: centre ms | CPU: attention ms | CPU: per crop ms "
        "| CPU: attention / centre |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for renditions in SETS:
        crops = renditions.count("#")
        for engine in engines():
            ms = end_to_end(data, renditions, engine, repeats)
            (centre, cpu_centre), (attended, cpu_attended) = ms["centre"], ms["attention"]
            lines.append(
                f"| `{renditions}` | {engine} | {centre:.1f} | {attended:.1f} "
                f"| {attended - centre:+.1f} | {(attended - centre) / crops:+.1f} "
                f"| {attended / centre:.2f}x | {cpu_centre:.1f} | {cpu_attended:.1f} "
                f"| {(cpu_attended - cpu_centre) / crops:+.1f} "
                f"| {cpu_attended / cpu_centre:.2f}x |"
            )
    lines += [
        "",
        "Reading: the budget (10 ms per crop) is held to the first table, the "
        "attention work timed alone, since the pixel step's difference between "
        "the gravities is a few ms against a step of tens to hundreds of ms, "
        "within this shared machine's run-to-run noise (it can come out "
        "negative); its CPU columns move less and agree with the first table. "
        "The load average above says how busy the machine was.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    text = report(args.repeats)
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
