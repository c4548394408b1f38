"""The REST API's bounds over both backends: bad input answers 400, never 500;
page tokens are signed, and every field of one is checked before it reaches a
query; a page of images stays under the size Lambda can answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from chalicelib import keys
from chalicelib.api import FOLDERS_SCOPE, MAX_PAGE_BYTES, ImagesApi, PageTokens, images_scope
from chalicelib.factory import build_repository
from chalicelib.models import ImageRecord, Rendition, Status
from chalicelib.repositories.base import Repository
from tests.integration.conftest import BASE_ENV, Stack, make_stack


def record(
    key: str,
    uploaded_at: str,
    renditions: int = 1,
    metadata: dict[str, Any] | None = None,
) -> ImageRecord:
    made = {
        f"r{n}": Rendition(f"r{n}", "dst", f"resized/r{n}/{key}", 10, 10, 100, "image/jpeg")
        for n in range(renditions)
    }
    return ImageRecord(
        id=keys.image_id("uploads", key), bucket="uploads", key=key, folder=keys.folder_of(key),
        status=Status.PROCESSED, etag="e", size_bytes=1, uploaded_at=uploaded_at,
        created_at=uploaded_at, updated_at=uploaded_at, format="JPEG",
        content_type="image/jpeg", width=10, height=10, renditions=made,
        metadata=metadata or {},
    )  # fmt: skip


@pytest.fixture
def repository(stack: Stack) -> Iterator[Repository]:
    """A second repository on the stack's store: the records and the key the app sees."""
    repository = build_repository(stack.settings)
    yield repository
    repository.close()


def bad_request(stack: Stack, path: str) -> str:
    status, body = stack.get(path)
    assert status == 400, (path[:100], body)
    assert body["Code"] == "BadRequestError", path[:100]
    return str(body["Message"])


def listed(stack: Stack, path: str) -> list[str]:
    status, body = stack.get(path)
    assert status == 200, body
    return [i["key"] for i in body["images"]]


# -- parameters ----------------------------------------------------------------
def test_a_limit_that_is_not_ascii_digits_is_400(stack: Stack) -> None:
    # "²" passes str.isdigit(); 5,000 digits are past int()'s limit.
    for limit in ("²", "9" * 5000, "٣", "\uff17", "0" * 20 + "7"):
        for path in ("/images", "/folders"):
            message = bad_request(stack, f"{path}?limit={quote(limit)}")
            assert message == "limit must be a whole number from 1 to 100", (path, limit[:9])


def test_long_parameters_are_400_with_a_short_message(stack: Stack) -> None:
    for query in (
        "key=" + "k" * 1025,
        "folder=" + quote("é" * 600) + "/",
        "status=" + "s" * 100_000,
        "x" * 10_000 + "=1",
    ):
        assert len(bad_request(stack, f"/images?{query}")) < 200


# -- tokens --------------------------------------------------------------------
PLACES = [(f"2026-01-0{d}T00:00:00Z", f"t/{d}.jpg") for d in range(1, 6)]


def seeded(repository: Repository) -> list[ImageRecord]:
    records = [record(key, at) for at, key in PLACES]
    for r in records:
        repository.save(r, None)
    return records


def test_a_signed_token_at_a_real_position_pages_on(stack: Stack, repository: Repository) -> None:
    records = seeded(repository)
    third = records[2]
    token = PageTokens(repository.token_key).make(
        images_scope("t/", Status.PROCESSED), (third.uploaded_at, third.key, third.id)
    )

    assert listed(stack, f"/images?folder=t/&next_token={token}") == ["t/2.jpg", "t/1.jpg"]


GOOD = ("2026-01-03T00:00:00Z", "t/3.jpg", keys.image_id("uploads", "t/3.jpg"))


BAD_POSITIONS = [
    (*GOOD[:2], "Ab-_é9"),  # MySQL: "Illegal mix of collations" (a 500 before)
    (*GOOD[:2], "x" * 65),
    (*GOOD[:2], "a/b"),
    (*GOOD[:2], ""),
    ("2026-01-03 00:00:00", *GOOD[1:]),
    ("2026-01-03T00:00:00Z\n", *GOOD[1:]),
    ("٢٠٢٦-01-03T00:00:00Z", *GOOD[1:]),  # Arabic-Indic digits
    (GOOD[0], "", GOOD[2]),
    (GOOD[0], "ü" * 513, GOOD[2]),  # 1026 bytes
    (GOOD[0], "a\udc00.jpg", GOOD[2]),  # a lone surrogate
    GOOD[:2],
    (*GOOD, GOOD[2]),
]


def test_a_signed_token_with_a_bad_field_is_400(stack: Stack, repository: Repository) -> None:
    seeded(repository)
    tokens = PageTokens(repository.token_key)
    for fields in BAD_POSITIONS:
        token = tokens.make(images_scope(None, Status.PROCESSED), fields)
        assert "next_token" in bad_request(stack, f"/images?next_token={token}"), fields
    for prefix in ("", "no-slash", "ü" * 512 + "/", "a\ud900/"):
        token = tokens.make(FOLDERS_SCOPE, (prefix,))
        assert "next_token" in bad_request(stack, f"/folders?next_token={token}"), prefix
    assert len(listed(stack, "/images")) == 5  # the store is unharmed


