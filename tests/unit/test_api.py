"""REST query validation and pagination tokens, over an in-memory repository."""

from __future__ import annotations

import pytest

from chalicelib import keys
from chalicelib.api import BadRequest, ImagesApi, NotFound
from chalicelib.models import ImageRecord, Rendition, Status
from tests.fakes import MemoryRepository


def add(
    repo: MemoryRepository, key: str, uploaded_at: str, status: Status = Status.PROCESSED
) -> None:
    image_id = keys.image_id("src", key)
    rendition = Rendition("thumb", "dst", f"resized/thumb/{key}", 10, 10, 100, "image/jpeg")
    record = ImageRecord(
        id=image_id, bucket="src", key=key, folder=keys.folder_of(key), status=status,
        etag="e", size_bytes=1, uploaded_at=uploaded_at, created_at="c", updated_at="u",
        renditions={"thumb": rendition} if status is Status.PROCESSED else {},
    )  # fmt: skip
    repo.save(record, None)


@pytest.fixture
def api() -> ImagesApi:
    repo = MemoryRepository()
    for i in range(5):
        add(repo, f"f/{i}.jpg", f"2026-01-0{i + 1}T00:00:00Z")
    add(repo, "root.jpg", "2026-02-01T00:00:00Z")
    add(repo, "f/bad.jpg", "2026-03-01T00:00:00Z", Status.FAILED)
    return ImagesApi(repo, "src", lambda bucket, key: f"https://signed/{bucket}/{key}")


def test_listing_pages_and_urls(api: ImagesApi) -> None:
    first = api.list_images({"folder": "f/", "limit": "2"})
    assert [i["key"] for i in first["images"]] == ["f/4.jpg", "f/3.jpg"]
    assert (
        first["images"][0]["renditions"]["thumb"]["url"]
        == "https://signed/dst/resized/thumb/f/4.jpg"
    )
    second = api.list_images({"folder": "f/", "limit": "2", "next_token": first["next_token"]})
    assert [i["key"] for i in second["images"]] == ["f/2.jpg", "f/1.jpg"]
    third = api.list_images({"folder": "f/", "limit": "2", "next_token": second["next_token"]})
    assert [i["key"] for i in third["images"]] == ["f/0.jpg"]
    assert third["next_token"] is None


def test_filters(api: ImagesApi) -> None:
    assert [i["key"] for i in api.list_images({"folder": "/"})["images"]] == ["root.jpg"]
    assert [i["key"] for i in api.list_images({"status": "failed"})["images"]] == ["f/bad.jpg"]
    assert [i["key"] for i in api.list_images({"key": "f/3.jpg"})["images"]] == ["f/3.jpg"]
    assert api.list_images({"key": "f/bad.jpg"})["images"] == []
    assert api.list_images({"key": "nope.jpg"}) == {"images": [], "next_token": None}
    assert len(api.list_images(None)["images"]) == 6


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "-3"},
        {"limit": "1.5"},
        {"status": "all"},
        {"folder": "f"},
        {"folder": "/f/"},
        {"folder": "a//b/"},
        {"key": ""},
        {"key": "x" * 1025},
        {"key": "a.jpg", "next_token": "abc"},
        {"next_token": ""},
        {"next_token": "%%%"},
        {"next_token": "A" * 5000},
        {"next_token": "eyJhIjoxfQ"},
        {"unknown": "1"},
    ],
)
def test_bad_parameters(api: ImagesApi, params: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        api.list_images(params)


def test_tokens_are_bound_to_their_query_and_checked(api: ImagesApi) -> None:
    token = api.list_images({"folder": "f/", "limit": "2"})["next_token"]
    assert token
    with pytest.raises(BadRequest):
        api.list_images({"folder": "f/", "limit": "2", "status": "failed", "next_token": token})
    with pytest.raises(BadRequest):
        api.list_images({"limit": "2", "next_token": token})
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    with pytest.raises(BadRequest):
        api.list_images({"folder": "f/", "limit": "2", "next_token": flipped})
    # The limit may change between pages.
    assert api.list_images({"folder": "f/", "limit": "3", "next_token": token})["images"]


def test_get_image(api: ImagesApi) -> None:
    image_id = keys.image_id("src", "f/1.jpg")
    assert api.get_image(image_id)["key"] == "f/1.jpg"
    with pytest.raises(NotFound):
        api.get_image("AAAAAAAAAAAAAAAAAAAAAA")
    with pytest.raises(BadRequest):
        api.get_image("no/slashes")


def test_folders_listing(api: ImagesApi) -> None:
    with pytest.raises(BadRequest):
        api.list_folders({"limit": "x"})
    assert api.list_folders({}) == {"folders": [], "next_token": None}
