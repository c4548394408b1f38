"""Metadata through the child function: the real ``extract_metadata`` handler,
invoked through Chalice's test client, and the pipeline that calls it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from chalicelib.events import parse_record
from chalicelib.factory import build_pipeline
from chalicelib.pipeline import Pipeline
from tests.integration.conftest import Stack, make_stack

FUNCTION = "image-pipeline-test-extract_metadata"


def camera_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Child Cam"  # Make
    exif[0x0112] = 6  # Orientation
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (10, 120, 200)).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


@pytest.fixture
def child(
    aws: str, base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Stack, Pipeline, list[dict[str, Any]]]:
    stack = make_stack(base_env | {"METADATA_FUNCTION": FUNCTION}, tmp_path, monkeypatch)
    calls: list[dict[str, Any]] = []

    def invoke(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(payload)
        return dict(stack.invoke("extract_metadata", payload))

    pipeline = build_pipeline(stack.settings, invoke_metadata=invoke)
    return stack, pipeline, calls


def handle(stack: Stack, pipeline: Pipeline, record: dict[str, Any]) -> str:
    event = parse_record(record)
    assert event is not None
    return pipeline.handle(event).value


def test_the_child_function_answers_a_flat_metadata_dict(stack: Stack) -> None:
    etag = stack.put("cam.jpg", camera_jpeg())

    answer = stack.invoke("extract_metadata", {"bucket": "uploads", "key": "cam.jpg", "etag": etag})

    assert answer["format"] == "JPEG"
    assert (answer["width"], answer["height"]) == (200, 300)  # displayed, after orientation
    assert (answer["camera_make"], answer["orientation"]) == ("Child Cam", 6)
    assert answer["has_icc"] is False


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"bucket": "uploads", "key": "missing.jpg"}, "gone"),
        ({"bucket": "uploads", "key": "cam.jpg", "etag": "0" * 32}, "gone"),
        ({"bucket": "uploads", "key": "text.jpg"}, "permanent"),
        ({"key": "cam.jpg"}, "permanent"),
    ],
)
def test_the_child_function_reports_what_cannot_be_read(
    stack: Stack, request_body: dict[str, Any], field: str
) -> None:
    stack.put("cam.jpg", camera_jpeg())
    stack.put("text.jpg", b"plain text")

    answer = stack.invoke("extract_metadata", request_body)

    assert answer[field] is True and answer["error"]


def test_pipeline_takes_metadata_from_the_child(
    child: tuple[Stack, Pipeline, list[dict[str, Any]]],
) -> None:
    stack, pipeline, calls = child
    etag = stack.put("dir/cam.jpg", camera_jpeg())

    assert handle(stack, pipeline, stack.record("dir/cam.jpg")) == "processed"

    assert calls == [{"bucket": "uploads", "key": "dir/cam.jpg", "etag": etag}]
    [image] = stack.images()
    assert (image["width"], image["height"]) == (200, 300)
    assert image["metadata"]["camera_make"] == "Child Cam"
    assert (image["renditions"]["thumb"]["width"], image["renditions"]["thumb"]["height"]) == (
        171,
        256,
    )


def test_a_permanent_child_error_is_a_failed_record(
    child: tuple[Stack, Pipeline, list[dict[str, Any]]],
) -> None:
    stack, pipeline, _ = child
    stack.put("bad.jpg", b"GIF89a but not really")

    assert handle(stack, pipeline, stack.record("bad.jpg")) == "failed"
    [image] = stack.images("?status=failed")
    assert "truncated or corrupt" in image["error"] or "not an image" in image["error"]


def test_a_transient_child_error_raises(
    child: tuple[Stack, Pipeline, list[dict[str, Any]]],
) -> None:
    stack, pipeline, _ = child
    stack.put("cam.jpg", camera_jpeg())
    record = stack.record("cam.jpg")
    failing = build_pipeline(
        stack.settings,
        invoke_metadata=lambda payload: stack.invoke(
            "extract_metadata", payload | {"bucket": "no-such-bucket"}
        ),
    )

    with pytest.raises(ClientError, match="NoSuchBucket"):
        handle(stack, failing, record)
    assert stack.images() == [] and stack.keys("resized/") == []
    assert handle(stack, pipeline, record) == "processed"


def test_without_the_setting_metadata_is_extracted_in_process(stack: Stack) -> None:
    stack.upload("local.jpg", camera_jpeg())

    [image] = stack.images()
    assert image["metadata"]["camera_make"] == "Child Cam"
    assert stack.app._pipeline().remote_metadata is None
