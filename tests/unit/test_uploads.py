"""POST /uploads: validation, and the conditions of the presigned POST policy.

The emulator does not enforce POST policies, so the policy S3 would enforce
is checked here, decoded from the fields a browser sends.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from chalicelib.api import BadRequest
from chalicelib.settings import Settings
from chalicelib.storage import S3Storage
from chalicelib.uploads import Forbidden, UploadsApi

ENV = {"SOURCE_BUCKET": "src", "DDB_TABLE": "t", "UPLOADS_ENABLED": "true"}
NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


def api(**env: str) -> UploadsApi:
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s",
        endpoint_url="https://s3.us-east-1.amazonaws.com",
    )  # fmt: skip
    return UploadsApi(Settings.from_env(ENV | env), S3Storage(client).presigned_post, lambda: NOW)


def policy(answer: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(answer["fields"]["policy"])))


def test_presigned_post_is_limited_to_key_type_and_size() -> None:
    answer = api(MAX_SOURCE_BYTES="1000000").create(
        {"filename": "cat.jpg", "content_type": "image/jpeg", "folder": "photos/"}
    )

    assert answer["key"] == "uploads/photos/cat.jpg"
    assert answer["fields"]["key"] == "uploads/photos/cat.jpg"
    assert answer["fields"]["Content-Type"] == "image/jpeg"
    assert answer["expires_at"] == "2026-11-21T13:00:00Z"
    assert "src" in answer["url"]
    conditions = policy(answer)["conditions"]
    assert {"bucket": "src"} in conditions
    assert {"key": "uploads/photos/cat.jpg"} in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert ["content-length-range", 1, 1000000] in conditions


def test_root_folder_and_custom_prefix() -> None:
    answer = api(UPLOAD_PREFIX="incoming/").create(
        {"filename": "a.png", "content_type": "image/png"}
    )
    assert answer["key"] == "incoming/a.png"


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
