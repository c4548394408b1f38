"""Persistent imaging worker processes: each source is decoded in one, bounded
in time (the parent stops waiting and kills it) and in memory (the worker's
own ``RLIMIT_DATA``); a worker that overruns or dies is replaced.

Why processes, and why these: a decoder cannot be interrupted from Python,
and no per-decoder cap covers every format, so the bound that holds for
every file is a process that can be killed. They are started with
``subprocess`` (fork and exec at once: nothing of the parent's threads or
libraries' state is inherited, unlike ``os.fork()``, which can deadlock a
child of a process where libvips has run) and fed over pipes (Lambda has no
``/dev/shm``, so ``multiprocessing`` queues and process pools fail there),
and they stay up between sources, since a process per image would cost
9-30 ms.

Concurrency: a pool of N workers serves N threads at once, each source on a
worker of its own (a worker is leased to one thread for one request). Every
worker is started from the pool's own long-lived thread, whichever thread
needs it: Linux ends a worker when the *thread* that started it ends
(``PR_SET_PDEATHSIG``), so a worker started from a short-lived thread (an SQS
batch's threads, a request thread) would be killed with that thread, perhaps
in the middle of another thread's file. Workers run in their own process
group, so a terminal's Ctrl-C reaches the handler process, which stops in
order, and not the workers in the middle of their files; they still end with
their parent.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any

from chalicelib.sandbox import protocol

# How long a new worker may take to load Pillow before it counts as broken
# (not charged to any file).
STARTUP_SECONDS = 30.0
# The environment a worker keeps: enough to find Python and its libraries,
# never credentials (AWS_*, database passwords) nor Lambda's runtime API.
# IMAGE_ENGINE: the engine a new worker warms up (``pipeline.warm_up``).
_KEPT_ENVIRONMENT = (
    "PATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "IMAGE_ENGINE",
)  # fmt: skip
_READ_CHUNK = 1 << 20


class WorkerLost(Exception):
    """The worker could not be used (it would not start, or broke the protocol):
    not the file's fault, so the event is retried."""


@dataclass(frozen=True)
class Overran:
    """The file took more than the time it was given: the worker was killed."""

    seconds: float


@dataclass(frozen=True)
class Died:
    """The worker ended while working on the file: killed by ``signal``, or it
    exited after running out of its memory (``memory``)."""

    signal: int | None = None
    memory: bool = False


Answer = tuple[dict[str, Any], bytes]


