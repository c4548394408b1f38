"""What the gallery costs a browser, in headless Chromium against ``manage.py dev``
with ``FORMATS=avif,webp`` and 50 photos (the page lists 24 at a time).

Bytes are counted from the DevTools protocol's network events (each image
request's ``Network.loadingFinished`` ``encodedDataLength``: headers and body
as they crossed the wire; Resource Timing would report 0 for these
cross-origin images). Checked:

- a repeat visit in the same browser profile moves at most a tenth of the
  first visit's image bytes, with presigned URLs (the API hands out the same
  URL per ETag; the renditions are stored ``Cache-Control: no-cache``, so the
  browser revalidates with ``If-None-Match`` and the emulator answers 304) and
  with ``RENDITION_BASE_URL`` through a caching proxy standing in for the CDN
  (``Cache-Control: immutable``: nothing is asked at all);
- the first visit moves no more than a page of each card's ``large``
  rendition would, and takes for each card, in AVIF, the smallest rendition
  at least as wide as the card in device pixels: the thumbnail for a 4:3
  landscape card 215 px wide, the 600 px one for a portrait (whose thumbnail
  is 192 px wide), the 800 px one on a screen of twice the density;
- every image has ``width`` and ``height`` attributes from the record, and
  nothing shifts (cumulative layout shift 0);
- cards far below the fold are not fetched until scrolled to;
- the detail view's large rendition is not fetched before the card is
  clicked, and is after;
- the strict CSP reports nothing, and the console has no errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.caching_proxy import CachingProxy, caching_proxy, s3_origin
from bench.inputs import jpeg_bytes
from devtools.emulator import free_port
from tests.e2e.test_local_stack import (
    TIMEOUT,
    LocalStack,
    browser_or_skip,
    console_errors,
    launch_chromium,
    running_stack,
)

PHOTOS = 50
CARDS = 24  # the page's PAGE_SIZE
SETTINGS = {"FORMATS": "avif,webp"}
BUCKET = "local-renditions"
# A phone-sized window whose 24 cards (2 columns of 215 px, 12 rows) run far
# past Chromium's lazy-loading distance (1250 px below the viewport on a fast link).
VIEWPORT = (480, 700)

# Before the page's own script: CSP violations, the largest contentful paint
# and layout shifts, as the page reports them.
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
}, true);
window.__lcp = null;
new PerformanceObserver((list) => {
  const last = list.getEntries().pop();
  window.__lcp = { ms: last.startTime, url: last.url, size: last.size };
}).observe({ type: 'largest-contentful-paint', buffered: true });
window.__cls = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
}).observe({ type: 'layout-shift', buffered: true });
"""

IMAGES = """
return [...document.querySelectorAll('#grid a.card')].map((a) => {
  const img = a.querySelector('img.thumb');
  const box = a.getBoundingClientRect();
  return {
    id: a.dataset.id, key: a.querySelector('.name').title, top: box.top + scrollY,
    currentSrc: img.currentSrc, complete: img.complete, naturalWidth: img.naturalWidth,
    width: img.getAttribute('width'), height: img.getAttribute('height'),
    loading: img.loading, cssWidth: img.getBoundingClientRect().width,
  };
});
"""


def photo_size(i: int) -> tuple[int, int]:
    """Mostly 4:3 landscape, every seventh a portrait."""
    return (900, 1200) if i % 7 == 3 else (1200, 900)


def upload_photos(
    stack: LocalStack, count: int = PHOTOS, size: Callable[[int], tuple[int, int]] = photo_size
) -> dict[str, dict[str, Any]]:
    """``count`` synthetic photos uploaded, then their records once all are listed."""
    s3 = stack.s3()
    keys = [f"album/photo-{i:02d}.jpg" for i in range(count)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket="local-uploads", Key=key, Body=jpeg_bytes(*size(i), seed=i))
    deadline = time.monotonic() + 3 * TIMEOUT
    while time.monotonic() < deadline:
        listed = stack.get("images?limit=100")["images"]
        if len(listed) >= count:
            return {r["key"]: r for r in listed}
        time.sleep(0.5)
    raise AssertionError(f"{len(listed)} of {count} photos listed")


