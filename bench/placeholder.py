"""What the record's placeholder costs: ``placeholder()`` on a thumbnail and a large rendition.

    .venv/bin/python -m bench.placeholder [--repeats 31] [--number 20]

Inputs are ``bench.inputs.photo`` pixels, already decoded (as the pipeline
hands them over): a 256x192 thumbnail and a 1600x1200 rendition, and a 3:2
1800x1200 one for the most components the rule gives (6x4), each RGB and
RGBA. For each: the whole ``placeholder()`` call, its two steps
(``downscale`` to 32 px, ``encode_blurhash``), and as the baseline the PyPI
``blurhash`` package's ``encode`` on the same 32 px pixels with the same
components (given as the nested lists it takes, built outside the timing);
and, for what the sampled grid saves, a BOX resize straight to 32 px.
All cases run round-robin, so the machine's drift falls on every case alike;
each sample is the mean of ``--number`` calls, and the median of
``--repeats`` samples is reported.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import blurhash  # type: ignore[import-untyped]
import PIL
from PIL import Image

from bench.inputs import photo
from chalicelib.imaging.placeholder import components, downscale, encode_blurhash, placeholder

# The two renditions of the default 4:3 photo, and a 3:2 one for the most
# components the rule gives (6x4).
SIZES = {
    "thumb 256x192": (256, 192),
    "large 1600x1200": (1600, 1200),
    "3:2 1800x1200": (1800, 1200),
}
STEPS = ("placeholder", "downscale", "encode", "baseline", "box_all")
# The baseline is about 20x slower: fewer calls per sample keep the run short.
BASELINE_SHARE = 10

Case = tuple[Callable[[], object], int]  # (function, calls per sample)


@dataclass(frozen=True)
class Input:
    name: str
    image: Image.Image
    small: Image.Image
    shape: tuple[int, int]

    def cases(self, number: int) -> dict[str, Case]:
        image, small, (x_count, y_count) = self.image, self.small, self.shape
        data, width = small.tobytes(), small.width
        rows = [
            [list(data[i : i + 3]) for i in range(y * width * 3, (y + 1) * width * 3, 3)]
            for y in range(small.height)
        ]
        return {
            "placeholder": (lambda: placeholder(image), number),
            "downscale": (lambda: downscale(image), number),
            # What the sampled grid saves: one box average over every pixel.
            "box_all": (lambda: image.resize(small.size, Image.Resampling.BOX), number),
            "encode": (lambda: encode_blurhash(small, x_count, y_count), number),
            "baseline": (
                lambda: blurhash.encode(rows, x_count, y_count),
                max(1, number // BASELINE_SHARE),
            ),
        }


def inputs() -> list[Input]:
    made = []
    for label, size in SIZES.items():
        for mode in ("RGB", "RGBA"):
            image = photo(*size).convert(mode)
            made.append(Input(f"{label} {mode}", image, downscale(image), components(*size)))
    return made


def medians_ms(timed: dict[str, Case], repeats: int) -> dict[str, float]:
    """Median ms per call of each case, round-robin, after one untimed round."""
    samples: dict[str, list[float]] = {name: [] for name in timed}
    for round_no in range(repeats + 1):
        for name, (function, number) in timed.items():
            start = time.perf_counter()
            for _ in range(number):
                function()
            if round_no:
                samples[name].append((time.perf_counter() - start) * 1000 / number)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--number", type=int, default=20)
    args = parser.parse_args()
    made = inputs()
    timed = {
        f"{item.name}|{step}": case
        for item in made
        for step, case in item.cases(args.number).items()
    }
    ms = medians_ms(timed, args.repeats)
    print(f"placeholder(), median of {args.repeats} samples of {args.number} calls (ms per call)")
    print(
        "| input | components | placeholder() | downscale | encode_blurhash "
        "| blurhash.encode (same 32 px) | encode speed-up | placeholder() speed-up "
        "| BOX of every pixel |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for item in made:
        whole, down, enc, base, box_all = (ms[f"{item.name}|{step}"] for step in STEPS)
        x_count, y_count = item.shape
        print(
            f"| {item.name} | {x_count}x{y_count} | {whole:.3f} | {down:.3f} | {enc:.3f} "
            f"| {base:.2f} | {base / enc:.0f}x | {base / whole:.0f}x | {box_all:.3f} |"
        )
    print(
        f"\nPython {platform.python_version()}, Pillow {PIL.__version__}, "
        f"blurhash {importlib.metadata.version('blurhash')}, {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
