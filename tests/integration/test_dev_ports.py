"""``manage.py dev`` refuses a port something listens on, and only that: the
connections of an earlier run, waiting in TIME_WAIT, leave it free."""

from __future__ import annotations

import socket

import pytest

from devtools.dev import PortInUse, check_port


def test_a_listening_port_is_in_use() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        with pytest.raises(PortInUse, match=f"127.0.0.1:{port} is in use"):
            check_port("127.0.0.1", port, "--api-port")


def test_a_port_with_connections_in_time_wait_is_free() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its side waits in TIME_WAIT
    client.close()
    server.close()
    # What a bind without SO_REUSEADDR meets:
    with socket.socket() as plain, pytest.raises(OSError, match="in use"):
        plain.bind(("127.0.0.1", port))

    check_port("127.0.0.1", port, "--api-port")
