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
    # The cards build theirs: <source type sizes srcset> per alternate format, then
    # the <img>, whose loading is decided first and whose srcset and src are set
    # last, once the sources are in place: the browser chooses once.
    assert "el('source', { type, sizes })" in script
    assert "source.srcset = srcsetOf(items);" in script
    assert "el('picture', {}, ...sources(set, CARD_SIZES), img)" in script
    assert "els.picture.replaceChildren(...(shown ? sources([shown], '') : []), els.preview);" in (
        script
    )
    body = script.split("function thumbnail(", 1)[1].split("\n}\n", 1)[0]
    assert body.index("loading: eager ? 'eager' : 'lazy'") < body.index("img.srcset =")
    assert body.index("el('picture'") < body.index("img.sizes = CARD_SIZES;")
    assert body.index("img.sizes = CARD_SIZES;") < body.index("img.srcset = srcsetOf(set);")
    assert body.index("img.srcset = srcsetOf(set);") < body.index("img.src = safeUrl(small.url);")
    assert "decoding: 'async'" in body
    assert "img.fetchPriority = 'high'" in body
    detail = script.split("function renderDetail(", 1)[1].split("\n}\n", 1)[0]
    assert detail.index("els.picture.replaceChildren(") < detail.index("src });")


def grid_rules(style: str) -> tuple[int, dict[str, int], dict[str, int]]:
    """(the narrow layout's max-width, its #grid numbers, the wide #grid's) from the CSS."""

    def numbers(block: str) -> dict[str, int]:
        found = {
            "min": re.search(r"minmax\((\d+)px, 1fr\)", block),
            "gap": re.search(r"\bgap: (\d+)px", block),
            "pad": re.search(r"\bpadding: (\d+)px", block),
        }
        return {k: int(m[1]) for k, m in found.items() if m}

    wide, narrow = re.findall(r"#grid \{([^}]*)\}", style)
    media = re.search(r"@media \(max-width: (\d+)px\) \{[^@]*#grid \{", style)
    assert media, "the narrow layout's media query"
    cap = re.search(r"max-width: (\d+)px", wide)
    assert cap
    return int(media[1]), numbers(narrow), {**numbers(wide), "max": int(cap[1])}


def card_sizes(narrow_max: int, narrow: dict[str, int], wide: dict[str, int]) -> list[str]:
    """The cards' widths by viewport, from the grid's rules: n columns of
    minmax(MIN, 1fr) with GAP between and PAD around, n the most that fit."""

    def calc(n: int, gap: int, pad: int) -> str:
        if n == 1:
            return f"calc(100vw - {2 * pad}px)"
        return f"calc((100vw - {2 * pad + (n - 1) * gap}px) / {n})"

    sizes = []
    for low, high, rules in ((0, narrow_max, narrow), (narrow_max + 1, wide["max"] - 1, wide)):
        minimum, gap, pad = rules["min"], rules["gap"], rules["pad"]
        n = 1
        while True:
            widest = (n + 1) * (minimum + gap) - gap + 2 * pad - 1  # the last with n columns
            if widest >= low:
                sizes.append(f"(max-width: {min(widest, high)}px) {calc(n, gap, pad)}")
            if widest >= high:
                break
            n += 1
    inner = wide["max"] - 2 * wide["pad"]
    n = (inner + wide["gap"]) // (wide["min"] + wide["gap"])
    sizes.append(f"{(inner - (n - 1) * wide['gap']) / n:g}px")
    return sizes


def test_card_sizes_follow_the_grid(page: Page, script: str) -> None:
    """``sizes`` tells the browser how wide a card is before layout: it must
    say what the #grid rules make, or cards take a rendition too small or
    too large."""
    declared = re.search(r"const CARD_SIZES = \[(.*?)\]\.join\(', '\);", script, re.DOTALL)
    assert declared
    listed = re.findall(r"'([^']*)'", declared[1])
    expected = card_sizes(*grid_rules(page.blocks["style"][0]))
    assert listed == expected
    # Spot checks by hand: 4 columns at 1000 px, 6 of 230 px at 1500 px and more.
    assert "(max-width: 1103px) calc((100vw - 88px) / 4)" in listed
    assert listed[-1] == "230px"


def test_the_scrollbar_moves_nothing(page: Page) -> None:
    # A page that grows past the window gets a scrollbar; its room is kept from
    # the start, so the header does not shift (layout shift, CLS) when it comes.
    assert re.search(r"html \{[^}]*scrollbar-gutter: stable", page.blocks["style"][0])


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


def node_results(
    runner: str, code: str, calls: list[tuple[str, list[Any]]], covered_by: str
) -> list[Any]:
    """What ``runner`` prints, run in Node.js with ``code`` and ``calls`` on its
    stdin; skipped without Node.js (``covered_by`` says which test still runs)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip(f"Node.js is not installed: {covered_by}")
    done = subprocess.run(
        [node, "-e", runner],
        input=json.dumps({"code": code, "calls": calls}),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    results: list[Any] = json.loads(done.stdout)
    return results


def run_in_node(script: str, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    return node_results(
        NODE_RUNNER, decoder_source(script), calls, "the browser test covers the decoder"
    )


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


# ---------- which renditions a picture offers, in Node.js ----------

RESPONSIVE_RUNNER = """
const vm = require('vm');
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const context = { URL, location: { href: 'http://gallery.test/' } };
const page = vm.runInNewContext(
  input.code + '\\n;({ sameShape, srcsetOf, cardSet, wholePicture })', context);