def delivery_browser(profile: Path, viewport: tuple[int, int] = VIEWPORT, scale: float = 1) -> Any:
    """Headless Chromium with its console and DevTools network events logged, at an
    exact viewport and device pixel ratio; its cache lives in ``profile``."""
    browser = launch_chromium(profile, (1400, 1000), ("browser", "performance"))
    width, height = viewport
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": False},
    )
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH})
    return browser


@dataclass
class Request:
    url: str
    type: str = ""
    status: int = 0
    bytes: int = 0
    done: bool = False


@dataclass
class Network:
    """The page's requests, from the performance log's ``Network.*`` events."""

    requests: dict[str, Request] = field(default_factory=dict)

    def read(self, browser: Any) -> int:
        """Take in the events logged since the last read; how many there were."""
        entries = browser.get_log("performance")
        for entry in entries:
            message = json.loads(entry["message"])["message"]
            method, params = message.get("method", ""), message.get("params", {})
            rid = params.get("requestId")
            if method == "Network.requestWillBeSent":
                if rid in self.requests:  # a redirect: the same id goes on
                    self.requests[rid].url = params["request"]["url"]
                else:
                    self.requests[rid] = Request(params["request"]["url"], params.get("type", ""))
            elif rid in self.requests:
                request = self.requests[rid]
                if method == "Network.responseReceived":
                    request.type = params.get("type", request.type)
                    request.status = int(params["response"]["status"])
                elif method == "Network.loadingFinished":
                    request.bytes, request.done = int(params["encodedDataLength"]), True
                elif method == "Network.loadingFailed":
                    request.done = True
        return len(entries)

    def images(self) -> list[Request]:
        return [r for r in self.requests.values() if r.type == "Image" and r.url.startswith("http")]

    @property
    def image_bytes(self) -> int:
        return sum(r.bytes for r in self.images())

    def urls(self) -> set[str]:
        return {r.url for r in self.images()}

    def settle(self, browser: Any, quiet: float = 1.0, limit: float = TIMEOUT) -> None:
        """Read until every request has finished and nothing new came for ``quiet`` s."""
        deadline = time.monotonic() + limit
        last = time.monotonic()
        while time.monotonic() < deadline:
            if self.read(browser):
                last = time.monotonic()
            pending = [r for r in self.requests.values() if not r.done]
            if not pending and time.monotonic() - last >= quiet:
                return
            time.sleep(0.1)
        raise AssertionError(f"still loading after {limit}s: {[r.url for r in pending]}")


@dataclass
class Visit:
    network: Network
    cards: list[dict[str, Any]]
    lcp: dict[str, Any] | None
    cls: float
    csp: list[str]

    @property
    def image_bytes(self) -> int:
        return self.network.image_bytes


def visit(browser: Any, url: str, cards: int = CARDS) -> Visit:
    """Open ``url`` (a new navigation: the cache is the profile's), wait for the
    grid's ``cards`` cards and for the network to go quiet; what it cost."""
    from selenium.webdriver.support.ui import WebDriverWait

    network = Network()
    network.read(browser)  # what came before is not this visit's
    network.requests.clear()
    browser.get(url)
    WebDriverWait(browser, TIMEOUT).until(
        lambda b: (
            b.execute_script("return document.querySelectorAll('#grid a.card').length") >= cards
        )
    )
    network.settle(browser)
    return Visit(
        network,
        browser.execute_script(IMAGES),
        browser.execute_script("return window.__lcp"),
        float(browser.execute_script("return window.__cls")),
        browser.execute_script("return window.__csp"),
    )


def urls_of(record: Mapping[str, Any], name: str) -> set[str]:
    """The URLs of one rendition of a record: itself and its alternates."""
    rendition = record["renditions"][name]
    return {rendition["url"], *(alt["url"] for alt in rendition["alternates"])}


def covering(record: Mapping[str, Any], css_width: float, scale: float) -> str:
    """The name of the smallest rendition at least ``css_width * scale`` pixels wide."""
    renditions = sorted(record["renditions"].items(), key=lambda item: item[1]["width"])
    wide = [name for name, r in renditions if r["width"] >= css_width * scale]
    return wide[0] if wide else renditions[-1][0]


