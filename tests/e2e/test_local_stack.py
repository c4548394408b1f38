"""The whole stack as a user meets it: ``manage.py dev`` in a subprocess, an
upload through boto3, the API polled, then the gallery in headless Chromium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/browser`` installs
them; CI runs it). Without them the test is skipped, except under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from bench.inputs import jpeg_bytes
from devtools.emulator import free_port

PROJECT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT / "tests" / "e2e" / "artifacts"
TIMEOUT = 60


@dataclass
class LocalStack:
    api: str
    endpoint: str
    process: subprocess.Popen[bytes]

    @classmethod
    def launch(
        cls, log: Any, settings: Mapping[str, str] | None = None, project: Path = PROJECT
    ) -> LocalStack:
        """``manage.py dev`` of ``project`` on free ports, in its own process
        group, without any AWS settings of the caller's environment.
        ``settings`` (e.g. ``FORMATS``) reach the app through that environment:
        ``manage.py dev`` lays the stage's ``config.json`` variables over it, so
        only those the stage leaves unset take effect."""
        aws_port, api_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        # Where the stack says it runs: the test's own, not a developer's.
        env["LOCAL_STACKS_DIR"] = str(Path(log.name).parent / "local-stacks")
        process = subprocess.Popen(
            [sys.executable, "manage.py", "dev", "--aws-port", str(aws_port),
             "--api-port", str(api_port)],
            cwd=project, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**env, **(settings or {})},
        )  # fmt: skip
        return cls(f"http://127.0.0.1:{api_port}/", f"http://127.0.0.1:{aws_port}", process)

    def wait_started(self, log: Path) -> None:
        """Until ``log`` (its output) says it serves; raises with that output if
        it ends or takes over ``TIMEOUT`` seconds first."""
        deadline = time.monotonic() + TIMEOUT
        while b"Ctrl-C stops everything" not in log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(log.read_text(errors="replace"))
            time.sleep(0.2)

    def stop(self) -> None:
        """Stopped as Ctrl-C in a terminal would (SIGINT to its process group),
        killed if it has not ended 30 s later."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    @property
    def ports(self) -> tuple[int, int]:
        return int(self.endpoint.rsplit(":", 1)[1]), int(self.api.rstrip("/").rsplit(":", 1)[1])

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.api + path, timeout=10) as response:
            return json.loads(response.read())

    def s3(self) -> Any:
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="local", aws_secret_access_key="local",
        )  # fmt: skip

    def wait_listed(self, key: str, poll: float = 0.2) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            images = self.get(f"images?key={quote(key)}")["images"]
            if images:
                return dict(images[0])
            time.sleep(poll)
        raise AssertionError(f"{key} was not listed within {TIMEOUT}s")


def browser_or_skip() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    message = "needs Debian's chromium and chromium-driver: run .ci/browser (apt-get install)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def launch_chromium(
    profile: Path, window: tuple[int, int] = (1280, 900), logs: Sequence[str] = ("browser",)
) -> Any:
    """Headless Chromium through Debian's chromedriver, with its profile (and
    cache) in ``profile``; the ``logs`` named (``browser``: the console,
    ``performance``: DevTools events) kept for ``get_log``."""
    binary, driver = browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size={},{}".format(*window), f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", dict.fromkeys(logs, "ALL"))
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def chromium(tmp_path: Path) -> Any:
    """Headless Chromium, its console kept for ``get_log``."""
    return launch_chromium(tmp_path / "chromium")


