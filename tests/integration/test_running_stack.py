"""``manage.py backfill/pump --stage local`` find this checkout's running
stack from ``.local-stacks/``, and say what to do when there is none."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest

from devtools.running import NoLocalStack, RunningStack, announce, join, running, withdraw


class _Moto(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/moto-api/" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def emulator() -> Iterator[str]:
    """Something answering ``/moto-api/`` as the emulator does."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Moto)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def stack(pid: int, endpoint: str, stage: str = "local") -> RunningStack:
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "local"}
    return RunningStack(pid, stage, endpoint, "http://127.0.0.1:8000/", env)


def test_a_running_stack_is_joined(tmp_path: Path, emulator: str) -> None:
    announce(stack(os.getpid(), emulator), tmp_path)
    environ = {"AWS_PROFILE": "mine", "HOME": "/home/me"}
    found = join("local", environ, tmp_path)
    assert found is not None and found.endpoint == emulator
    assert environ == {
        "HOME": "/home/me",
        "AWS_ENDPOINT_URL": emulator,
        "AWS_ACCESS_KEY_ID": "local",
    }


def test_none_running_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(NoLocalStack, match="start it with `make dev`"):
        join("local", {}, tmp_path)


def test_a_killed_stacks_record_is_stale_and_removed(tmp_path: Path, emulator: str) -> None:
    path = announce(stack(dead_pid(), emulator), tmp_path)
    assert running(tmp_path) == []
    assert not path.exists()


def test_an_emulator_that_does_not_answer_is_stale(tmp_path: Path) -> None:
    announce(stack(os.getpid(), "http://127.0.0.1:9"), tmp_path)
    assert running(tmp_path) == []


def test_the_stage_must_match(tmp_path: Path, emulator: str) -> None:
    announce(stack(os.getpid(), emulator, "local-mysql"), tmp_path)
    with pytest.raises(NoLocalStack, match=r"running: local-mysql"):
        join("local", {}, tmp_path)


def test_two_stacks_of_a_stage_are_not_guessed_between(tmp_path: Path, emulator: str) -> None:
    announce(stack(os.getpid(), emulator), tmp_path)
    announce(stack(os.getppid(), emulator), tmp_path)
    with pytest.raises(NoLocalStack, match="set AWS_ENDPOINT_URL"):
        join("local", {}, tmp_path)


def test_an_explicit_endpoint_and_other_stages_are_left_alone(tmp_path: Path) -> None:
    environ = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    assert join("local", environ, tmp_path) is None
    assert join("prod", {}, tmp_path) is None


def test_withdraw_removes_only_its_own(tmp_path: Path, emulator: str) -> None:
    announce(stack(os.getpid(), emulator), tmp_path)
    withdraw(os.getpid() + 1, tmp_path)
    assert [s.pid for s in running(tmp_path)] == [os.getpid()]
    withdraw(os.getpid(), tmp_path)
    assert running(tmp_path) == []
