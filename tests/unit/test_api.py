"""REST query validation, page bounds and pagination tokens, over an in-memory repository."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from typing import Any
from urllib.parse import quote

import pytest
from chalice import Response

from chalicelib import keys
from chalicelib.api import (
    FOLDERS_SCOPE,
    MAX_PAGE_BYTES,
    BadRequest,
    ImagesApi,
    NotFound,
    PageTokens,
    images_scope,
)
from chalicelib.models import ImageRecord, Rendition, Status
from tests.fakes import MemoryRepository

LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024


def add(
    repo: MemoryRepository,
    key: str,
    uploaded_at: str,
    status: Status = Status.PROCESSED,
    *,
    renditions: tuple[str, ...] = ("thumb",),
    metadata: dict[str, Any] | None = None,
) -> ImageRecord:
    image_id = keys.image_id("src", key)
    made = {
        name: Rendition(name, "dst", f"resized/{name}/{key}", 10, 10, 100, "image/jpeg")
        for name in renditions
    }
    record = ImageRecord(
        id=image_id, bucket="src", key=key, folder=keys.folder_of(key), status=status,
        etag="e", size_bytes=1, uploaded_at=uploaded_at, created_at="c", updated_at="u",
        renditions=made if status is Status.PROCESSED else {}, metadata=metadata or {},
    )  # fmt: skip
    repo.save(record, None)
    return record


def presign(bucket: str, key: str, etag: str | None = None) -> str:
    return f"https://signed/{bucket}/{key}"


@pytest.fixture
def repo() -> MemoryRepository:
    repo = MemoryRepository()
    for i in range(5):
        add(repo, f"f/{i}.jpg", f"2026-01-0{i + 1}T00:00:00Z")
    add(repo, "root.jpg", "2026-02-01T00:00:00Z")
    add(repo, "f/bad.jpg", "2026-03-01T00:00:00Z", Status.FAILED)
    return repo


@pytest.fixture
def api(repo: MemoryRepository) -> ImagesApi:
    return ImagesApi(repo, "src", presign)


def sent_body(page: dict[str, Any]) -> int:
    """Bytes the page's body takes in the Lambda response Chalice makes of it."""
    return len(json.dumps(Response(body=page).to_dict()["body"])) - 2


