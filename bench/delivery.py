"""What the gallery costs a browser: image bytes and LCP, first and repeat visit.

In headless Chromium against ``manage.py dev`` (``FORMATS=avif,webp``) holding
50 photos (``bench/inputs.py``, 1200x900 JPEG uploads), for two pages on the
same data and the same backend, each listing its first 24 cards:

- **before**: the page of ``--before`` (``git show REV:chalicelib/static/gallery.html``;
  default 635cbd6, the last commit before the responsive gallery);
- **new**: the working tree's page.

Each page is served by a stack of its own, started from a copy of the
working tree (``app.py``, ``manage.py``, ``chalicelib``, ``devtools``,
``.chalice``) in a scratch directory, the page swapped in the copy: no
setting in the app knows about the benchmark. Every stack gets the same 50
uploads (same seeds, so the same rendition bytes).

Both URL modes: presigned URLs (reused per ETag; renditions stored
``Cache-Control: no-cache``, so a repeat visit revalidates each with
``If-None-Match`` and moto answers 304), and ``RENDITION_BASE_URL`` through
``bench/caching_proxy.py`` standing in for the CDN (``Cache-Control: public,
max-age=31536000, immutable``).

Per repeat and page: a fresh browser profile, a first visit, then a repeat
visit (a new navigation in the same profile). Image bytes are the DevTools
protocol's ``Network.loadingFinished`` ``encodedDataLength`` of every image
request (headers and body as they crossed the wire); LCP is the page's own
``largest-contentful-paint`` entry (``startTime``, ms after navigation
start); CLS the sum of its ``layout-shift`` entries. Pages are visited round
robin within a repeat (the order rotating), after one unrecorded visit each
that warms the stack; medians over ``--repeats``.

    .venv/bin/python -m bench.delivery [--repeats 5] [--viewport 1280x800]
        [--before 635cbd6] [--out bench/results/delivery.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.caching_proxy import CachingProxy, caching_proxy, s3_origin
from devtools.emulator import free_port
from tests.e2e.test_gallery_delivery import (
    BUCKET,
    CARDS,
    SETTINGS,
    Visit,
    delivery_browser,
    upload_photos,
    visit,
)
from tests.e2e.test_local_stack import LocalStack

PROJECT = Path(__file__).resolve().parents[1]
PAGE = "chalicelib/static/gallery.html"
COPIED = ("app.py", "manage.py", "chalicelib", "devtools", ".chalice")
BEFORE = "635cbd6"
PHOTOS = 50
SIZE = (1200, 900)


def before_page(rev: str) -> str:
    """The gallery page at ``rev``."""
    return subprocess.run(
        ["git", "show", f"{rev}:{PAGE}"], cwd=PROJECT, capture_output=True, text=True, check=True
    ).stdout


def project_copy(dest: Path, page: str | None) -> Path:
    """The working tree's app in ``dest``, with ``page`` as its gallery (None: its own)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".local-stacks", "deployed")
    dest.mkdir(parents=True)
    for name in COPIED:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)
    if page is not None:
        (dest / PAGE).write_text(page, encoding="utf-8")
    return dest


@contextmanager
def stack_in(project: Path, log: IO[bytes], settings: Mapping[str, str]) -> Iterator[LocalStack]:
    """``manage.py dev`` run in ``project`` on free ports until the block ends
    (the stacks it announces go beside ``log``, not into a developer's)."""
    stack = LocalStack.launch(log, settings, project)
    try:
        stack.wait_started(Path(log.name))
        yield stack
    finally:
        stack.stop()


@dataclass
class Served:
    name: str
    stack: LocalStack
    proxy: CachingProxy | None = None


@contextmanager
def served(
    pages: Mapping[str, str | None], cdn: bool, scratch: Path, exits: ExitStack
) -> Iterator[list[Served]]:
    """A stack per page (behind a caching proxy each, with ``cdn``), 50 photos in each."""
    out = []
    for n, (name, page) in enumerate(pages.items()):
        where = scratch / f"{'cdn' if cdn else 'presigned'}-{n}"
        project = project_copy(where / "project", page)
        log = exits.enter_context((where / "dev.log").open("wb"))
        settings = dict(SETTINGS)
        port = free_port()
        if cdn:
            settings["RENDITION_BASE_URL"] = f"http://127.0.0.1:{port}"
        stack = exits.enter_context(stack_in(project, log, settings))
        proxy = None
        if cdn:
            origin = s3_origin(stack.s3(), BUCKET)
            proxy = exits.enter_context(caching_proxy(origin, port=port))
        upload_photos(stack, PHOTOS, lambda i: SIZE)
        out.append(Served(name, stack, proxy))
    yield out


def measure_pair(served: Served, profile: Path, viewport: tuple[int, int]) -> tuple[Visit, Visit]:
    """A first and a repeat visit in a fresh profile."""
    browser = delivery_browser(profile, viewport)
    try:
        first = visit(browser, served.stack.api, CARDS)
        repeat = visit(browser, served.stack.api, CARDS)
        return first, repeat
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Row:
    first_bytes: float
    first_images: float
    first_lcp: float
    repeat_bytes: float
    repeat_304: float
    repeat_lcp: float
    cls: float
    cards: int


