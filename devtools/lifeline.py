"""Child processes that die with their parent, even a parent killed by SIGKILL.

A killed ``manage.py dev`` used to leave the emulator and ``chalice local``
running, holding the ports (and the next ``make dev`` refused to start). A
SIGKILL runs no handler and no ``finally``, so the children must notice by
themselves. Each child is started through this module as a small guard
process that owns it:

- **the lifeline**, a pipe the parent holds the only write end of: the
  kernel closes it when the parent dies, however it dies, and the guard,
  blocked reading it, sees end-of-file and kills its child. This works on
  every POSIX system;
- on Linux, also ``PR_SET_PDEATHSIG``: the kernel sends SIGKILL to the guard
  when its parent dies, and to the child when the guard dies, in case the
  guard itself is killed first.

The guard forwards SIGTERM (how the parent stops a child) and ignores
SIGINT: Ctrl-C in a terminal reaches the whole process group, the child
included, and the child decides what it does with it.

Run as ``python devtools/lifeline.py FD -- COMMAND...`` (by path, so from any
working directory: it needs nothing but the standard library).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: SIGKILL this process when the thread that started it exits."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Lifeline:
    """The parent's end: start children that cannot outlive this process.

    The write end stays here, never inherited (Python's pipes are not), so
    it closes exactly when this process ends. ``close()`` ends it earlier, as
    dying would: every child still running is killed.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()

    def command(self, argv: Sequence[str]) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), str(self._read), "--", *argv]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(argv), pass_fds=(self._read,), **kwargs)

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


def _watch(fd: int, child: subprocess.Popen[bytes]) -> None:
    """Block until the parent's end closes, then kill the child."""
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    if child.poll() is None:
        child.kill()


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python devtools/lifeline.py FD -- COMMAND...", file=sys.stderr)
        return 2
    die_with_parent()
    fd = int(argv[0])
    if os.getppid() == 1:  # the parent died before the line above took effect
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # An ignored signal stays ignored across exec: the child gets SIGINT's
    # default back in ``_child_setup``.
    child = subprocess.Popen(
        list(argv[2:]),
        preexec_fn=_child_setup,  # this process has one thread here: safe
    )

    def forward(signum: int, frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    threading.Thread(target=_watch, args=(fd, child), daemon=True).start()
    code = child.wait()
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says


def _child_setup() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    die_with_parent()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
