"""Archived originals on moto's server: the lifecycle rule's scope, and every
path (events, re-uploads, deletions, backfill, restores) on an original in
each storage class.

moto stores lifecycle configuration but runs no transition, so a transition
is simulated as S3 would leave the object: copied onto itself in the new
class, content and ETag unchanged. moto refuses GetObject on GLACIER and
DEEP_ARCHIVE objects (InvalidObjectState) until ``restore_object``, which it
completes at once.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from PIL import Image

from chalicelib import keys
from chalicelib.factory import build_pipeline
from chalicelib.models import ImageRecord
from chalicelib.pipeline import Pipeline
from devtools import backfill
from devtools.backfill import Options, Summary
from devtools.provision import ARCHIVE_RULE_ID
from tests.integration.conftest import BASE_ENV, Stack, make_stack

READABLE = ["STANDARD", "GLACIER_IR", "STANDARD_IA", "INTELLIGENT_TIERING"]
UNREADABLE = ["GLACIER", "DEEP_ARCHIVE"]
KEY = "uploads/photos/cat.jpg"


def photo(shade: int = 120) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Acme"  # Make
    exif[0x0110] = "Pinhole 1"  # Model
    buffer = io.BytesIO()
    Image.new("RGB", (90, 60), (shade, 80, 160)).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


@pytest.fixture
def one_bucket(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """Renditions in the source bucket; originals archived after 30 days."""
    env = BASE_ENV | {"ARCHIVE_AFTER_DAYS": "30"}
    return make_stack(env, tmp_path, monkeypatch)


def transition(stack: Stack, key: str, storage_class: str) -> None:
    """What a lifecycle transition leaves: the same object in another class."""
    stack.s3.copy_object(
        Bucket=stack.bucket, Key=key, CopySource={"Bucket": stack.bucket, "Key": key},
        StorageClass=storage_class, MetadataDirective="COPY",
    )  # fmt: skip


def stored(stack: Stack, key: str = KEY) -> ImageRecord | None:
    pipeline: Pipeline = stack.app._pipeline()
    return pipeline.repository.get(keys.image_id(stack.bucket, key))


def storage_class(stack: Stack, key: str = KEY) -> str:
    return str(stack.s3.head_object(Bucket=stack.bucket, Key=key).get("StorageClass", "STANDARD"))


class Calls:
    """The S3 operations a client makes, by name."""

    def __init__(self, *clients: Any) -> None:
        self.names: list[str] = []
        for client in clients:
            client.meta.events.register("before-call.s3.*", self._seen)

    def _seen(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)


def run(stack: Stack, options: Options, calls: list[str] | None = None) -> Summary:
    """A backfill; ``calls`` collects the S3 operations of its pipelines."""

    def make() -> Pipeline:
        pipeline = build_pipeline(stack.settings)
        if calls is not None:
            pipeline.storage._s3.meta.events.register(
                "before-call.s3.*", lambda model, **_: calls.append(model.name)
            )
        return pipeline

    return backfill.run(stack.settings, replace(options, progress=False), make, stack.s3)


def rule_covers(rule: dict[str, Any], key: str) -> bool:
    return key.startswith(rule["Filter"]["Prefix"])


def lifecycle(bucket: str) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in boto3.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    ]


# -- the rule's scope -----------------------------------------------------------------------


def test_in_a_shared_bucket_the_rule_covers_uploads_and_no_rendition(one_bucket: Stack) -> None:
    stack = one_bucket
    assert stack.upload(KEY, photo()) == ["processed"]
    assert stack.upload("elsewhere/dog.jpg", photo(40)) == ["processed"]

    [rule] = lifecycle(stack.bucket)
    assert rule["ID"] == ARCHIVE_RULE_ID and rule["Status"] == "Enabled"
    assert rule["Transitions"] == [{"Days": 30, "StorageClass": "GLACIER_IR"}]
    renditions = stack.keys("resized/")
    assert len(renditions) == 6
    assert rule_covers(rule, KEY)
    assert not any(rule_covers(rule, k) for k in renditions)
    # the scope's price: an original outside UPLOAD_PREFIX stays where it is
    assert not rule_covers(rule, "elsewhere/dog.jpg")


def test_with_a_destination_bucket_the_rule_covers_the_whole_source(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = BASE_ENV | {
        "DEST_BUCKET": "renditions",
        "ARCHIVE_AFTER_DAYS": "90",
        "ARCHIVE_STORAGE_CLASS": "deep_archive",
    }
    stack = make_stack(env, tmp_path, monkeypatch)
    assert stack.upload("photos/cat.jpg", photo()) == ["processed"]

    [rule] = lifecycle("uploads")
    assert rule["Filter"] == {"Prefix": ""}
    assert rule["Transitions"] == [{"Days": 90, "StorageClass": "DEEP_ARCHIVE"}]
    assert rule_covers(rule, "photos/cat.jpg")
    with pytest.raises(stack.s3.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        stack.s3.get_bucket_lifecycle_configuration(Bucket="renditions")
    assert stack.keys("resized/")  # every rendition lies in the bucket the rule never sees


# -- every path, on an original in each class -------------------------------------------------


@pytest.mark.parametrize("cls", READABLE + UNREADABLE)
def test_every_path_works_on_an_archived_original(one_bucket: Stack, cls: str) -> None:
    stack = one_bucket
    assert stack.upload(KEY, photo()) == ["processed"]
    before = stored(stack)
    assert before is not None and before.metadata["camera_make"] == "Acme"
    renditions = stack.keys("resized/")

    transition(stack, KEY, cls)
    assert storage_class(stack) == cls
    # A lifecycle transition sends no ObjectCreated event; a copy does. Either
    # way the record's metadata stays, and nothing fails.
    outcome = stack.deliver(stack.record(KEY, "ObjectCreated:Copy"))
    after = stored(stack)
    assert after is not None and after.status == "processed"
    assert after.metadata == before.metadata and after.etag == before.etag
    if cls in READABLE:
        assert outcome == ["processed"]
    else:
        assert outcome == ["superseded"]  # unreadable, its good record kept as it was
        assert after == before
    assert stack.keys("resized/") == renditions
    assert [i["key"] for i in stack.images()] == [KEY]

    # backfill --only-missing: up to date from the listing and the record, no read
    calls = Calls(stack.s3)
    pipeline_calls: list[str] = []
    summary = run(stack, Options(only_missing=True), pipeline_calls)
    assert (summary.skipped, summary.processed, summary.failed, summary.archived) == (1, 0, 0, 0)
    assert "GetObject" not in calls.names + pipeline_calls
    assert "HeadObject" not in calls.names + pipeline_calls

    # a reprocess must read: readable classes are read like STANDARD; the
    # others are counted in the summary, their records untouched
    summary = run(stack, Options())
    if cls in READABLE:
        assert (summary.processed, summary.archived) == (1, 0)
        assert storage_class(stack) == cls
    else:
        assert (summary.processed, summary.failed, summary.unchanged) == (0, 0, 0)
        assert summary.archived == 1 and summary.archived_classes == {cls}
        assert f"archived 1: not readable in {cls}; rerun with --restore DAYS" in summary.line()
        assert stored(stack) == after
        # --restore asks S3 for a copy (moto makes it at once), the next run reads it
        summary = run(stack, Options(restore_days=2))
        assert (summary.restore_requested, summary.archived, summary.processed) == (1, 0, 0)
        assert "restoring 1 (1 requested now, 0 already under way)" in summary.line()
        head = stack.s3.head_object(Bucket=stack.bucket, Key=KEY)
        assert 'ongoing-request="false"' in head["Restore"]
        summary = run(stack, Options(restore_days=2))
        assert (summary.processed, summary.restore_requested, summary.archived) == (1, 0, 0)
    record = stored(stack)
    assert record is not None and record.status == "processed"
    assert record.metadata == before.metadata

    # a re-upload (in STANDARD, as uploads land) is processed as any other
    assert stack.upload(KEY, photo(200)) == ["processed"]
    reuploaded = stored(stack)
    assert reuploaded is not None and reuploaded.etag != before.etag

    # and a deletion removes record and renditions, whatever the class
    transition(stack, KEY, cls)
    assert stack.deliver(stack.record(KEY, "ObjectRemoved:Delete")) == ["superseded"]
    assert stack.delete(KEY) == ["deleted"]
    assert stored(stack) is None and stack.keys("resized/") == []


@pytest.mark.parametrize("cls", UNREADABLE)
def test_an_upload_archived_before_processing_fails_until_restored(
    one_bucket: Stack, cls: str
) -> None:
    stack = one_bucket
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=photo(), StorageClass=cls)

    assert stack.deliver(stack.record(KEY)) == ["failed"]
    record = stored(stack)
    assert record is not None and record.status == "failed"
    assert f"archived in {cls}" in str(record.error) and "--restore DAYS" in str(record.error)

    # a restore can mend this failure: --only-missing does not skip it
    dry = run(stack, Options(only_missing=True, restore_days=1, dry_run=True))
    assert (dry.skipped, dry.archived, dry.restore_requested) == (0, 1, 0)
    assert dry.actions == [f"would restore {KEY} ({cls}) for 1 days (Bulk)"]
    assert "Restore" not in stack.s3.head_object(Bucket=stack.bucket, Key=KEY)
    asked = run(stack, Options(only_missing=True, restore_days=1, restore_tier="Standard"))
    assert (asked.skipped, asked.restore_requested, asked.processed) == (0, 1, 0)
    done = run(stack, Options(only_missing=True))
    assert (done.processed, done.archived) == (1, 0)
    record = stored(stack)
    assert record is not None and record.status == "processed"
    assert record.metadata["camera_make"] == "Acme"
    again = run(stack, Options(only_missing=True))
    assert (again.skipped, again.processed) == (1, 0)


def test_no_failed_record_over_a_good_one_on_either_backend(stack: Stack) -> None:
    """The pipeline's own guard, for events the backfill does not triage
    (a copy, an SQS redelivery, a backfill racing a transition)."""
    assert stack.upload("cold.jpg", photo()) == ["processed"]
    before = stored(stack, "cold.jpg")
    transition(stack, "cold.jpg", "GLACIER")

    for _ in range(2):
        assert stack.deliver(stack.record("cold.jpg", "ObjectCreated:Copy")) == ["superseded"]
    assert stored(stack, "cold.jpg") == before
    assert stack.images("?status=failed") == []
    # a backfill event, with no sequencer, straight to the pipeline
    [obj] = stack.s3.list_objects_v2(Bucket=stack.bucket)["Contents"][:1]
    event = backfill.backfill_event(stack.bucket, obj)
    assert stack.app._pipeline().handle(event) == "superseded"
    assert stored(stack, "cold.jpg") == before


def test_a_restore_under_way_is_counted_not_asked_again(one_bucket: Stack) -> None:
    stack = one_bucket
    assert stack.upload(KEY, photo()) == ["processed"]
    transition(stack, KEY, "DEEP_ARCHIVE")
    stack.upload("uploads/b.jpg", photo(10))
    transition(stack, "uploads/b.jpg", "GLACIER")

    class Restoring:
        """S3 as it is while the restores run: HEAD says ongoing-request="true"."""

        def __init__(self, client: Any) -> None:
            self._client = client

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

        def head_object(self, **kwargs: Any) -> Any:
            head = dict(self._client.head_object(**kwargs))
            head["Restore"] = 'ongoing-request="true"'
            return head

        def restore_object(self, **kwargs: Any) -> Any:
            raise AssertionError("a restore under way is not requested again")

    summary = backfill.run(
        stack.settings, Options(restore_days=3, progress=False),
        lambda: build_pipeline(stack.settings), Restoring(stack.s3),
    )  # fmt: skip
    assert (summary.restoring, summary.restore_requested, summary.processed) == (2, 0, 0)
    assert "restoring 2 (0 requested now, 2 already under way)" in summary.line()
