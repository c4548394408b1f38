"""Opt-in: real S3 refuses what the presigned POST policy does not allow.

The emulator does not enforce POST policies (the unit tests check the policy's
conditions instead). To prove the refusal itself, point this test at a
bucket of yours with working AWS credentials:

    IMAGE_PIPELINE_REAL_S3_BUCKET=my-scratch-bucket AWS_PROFILE=... \\
        .venv/bin/python -m pytest tests/integration/test_uploads_real_s3.py

It writes and deletes keys under ``uploads/policy-test/`` (``cat-<ID>.jpg``:
every grant has a key of its own).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from chalicelib.settings import Settings
from chalicelib.storage import S3Storage
from chalicelib.uploads import UploadsApi

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

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
def client(monkeypatch: pytest.MonkeyPatch) -> S3Client:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return boto3.client("s3", config=Config(signature_version="s3v4"))


@pytest.fixture
def grant(client: S3Client) -> Iterator[Callable[[], dict[str, Any]]]:
    """Grants for the same file name, each deleted afterwards."""
    settings = Settings.from_env(
        {"SOURCE_BUCKET": BUCKET, "DDB_TABLE": "unused", "UPLOADS_ENABLED": "true",
         "MAX_SOURCE_BYTES": "1000"}
    )  # fmt: skip
    api = UploadsApi(settings, S3Storage(client).presigned_post)
    given: list[dict[str, Any]] = []

    def one() -> dict[str, Any]:
        answer = api.create(
            {"filename": "cat.jpg", "content_type": "image/jpeg", "folder": "policy-test/"}
        )
        given.append(answer)
        return answer

    yield one
    for answer in given:
        client.delete_object(Bucket=BUCKET, Key=answer["key"])


@pytest.fixture
def presigned(grant: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return grant()


def test_within_the_policy_is_accepted(presigned: dict[str, Any]) -> None:
    assert post(presigned["url"], presigned["fields"], b"x" * 500, "image/jpeg") in (200, 204)


def test_too_large_is_refused(presigned: dict[str, Any]) -> None:
    assert post(presigned["url"], presigned["fields"], b"x" * 2000, "image/jpeg") == 400


def test_another_content_type_is_refused(presigned: dict[str, Any]) -> None:
    fields = presigned["fields"] | {"Content-Type": "text/html"}
    assert post(presigned["url"], fields, b"<script>", "text/html") == 403


@pytest.mark.parametrize(
    "key",
    [
        "uploads/policy-test/elsewhere.jpg",
        "uploads/policy-test/cat.jpg",  # the name asked for, without the ID
        "uploads/policy-test/${filename}",  # S3 would put the browser's file name here
    ],
)
def test_another_key_is_refused(presigned: dict[str, Any], key: str) -> None:
    fields = presigned["fields"] | {"key": key}
    assert post(presigned["url"], fields, b"x" * 10, "image/jpeg") == 403


def test_two_grants_for_one_file_name_keep_both_uploads(
    grant: Callable[[], dict[str, Any]], client: S3Client
) -> None:
    first, second = grant(), grant()
    assert post(first["url"], first["fields"], b"first", "image/jpeg") in (200, 204)
    assert post(second["url"], second["fields"], b"second", "image/jpeg") in (200, 204)

    for answer, body in ((first, b"first"), (second, b"second")):
        assert client.get_object(Bucket=BUCKET, Key=answer["key"])["Body"].read() == body
