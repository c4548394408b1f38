"""The gallery page stays one self-contained file that its strict CSP can serve.

The page is served with a Content-Security-Policy that allows exactly one
inline script and one inline style (by hash), no inline event handlers, no
style attributes and nothing from other hosts; these checks keep it that way.

The page's BlurHash decoder is plain JavaScript without the DOM: where Node.js
is installed it runs here against the PyPI ``blurhash`` package's decoder
(the browser test runs it in Chromium too).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import blurhash  # type: ignore[import-untyped]
import pytest

from chalicelib import gallery

PAGE = Path(__file__).resolve().parents[2] / "chalicelib" / "static" / "gallery.html"

# Element ids the end-to-end test (and the page's own script) rely on.
IDS = {
    "folder": "select",
    "status": "select",
    "upload-form": "form",
    "upload-file": "input",
    "upload-folder": "input",
    "upload-submit": "button",
    "upload-status": "p",
    "grid": "main",
    "more": "button",
    "detail": "section",
    "detail-close": "button",
    "detail-preview": "img",
    "error": "div",
}


class Page(HTMLParser):
    """Every start tag with its attributes, and the text of script/style blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.blocks: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in self.blocks:
            self._open = tag
            self.blocks[tag].append("")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.blocks[self._open][-1] += data

    def by_id(self) -> dict[str, tuple[str, dict[str, str | None]]]:
        found: dict[str, tuple[str, dict[str, str | None]]] = {}
        for tag, attrs in self.tags:
            if attrs.get("id"):
                found[str(attrs["id"])] = (tag, attrs)
        return found


@pytest.fixture(scope="module")
def html() -> str:
    return PAGE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(html: str) -> Page:
    parser = Page()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def script(page: Page) -> str:
    return page.blocks["script"][0]


def test_exactly_one_inline_script_and_one_inline_style(html: str, page: Page) -> None:
    assert len(page.blocks["script"]) == 1
    assert len(page.blocks["style"]) == 1
    # The server hashes what sits between these exact tags: no attributes on them.
    assert len(re.findall(r"<script>(.*?)</script>", html, re.DOTALL)) == 1
    assert len(re.findall(r"<style>(.*?)</style>", html, re.DOTALL)) == 1
    assert len(re.findall(r"<script\b", html, re.IGNORECASE)) == 1
    assert len(re.findall(r"<style\b", html, re.IGNORECASE)) == 1
    assert page.blocks["script"][0].strip()
    assert page.blocks["style"][0].strip()


def test_the_csp_allows_exactly_the_inline_blocks(page: Page) -> None:
    html, headers = gallery.page()
    directives = dict(
        d.strip().split(" ", 1) for d in str(headers["Content-Security-Policy"]).split(";")
    )

    def sha(block: str) -> str:
        return f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'"

    assert html == PAGE.read_text(encoding="utf-8")
    assert directives["script-src"] == sha(page.blocks["script"][0])
    assert directives["style-src"] == sha(page.blocks["style"][0])
    assert directives["default-src"] == "'none'"
    # No 'unsafe-inline', 'unsafe-eval', 'unsafe-hashes', nonces or hosts.
    assert "unsafe" not in headers["Content-Security-Policy"]


def test_no_style_attributes(html: str, page: Page, script: str) -> None:
    assert [tag for tag, attrs in page.tags if "style" in attrs] == []
    assert not re.search(r"\sstyle\s*=", html.replace(script, ""), re.IGNORECASE)
    assert not re.search(r"setAttribute\(\s*['\"]style", script)
    assert not re.search(r"\.style\s*=|\.cssText|\.setProperty\(|\[['\"]style", script)
    # One CSSOM property (which style-src with hashes allows, unlike a style
    # attribute): the placeholder's colour, checked to be "#rrggbb" first.
    assert re.findall(r"\.style\.(\w+)\s*=", script) == ["backgroundColor"]
    assert "if (color) canvas.style.backgroundColor = color;" in script
    assert "const COLOR = /^#[0-9a-f]{6}$/i;" in script


def test_no_inline_event_handlers(html: str, page: Page, script: str) -> None:
    handlers = [(tag, name) for tag, attrs in page.tags for name in attrs if name.startswith("on")]
    assert handlers == []
    assert not re.search(r"\son[a-z]+\s*=", html.replace(script, ""), re.IGNORECASE)
    assert not re.search(r"setAttribute\(\s*['\"]on", script)


