"""Rendition URLs that caches can keep: CDN URLs versioned by ETag, and
presigned URLs reused per ETag while half their life remains."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.settings import Settings, SettingsError
from chalicelib.urls import CdnUrls, ReusedPresignedUrls


class Signer:
    """A presigner whose every URL is new, as a real one's (X-Amz-Date) is."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, bucket: str, key: str) -> str:
        with self._lock:
            self.calls += 1
            return f"https://{bucket}.s3/{key}?sig={self.calls}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cdn_urls_are_the_base_the_encoded_key_and_the_objects_etag() -> None:
    signer = Signer()
    urls = CdnUrls("https://d111.cloudfront.net/", signer)
    key = "resized/thumb/photos/été 1+1=2?#.jpg"
    assert urls("dst", key, "9b2cf535f27731c974343645a3985328") == (
        "https://d111.cloudfront.net/resized/thumb/photos/%C3%A9t%C3%A9%201%2B1%3D2%3F%23.jpg"
        "?v=9b2cf535f27731c974343645a3985328"
    )
    assert signer.calls == 0  # no presigning at all
    # A multipart ETag ("...-2") is still one query value.
    assert urls("dst", "a.jpg", "abc-2").endswith("/a.jpg?v=abc-2")


def test_cdn_urls_presign_objects_whose_etag_the_record_lacks() -> None:
    signer = Signer()
    assert CdnUrls("https://cdn", signer)("dst", "a.jpg", None) == "https://dst.s3/a.jpg?sig=1"


def test_a_presigned_url_is_reused_for_the_same_etag_while_half_its_life_remains() -> None:
    signer, clock = Signer(), Clock()
    urls = ReusedPresignedUrls(signer, expires=3600, clock=clock)
    first = urls("dst", "a.jpg", "e1")
    clock.now += 1799
    assert urls("dst", "a.jpg", "e1") == first
    clock.now += 2
    second = urls("dst", "a.jpg", "e1")
    assert second != first  # past half its life: signed anew, then reused
    assert urls("dst", "a.jpg", "e1") == second
    assert signer.calls == 2


def test_a_new_etag_or_key_gets_a_new_url_and_an_unknown_etag_is_never_reused() -> None:
    signer, clock = Signer(), Clock()
    urls = ReusedPresignedUrls(signer, expires=3600, clock=clock)
    a = urls("dst", "a.jpg", "e1")
    assert urls("dst", "a.jpg", "e2") != a  # the rendition was rewritten
    assert urls("dst", "b.jpg", "e1") != a
    assert urls("dst", "a.jpg", None) != urls("dst", "a.jpg", None)


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    signer = Signer()
    urls = ReusedPresignedUrls(signer, expires=3600, clock=Clock(), max_entries=2)
    a = urls("dst", "a", "1")
    urls("dst", "b", "1")
    assert urls("dst", "a", "1") == a  # a is now the most recent
    urls("dst", "c", "1")  # evicts b
    assert signer.calls == 3
    assert urls("dst", "a", "1") == a
    urls("dst", "b", "1")
    assert signer.calls == 4


def test_concurrent_listings_stay_consistent_and_bounded() -> None:
    """Eight listing threads over more objects than the cache holds: every
    URL is one signed for its own object, and the cache keeps its bound."""
    signer = Signer()
    urls = ReusedPresignedUrls(signer, expires=3600, max_entries=50)
    barrier = threading.Barrier(8)

    def lister(n: int) -> list[tuple[str, str]]:
        barrier.wait()
        return [(f"k{i}", urls("dst", f"k{i}", "e")) for i in range(n % 2, 400, 2)]

    with ThreadPoolExecutor(8) as pool:
        results = [pair for page in pool.map(lister, range(8)) for pair in page]

    assert all(url.startswith(f"https://dst.s3/{key}?sig=") for key, url in results)
    assert len(urls._cache) == 50
    warm = [urls("dst", f"k{i}", "e") for i in range(350, 400)]
    calls = signer.calls
    assert [urls("dst", f"k{i}", "e") for i in range(350, 400)] == warm
    assert signer.calls == calls  # the last 50 are served from the cache


MINIMAL = {"SOURCE_BUCKET": "src", "DDB_TABLE": "images"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ""),
        ("https://d111.cloudfront.net", "https://d111.cloudfront.net"),
        ("https://d111.cloudfront.net/", "https://d111.cloudfront.net"),
        ("https://cdn.example.com/images/", "https://cdn.example.com/images"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_rendition_base_url(value: str, expected: str) -> None:
    env = MINIMAL | {"RENDITION_BASE_URL": value}
    assert Settings.from_env(env).rendition_base_url == expected


@pytest.mark.parametrize(
    "value",
    ["d111.cloudfront.net", "ftp://cdn", "https://", "https://cdn/?x=1", "https://cdn/#a",
     "https://user:pw@cdn"],
)  # fmt: skip
def test_a_rendition_base_url_that_is_not_an_origin_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="RENDITION_BASE_URL"):
        Settings.from_env(MINIMAL | {"RENDITION_BASE_URL": value})


def test_the_base_url_changes_no_rendition() -> None:
    with_cdn: Callable[[str], Settings] = lambda v: Settings.from_env(  # noqa: E731
        MINIMAL | {"RENDITION_BASE_URL": v}
    )
    assert with_cdn("https://a").fingerprint == with_cdn("").fingerprint
