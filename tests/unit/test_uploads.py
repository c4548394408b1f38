"""POST /uploads: validation, the key each grant gets, and the conditions of
the presigned POST policy.

The emulator does not enforce POST policies, so the policy S3 would enforce
is checked here, decoded from the fields a browser sends; botocore's real
signer makes it, with fake credentials and no network.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config

from chalicelib.api import BadRequest
from chalicelib.settings import Settings
from chalicelib.storage import S3Storage
from chalicelib.uploads import Forbidden, UploadsApi, random_id

ENV = {"SOURCE_BUCKET": "src", "DDB_TABLE": "t", "UPLOADS_ENABLED": "true"}
NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
ID = r"[A-Za-z0-9_-]{11}"


def api(**env: str) -> UploadsApi:
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s",
        endpoint_url="https://s3.us-east-1.amazonaws.com",
        config=Config(signature_version="s3v4"),  # as the deployed client signs
    )  # fmt: skip
    return UploadsApi(Settings.from_env(ENV | env), S3Storage(client).presigned_post, lambda: NOW)


def policy(answer: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(answer["fields"]["policy"])))


def conditions_on(field: str, conditions: list[Any]) -> list[Any]:
    """The conditions that constrain one form field, in either policy syntax."""
    return [
        c
        for c in conditions
        if (isinstance(c, dict) and field in c) or (isinstance(c, list) and c[1] == f"${field}")
    ]


def test_presigned_post_is_limited_to_key_type_size_bucket_and_time() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    answer = api(MAX_SOURCE_BYTES="1000000", URL_EXPIRES="600").create(
        {"filename": "cat.jpg", "content_type": "image/jpeg", "folder": "photos/"}
    )
    after = datetime.now(UTC)

    key = answer["key"]
    assert re.fullmatch(rf"uploads/photos/cat-{ID}\.jpg", key), key
    assert answer["fields"]["key"] == key
    assert answer["fields"]["Content-Type"] == "image/jpeg"
    assert answer["expires_at"] == "2026-11-21T12:10:00Z"
    assert answer["url"] == "https://s3.us-east-1.amazonaws.com/src"
    signed = policy(answer)
    conditions = signed["conditions"]
    # Exactly this key: no starts-with, which would let a form pick its own key.
    assert conditions_on("key", conditions) == [{"key": key}]
    assert conditions_on("Content-Type", conditions) == [{"Content-Type": "image/jpeg"}]
    assert conditions_on("bucket", conditions) == [{"bucket": "src"}]
    assert ["content-length-range", 1, 1000000] in conditions
    expiration = datetime.strptime(signed["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(seconds=600) <= expiration <= after + timedelta(seconds=600)


def test_two_grants_for_the_same_file_get_different_keys() -> None:
    uploads = api()
    body = {"filename": "cat.jpg", "content_type": "image/jpeg", "folder": "photos/"}

    first, second = uploads.create(body), uploads.create(body)

    assert first["key"] != second["key"]
    assert policy(first)["conditions"] != policy(second)["conditions"]


def no_signature(
    bucket: str, key: str, fields: dict[str, str], conditions: list[Any], expires: int
) -> dict[str, Any]:
    return {"url": f"https://{bucket}.example", "fields": fields | {"key": key}}


def test_the_id_goes_between_stem_and_extension() -> None:
    settings = Settings.from_env(ENV | {"UPLOAD_PREFIX": "incoming/"})
    uploads = UploadsApi(settings, no_signature, lambda: NOW, new_id=lambda: "7Gq2xk3LpQw")

    answer = uploads.create({"filename": "my.cat.JPG", "content_type": "image/jpeg"})

    assert answer["key"] == "incoming/my.cat-7Gq2xk3LpQw.JPG"


def test_ids_are_11_url_safe_characters_and_do_not_repeat() -> None:
    ids = {random_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(ID, i) for i in ids)


def test_root_folder_and_custom_prefix() -> None:
    answer = api(UPLOAD_PREFIX="incoming/").create(
        {"filename": "a.png", "content_type": "image/png"}
    )
    assert re.fullmatch(rf"incoming/a-{ID}\.png", answer["key"]), answer["key"]


def test_the_id_counts_towards_the_key_length() -> None:
    # 8 + 1011 + 5 = 1024 bytes: would fit without the ID, does not with it.
    body = {"filename": "a.jpg", "content_type": "image/jpeg", "folder": "x" * 1010 + "/"}
    with pytest.raises(BadRequest, match="too long"):
        api().create(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("filename", "${filename}"),
        ("filename", "cat${filename}.jpg"),
        ("filename", "price$5.jpg"),
        ("filename", "{cat}.jpg"),
        ("filename", "cat}.jpg"),
        ("folder", "${filename}/"),
        ("folder", "photos/$x/"),
        ("folder", "{a}/"),
    ],
)
def test_s3_substitution_characters_are_refused(field: str, value: str) -> None:
    body = {"filename": "cat.jpg", "content_type": "image/jpeg", "folder": "photos/"}
    with pytest.raises(BadRequest, match=rf"{field} must not contain '\$'.*\$\{{filename\}}"):
        api().create(body | {field: value})


def test_uploads_are_refused_unless_enabled() -> None:
    with pytest.raises(Forbidden, match="UPLOADS_ENABLED"):
        api(UPLOADS_ENABLED="false").create({"filename": "a.png", "content_type": "image/png"})


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"filename": "a.png"},
        {"filename": "a.png", "content_type": "text/html"},
        {"filename": "a.png", "content_type": "image/svg+xml"},
        {"filename": "a.jpg", "content_type": "image/png"},
        {"filename": "page.html", "content_type": "image/jpeg"},
        {"filename": "../a.jpg", "content_type": "image/jpeg"},
        {"filename": "a/b.jpg", "content_type": "image/jpeg"},
        {"filename": "", "content_type": "image/jpeg"},
        {"filename": "x\n.jpg", "content_type": "image/jpeg"},
        {"filename": "a.jpg", "content_type": "image/jpeg", "folder": "../"},
        {"filename": "a.jpg", "content_type": "image/jpeg", "folder": "/abs/"},
        {"filename": "a.jpg", "content_type": "image/jpeg", "folder": "no-slash"},
        {"filename": "a.jpg", "content_type": "image/jpeg", "folder": "a//b/"},
        {"filename": "a.jpg", "content_type": "image/jpeg", "folder": "x/" * 600},
        {"filename": 7, "content_type": "image/jpeg"},
    ],
)
def test_bad_requests(body: Any) -> None:
    with pytest.raises(BadRequest):
        api().create(body)


JPEG = {"filename": "a.jpg", "content_type": "image/jpeg"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (JPEG | {"content_type": ["image/jpeg"]}, "content_type"),  # unhashable
        (JPEG | {"content_type": {"image/jpeg": 1}}, "content_type"),
        (JPEG | {"content_type": 1}, "content_type"),
        (JPEG | {"content_type": None}, "content_type"),
        (JPEG | {"filename": ["a.jpg"]}, "filename"),
        (JPEG | {"filename": {"a": 1}}, "filename"),
        (JPEG | {"filename": None}, "filename"),
        (JPEG | {"filename": True}, "filename"),
        (JPEG | {"folder": ["photos/"]}, "folder"),
        (JPEG | {"folder": {"photos/": 1}}, "folder"),
        (JPEG | {"folder": 3}, "folder"),
        (JPEG | {"folder": False}, "folder"),
        (JPEG | {"folder": "x" * 100_000 + "/"}, "folder"),
        (JPEG | {"folder": "a\ud800/"}, "folder"),  # a lone surrogate, as json.loads makes one
        (JPEG | {"filename": "a\udfff.jpg"}, "filename"),
    ],
)
def test_fields_of_the_wrong_type_are_named(body: dict[str, Any], field: str) -> None:
    with pytest.raises(BadRequest, match=field):
        api().create(body)


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("IMG_0001.HEIC", "image/heic"),
        ("IMG_0001.heic", "image/heif"),  # .heic and .heif name the same container
        ("photo.heif", "image/heif"),
        ("photo.heif", "image/heic"),
        ("photo.avif", "image/avif"),
    ],
)
def test_heic_heif_and_avif_uploads(filename: str, content_type: str) -> None:
    answer = api().create({"filename": filename, "content_type": content_type, "folder": "p/"})

    stem, ext = filename.rsplit(".", 1)
    assert re.fullmatch(rf"uploads/p/{stem}-{ID}\.{ext}", answer["key"]), answer["key"]
    assert answer["fields"]["Content-Type"] == content_type
    assert conditions_on("Content-Type", policy(answer)["conditions"]) == [
        {"Content-Type": content_type}
    ]


@pytest.mark.parametrize(
    ("filename", "content_type", "message"),
    [
        ("a.avif", "image/heic", "a image/heic file must end in .heic or .heif"),
        ("a.heic", "image/avif", "a image/avif file must end in .avif"),
        ("a.heic", "image/jpeg", "a image/jpeg file must end in .jpg or .jpeg"),
        ("a.jpg", "image/heif", "a image/heif file must end in .heif or .heic"),
    ],
)
def test_extension_must_match_the_heif_and_avif_types(
    filename: str, content_type: str, message: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        api().create({"filename": filename, "content_type": content_type})
    assert str(caught.value) == message


def test_a_type_the_stage_does_not_process_is_refused() -> None:
    uploads = api(IMAGE_SUFFIXES=".jpg,.jpeg,.png")
    with pytest.raises(BadRequest) as caught:
        uploads.create({"filename": "a.heic", "content_type": "image/heic"})
    assert str(caught.value) == (
        "this stage does not process .heic files (IMAGE_SUFFIXES: .jpg,.jpeg,.png)"
    )


def test_every_input_format_has_a_content_type() -> None:
    with pytest.raises(BadRequest) as caught:
        api().create({"filename": "a.jxl", "content_type": "image/jxl"})
    for content_type in ("image/heic", "image/heif", "image/avif", "image/jpeg", "image/bmp"):
        assert content_type in str(caught.value)
