"""URLs a browser or CDN can keep: with ``RENDITION_BASE_URL`` every rendition
and alternate URL is versioned by the object's own ETag; without, a warm
container hands out the same presigned URL again for the same object."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.integration.conftest import make_stack
from tests.support import jpeg

CDN = "https://d111111abcdef8.cloudfront.net"


def urls_of(image: dict[str, object]) -> list[str]:
    renditions = image["renditions"]
    assert isinstance(renditions, dict)
    return [
        u for r in renditions.values() for u in [r["url"], *(a["url"] for a in r["alternates"])]
    ]


def test_base_url_versions_each_url_by_its_objects_etag(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = base_env | {"RENDITION_BASE_URL": CDN + "/", "FORMATS": "webp"}
    stack = make_stack(env, tmp_path, monkeypatch)
    stack.upload("photos/été 1.jpg", jpeg(900, 600))

    [image] = stack.images()
    for rendition in image["renditions"].values():
        for obj in [rendition, *rendition["alternates"]]:
            head = stack.s3.head_object(Bucket=stack.settings.dest_bucket, Key=obj["key"])
            etag = head["ETag"].strip('"')
            assert obj["url"] == f"{CDN}/{quote(obj['key'], safe='/')}?v={etag}"
    assert "X-Amz-" not in " ".join(urls_of(image))

    stack.upload("photos/été 1.jpg", jpeg(900, 600, quality=70))  # new pixels, same keys
    [again] = stack.images()
    assert set(urls_of(again)).isdisjoint(urls_of(image))


def test_repeat_listings_of_a_warm_container_give_identical_presigned_urls(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(base_env | {"FORMATS": "avif"}, tmp_path, monkeypatch)
    stack.upload("a.jpg", jpeg(900, 600))

    first = urls_of(stack.images()[0])
    assert urls_of(stack.images()[0]) == first
    status, one = stack.get(f"/images/{stack.images()[0]['id']}")
    assert status == 200 and urls_of(one) == first
    with urllib.request.urlopen(first[0]) as response:
        assert response.status == 200

    # A rewritten rendition is signed anew (a URL signed within the same second
    # may still read the same: renditions are served with no-cache, so a
    # browser revalidates it by ETag and never shows the old picture).
    stack.upload("a.jpg", jpeg(900, 600, quality=70))
    thumb = stack.images()[0]["renditions"]["thumb"]
    stored = stack.s3.get_object(Bucket=stack.settings.dest_bucket, Key=thumb["key"])
    with urllib.request.urlopen(thumb["url"]) as response:
        assert response.read() == stored["Body"].read()
    assert stored["CacheControl"] == "no-cache"
