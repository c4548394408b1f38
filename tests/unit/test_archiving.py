"""Archiving originals without a server: the settings, how HEAD and
RestoreObject answers are read, the lifecycle merge's bucket-wide setting,
and what ``backfill --only-missing`` takes for settled."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib import keys
from chalicelib.models import ImageRecord, Status
from chalicelib.settings import ARCHIVE_STORAGE_CLASSES, Settings, SettingsError
from chalicelib.storage import Archived, RestoreState, S3Storage, restore_state
from devtools.backfill import Summary, backfill_event, is_done
from devtools.provision import ARCHIVE_RULE_ID, archive_prefix, ensure_archive_rule
from tests.fakes import MemoryRepository

MINIMAL = {"SOURCE_BUCKET": "in", "DDB_TABLE": "t"}


def _error(code: str, status: int = 400, **extra: str) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": code, **extra},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Op")


# -- settings -------------------------------------------------------------------------------


def test_archiving_is_off_unless_asked() -> None:
    settings = Settings.from_env(MINIMAL)
    assert (settings.archive_after_days, settings.archive_storage_class) == (0, "GLACIER_IR")
    on = Settings.from_env(
        MINIMAL | {"ARCHIVE_AFTER_DAYS": "45", "ARCHIVE_STORAGE_CLASS": "glacier"}
    )
    assert (on.archive_after_days, on.archive_storage_class) == (45, "GLACIER")


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"ARCHIVE_AFTER_DAYS": "0"}, "ARCHIVE_AFTER_DAYS=0 must be between 1 and 36500"),
        ({"ARCHIVE_AFTER_DAYS": "soon"}, "ARCHIVE_AFTER_DAYS='soon' is not a whole number"),
        ({"ARCHIVE_STORAGE_CLASS": "ONEZONE_IA"}, "ARCHIVE_STORAGE_CLASS='ONEZONE_IA' must be"),
        (
            {"ARCHIVE_AFTER_DAYS": "7", "ARCHIVE_STORAGE_CLASS": "STANDARD_IA"},
            "STANDARD_IA only once they are 30 days old",
        ),
    ],
)
def test_archive_settings_are_checked(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        Settings.from_env(MINIMAL | env)


@pytest.mark.parametrize("storage_class", ARCHIVE_STORAGE_CLASSES)
def test_archiving_changes_no_rendition_so_not_the_fingerprint(storage_class: str) -> None:
    env = MINIMAL | {"ARCHIVE_AFTER_DAYS": "30", "ARCHIVE_STORAGE_CLASS": storage_class}
    assert Settings.from_env(env).fingerprint == Settings.from_env(MINIMAL).fingerprint


def test_the_rule_scope_follows_where_renditions_live() -> None:
    shared = Settings.from_env(MINIMAL | {"UPLOAD_PREFIX": "in/"})
    assert archive_prefix(shared) == "in/"
    assert not (shared.rendition_prefix + "thumb/in/a.jpg").startswith(archive_prefix(shared))
    assert archive_prefix(Settings.from_env(MINIMAL | {"DEST_BUCKET": "out"})) == ""
    # DEST_BUCKET naming the source bucket is the shared case
    assert archive_prefix(Settings.from_env(MINIMAL | {"DEST_BUCKET": "in"})) == "uploads/"


# -- reading S3's answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "state"),
    [
        ({}, RestoreState.READABLE),  # STANDARD: no StorageClass in HEAD
        ({"StorageClass": "GLACIER_IR"}, RestoreState.READABLE),
        ({"StorageClass": "STANDARD_IA"}, RestoreState.READABLE),
        ({"StorageClass": "INTELLIGENT_TIERING"}, RestoreState.READABLE),
        ({"StorageClass": "GLACIER"}, RestoreState.ARCHIVED),
        ({"StorageClass": "DEEP_ARCHIVE"}, RestoreState.ARCHIVED),
        ({"StorageClass": "GLACIER", "Restore": 'ongoing-request="true"'}, RestoreState.RESTORING),
        (
            {
                "StorageClass": "DEEP_ARCHIVE",
                "Restore": 'ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"',
            },
            RestoreState.READABLE,
        ),
    ],
)
def test_restore_state_from_head(head: dict[str, str], state: RestoreState) -> None:
    assert restore_state(head) is state


class FakeS3:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _call(self, name: str, kwargs: dict[str, Any]) -> Any:
        self.calls.append((name, kwargs))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def restore_object(self, **kwargs: Any) -> Any:
        return self._call("restore_object", kwargs)

    def get_object(self, **kwargs: Any) -> Any:
        return self._call("get_object", kwargs)


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        ({"ResponseMetadata": {"HTTPStatusCode": 202}}, RestoreState.RESTORING),
        ({"ResponseMetadata": {"HTTPStatusCode": 200}}, RestoreState.READABLE),
        (_error("RestoreAlreadyInProgress", 409), RestoreState.RESTORING),
        (_error("InvalidObjectState", 403, StorageClass="STANDARD"), RestoreState.READABLE),
        (_error("NoSuchKey", 404), RestoreState.GONE),
    ],
)
def test_a_restore_request_is_idempotent(answer: Any, state: RestoreState) -> None:
    s3 = FakeS3(answer)
    assert S3Storage(s3).request_restore("in", "a.jpg", 7, "Bulk") is state  # type: ignore[arg-type]
    assert s3.calls == [
        (
            "restore_object",
            {
                "Bucket": "in",
                "Key": "a.jpg",
                "RestoreRequest": {"Days": 7, "GlacierJobParameters": {"Tier": "Bulk"}},
            },
        )
    ]


def test_other_restore_errors_raise() -> None:
    with pytest.raises(ClientError, match="SlowDown"):
        S3Storage(FakeS3(_error("SlowDown", 503))).request_restore("in", "a.jpg", 1, "Bulk")  # type: ignore[arg-type]


def test_an_unreadable_object_names_its_class_and_the_way_out() -> None:
    error = _error("InvalidObjectState", 403, StorageClass="DEEP_ARCHIVE")
    with pytest.raises(Archived) as caught:
        S3Storage(FakeS3(error)).read("in", "a.jpg", etag=None, max_bytes=10)  # type: ignore[arg-type]
    assert caught.value.storage_class == "DEEP_ARCHIVE"
    message = str(caught.value)
    assert message.startswith("a.jpg is archived in DEEP_ARCHIVE and cannot be read")
    assert "--restore DAYS" in message and "restore it" in message
    assert Archived.describes(message) and not Archived.describes("not a JPEG")
    assert not Archived.describes(None)


# -- the lifecycle merge --------------------------------------------------------------------


class LifecycleS3:
    """A bucket's lifecycle configuration, with the bucket-wide setting AWS keeps."""

    def __init__(self, rules: list[dict[str, Any]] | None, minimum: str) -> None:
        self.rules, self.minimum = rules, minimum
        self.puts: list[dict[str, Any]] = []

    def get_bucket_lifecycle_configuration(self, Bucket: str) -> Any:
        if self.rules is None:
            raise _error("NoSuchLifecycleConfiguration", 404)
        return {"Rules": self.rules, "TransitionDefaultMinimumObjectSize": self.minimum}

    def put_bucket_lifecycle_configuration(self, **kwargs: Any) -> None:
        self.puts.append(kwargs)
        self.rules = kwargs["LifecycleConfiguration"]["Rules"]

    def delete_bucket_lifecycle(self, Bucket: str) -> None:
        raise AssertionError("nothing to delete")