def avif_url(record: Mapping[str, Any], name: str) -> str:
    [avif] = [
        a for a in record["renditions"][name]["alternates"] if a["content_type"] == "image/avif"
    ]
    return str(avif["url"])


@pytest.fixture(scope="module")
def presigned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    browser_or_skip()
    with running_stack(tmp_path_factory.mktemp("presigned"), SETTINGS) as stack:
        yield {"stack": stack, "records": upload_photos(stack)}


@pytest.fixture(scope="module")
def behind_cdn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    browser_or_skip()
    port = free_port()
    settings = {**SETTINGS, "RENDITION_BASE_URL": f"http://127.0.0.1:{port}"}
    with running_stack(tmp_path_factory.mktemp("cdn"), settings) as stack:
        proxy: CachingProxy
        with caching_proxy(s3_origin(stack.s3(), BUCKET), port=port) as proxy:
            yield {"stack": stack, "records": upload_photos(stack), "proxy": proxy}


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    browser = delivery_browser(tmp_path / "profile")
    try:
        yield browser
    finally:
        browser.quit()


def check_repeat_visit(first: Visit, repeat: Visit, browser: Any) -> None:
    assert first.image_bytes > 0
    assert len(first.network.images()) >= 8
    # The same pictures on screen, for at most a tenth of the bytes.
    shown = [(c["key"], c["currentSrc"]) for c in first.cards if c["complete"]]
    assert shown == [(c["key"], c["currentSrc"]) for c in repeat.cards if c["complete"]]
    assert repeat.image_bytes <= first.image_bytes / 10, (first.image_bytes, repeat.image_bytes)
    assert first.csp == repeat.csp == []
    assert console_errors(browser) == []


def test_repeat_visit_with_presigned_urls(presigned: dict[str, Any], browser: Any) -> None:
    first = visit(browser, presigned["stack"].api)
    repeat = visit(browser, presigned["stack"].api)
    check_repeat_visit(first, repeat, browser)
    # Asked again, answered "not modified": the body did not travel.
    statuses = {r.status for r in repeat.network.images()}
    assert statuses <= {304}, statuses
    assert len(repeat.network.images()) == len(first.network.images())


def test_repeat_visit_behind_a_cdn(behind_cdn: dict[str, Any], browser: Any) -> None:
    proxy: CachingProxy = behind_cdn["proxy"]
    before = proxy.requests
    first = visit(browser, behind_cdn["stack"].api)
    asked = proxy.requests
    repeat = visit(browser, behind_cdn["stack"].api)
    check_repeat_visit(first, repeat, browser)
    assert all(url.startswith(proxy.base_url + "/") for url in first.network.urls())
    assert asked - before == len(first.network.urls())
    # Immutable: the second time the browser asks nothing at all.
    assert proxy.requests == asked
    assert repeat.image_bytes == 0
    # The proxy fetched each object from the bucket once.
    assert proxy.upstream_requests == len(first.network.urls())


