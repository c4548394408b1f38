"""Backfill over a few hundred objects on moto's server: a full run, an
interrupted run resumed with --only-missing, pruning, dry runs, the queue."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from PIL import Image

from chalicelib.factory import build_pipeline
from chalicelib.pipeline import Pipeline
from devtools import backfill
from devtools.backfill import Options, Summary
from tests.integration.conftest import Stack, make_stack

COUNT = 240


def tiny_jpeg(i: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (i % 256, 80, 160)).save(buffer, "JPEG")
    return buffer.getvalue()


def fill(stack: Stack) -> None:
    """Objects already in the bucket before the pipeline was connected: no events."""
    for i in range(COUNT):
        stack.put(f"old/{i // 60}/img-{i:04d}.jpg", tiny_jpeg(i))
    stack.put("old/readme.txt", b"not an image")
    stack.put("old/", b"")


def run(stack: Stack, options: Options, stop: threading.Event | None = None) -> Summary:
    return backfill.run(
        stack.settings, options, lambda: build_pipeline(stack.settings), stack.s3,
        boto3.client("sqs"), stop,
    )  # fmt: skip


def listed(stack: Stack) -> int:
    total, token = 0, ""
    while True:
        _, body = stack.get(f"/images?limit=100{'&next_token=' + token if token else ''}")
        total += len(body["images"])
        if not body["next_token"]:
            return total
        token = body["next_token"]


def test_backfill_processes_everything_once(stack: Stack) -> None:
    fill(stack)

    summary = run(stack, Options(workers=4, progress=False))

    assert (summary.processed, summary.failed, summary.interrupted) == (COUNT, 0, False)
    assert listed(stack) == COUNT
    assert len(stack.keys("resized/thumb/")) == COUNT
    again = run(stack, Options(only_missing=True, progress=False))
    assert (again.skipped, again.processed) == (COUNT, 0)


def test_an_interrupted_backfill_resumes_with_only_missing(stack: Stack) -> None:
    fill(stack)
    stop = threading.Event()
    seen: list[str] = []
    settings = stack.settings

    def make() -> Pipeline:
        pipeline = build_pipeline(settings)
        observe = pipeline.observer

        def counting(event, outcome, watch):  # type: ignore[no-untyped-def]
            observe(event, outcome, watch)
            seen.append(event.key)
            if len(seen) >= 80:
                stop.set()  # what Ctrl-C does

        pipeline.observer = counting
        return pipeline

    first = backfill.run(settings, Options(workers=4, progress=False), make, stack.s3, None, stop)

    assert first.interrupted and 80 <= first.processed < COUNT
    assert "--only-missing" in first.line()
    rest = run(stack, Options(only_missing=True, workers=4, progress=False))
    assert rest.skipped == first.processed
    assert rest.processed == COUNT - first.processed
    assert listed(stack) == COUNT


def test_prefix_and_dry_run(stack: Stack) -> None:
    fill(stack)

    dry = run(stack, Options(prefix="old/1/", dry_run=True, progress=False))

    assert len(dry.actions) == 60 and all(a.startswith("would process old/1/") for a in dry.actions)
    assert listed(stack) == 0
    done = run(stack, Options(prefix="old/1/", progress=False))
    assert done.processed == 60 and listed(stack) == 60


def test_prune_removes_renditions_no_record_lists(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = make_stack(base_env, tmp_path / "old", monkeypatch)
    for i in range(5):
        old.upload(f"p/{i}.jpg", tiny_jpeg(i))
    old.s3.delete_object(Bucket="uploads", Key="p/4.jpg")  # its delete event never came
    # RENDITIONS changes: "medium" is gone, "small" is new.
    env = base_env | {"RENDITIONS": "thumb=256x256,small=100,large=1600x1600"}
    new = make_stack(env, tmp_path / "new", monkeypatch)
    prune = Options(prune=True, progress=False, prune_grace=timedelta(0))

    dry = run(new, replace(prune, dry_run=True))
    assert "would remove p/4.jpg (source gone)" in dry.actions
    assert {f"would delete resized/medium/p/{i}.jpg" for i in range(5)} <= set(dry.actions)
    assert new.keys("resized/medium/") != []  # a dry run changes nothing
    summary = run(new, prune)

    # Re-processing with the new settings drops "medium" of the 4 live sources;
    # prune removes p/4 (its source is gone) and its three renditions.
    assert summary.processed == 4 and summary.pruned == 3
    assert new.keys("resized/medium/") == []
    assert len(new.keys("resized/small/")) == 4
    assert "resized/thumb/p/4.jpg" not in new.keys("resized/thumb/")


def test_via_queue_sends_synthetic_notifications(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(
        base_env | {"EVENTS_QUEUE": "backfill-events", "DEST_BUCKET": "renditions"},
        tmp_path, monkeypatch,
    )  # fmt: skip
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName="backfill-events")["QueueUrl"]

    def drain() -> list[str]:
        bodies = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            bodies += [m["Body"] for m in batch]
            for message in batch:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return bodies

    for i in range(25):
        stack.s3.put_object(Bucket="uploads", Key=f"q/{i}.jpg", Body=tiny_jpeg(i))
    drain()  # what the bucket itself sent

    summary = run(stack, Options(via_queue=True, progress=False))

    assert summary.queued == 25
    bodies = drain()
    assert len(bodies) == 25
    record = json.loads(bodies[0])["Records"][0]
    assert "sequencer" not in record["s3"]["object"] and record["s3"]["object"]["eTag"]
    event = stack.client.events.generate_sqs_event(message_bodies=bodies, queue_name="q")
    outcomes = stack.invoke("handle_queued_events", event)
    assert outcomes == ["processed"] * 25


def test_only_missing_leaves_unchanged_failures_alone_unless_asked(stack: Stack) -> None:
    """A file that failed, unchanged and under unchanged settings, would fail
    again: --only-missing skips it; --retry-failed processes it once more."""
    assert stack.upload("old/broken.jpg", b"not an image at all") == ["failed"]
    assert stack.upload("old/fine.jpg", tiny_jpeg(1)) == ["processed"]
    [before] = stack.images("?status=failed")

    skipping = run(stack, Options(only_missing=True, progress=False))
    assert (skipping.skipped, skipping.processed, skipping.failed) == (2, 0, 0)

    retrying = run(stack, Options(only_missing=True, retry_failed=True, progress=False))
    assert (retrying.skipped, retrying.failed) == (1, 1)
    [after] = stack.images("?status=failed")
    assert after["error"] == before["error"] and after["updated_at"] >= before["updated_at"]
