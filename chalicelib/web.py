"""The Chalice app object, safe for servers that run requests on threads.

Chalice keeps the request being served on the app object: ``Chalice.__call__``
sets ``self.lambda_context`` and ``self.current_request`` for each REST call,
and views read ``app.current_request``. Lambda runs one request at a time per
container, but a threaded server (``chalice local``, a ``LocalDevServer``)
runs several at once, and with one attribute per app a view can read the query
string of another thread's request. Here both are per thread.
"""

from __future__ import annotations

import threading
from typing import Any

from chalice import Chalice
from chalice.app import Request


class ThreadLocalChalice(Chalice):
    """``Chalice`` whose per-request attributes (``current_request``,
    ``lambda_context``) belong to the thread serving the request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._per_thread = threading.local()
        super().__init__(*args, **kwargs)

    @property
    def current_request(self) -> Request | None:
        return getattr(self._per_thread, "current_request", None)

    @current_request.setter
    def current_request(self, value: Request | None) -> None:
        self._per_thread.current_request = value

    @property
    def lambda_context(self) -> Any:
        return getattr(self._per_thread, "lambda_context", None)

    @lambda_context.setter
    def lambda_context(self, value: Any) -> None:
        self._per_thread.lambda_context = value
