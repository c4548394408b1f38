"""Children started through ``devtools.lifeline`` end with their parent, even
a parent killed by SIGKILL, which runs no handler and no ``finally``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from devtools.lifeline import Lifeline
from tests.support import process_gone

PROJECT = Path(__file__).resolve().parents[2]
# A parent that starts `sleep` through the lifeline, prints the guard's pid,
# then waits to be killed (or, told to, lets go of the lifeline and lives on).
PARENT = textwrap.dedent(
    """
    import sys, time
    from devtools.lifeline import Lifeline
    line = Lifeline()
    guard = line.popen(["sleep", "300"])
    print(guard.pid, flush=True)
    if sys.argv[1] == "close":
        time.sleep(1)
        line.close()
    time.sleep(300)
    """
)


def wait_gone(pids: list[int], seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if not process_gone(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


def children(pid: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if text:
            return [int(p) for p in text]
        time.sleep(0.05)
    raise AssertionError(f"{pid} started no child")


pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="reads the process tree from Linux's /proc"
)


def start_parent(mode: str) -> tuple[subprocess.Popen[str], int, int]:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, mode], cwd=PROJECT, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    guard = int(parent.stdout.readline())
    (sleeper,) = children(guard)
    return parent, guard, sleeper


def test_sigkill_of_the_parent_ends_the_children() -> None:
    parent, guard, sleeper = start_parent("wait")
    try:
        assert not process_gone(sleeper)
        os.kill(parent.pid, signal.SIGKILL)
        assert wait_gone([guard, sleeper]) == []
    finally:
        parent.kill()
        parent.wait()


def test_the_pipe_alone_ends_them_where_there_is_no_pdeathsig() -> None:
    """The parent lives on but lets go of the lifeline: only the pipe's
    end-of-file tells the guard (PR_SET_PDEATHSIG would not fire)."""
    parent, guard, sleeper = start_parent("close")
    try:
        assert wait_gone([sleeper]) == []
        assert wait_gone([guard]) == []
        assert parent.poll() is None
    finally:
        parent.kill()
        parent.wait()


def test_sigterm_reaches_the_child_and_the_exit_status_comes_back() -> None:
    line = Lifeline()
    try:
        guard = line.popen([sys.executable, "-c", "import time; time.sleep(300)"])
        (child,) = children(guard.pid)
        guard.terminate()
        assert guard.wait(timeout=10) == 128 + signal.SIGTERM
        assert wait_gone([child]) == []
        ok = line.popen([sys.executable, "-c", "raise SystemExit(3)"])
        assert ok.wait(timeout=10) == 3
    finally:
        line.close()