def test_the_merge_keeps_the_bucket_wide_minimum_size_and_writes_only_changes() -> None:
    s3 = LifecycleS3(
        [{"ID": "theirs", "Status": "Enabled", "Filter": {}}], "varies_by_storage_class"
    )
    settings = Settings.from_env(MINIMAL | {"DEST_BUCKET": "out", "ARCHIVE_AFTER_DAYS": "30"})

    ensure_archive_rule(s3, settings, lambda _: None)  # type: ignore[arg-type]
    ensure_archive_rule(s3, settings, lambda _: None)  # type: ignore[arg-type]

    [put] = s3.puts  # the second run found nothing to change
    assert put["TransitionDefaultMinimumObjectSize"] == "varies_by_storage_class"
    assert [r["ID"] for r in put["LifecycleConfiguration"]["Rules"]] == ["theirs", ARCHIVE_RULE_ID]


def test_archiving_off_and_no_rule_of_its_own_writes_nothing() -> None:
    s3 = LifecycleS3(None, "")
    said: list[str] = []
    ensure_archive_rule(s3, Settings.from_env(MINIMAL), said.append)  # type: ignore[arg-type]
    assert s3.puts == [] and said == []


# -- backfill -------------------------------------------------------------------------------


def _record(status: Status, error: str | None, settings: Settings) -> ImageRecord:
    return ImageRecord(
        id=keys.image_id("in", "a.jpg"), bucket="in", key="a.jpg", folder="", status=status,
        etag="e", size_bytes=1, uploaded_at="t", created_at="t", updated_at="t", error=error,
        fingerprint=settings.fingerprint,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "error", "done"),
    [
        (Status.PROCESSED, None, True),
        (Status.FAILED, "the file is not an image", True),  # would fail again
        (Status.FAILED, str(Archived("a.jpg", "GLACIER")), False),  # a restore mends it
    ],
)
def test_only_missing_retries_an_archived_failure(
    status: Status, error: str | None, done: bool
) -> None:
    settings = Settings.from_env(MINIMAL)
    repository = MemoryRepository()
    repository.save(_record(status, error, settings), None)
    listed = {"Key": "a.jpg", "Size": 1, "ETag": '"e"', "LastModified": datetime.now(UTC)}
    event = backfill_event("in", listed)
    assert is_done(repository, settings, event) is done
    assert is_done(repository, settings, event, retry_failed=True) is (status is Status.PROCESSED)


def test_the_summary_says_what_is_archived_and_what_to_do() -> None:
    summary = Summary(processed=2, archived=3, archived_classes={"GLACIER", "DEEP_ARCHIVE"})
    assert summary.line() == (
        "processed 2, failed 0, skipped 0, unchanged 0, archived 3 in 0.0 s; "
        "archived 3: not readable in DEEP_ARCHIVE or GLACIER; rerun with --restore DAYS"
    )
    restoring = Summary(restore_requested=2, restoring=1, restore_tier="Bulk").line()
    assert (
        "restoring 3 (2 requested now, 1 already under way): rerun once restored, "
        "in up to 12 hours from GLACIER, 48 from DEEP_ARCHIVE"
    ) in restoring
    assert "archived" not in Summary(processed=1).line()
