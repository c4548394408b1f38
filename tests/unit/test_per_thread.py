"""``PerThread``: one object per live thread, handed on when a thread ends."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import count

from chalicelib.repositories.per_thread import PerThread


def test_threads_alive_at_once_get_their_own() -> None:
    made = count(1)
    objects = PerThread(lambda: next(made))
    all_started = threading.Barrier(4, timeout=10)

    def two_gets(_: int) -> tuple[int, int]:
        first = objects.get()
        all_started.wait()
        return first, objects.get()

    with ThreadPoolExecutor(4) as pool:
        seen = list(pool.map(two_gets, range(4)))

    assert sorted(first for first, _ in seen) == [1, 2, 3, 4]
    assert all(first == again for first, again in seen)
    assert sorted(objects.all()) == [1, 2, 3, 4]


def test_a_thread_that_ended_hands_its_object_on() -> None:
    made = count(1)
    objects = PerThread(lambda: next(made))
    for _ in range(5):  # a server starting a thread per request
        thread = threading.Thread(target=objects.get)
        thread.start()
        thread.join()

    assert objects.all() == [1]
    assert objects.get() == 1  # this thread, alive: takes the ended thread's
    worker = threading.Thread(target=objects.get)
    worker.start()
    worker.join()
    assert sorted(objects.all()) == [1, 2]
