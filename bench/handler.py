"""What one upload costs through the handler, against moto's server.

Starts a moto server on a free loopback port, provisions a stage, uploads a
12 MP JPEG and runs the created-event pipeline on it repeatedly (each run a new
upload event), reporting the median milliseconds per phase:
get (S3 GetObject), process (decode + renditions + encode), put (renditions
to S3), record (DynamoDB read + conditional write).

Both imaging engines (``IMAGE_ENGINE=pillow`` and ``vips``) are measured when
pyvips is installed, each both ways, alternating: as the handler runs it, the
source decoded in an imaging worker process bounded in time and memory
(``chalicelib.sandbox``), and in-process without that bound, to give what the
bound costs, and bounded with ``FORMATS`` (default ``avif,webp``), to give
what the alternates cost. Beside them, in the same run, a seed-style handler
like the write-ups this project replaces: download the object to a file,
resize each rendition from the full-size image, save and upload each,
put_item the record.

    .venv/bin/python -m bench.handler [--repeats 9] [--size 12mp] [--formats avif,webp]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import time

import boto3

from bench.inputs import SIZES, jpeg_bytes
from chalicelib.factory import build_pipeline
from chalicelib.models import EventKind, ObjectEvent
from chalicelib.observability import Stopwatch
from chalicelib.pipeline import Outcome
from chalicelib.sandbox import InProcessImaging
from chalicelib.settings import Settings
from devtools.emulator import moto_server
from devtools.provision import provision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--size", choices=sorted(SIZES), default="12mp")
    parser.add_argument("--formats", default="avif,webp", help="FORMATS of the third variant")
    args = parser.parse_args()
    engines = ["pillow"] if importlib.util.find_spec("pyvips") is None else ["pillow", "vips"]
    with moto_server() as url:
        runs: dict[str, list[dict[str, float]]] = {}
        unbounded: dict[str, list[dict[str, float]]] = {}
        alternates: dict[str, list[dict[str, float]]] = {}
        for engine in engines:
            runs[engine], unbounded[engine], alternates[engine], size = run(
                args.size, args.repeats, url, engine, args.formats
            )
        seed = seed_style(args.size, args.repeats)
    phases = ["get", "process", "put", "record", "total"]
    width, height = SIZES[args.size]
    print(f"{args.size} JPEG ({width}x{height}, {size:,} bytes), {args.repeats} runs, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"| phase | {' | '.join(f'IMAGE_ENGINE={e}, median ms' for e in engines)} |")
    print("|---" * (len(engines) + 1) + "|")
    for phase in phases:
        cells = [f"{statistics.median(r.get(phase, 0.0) for r in runs[e]):.1f}" for e in engines]
        print(f"| {phase} | {' | '.join(cells)} |")
    print(f"| seed-style handler, total | {seed:.1f} |")
    print()
    for engine in engines:
        ours = statistics.median(r["total"] for r in runs[engine])
        print(f"this pipeline (IMAGE_ENGINE={engine}) / seed-style: {ours / seed:.2f}x")
    print()
    print(
        "| engine | bounded (worker process), total ms | in-process, total ms "
        "| bound / in-process |"
    )
    print("|---|---|---|---|")
    for engine in engines:
        bounded = statistics.median(r["total"] for r in runs[engine])
        free = statistics.median(r["total"] for r in unbounded[engine])
        print(f"| {engine} | {bounded:.1f} | {free:.1f} | {bounded / free:.3f}x |")
    print()
    print(f"| engine | without FORMATS, total ms | FORMATS={args.formats}, total ms | ratio |")
    print("|---|---|---|---|")
    for engine in engines:
        bounded = statistics.median(r["total"] for r in runs[engine])
        more = statistics.median(r["total"] for r in alternates[engine])
        print(f"| {engine} | {bounded:.1f} | {more:.1f} | {more / bounded:.2f}x |")


def seed_style(size_name: str, repeats: int) -> float:
    """Median ms of the naive handler, on the same emulator and image."""
    import io
    import tempfile
    from pathlib import Path

    from PIL import Image

    s3 = boto3.client("s3")
    table = boto3.resource("dynamodb").Table("bench")
    s3.put_object(Bucket="bench", Key="seed.jpg", Body=jpeg_bytes(*SIZES[size_name]))
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):
            start = time.perf_counter()
            source = Path(tmp) / "seed.jpg"
            s3.download_file("bench", "seed.jpg", str(source))
            sizes = {}
            for name, box in (("thumb", 256), ("medium", 800), ("large", 1600)):
                with Image.open(source) as image:
                    scale = min(box / image.width, box / image.height, 1)
                    size = (round(image.width * scale), round(image.height * scale))
                    out = io.BytesIO()
                    image.resize(size, Image.Resampling.LANCZOS).save(out, "JPEG", quality=85)
                target = Path(tmp) / f"{name}.jpg"
                target.write_bytes(out.getvalue())
                s3.upload_file(str(target), "bench", f"resized/{name}/seed.jpg")
                sizes[name] = f"{size[0]}x{size[1]}"
            table.put_item(Item={"pk": "IMG#seed", "sk": "IMG", "sizes": sizes, "n": i})
            samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples[1:])


def run(
    size_name: str, repeats: int, url: str, engine: str, formats: str
) -> tuple[list[dict[str, float]], list[dict[str, float]], list[dict[str, float]], int]:
    """Per-phase milliseconds of ``repeats`` created events after one warm-up,
    through the handler's bounded imaging, in-process, and bounded with
    ``formats``, taking turns event by event."""
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    env = {"SOURCE_BUCKET": "bench", "DDB_TABLE": "bench", "IMAGE_ENGINE": engine}
    settings = Settings.from_env(env)
    provision(settings, report=lambda _: None)
    runs: list[dict[str, float]] = []

    def observe(event: ObjectEvent, outcome: Outcome, watch: Stopwatch) -> None:
        assert outcome is Outcome.PROCESSED, outcome
        runs.append(watch.ms)

    pipelines = [
        build_pipeline(settings),
        build_pipeline(settings, imaging=InProcessImaging()),
        build_pipeline(Settings.from_env(env | {"FORMATS": formats})),
    ]
    data = jpeg_bytes(*SIZES[size_name])
    s3 = boto3.client("s3")
    sequence = 0
    for _ in range(repeats + 1):
        for turn, pipeline in enumerate(pipelines):
            # A key per variant: no variant deletes another's renditions.
            key = f"photo-{engine}-{turn}.jpg"
            pipeline.observer = observe
            sequence += 1
            etag = s3.put_object(Bucket="bench", Key=key, Body=data)["ETag"].strip('"')
            event = ObjectEvent(
                "bench", key, EventKind.CREATED, "ObjectCreated:Put",
                size=len(data), etag=etag, sequencer=f"{sequence:018X}",
            )  # fmt: skip
            pipeline.handle(event)
    turns = len(pipelines)
    return runs[turns::turns], runs[turns + 1 :: turns], runs[turns + 2 :: turns], len(data)


if __name__ == "__main__":
    main()