def worker_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A worker's environment: the parent's path settings, its ``sys.path``."""
    environ = os.environ if environ is None else environ
    env = {k: environ[k] for k in _KEPT_ENVIRONMENT if k in environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


CHILD_MODULE = "chalicelib.sandbox.child"


class Worker:
    """One worker process and its pipes; used by one thread at a time."""

    def __init__(
        self, memory_bytes: int, env: Mapping[str, str] | None = None, module: str = CHILD_MODULE
    ) -> None:
        self.memory_bytes = memory_bytes
        command = [sys.executable, "-m", module, "--memory-bytes", str(memory_bytes)]
        self._proc = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(env) if env is not None else worker_environment(),
            close_fds=True,
            process_group=0,  # not the terminal's: Ctrl-C is the parent's to handle
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._out = self._proc.stdout.fileno()
        self._ready = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def call(
        self, header: dict[str, Any], payload: bytes, seconds: float
    ) -> Answer | Overran | Died:
        """Send one request and wait at most ``seconds`` for its answer."""
        if not self._ready:
            self._await_ready()
        started = time.monotonic()
        try:
            self._stdin.write(protocol.pack(header, payload))
            self._stdin.write(payload)
            self._stdin.flush()
        except (BrokenPipeError, ConnectionResetError):
            return self._ended()
        answer = self._receive(started + seconds)
        if answer is None:
            self.kill()
            return Overran(time.monotonic() - started)
        if isinstance(answer, Died):
            return answer
        if answer[0].get("memory"):
            self.kill()
            return Died(memory=True)
        return answer

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        with contextlib.suppress(OSError):
            self._stdin.close()
        self._proc.wait()
        with contextlib.suppress(OSError):
            assert self._proc.stdout is not None
            self._proc.stdout.close()

    def _await_ready(self) -> None:
        answer = self._receive(time.monotonic() + STARTUP_SECONDS)
        if not isinstance(answer, tuple) or not answer[0].get("ready"):
            self.kill()
            raise WorkerLost(f"the imaging worker did not start (exit code {self._proc.poll()})")
        self._ready = True

    def _receive(self, deadline: float) -> Answer | Died | None:
        """The next message, a ``Died`` if the stream ends, None at the deadline."""
        buffer = bytearray()
        wanted = protocol.PREFIX.size
        header_size = payload_size = -1
        poller = select.poll()
        poller.register(self._out, select.POLLIN)
        while True:
            while len(buffer) < wanted:
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(max(1, int(left * 1000))):
                    if time.monotonic() >= deadline:
                        return None
                    continue
                chunk = os.read(self._out, max(_READ_CHUNK, wanted - len(buffer)))
                if not chunk:
                    return self._ended()
                buffer += chunk
            if header_size < 0:
                try:
                    header_size, payload_size = protocol.sizes(
                        bytes(buffer[: protocol.PREFIX.size])
                    )
                except protocol.ProtocolError as exc:
                    self.kill()
                    raise WorkerLost(str(exc)) from None
                wanted = protocol.PREFIX.size + header_size + payload_size
                continue
            start = protocol.PREFIX.size
            try:
                header = protocol.header_of(bytes(buffer[start : start + header_size]))
            except protocol.ProtocolError as exc:
                self.kill()
                raise WorkerLost(str(exc)) from None
            return header, bytes(buffer[start + header_size : wanted])

    def _ended(self) -> Died:
        code = self._proc.wait()
        return Died(signal=-code if code < 0 else None)


class WorkerPool:
    """Up to ``size`` workers, each leased to one thread at a time.

    A worker starts when a request first needs one, or ahead of it with
    ``start()``, so that the first events do not wait for it to load. A worker
    that overran or died is replaced at once.
    Workers are started from one thread of the pool's (see the module's
    docstring), with fork and exec, which is safe from a threaded process.
    """

    def __init__(
        self,
        size: int,
        memory_bytes: int,
        env: Mapping[str, str] | None = None,
        module: str = CHILD_MODULE,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one worker")
        self.size = size
        self.memory_bytes = memory_bytes
        self._env = env
        self._module = module  # the worker's main module (tests give it triggers)
        self._idle: list[Worker] = []
        self._count = 0
        self._closed = False
        self._changed = threading.Condition()
        self._spawner = _Spawner(memory_bytes, env, module)

    def start(self, count: int | None = None) -> WorkerPool:
        """Start workers now, up to ``count`` (default and at most ``size``),
        counting those started already. It returns once they are started, not
        loaded: each loads its imaging code in its own process while the
        caller goes on, and its first request waits until it is ready."""
        wanted = self.size if count is None else min(count, self.size)
        with self._changed:
            while self._count < wanted:
                if self._closed:
                    raise WorkerLost("the imaging worker pool is closed")
                self._idle.append(self._spawn())
                self._count += 1
        return self

    @property
    def started(self) -> int:
        """Workers started and not yet known to have ended (idle or in use)."""
        with self._changed:
            return self._count

    def _spawn(self) -> Worker:
        """A new worker, started from the pool's spawner thread."""
        return self._spawner.spawn()

    def call(
        self, header: dict[str, Any], payload: bytes, seconds: float
    ) -> Answer | Overran | Died:
        """Run one request on a worker, waiting for one to be free."""
        with self._lease() as worker:
            return worker.call(header, payload, seconds)

    @contextlib.contextmanager
    def _lease(self) -> Iterator[Worker]:
        worker = self._acquire()
        try:
            yield worker
        finally:
            self._release(worker)

    def _acquire(self) -> Worker:
        """An idle live worker, or a new one; a worker that died idle (not
        the doing of any file) is dropped here."""
        with self._changed:
            while True:
                if self._closed:
                    raise WorkerLost("the imaging worker pool is closed")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    worker.kill()  # reaps it
                    self._count -= 1
                if self._count < self.size:
                    self._count += 1
                    break
                self._changed.wait()
        try:
            return self._spawn()
        except BaseException:
            with self._changed:
                self._count -= 1
                self._changed.notify()
            raise

    def _release(self, worker: Worker) -> None:
        replacement = None
        if not worker.alive():
            try:  # at once, so that the next source does not wait for it to load
                replacement = self._spawn()
            except (OSError, WorkerLost):
                replacement = None
        with self._changed:
            kept = replacement if replacement is not None else worker
            if not worker.alive() and replacement is None:
                self._count -= 1
            elif self._closed:
                kept.kill()
                self._count -= 1
            else:
                self._idle.append(kept)
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._changed.notify_all()
        for worker in idle:
            worker.kill()
        self._spawner.stop()


class _Spawner:
    """One daemon thread that starts workers for whichever thread asks, and
    lives until the pool closes or the process ends: the thread a worker's
    ``PR_SET_PDEATHSIG`` watches."""

    def __init__(self, memory_bytes: int, env: Mapping[str, str] | None, module: str) -> None:
        self._args = (memory_bytes, env, module)
        self._requests: SimpleQueue[Future[Worker] | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def spawn(self) -> Worker:
        future: Future[Worker] = Future()
        with self._lock:
            if self._stopped:
                raise WorkerLost("the imaging worker pool is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="imaging-spawner", daemon=True
                )
                self._thread.start()
            self._requests.put(future)
        return future.result()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._thread is not None:
                self._requests.put(None)

    def _serve(self) -> None:
        while (future := self._requests.get()) is not None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(Worker(*self._args))
                except BaseException as exc:
                    future.set_exception(exc)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
