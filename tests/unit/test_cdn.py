"""CDN_DISTRIBUTION_ID: a deletion invalidates exactly the URLs the API handed
out for the deleted renditions and alternates, once per batch, with a
CallerReference a retried event repeats.

The pipeline runs against moto in-process (S3 and CloudFront); the
repository is the in-memory one. CloudFront's client is injected."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from chalicelib.cdn import (
    MAX_PATHS,
    CloudFrontClient,
    Invalidator,
    caller_reference,
    object_path,
    record_paths,
)
from chalicelib.factory import build_cdn
from chalicelib.models import Alternate, EventKind, ImageRecord, ObjectEvent, Rendition, Status
from chalicelib.pipeline import Outcome, Pipeline
from chalicelib.settings import Settings
from chalicelib.storage import S3Storage
from chalicelib.urls import CdnUrls
from devtools import backfill
from devtools.backfill import Options
from tests.fakes import MemoryRepository
from tests.support import jpeg

BASE = "https://d111111abcdef8.cloudfront.net"
ENV = {
    "SOURCE_BUCKET": "uploads",
    "DEST_BUCKET": "renditions",
    "DDB_TABLE": "unused",
    "RENDITIONS": "thumb=64x64,medium=128x128",
    "FORMATS": "avif,webp",
    "RENDITION_BASE_URL": BASE,
}


# -- paths ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key",
    [
        "resized/thumb/photos/cat.jpg",
        "resized/thumb/photos/été 1.jpg",
        "resized/thumb.webp/a+b (2)~&=;,$!'@:.jpg.webp",
        "resized/thumb/100% #1?.jpg",
        "resized/thumb/日本/猫.jpg",
    ],
)
def test_a_path_is_the_path_and_query_of_the_url_the_api_hands_out(key: str) -> None:
    url = CdnUrls(BASE + "/img", lambda b, k: "unused")("renditions", key, "0a1b-2")
    parts = urlsplit(url)
    assert object_path(key, "0a1b-2", "/img") == f"{parts.path}?{parts.query}"


def test_path_encoding() -> None:
    assert object_path("resized/thumb/photos/été 1.jpg", "abc") == (
        "/resized/thumb/photos/%C3%A9t%C3%A9%201.jpg?v=abc"
    )
    # '?', '#', '*' and '%' in a key are never taken for a query, fragment,
    # wildcard or escape
    assert object_path("r/a?b#c*d%e.jpg", "1") == "/r/a%3Fb%23c%2Ad%25e.jpg?v=1"


def record(renditions: dict[str, Rendition]) -> ImageRecord:
    return ImageRecord(
        id="x", bucket="uploads", key="a.jpg", folder="", status=Status.PROCESSED, etag="e",
        size_bytes=1, uploaded_at="2026-01-01T00:00:00Z", created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z", renditions=renditions,
    )  # fmt: skip


def rendition(name: str, etag: str | None, *alternates: tuple[str, str | None]) -> Rendition:
    return Rendition(
        name, "renditions", f"resized/{name}/a.jpg", 1, 1, 1, "image/jpeg",
        tuple(Alternate(k, 1, "image/webp", e) for k, e in alternates), etag,
    )  # fmt: skip


def test_record_paths_in_record_order_skipping_objects_of_unknown_etag() -> None:
    """An object whose ETag the record does not know got a presigned URL, never a CDN one."""
    made = record(
        {
            "thumb": rendition("thumb", "t1", ("resized/thumb.webp/a.jpg.webp", "w1")),
            "large": rendition("large", None, ("resized/large.webp/a.jpg.webp", "w2")),
        }
    )
    assert record_paths(made) == [
        "/resized/thumb/a.jpg?v=t1",
        "/resized/thumb.webp/a.jpg.webp?v=w1",
        "/resized/large.webp/a.jpg.webp?v=w2",
    ]


def test_caller_reference_is_the_same_for_the_same_deletions_in_any_order() -> None:
    one = caller_reference(["a|1|t", "b|2|t"])
    assert one == caller_reference(["b|2|t", "a|1|t"]) == caller_reference(["a|1|t", "b|2|t"])
    assert one != caller_reference(["a|1|t"]) and one != caller_reference(["a|1|u", "b|2|t"])
    assert one.startswith("image-pipeline-") and len(one) <= 128


# -- the invalidator, with a recording client ------------------------------------
class Recorder:
    def __init__(self, *failures: Exception) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failures = list(failures)

    def create_invalidation(
        self, *, DistributionId: str, InvalidationBatch: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        if self.failures:
            raise self.failures.pop(0)
        self.calls.append({"DistributionId": DistributionId, **InvalidationBatch})
        return {"Invalidation": {"Id": f"I{len(self.calls)}"}}


def error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "CreateInvalidation")


def invalidator(client: Recorder, made: list[int] | None = None) -> Invalidator:
    def make() -> CloudFrontClient:
        if made is not None:
            made.append(1)
        return client

    return Invalidator("E2QWRUHAPOMQZL", make, BASE)


def test_outside_a_batch_each_request_is_sent_and_the_client_made_once() -> None:
    client = Recorder()
    made: list[int] = []
    cdn = invalidator(client, made)
    assert made == []  # not before the first invalidation
    cdn.request(["/a?v=1"], ["a"])
    cdn.request(["/b?v=1", "/c?v=1"], ["b"])
    cdn.request([], ["nothing"])
    assert made == [1]
    assert client.calls == [
        {
            "DistributionId": "E2QWRUHAPOMQZL",
            "Paths": {"Quantity": 1, "Items": ["/a?v=1"]},
            "CallerReference": caller_reference(["a"]),
        },
        {
            "DistributionId": "E2QWRUHAPOMQZL",
            "Paths": {"Quantity": 2, "Items": ["/b?v=1", "/c?v=1"]},
            "CallerReference": caller_reference(["b"]),
        },
    ]


def test_a_batch_sends_one_request_also_when_nested_or_when_it_fails() -> None:
    client = Recorder()
    cdn = invalidator(client)
    with cdn.batch():
        cdn.request(["/a?v=1", "/b?v=1"], ["a"])
        with cdn.batch():  # the outer batch sends
            cdn.request(["/b?v=1", "/c?v=1"], ["c"])
        assert client.calls == []
    assert client.calls == [
        {
            "DistributionId": "E2QWRUHAPOMQZL",
            "Paths": {"Quantity": 3, "Items": ["/a?v=1", "/b?v=1", "/c?v=1"]},
            "CallerReference": caller_reference(["a", "c"]),
        }
    ]
    # What was deleted before a failure is invalidated; the failure propagates.

    def delete_then_fail() -> None:
        with cdn.batch():
            cdn.request(["/d?v=1"], ["d"])
            raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database"):
        delete_then_fail()
    assert client.calls[-1]["Paths"]["Items"] == ["/d?v=1"]
    assert len(client.calls) == 2


def test_a_large_batch_is_split_under_cloudfronts_limits() -> None:
    client = Recorder()
    cdn = invalidator(client)
    paths = [f"/r/{i}.jpg?v=1" for i in range(MAX_PATHS + 5)]
    cdn.request(paths, ["many"])
    reference = caller_reference(["many"])
    assert [(c["Paths"]["Quantity"], c["CallerReference"]) for c in client.calls] == [
        (MAX_PATHS, f"{reference}-0"),
        (5, f"{reference}-1"),
    ]
    assert [p for c in client.calls for p in c["Paths"]["Items"]] == paths


@pytest.mark.parametrize(
    "failure",
    [
        error("Throttling", 400),
        error("TooManyInvalidationsInProgress", 400),
        error("ServiceUnavailable", 503),
        EndpointConnectionError(endpoint_url="https://cloudfront.amazonaws.com"),
    ],
    ids=["throttling", "too-many-in-progress", "unavailable", "network"],
)
def test_a_transient_failure_raises_for_a_retry(failure: Exception) -> None:
    client = Recorder(failure)
    cdn = invalidator(client)
    with pytest.raises(type(failure)):
        cdn.request(["/a?v=1"], ["a"])
    cdn.request(["/a?v=1"], ["a"])  # the retry
    assert [c["CallerReference"] for c in client.calls] == [caller_reference(["a"])]


@pytest.mark.parametrize(
    "failure", [error("AccessDenied", 403), error("NoSuchDistribution", 404)], ids=str
)
def test_a_failure_no_retry_can_fix_is_logged_and_the_deletion_stands(
    failure: ClientError, caplog: pytest.LogCaptureFixture
) -> None:
    client = Recorder(failure)
    with caplog.at_level(logging.ERROR, logger="image_pipeline"):
        invalidator(client).request(["/a?v=1", "/b?v=1"], ["a"])
    assert client.calls == []
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = line.getMessage()
    assert "did not invalidate 2 deleted rendition paths of E2QWRUHAPOMQZL" in message
    assert failure.response["Error"]["Code"] in message


# -- the pipeline, against moto --------------------------------------------------
@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
    with mock_aws():
        yield


class Setup:
    def __init__(self, client: Any = None, **env: str) -> None:
        self.s3 = boto3.client("s3")
        self.cloudfront = boto3.client("cloudfront")
        for bucket in ("uploads", "renditions"):
            self.s3.create_bucket(Bucket=bucket)
        self.distribution = self.cloudfront.create_distribution(
            DistributionConfig={
                "CallerReference": "test",
                "Comment": "",
                "Enabled": True,
                "Origins": {
                    "Quantity": 1,
                    "Items": [
                        {
                            "Id": "renditions",
                            "DomainName": "renditions.s3.us-east-1.amazonaws.com",
                            "S3OriginConfig": {"OriginAccessIdentity": ""},
                        }
                    ],
                },
                "DefaultCacheBehavior": {
                    "TargetOriginId": "renditions",
                    "ViewerProtocolPolicy": "redirect-to-https",
                    "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6",
                },
            }
        )["Distribution"]["Id"]
        self.settings = Settings.from_env(ENV | {"CDN_DISTRIBUTION_ID": self.distribution} | env)
        self.repository = MemoryRepository()
        made = client if client is not None else self.cloudfront
        cdn = Invalidator(self.distribution, lambda: made, self.settings.rendition_base_url)
        self.pipeline = Pipeline(
            self.settings, S3Storage(self.s3), self.repository, cdn=cdn,
            observer=lambda *_: None,
        )  # fmt: skip
        self.sequence = 0x5B039F73C627CE8B

    def event(self, key: str, kind: EventKind) -> ObjectEvent:
        self.sequence += 16
        etag = None
        if kind is EventKind.CREATED:
            etag = self.s3.head_object(Bucket="uploads", Key=key)["ETag"].strip('"')
        return ObjectEvent(
            "uploads", key, kind, "ObjectCreated:Put" if etag else "ObjectRemoved:Delete",
            size=None, etag=etag, sequencer=f"{self.sequence:018X}",
        )  # fmt: skip

    def upload(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket="uploads", Key=key, Body=data)
        assert self.pipeline.handle(self.event(key, EventKind.CREATED)) is Outcome.PROCESSED

    def remove(self, key: str) -> ObjectEvent:
        self.s3.delete_object(Bucket="uploads", Key=key)
        return self.event(key, EventKind.REMOVED)

    def etags(self) -> dict[str, str]:
        listed = self.s3.list_objects_v2(Bucket="renditions").get("Contents", [])
        return {o["Key"]: o["ETag"].strip('"') for o in listed}

    def invalidations(self) -> list[dict[str, Any]]:
        """Every invalidation of the distribution, oldest first."""
        listed = self.cloudfront.list_invalidations(DistributionId=self.distribution)
        batches = [
            self.cloudfront.get_invalidation(DistributionId=self.distribution, Id=i["Id"])
            for i in listed["InvalidationList"].get("Items", [])
        ]
        return [b["Invalidation"]["InvalidationBatch"] for b in batches]


# The rendition keys of "photos/été 1.jpg", in record order, and their URL paths.
KEYS = [
    "resized/thumb/photos/été 1.jpg",
    "resized/thumb.avif/photos/été 1.jpg.avif",
    "resized/thumb.webp/photos/été 1.jpg.webp",
    "resized/medium/photos/été 1.jpg",
    "resized/medium.avif/photos/été 1.jpg.avif",
    "resized/medium.webp/photos/été 1.jpg.webp",
]
PATHS = [
    "/resized/thumb/photos/%C3%A9t%C3%A9%201.jpg",
    "/resized/thumb.avif/photos/%C3%A9t%C3%A9%201.jpg.avif",
    "/resized/thumb.webp/photos/%C3%A9t%C3%A9%201.jpg.webp",
    "/resized/medium/photos/%C3%A9t%C3%A9%201.jpg",
    "/resized/medium.avif/photos/%C3%A9t%C3%A9%201.jpg.avif",
    "/resized/medium.webp/photos/%C3%A9t%C3%A9%201.jpg.webp",
]


def test_deleting_a_source_invalidates_its_renditions_and_alternates(aws: None) -> None:
    setup = Setup()
    setup.upload("photos/été 1.jpg", jpeg(300, 200))
    setup.upload("photos/kept.jpg", jpeg(300, 200))
    etags = setup.etags()
    assert setup.invalidations() == []  # uploads invalidate nothing

    removed = setup.remove("photos/été 1.jpg")
    assert setup.pipeline.handle(removed) is Outcome.DELETED

    assert not set(KEYS) & set(setup.etags())  # the renditions are gone
    [batch] = setup.invalidations()
    expected = [f"{path}?v={etags[key]}" for key, path in zip(KEYS, PATHS, strict=True)]
    assert batch["Paths"] == {"Quantity": 6, "Items": expected}
    # The paths are those of the URLs the API listed.
    urls = CdnUrls(BASE, lambda b, k: "unused")
    assert [urlsplit(urls("renditions", k, etags[k]))._replace(scheme="", netloc="").geturl()
            for k in KEYS] == expected  # fmt: skip

    # S3 delivers the event again (or Lambda retries it): the same request,
    # same CallerReference, which CloudFront answers with the first invalidation.
    assert setup.pipeline.handle(removed) is Outcome.DUPLICATE
    first, again = setup.invalidations()
    assert again == first

    # Another deletion of the same key, later, is another invalidation.
    setup.upload("photos/été 1.jpg", jpeg(300, 200, quality=60))
    assert setup.pipeline.handle(setup.remove("photos/été 1.jpg")) is Outcome.DELETED
    third = setup.invalidations()[-1]
    assert third["CallerReference"] != first["CallerReference"]
    assert [p.partition("?")[0] for p in third["Paths"]["Items"]] == PATHS


class FlakyCloudFront:
    """Moto's CloudFront, whose first CreateInvalidation is throttled."""

    def __init__(self, client: Any) -> None:
        self.client, self.failed = client, False

    def create_invalidation(self, **kwargs: Any) -> Mapping[str, Any]:
        if not self.failed:
            self.failed = True
            raise error("Throttling", 400)
        result: Mapping[str, Any] = self.client.create_invalidation(**kwargs)
        return result