def summarise(pairs: list[tuple[Visit, Visit]]) -> Row:
    med = statistics.median

    def lcp(v: Visit) -> float:
        return float(v.lcp["ms"]) if v.lcp else float("nan")

    return Row(
        first_bytes=med(f.image_bytes for f, _ in pairs),
        first_images=med(len(f.network.images()) for f, _ in pairs),
        first_lcp=med(lcp(f) for f, _ in pairs),
        repeat_bytes=med(r.image_bytes for _, r in pairs),
        repeat_304=med(sum(i.status == 304 for i in r.network.images()) for _, r in pairs),
        repeat_lcp=med(lcp(r) for _, r in pairs),
        cls=max(max(f.cls, r.cls) for f, r in pairs),
        cards=len(pairs[0][0].cards),
    )


def run_mode(
    pages: Mapping[str, str | None],
    cdn: bool,
    repeats: int,
    viewport: tuple[int, int],
    scratch: Path,
) -> dict[str, Row]:
    samples: dict[str, list[tuple[Visit, Visit]]] = {name: [] for name in pages}
    with ExitStack() as exits, served(pages, cdn, scratch, exits) as stacks:
        for s in stacks:  # warm: the API's URLs signed, the proxy filled, Chromium's files read
            measure_pair(s, scratch / "profile-warm", viewport)
        for r in range(repeats):
            for s in stacks[r % len(stacks) :] + stacks[: r % len(stacks)]:
                first, repeat = measure_pair(s, scratch / "profile", viewport)
                samples[s.name].append((first, repeat))
                mode = "cdn" if cdn else "presigned"
                print(f"  {mode} {r + 1}/{repeats} {s.name}: {first.image_bytes} B, "
                      f"repeat {repeat.image_bytes} B", file=sys.stderr)  # fmt: skip
    return {name: summarise(pairs) for name, pairs in samples.items()}


def kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def machine() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown CPU",
    )
    memory = ""
    if Path("/proc/meminfo").exists():
        total = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total / 2**20:.0f} GiB"
    chromium = shutil.which("chromium") or "chromium"
    version = subprocess.run(
        [chromium, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return [
        f"- machine: {model}, `nproc` {len(os.sched_getaffinity(0))}{memory}; load average "
        f"at start {os.getloadavg()[0]:.2f}; run {datetime.date.today().isoformat()}",
        f"- Python {platform.python_version()}; {version or 'Chromium'} (headless), selenium",
    ]


def report(
    results: dict[str, dict[str, Row]], args: argparse.Namespace, started: float, head: list[str]
) -> str:
    width, height = args.viewport
    lines = [
        "# Gallery delivery: image bytes and LCP in headless Chromium",
        "",
        f"`.venv/bin/python -m bench.delivery --repeats {args.repeats} --viewport "
        f"{width}x{height} --before {args.before}` (took {(time.monotonic() - started) / 60:.1f} "
        "min)",
        "",
        *head,
        f"- load average at the end {os.getloadavg()[0]:.2f}",
        f"- `manage.py dev` with `FORMATS=avif,webp`, {PHOTOS} photos (`bench/inputs.py`, "
        f"{SIZE[0]}x{SIZE[1]} JPEG q90 uploads), default `RENDITIONS`; a viewport of "
        f"{width}x{height} CSS px at device pixel ratio 1",
        "- image bytes: `Network.loadingFinished` `encodedDataLength` of the image requests "
        "(headers and body on the wire); LCP: the page's `largest-contentful-paint` "
        "`startTime`; medians of "
        f"{args.repeats} fresh profiles per page, each a first and a repeat visit",
        f"- before: `{args.before}`'s page; new: this tree's page; both list {CARDS} cards "
        "a page; each on a stack of its own (a copy of this tree, the page swapped in), "
        "the same data",
        "",
    ]
    for mode, rows in results.items():
        lines += [
            f"## {mode}",
            "",
            "| page | cards | first visit: image bytes | images | LCP ms | repeat visit: "
            "image bytes | repeat / first | 304s | LCP ms | CLS (max) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, row in rows.items():
            ratio = row.repeat_bytes / row.first_bytes if row.first_bytes else float("nan")
            lines.append(
                f"| {name} | {row.cards} | {kib(row.first_bytes)} | {row.first_images:g} | "
                f"{row.first_lcp:.0f} | {kib(row.repeat_bytes)} | {ratio:.3f} | "
                f"{row.repeat_304:g} | {row.repeat_lcp:.0f} | {row.cls:.4f} |"
            )
        new = rows["new"]
        lines.append("")
        for name, row in rows.items():
            if name == "new" or not row.first_bytes:
                continue
            bytes_ratio = new.first_bytes / row.first_bytes
            lcp_ratio = new.first_lcp / row.first_lcp
            lines.append(
                f"- new / {name}: first-visit image bytes {bytes_ratio:.2f}x, LCP {lcp_ratio:.2f}x"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--viewport", default="1280x800", type=lambda t: tuple(int(v) for v in t.split("x"))
    )
    parser.add_argument("--before", default=BEFORE, help="the commit whose page is 'before'")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    started = time.monotonic()
    head = machine()
    pages: dict[str, str | None] = {"before": before_page(args.before), "new": None}
    results: dict[str, dict[str, Row]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as scratch:
        for cdn in (False, True):
            mode = "RENDITION_BASE_URL through the caching proxy" if cdn else "presigned URLs"
            results[mode] = run_mode(pages, cdn, args.repeats, args.viewport, Path(scratch))
    text = report(results, args, started, head)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
