"""Modern formats in the gallery, in headless Chromium against ``manage.py dev``
with ``FORMATS=avif,webp``.

Each thumbnail is a ``<picture>`` with a ``<source>`` per alternate format,
its srcset that format's renditions by width, and Chromium takes the AVIF one
of the smallest rendition that covers the card; the record's BlurHash is painted on a canvas (its
colour behind it) the moment the card is in the page, before the thumbnail can
have loaded, and the canvas goes when it has; the strict CSP reports nothing.

``FORMATS`` reaches the stack through the environment of ``manage.py dev``:
the ``local`` stage's ``config.json`` does not set it, so the process
environment's value stands. With ``UPDATE_SCREENSHOT=1`` the gallery's
screenshot is written to ``docs/gallery.png`` (the README's).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import blurhash  # type: ignore[import-untyped]
from PIL import Image

from bench.inputs import jpeg_bytes
from tests.e2e.test_local_stack import (
    ARTIFACTS,
    PROJECT,
    TIMEOUT,
    LocalStack,
    browser_or_skip,
    chromium,
    console_errors,
    running_stack,
)

# key -> (width, height, seed): a few folders, landscape and portrait.
PHOTOS = {
    "sunset.jpg": (2400, 1350, 11),
    "portrait.jpg": (1500, 2000, 12),
    "scans/receipt.jpg": (1000, 1400, 13),
    "family/garden.jpg": (2000, 1500, 14),
    "family/birthday.jpg": (1200, 1600, 15),
    "trips/oslo/harbour.jpg": (3000, 2000, 16),
    "trips/rome/forum.jpg": (1600, 1600, 17),
    "trips/rome/colosseum.jpg": (2400, 1600, 18),
}

# Before the page's own script runs: every CSP violation, and each card as it
# was the moment it entered the page (its placeholder's pixels, whether its
# thumbnail had loaded).
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
}, true);
window.__cards = {};
new MutationObserver((mutations) => {
  for (const m of mutations) for (const node of m.addedNodes) {
    if (!(node instanceof HTMLElement) || !node.matches('a.card')) continue;
    const img = node.querySelector('img.thumb');
    const canvas = node.querySelector('canvas.blur');
    const seen = { complete: img && img.complete, pending: img && img.matches('.pending') };
    if (canvas) {
      const { width, height } = canvas;
      seen.canvas = { width, height, background: getComputedStyle(canvas).backgroundColor,
        pixels: Array.from(canvas.getContext('2d').getImageData(0, 0, width, height).data) };
    }
    window.__cards[node.querySelector('.name').title] = seen;
  }
}).observe(document, { childList: true, subtree: true });
"""

# The page's records as it holds them (its own presigned URLs), by key.
PAGE_RECORDS = """
return Object.fromEntries([...state.records.values()].map((r) => [r.key, r]));
"""

CARDS = """
return [...document.querySelectorAll('#grid a.card')].map((a) => {
  const img = a.querySelector('img.thumb');
  return {
    key: a.querySelector('.name').title,
    currentSrc: img.currentSrc, complete: img.complete, naturalWidth: img.naturalWidth,
    cssWidth: img.getBoundingClientRect().width, srcset: img.srcset,
    pending: img.matches('.pending'), canvases: a.querySelectorAll('canvas').length,
    sources: [...a.querySelectorAll('picture > source')].map((s) => [s.type, s.srcset]),
    order: [...a.querySelector('picture').children].map((c) => c.tagName.toLowerCase()),
  };
});
"""

# card() on records the server may hand out, or a broken one: nothing throws.
ODD_RECORDS = """
const [thumbUrl] = arguments;
const base = { id: 'odd', key: 'odd/<i>x<i>.jpg', folder: 'odd/', status: 'processed',
  width: 400, height: 300,
  renditions: { thumb: { width: 256, height: 192, url: thumbUrl, alternates: [
    { content_type: 'image/avif', url: thumbUrl }, { content_type: 'text/html', url: thumbUrl },
    { content_type: 'image/webp', url: 'javascript:alert(1)' }, null, 'x'] } } };
const cases = {
  'null': null, missing: undefined, 'not an object': 'LKO2?U%2Tw=w]~RBVZRi};RPxuwH',
  'junk hash and colour': { blurhash: '~'.repeat(100000), color: 'red;background:url(x)' },
  'bad characters': { blurhash: 'LKO2?U%2Tw=w]~RBVZRi};RPxuw<', color: '#12345g' },
  'colour only': { blurhash: 42, color: '#336699' },
};
const out = {};
for (const [name, placeholder] of Object.entries(cases)) {
  try {
    const rec = { ...base };
    if (placeholder !== undefined) rec.placeholder = placeholder;
    const a = card(rec);
    const canvas = a.querySelector('canvas');
    out[name] = {
      canvas: !!canvas,
      background: canvas ? canvas.style.backgroundColor : null,
      painted: canvas ? canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height)
        .data.some((v, i) => i % 4 === 3 && v > 0) : null,
      sources: [...a.querySelectorAll('source')].map((s) => s.type),
      text: a.querySelector('.name').textContent,
      html: a.querySelectorAll('i').length,
    };
  } catch (err) {
    out[name] = { threw: String(err) };
  }
}
return out;
"""


