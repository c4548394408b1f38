"""What ``manage.py dev`` prints per event: one short human line, or with
``--json`` the JSON/EMF line Lambda logs."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from chalicelib.models import EventKind, ObjectEvent
from chalicelib.observability import Stopwatch, human_line, outcome_line
from devtools.dev import install_terminal_log, local_database_name


def event(key: str) -> ObjectEvent:
    return ObjectEvent(
        bucket="uploads", key=key, kind=EventKind.CREATED, event_name="ObjectCreated:Put"
    )


def line(key: str, outcome: str, **watch_fields: object) -> dict[str, object]:
    watch = Stopwatch()
    watch.ms = {"total": 112.4}
    for name, value in watch_fields.items():
        setattr(watch, name, value)
    return outcome_line(event(key), outcome, watch)


def test_a_processed_upload_names_its_size_and_renditions() -> None:
    text = human_line(
        line("photos/cat.jpg", "processed", size=(4000, 3000), renditions=("thumb", "large"))
    )
    assert text == "processed photos/cat.jpg 4000x3000 -> thumb, large (112 ms)"


def test_a_failure_gives_its_reason() -> None:
    text = human_line(line("photos/bad.jpg", "failed", detail="not an image: truncated"))
    assert text == "failed photos/bad.jpg: not an image: truncated (112 ms)"


def test_a_deletion() -> None:
    assert human_line(line("photos/cat.jpg", "deleted")) == "deleted photos/cat.jpg (112 ms)"


def test_control_characters_in_a_key_cannot_drive_the_terminal() -> None:
    text = human_line(line("photos/\x1b[2Jevil\n.jpg", "ignored", detail="bad\rreason"))
    assert "\x1b" not in text and "\n" not in text and "\r" not in text
    assert text.startswith("ignored photos/\\x1b[2Jevil\\x0a.jpg: bad\\x0dreason")


def test_unicode_keys_stay_readable() -> None:
    assert human_line(line("写真/猫.jpg", "deleted")).startswith("deleted 写真/猫.jpg ")


def test_long_keys_and_reasons_are_clipped() -> None:
    text = human_line(line("k" * 1024, "failed", detail="r" * 1000))
    assert len(text) < 400
    assert "…" in text


def test_the_json_line_rides_along_for_the_terminal() -> None:
    """The pipeline logs the JSON (what Lambda keeps) with the line attached;
    the terminal's handler prints the human line, or the JSON with --json."""
    record = line("photos/cat.jpg", "deleted")
    logger = logging.getLogger("image_pipeline")
    for as_json in (False, True):
        out = io.StringIO()
        handler = install_terminal_log(as_json, out)
        try:
            logger.info(json.dumps(record), extra={"outcome": record})
            logger.warning("something else")
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
        first, second = out.getvalue().splitlines()
        if as_json:
            assert json.loads(first) == record
        else:
            assert first.endswith(" deleted photos/cat.jpg (112 ms)")
            assert first[:8].count(":") == 2  # HH:MM:SS first
        assert second.endswith("WARNING something else")


def test_each_checkout_has_its_own_database(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    assert local_database_name(one) == local_database_name(one)
    assert local_database_name(one) != local_database_name(two)
    assert local_database_name(one).startswith("image_pipeline_local_")
    assert len(local_database_name(one)) <= 64  # MySQL's limit on a name


@pytest.mark.parametrize("outcome", ["stale", "duplicate", "superseded", "folder_created"])
def test_every_outcome_gets_a_line(outcome: str) -> None:
    assert human_line(line("photos/", outcome)).startswith(f"{outcome} photos/ ")
