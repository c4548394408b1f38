"""An imaging worker with triggers, to test the bounds on files that misbehave
on purpose: a source whose bytes start with ``SLEEP`` never finishes, ``SEGV``
crashes the worker as a broken decoder would, ``HOG`` allocates until the
worker's memory limit stops it. Any other source is processed as usual.

Run by ``WorkerPool(..., module="tests.triggered_worker")``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from chalicelib.imaging import ImagingOptions, ProcessedImage
from chalicelib.sandbox import child


class Triggered:
    def process_image(self, data: bytes, options: ImagingOptions) -> ProcessedImage:
        from chalicelib.imaging import pipeline

        self._trigger(data)
        return pipeline.process_image(data, options)

    def read_metadata(self, data: bytes, max_pixels: int) -> tuple[str, int, int, dict[str, Any]]:
        from chalicelib.imaging import pipeline

        self._trigger(data)
        return pipeline.read_metadata(data, max_pixels)

    @staticmethod
    def _trigger(data: bytes) -> None:
        if data.startswith(b"SLEEP"):
            time.sleep(3600)
        if data.startswith(b"SEGV"):
            os.kill(os.getpid(), signal.SIGSEGV)
        if data.startswith(b"HOG"):
            hoard = []
            while True:
                hoard.append(bytearray(16 << 20))


if __name__ == "__main__":
    sys.exit(child.main(sys.argv[1:], Triggered()))
