"""The imaging worker processes: results equal in-process imaging, and a file
that hangs, crashes or hoards memory ends as a reason, never as a stuck,
killed or poisoned handler. Real processes, real pipes, real limits; the
misbehaving files trigger ``tests/triggered_worker.py``."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from chalicelib.imaging import ImageRejected, ImagingOptions, parse_renditions, process_image
from chalicelib.sandbox import Budget, IsolatedImaging, WorkerPool, time_budget
from chalicelib.sandbox.pool import worker_environment
from tests.support import jpeg, size_of

TRIGGERED = "tests.triggered_worker"
OPTIONS = ImagingOptions(parse_renditions("thumb=64x64#,small=200"))
BUDGET = Budget(20, "PROCESSING_TIMEOUT=20")


@pytest.fixture
def triggered() -> Iterator[IsolatedImaging]:
    imaging = IsolatedImaging(WorkerPool(1, 256 << 20, module=TRIGGERED).start())
    yield imaging
    imaging.close()


def test_results_equal_in_process_imaging() -> None:
    imaging = IsolatedImaging(WorkerPool(1, 512 << 20).start())
    try:
        for data in (jpeg(900, 600, orientation=6), png_bytes(300, 200, "RGBA")):
            isolated = imaging.process(data, OPTIONS, BUDGET)
            assert isolated == process_image(data, OPTIONS)
        assert imaging.metadata(jpeg(90, 60), 10**6, BUDGET) == ("JPEG", 90, 60, isolated_meta())
    finally:
        imaging.close()


def isolated_meta() -> dict[str, object]:
    from chalicelib.imaging import read_metadata

    return read_metadata(jpeg(90, 60), 10**6)[3]


def test_a_file_that_never_finishes_is_stopped_at_its_budget(triggered: IsolatedImaging) -> None:
    started = time.monotonic()
    with pytest.raises(ImageRejected) as rejected:
        triggered.process(b"SLEEP forever", OPTIONS, Budget(1, "PROCESSING_TIMEOUT=1"))
    elapsed = time.monotonic() - started

    assert str(rejected.value).startswith(
        "processing took longer than 1 s (PROCESSING_TIMEOUT=1) and was stopped"
    )
    assert 1 <= elapsed < 3
    # The worker was replaced: the next file is processed as usual.
    assert size_of(triggered.process(jpeg(300, 200), OPTIONS, BUDGET).renditions[1].data) == (
        200,
        133,
    )


def test_a_crashing_decoder_becomes_a_reason(triggered: IsolatedImaging) -> None:
    with pytest.raises(ImageRejected, match=r"the decoder crashed on this file \(SIGSEGV\)"):
        triggered.process(b"SEGV", OPTIONS, BUDGET)
    assert triggered.process(jpeg(100, 100), OPTIONS, BUDGET).width == 100


def test_a_file_that_hoards_memory_is_stopped_by_the_worker_limit(
    triggered: IsolatedImaging,
) -> None:
    with pytest.raises(ImageRejected, match="needs more than 256 MB, the memory one image"):
        triggered.process(b"HOG", OPTIONS, BUDGET)
    assert triggered.process(jpeg(100, 100), OPTIONS, BUDGET).width == 100


def test_a_real_decode_over_the_memory_limit_is_refused() -> None:
    """A 36 MP RGBA PNG decodes into 144 MB: over a 96 MB worker's limit."""
    imaging = IsolatedImaging(WorkerPool(1, 96 << 20).start())
    try:
        with pytest.raises(ImageRejected, match="needs more than 96 MB"):
            imaging.process(png_bytes(6000, 6000, "RGBA"), OPTIONS, BUDGET)
    finally:
        imaging.close()


def test_a_worker_that_died_idle_is_replaced_without_blaming_a_file(
    triggered: IsolatedImaging,
) -> None:
    assert triggered.process(jpeg(50, 50), OPTIONS, BUDGET).width == 50
    [pid] = worker_pids(triggered.pool)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)

    assert triggered.process(jpeg(60, 60), OPTIONS, BUDGET).width == 60
    assert worker_pids(triggered.pool) != [pid]


def test_concurrent_callers_each_get_their_own_result() -> None:
    imaging = IsolatedImaging(WorkerPool(2, 256 << 20).start())
    sizes = [(120 + 7 * n, 90 + 5 * n) for n in range(12)]
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda s: imaging.process(jpeg(*s), OPTIONS, BUDGET), sizes))
    finally:
        imaging.close()
    assert [(r.width, r.height) for r in results] == sizes
    assert [r.renditions[0].width for r in results] == [64] * len(sizes)


def test_workers_started_ahead_are_the_ones_asked_for_and_serve_the_first_files() -> None:
    imaging = IsolatedImaging(WorkerPool(3, 256 << 20))
    try:
        assert imaging.pool.started == 0  # none until asked
        imaging.start(1)
        first = worker_pids(imaging.pool)
        imaging.start(1)  # counted with those started already
        assert len(first) == imaging.pool.started == 1
        imaging.start(5)  # never more than the pool's size
        assert imaging.pool.started == 3

        assert imaging.process(jpeg(80, 60), OPTIONS, BUDGET).width == 80
        assert set(first) <= set(worker_pids(imaging.pool))  # no worker started for the file
        assert imaging.pool.started == 3
    finally:
        imaging.close()
    imaging.start(1)  # a closed pool starts nothing, and says so only when asked for work
    assert imaging.pool.started == 0


def test_workers_hold_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("DB_PASSWORD", "do-not-leak")
    env = worker_environment()
    assert "AWS_SECRET_ACCESS_KEY" not in env and "DB_PASSWORD" not in env
    pool = WorkerPool(1, 256 << 20).start()
    try:
        [pid] = worker_pids(pool)
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        pool.close()
    assert b"do-not-leak" not in environ and b"AWS_" not in environ


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_end_with_their_parent(tmp_path: Path) -> None:
    """A parent killed with SIGKILL leaves no worker behind."""
    script = textwrap.dedent(
        """
        import sys, time
        from chalicelib.sandbox import IsolatedImaging, WorkerPool, Budget
        pool = WorkerPool(2, 256 << 20).start()
        IsolatedImaging(pool).metadata(sys.stdin.buffer.read(), 10**6, Budget(20, "x"))
        print(" ".join(str(w.pid) for w in pool._idle), flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert parent.stdin is not None and parent.stdout is not None
    parent.stdin.write(jpeg(20, 20))
    parent.stdin.close()
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(alive(p) for p in pids)

    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


def test_the_budget_never_passes_the_invocation() -> None:
    assert time_budget(20, None) == Budget(20.0, "PROCESSING_TIMEOUT=20")
    assert time_budget(20, time.monotonic() + 300).seconds == 20
    short = time_budget(20, time.monotonic() + 12)
    assert 6.5 < short.seconds <= 7  # 12 s left, less 5 s for the record
    assert "lambda_timeout" in short.advice
    assert time_budget(20, time.monotonic() + 2).seconds == 1  # never nothing at all


# -- helpers ----------------------------------------------------------------------
def png_bytes(width: int, height: int, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (10, 20, 30, 40)[: len(mode)]).save(
        buffer, "PNG", compress_level=1
    )
    return buffer.getvalue()


def worker_pids(pool: WorkerPool) -> list[int]:
    return [worker.pid for worker in pool._idle]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