def test_a_token_signed_with_another_key_is_400(stack: Stack, repository: Repository) -> None:
    seeded(repository)
    forged = PageTokens(lambda: bytes(32)).make(images_scope(None, Status.PROCESSED), GOOD)
    real = stack.get("/images?limit=2")[1]["next_token"]

    assert "next_token" in bad_request(stack, f"/images?next_token={forged}")
    assert listed(stack, f"/images?next_token={real}") == ["t/3.jpg", "t/2.jpg", "t/1.jpg"]


# -- page size -----------------------------------------------------------------
def test_pages_cut_by_a_small_bound_list_every_record_once_in_order(
    stack: Stack, repository: Repository
) -> None:
    # Keys of varied length and characters, three records per upload time.
    records = [
        record(f"b/{i:02d}" + "ü\"\\'x"[i % 5] * (i * 41 % 120) + ".jpg",
               f"2026-02-01T00:00:{i // 3:02d}Z")
        for i in range(36)
    ]  # fmt: skip
    for r in records:
        repository.save(r, None)
    expected = [r.key for r in sorted(records, key=lambda r: (r.uploaded_at, r.key), reverse=True)]
    bound = 5_000
    api = ImagesApi(repository, stack.bucket, lambda b, k, e: f"https://cdn/{b}/{k}", bound)

    pages: list[dict[str, Any]] = []
    token = None
    while len(pages) < 60:
        pages.append(api.list_images({"limit": "10"} | ({"next_token": token} if token else {})))
        token = pages[-1]["next_token"]
        if token is None:
            break

    assert [i["key"] for p in pages for i in p["images"]] == expected
    assert any(0 < len(p["images"]) < 10 and p["next_token"] for p in pages)
    assert all(len(json.dumps(p, separators=(",", ":"))) <= bound for p in pages)


def test_a_page_of_large_records_stays_under_the_bound(
    stack: Stack, repository: Repository
) -> None:
    # Within the record's bounds (renditions keys of at most 1024 bytes,
    # metadata under 4096 bytes), each record is ~70 kB once JSON escapes it.
    metadata = {f: "😀" * 255 for f in ("camera_make", "camera_model", "lens_model")}
    records = [
        record(f"big/{i:03d}" + "😀" * 244 + ".jpg", f"2026-03-01T00:{i // 60:02d}:{i % 60:02d}Z",
               renditions=8, metadata=metadata)
        for i in range(80)
    ]  # fmt: skip
    for r in records:
        repository.save(r, None)

    pages: list[int] = []
    sizes: list[int] = []
    seen: list[str] = []
    token = None
    while len(pages) < 20:
        response = stack.client.http.get(
            "/images?limit=100" + (f"&next_token={token}" if token else "")
        )
        assert response.status_code == 200
        # The body as the Lambda response carries it: a JSON string.
        sizes.append(len(json.dumps(response.body.decode())) - 2)
        body = json.loads(response.body)
        pages.append(len(body["images"]))
        seen += [i["key"] for i in body["images"]]
        token = body["next_token"]
        if token is None:
            break

    assert seen == [r.key for r in reversed(records)]
    assert max(sizes) <= MAX_PAGE_BYTES
    assert pages[0] < len(records)  # the bound ended the first page, not the limit


# -- uploads -------------------------------------------------------------------
@pytest.fixture
def uploads(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    return make_stack(BASE_ENV | {"UPLOADS_ENABLED": "true"}, tmp_path, monkeypatch)


def post(stack: Stack, body: str) -> tuple[int, Any]:
    response = stack.client.http.post(
        "/uploads", headers={"content-type": "application/json"}, body=body
    )
    return response.status_code, json.loads(response.body)


def test_upload_fields_of_the_wrong_type_are_400(uploads: Stack) -> None:
    jpeg = {"filename": "a.jpg", "content_type": "image/jpeg"}
    for body, field in (
        (jpeg | {"content_type": ["image/jpeg"]}, "content_type"),  # unhashable: a 500 before
        (jpeg | {"content_type": {"image/jpeg": True}}, "content_type"),
        (jpeg | {"filename": ["a.jpg"]}, "filename"),
        (jpeg | {"folder": {"a": "b/"}}, "folder"),
        (jpeg | {"folder": 7}, "folder"),
        ([], "JSON object"),
        ("cat.jpg", "JSON object"),
        (None, "JSON object"),
    ):
        status, answer = post(uploads, json.dumps(body))
        assert status == 400 and answer["Code"] == "BadRequestError", body
        assert field in answer["Message"], body


def test_a_deeply_nested_upload_body_is_400(uploads: Stack) -> None:
    status, answer = post(uploads, "[" * 100_000 + "]" * 100_000)

    assert status == 400 and answer["Code"] == "BadRequestError"


def test_a_good_upload_request_still_gets_its_form(uploads: Stack) -> None:
    status, answer = post(
        uploads, json.dumps({"filename": "cat.jpg", "content_type": "image/jpeg", "folder": "p/"})
    )

    assert status == 200
    assert answer["key"].startswith("uploads/p/cat") and answer["fields"]["key"] == answer["key"]
