"""``GET /``: the gallery page, with headers that lock it down.

The page is one file with one inline script and one inline style; the
Content-Security-Policy allows exactly those (by hash) and nothing else of
its own origin, so an S3 key rendered into the page can never run as code.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

PAGE = Path(__file__).with_name("static") / "gallery.html"


def _sources(blocks: list[str]) -> str:
    """CSP sources allowing exactly these inline blocks (or nothing)."""
    hashes = [base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in blocks]
    return " ".join(f"'sha256-{h}'" for h in hashes) or "'none'"


@functools.cache
def page() -> tuple[str, dict[str, str | list[str]]]:
    """The page's HTML and its response headers (computed once per container)."""
    html = PAGE.read_text(encoding="utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    styles = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_sources(scripts)}",
            f"style-src {_sources(styles)}",
            # Renditions come from presigned S3 URLs; uploads POST to S3.
            "img-src * data: blob:",
            "connect-src *",
            "form-action 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers: dict[str, str | list[str]] = {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    return html, headers
