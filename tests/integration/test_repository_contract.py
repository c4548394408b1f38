"""One contract for every Repository: the same tests, the same assertions,
run on DynamoDB (moto server), MySQL (a real MariaDB) and the in-memory fake
the unit tests use."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from chalicelib import keys
from chalicelib.factory import build_repository
from chalicelib.models import ImageRecord, Rendition, Status
from chalicelib.repositories.base import Conflict, ImageQuery, Repository, Tombstone
from chalicelib.settings import Settings
from devtools.provision import provision
from tests.fakes import MemoryRepository
from tests.integration.conftest import BASE_ENV


@pytest.fixture(params=["dynamodb", "mysql", "memory"])
def repo(request: pytest.FixtureRequest) -> Iterator[Repository]:
    if request.param == "memory":
        yield MemoryRepository()
        return
    if request.param == "dynamodb":
        request.getfixturevalue("aws")
        settings = Settings.from_env(BASE_ENV)
        provision(settings, s3=boto3.client("s3"), report=lambda _: None)
    else:
        settings = Settings.from_env(BASE_ENV | request.getfixturevalue("mysql_env"))
    repository = build_repository(settings)
    yield repository
    repository.close()


def record(
    key: str,
    uploaded_at: str = "2026-11-21T10:00:00Z",
    status: Status = Status.PROCESSED,
    seq: str = "A",
) -> ImageRecord:
    rendition = Rendition("thumb", "dst", f"resized/thumb/{key}", 256, 192, 1234, "image/jpeg")
    return ImageRecord(
        id=keys.image_id("src", key), bucket="src", key=key, folder=keys.folder_of(key),
        status=status, etag="e" + seq, size_bytes=999, uploaded_at=uploaded_at,
        created_at="2026-11-21T10:00:01Z", updated_at="2026-11-21T10:00:02Z",
        error="bad file" if status is Status.FAILED else None,
        format="JPEG", content_type="image/jpeg", width=4000, height=3000,
        renditions={"thumb": rendition} if status is Status.PROCESSED else {},
        metadata={"camera_make": "Cam", "f_number": 2.8, "iso": 100, "has_gps": True},
        sequencer=seq, pending_event="image.processed", fingerprint="fp",
    )  # fmt: skip


KEYS = [
    "plain.jpg",
    "a folder/with space (1).jpg",
    'quotes/it\'s "quoted"; DROP TABLE images;--.jpg',
    "unicode/東京/Zürich ß 😀.jpg",
    "percent/100%_done\\back.jpg",
]


@pytest.mark.parametrize("key", KEYS)
def test_save_and_load_round_trip(repo: Repository, key: str) -> None:
    original = record(key)
    version = repo.save(original, None)

    stored = repo.load(original.id)
    assert stored is not None and stored.version == version and stored.tombstone is None
    assert stored.live == original
    assert repo.get(original.id) == original


def test_compare_and_swap(repo: Repository) -> None:
    first = record("cas.jpg")
    v1 = repo.save(first, None)
    with pytest.raises(Conflict):
        repo.save(first, None)  # something is stored already
    v2 = repo.save(first.with_(sequencer="B"), v1)
    assert v2 > v1
    with pytest.raises(Conflict):
        repo.save(first.with_(sequencer="C"), v1)  # stale version
    stored = repo.load(first.id)
    assert stored is not None and stored.live is not None and stored.live.sequencer == "B"


def test_clear_pending_is_conditional(repo: Repository) -> None:
    rec = record("pending.jpg")
    v1 = repo.save(rec, None)
    with pytest.raises(Conflict):
        repo.clear_pending(rec.id, v1 + 5)
    repo.clear_pending(rec.id, v1)
    stored = repo.load(rec.id)
    assert stored is not None and stored.live is not None
    assert stored.live.pending_event is None and stored.version > v1


def test_tombstone_replaces_record_and_keeps_what_was_deleted(repo: Repository) -> None:
    rec = record("x/gone.jpg")
    v1 = repo.save(rec, None)
    tomb = Tombstone("B", "2026-11-21T11:00:00Z", previous=rec, pending_event="image.deleted")

    v2 = repo.bury(rec.id, "src", rec.key, tomb, v1)

    stored = repo.load(rec.id)
    assert stored is not None and stored.version == v2 and stored.live is None
    assert stored.tombstone == tomb
    assert stored.sequencer == "B"
    assert repo.get(rec.id) is None
    assert repo.list_images(ImageQuery()).items == []
    assert repo.list_images(ImageQuery(folder="x/")).items == []
    with pytest.raises(Conflict):
        repo.bury(rec.id, "src", rec.key, tomb, v1)


def test_tombstone_without_a_record(repo: Repository) -> None:
    image_id = keys.image_id("src", "never.jpg")
    repo.bury(image_id, "src", "never.jpg", Tombstone("C", "2026-11-21T11:00:00Z"), None)

    stored = repo.load(image_id)
    assert stored is not None and stored.tombstone is not None
    assert stored.tombstone.previous is None and stored.sequencer == "C"


def test_listing_newest_first_with_pages_and_filters(repo: Repository) -> None:
    for i in range(7):
        repo.save(record(f"f/{i}.jpg", f"2026-11-21T10:00:0{i}Z"), None)
    repo.save(record("f/bad.jpg", "2026-11-21T10:00:09Z", Status.FAILED), None)
    repo.save(record("root.jpg", "2026-11-21T10:00:08Z"), None)
    repo.save(record("f/sub/deep.jpg", "2026-11-21T10:00:08Z"), None)

    seen: list[str] = []
    after = None
    sizes = []
    while True:
        page = repo.list_images(ImageQuery(folder="f/", limit=3, after=after))
        sizes.append(len(page.items))
        seen += [r.key for r in page.items]
        if page.cursor is None:
            break
        after = page.cursor
    assert seen == [f"f/{i}.jpg" for i in reversed(range(7))]
    assert sizes[:3] == [3, 3, 1] and sum(sizes) == 7

    everything = repo.list_images(ImageQuery(limit=100)).items
    assert [r.key for r in everything][:2] == ["root.jpg", "f/sub/deep.jpg"]
    assert len(everything) == 9
    assert [r.key for r in repo.list_images(ImageQuery(folder="")).items] == ["root.jpg"]
    failed = repo.list_images(ImageQuery(status=Status.FAILED)).items
    assert [(r.key, r.error, r.renditions) for r in failed] == [("f/bad.jpg", "bad file", {})]


def test_same_time_orders_by_key_descending(repo: Repository) -> None:
    for key in KEYS:
        repo.save(record(key, "2026-11-21T10:00:00Z"), None)

    keys_seen = [r.key for r in repo.list_images(ImageQuery(limit=2)).items]
    assert keys_seen == sorted(KEYS, key=str.encode, reverse=True)[:2]


def test_folders(repo: Repository) -> None:
    repo.touch_folders(["a/", "a/b/"], "2026-11-21T10:00:00Z")
    repo.touch_folders(["a/"], "2026-11-21T12:00:00Z")  # created_at is kept
    marker = repo.set_marker("m/", True, "2026-11-21T10:00:00Z")
    assert (marker.prefix, marker.has_marker) == ("m/", True)

    folder = repo.get_folder("a/")
    assert folder is not None and folder.created_at == "2026-11-21T10:00:00Z"
    assert not folder.has_marker
    assert repo.get_folder("nope/") is None

    assert not repo.remove_folder_if_empty("a/")  # has a sub-folder
    assert not repo.remove_folder_if_empty("m/")  # has a marker
    repo.save(record("a/b/pic.jpg"), None)
    assert not repo.remove_folder_if_empty("a/b/")  # holds an image
    assert [r.key for r in repo.images_under("a/")] == ["a/b/pic.jpg"]

    stored = repo.load(keys.image_id("src", "a/b/pic.jpg"))
    assert stored is not None
    repo.bury(
        stored.id, "src", "a/b/pic.jpg", Tombstone("Z", "2026-11-21T11:00:00Z"), stored.version
    )
    assert repo.images_under("a/") == []
    assert repo.remove_folder_if_empty("a/b/")
    assert repo.remove_folder_if_empty("a/")
    assert repo.remove_folder_if_empty("gone/")  # absent is empty

    repo.set_marker("m/", False, "2026-11-21T10:00:00Z")
    assert repo.remove_folder_if_empty("m/")
    assert repo.list_folders(10, None).items == []


def test_folder_pages_in_prefix_order(repo: Repository) -> None:
    prefixes = ["b/", "a/", "a/z/", "é/", "a b/", "c/"]
    repo.touch_folders(prefixes, "2026-11-21T10:00:00Z")

    seen: list[str] = []
    after = None
    while True:
        page = repo.list_folders(2, after)
        seen += [f.prefix for f in page.items]
        if page.cursor is None:
            break
        after = page.cursor[0]
    assert seen == sorted(prefixes, key=str.encode)