const names = (list) => list.map((r) => r.name);
const out = input.calls.map(([name, args]) => {
  const result = page[name](...args);
  if (name === 'cardSet') return names(result);
  if (name === 'wholePicture') return result && result.name;
  return result;
});
process.stdout.write(JSON.stringify(out));
"""


def responsive_source(script: str) -> str:
    """The responsive section, after the helpers it calls (safeUrl, renditionList)."""
    wanted = []
    for name in ("function safeUrl(", "const area = ", "function renditionList("):
        start = script.index(name)
        ending = "\n}\n" if name.startswith("function") else "\n"
        wanted.append(script[start : script.index(ending, start) + len(ending)])
    section = script.split("/* ---------- responsive images ---------- */", 1)[1]
    return "\n".join([*wanted, section.split("/* ---------- placeholder (BlurHash)", 1)[0]])


def run_responsive(script: str, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    return node_results(
        RESPONSIVE_RUNNER,
        responsive_source(script),
        calls,
        "the browser test covers the renditions chosen",
    )


def rendition(width: int, height: int) -> dict[str, Any]:
    url = f"https://cdn.test/{width}x{height}.jpg"
    return {"width": width, "height": height, "url": url, "size_bytes": width * height // 8}


def record(width: int, height: int, **renditions: dict[str, Any]) -> dict[str, Any]:
    return {"width": width, "height": height, "renditions": renditions}


def test_srcsets_mix_only_renditions_of_one_shape(script: str) -> None:
    # Fit-inside renditions of 4000x3000 and of an odd 4001x2999 (rounded
    # sizes) share the source's shape; a square crop and a stretch do not.
    default = record(4000, 3000, thumb=rendition(256, 192), medium=rendition(800, 600),
                     large=rendition(1600, 1200))  # fmt: skip
    odd = record(4001, 2999, thumb=rendition(256, 192), medium=rendition(800, 600),
                 large=rendition(1600, 1199))  # fmt: skip
    cropped = record(4000, 3000, thumb=rendition(256, 256), medium=rendition(800, 600),
                     large=rendition(1600, 1200))  # fmt: skip
    crops = record(4000, 3000, small=rendition(128, 128), thumb=rendition(256, 256),
                   wide=rendition(512, 256), large=rendition(1600, 1200))  # fmt: skip
    # A crop larger than any fit-inside rendition, and a record of crops only.
    big_crop = record(3000, 4000, cover=rendition(2000, 2000), large=rendition(1200, 1600))
    only_crops = record(4000, 3000, thumb=rendition(256, 256), square=rendition(1024, 1024))
    calls: list[tuple[str, list[Any]]] = [
        ("sameShape", [default["renditions"]["thumb"], default]),
        ("sameShape", [odd["renditions"]["large"], odd]),
        ("sameShape", [odd["renditions"]["thumb"], odd["renditions"]["large"]]),
        ("sameShape", [cropped["renditions"]["thumb"], cropped]),
        ("sameShape", [rendition(256, 256), rendition(300, 200)]),
        ("sameShape", [{"width": 256}, default]),
        ("sameShape", [{"width": "256", "height": "192"}, default]),
        ("cardSet", [default]), ("cardSet", [odd]), ("cardSet", [cropped]),
        ("cardSet", [crops]), ("cardSet", [{"renditions": {}}]),
        ("wholePicture", [default]), ("wholePicture", [cropped]),
        ("wholePicture", [big_crop]), ("wholePicture", [only_crops]),
        ("wholePicture", [{"renditions": {}}]),
    ]  # fmt: skip
    assert run_responsive(script, calls) == [
        True, True, True, False, False, False, False,
        ["thumb", "medium", "large"], ["thumb", "medium", "large"], ["thumb"],
        ["small", "thumb"], [],
        "large", "large", "large", "square", None,
    ]  # fmt: skip


def test_srcset_candidates(script: str) -> None:
    a, b = "https://cdn.test/a.avif?v=1", "https://cdn.test/b.avif?v=2"
    calls: list[tuple[str, list[Any]]] = [
        ("srcsetOf", [[{"width": 256, "url": a}, {"width": 800, "url": b}]]),
        # One candidate: the bare URL, its own pixels at 1x.
        ("srcsetOf", [[{"width": 256, "url": a}]]),
        # One per width; unusable URLs and widths are left out.
        ("srcsetOf", [[{"width": 256, "url": a}, {"width": 256, "url": b},
                       {"width": 800, "url": "javascript:alert(1)"}, {"width": 0, "url": b},
                       {"width": "800", "url": b}, {"width": 1600, "url": b}]]),
        # Commas that end a URL would end the candidate: encoded.
        ("srcsetOf", [[{"width": 256, "url": "https://cdn.test/x,,"},
                       {"width": 512, "url": "https://cdn.test/a b"}]]),
        ("srcsetOf", [[]]),
    ]  # fmt: skip
    assert run_responsive(script, calls) == [
        f"{a} 256w, {b} 800w",
        a,
        f"{a} 256w, {b} 1600w",
        "https://cdn.test/x%2C%2C 256w, https://cdn.test/a%20b 512w",
        "",
    ]
