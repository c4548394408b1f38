"""The alternates' defaults are the ones the last ``bench/formats.py`` run chose.

The benchmark picks the qualities, the AVIF speed and threads and the WebP
method; its report (``bench/results/formats.md``) is committed. A default
changed by hand, or a new run whose choice was not carried over, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

from chalicelib.imaging import encode
from chalicelib.settings import DEFAULT_AVIF_QUALITY, DEFAULT_WEBP_QUALITY

REPORT = Path(__file__).resolve().parents[2] / "bench" / "results" / "formats.md"


def chosen() -> dict[str, int]:
    text = REPORT.read_text()
    block = text[text.index("## Chosen") :]
    avif = re.search(
        r"`AVIF_QUALITY` \*\*(\d+)\*\*, speed \*\*(\d+)\*\*, threads \*\*(\d+)\*\*", block
    )
    webp = re.search(r"`WEBP_QUALITY` \*\*(\d+)\*\*, `WEBP_METHOD` \*\*(\d+)\*\*", block)
    assert avif and webp, "the report's Chosen section changed shape"
    return {
        "avif_quality": int(avif[1]),
        "avif_speed": int(avif[2]),
        "avif_threads": int(avif[3]),
        "webp_quality": int(webp[1]),
        "webp_method": int(webp[2]),
    }


def test_the_defaults_are_the_measured_choice() -> None:
    assert chosen() == {
        "avif_quality": DEFAULT_AVIF_QUALITY,
        "avif_speed": encode.AVIF_SPEED,
        "avif_threads": encode.AVIF_THREADS,
        "webp_quality": DEFAULT_WEBP_QUALITY,
        "webp_method": encode.WEBP_METHOD,
    }
