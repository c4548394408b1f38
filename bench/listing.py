"""Is ``GET /images`` O(page)? Its time at 1,000 and 100,000 rows in MariaDB.

Fills a scratch database with N processed records (50 folders, three
renditions each, EXIF-like metadata), then times the REST query logic of
``GET /images`` (validation, keyset query, presigned URLs for each rendition,
JSON shape) for a page of 50: the first page, the first page of one folder,
and a page half-way down the listing (reached through a cursor, where OFFSET
would have to skip 50,000 rows). Medians over repeats; the ratio of the two
sizes is the answer.

Then, on the smaller database, a page of 100 records (three renditions with
AVIF and WebP alternates each: 900 URLs) by how the URLs are made: presigned
anew for every listing (as before URLs were reused), presigned and reused
per ETag by a warm container, and under ``RENDITION_BASE_URL`` (no signing).

    .venv/bin/python -m bench.listing [--repeats 30]

Needs a MySQL or MariaDB server: MYSQL_TEST_URL (default
mysql://root@127.0.0.1:3306); it creates and drops ``image_pipeline_bench``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3

from chalicelib import keys
from chalicelib.api import ImagesApi
from chalicelib.models import Alternate, ImageRecord, Rendition, Status
from chalicelib.repositories.base import ImageQuery
from chalicelib.repositories.mysql import Connector, MySQLRepository, connect_function, image_row
from chalicelib.repositories.mysql_schema import migrate
from chalicelib.storage import S3Storage
from chalicelib.urls import CdnUrls, RenditionUrls, ReusedPresignedUrls

DATABASE = "image_pipeline_bench"
FOLDERS = 10  # at least 50 images in each, also at 1,000 rows


def make_record(i: int, start: datetime) -> ImageRecord:
    key = f"album-{i % FOLDERS:02d}/IMG_{i:06d}.jpg"
    uploaded = (start + timedelta(seconds=i * 7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    renditions = {
        name: Rendition(
            name,
            "photos",
            f"resized/{name}/{key}",
            w,
            h,
            w * h // 8,
            "image/jpeg",
            tuple(
                Alternate(
                    f"resized/{name}.{ext}/{key}.{ext}",
                    w * h // 16,
                    f"image/{ext}",
                    f"{i:016x}{ext:0>16}",
                )
                for ext in ("avif", "webp")
            ),
            etag=f"{i:032x}",
        )
        for name, w, h in (("thumb", 256, 192), ("medium", 800, 600), ("large", 1600, 1200))
    }
    return ImageRecord(
        id=keys.image_id("photos", key), bucket="photos", key=key, folder=keys.folder_of(key),
        status=Status.PROCESSED, etag=f"{i:032x}", size_bytes=3_500_000 + i,
        uploaded_at=uploaded, created_at=uploaded, updated_at=uploaded,
        format="JPEG", content_type="image/jpeg", width=4000, height=3000,
        renditions=renditions,
        metadata={"taken_at": "2024-06-01T12:00:00", "camera_make": "Bench",
                  "camera_model": "Model 1", "f_number": 2.8, "iso": 100,
                  "exposure_time": "1/250", "has_gps": False, "has_icc": True,
                  "mode": "RGB", "has_alpha": False},
        sequencer=f"{i:018X}", fingerprint="bench",
    )  # fmt: skip


def fill(connector: Connector, count: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    batch: list[tuple[Any, ...]] = []
    columns: list[str] = []

    def flush(cur: Any) -> None:
        names = ", ".join(["id", "version", *columns])
        marks = ", ".join(["%s"] * (len(columns) + 2))
        cur.executemany(f"INSERT INTO images ({names}) VALUES ({marks})", batch)
        batch.clear()

    for i in range(count):
        record = make_record(i, start)
        row = image_row(record)
        columns = list(row)
        batch.append((record.id, 1, *row.values()))
        if len(batch) == 2000:
            connector.run(flush)
    if batch:
        connector.run(flush)


def timed(repeats: int, call: Callable[[], Any]) -> float:
    call()  # warm
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--sizes", default="1000,100000")
    args = parser.parse_args()
    url = urlsplit(os.environ.get("MYSQL_TEST_URL", "mysql://root@127.0.0.1:3306"))
    server = (url.hostname or "127.0.0.1", url.port or 3306, unquote(url.username or "root"),
              unquote(url.password or ""))  # fmt: skip
    admin = connect_function(*server, "")()
    s3 = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )  # fmt: skip
    storage = S3Storage(s3)
    results: dict[int, dict[str, float]] = {}
    by_mode: dict[str, float] = {}
    try:
        for count in (int(n) for n in args.sizes.split(",")):
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
                cur.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
            connector = Connector(connect_function(*server, DATABASE))
            connector.run(lambda cur: None)
            migrate(connector._get(), report=lambda _: None)
            fill(connector, count)
            connector.run(lambda cur: cur.execute("ANALYZE TABLE images"))

            def presign(bucket: str, key: str) -> str:
                return storage.presigned_get(bucket, key, 3600)

            def fresh(bucket: str, key: str, etag: str | None) -> str:
                return presign(bucket, key)

            api = ImagesApi(MySQLRepository(connector), "photos", fresh)
            middle = make_record(count // 2, datetime(2026, 1, 1, tzinfo=UTC))
            results[count] = measure(api, api_token(api, middle), args.repeats)
            if count == min(int(n) for n in args.sizes.split(",")):
                modes: dict[str, RenditionUrls] = {
                    "presigned anew each listing (before)": fresh,
                    "presigned, reused per ETag (warm container)": ReusedPresignedUrls(
                        presign, 3600
                    ),
                    "RENDITION_BASE_URL": CdnUrls("https://d111111abcdef8.cloudfront.net", presign),
                }
                apis = {
                    name: ImagesApi(MySQLRepository(connector), "photos", urls)
                    for name, urls in modes.items()
                }
                by_mode = {
                    name: timed(args.repeats, partial(api.list_images, {"limit": "100"}))
                    for name, api in apis.items()
                }
            connector.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.close()
    sizes = sorted(results)
    print(f"GET /images, page of 50, median of {args.repeats} (ms); "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs")  # fmt: skip
    header = " | ".join(f"{n:,} rows" for n in sizes)
    print(f"| query | {header} | ratio |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for name in results[sizes[0]]:
        values = [results[n][name] for n in sizes]
        cells = " | ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {cells} | {values[-1] / values[0]:.2f}x |")
    print()
    print(f"GET /images?limit=100 at {sizes[0]:,} rows, 900 URLs a page, median ms")
    print("| URLs | ms | / before |")
    print("|---|---|---|")
    before = next(iter(by_mode.values()))
    for name, value in by_mode.items():
        print(f"| {name} | {value:.2f} | {value / before:.2f}x |")


def measure(api: ImagesApi, token: str, repeats: int) -> dict[str, float]:
    repository = api.repository
    return {
        "first page": timed(repeats, lambda: api.list_images({"limit": "50"})),
        "first page, query only": timed(repeats, lambda: repository.list_images(ImageQuery())),
        "one folder": timed(
            repeats, lambda: api.list_images({"limit": "50", "folder": "album-07/"})
        ),
        "half-way page": timed(
            repeats, lambda: api.list_images({"limit": "50", "next_token": token})
        ),
    }


def api_token(api: ImagesApi, after: ImageRecord) -> str:
    """A next_token positioned after ``after``, made the way the API makes them."""
    from chalicelib.api import PageTokens, images_scope
    from chalicelib.models import Status

    return PageTokens(api.repository.token_key).make(
        images_scope(None, Status.PROCESSED), (after.uploaded_at, after.key, after.id)
    )


if __name__ == "__main__":
    main()