def test_a_throttled_invalidation_raises_after_the_deletes_and_the_retry_sends_it(
    aws: None,
) -> None:
    setup = Setup()
    flaky = FlakyCloudFront(setup.cloudfront)
    setup.pipeline.cdn = Invalidator(setup.distribution, lambda: flaky, BASE)
    setup.upload("photos/été 1.jpg", jpeg(300, 200))
    etags = setup.etags()
    removed = setup.remove("photos/été 1.jpg")

    with pytest.raises(ClientError, match="Throttling"):
        setup.pipeline.handle(removed)
    assert not set(KEYS) & set(setup.etags())  # deleted, and not undone
    assert setup.invalidations() == []

    assert setup.pipeline.handle(removed) is Outcome.DUPLICATE  # Lambda's retry
    [batch] = setup.invalidations()
    assert batch["Paths"]["Items"] == [
        f"{p}?v={etags[k]}" for k, p in zip(KEYS, PATHS, strict=True)
    ]


def test_one_invalidation_for_a_batch_and_for_a_folders_clean_up(aws: None) -> None:
    setup = Setup(RENDITIONS="thumb=64x64", FORMATS="")
    for key in ("a.jpg", "b.jpg", "box/c.jpg", "box/d.jpg"):
        setup.upload(key, jpeg(100, 100))
    etags = setup.etags()

    # one S3 notification with two records (app.py opens the batch per notification)
    removals = [setup.remove("a.jpg"), setup.remove("b.jpg")]
    with setup.pipeline.invalidation_batch():
        assert [setup.pipeline.handle(e) for e in removals] == [Outcome.DELETED] * 2
    [batch] = setup.invalidations()
    assert batch["Paths"]["Items"] == [
        f"/resized/thumb/a.jpg?v={etags['resized/thumb/a.jpg']}",
        f"/resized/thumb/b.jpg?v={etags['resized/thumb/b.jpg']}",
    ]

    # a folder marker deleted after its images: the clean-up's deletions go in one request
    setup.s3.put_object(Bucket="uploads", Key="box/", Body=b"")
    assert setup.pipeline.handle(setup.event("box/", EventKind.CREATED)) is Outcome.FOLDER_CREATED
    for key in ("box/", "box/c.jpg", "box/d.jpg"):
        setup.s3.delete_object(Bucket="uploads", Key=key)
    assert setup.pipeline.handle(setup.event("box/", EventKind.REMOVED)) is Outcome.FOLDER_DELETED
    _, folder = setup.invalidations()
    assert sorted(folder["Paths"]["Items"]) == [
        f"/resized/thumb/box/c.jpg?v={etags['resized/thumb/box/c.jpg']}",
        f"/resized/thumb/box/d.jpg?v={etags['resized/thumb/box/d.jpg']}",
    ]


