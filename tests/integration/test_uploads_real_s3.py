"""Opt-in: real S3 refuses what the presigned POST policy does not allow.

The emulator does not enforce POST policies (the unit tests check the policy's
conditions instead). To prove the refusal itself, point this test at a
bucket of yours with working AWS credentials:

    IMAGE_PIPELINE_REAL_S3_BUCKET=my-scratch-bucket AWS_PROFILE=... \\
        .venv/bin/python -m pytest tests/integration/test_uploads_real_s3.py

It writes and deletes keys under ``uploads/policy-test/``.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib.settings import Settings
from chalicelib.storage import S3Storage
from chalicelib.uploads import UploadsApi

BUCKET = os.environ.get("IMAGE_PIPELINE_REAL_S3_BUCKET", "")

pytestmark = pytest.mark.skipif(
    not BUCKET, reason="opt-in: set IMAGE_PIPELINE_REAL_S3_BUCKET (and AWS credentials)"
)


def post(url: str, fields: dict[str, str], data: bytes, content_type: str) -> int:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture
def presigned(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    settings = Settings.from_env(
        {"SOURCE_BUCKET": BUCKET, "DDB_TABLE": "unused", "UPLOADS_ENABLED": "true",
         "MAX_SOURCE_BYTES": "1000"}
    )  # fmt: skip
    client = boto3.client("s3")
    api = UploadsApi(settings, S3Storage(client).presigned_post)
    answer = api.create(
        {"filename": f"{uuid.uuid4().hex}.jpg", "content_type": "image/jpeg",
         "folder": "policy-test/"}
    )  # fmt: skip
    yield answer
    client.delete_object(Bucket=BUCKET, Key=answer["key"])


def test_within_the_policy_is_accepted(presigned: dict[str, Any]) -> None:
    assert post(presigned["url"], presigned["fields"], b"x" * 500, "image/jpeg") in (200, 204)


def test_too_large_is_refused(presigned: dict[str, Any]) -> None:
    assert post(presigned["url"], presigned["fields"], b"x" * 2000, "image/jpeg") == 400


def test_another_content_type_is_refused(presigned: dict[str, Any]) -> None:
    fields = presigned["fields"] | {"Content-Type": "text/html"}
    assert post(presigned["url"], fields, b"<script>", "text/html") == 403


def test_another_key_is_refused(presigned: dict[str, Any]) -> None:
    fields = presigned["fields"] | {"key": "uploads/policy-test/elsewhere.jpg"}
    assert post(presigned["url"], fields, b"x" * 10, "image/jpeg") == 403