def rgba_to_rgb(pixels: list[int]) -> list[tuple[int, int, int]]:
    return [(pixels[i], pixels[i + 1], pixels[i + 2]) for i in range(0, len(pixels), 4)]


def cells(pixels: list[tuple[int, int, int]], width: int, height: int) -> list[float]:
    """Mean of each channel in a 4x4 grid of cells: the picture's colours, coarsely."""
    image = Image.new("RGB", (width, height))
    image.putdata(pixels)
    small = image.resize((4, 4), Image.Resampling.BOX)
    return [float(c) for c in small.tobytes()]


def thumbnail_pixels(stack: LocalStack, key: str, size: tuple[int, int]) -> list[Any]:
    """The thumbnail rendition (the JPEG), box-filtered to ``size``, as RGB tuples."""
    body = stack.s3().get_object(Bucket="local-renditions", Key=key)["Body"].read()
    with Image.open(io.BytesIO(body)) as thumb:
        data = thumb.convert("RGB").resize(size, Image.Resampling.BOX).tobytes()
    return [tuple(data[i : i + 3]) for i in range(0, len(data), 3)]


def test_gallery_prefers_avif_and_paints_placeholders(tmp_path: Path) -> None:
    browser_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    with running_stack(tmp_path, {"FORMATS": "avif,webp"}) as stack:
        s3 = stack.s3()
        for key, (width, height, seed) in PHOTOS.items():
            s3.put_object(
                Bucket="local-uploads", Key=key, Body=jpeg_bytes(width, height, seed=seed)
            )
        records = {key: stack.wait_listed(key) for key in PHOTOS}
        for record in records.values():
            for rendition in record["renditions"].values():
                types = [alt["content_type"] for alt in rendition["alternates"]]
                assert types == ["image/avif", "image/webp"], rendition
            assert set(record["placeholder"]) == {"blurhash", "color"}

        browser = chromium(tmp_path)
        wait = WebDriverWait(browser, TIMEOUT)
        try:
            browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH})
            browser.get(stack.api)
            wait.until(lambda b: len(b.execute_script("return Object.keys(window.__cards)")) == 8)
            wait.until(
                lambda b: b.execute_script(
                    "const i = [...document.querySelectorAll('#grid img.thumb')];"
                    "return i.length === 8 && i.every(x => x.complete && x.naturalWidth > 0);"
                )
            )
            seen: dict[str, Any] = browser.execute_script("return window.__cards")
            cards = {c["key"]: c for c in browser.execute_script(CARDS)}
            page_records = browser.execute_script(PAGE_RECORDS)
            assert set(seen) == set(cards) == set(PHOTOS)

            for key, record in records.items():
                thumb = record["renditions"]["thumb"]
                card = cards[key]
                # Renditions by width (all fit-inside: one shape), smallest first.
                ordered = sorted(
                    page_records[key]["renditions"].items(), key=lambda item: item[1]["width"]
                )

                def srcset(pick: Any, ordered: Any = ordered) -> str:
                    return ", ".join(f"{pick(r)} {r['width']}w" for _, r in ordered)

                # Sources in the record's order, before the <img>, each with its
                # format's srcset; the <img> has the renditions themselves.
                assert card["order"] == ["source", "source", "img"]
                assert card["sources"] == [
                    ["image/avif", srcset(lambda r: r["alternates"][0]["url"])],
                    ["image/webp", srcset(lambda r: r["alternates"][1]["url"])],
                ]
                assert card["srcset"] == srcset(lambda r: r["url"])
                # Chromium takes AVIF, of the smallest rendition as wide as the card.
                name, shown = next(
                    ((n, r) for n, r in ordered if r["width"] >= card["cssWidth"]), ordered[-1]
                )
                avif, webp = record["renditions"][name]["alternates"]
                assert card["currentSrc"] == shown["alternates"][0]["url"]
                assert urlsplit(card["currentSrc"]).path == "/local-renditions/" + quote(
                    avif["key"]
                )
                assert webp["key"].endswith(".webp")
                # Loaded: the placeholder is gone, the thumbnail shown.
                assert (card["canvases"], card["pending"]) == (0, False)

                # At insertion: not loaded, hidden, over a painted placeholder.
                entered = seen[key]
                assert (entered["complete"], entered["pending"]) == (False, True), key
                canvas = entered["canvas"]
                width, height = canvas["width"], canvas["height"]
                assert max(width, height) == 32
                assert abs(width / height - record["width"] / record["height"]) < 0.1
                colour = record["placeholder"]["color"]
                rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
                assert canvas["background"] == f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"
                painted = canvas["pixels"]
                assert all(alpha == 255 for alpha in painted[3::4])
                # Exactly the reference decoder's pixels, and the thumbnail's colours.
                reference = blurhash.decode(record["placeholder"]["blurhash"], width, height)
                expected = [c for row in reference for pixel in row for c in (*pixel, 255)]
                assert max(abs(a - b) for a, b in zip(painted, expected, strict=True)) <= 1
                image = thumbnail_pixels(stack, thumb["key"], (width, height))
                ours = cells(rgba_to_rgb(painted), width, height)
                theirs = cells(image, width, height)
                error = sum(abs(a - b) for a, b in zip(ours, theirs, strict=True)) / len(ours)
                assert error < 24, (key, error)
                mean = [sum(p[i] for p in image) / len(image) for i in range(3)]
                assert max(abs(m - c) for m, c in zip(mean, rgb, strict=True)) < 24, key

            # The page's decoder, called directly, agrees with the reference one.
            hash_ = records["sunset.jpg"]["placeholder"]["blurhash"]
            decoded = browser.execute_script(
                "return Array.from(decodeBlurHash(arguments[0], 32, 18));", hash_
            )
            reference = blurhash.decode(hash_, 32, 18)
            expected = [c for row in reference for pixel in row for c in (*pixel, 255)]
            assert max(abs(a - b) for a, b in zip(decoded, expected, strict=True)) <= 1
            junk = browser.execute_script(
                "return [null, 7, '', '~'.repeat(1e6), 'LKO2?U%2Tw=w]~RBVZRi};RPxuw<']"
                ".map((h) => decodeBlurHash(h, 32, 24));"
            )
            assert junk == [None] * 5

            # Records without a placeholder, or with junk: cards all the same.
            url = page_records["sunset.jpg"]["renditions"]["thumb"]["url"]
            odd = browser.execute_script(ODD_RECORDS, url)
            text = "<i>x<i>.jpg"
            plain = {"sources": ["image/avif"], "text": text, "html": 0}
            for name in ("null", "missing", "not an object", "junk hash and colour"):
                assert odd[name] == {"canvas": False, "background": None, "painted": None, **plain}
            assert odd["bad characters"] == odd["null"]
            assert odd["colour only"] == {
                "canvas": True, "background": "rgb(51, 102, 153)", "painted": False, **plain,
            }  # fmt: skip

            ARTIFACTS.mkdir(exist_ok=True)
            browser.set_window_size(1280, 820)  # a viewport of about 1280x680: both rows
            browser.save_screenshot(str(ARTIFACTS / "gallery-formats.png"))
            if os.environ.get("UPDATE_SCREENSHOT") == "1":
                browser.save_screenshot(str(PROJECT / "docs" / "gallery.png"))

            # The detail view: the large rendition's AVIF, and every alternate listed.
            browser.find_element(
                By.CSS_SELECTOR, 'a.card[data-id] .name[title="sunset.jpg"]'
            ).click()
            detail = wait.until(
                expected_conditions.visibility_of_element_located((By.ID, "detail"))
            )
            large = page_records["sunset.jpg"]["renditions"]["large"]
            wait.until(
                lambda b: b.execute_script(
                    "const p = document.getElementById('detail-preview');"
                    "return p.complete && p.naturalWidth > 0;"
                )
            )
            preview = browser.execute_script(
                "return document.getElementById('detail-preview').currentSrc"
            )
            assert preview == large["alternates"][0]["url"]
            assert len(detail.find_elements(By.CSS_SELECTOR, ".rendition-row")) == 3
            rows = detail.find_elements(By.CSS_SELECTOR, ".alternate-row")
            assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == [
                f"{name} · {fmt}"
                for name in ("thumb", "medium", "large")
                for fmt in ("avif", "webp")
            ]
            browser.execute_script("document.getElementById('detail-renditions').scrollIntoView()")
            browser.save_screenshot(str(ARTIFACTS / "detail-formats.png"))
            browser.find_element(By.ID, "detail-close").click()
            wait.until(expected_conditions.invisibility_of_element_located((By.ID, "detail")))

            # Nothing the CSP refused, nothing in the console.
            errors = console_errors(browser)
            assert errors == [], json.dumps(errors, indent=1)
            assert browser.execute_script("return window.__csp") == []
            # Which the watchers would have seen: a style attribute is refused.
            browser.execute_script("document.body.setAttribute('style', 'outline: 1px solid red')")
            wait.until(lambda b: b.execute_script("return window.__csp.length") > 0)
            refused = console_errors(browser)
            assert any("violates the following Content Security" in e["message"] for e in refused)
            browser.execute_script("document.body.removeAttribute('style')")

            # Thumbnails that never arrive: their placeholders stay, under the alt text.
            browser.execute_cdp_cmd("Network.enable", {})
            browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/local-renditions/*"]})
            browser.get(stack.api)
            wait.until(
                lambda b: b.execute_script(
                    "const i = [...document.querySelectorAll('#grid img.thumb')];"
                    "return i.length === 8 && i.every(x => x.complete && x.naturalWidth === 0);"
                )
            )
            blocked = browser.execute_script(CARDS)
            assert [(c["canvases"], c["pending"]) for c in blocked] == [(1, False)] * 8
            browser.save_screenshot(str(ARTIFACTS / "gallery-placeholders.png"))
        finally:
            browser.quit()
