"""The imaging worker process: reads requests on stdin, answers on stdout.

Started by ``pool.Worker`` with ``python -m chalicelib.sandbox.child
--memory-bytes N``. It limits its own data segment (``RLIMIT_DATA``, which
tracks what a process really allocates, unlike ``RLIMIT_AS``, which counts
the address space threads reserve), asks the kernel to end it with its parent
(Linux), loads the imaging code once, and then serves one request at a time
until its stdin closes. It holds no AWS credentials (its parent passes it a
minimal environment), so a decoder exploited by a crafted file runs where
there is nothing to steal but the file itself.

Answers: ``{"ok": true, ...}`` with the result, ``{"rejected": reason}`` for
a file no retry can fix, ``{"memory": true}`` when the file needed more than
the limit (the worker then exits: its heap may be fragmented past use), and
``{"error": text}`` for anything else (a bug, reported for a retry).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import signal
import sys
import traceback
from typing import Any, BinaryIO

from chalicelib.sandbox import protocol

_PR_SET_PDEATHSIG = 1
_MAX_TRACE = 4000


def main(argv: list[str] | None = None, imaging: Any = None) -> int:
    """Serve requests; ``imaging`` (default: ``chalicelib.imaging.pipeline``) has
    ``process_image`` and ``read_metadata``."""
    parser = argparse.ArgumentParser(prog="chalicelib.sandbox.child")
    parser.add_argument("--memory-bytes", type=int, required=True)
    args = parser.parse_args(argv)
    out = os.fdopen(os.dup(1), "wb")  # the protocol's channel
    os.dup2(2, 1)  # anything a library prints goes to stderr (the logs), not into it
    _die_with_parent()
    resource.setrlimit(resource.RLIMIT_DATA, (args.memory_bytes, args.memory_bytes))
    from chalicelib.imaging import pipeline  # Pillow and its plugins, once
    from chalicelib.imaging.model import default_engine

    if imaging is None:  # the engine this function's pipeline asks for, loaded now
        pipeline.warm_up(os.environ.get("IMAGE_ENGINE") or default_engine())
    protocol.write_message(out, {"ready": True, "pid": os.getpid()})
    return serve(sys.stdin.buffer, out, pipeline if imaging is None else imaging)


def serve(requests: BinaryIO, out: BinaryIO, imaging: Any) -> int:
    while True:
        message = protocol.read_message(requests)
        if message is None:
            return 0
        header, payload = message
        answer, body, done = _answer(header, payload, imaging)
        protocol.write_message(out, answer, body)
        if done:
            return 0


def _answer(
    header: dict[str, Any], payload: bytes, imaging: Any
) -> tuple[dict[str, Any], bytes, bool]:
    from chalicelib.imaging.errors import ImageRejected

    try:
        if header.get("op") == "process":
            options = protocol.options_from_json(header["options"])
            result, body = protocol.result_to_message(imaging.process_image(payload, options))
            return {"ok": True, "result": result}, body, False
        if header.get("op") == "metadata":
            fmt, width, height, metadata = imaging.read_metadata(payload, int(header["max_pixels"]))
            found = {"format": fmt, "width": width, "height": height, "metadata": metadata}
            return {"ok": True, "result": found}, b"", False
        return {"error": f"unknown request {header.get('op')!r}"}, b"", False
    except ImageRejected as exc:
        return {"rejected": str(exc)}, b"", False
    except MemoryError:
        return {"memory": True}, b"", True
    except Exception:
        return {"error": traceback.format_exc()[-_MAX_TRACE:]}, b"", False


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the thread that started it ends.

    Elsewhere the worker still ends when its parent does: its stdin closes.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