def console_errors(browser: Any) -> list[dict[str, Any]]:
    """What the page logged as errors (CSP violations among them) since the last call."""
    return [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


@contextmanager
def running_stack(
    tmp_path: Path, settings: Mapping[str, str] | None = None
) -> Iterator[LocalStack]:
    """``manage.py dev`` up until the block ends, then stopped as Ctrl-C would; when the
    block succeeded, checked to have stopped cleanly (stopped however it ended)."""
    log = (tmp_path / "dev.log").open("wb")
    stack = LocalStack.launch(log, settings)
    process = stack.process
    aws_port, api_port = stack.ports
    try:
        stack.wait_started(tmp_path / "dev.log")
        yield stack  # an exception in the block is raised here: the finally still stops it
    finally:
        stack.stop()
        log.close()
    output = (tmp_path / "dev.log").read_text(errors="replace")
    assert process.returncode == 0, output
    assert "stopped" in output
    leftovers = subprocess.run(
        ["pgrep", "-g", str(process.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == [], f"processes left behind: {leftovers}"
    for port in (aws_port, api_port):
        with pytest.raises(urllib.error.URLError, match="refused"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(tmp_path) as stack:
        yield stack


def test_upload_then_see_it_in_the_gallery(local_stack: LocalStack, tmp_path: Path) -> None:
    browser_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    s3 = local_stack.s3()
    s3.put_object(Bucket="local-uploads", Key="holiday/beach.jpg", Body=jpeg_bytes(1600, 1200))
    s3.put_object(Bucket="local-uploads", Key="holiday/notes.jpg", Body=b"not a photo")
    image = local_stack.wait_listed("holiday/beach.jpg")
    assert set(image["renditions"]) == {"thumb", "medium", "large"}

    browser = chromium(tmp_path)
    wait = WebDriverWait(browser, TIMEOUT)
    try:
        browser.get(local_stack.api)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#grid img.thumb"))
        wait.until(
            lambda b: b.execute_script(
                "const i = [...document.querySelectorAll('#grid img.thumb')];"
                "return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 0);"
            )
        )
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "gallery.png"))

        browser.find_element(By.CSS_SELECTOR, "a.card").click()
        detail = wait.until(expected_conditions.visibility_of_element_located((By.ID, "detail")))
        wait.until(
            lambda b: b.execute_script(
                "const p = document.getElementById('detail-preview');"
                "return p && p.complete && p.naturalWidth > 0;"
            )
        )
        rows = detail.find_elements(By.CSS_SELECTOR, ".rendition-row")
        assert len(rows) == 3
        assert "beach.jpg" in detail.text
        browser.save_screenshot(str(ARTIFACTS / "detail.png"))
        browser.find_element(By.ID, "detail-close").click()
        wait.until(expected_conditions.invisibility_of_element_located((By.ID, "detail")))

        photo = tmp_path / "upload.jpg"
        photo.write_bytes(jpeg_bytes(800, 600, seed=3))
        browser.find_element(By.ID, "upload-file").send_keys(str(photo))
        folder = browser.find_element(By.ID, "upload-folder")
        folder.clear()
        folder.send_keys("from-browser/")
        browser.find_element(By.ID, "upload-submit").click()
        status = browser.find_element(By.ID, "upload-status")
        wait.until(lambda b: "Processed" in status.text or "Failed" in status.text)
        # Each grant gets its own key: the file's stem, a random ID, its extension.
        processed = re.search(
            r"Processed (uploads/from-browser/upload-[A-Za-z0-9_-]{11}\.jpg)", status.text
        )
        assert processed, status.text
        uploaded = local_stack.wait_listed(processed[1])
        assert (uploaded["width"], uploaded["height"]) == (800, 600)
        assert browser.find_elements(By.CSS_SELECTOR, f'#grid .name[title="{processed[1]}"]')
        browser.save_screenshot(str(ARTIFACTS / "after-upload.png"))
        assert console_errors(browser) == []
    finally:
        browser.quit()

    failed = local_stack.get("images?status=failed")["images"]
    assert [f["key"] for f in failed] == ["holiday/notes.jpg"]


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "manage.py", "dev", "--api-port", str(port),
             "--aws-port", str(free_port())],
            cwd=PROJECT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode != 0
    assert f"127.0.0.1:{port} is in use" in done.stderr
    assert "--api-port" in done.stderr
    assert "Traceback" not in done.stderr
