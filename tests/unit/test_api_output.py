"""What ``manage.py dev`` shows of ``chalice local``'s output."""

from __future__ import annotations

import io
import threading

from devtools.dev import PROBE, ApiOutput

PROBE_LINE = f'127.0.0.1 - - [x] "GET {PROBE} HTTP/1.1" 200 -\n'.encode()


def test_the_start_is_held_the_probe_dropped_then_every_line_shown() -> None:
    sink = io.BytesIO()
    out = ApiOutput(None, sink)
    out.line(b"Serving on http://127.0.0.1:8000\n")
    out.started(PROBE)
    out.line(PROBE_LINE)  # the probe's access line, written after its answer
    out.line(b'"GET /images HTTP/1.1" 200 -\n')
    out.line(PROBE_LINE)  # a second probe-like request is a user's: shown
    assert sink.getvalue() == b'"GET /images HTTP/1.1" 200 -\n' + PROBE_LINE


def test_what_was_held_is_shown_when_the_api_never_answers() -> None:
    sink = io.BytesIO()
    out = ApiOutput(None, sink)
    out.line(b"Traceback: the app did not import\n")
    out.release()
    assert sink.getvalue() == b"Traceback: the app did not import\n"


def test_nothing_is_shown_once_the_stack_is_stopping() -> None:
    sink, stop = io.BytesIO(), threading.Event()
    out = ApiOutput(None, sink, stop)
    out.started(PROBE)
    stop.set()  # Ctrl-C: before the main loop notices
    out.line(b"Aborted!\n")
    assert sink.getvalue() == b""


def test_a_long_start_holds_a_bounded_number_of_lines() -> None:
    sink = io.BytesIO()
    out = ApiOutput(None, sink)
    for i in range(10_000):
        out.line(b"line %d\n" % i)
    out.release()
    assert sink.getvalue().count(b"\n") == 200
