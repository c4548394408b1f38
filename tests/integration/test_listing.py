"""GET /images and GET /folders over real records: pagination, filters, errors."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Stack
from tests.support import jpeg


def upload_at(stack: Stack, key: str, second: int) -> None:
    stack.put(key, jpeg(64, 48))
    record = stack.record(key)
    record["eventTime"] = f"2026-11-21T21:00:{second:02d}.000Z"
    assert stack.deliver(record) == ["processed"]


def all_pages(stack: Stack, path: str, field: str) -> list[list[Any]]:
    pages: list[list[Any]] = []
    token = None
    while True:
        sep = "&" if "?" in path else "?"
        status, body = stack.get(path + (f"{sep}next_token={token}" if token else ""))
        assert status == 200, body
        pages.append(body[field])
        token = body["next_token"]
        if token is None:
            return pages
        assert len(pages) < 20


def test_pages_newest_first_across_more_than_two_pages(stack: Stack) -> None:
    for second in range(7):
        upload_at(stack, f"p/{second}.jpg", second)

    pages = all_pages(stack, "/images?limit=3", "images")

    sizes = [len(p) for p in pages]
    assert sizes[:3] == [3, 3, 1] and sum(sizes) == 7 and all(s == 0 for s in sizes[3:])
    keys = [image["key"] for page in pages for image in page]
    assert keys == [f"p/{s}.jpg" for s in reversed(range(7))]


def test_same_upload_time_is_ordered_by_key(stack: Stack) -> None:
    for name in ("b", "a", "c"):
        upload_at(stack, f"{name}.jpg", 5)

    pages = all_pages(stack, "/images?limit=2", "images")
    assert [i["key"] for p in pages for i in p] == ["c.jpg", "b.jpg", "a.jpg"]


def test_folder_filter_lists_direct_children_only(stack: Stack) -> None:
    upload_at(stack, "root.jpg", 1)
    upload_at(stack, "a/one.jpg", 2)
    upload_at(stack, "a/b/two.jpg", 3)

    assert [i["key"] for i in stack.images("?folder=a/")] == ["a/one.jpg"]
    assert [i["key"] for i in stack.images("?folder=a/b/")] == ["a/b/two.jpg"]
    assert [i["key"] for i in stack.images("?folder=/")] == ["root.jpg"]
    assert len(stack.images()) == 3
    pages = all_pages(stack, "/images?folder=a/&limit=1", "images")
    assert [i["key"] for p in pages for i in p] == ["a/one.jpg"]


def test_status_filter(stack: Stack) -> None:
    upload_at(stack, "ok.jpg", 1)
    stack.upload("bad.jpg", b"nope")

    assert [i["key"] for i in stack.images("?status=failed")] == ["bad.jpg"]
    assert [i["key"] for i in stack.images("?status=processed")] == ["ok.jpg"]
    assert stack.images("?status=failed&key=ok.jpg") == []


def test_bad_parameters_are_400_in_chalice_shape(stack: Stack) -> None:
    upload_at(stack, "x/1.jpg", 1)
    upload_at(stack, "x/2.jpg", 2)
    status, body = stack.get("/images?limit=1")
    token = body["next_token"]
    assert token

    for query in (
        "limit=0",
        "limit=101",
        "limit=ten",
        "status=deleted",
        "folder=nofolder",
        "folder=/abs/",
        "next_token=garbage",
        f"next_token={token[:-2]}",
        f"next_token={token}&folder=x/",  # a token belongs to its query
        "colour=red",
    ):
        status, body = stack.get(f"/images?{query}")
        assert status == 400, query
        assert body["Code"] == "BadRequestError" and body["Message"], query
    for query in ("limit=0", "next_token=AAAA"):
        status, body = stack.get(f"/folders?{query}")
        assert status == 400 and body["Code"] == "BadRequestError"


def test_folders_from_markers_and_images(stack: Stack) -> None:
    stack.put("albums/2024/", b"")
    assert stack.deliver(stack.record("albums/2024/")) == ["folder_created"]
    upload_at(stack, "trips/rome/day1.jpg", 1)

    pages = all_pages(stack, "/folders?limit=2", "folders")
    folders = {f["prefix"]: f["has_marker"] for p in pages for f in p}
    assert folders == {
        "albums/": False,
        "albums/2024/": True,
        "trips/": False,
        "trips/rome/": False,
    }
    assert [len(p) for p in pages][:2] == [2, 2]


def test_folder_without_marker_goes_with_its_last_image(stack: Stack) -> None:
    upload_at(stack, "t/u/a.jpg", 1)
    upload_at(stack, "t/u/b.jpg", 2)
    upload_at(stack, "t/c.jpg", 3)

    stack.delete("t/u/a.jpg")
    assert {f["prefix"] for f in stack.get("/folders")[1]["folders"]} == {"t/", "t/u/"}
    stack.delete("t/u/b.jpg")
    assert {f["prefix"] for f in stack.get("/folders")[1]["folders"]} == {"t/"}
    stack.delete("t/c.jpg")
    assert stack.get("/folders")[1]["folders"] == []


def test_deleting_a_marker_keeps_a_folder_that_holds_images(stack: Stack) -> None:
    stack.put("keep/", b"")
    stack.deliver(stack.record("keep/"))
    upload_at(stack, "keep/a.jpg", 1)

    stack.s3.delete_object(Bucket="uploads", Key="keep/")
    assert stack.deliver(stack.record("keep/", "ObjectRemoved:Delete")) == ["folder_deleted"]
    assert stack.get("/folders")[1]["folders"][0] | {"created_at": None} == {
        "prefix": "keep/",
        "has_marker": False,
        "created_at": None,
    }


def test_deleting_a_marker_cleans_records_whose_objects_are_gone(stack: Stack) -> None:
    stack.put("lost/", b"")
    stack.deliver(stack.record("lost/"))
    upload_at(stack, "lost/a.jpg", 1)
    upload_at(stack, "lost/sub/b.jpg", 2)
    upload_at(stack, "lost/c.jpg", 3)
    # Two objects vanish without their events reaching us (a lost delivery).
    stack.s3.delete_object(Bucket="uploads", Key="lost/a.jpg")
    stack.s3.delete_object(Bucket="uploads", Key="lost/sub/b.jpg")

    stack.s3.delete_object(Bucket="uploads", Key="lost/")
    assert stack.deliver(stack.record("lost/", "ObjectRemoved:Delete")) == ["folder_deleted"]

    assert [i["key"] for i in stack.images()] == ["lost/c.jpg"]
    assert stack.keys("resized/thumb/") == ["resized/thumb/lost/c.jpg"]
    assert {f["prefix"] for f in stack.get("/folders")[1]["folders"]} == {"lost/"}