def test_prune_invalidates_what_it_deletes_in_one_request(aws: None) -> None:
    """``backfill --prune``: the renditions of a source that went without an
    event, and a rendition no record lists, leave the CDN in one request."""
    setup = Setup(RENDITIONS="thumb=64x64", FORMATS="")
    setup.upload("kept.jpg", jpeg(100, 100))
    setup.upload("gone.jpg", jpeg(100, 100, quality=60))
    setup.s3.delete_object(Bucket="uploads", Key="gone.jpg")  # its delete event never came
    # a rendition of a name since taken out of RENDITIONS
    setup.s3.put_object(Bucket="renditions", Key="resized/medium/kept.jpg", Body=jpeg(50, 50))
    etags = setup.etags()
    options = Options(prune=True, progress=False, prune_grace=timedelta(0), workers=1)

    summary = backfill.run(setup.settings, options, lambda: setup.pipeline, setup.s3)

    assert summary.pruned == 2
    assert sorted(setup.etags()) == ["resized/thumb/kept.jpg"]
    [batch] = setup.invalidations()
    assert batch["Paths"]["Items"] == [
        f"/resized/thumb/gone.jpg?v={etags['resized/thumb/gone.jpg']}",
        f"/resized/medium/kept.jpg?v={etags['resized/medium/kept.jpg']}",
    ]


def test_without_the_setting_nothing_is_invalidated(aws: None) -> None:
    assert build_cdn(Settings.from_env({k: v for k, v in ENV.items()})) is None
    setup = Setup()
    setup.pipeline.cdn = None
    setup.upload("a.jpg", jpeg(100, 100))
    assert setup.pipeline.handle(setup.remove("a.jpg")) is Outcome.DELETED
    assert setup.invalidations() == []


def test_the_factory_builds_the_invalidator_from_the_settings(aws: None) -> None:
    setup = Setup()
    settings = Settings.from_env(
        ENV | {"CDN_DISTRIBUTION_ID": setup.distribution, "RENDITION_BASE_URL": BASE + "/img/"}
    )
    cdn = build_cdn(settings)
    assert cdn is not None
    assert (cdn.distribution_id, cdn.base_path) == (setup.distribution, "/img")
    cdn.request([cdn.path("resized/thumb/a b.jpg", "e1")], ["ref"])  # its client: boto3's
    [batch] = setup.invalidations()
    assert batch["Paths"]["Items"] == ["/img/resized/thumb/a%20b.jpg?v=e1"]
