"""Faults over the real local servers: the handler raises, nothing is left
half-written that the retry would not complete, and the retry converges."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.events import parse_record
from chalicelib.factory import build_repository
from chalicelib.pipeline import Pipeline
from chalicelib.storage import S3Storage
from tests.integration.conftest import Stack
from tests.support import jpeg


class FlakyStorage(S3Storage):
    """The real S3 storage, with PutObject of one rendition failing once."""

    def __init__(self, client: Any, fail_key_part: str) -> None:
        super().__init__(client)
        self.fail_key_part = fail_key_part
        self.failed = False

    def write_rendition(self, bucket: str, key: str, data: bytes, **kwargs: Any) -> str:
        if self.fail_key_part in key and not self.failed:
            self.failed = True
            raise ConnectionError(f"PutObject {key}: connection reset")
        return super().write_rendition(bucket, key, data, **kwargs)


def test_one_rendition_put_failing_raises_and_the_retry_converges(stack: Stack) -> None:
    storage = FlakyStorage(stack.s3, "/large/")
    pipeline = Pipeline(stack.settings, storage, build_repository(stack.settings))
    stack.upload("first.jpg", jpeg(400, 300))  # an earlier image, untouched by the fault
    stack.put("photo.jpg", jpeg(2000, 1500))
    event = parse_record(stack.record("photo.jpg"))
    assert event is not None

    with pytest.raises(ConnectionError):
        pipeline.handle(event)
    assert [i["key"] for i in stack.images()] == ["first.jpg"]  # no record for photo.jpg

    assert pipeline.handle(event).value == "processed"  # the retry
    [image] = stack.images("?key=photo.jpg")
    for name, rendition in image["renditions"].items():
        head = stack.s3.head_object(Bucket="uploads", Key=rendition["key"])
        assert head["Metadata"]["source-etag"] == image["etag"], name
    assert len(stack.keys("resized/")) == 6
    pipeline.repository.close()


def test_a_failed_rendition_delete_is_finished_by_the_retry(stack: Stack) -> None:
    class FlakyDelete(S3Storage):
        calls = 0

        def delete(self, bucket: str, object_keys: Any) -> None:
            FlakyDelete.calls += 1
            if FlakyDelete.calls == 1:
                raise ConnectionError("DeleteObjects: connection reset")
            super().delete(bucket, object_keys)

    pipeline = Pipeline(stack.settings, FlakyDelete(stack.s3), build_repository(stack.settings))
    stack.upload("gone.jpg", jpeg(400, 300))
    stack.s3.delete_object(Bucket="uploads", Key="gone.jpg")
    event = parse_record(stack.record("gone.jpg", "ObjectRemoved:Delete"))
    assert event is not None

    with pytest.raises(ConnectionError):
        pipeline.handle(event)
    assert stack.images() == []  # the record went first: nothing points at missing objects
    assert len(stack.keys("resized/")) == 3  # renditions still there

    assert pipeline.handle(event).value == "duplicate"  # the retry finishes the delete
    assert stack.keys("resized/") == []
    pipeline.repository.close()