def test_nothing_loaded_from_other_hosts(html: str, page: Page) -> None:
    assert re.findall(r"https?://[^\s\"'<>)]*", html) == []
    assert not re.search(r"//[a-z0-9.-]+\.[a-z]{2,}/", html, re.IGNORECASE)
    assert [tag for tag, _ in page.tags if tag in {"iframe", "object", "embed", "base"}] == []
    # One link: the icon, inline, so the browser asks no /favicon.ico (a 403 there
    # showed as console errors); img-src allows data: URLs.
    [(_, icon)] = [(tag, attrs) for tag, attrs in page.tags if tag == "link"]
    assert icon["rel"] == "icon" and str(icon["href"]).startswith("data:image/png;base64,")
    assert [(tag, attrs) for tag, attrs in page.tags if attrs.get("src")] == []
    assert "@import" not in page.blocks["style"][0]
    assert "url(" not in page.blocks["style"][0]


def test_script_builds_nodes_without_html_strings_or_eval(script: str) -> None:
    assert not re.search(r"\.(inner|outer)HTML\s*=", script)
    assert "insertAdjacentHTML" not in script
    assert "document.write" not in script
    assert not re.search(r"\beval\s*\(|new\s+Function\s*\(", script)
    assert not re.search(r"setTimeout\(\s*['\"`]", script)


def test_api_is_called_with_relative_urls(script: str) -> None:
    for path in ("images", "folders", "uploads"):
        assert f"'{path}'" in script
    assert not re.search(r"['\"`]/(images|folders|uploads)", script)


def test_element_ids_the_end_to_end_test_uses(page: Page) -> None:
    found = page.by_id()
    missing = {id_: tag for id_, tag in IDS.items() if found.get(id_, ("",))[0] != tag}
    assert missing == {}
    ids = [attrs["id"] for _, attrs in page.tags if attrs.get("id")]
    assert len(ids) == len(set(ids)), "duplicate ids"


def test_form_controls_and_hidden_overlay(page: Page) -> None:
    found = page.by_id()
    file_input = found["upload-file"][1]
    assert (file_input.get("type"), file_input.get("accept")) == ("file", "image/*")
    assert found["upload-submit"][1].get("type") == "submit"
    assert "hidden" in found["detail"][1]
    assert "hidden" in found["error"][1]
    assert "hidden" in found["more"][1]
    options = [attrs.get("value") for tag, attrs in page.tags if tag == "option"]
    assert options[:2] == ["", "/"]
    assert {"processed", "failed"} <= set(options)


def test_card_and_rendition_classes_and_messages(script: str) -> None:
    for needle in ("'card'", "'card failed'", "'thumb'", "'lazy'", "'rendition-row'"):
        assert needle in script
    for needle in ("'alternate-row'", "'frame'", "'blur'", "'pending'"):
        assert needle in script
    assert "`Processed ${key}`" in script
    assert "`Failed ${key}: " in script
    assert "No images yet. Upload one with the form above or with the aws CLI." in script


def test_title_and_system_fonts(html: str, page: Page) -> None:
    assert "<title>image-pipeline gallery</title>" in html
    assert "<h1>image-pipeline gallery</h1>" in html
    assert "system-ui" in page.blocks["style"][0]
    assert "prefers-color-scheme: dark" in page.blocks["style"][0]


def test_thumbnails_are_pictures_with_a_source_per_alternate(page: Page, script: str) -> None:
    # The detail preview, in markup: a <picture> around the <img>.
    found = page.by_id()
    assert found["detail-picture"][0] == "picture"
    tags = [tag for tag, _ in page.tags]
    assert tags[tags.index("picture") + 1] == "img"
    # The cards build theirs: <source type srcset> per alternate, then the <img>,
    # whose src is set last, once the sources are in place.
    assert "el('source', { type, srcset: srcsetUrl(url) })" in script
    assert "el('picture', {}, ...sources(small), img)" in script
    assert "els.picture.replaceChildren(...sources(largest), els.preview);" in script
    body = script.split("function thumbnail(", 1)[1].split("\n}\n", 1)[0]
    assert body.index("el('picture'") < body.index("img.src = src;")
    detail = script.split("function renderDetail(", 1)[1].split("\n}\n", 1)[0]
    assert detail.index("els.picture.replaceChildren(") < detail.index("src });")


def test_the_placeholder_goes_when_the_thumbnail_loads(script: str) -> None:
    body = script.split("function thumbnail(", 1)[1].split("\n}\n", 1)[0]
    assert (
        "img.addEventListener('load', () => { img.classList.remove('pending'); blur.remove(); }"
        in body
    )
    assert "putImageData(new ImageData(pixels, width, height), 0, 0)" in script
    assert "if (!ph || typeof ph !== 'object') return null;" in script


# ---------- the BlurHash decoder, in Node.js ----------

