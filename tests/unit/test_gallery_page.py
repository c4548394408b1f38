"""The gallery page stays one self-contained file that its strict CSP can serve.

The page is served with a Content-Security-Policy that allows exactly one
inline script and one inline style (by hash), no inline event handlers, no
style attributes and nothing from other hosts; these checks keep it that way.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

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


def test_no_style_attributes(html: str, page: Page, script: str) -> None:
    assert [tag for tag, attrs in page.tags if "style" in attrs] == []
    assert not re.search(r"\sstyle\s*=", html.replace(script, ""), re.IGNORECASE)
    assert not re.search(r"setAttribute\(\s*['\"]style", script)
    assert not re.search(r"\.style\.\w+\s*=|\.style\s*=|\.cssText", script)


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
    assert "`Processed ${key}`" in script
    assert "`Failed ${key}: " in script
    assert "No images yet. Upload one with the form above or with the aws CLI." in script


def test_title_and_system_fonts(html: str, page: Page) -> None:
    assert "<title>image-pipeline gallery</title>" in html
    assert "<h1>image-pipeline gallery</h1>" in html
    assert "system-ui" in page.blocks["style"][0]
    assert "prefers-color-scheme: dark" in page.blocks["style"][0]
