"""moto's HTTP server as a child process: the AWS emulator of the tests,
the benchmarks and the local stack."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from devtools.lifeline import Lifeline


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server(
    host: str = "127.0.0.1", port: int | None = None, lifeline: Lifeline | None = None
) -> Iterator[str]:
    """Run ``moto.server`` until the block ends; yields its endpoint URL.
    With a ``lifeline``, the server also ends when this process dies."""
    port = port or free_port(host)
    argv = [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]
    quiet = subprocess.DEVNULL
    proc = (
        lifeline.popen(argv, stdout=quiet, stderr=quiet)
        if lifeline
        else subprocess.Popen(argv, stdout=quiet, stderr=quiet)
    )
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on {host}:{port}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def reset(url: str) -> None:
    """Forget every resource the emulator holds."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
