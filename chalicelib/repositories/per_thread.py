"""One object per live thread, for what threads must not share.

PyMySQL connections, boto3 sessions and boto3 resources are not thread-safe,
and a threaded server (``chalice local``, ``ThreadingHTTPServer``) runs
requests on many threads. Such a server may start a thread per connection
(HTTP/1.0 clients, a browser opening sockets): making a fresh object for each
new thread would open a connection, or load a boto3 session's models (about a
quarter of a second), per request, and leak the old ones. So an object whose
thread has ended goes to the next thread that needs one: there are about as
many objects as the most threads that were alive at once, and each is used by
one thread at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class PerThread[T]:
    """Hands each thread its own ``T``, made by ``make`` on the thread's first
    ``get()`` (or inherited from a thread that has ended)."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._local = threading.local()
        self._lock = threading.Lock()
        self._owners: dict[threading.Thread, T] = {}

    def get(self) -> T:
        """This thread's object."""
        try:
            value: T = self._local.value
        except AttributeError:
            value = self._claim()
            self._local.value = value
        return value

    def _claim(self) -> T:
        thread = threading.current_thread()
        with self._lock:
            ended = next((t for t in self._owners if not t.is_alive()), None)
            if ended is not None:
                value = self._owners.pop(ended)
                self._owners[thread] = value
                return value
        value = self._make()  # outside the lock: it may take a while
        with self._lock:
            self._owners[thread] = value
        return value

    def all(self) -> list[T]:
        """Every object made so far, its thread alive or not (to close them)."""
        with self._lock:
            return list(self._owners.values())