def every_page(api: ImagesApi, params: dict[str, str]) -> list[list[dict[str, Any]]]:
    pages: list[Any] = []
    token = None
    while len(pages) < 200:
        page = api.list_images(params | ({"next_token": token} if token else {}))
        pages.append(page["images"])
        token = page["next_token"]
        if token is None:
            return pages
    raise AssertionError("paging does not end")


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
        {"limit": "²"},  # str.isdigit() is true, int() fails
        {"limit": "٣"},  # an Arabic-Indic 3: int() takes it, the contract does not
        {"limit": "9" * 5000},  # past int()'s digit limit
        {"limit": "0" * 5000 + "7"},
        {"status": "all"},
        {"status": "p" * 100_000},
        {"folder": "f"},
        {"folder": "/f/"},
        {"folder": "a//b/"},
        {"folder": "a\udc80/"},  # a lone surrogate: no UTF-8 for it
        {"folder": "é" * 600 + "/"},
        {"key": ""},
        {"key": "x" * 1025},
        {"key": "\ud800.jpg"},
        {"key": "a.jpg", "next_token": "abc"},
        {"next_token": ""},
        {"next_token": "%%%"},
        {"next_token": "A" * 5000},
        {"next_token": "eyJhIjoxfQ"},
        {"next_token": "A"},  # not a length base64 can have
        {"unknown": "1"},
    ],
)
def test_bad_parameters(api: ImagesApi, params: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        api.list_images(params)


# ², 5,000 digits, a full-width 7
@pytest.mark.parametrize("limit", ["²", "9" * 5000, "\uff17"])
def test_bad_limit_on_folders(api: ImagesApi, limit: str) -> None:
    with pytest.raises(BadRequest, match="limit"):
        api.list_folders({"limit": limit})


def test_messages_stay_short_for_long_parameter_names(api: ImagesApi) -> None:
    with pytest.raises(BadRequest) as raised:
        api.list_images({"x" * 100_000: "1"})
    assert len(str(raised.value)) < 200
    assert "unknown parameter 'xxxx" in str(raised.value)


def test_tokens_are_bound_to_their_query_and_checked(api: ImagesApi) -> None:
    token = api.list_images({"folder": "f/", "limit": "2"})["next_token"]
    assert token
    with pytest.raises(BadRequest):
        api.list_images({"folder": "f/", "limit": "2", "status": "failed", "next_token": token})
    with pytest.raises(BadRequest):
        api.list_images({"limit": "2", "next_token": token})
    with pytest.raises(BadRequest):
        api.list_folders({"next_token": token})
    for i in range(len(token)):  # every character of the token counts
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(BadRequest):
            api.list_images({"folder": "f/", "limit": "2", "next_token": flipped})
    # The limit may change between pages.
    assert api.list_images({"folder": "f/", "limit": "3", "next_token": token})["images"]


def unkeyed_token(scope: tuple[str | None, ...], fields: tuple[str, ...]) -> str:
    """A token as the previous release made them: anyone could compute one."""
    digest = hashlib.sha256(
        "\x00".join("\x01" if p is None else p for p in scope).encode()
    ).hexdigest()[:12]
    raw = json.dumps([digest, *fields], separators=(",", ":")).encode()
    check = hashlib.sha256(b"image-pipeline-token\x00" + raw).hexdigest()[:8]
    return base64.urlsafe_b64encode(raw + b"." + check.encode()).decode().rstrip("=")


def test_a_token_needs_the_repository_key(api: ImagesApi, repo: MemoryRepository) -> None:
    position = ("2026-01-04T00:00:00Z", "f/3.jpg", keys.image_id("src", "f/3.jpg"))
    scope = images_scope("f/", Status.PROCESSED)

    signed = PageTokens(repo.token_key).make(scope, position)
    assert [
        i["key"] for i in api.list_images({"folder": "f/", "next_token": signed})["images"]
    ] == [
        "f/2.jpg",
        "f/1.jpg",
        "f/0.jpg",
    ]
    for forged in (
        unkeyed_token(("images", "f/", "processed"), position),
        PageTokens(lambda: b"k" * 32).make(scope, position),
    ):
        with pytest.raises(BadRequest):
            api.list_images({"folder": "f/", "next_token": forged})


GOOD_POSITION = ("2026-01-04T00:00:00Z", "f/3.jpg", "AbC-_09")


@pytest.mark.parametrize(
    "fields",
    [
        ("2026-01-04T00:00:00", *GOOD_POSITION[1:]),
        ("2026-01-04T00:00:00Z\n", *GOOD_POSITION[1:]),
        ("\uff12\uff10\uff12\uff16-01-04T00:00:00Z", *GOOD_POSITION[1:]),  # full-width digits
        ("2026-1-4T00:00:00Z", *GOOD_POSITION[1:]),
        ("", *GOOD_POSITION[1:]),
        (GOOD_POSITION[0], "", GOOD_POSITION[2]),
        (GOOD_POSITION[0], "é" * 513, GOOD_POSITION[2]),  # 1026 bytes
        (GOOD_POSITION[0], "a\ud800.jpg", GOOD_POSITION[2]),
        (*GOOD_POSITION[:2], ""),
        (*GOOD_POSITION[:2], "ümlaut"),  # MySQL: "Illegal mix of collations"
        (*GOOD_POSITION[:2], "a" * 65),
        (*GOOD_POSITION[:2], "a/b"),
        (*GOOD_POSITION[:2], "abc\n"),
        GOOD_POSITION[:2],
        (*GOOD_POSITION, "more"),
    ],
)
def test_every_field_of_a_signed_token_is_checked(
    api: ImagesApi, repo: MemoryRepository, fields: tuple[str, ...]
) -> None:
    token = PageTokens(repo.token_key).make(images_scope(None, Status.PROCESSED), fields)
    with pytest.raises(BadRequest):
        api.list_images({"next_token": token})


def test_a_signed_token_in_the_right_shape_is_taken(api: ImagesApi, repo: MemoryRepository) -> None:
    token = PageTokens(repo.token_key).make(images_scope(None, Status.PROCESSED), GOOD_POSITION)
    page = api.list_images({"next_token": token})
    assert [i["key"] for i in page["images"]] == ["f/2.jpg", "f/1.jpg", "f/0.jpg"]


@pytest.mark.parametrize("prefix", ["", "no-slash", "é" * 512 + "/", "a\udfff/"])
def test_every_field_of_a_signed_folders_token_is_checked(
    api: ImagesApi, repo: MemoryRepository, prefix: str
) -> None:
    token = PageTokens(repo.token_key).make(FOLDERS_SCOPE, (prefix,))
    with pytest.raises(BadRequest):
        api.list_folders({"next_token": token})


class CountingRepository(MemoryRepository):
    """Counts the reads of the token key, and makes each slow enough for threads to meet."""

    def __init__(self) -> None:
        super().__init__()
        self.key_reads = 0

    def token_key(self) -> bytes:
        self.key_reads += 1
        time.sleep(0.05)
        return super().token_key()


def test_the_key_is_read_once_on_first_use_from_any_thread() -> None:
    repo = CountingRepository()
    for i in range(3):
        add(repo, f"k/{i}.jpg", f"2026-01-0{i + 1}T00:00:00Z")
    token = PageTokens(lambda: repo.secret).make(
        images_scope(None, Status.PROCESSED), ("2026-01-03T00:00:00Z", "k/2.jpg", "x")
    )

    api = ImagesApi(repo, "src", presign)
    assert api.list_images({})["next_token"] is None  # one page: no token, no key
    assert repo.key_reads == 0
    answers: list[list[str]] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(
                [i["key"] for i in api.list_images({"next_token": token})["images"]]
            )
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [["k/1.jpg", "k/0.jpg"]] * 8
    assert repo.key_reads == 1
    api.list_images({"limit": "1"})
    assert repo.key_reads == 1


def test_get_image(api: ImagesApi) -> None:
    image_id = keys.image_id("src", "f/1.jpg")
    assert api.get_image(image_id)["key"] == "f/1.jpg"
    with pytest.raises(NotFound):
        api.get_image("AAAAAAAAAAAAAAAAAAAAAA")
    for bad in ("no/slashes", "", "é", "a" * 65, "abc\n"):
        with pytest.raises(BadRequest):
            api.get_image(bad)


def test_folders_listing(api: ImagesApi) -> None:
    with pytest.raises(BadRequest):
        api.list_folders({"limit": "x"})
    assert api.list_folders({}) == {"folders": [], "next_token": None}


def test_folders_page_with_tokens(repo: MemoryRepository) -> None:
    repo.touch_folders(["a/", "a/b/", "c/", "d é/"], "2026-01-01T00:00:00Z")
    api = ImagesApi(repo, "src", presign)
    first = api.list_folders({"limit": "3"})
    assert [f["prefix"] for f in first["folders"]] == ["a/", "a/b/", "c/"]
    second = api.list_folders({"limit": "3", "next_token": first["next_token"]})
    assert second == {
        "folders": [{"prefix": "d é/", "has_marker": False, "created_at": "2026-01-01T00:00:00Z"}],
        "next_token": None,
    }


# -- page size bound --------------------------------------------------------------
def sized_repo(count: int) -> MemoryRepository:
    repo = MemoryRepository()
    for i in range(count):
        # Keys of varied length, some with characters JSON escapes twice over.
        name = f"{i:02d}" + "x" * (i * 37 % 300) + '"\\' * (i % 5)
        add(repo, f"s/{name}.jpg", f"2026-01-01T00:00:{i // 3:02d}Z")  # ties of three
    return repo


@pytest.mark.parametrize("bound", [3_000, 5_000, 8_000])
def test_pages_end_before_the_bound_and_miss_nothing(bound: int) -> None:
    repo = sized_repo(40)
    api = ImagesApi(repo, "src", presign, max_page_bytes=bound)
    expected = [
        i["key"] for i in ImagesApi(repo, "src", presign).list_images({"limit": "100"})["images"]
    ]

    pages: list[Any] = []
    token = None
    while len(pages) < 100:
        page = api.list_images({"limit": "10"} | ({"next_token": token} if token else {}))
        pages.append(page)
        token = page["next_token"]
        if token is None:
            break

    assert [i["key"] for p in pages for i in p["images"]] == expected
    assert any(0 < len(p["images"]) < 10 and p["next_token"] for p in pages)  # the bound cut
    for page in pages:
        assert sent_body(page) <= bound
    # Each cut page was as full as the bound allows: the next image would not fit.
    tokens = PageTokens(repo.token_key)
    for page, after in itertools.pairwise(pages):
        if len(page["images"]) < 10 and after["images"]:
            more = after["images"][0]
            position = (more["uploaded_at"], more["key"], more["id"])
            fuller = {
                "images": [*page["images"], more],
                "next_token": tokens.make(images_scope(None, Status.PROCESSED), position),
            }
            assert sent_body(fuller) > bound


def test_an_image_larger_than_the_bound_is_a_page_of_its_own() -> None:
    repo = sized_repo(5)
    api = ImagesApi(repo, "src", presign, max_page_bytes=10)

    pages = every_page(api, {"limit": "3"})

    assert [len(p) for p in pages] == [1, 1, 1, 1, 1]


def test_a_page_of_large_records_fits_the_lambda_response() -> None:
    # Within the record's bounds (a key whose renditions still fit 1024
    # bytes, metadata under 4096 bytes), yet JSON-escaped many times over.
    repo = MemoryRepository()
    renditions = tuple(f"r{n}" for n in range(8))
    metadata = {f: "😀" * 255 for f in ("camera_make", "camera_model", "lens_model")}
    for i in range(120):
        key = f"big/{i:03d}" + "😀" * 244 + ".jpg"
        add(
            repo,
            key,
            f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
            renditions=renditions,
            metadata=metadata,
        )

    def s3_like(bucket: str, key: str, etag: str | None = None) -> str:
        query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" + "A" * 60
        return f"https://{bucket}.s3.amazonaws.com/{quote(key)}?{query}&X-Amz-Signature={'0' * 64}"

    api = ImagesApi(repo, "src", s3_like)
    first = api.list_images({"limit": "100"})

    assert 0 < len(first["images"]) < 100 and first["next_token"]
    assert sent_body(first) <= MAX_PAGE_BYTES
    assert len(json.dumps(Response(body=first).to_dict())) < LAMBDA_RESPONSE_LIMIT
    pages = every_page(api, {"limit": "100"})
    keys_listed = [i["key"] for p in pages for i in p]
    assert len(keys_listed) == 120 == len(set(keys_listed))
