"""A hostile corpus, made by the tests: each file ends as a failed record or a
clean ignore, each key as a record or a clean failure, never a crash or a
half-written state; and no request to the REST API answers 500."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from chalicelib import keys
from tests.integration.conftest import Stack, make_stack
from tests.support import jpeg, png_claiming

POLYGLOTS = {
    "page.jpg": b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>",
    "vector.jpg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
    b'onload="alert(1)"><rect width="10" height="10"/></svg>',
    "gifar.jpg": b"GIF89a" + b"\x00" * 7 + b"PK\x03\x04" + b"\x00" * 64,
    "zero.jpg": b"",
    "eps.jpg": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n" * 4,
    "psd.jpg": b"8BPS\x00\x01\x00\x00\x00\x00\x00\x00\x00\x03" + b"\x00" * 64,
    "pdf.jpg": b"%PDF-1.7\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n",
    "bomb.png": png_claiming(40000, 40000),
    "cut.png": png_claiming(64, 64)[:40],
}


@pytest.mark.parametrize("name", sorted(POLYGLOTS))
def test_hostile_files_become_failed_records(stack: Stack, name: str) -> None:
    assert stack.upload(name, POLYGLOTS[name]) == ["failed"]

    [image] = stack.images(f"?status=failed&key={quote(name)}")
    assert image["error"] and image["renditions"] == {}
    assert stack.keys("resized/") == []


def test_many_gif_frames_count_against_the_pixel_cap(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(base_env | {"MAX_SOURCE_PIXELS": "1000000"}, tmp_path, monkeypatch)
    frames = [Image.new("L", (200, 200), shade) for shade in range(0, 255, 5)]  # 51 x 40,000
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])

    assert stack.upload("animation.gif", buffer.getvalue()) == ["failed"]
    [image] = stack.images("?status=failed")
    assert "frames" in image["error"] and "MAX_SOURCE_PIXELS" in image["error"]


STRANGE_KEYS = [
    "../escape.jpg",
    "a/../../b.jpg",
    "tab\there.jpg",
    # (a newline is a valid S3 key character too, but moto's server cannot store it)
    "nul\x01byte.jpg",
    "quote'; DROP TABLE images; --.jpg",
    'dq"\\back\\slash.jpg',
    "%00%2e%2e%2f.jpg",
    "emoji/😀/🎉.jpg",
    "rtl/\u202egnp.jpg",
]


@pytest.mark.parametrize("key", STRANGE_KEYS)
def test_strange_keys_are_processed_and_listed_exactly(stack: Stack, key: str) -> None:
    assert stack.upload(key, jpeg(120, 90)) == ["processed"]

    [image] = stack.images(f"?key={quote(key)}")
    assert image["key"] == key
    assert image["id"] == keys.image_id("uploads", key)
    assert stack.get(f"/images/{image['id']}")[1]["key"] == key
    rendition = image["renditions"]["thumb"]["key"]
    assert rendition == f"resized/thumb/{key}"
    meta = stack.s3.head_object(Bucket="uploads", Key=rendition)["Metadata"]
    assert meta["source-key"].isascii() and meta["source-key"] == keys.metadata_value(key)
    assert stack.delete(key) == ["deleted"]
    assert stack.keys("resized/") == []


def test_a_1024_byte_key_fails_cleanly(stack: Stack) -> None:
    key = "k/" + "ü" * 509 + ".jpg"
    assert len(key.encode()) == 1024

    assert stack.upload(key, jpeg(120, 90)) == ["failed"]
    [image] = stack.images(f"?status=failed&key={quote(key)}")
    assert "1024" in image["error"]
    assert stack.keys("resized/") == []


text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
params = st.dictionaries(
    st.sampled_from(["folder", "status", "key", "limit", "next_token", "x"]), text, max_size=4
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(["/images", "/folders"]), query=params, image_id=text)
def test_fuzzed_requests_never_answer_500(
    stack: Stack, path: str, query: dict[str, str], image_id: str
) -> None:
    query_string = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    for url in (f"{path}?{query_string}", f"/images/{quote(image_id, safe='')}"):
        response = stack.client.http.get(url)
        assert response.status_code in (200, 400, 403, 404), (url, response.body)
