"""``manage.py dev`` as a newcomer meets it, without a browser: a line per
event on the terminal, ``backfill`` and ``pump`` that find the running stack
by themselves, an icon for the browser, and nothing left running after a
SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.inputs import jpeg_bytes
from devtools.dev import PortInUse, check_port
from devtools.emulator import moto_server
from devtools.running import running
from tests.e2e.test_local_stack import PROJECT, TIMEOUT, LocalStack, running_stack
from tests.support import process_gone

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="reads the process tree from Linux's /proc"
)


def wait_for(path: Path, pattern: str, seconds: float = TIMEOUT) -> re.Match[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text(errors="replace"), re.MULTILINE)
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} in:\n{path.read_text(errors='replace')}")


def client_env() -> dict[str, str]:
    """The environment of a user's shell: no AWS settings at all."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def test_each_event_is_a_line_and_backfill_finds_the_stack(tmp_path: Path) -> None:
    log = tmp_path / "dev.log"
    with running_stack(tmp_path) as stack:
        s3 = stack.s3()
        s3.put_object(Bucket="local-uploads", Key="photos/cat.jpg", Body=jpeg_bytes(1200, 900))
        wait_for(log, r"^\d\d:\d\d:\d\d processed photos/cat\.jpg 1200x900 -> "
                 r"thumb, medium, large \(\d+ ms\)$")  # fmt: skip
        s3.put_object(Bucket="local-uploads", Key="photos/bad.jpg", Body=b"not a photo")
        wait_for(log, r"^\d\d:\d\d:\d\d failed photos/bad\.jpg: .+ \(\d+ ms\)$")
        s3.delete_object(Bucket="local-uploads", Key="photos/cat.jpg")
        wait_for(log, r"^\d\d:\d\d:\d\d deleted photos/cat\.jpg \(\d+ ms\)$")
        assert '"outcome"' not in log.read_text()  # no JSON without --json

        backfill = subprocess.run(
            [sys.executable, "manage.py", "backfill", "--stage", "local", "--dry-run"],
            cwd=PROJECT, env={**client_env(), "LOCAL_STACKS_DIR": str(tmp_path / "local-stacks")},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert backfill.returncode == 0, backfill.stderr
        assert f"using the local stack at {stack.endpoint}" in backfill.stderr
        assert "photos/bad.jpg" in backfill.stdout

        with urllib.request.urlopen(stack.api + "favicon.ico", timeout=10) as icon:
            assert icon.status == 200
            assert icon.headers["Content-Type"] == "image/svg+xml"
            assert icon.read().startswith(b"<svg")


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            try:
                kids = [int(p) for p in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue
            found += kids
            todo += kids
    return found


def port_frees(port: int, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            check_port("127.0.0.1", port, "--port")
            return True
        except PortInUse:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def listeners(port: int) -> str:
    """Who holds ``port``, for the failure message."""
    done = subprocess.run(["ss", "-tanp", f"( sport = :{port} )"], capture_output=True, text=True)
    return done.stdout + done.stderr


def test_nothing_survives_a_sigkill(tmp_path: Path) -> None:
    log = (tmp_path / "dev.log").open("wb")
    stack = LocalStack.launch(log)
    try:
        wait_for(tmp_path / "dev.log", "Ctrl-C stops everything")
        tree = descendants(stack.process.pid)
        # the emulator and chalice local, each under its guard, and the imaging workers
        assert len(tree) >= 4, tree
        stack.process.send_signal(signal.SIGKILL)  # the process alone, not its group
        stack.process.wait()
        deadline = time.monotonic() + 15
        while any(not process_gone(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in tree if not process_gone(p)] == []
        for port in stack.ports:  # free again: make dev may start
            assert port_frees(port), listeners(port)
        folder = tmp_path / "local-stacks"
        state = folder / f"{stack.process.pid}.json"
        assert state.exists()  # a killed stack cannot remove its record,
        assert running(folder) == []  # but it is seen to be stale,
        assert not state.exists()  # and removed
    finally:
        if stack.process.poll() is None:
            os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait()
        log.close()


def test_a_pump_attaches_to_a_running_emulator(tmp_path: Path) -> None:
    """The queue's events wait for a pump; ``manage.py pump`` is one."""
    with moto_server() as endpoint:
        env = {**client_env(), "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "local",
               "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        subprocess.run(
            [sys.executable, "manage.py", "provision", "--stage", "local"],
            cwd=PROJECT, env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")  # fmt: skip
        s3.put_object(Bucket="local-uploads", Key="queued/dog.jpg", Body=jpeg_bytes(900, 600))
        out = tmp_path / "pump.log"
        with out.open("wb") as sink:
            pump = subprocess.Popen(
                [sys.executable, "manage.py", "pump", "--stage", "local", "--json"],
                cwd=PROJECT, env=env, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                wait_for(out, r'^\{.*"key": "queued/dog\.jpg".*"outcome": "processed"')
                pump.send_signal(signal.SIGINT)
                assert pump.wait(timeout=30) == 0
            finally:
                if pump.poll() is None:
                    pump.kill()
                    pump.wait()
        assert "stopped" in out.read_text()
        listed = s3.list_objects_v2(Bucket="local-renditions", Prefix="resized/")
        assert sorted(o["Key"] for o in listed.get("Contents", [])) == [
            f"resized/{name}/queued/dog.jpg" for name in ("large", "medium", "thumb")
        ]


def test_the_pump_refuses_a_stage_on_aws() -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "pump", "--stage", "dev"],
        cwd=PROJECT, env=client_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Lambda polls the queue" in done.stderr