NODE_RUNNER = """
const vm = require('vm');
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const page = vm.runInNewContext(input.code + '\\n;({ decodeBlurHash, placeholderSize })', {});
const out = input.calls.map(([name, args]) => {
  const started = process.hrtime.bigint();
  let value;
  try {
    const result = page[name](...args);
    value = ArrayBuffer.isView(result) ? Array.from(result) : result; // any realm
  } catch (err) {
    value = { threw: String(err) };
  }
  return { value, ms: Number(process.hrtime.bigint() - started) / 1e6 };
});
process.stdout.write(JSON.stringify(out));
"""


def decoder_source(script: str) -> str:
    """The script's BlurHash section: constants and pure functions, no DOM at load."""
    section = script.split("/* ---------- placeholder (BlurHash) ---------- */", 1)[1]
    return section.split("/* ---------- grid ---------- */", 1)[0]


def run_in_node(script: str, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the browser test covers the decoder")
    done = subprocess.run(
        [node, "-e", NODE_RUNNER],
        input=json.dumps({"code": decoder_source(script), "calls": calls}),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def reference_rgba(hash_: str, width: int, height: int) -> list[int]:
    rows = blurhash.decode(hash_, width, height)
    return [channel for row in rows for pixel in row for channel in (*pixel, 255)]


def sample_hashes() -> list[str]:
    """Hashes of every component count from 1x1 to 9x9 (the format's range),
    of random pixels, plus the contract's example and one from the local stack."""
    rng = random.Random(5)
    hashes = ["LKO2?U%2Tw=w]~RBVZRi};RPxuwH", "VKFZD~gnQ3y0I^Foz=o4S0n.I.ohFzM{s$t,O*XxWSTE"]
    for nx, ny in [(1, 1), (4, 3), (6, 4), (3, 6), (9, 9), (9, 1), (1, 9), (5, 5)]:
        pixels = [[[rng.randrange(256) for _ in range(3)] for _ in range(12)] for _ in range(9)]
        hashes.append(blurhash.encode(pixels, nx, ny))
    return hashes


def test_decoder_matches_the_reference_decoder(script: str) -> None:
    hashes = sample_hashes()
    sizes = [(32, 24), (24, 32), (1, 1), (7, 3)]
    cases = [(h, w, ht) for h in hashes for w, ht in sizes]
    cases.append((hashes[-4], 64, 64))  # 9x9 components at the largest size painted
    results = run_in_node(script, [("decodeBlurHash", [h, w, ht]) for h, w, ht in cases])
    for (hash_, width, height), result in zip(cases, results, strict=True):
        assert result["value"] == reference_rgba(hash_, width, height), (hash_, width, height)


def test_decoder_ignores_junk_quickly(script: str) -> None:
    good = "LKO2?U%2Tw=w]~RBVZRi};RPxuwH"
    longest = "|" + "0" * (4 + 2 * 81 - 1)  # 9x9 components: the longest well-formed hash
    junk: list[Any] = [
        None, 42, {}, ["LKO2?U"], "", "LKO2?", good[:-1], good + "0", good[:-1] + " ",
        good[:-1] + "é", good[:-1] + "<", "\u0000" * 28, longest + "00",
        "~" * 10_000, "0" * 1_000_000, "L" + "\ud83d\ude00" * 13 + "0",
    ]  # fmt: skip
    calls: list[tuple[str, list[Any]]] = [("decodeBlurHash", [j, 32, 24]) for j in junk]
    calls += [
        ("decodeBlurHash", [good, w, h])
        for w, h in [(0, 24), (32, 0), (65, 24), (32, 1e9), (1.5, 24), (None, 24), ("32", 24)]
    ]
    calls.append(("decodeBlurHash", [longest, 32, 24]))
    started = time.monotonic()
    results = run_in_node(script, calls)
    assert time.monotonic() - started < 30
    assert [r["value"] for r in results[:-1]] == [None] * (len(calls) - 1)
    assert all(r["ms"] < 200 for r in results), [r["ms"] for r in results]
    assert results[-1]["value"] == reference_rgba(longest, 32, 24)


def test_placeholder_size_follows_the_aspect_ratio(script: str) -> None:
    args: list[list[Any]] = [
        [4000, 3000], [3000, 4000], [256, 256], [10_000, 1], [1, 10_000], [0, 10], [None, None],
        ["x", 3], [-4, -3], [1e308, 1e-308],
    ]  # fmt: skip
    results = run_in_node(script, [("placeholderSize", a) for a in args])
    assert [r["value"] for r in results] == [
        [32, 24], [24, 32], [32, 32], [32, 1], [1, 32], [32, 24], [32, 24],
        [32, 24], [32, 24], [32, 1],
    ]  # fmt: skip