def test_first_visit_lazy_cards_and_the_detail_view(
    presigned: dict[str, Any], browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    stack: LocalStack = presigned["stack"]
    records: dict[str, dict[str, Any]] = presigned["records"]
    wait = WebDriverWait(browser, TIMEOUT)
    first = visit(browser, stack.api)
    # The page's own records: the URLs it was handed (the same per ETag as ours).
    by_key = {r["key"]: r for r in browser.execute_script(
        "return [...state.records.values()]"
    )}  # fmt: skip
    assert len(by_key) == CARDS and set(by_key) <= set(records)
    fetched = first.network.urls()

    # Each card loaded shows the AVIF of the smallest rendition that covers it,
    # and nothing else was fetched: no larger size, no second format.
    loaded = [c for c in first.cards if c["complete"]]
    chosen = {c["key"]: covering(records[c["key"]], c["cssWidth"], 1) for c in loaded}
    assert set(chosen.values()) == {"thumb", "medium"}  # landscape, portrait
    shown = {avif_url(by_key[key], name) for key, name in chosen.items()}
    assert {c["currentSrc"] for c in loaded} == shown == fetched
    naive = sum(r["renditions"]["large"]["size_bytes"] for r in records.values())
    assert first.image_bytes <= naive, (first.image_bytes, naive)

    # Sizes from the record, so the grid does not move as pictures arrive.
    for card in first.cards:
        thumb = records[card["key"]]["renditions"]["thumb"]
        assert (card["width"], card["height"]) == (str(thumb["width"]), str(thumb["height"]))
    assert first.cls == 0
    assert first.lcp is not None and first.lcp["url"] in shown

    # Every card in view is shown; the ones far below have not been asked for.
    height = browser.execute_script("return innerHeight")
    in_view = [c for c in first.cards if c["top"] < height]
    assert in_view and all(c["complete"] and c["naturalWidth"] > 0 for c in in_view)
    far = [c for c in first.cards if c["top"] > height + 1500]  # lazy distance: 1250
    assert len(far) >= 4, [c["top"] for c in first.cards]
    assert all(c["loading"] == "lazy" and not c["complete"] for c in far)
    never = set().union(
        *(urls_of(by_key[c["key"]], n) for c in far for n in by_key[c["key"]]["renditions"])
    )
    assert never.isdisjoint(fetched)
    # Scrolled to, they arrive.
    last = far[-1]
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    wait.until(
        lambda b: b.execute_script(
            "const i = [...document.querySelectorAll('#grid img.thumb')].pop();"
            "return i.complete && i.naturalWidth > 0;"
        )
    )
    first.network.settle(browser)
    assert avif_url(by_key[last["key"]], covering(records[last["key"]], last["cssWidth"], 1)) in (
        first.network.urls()
    )
    browser.execute_script("window.scrollTo(0, 0)")

    # The detail view: its large rendition only once the card is clicked.
    chosen = first.cards[0]
    large = urls_of(by_key[chosen["key"]], "large")
    every_large = set().union(*(urls_of(r, "large") for r in by_key.values()))
    first.network.read(browser)
    assert every_large.isdisjoint(first.network.urls())
    browser.find_element(By.CSS_SELECTOR, f'a.card[data-id="{chosen["id"]}"]').click()
    wait.until(expected_conditions.visibility_of_element_located((By.ID, "detail")))
    wait.until(
        lambda b: b.execute_script(
            "const p = document.getElementById('detail-preview');"
            "return p.complete && p.naturalWidth > 0;"
        )
    )
    preview = browser.execute_script(
        "const p = document.getElementById('detail-preview');"
        "return [p.currentSrc, p.getAttribute('width'), p.getAttribute('height')];"
    )
    rendition = by_key[chosen["key"]]["renditions"]["large"]
    assert preview == [avif_url(by_key[chosen["key"]], "large"), str(rendition["width"]),
                       str(rendition["height"])]  # fmt: skip
    first.network.settle(browser)
    assert avif_url(by_key[chosen["key"]], "large") in first.network.urls()
    assert large & first.network.urls()
    # Only that card's: no other large rendition came with it.
    assert (every_large - large).isdisjoint(first.network.urls())

    assert browser.execute_script("return window.__csp") == []
    errors = console_errors(browser)
    assert errors == [], json.dumps(errors, indent=1)


def test_a_denser_screen_gets_the_next_size(presigned: dict[str, Any], tmp_path: Path) -> None:
    browser = delivery_browser(tmp_path / "profile", scale=2)
    try:
        first = visit(browser, presigned["stack"].api)
        by_key = {r["key"]: r for r in browser.execute_script("return [...state.records.values()]")}
        loaded = [c for c in first.cards if c["complete"]]
        assert loaded
        # Cards 215 CSS px wide need 430 device pixels: the 800 (or 600) px rendition.
        names = {c["key"]: covering(by_key[c["key"]], c["cssWidth"], 2) for c in loaded}
        assert set(names.values()) == {"medium"}
        assert [c["currentSrc"] for c in loaded] == [
            avif_url(by_key[c["key"]], names[c["key"]]) for c in loaded
        ]
        assert first.cls == 0
        assert console_errors(browser) == []
    finally:
        browser.quit()
