"""One contract for every Repository: the same tests, the same assertions,
run on DynamoDB (moto server), MySQL (a real MariaDB) and the in-memory fake
the unit tests use."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import boto3
import pytest

from chalicelib import keys
from chalicelib.factory import build_repository, mysql_connect
from chalicelib.models import ImageRecord, Rendition, Status
from chalicelib.repositories import dynamodb
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


def test_token_key_is_a_kept_secret(repo: Repository) -> None:
    key = repo.token_key()

    assert isinstance(key, bytes) and len(key) == 32
    assert repo.token_key() == key
    assert len(set(key)) > 8  # random, not a constant


@dataclass
class Stage:
    """One backend whose token key does not exist yet."""

    settings: Settings
    made: list[Repository] = field(default_factory=list)

    def container(self) -> Repository:
        """A repository as a new container of the stage makes it."""
        self.made.append(build_repository(self.settings))
        return self.made[-1]

    def stored_key(self) -> bytes | None:
        """The key as the backend holds it, read around the repository."""
        if self.settings.db_backend == "dynamodb":
            table = boto3.resource("dynamodb").Table(self.settings.ddb_table)
            item = table.get_item(Key=dynamodb.TOKEN_KEY, ConsistentRead=True).get("Item")
            return None if item is None else bytes(item["secret"])  # type: ignore[arg-type]
        connection = mysql_connect(self.settings)()
        with connection.cursor() as cur:
            cur.execute("SELECT value FROM secrets WHERE name = 'token-key'")
            row = cur.fetchone()
        connection.close()
        return None if row is None else bytes(row[0])


@pytest.fixture(params=["dynamodb", "mysql"])
def stage(request: pytest.FixtureRequest, aws: str) -> Iterator[Stage]:
    if request.param == "dynamodb":
        settings = Settings.from_env(BASE_ENV)
        provision(settings, s3=boto3.client("s3"), report=lambda _: None)
        boto3.resource("dynamodb").Table(settings.ddb_table).delete_item(Key=dynamodb.TOKEN_KEY)
    else:
        settings = Settings.from_env(BASE_ENV | request.getfixturevalue("mysql_env"))
        connection = mysql_connect(settings)()
        with connection.cursor() as cur:
            cur.execute("DELETE FROM secrets")
        connection.close()
    made = Stage(settings)
    assert made.stored_key() is None
    yield made
    for repository in made.made:
        repository.close()


def test_token_key_is_the_same_for_every_container(stage: Stage) -> None:
    first = stage.container()
    key = first.token_key()

    assert len(key) == 32
    assert first.token_key() == key
    assert stage.container().token_key() == key
    assert stage.stored_key() == key


def test_racing_first_calls_create_one_token_key(stage: Stage) -> None:
    """Threads of one container and of other containers all ask at once, before
    the key exists: every one of them gets the same key."""
    shared = stage.container()
    askers = [shared] * 4 + [stage.container() for _ in range(4)]
    all_ready = threading.Barrier(len(askers), timeout=30)

    def first_call(repository: Repository) -> bytes:
        repository.get("warm-up")  # connected, and this thread's client made, before the race
        all_ready.wait()
        return repository.token_key()

    with ThreadPoolExecutor(len(askers)) as pool:
        answers = list(pool.map(first_call, askers))

    assert len(answers[0]) == 32
    assert answers == [answers[0]] * len(askers)
    assert stage.stored_key() == answers[0]


def test_provision_creates_the_token_key(stage: Stage) -> None:
    said: list[str] = []
    provision(stage.settings, s3=boto3.client("s3"), report=said.append)

    key = stage.stored_key()
    assert "token key: ready" in said
    assert key is not None and len(key) == 32
    provision(stage.settings, s3=boto3.client("s3"), report=said.append)
    assert stage.stored_key() == key  # kept
    assert stage.container().token_key() == key
